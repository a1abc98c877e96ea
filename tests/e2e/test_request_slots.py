"""More concurrent calls than pooled connections: they queue up, none times out waiting."""

from __future__ import annotations

import anyio

from asyncjob import AsyncJobClient, JobStatus, Limits, RetryPolicy, Timeout
from asyncjob.local import FaultConfig, LocalScheduler

from ..conftest import BELL


async def test_calls_beyond_the_pool_wait_their_turn_instead_of_timing_out() -> None:
    # 2 connections, each status answer takes 0.1 s: the 20th call waits ~1 s for a
    # connection, five times the 0.2 s connect timeout.
    async with LocalScheduler(executor="sampler", job_duration=60) as server:
        async with AsyncJobClient(
            server.base_url,
            server.token,
            limits=Limits(max_connections=2),
            timeout=Timeout(request=5, connect=0.2),
            retry=RetryPolicy.off(),
        ) as client:
            handle = await client.submit_circuits({"a": BELL})
            server.faults = FaultConfig(latency=0.1, only=("status",))
            statuses: list[JobStatus] = []

            async def poll() -> None:
                statuses.append(await client.poll_job_status(handle, verbose=False))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(poll)
    assert len(statuses) == 20
    assert all(not status.is_terminal for status in statuses)
