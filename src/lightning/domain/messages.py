"""Base classes for domain events and commands.

Events are frozen pydantic models named as past-tense facts; each declares its wire ``type``
(``<aggregate_type>.<verb>``). Commands are frozen models with imperative names that carry what a
decision needs from outside: the ids and the time, supplied by the edge.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    aggregate_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
