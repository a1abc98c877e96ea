"""`as_completed` fetches finished jobs' results from a few tasks, not one task per job.

A `jobs/watch/` answer may report hundreds of finished jobs at once. With a task
per job, each one's first steps (building its results request) ran in the same
loop iteration, stalling the loop for their sum.
"""

from __future__ import annotations

from typing import Any

import anyio

from asyncjob import AsyncJobClient, ExecutionResult, JobStatus, Limits, PollingPolicy
from asyncjob.local import LocalScheduler

from .conftest import BELL

TOKEN = "fetchers-token"
JOBS = 60


async def test_results_of_a_burst_of_finished_jobs_are_fetched_by_a_few_tasks() -> None:
    async with LocalScheduler(token=TOKEN, executor="sampler") as scheduler:
        async with AsyncJobClient(
            scheduler.base_url,
            TOKEN,
            polling=PollingPolicy(interval=0.05),
            limits=Limits(max_connections=2),
            journal=False,
        ) as client:
            with anyio.fail_after(60):
                handles = [await client.submit_circuits({f"c{i}": BELL}) for i in range(JOBS)]
                for handle in handles:  # every job finished: one watch answer reports all
                    await client.poll_job_status(handle, loop_until_complete=True)
                fetching = 0
                most = 0
                fetch = client._results.fetch

                async def counted(
                    handle: ExecutionResult | str, first: dict[str, Any] | None = None
                ) -> ExecutionResult:
                    nonlocal fetching, most
                    fetching += 1
                    most = max(most, fetching)
                    try:
                        return await fetch(handle, first)
                    finally:
                        fetching -= 1

                client._results.fetch = counted  # type: ignore[method-assign]
                async with client.as_completed(handles) as outcomes:
                    got: list[Any] = [outcome async for outcome in outcomes]
    assert sorted(o.handle.job_id for o in got) == sorted(h.job_id for h in handles)
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in got)
    assert 1 <= most <= 4  # two fetchers per pooled connection
