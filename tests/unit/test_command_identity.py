"""Commands carry identity (issue 12, item 2): every envelope of a command names its command id;
events stored before that keep their shape, on every path out of the store."""

from __future__ import annotations

import json
from uuid import UUID

from lightning.domain.agents import AgentRetired
from lightning.services import SYSTEM, Context
from lightning.services.common import stamp
from lightning.store.envelope import Envelope, wire_json


def test_every_envelope_of_a_command_carries_its_command_id() -> None:
    ctx = Context(SYSTEM, command_id=UUID(int=7))
    envelopes = stamp(ctx, UUID(int=1), 0, [AgentRetired(name="coder"), AgentRetired(name="coder")])
    assert [e.command_id for e in envelopes] == [UUID(int=7)] * 2
    # Without a given id, each command (each context) gets a fresh one, and it is not claimed.
    assert Context(SYSTEM).id != Context(SYSTEM).id
    [minted] = stamp(Context(SYSTEM), UUID(int=1), 0, [AgentRetired(name="coder")])
    assert minted.command_id is not None
    assert Context(SYSTEM).claim(UUID(int=1)) is None
    assert ctx.claim(UUID(int=1)) is not None


def test_a_stored_command_id_round_trips() -> None:
    [envelope] = stamp(
        Context(SYSTEM, command_id=UUID(int=7)), UUID(int=1), 0, [AgentRetired(name="coder")]
    )
    back = Envelope.from_stored(envelope.to_stored_event(), 3)
    assert back.command_id == UUID(int=7) and back.public()["command_id"] == str(UUID(int=7))


def test_an_event_from_before_command_ids_keeps_its_shape() -> None:
    [envelope] = stamp(Context(SYSTEM), UUID(int=1), 0, [AgentRetired(name="coder")])
    old = envelope.model_copy(update={"command_id": None}).to_stored_event()
    assert "command_id" not in json.loads(old.state)
    back = Envelope.from_stored(old, 3)
    assert back.command_id is None and "command_id" not in back.public()
    body, _ = wire_json(old, 3)
    assert json.loads(body) == back.public()
