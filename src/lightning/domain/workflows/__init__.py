"""The Workflow aggregate: a graph of components (DESIGN §4) drafted, published through the
publish saga, restored from an earlier version, archived (decider pattern).

A graph is nodes ``{id, kind, config, position?}`` and edges ``{source, sourcePort?, target,
targetPort?}`` (ports default to ``out`` and ``in``); it must be a connected DAG whose edges join
an output port of one node to an input port of another, every node's config valid for its kind
(``components``). The draft changes freely; a publication snapshots it as a numbered version,
and a version once requested never changes. One publication is pending at a time, and an
archived workflow takes no command.
"""

from .commands import (
    ArchiveWorkflow,
    CompletePublish,
    CreateWorkflow,
    DegradeWorkflow,
    FailPublish,
    RequestPublish,
    RestoreWorkflowVersion,
    UpdateWorkflowDraft,
    WorkflowCommand,
)
from .decider import decide, evolve
from .events import (
    WorkflowArchived,
    WorkflowCreated,
    WorkflowDegraded,
    WorkflowDraftUpdated,
    WorkflowEvent,
    WorkflowPublished,
    WorkflowPublishFailed,
    WorkflowPublishRequested,
)
from .graph import Edge, Graph, Node, Position, check_graph
from .state import Status, Version, VersionStatus, Workflow

__all__ = [
    "ArchiveWorkflow",
    "CompletePublish",
    "CreateWorkflow",
    "DegradeWorkflow",
    "Edge",
    "FailPublish",
    "Graph",
    "Node",
    "Position",
    "RequestPublish",
    "RestoreWorkflowVersion",
    "Status",
    "UpdateWorkflowDraft",
    "Version",
    "VersionStatus",
    "Workflow",
    "WorkflowArchived",
    "WorkflowCommand",
    "WorkflowCreated",
    "WorkflowDegraded",
    "WorkflowDraftUpdated",
    "WorkflowEvent",
    "WorkflowPublishFailed",
    "WorkflowPublishRequested",
    "WorkflowPublished",
    "check_graph",
    "decide",
    "evolve",
]
