"""Locks a forked child gets afresh, by a PID check on use (nothing registered at fork).

A `threading.Lock` held by another thread when the process forks stays held
forever in the child, since that thread does not exist there.
"""

from __future__ import annotations

import os
import threading

__all__ = ["ForkSafeLock", "abandon"]


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
