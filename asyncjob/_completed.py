"""`as_completed`: follow many jobs at once and report each as it finishes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._context import ClientContext
from ._errors import AsyncJobError
from ._models import ExecutionResult, JobStatus
from ._results import ResultsFetcher
from ._status import WATCH_BATCH, StatusFollower, watchable

__all__ = ["JobOutcome", "as_completed"]


@attrs.frozen
class JobOutcome:
    """One job of `as_completed`: its final status and, when COMPLETED, its results."""

    handle: ExecutionResult
    status: JobStatus
    result: ExecutionResult | None = None
    error: Exception | None = None
    """Why following this job failed: an `AsyncJobError`, or a `ValueError` for a bad handle."""


@contextlib.asynccontextmanager
async def as_completed(
    ctx: ClientContext,
    follower: StatusFollower,
    results: ResultsFetcher,
    handles: Iterable[ExecutionResult],
    *,
    fetch_results: bool = True,
) -> AsyncIterator[MemoryObjectReceiveStream[JobOutcome]]:
    """`AsyncJobClient.as_completed`: watch jobs in groups, poll the rest, report each."""
    handles = list(handles)
    send, receive = anyio.create_memory_object_stream[JobOutcome](len(handles) or 1)
    policy = ctx.config.polling
    watch = policy.max_retries is None and policy.deadline is None and follower.can_watch()

    async def report(
        handle: ExecutionResult,
        wait: Callable[[], Awaitable[JobStatus]],
        send: MemoryObjectSendStream[JobOutcome],
    ) -> None:
        async with send:
            await send.send(await _outcome(ctx, results, handle, wait, fetch_results))

    async def watcher(
        jobs: dict[str, list[ExecutionResult]], send: MemoryObjectSendStream[JobOutcome]
    ) -> None:
        def done(handle: ExecutionResult, wait: Callable[[], Awaitable[JobStatus]]) -> None:
            tg.start_soon(report, handle, wait, send.clone())

        async with send:
            await follower.watch_jobs(jobs, done)

    async with anyio.create_task_group() as tg, receive:
        async with send:
            watched: dict[str, list[ExecutionResult]] = {}
            for handle in handles:
                job_id = getattr(handle, "job_id", None)
                if watch and isinstance(job_id, str) and watchable(job_id):
                    watched.setdefault(job_id, []).append(handle)
                else:
                    tg.start_soon(report, handle, follower.follower(handle, None), send.clone())
            ids = list(watched)
            for start in range(0, len(ids), WATCH_BATCH):
                group = {job_id: watched[job_id] for job_id in ids[start : start + WATCH_BATCH]}
                tg.start_soon(watcher, group, send.clone())
        yield receive
        tg.cancel_scope.cancel()


async def _outcome(
    ctx: ClientContext,
    results: ResultsFetcher,
    handle: ExecutionResult,
    wait: Callable[[], Awaitable[JobStatus]],
    fetch_results: bool,
) -> JobOutcome:
    """Wait for the job's terminal status, fetch its results; errors go in the outcome."""
    status = JobStatus.PENDING
    try:
        status = await wait()
        result = None
        if fetch_results and status is JobStatus.COMPLETED:
            result = await results.fetch(handle)
        return JobOutcome(handle, status, result)
    except (AsyncJobError, ValueError) as exc:
        last = ctx.seen.get(str(getattr(handle, "job_id", "")), status)
        return JobOutcome(handle, last, None, exc)
