"""`as_completed`: follow many jobs at once and report each as it finishes."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._context import ClientContext
from ._errors import AsyncJobError
from ._models import ExecutionResult, JobStatus
from ._results import ResultsFetcher
from ._status import WATCH_BATCH, StatusFollower, watch_groups, watchable

__all__ = ["JobOutcome", "as_completed"]

_FETCHERS_PER_CONNECTION = 2
"""Results fetchers per pooled connection: one decodes while another's request is out."""
_STARTED_AT_ONCE = 64
"""Polling tasks started in one loop iteration."""

_Finished = tuple[ExecutionResult, JobStatus, dict[str, Any] | None]
"""A watched job that finished: its handle, status, and first results page if it came along."""


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
    """`AsyncJobClient.as_completed`: watch jobs in groups, poll the rest, report each.

    A watched job that finishes goes to a few fetcher tasks (not a task of its
    own): a watch answer with hundreds of finished jobs then starts a few
    results requests in one loop iteration, not hundreds.
    """
    handles = list(handles)
    send, receive = anyio.create_memory_object_stream[JobOutcome](len(handles) or 1)
    policy = ctx.config.polling
    watch = policy.max_retries is None and policy.deadline is None and follower.can_watch()
    # Finished jobs' results that fit in one page may come with the watch answer.
    inline = ctx.config.limits.results_page_size if fetch_results else 0

    async def report(
        handle: ExecutionResult, status: JobStatus | None, send: MemoryObjectSendStream[JobOutcome]
    ) -> None:
        async with send:
            await send.send(await _outcome(ctx, follower, results, handle, status, fetch_results))

    async def pollers(
        polled: list[ExecutionResult], send: MemoryObjectSendStream[JobOutcome]
    ) -> None:
        """A polling task per job, started a few per loop iteration, not all in one."""
        async with send:
            for number, handle in enumerate(polled):
                if number and number % _STARTED_AT_ONCE == 0:
                    await anyio.lowlevel.checkpoint()
                tg.start_soon(report, handle, None, send.clone())

    async def fetcher(
        finished: MemoryObjectReceiveStream[_Finished],
        send: MemoryObjectSendStream[JobOutcome],
    ) -> None:
        async with send, finished:
            async for handle, status, page in finished:
                outcome = await _outcome(
                    ctx, follower, results, handle, status, fetch_results, page
                )
                send.send_nowait(outcome)  # the buffer holds every job's outcome

    async def watcher(
        jobs: dict[str, list[ExecutionResult]],
        finished: MemoryObjectSendStream[_Finished],
        send: MemoryObjectSendStream[JobOutcome],
    ) -> None:
        def done(
            handle: ExecutionResult, status: JobStatus | None, page: dict[str, Any] | None
        ) -> None:
            if status is None:  # to be polled: a task of its own
                tg.start_soon(report, handle, None, send.clone())
            else:
                finished.send_nowait((handle, status, page))

        async with send, finished:
            await follower.watch_jobs(jobs, done, inline=inline)

    async with anyio.create_task_group() as tg, receive:
        async with send:
            watched: dict[str, list[ExecutionResult]] = {}
            polled: list[ExecutionResult] = []
            for handle in handles:
                job_id = getattr(handle, "job_id", None)
                if watch and isinstance(job_id, str) and watchable(job_id):
                    watched.setdefault(job_id, []).append(handle)
                else:
                    polled.append(handle)
            if polled:
                tg.start_soon(pollers, polled, send.clone())
            if watched:
                finished_send, finished_receive = anyio.create_memory_object_stream[_Finished](
                    math.inf
                )
                with finished_send, finished_receive:
                    fetchers = _FETCHERS_PER_CONNECTION * ctx.config.limits.max_connections
                    for _ in range(min(fetchers, len(handles))):
                        tg.start_soon(fetcher, finished_receive.clone(), send.clone())
                    for group in watch_groups(watched, WATCH_BATCH):
                        tg.start_soon(watcher, group, finished_send.clone(), send.clone())
        yield receive
        tg.cancel_scope.cancel()


async def _outcome(
    ctx: ClientContext,
    follower: StatusFollower,
    results: ResultsFetcher,
    handle: ExecutionResult,
    status: JobStatus | None,
    fetch_results: bool,
    page: dict[str, Any] | None = None,
) -> JobOutcome:
    """The job's terminal status (polled when None) and results; errors go in the outcome.

    `page` is the first results page when the watch answer carried it.
    """
    last = JobStatus.PENDING
    try:
        if status is None:
            status = await follower.until_terminal(handle)
        last = status
        result = None
        if fetch_results and status is JobStatus.COMPLETED:
            result = await results.fetch(handle, page)
        return JobOutcome(handle, status, result)
    except (AsyncJobError, ValueError) as exc:
        last = ctx.seen.get(str(getattr(handle, "job_id", "")), last)
        return JobOutcome(handle, last, None, exc)
