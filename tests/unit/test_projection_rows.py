"""The projections' row calculations are pure functions of (old row, envelope)."""

import json
from datetime import UTC, datetime
from uuid import UUID

from lightning.projections.agents import agent_row
from lightning.projections.api_keys import api_key_row
from lightning.projections.audit_log import audit_row
from lightning.store.envelope import Envelope

AGENT = UUID(int=10)
T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def env(type_: str, version: int, position: int, **data: object) -> Envelope:
    return Envelope(
        id=UUID(int=position),
        type=type_,
        aggregate_type=type_.split(".")[0],
        aggregate_id=AGENT,
        version=version,
        position=position,
        occurred_at=T,
        actor="key:abc",
        correlation_id=UUID(int=99),
        data=data,
    )


REGISTERED = env(
    "agent.registered",
    1,
    5,
    name="coder",
    description="",
    provider="grok",
    model="grok-code-fast-1",
    temperature=0.2,
    max_tokens=10,
    system_prompt="",
    tools=["search"],
)


def test_registered_agent_row() -> None:
    row = agent_row(None, REGISTERED)
    assert row is not None
    assert row["name"] == "coder" and row["status"] == "active" and row["config_version"] == 1
    assert row["tools"] == '["search"]' and row["created_position"] == 5


def test_reconfigured_changes_only_given_fields() -> None:
    row = agent_row(None, REGISTERED)
    after = agent_row(row, env("agent.reconfigured", 2, 9, config_version=2, model="grok-beta"))
    assert after is not None and row is not None
    assert after["model"] == "grok-beta" and after["temperature"] == 0.2
    assert (
        after["config_version"] == 2 and after["created_position"] == 5 and after["position"] == 9
    )


def test_retired_agent_row() -> None:
    after = agent_row(agent_row(None, REGISTERED), env("agent.retired", 2, 6, name="coder"))
    assert after is not None and after["status"] == "retired"


def test_event_for_unknown_row_is_ignored() -> None:
    assert agent_row(None, env("agent.retired", 2, 6, name="coder")) is None


def test_api_key_row_never_holds_the_hash() -> None:
    row = api_key_row(
        None, env("api_key.issued", 1, 3, name="ci", role="viewer", secret_hash="x" * 64)
    )
    assert row is not None and "x" * 64 not in row.values()
    revoked = api_key_row(row, env("api_key.revoked", 2, 4))
    assert revoked is not None and revoked["status"] == "revoked"


def test_audit_row_keeps_actor_and_time() -> None:
    row = audit_row(REGISTERED)
    assert row["actor"] == "key:abc" and row["occurred_at"] == "2026-11-23T10:00:00.000000Z"
    assert row["position"] == 5


def test_envelope_round_trips_through_stored_event() -> None:
    stored = REGISTERED.to_stored_event()
    assert Envelope.from_stored(stored, 5) == REGISTERED
    assert '"position"' not in stored.state.decode()
    assert REGISTERED.model_dump(mode="json")["occurred_at"] == "2026-11-23T10:00:00.000000Z"


def test_wire_json_is_the_envelope_without_a_model_round_trip() -> None:
    from lightning.store.envelope import wire_json

    body, fields = wire_json(REGISTERED.to_stored_event(), 5)
    assert json.loads(body) == REGISTERED.model_dump(mode="json")
    assert Envelope.model_validate_json(body) == REGISTERED
    assert fields["id"] == str(REGISTERED.id)


def test_public_envelope_and_wire_json_leave_secret_hashes_out() -> None:
    from lightning.store.envelope import wire_json

    rotated = env(
        "api_key.rotated",
        2,
        7,
        secret_hash="a" * 64,
        previous_secret_hash="b" * 64,
        previous_valid_until="2026-11-23T11:00:00.000000Z",
    )
    public = {
        **rotated.model_dump(mode="json"),
        "data": {"previous_valid_until": rotated.data["previous_valid_until"]},
    }
    assert rotated.public() == public
    assert json.loads(rotated.public_json()) == public
    body, fields = wire_json(rotated.to_stored_event(), 7)
    assert json.loads(body) == public and fields["id"] == str(rotated.id)
    assert b"a" * 64 not in body and b"b" * 64 not in body
    stored = json.loads(rotated.to_stored_event().state)
    assert stored["data"]["secret_hash"] == "a" * 64  # the store keeps the full form


def test_an_undecodable_events_error_does_not_quote_its_data() -> None:
    from eventsourcing.persistence import Notification

    from lightning.store.envelope import Undecodable, decode

    body = json.loads(env("api_key.issued", 1, 3, secret_hash="a" * 64).to_json())
    del body["actor"]  # an envelope this version cannot read
    state = json.dumps({**body, "data": {"name": "ci", "secret_hash": "a" * 64}}).encode()
    notification = Notification(
        id=3, originator_id=AGENT, originator_version=1, topic="api_key.issued", state=state
    )
    undecodable = decode(notification)
    assert isinstance(undecodable, Undecodable) and "actor" in undecodable.error
    assert "aaaaaaaa" not in undecodable.error and "aaaaaaaa" not in undecodable.public_json()


def test_reading_ignores_fields_a_newer_version_added() -> None:
    from lightning.domain.registry import event_from

    body = json.loads(env("agent.retired", 3, 9, name="coder").to_json())
    newer = Envelope.model_validate(body | {"tenant": "t1"})
    assert newer.type == "agent.retired"
    assert event_from("agent.retired", {"name": "coder", "retired_by": "x"}) is not None
