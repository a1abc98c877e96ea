"""A pipeline with many jobs in flight: results are handled as each job completes.

Usage: python examples/pipeline.py [BASE_URL TOKEN]
Without arguments (or ASYNCJOB_BASE_URL / ASYNCJOB_TOKEN) it starts a local
scheduler whose jobs take a random 0.2-1.5 s, so they finish out of order.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import anyio

from asyncjob import AsyncJobClient, JobStatus

TEMPLATE = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; ry({theta}) q[0]; measure q -> c;'
)


def sweep(job: int, points: int = 5) -> dict[str, str]:
    """One job's circuits: a rotation sweep offset by the job number."""
    return {
        f"job{job}-theta{p}": TEMPLATE.format(theta=(job + p / points) * math.pi / 10)
        for p in range(points)
    }


async def run_pipeline(base_url: str, token: str, jobs: int = 20) -> list[str]:
    """Submit `jobs` jobs at once, then report each one as soon as it finishes."""
    lines = []
    async with AsyncJobClient(base_url, token, polling_interval=0.1) as client:
        handles = []
        async with anyio.create_task_group() as tg:

            async def submit(job: int) -> None:
                handles.append(await client.submit_circuits(sweep(job), shots=200))

            for job in range(jobs):
                tg.start_soon(submit, job)
        async with client.as_completed(handles) as outcomes:
            async for outcome in outcomes:
                results = outcome.result.results if outcome.result else None
                if outcome.status is not JobStatus.COMPLETED or not results:
                    lines.append(f"{outcome.handle.job_id}: {outcome.status} {outcome.error}")
                    continue
                ones = [r["results"].get("1", 0) for r in results]
                lines.append(f"{results[0]['label']}: counts of 1 per step {ones}")
        if handles:
            response, _ = await client.get_status(handles[0])
            body = response.json()
            if isinstance(body, dict) and body.get("synthetic") is True:
                lines.append("(SYNTHETIC counts from the 'sampler' executor, not a simulation)")
    return lines


async def main() -> None:
    async with contextlib.AsyncExitStack() as stack:
        if len(sys.argv) == 3:
            base_url, token = sys.argv[1], sys.argv[2]
        elif os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
            base_url, token = os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
        else:
            from asyncjob.local import LocalScheduler

            scheduler = await stack.enter_async_context(
                LocalScheduler(job_duration=(0.2, 1.5), max_concurrent_jobs=8)
            )
            base_url, token = scheduler.base_url, scheduler.token
        for line in await run_pipeline(base_url, token):
            print(line)


if __name__ == "__main__":
    anyio.run(main)
