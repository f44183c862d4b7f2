"""Applied commands: what makes a command id unique per principal (issue 12, item 2).

Every append that carries a ``CommandRecord`` writes one row to ``applied_commands`` in the
*same transaction* as the command's events: (principal, command_id) is its primary key, and the
row holds the command's aggregate and its result position (the position of its last event). So
a command is either applied with its row or not at all, and a repeat of the same id by the same
principal can never be applied twice, whichever process or thread sends it: its append fails as
a whole with ``RepeatedCommand``, carrying the first result for the caller to answer with.

Positions are known only once the events are inserted, so the recorders write the rows after
reading the events' positions back, still inside the transaction. One transaction may hold
several commands (group commit): ``Claim`` says which of its events is each command's last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ..domain.errors import Conflict

INSERT_COMMANDS = (
    "INSERT INTO applied_commands (principal, command_id, aggregate_id, position)"
    " VALUES (?, ?, ?, ?)"
)
SELECT_COMMAND = (
    "SELECT principal, command_id, aggregate_id, position FROM applied_commands"
    " WHERE principal = ? AND command_id = ?"
)


@dataclass(frozen=True)
class CommandRecord:
    """One applied command. ``position`` is its last event's, 0 until the store assigns it."""

    principal: str
    command_id: UUID
    aggregate_id: UUID
    position: int = 0


class RepeatedCommand(Conflict):
    """This principal already applied a command with this id: nothing was appended now.
    ``first`` is the first application's result, for the caller to answer with (DESIGN §6).
    Not a ``ConcurrencyConflict``, so never retried: a retry would be refused the same way."""

    def __init__(self, first: CommandRecord) -> None:
        super().__init__(
            f"command {first.command_id} was already applied (position {first.position})",
            details={"command_id": str(first.command_id), "position": first.position},
        )
        self.first = first


@dataclass(frozen=True)
class Claim:
    """A command in a transaction's events: ``last_event`` is the index, among the events
    inserted together, of the command's last one."""

    record: CommandRecord
    last_event: int


def command_rows(
    claims: Sequence[Claim], positions: Sequence[int]
) -> list[tuple[str, str, str, int]]:
    """The rows for ``INSERT_COMMANDS``, given the positions the inserted events received."""
    return [
        (
            c.record.principal,
            str(c.record.command_id),
            str(c.record.aggregate_id),
            positions[c.last_event],
        )
        for c in claims
    ]


def record_of(row: Mapping[str, Any]) -> CommandRecord:
    """A ``SELECT_COMMAND`` row as a record."""
    return CommandRecord(
        principal=row["principal"],
        command_id=UUID(row["command_id"]),
        aggregate_id=UUID(row["aggregate_id"]),
        position=int(row["position"]),
    )
