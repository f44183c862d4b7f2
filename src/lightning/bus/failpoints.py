"""Named crash points for fault tests: ``LIGHTNING_FAILPOINTS=relay.after_confirm`` makes the
process kill itself (SIGKILL, as an operator's ``kill -9`` would) the first time it reaches that
point. Unset in production, where ``hit`` is a dictionary lookup and nothing else."""

from __future__ import annotations

import os
import signal

_ARMED = {p.strip() for p in os.environ.get("LIGHTNING_FAILPOINTS", "").split(",") if p.strip()}


def hit(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
