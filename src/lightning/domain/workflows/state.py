"""A workflow as its events leave it: the draft, every requested version, the status."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from .graph import Frozen, Graph

Status = Literal["DRAFT", "PUBLISHING", "PUBLISHED", "PUBLISH_FAILED", "ARCHIVED"]
VersionStatus = Literal["PUBLISHING", "PUBLISHED", "PUBLISH_FAILED"]


class Version(Frozen):
    version: int
    status: VersionStatus
    graph: Graph
    agents: tuple[UUID, ...]
    failure_reason: str | None = None
    degraded_by: tuple[UUID, ...] = ()  # its agents that were retired


class Workflow(Frozen):
    id: UUID
    name: str
    draft: Graph
    draft_version: int
    status: Status = "DRAFT"
    versions: tuple[Version, ...] = ()
    published_version: int | None = None
    version: int = Field(default=0, description="number of events folded")

    def find(self, version: int) -> Version | None:
        return next((v for v in self.versions if v.version == version), None)

    @property
    def pending(self) -> Version | None:
        return next((v for v in self.versions if v.status == "PUBLISHING"), None)

    @property
    def published(self) -> Version | None:
        return None if self.published_version is None else self.find(self.published_version)

    @property
    def degraded(self) -> bool:
        """Published, and an agent the published version uses was retired."""
        published = self.published
        return published is not None and bool(published.degraded_by)

    @property
    def failure_reason(self) -> str | None:
        """Why the latest publication failed, when it did."""
        latest = self.versions[-1] if self.versions else None
        return latest.failure_reason if latest is not None else None
