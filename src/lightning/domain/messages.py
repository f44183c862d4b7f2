"""Base classes for domain events and commands.

Events are frozen pydantic models named as past-tense facts; each declares its wire ``type``
(``<aggregate_type>.<verb>``). Commands are frozen models with imperative names that carry what a
decision needs from outside: the ids and the time, supplied by the edge.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ValidationFailed


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    aggregate_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class UnknownEvent(DomainEvent):
    """An event of a type this code does not know (written by a newer version): folded as
    "something happened" — it changes no state, but it counts, so a state's ``version`` is
    always its stream's, whatever it could read. Never stored, never registered."""

    type = "unknown"
    aggregate_type = "unknown"


UNKNOWN = UnknownEvent()


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    @classmethod
    def of(cls, **values: Any) -> Self:
        """Build the command from a client's values; every complaint (a limit of DESIGN §6, a
        wrong type) becomes one ``ValidationFailed`` naming the fields as the client named them
        (GraphQL's camelCase), never echoing the input."""
        try:
            return cls(**values)
        except ValidationError as exc:
            details = {_field(e["loc"]): e["msg"] for e in exc.errors(include_input=False)}
            first = next(iter(details.items()))
            raise ValidationFailed(f"{first[0]}: {first[1]}", details=dict(details)) from None


def _field(loc: tuple[int | str, ...]) -> str:
    name = ".".join(map(str, loc)) or "input"
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)
