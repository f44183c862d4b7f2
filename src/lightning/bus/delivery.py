"""What a transport hands to consumers."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.envelope import Envelope


@dataclass(frozen=True)
class Delivery:
    """A message from a transport. To a consumer it only says how far the store has got (its
    position): the events a consumer applies are always read from the store."""

    envelope: Envelope

    @property
    def position(self) -> int:
        return self.envelope.position
