"""`as_completed`: follow many jobs at once and report each as it finishes."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._context import ClientContext, job_id_of
from ._errors import AsyncJobError
from ._models import ExecutionResult, JobStatus
from ._pollers import JobPollers
from ._results import ResultsFetcher
from ._status import WATCH_BATCH, StatusFollower, watch_groups

__all__ = ["JobOutcome", "as_completed"]

_FETCHERS_PER_CONNECTION = 2
"""Results fetchers per pooled connection (one decodes while another's request is
out), and polling workers (one handles an answer while another's request is out)."""

_Finished = tuple[ExecutionResult, JobStatus, dict[str, Any] | None]
"""A job that finished: its handle, status, and first results page if a watch answer
carried it (None for a polled job)."""


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

    A job that finishes goes to a few fetcher tasks (not a task of its own): a
    watch answer with hundreds of finished jobs then starts a few results
    requests in one loop iteration, not hundreds. Jobs not watched (and jobs
    the watch hands back) are polled likewise by a few workers (`JobPollers`),
    not a task each.
    """
    handles = list(handles)
    send, receive = anyio.create_memory_object_stream[JobOutcome](len(handles) or 1)
    policy = ctx.config.polling
    watch = policy.max_retries is None and policy.deadline is None and follower.can_watch()
    # Finished jobs' results that fit in one page may come with the watch answer.
    inline = ctx.config.limits.results_page_size if fetch_results else 0
    # As many fetchers and pollers as jobs at most (watched ones too: they may be handed back).
    workers = min(_FETCHERS_PER_CONNECTION * ctx.config.limits.max_connections, len(handles))
    pollers = JobPollers(follower)

    async def poll_the_rest(
        first: list[ExecutionResult],
        finished: MemoryObjectSendStream[_Finished],
        send: MemoryObjectSendStream[JobOutcome],
    ) -> None:
        def settle(handle: ExecutionResult, outcome: JobStatus | Exception) -> None:
            if isinstance(outcome, JobStatus):
                finished.send_nowait((handle, outcome, None))
            else:
                send.send_nowait(_failed(ctx, handle, outcome))

        with finished, send:
            await pollers.run(workers, first, settle)

    async def fetcher(
        finished: MemoryObjectReceiveStream[_Finished],
        send: MemoryObjectSendStream[JobOutcome],
    ) -> None:
        async with send, finished:
            async for handle, status, page in finished:
                outcome = await _outcome(ctx, results, handle, status, fetch_results, page)
                send.send_nowait(outcome)  # the buffer holds every job's outcome

    async def watcher(
        jobs: dict[str, list[ExecutionResult]],
        finished: MemoryObjectSendStream[_Finished],
        source: contextlib.AbstractContextManager[None],
    ) -> None:
        def done(
            handle: ExecutionResult, status: JobStatus | None, page: dict[str, Any] | None
        ) -> None:
            if status is None:  # to be polled
                pollers.add(handle)
            else:
                finished.send_nowait((handle, status, page))

        with source, finished:
            await follower.watch_jobs(jobs, done, inline=inline)

    async with anyio.create_task_group() as tg, receive:
        async with send:
            watched: dict[str, list[ExecutionResult]] = {}
            to_poll: list[ExecutionResult] = []
            for handle in handles:
                try:
                    job_id = job_id_of(handle)
                except ValueError as exc:  # reported, not raised
                    send.send_nowait(_failed(ctx, handle, exc))
                    continue
                if watch:
                    watched.setdefault(job_id, []).append(handle)
                else:
                    to_poll.append(handle)
            finished_send, finished_receive = anyio.create_memory_object_stream[_Finished](
                math.inf
            )
            with finished_send, finished_receive:
                for _ in range(workers):
                    tg.start_soon(fetcher, finished_receive.clone(), send.clone())
                for group in watch_groups(watched, WATCH_BATCH):
                    tg.start_soon(watcher, group, finished_send.clone(), pollers.source())
                tg.start_soon(poll_the_rest, to_poll, finished_send.clone(), send.clone())
        yield receive
        tg.cancel_scope.cancel()


async def _outcome(
    ctx: ClientContext,
    results: ResultsFetcher,
    handle: ExecutionResult,
    status: JobStatus,
    fetch_results: bool,
    page: dict[str, Any] | None = None,
) -> JobOutcome:
    """The outcome of a job with a terminal status: its results fetched when COMPLETED.

    `page` is the first results page when the watch answer carried it.
    """
    try:
        result = None
        if fetch_results and status is JobStatus.COMPLETED:
            result = await results.fetch(handle, page)
        return JobOutcome(handle, status, result)
    except (AsyncJobError, ValueError) as exc:
        return _failed(ctx, handle, exc, status)


def _failed(
    ctx: ClientContext,
    handle: ExecutionResult,
    exc: Exception,
    status: JobStatus = JobStatus.PENDING,
) -> JobOutcome:
    """The outcome of a job whose following failed: the last status seen, and why."""
    return JobOutcome(handle, ctx.seen.get(str(getattr(handle, "job_id", "")), status), None, exc)
