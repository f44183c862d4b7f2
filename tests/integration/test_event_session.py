"""The event store inside a consumer's transaction (``EventSession``), on both backends: what it
appends commits with the transaction or not at all, keeps positions in commit order beside the
group-commit writer, and a collision undoes only that append."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from lightning.bootstrap import Lightning
from lightning.domain.agent_names import AgentNameReserved
from lightning.domain.errors import ConcurrencyConflict
from lightning.store.commands import CommandRecord, RepeatedCommand
from lightning.store.envelope import Envelope, Metadata, pending


def event(aggregate: UUID, version: int, name: str = "x") -> Envelope:
    return pending(
        AgentNameReserved(name=name, agent_id=aggregate),
        event_id=uuid4(),
        aggregate_id=aggregate,
        version=version,
        occurred_at=datetime.now(UTC),
        meta=Metadata(actor="saga:test", correlation_id=uuid4()),
    )


def test_what_a_session_appends_commits_with_the_transaction_or_not_at_all(
    lightning: Lightning,
) -> None:
    kept, dropped = uuid4(), uuid4()
    with lightning.consumers.tracking.transaction(commit=True) as tx:
        [stored] = lightning.store.within(tx).append([event(kept, 1)])
        assert lightning.store.within(tx).load(kept) == [stored]  # it sees its own writes
    with pytest.raises(RuntimeError), lightning.consumers.tracking.transaction(commit=True) as tx:
        lightning.store.within(tx).append([event(dropped, 1)])
        raise RuntimeError("the consumer's batch failed")
    assert [e.aggregate_id for e in lightning.store.iterate(0)] == [kept]
    assert lightning.store.load(dropped) == []


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_collision_undoes_that_append_alone(lightning: Lightning, pipelined: bool) -> None:
    """Also in a pipelined transaction (a consumer's first try at a batch): the append's result
    and its collision are had where the append is, not at the next read."""
    stream = uuid4()
    lightning.store.append([event(stream, 1)])
    record = CommandRecord("saga:test", uuid4(), stream)
    lightning.store.append([event(stream, 2)], command=record)
    other = uuid4()
    with lightning.consumers.tracking.transaction(commit=True, pipelined=pipelined) as tx:
        session = lightning.store.within(tx)
        with pytest.raises(ConcurrencyConflict):
            session.append([event(stream, 2)])
        with pytest.raises(RepeatedCommand) as repeated:
            session.append([event(stream, 3)], command=record)
        assert repeated.value.first.position == lightning.store.load(stream)[-1].position
        session.append([event(other, 1)])  # the transaction carries on
    assert [e.version for e in lightning.store.load(stream)] == [1, 2]
    assert len(lightning.store.load(other)) == 1


def test_positions_keep_commit_order_beside_the_group_commit_writer(lightning: Lightning) -> None:
    """A session holds the store's write lock from its first append until it commits: a command
    appended meanwhile waits and takes a later position, so no reader ever sees a position and
    later a smaller one."""
    inside, outside = uuid4(), uuid4()
    appended, written = threading.Event(), threading.Event()

    def consumer_batch() -> None:
        with lightning.consumers.tracking.transaction(commit=True) as tx:
            lightning.store.within(tx).append([event(inside, 1)])
            appended.set()
            written.wait(5)  # the reader below has looked
            time.sleep(0.3)  # and the command below waits for the lock

    batch = threading.Thread(target=consumer_batch)
    batch.start()
    appended.wait(5)
    seen_while_open = [e.position for e in lightning.store.read(0, 100)]
    written.set()
    [stored] = lightning.store.append([event(outside, 1)])  # waits until the batch commits
    batch.join()
    positions = {e.aggregate_id: e.position for e in lightning.store.iterate(0)}
    assert positions[inside] < positions[outside] == stored.position
    assert seen_while_open == []  # not visible before the batch commits
