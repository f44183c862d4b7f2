"""Upcasters turn old shapes of stored events into current ones; reading stays tolerant.

No event type has changed shape yet, so these tests declare pretend upcasters in registries of
their own (``agent.registered`` v1 said ``model_name`` where v2 says ``model``) and, where the
store must use one, put it in the production registry's place for the test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification, StoredEvent

from lightning.domain import upcasting
from lightning.domain.agents import AgentRegistered
from lightning.domain.messages import DomainEvent
from lightning.domain.registry import EVENT_CLASSES, event_from
from lightning.domain.upcasting import (
    UPCASTERS,
    JsonObject,
    UpcasterChainBroken,
    Upcasters,
    UpcastFailed,
)
from lightning.projections.agents import agent_row
from lightning.store.envelope import Envelope, Undecodable, decode, wire_json

AGENT = UUID(int=10)
T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
V1_DATA: JsonObject = {
    "name": "coder",
    "description": "",
    "provider": "grok",
    "model_name": "grok-code-fast-1",
    "temperature": 0.2,
    "max_tokens": 10,
    "system_prompt": "",
    "tools": ["search"],
}


def renamed_model(data: JsonObject) -> JsonObject:
    """Pretend v1 -> v2 of agent.registered: ``model_name`` became ``model``."""
    return {("model" if k == "model_name" else k): v for k, v in data.items()}


def with_tags(data: JsonObject) -> JsonObject:
    """Pretend v2 -> v3: ``tags`` added, empty for what was written before."""
    return {**data, "tags": []}


def chain() -> Upcasters:
    registry = Upcasters()
    registry.register("agent.registered", 1)(renamed_model)
    registry.register("agent.registered", 2)(with_tags)
    return registry


def event_class(version: int, type_: str = "agent.registered") -> type[DomainEvent]:
    class Pretend(DomainEvent):
        type: ClassVar[str] = type_
        aggregate_type: ClassVar[str] = "agent"
        schema_version: ClassVar[int] = version

    return Pretend


def stored_v1(data: JsonObject, schema_version: int = 1) -> StoredEvent:
    body = {
        "id": str(UUID(int=5)),
        "type": "agent.registered",
        "aggregate_type": "agent",
        "aggregate_id": str(AGENT),
        "version": 1,
        "occurred_at": "2026-11-23T10:00:00.000000Z",
        "actor": "key:abc",
        "correlation_id": str(UUID(int=99)),
        "causation_id": None,
        "schema_version": schema_version,
        "data": data,
    }
    return StoredEvent(
        originator_id=AGENT,
        originator_version=1,
        topic="agent.registered",
        state=json.dumps(body).encode(),
    )


@pytest.fixture
def registered_at_v2(monkeypatch: pytest.MonkeyPatch) -> Upcasters:
    """The store reads with a registry in which agent.registered is at version 2."""
    registry = Upcasters()
    registry.register("agent.registered", 1)(renamed_model)
    monkeypatch.setattr(AgentRegistered, "schema_version", 2)
    registry.check(EVENT_CLASSES.values())
    monkeypatch.setattr(upcasting, "UPCASTERS", registry)
    return registry


# ---- the mechanism -------------------------------------------------------------------------------


def test_a_chain_upcasts_v1_through_v2_to_v3() -> None:
    version, data = chain().upcast("agent.registered", 1, V1_DATA)
    assert version == 3
    assert data == {**renamed_model(V1_DATA), "tags": []} and "model_name" not in data
    assert V1_DATA["model_name"] == "grok-code-fast-1"  # the stored data is not touched
    assert chain().upcast("agent.registered", 2, renamed_model(V1_DATA)) == (3, data)


def test_the_current_version_passes_through_untouched() -> None:
    current = {**renamed_model(V1_DATA), "tags": []}
    version, data = chain().upcast("agent.registered", 3, current)
    assert version == 3 and data is current


def test_an_unknown_type_passes_through_untouched() -> None:
    data: JsonObject = {"anything": 1}
    assert chain().upcast("gadget.invented", 1, data) == (1, data)
    assert chain().upcast("gadget.invented", 7, data)[1] is data


def test_a_version_newer_than_known_passes_through_untouched() -> None:
    newer: JsonObject = {"model_id": "x", "shape": "from the future"}
    version, data = chain().upcast("agent.registered", 9, newer)
    assert version == 9 and data is newer  # never downcast, never fail


def test_a_failing_upcaster_names_the_type_and_version() -> None:
    registry = Upcasters()
    registry.register("agent.registered", 1)(lambda data: {"model": data["model_name"]})
    with pytest.raises(UpcastFailed, match=r"agent\.registered from version 1: KeyError"):
        registry.upcast("agent.registered", 1, {"name": "coder"})


# ---- the check at import -------------------------------------------------------------------------


def test_the_production_upcasters_reach_every_event_class() -> None:
    UPCASTERS.check(EVENT_CLASSES.values())


def test_a_chain_reaching_the_class_version_passes_the_check() -> None:
    chain().check([event_class(3), event_class(1, "agent.retired")])


def test_a_version_raised_without_its_upcaster_fails_the_check() -> None:
    with pytest.raises(UpcasterChainBroken, match="reach only 3: declare one from 3 to 4"):
        chain().check([event_class(4)])
    with pytest.raises(UpcasterChainBroken, match="reach only 1"):
        Upcasters().check([event_class(2)])


def test_an_upcaster_past_the_class_version_fails_the_check() -> None:
    with pytest.raises(UpcasterChainBroken, match="lead to 3"):
        chain().check([event_class(2)])


def test_a_gap_in_the_chain_fails_the_check() -> None:
    registry = Upcasters()
    registry.register("agent.registered", 1)(renamed_model)
    registry.register("agent.registered", 3)(with_tags)
    with pytest.raises(UpcasterChainBroken, match="no upcaster from 2 to 3"):
        registry.check([event_class(2)])
    with pytest.raises(UpcasterChainBroken, match="reach only 2"):
        registry.check([event_class(4)])


def test_an_upcaster_without_an_event_class_fails_the_check() -> None:
    registry = Upcasters()
    registry.register("gadget.invented", 1)(renamed_model)
    with pytest.raises(
        UpcasterChainBroken, match=r"gadget\.invented \(from 1\), which has no class"
    ):
        registry.check([event_class(1)])


def test_an_upcaster_declared_twice_or_from_version_0_is_refused() -> None:
    registry = chain()
    with pytest.raises(UpcasterChainBroken, match="two upcasters from version 1"):
        registry.register("agent.registered", 1)(renamed_model)
    with pytest.raises(UpcasterChainBroken, match="start at 1"):
        registry.register("agent.registered", 0)


# ---- where stored events are read ----------------------------------------------------------------


@pytest.mark.usefixtures("registered_at_v2")
def test_a_stored_v1_envelope_reads_in_the_current_shape() -> None:
    envelope = Envelope.from_stored(stored_v1(V1_DATA), 5)
    assert envelope.schema_version == 2 and envelope.data == renamed_model(V1_DATA)
    event = envelope.domain_event()
    assert isinstance(event, AgentRegistered)
    assert event.model == "grok-code-fast-1" and event.tools == ("search",)
    assert event_from("agent.registered", V1_DATA, schema_version=1) == event


@pytest.mark.usefixtures("registered_at_v2")
def test_every_reader_sees_the_current_shape() -> None:
    envelope = Envelope.from_stored(stored_v1(V1_DATA), 5)
    row = agent_row(None, envelope)  # a projection reading data by field name
    assert row is not None and row["model"] == "grok-code-fast-1"
    public = envelope.public()  # CLI, GraphQL's data, exports
    assert public["schema_version"] == 2 and public["data"]["model"] == "grok-code-fast-1"
    body, fields = wire_json(stored_v1(V1_DATA), 5)  # the relay's RabbitMQ body
    assert json.loads(body) == public and fields["schema_version"] == 2
    assert Envelope.model_validate_json(body) == envelope  # a consumer reading that body


@pytest.mark.usefixtures("registered_at_v2")
def test_the_relay_still_leaves_secret_hashes_out_of_upcast_bodies() -> None:
    body, _ = wire_json(stored_v1({**V1_DATA, "secret_hash": "a" * 64}), 5)
    assert b"a" * 64 not in body and json.loads(body)["data"]["model"] == "grok-code-fast-1"


def test_a_current_envelope_is_spliced_by_the_relay_as_before() -> None:
    stored = stored_v1(renamed_model(V1_DATA) | {"model": "grok-beta"})
    body, _ = wire_json(stored, 5)
    assert body == stored.state.rstrip()[:-1] + b',"position":5}'


def test_an_envelope_from_a_newer_writer_reads_tolerantly() -> None:
    newer = {**renamed_model(V1_DATA), "model": "grok-beta", "tenant": "t1"}
    envelope = Envelope.from_stored(stored_v1(newer, schema_version=7), 5)
    assert envelope.schema_version == 7 and envelope.data == newer
    event = envelope.domain_event()
    assert isinstance(event, AgentRegistered) and event.model == "grok-beta"


def test_an_event_whose_upcaster_fails_is_undecodable_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Upcasters()
    registry.register("agent.registered", 1)(lambda data: {"model": data["model_name"]})
    monkeypatch.setattr(AgentRegistered, "schema_version", 2)
    monkeypatch.setattr(upcasting, "UPCASTERS", registry)
    notification = Notification(
        id=5,
        originator_id=AGENT,
        originator_version=1,
        topic="agent.registered",
        state=stored_v1({"name": "coder"}).state,
    )
    envelope = decode(notification)  # a consumer then parks it with its stream
    assert isinstance(envelope, Undecodable) and "upcasting agent.registered" in envelope.error
    with pytest.raises(ValueError, match=r"upcasting agent\.registered"):
        wire_json(notification, 5)  # the relay sends its Undecodable stand-in instead
