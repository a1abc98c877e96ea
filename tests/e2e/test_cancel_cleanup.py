"""A cancelled submission returns at once; cancelling its job goes on in the background.

Against the local scheduler with hung endpoints: the call ends as soon as its
event is set (before any cleanup request was answered), the job it created is
cancelled by the client's background cleanup, and `aclose()` waits for that.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from asyncjob import AsyncJobClient, ExecutionCancelledError, Limits
from asyncjob._journal import ABANDONED, Journal
from asyncjob.local import FaultConfig, LocalScheduler

from ..conftest import BELL


async def _submit_cancelled_when(
    client: AsyncJobClient, server: LocalScheduler, circuits: dict[str, str], endpoint: str
) -> None:
    """Submit; set the event once the scheduler holds a job and has seen `endpoint`."""
    event = threading.Event()

    async def cancel_when_seen() -> None:
        await server.wait_until(
            lambda: bool(server.jobs()) and server.stats.requests_by_endpoint.get(endpoint, 0) >= 1
        )
        event.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_when_seen)
        with pytest.raises(ExecutionCancelledError):
            await client.submit_circuits(circuits, cancellation_event=event)


async def test_cancel_during_a_hung_init_returns_at_once_and_cleans_up_in_the_background(
    tmp_path: Path,
) -> None:
    # The first init is processed, then its answer hangs; so does the cleanup's.
    faults = FaultConfig(
        only=("init",), hang_rate=1.0, hang_when="after", hang_time=1.0, max_faults=2
    )
    journal = tmp_path / "j.sqlite3"
    async with LocalScheduler(executor="sampler", faults=faults, job_duration=3600) as server:
        async with AsyncJobClient(server.base_url, server.token, journal=journal) as client:
            await _submit_cancelled_when(client, server, {"a": BELL}, "init")
            # The call is over and sent nothing more: nothing was cancelled yet.
            assert server.stats.requests_by_endpoint.get("cancel", 0) == 0
            (job,) = server.jobs()
            assert job.status != "CANCELLED"
            assert len(client._ctx.cleanups) == 1
        # aclose() waited for the cleanup: init found again by its key, then cancelled.
        (job,) = server.jobs()
        assert job.status == "CANCELLED"
        assert server.stats.requests_by_endpoint["init"] == 2
        assert server.stats.jobs_created == 1
    (entry,) = Journal(journal).entries()
    assert (entry.job_id, entry.state) == (job.id, ABANDONED)


async def test_cancel_while_upload_and_cancel_hang_returns_at_once(tmp_path: Path) -> None:
    faults = FaultConfig(
        only=("add_circuits", "cancel"), hang_rate=1.0, hang_time=1.0, max_faults=2
    )
    journal = tmp_path / "j.sqlite3"
    circuits = {f"c{i}": BELL for i in range(4)}
    async with LocalScheduler(executor="sampler", faults=faults, job_duration=0.01) as server:
        async with AsyncJobClient(
            server.base_url,
            server.token,
            journal=journal,
            limits=Limits(max_payload_bytes=400, upload_concurrency=1),
        ) as client:
            await _submit_cancelled_when(client, server, circuits, "add_circuits")
            (job,) = server.jobs()
            assert job.status != "CANCELLED"
            assert not job.finalized
            assert client._ctx.writer is not None
            await client._ctx.writer.flush()
            (entry,) = Journal(journal).entries()
            assert entry.cancelling  # resume would cancel it, should the process die now
        (job,) = server.jobs()
        assert job.status == "CANCELLED"
    (entry,) = Journal(journal).entries()
    assert entry.state == ABANDONED
