"""One `AsyncJobClient` used from successive event loops (finding 6 of issue 13)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import asyncjob
from asyncjob import AsyncJobClient
from asyncjob.local import ThreadedScheduler

from . import _workers
from .conftest import check_server


async def _job(client: AsyncJobClient, index: int) -> tuple[int, dict[str, int]]:
    result = await client.run({_workers.label(index): _workers.circuit(index)})
    assert result.results is not None
    return index, dict(result.results[0]["results"])


def test_one_client_from_two_asyncio_runs(
    scheduler: ThreadedScheduler, expected: dict[int, dict[str, int]]
) -> None:
    """The session of the first (closed) loop is replaced by one for the second."""
    client = AsyncJobClient(
        scheduler.base_url, scheduler.token, shots=_workers.SHOTS, polling_interval=0.01
    )
    assert asyncio.run(_job(client, 0)) == (0, expected[0])
    assert asyncio.run(_job(client, 1)) == (1, expected[1])

    async def last() -> tuple[int, dict[str, int]]:
        async with client:
            return await _job(client, 2)

    assert asyncio.run(last()) == (2, expected[2])
    check_server(scheduler, 3)


def test_a_client_busy_on_another_running_loop_is_a_clear_error(
    scheduler: ThreadedScheduler,
) -> None:
    client = AsyncJobClient(scheduler.base_url, scheduler.token, polling_interval=0.01)
    ready, release = threading.Event(), threading.Event()

    async def hold() -> None:
        async with client:
            await client.get_status(await client.submit_circuits({"a": _workers.circuit(0)}))
            ready.set()
            while not release.is_set():  # noqa: ASYNC110 - a threading.Event
                await asyncio.sleep(0.005)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert ready.wait(30)
        with pytest.raises(asyncjob.EventLoopError, match="one client per event loop"):
            asyncio.run(client.get_status(scheduler.jobs()[0].id))
    finally:
        release.set()
        thread.join(30)
    assert not thread.is_alive()
