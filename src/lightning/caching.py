"""``cached``: a value worked out once per object, on first use — ``functools.cached_property``
without its lock.

On Python 3.11 ``cached_property`` takes one lock, shared by every instance of the class, around
each first computation. A thread that holds it can be switched out (the GIL changes hands every
5 ms), and then every other thread reaching any instance's property waits: with 64 request
threads making ``Context`` objects, 2/3 of their time went to waiting on ``Context.at``'s lock.
(Python 3.12 dropped the lock for this reason.) Here two threads asking at the same moment
could both work the value out, so it is for values that are a pure function of the object (an
envelope's texts) or for objects one thread uses at a time (a command's ``Context``, whose time
and id must not be read by two threads before either has been once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class cached(Generic[T]):
    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | cached[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        # Not a data descriptor: from now on the instance's own entry is found first.
        instance.__dict__[self.name] = value
        return value
