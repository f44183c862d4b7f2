"""The workflow document: one JSON shape for ``exportWorkflow`` / ``importWorkflow`` and
``lightning workflows export|import``, published as a JSON Schema (``docs/workflow.schema.json``,
served at ``/schemas/workflow.json``). A document names the workflow and holds its graph; it
carries no ids, so importing it creates a new workflow, and exporting that gives the same
document back, byte for byte once both are written the same way (``document_json``).

The document is read strictly (a field it does not define is refused, so a typo is not lost in
silence); its graph then passes every guard a created workflow's does.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from ..errors import ValidationFailed
from ..limits import WORKFLOW_EDGES_MAX, WORKFLOW_NODES_MAX, Name
from .graph import Graph

FORMAT: Literal["lightning.workflow/v1"] = "lightning.workflow/v1"
SCHEMA_ID = "urn:lightning:schema:workflow:v1"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class DocumentPosition(_Strict):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    x: float
    y: float


class DocumentNode(_Strict):
    id: str = Field(min_length=1, max_length=100)
    kind: str = Field(min_length=1, max_length=100, description="agent, tool, router, human_review")
    config: dict[str, JsonValue] = Field(default_factory=dict)
    position: DocumentPosition | None = None


class DocumentEdge(_Strict):
    source: str = Field(min_length=1, max_length=100)
    source_port: str = Field(default="out", alias="sourcePort", max_length=100)
    target: str = Field(min_length=1, max_length=100)
    target_port: str = Field(default="in", alias="targetPort", max_length=100)


class DocumentGraph(_Strict):
    nodes: list[DocumentNode] = Field(min_length=1, max_length=WORKFLOW_NODES_MAX)
    edges: list[DocumentEdge] = Field(default_factory=list, max_length=WORKFLOW_EDGES_MAX)


class WorkflowDocument(_Strict):
    """A Lightning workflow: its name and its graph of components."""

    model_config = ConfigDict(title="Lightning workflow", json_schema_extra={"$id": SCHEMA_ID})

    format: Literal["lightning.workflow/v1"] = FORMAT
    name: Name
    graph: DocumentGraph

    @property
    def domain_graph(self) -> Graph:
        return Graph.model_validate(self.graph.model_dump(by_alias=True, exclude_none=True))


def document_of(name: str, graph: Graph) -> dict[str, Any]:
    """The document for a workflow's name and one of its graphs, as a JSON-able dict."""
    return {
        "format": FORMAT,
        "name": name,
        "graph": graph.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def read_document(value: object) -> WorkflowDocument:
    """A document a client gives (a parsed JSON value); ``ValidationFailed`` naming the first
    problem's place, never echoing the input."""
    if not isinstance(value, dict):
        raise ValidationFailed("a workflow document is a JSON object", details={"document": "type"})
    try:
        return WorkflowDocument.model_validate(value)
    except ValidationError as exc:
        problem = exc.errors(include_input=False)[0]
        where = ".".join(map(str, problem["loc"])) or "document"
        raise ValidationFailed(
            f"the workflow document's {where}: {problem['msg']}", details={"document": where}
        ) from None


def document_json(document: dict[str, Any]) -> str:
    """A document as written to a file: indented, keys in a fixed order, a newline at the end."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the document (draft 2020-12)."""
    schema = WorkflowDocument.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
