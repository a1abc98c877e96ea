"""Objects a forked child, or a new event loop, gets afresh: checked on use (nothing registered).

A `threading.Lock` held by another thread when the process forks stays held
forever in the child, since that thread does not exist there. An asyncio
primitive belongs to the loop it was first used on, and a client outlives
loops (successive `asyncio.run` calls, a forked child's new loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ForkSafeLock", "PerLoop", "abandon"]

T = TypeVar("T")


class ForkSafeLock:
    """A mutex, replaced by a new one the first time it is used in a forked child."""

    def __init__(self) -> None:
        self._locks: dict[int, threading.Lock] = {os.getpid(): threading.Lock()}

    def _lock(self) -> threading.Lock:
        pid = os.getpid()
        lock = self._locks.get(pid)
        if lock is None:  # a forked child: setdefault picks one lock for all its threads
            lock = self._locks.setdefault(pid, threading.Lock())
            for other in [p for p in self._locks if p != pid]:
                self._locks.pop(other, None)
        return lock

    def __enter__(self) -> None:
        self._lock().acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock().release()


class PerLoop(Generic[T]):
    """One `make()` for the running event loop, made again when another loop runs."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._current: tuple[asyncio.AbstractEventLoop, T] | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._current is None or self._current[0] is not loop:
            self._current = (loop, self._make())
        return self._current[1]


def abandon(obj: object) -> None:
    """Keep `obj` (inherited from the parent process) alive for good, and never close it here.

    Finalizing inherited event-loop objects in a forked child, even at interpreter
    shutdown, does harm: an aiohttp connector's finalizer closes its sockets
    through the epoll instance the child shares with the parent (the parent
    stops hearing from those connections), and an anyio portal's waits on the
    parent's loop thread, which is not in the child. So the object gets a
    reference that is never released.
    """
    try:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    except (ImportError, AttributeError):  # no ctypes (or not CPython): best effort
        _abandoned.append(obj)


_abandoned: list[object] = []
