"""Upcasters: old shapes of stored events turned into the shapes this code reads (STYLE 5, 9).

History is immutable, so an event type's ``data`` may change shape only by a new
``schema_version`` (a ClassVar on the event class, 1 unless raised) and an *upcaster* for each
step: a pure function ``(data) -> data`` from version N to N+1 of one type, declared here, at the
bottom of this module, and nowhere else::

    @UPCASTERS.register("agent.registered", 1)
    def _agent_registered_1(data: JsonObject) -> JsonObject:
        # v2 renamed ``model_name`` to ``model``
        return {("model" if k == "model_name" else k): v for k, v in data.items()}

    # and in domain/agents.py: class AgentRegistered: schema_version = 2

``check`` runs when ``registry`` is imported: every event class's ``schema_version`` must be
reached from 1 by a contiguous chain of upcasters, and no upcaster may go past it, so a version
raised without its upcaster (or an upcaster left without its version) fails loudly — in every
test, before anything is read.

Reading is tolerant: ``upcast`` leaves a type it has no upcasters for (an unknown type, or one
that never changed), and a version newer than this code knows (a newer writer, during a rolling
upgrade), untouched — it never downcasts and never fails on them. Whether such an event can then
be *used* is the reader's business: a field a newer version added is ignored, but one it removed
makes the event unreadable to this code (a consumer parks it with its stream, DESIGN §1, until
this code is upgraded).

Where it applies: the store's ``Envelope`` upcasts when it is read (``store/envelope.py``), so
every reader of an event — aggregates, replay and ``stateAt``, projections, GraphQL, the CLI,
RabbitMQ bodies — sees the current shape and the current ``schema_version``, one shape
everywhere (DESIGN §3); only the stored bytes keep the shape they were written in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .messages import DomainEvent

JsonObject = dict[str, object]
Upcaster = Callable[[JsonObject], JsonObject]


class UpcasterChainBroken(Exception):
    """The declared upcasters do not lead each event type from version 1 to its class's
    ``schema_version`` (a programming error, found at import)."""


class UpcastFailed(ValueError):
    """An upcaster raised on a stored event's data. A ``ValueError``, so the store treats the
    event like any other it cannot read (a consumer parks it with its stream)."""


class Upcasters:
    """Upcasters keyed by (event type, the version they upcast from). The production set is
    ``UPCASTERS``; tests build their own."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Declare ``fn`` as the upcaster of ``type_`` from ``from_version`` to the next
        (a decorator; the function is returned unchanged)."""
        if from_version < 1:
            raise UpcasterChainBroken(f"{type_}: versions start at 1, not {from_version}")

        def add(fn: Upcaster) -> Upcaster:
            if (type_, from_version) in self._steps:
                raise UpcasterChainBroken(f"{type_}: two upcasters from version {from_version}")
            self._steps[type_, from_version] = fn
            return fn

        return add

    def latest(self, type_: str, from_version: int = 1) -> int:
        """The version the chain of ``type_`` leads to from ``from_version``."""
        version = from_version
        while (type_, version) in self._steps:
            version += 1
        return version

    def upcast(self, type_: str, schema_version: int, data: JsonObject) -> tuple[int, JsonObject]:
        """(current version, data in the current shape) for a stored event's ``data``;
        ``(schema_version, data)`` itself when there is nothing to do."""
        step = self._steps.get((type_, schema_version))
        if step is None:
            return schema_version, data
        version, data = schema_version, dict(data)
        while step is not None:
            try:
                data = step(data)
            except Exception as exc:  # a bug in an upcaster, or data it did not expect
                raise UpcastFailed(
                    f"upcasting {type_} from version {version}: {type(exc).__name__}: {exc}"
                ) from exc
            version += 1
            step = self._steps.get((type_, version))
        return version, data

    def check(self, classes: Iterable[type[DomainEvent]]) -> None:
        """Raise ``UpcasterChainBroken`` unless each class's ``schema_version`` is reached from
        1 by contiguous upcasters, no upcaster goes past it, and every upcaster's type has a
        class."""
        problems: list[str] = []
        known: set[str] = set()
        for cls in classes:
            known.add(cls.type)
            reached = self.latest(cls.type)
            if cls.schema_version < 1:
                problems.append(f"{cls.type}: schema_version {cls.schema_version} is below 1")
            elif reached < cls.schema_version:
                problems.append(
                    f"{cls.type} is at schema_version {cls.schema_version} but its upcasters"
                    f" reach only {reached}: declare one from {reached} to {reached + 1}"
                )
            elif reached > cls.schema_version:
                problems.append(
                    f"{cls.type} is at schema_version {cls.schema_version} but its upcasters"
                    f" lead to {reached}: raise the class's schema_version or drop the upcaster"
                )
        for type_, version in sorted(self._steps):
            if type_ not in known:
                problems.append(f"an upcaster for {type_} (from {version}), which has no class")
            elif version > 1 and (type_, version - 1) not in self._steps:
                problems.append(f"{type_}: no upcaster from {version - 1} to {version}")
        if problems:
            raise UpcasterChainBroken("; ".join(problems))


UPCASTERS = Upcasters()


def upcast(type_: str, schema_version: int, data: JsonObject) -> tuple[int, JsonObject]:
    """``UPCASTERS.upcast``: the one entry point readers of stored events call."""
    return UPCASTERS.upcast(type_, schema_version, data)


# ---- the upcasters, oldest first per type --------------------------------------------------------
# None yet: no event type has changed shape since the first stored log (tests/fixtures/logs/).
