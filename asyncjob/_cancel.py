"""Turning a `threading.Event` into anyio cancellation."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ._errors import ExecutionCancelledError

__all__ = ["EVENT_CHECK_INTERVAL", "run_until_event"]

T = TypeVar("T")

EVENT_CHECK_INTERVAL = 0.01
"""How often a caller's event is checked: well inside the 100 ms promised."""


async def run_until_event(
    event: threading.Event | None, func: Callable[..., Awaitable[T]], what: str, *args: Any
) -> T:
    """Run `func(*args)`, cancelling it (in-flight requests included) once `event` is set.

    Raises `ExecutionCancelledError` when the event stopped the work. Cleanup
    that `func` does in shielded scopes (e.g. cancelling a remote job) runs first.
    """
    if event is None:
        return await func(*args)
    if event.is_set():
        raise ExecutionCancelledError(f"{what} cancelled before it started")
    outcome: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while not event.is_set():  # noqa: ASYNC110 - a threading.Event can't be awaited
                await anyio.sleep(EVENT_CHECK_INTERVAL)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            outcome.append(await func(*args))
        except Exception as exc:  # re-raised below, unwrapped from the task group
            errors.append(exc)
        tg.cancel_scope.cancel()
    if errors:
        raise errors[0]
    if not outcome:
        raise ExecutionCancelledError(f"{what} cancelled by the cancellation event")
    return outcome[0]
