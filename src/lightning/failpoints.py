"""Named fault points for tests and demonstrations, armed with ``LIGHTNING_FAILPOINTS`` (a comma-
separated list); unset in production, where each check is a set lookup and nothing else.

* ``relay.after_confirm``: the relay kills itself (SIGKILL, as ``kill -9`` would) the first time
  the broker has confirmed a batch whose position it has not recorded yet.
* ``saga.after_step``: a saga worker kills itself (SIGKILL) right after committing a batch in
  which a saga sent a command: between two steps of a saga.
* ``apply:<handler>:<key>``: the consumer handler ``<handler>`` (a projection such as ``agents``)
  fails on every event of ``<key>`` (an aggregate id), as a bug or bad data would make it.
"""

from __future__ import annotations

import functools
import os
import signal


class FailpointError(RuntimeError):
    """The failure a failpoint injects."""


@functools.cache
def armed() -> frozenset[str]:
    value = os.environ.get("LIGHTNING_FAILPOINTS", "")
    return frozenset(p.strip() for p in value.split(",") if p.strip())


def hit(name: str) -> None:
    if name in armed():
        os.kill(os.getpid(), signal.SIGKILL)


def check_apply(handler: str, keys: set[str] | frozenset[str]) -> None:
    """Raise if a failpoint makes ``handler`` fail on one of ``keys``."""
    points = armed()
    if not points:
        return
    for key in keys:
        if f"apply:{handler}:{key}" in points:
            raise FailpointError(f"failpoint apply:{handler}:{key}")
