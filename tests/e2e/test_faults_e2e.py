"""Each fault the local scheduler can inject, and the client surviving it end to end."""

from __future__ import annotations

from typing import Any

import pytest

from asyncjob import AsyncJobClient, JobFailedError, RetryPolicy, Timeout
from asyncjob.local import FaultConfig, LocalScheduler

from ..conftest import BELL, GHZ3

CIRCUITS = {f"c{i}": (BELL if i % 2 else GHZ3) for i in range(6)}
RETRY = RetryPolicy(attempts=8, initial=0.01, max_backoff=0.05)


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        ({"error_rate": 0.4}, "error"),
        ({"error_rate": 0.4, "error_when": "after"}, "error"),
        ({"rate_limit_rate": 0.4, "retry_after": 0.01}, "rate_limit"),
        ({"reset_rate": 0.3}, "reset"),
        ({"reset_rate": 0.3, "reset_when": "before"}, "reset"),
        ({"hang_rate": 0.2, "hang_time": 30}, "hang"),
        ({"truncate_rate": 0.3}, "truncate"),
        ({"slow_body": 0.01}, None),
        ({"latency": (0.0, 0.05)}, None),
    ],
)
async def test_client_survives(faults: dict[str, Any], kind: str | None) -> None:
    async with LocalScheduler(
        executor="sampler", faults=FaultConfig(seed=7, **faults), job_duration=0.02
    ) as server:
        async with AsyncJobClient(
            server.base_url,
            server.token,
            retry=RETRY,
            timeout=Timeout(request=0.5, connect=0.5),
            polling_interval=0.01,
        ) as client:
            results = [await client.run(CIRCUITS, shots=100) for _ in range(3)]
        clean = [e["results"] for e in results[0].results or []]
        for result in results:
            assert [r["label"] for r in result.results or []] == list(CIRCUITS)
            assert [r["results"] for r in result.results or []] == clean
        stats = server.stats
        if kind is not None:
            assert stats.faults_injected.get(kind, 0) > 0
        assert stats.jobs_created == 3  # retries never duplicated a job
        assert stats.jobs_completed == 3
        assert all(job.finalized for job in server.jobs())


async def test_failed_jobs_are_reported_not_retried() -> None:
    async with LocalScheduler(
        faults=FaultConfig(fail_rate=1.0), job_duration=0.01, executor="sampler"
    ) as server:
        async with AsyncJobClient(server.base_url, server.token, polling_interval=0.01) as c:
            with pytest.raises(JobFailedError, match="FAILED"):
                await c.run(CIRCUITS)
        assert server.stats.jobs_created == 1
