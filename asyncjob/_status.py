"""Following jobs: one status request, the polling loop, and `jobs/watch/` long polls."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from ._context import ClientContext, data_field, job_id_of, remember
from ._errors import AsyncJobError, HTTPStatusError, MaxRetriesReachedError, ProtocolError
from ._journal_records import Status
from ._models import ExecutionResult, JobStatus, Response
from ._sender import job_path

__all__ = ["WATCH_BATCH", "Polling", "StatusFollower", "watch_groups"]

logger = logging.getLogger("asyncjob")

WATCH_BATCH = 5000
"""Most jobs listed in one `jobs/watch/` request: a round costs about a millisecond of
client CPU whatever its size, so thousands of jobs are followed with few rounds."""
SMALL_WATCH_BATCH = 500
"""Jobs per `jobs/watch/` request for a server that refuses a larger list (400 or 413;
older local schedulers took up to 1,000 ids): such a group is followed in groups of this
size rather than polled job by job."""
_WATCH_HOLD = 60.0
"""Longest hold asked of the server (the local scheduler's cap)."""
_WIRE_STATUS = {status.value: status for status in JobStatus}
"""Statuses as the protocol spells them (the common case, parsed without `from_wire`)."""
_NOTED_AT_ONCE = 100
"""Entries of a watch answer noted (and handed over) in one loop iteration."""
_NO_WATCH = (400, 403, 404, 405, 410, 501)
"""Answers to `jobs/watch/` that mean the server does not have the extension."""
INLINE_RESULTS_MAX = 100
"""Most results a job may have to come inline in a watch answer (`inline_results`): the
pages of thousands of jobs may share one answer (the local scheduler caps an answer at
1,000 results; an answer over `max_response_bytes` makes the client ask without them)."""


@attrs.define
class Polling:
    """Where one job's polling loop is: its polls so far, and when the last one went."""

    job_id: str
    deadline: float | None
    """The loop's end on the clock of `anyio.current_time()`; None: no deadline."""
    attempt: int = 0
    sent: float = 0.0
    last: str = "unknown"
    """The status the last poll found, as the protocol spells it."""


class StatusFollower:
    """Reads job statuses (polls or long polls), noting each change in memory and journal."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._missing = False
        """True once the server showed it has no `jobs/watch/` extension."""
        self._no_inline = False
        """True once a watch answer with results inline failed (refused, or too large)."""
        self._answers = anyio.Lock()
        """Held to parse or note a watch answer: the groups of `watch_jobs` often get
        theirs in the same turn of the loop, and handling them all at once stalls it."""

    async def poll(
        self,
        job_id: str,
        loop: bool,
        on_complete: Callable[[Response], None] | None,
        verbose: bool,
        progress_callback: Callable[[int, str], None] | None,
        *,
        hold: bool,
    ) -> JobStatus:
        """The polling loop; with `hold`, each poll may be a long poll of one interval."""
        polling = self.start_polling(job_id)
        while True:
            response, status = await self.poll_once(polling, hold=hold and loop)
            if verbose:
                logger.info("job %s: %s (poll %d)", job_id, status.value, polling.attempt)
            if status.is_terminal:
                if on_complete is not None:
                    on_complete(response)
                return status
            if progress_callback is not None:
                progress_callback(polling.attempt, status.value)
            if not loop:
                return status
            await anyio.sleep(max(0.0, self.next_poll(polling, status) - anyio.current_time()))

    def start_polling(self, job_id: str) -> Polling:
        """A polling loop for `job_id` that starts now (its deadline counts from now)."""
        deadline = self._ctx.config.polling.deadline
        return Polling(job_id, None if deadline is None else anyio.current_time() + deadline)

    async def poll_once(self, polling: Polling, *, hold: bool) -> tuple[Response, JobStatus]:
        """The loop's next poll; with `hold`, a long poll of one interval where possible.

        Raises `MaxRetriesReachedError` when the deadline passes first.
        """
        polling.attempt += 1
        polling.sent = anyio.current_time()
        policy = self._ctx.config.polling
        # The deadline bounds the request in flight too, retries included.
        left = math.inf if polling.deadline is None else polling.deadline - polling.sent
        held = min(policy.delay(polling.attempt), left) if hold else 0.0
        if polling.deadline is None:  # no cancel scope to enter and leave on each poll
            response, status = await self._status(polling.job_id, held)
        else:
            with anyio.move_on_after(left) as wait:
                response, status = await self._status(polling.job_id, held)
            if wait.cancelled_caught:
                raise MaxRetriesReachedError(polling.job_id, polling.attempt - 1, polling.last)
        polling.last = status.value
        return response, status

    def next_poll(self, polling: Polling, status: JobStatus) -> float:
        """When the loop polls again after a poll that found `status` (not terminal).

        Raises `MaxRetriesReachedError` when the policy allows no more polls.
        """
        policy = self._ctx.config.polling
        if policy.max_retries is not None and polling.attempt >= policy.max_retries:
            raise MaxRetriesReachedError(polling.job_id, polling.attempt, status.value)
        # Polls start one interval apart (not one interval after each answer),
        # so the request's own latency does not stretch the period.
        wake = polling.sent + policy.delay(polling.attempt)
        if polling.deadline is not None:
            if anyio.current_time() >= polling.deadline:
                raise MaxRetriesReachedError(polling.job_id, polling.attempt, status.value)
            wake = min(wake, polling.deadline)
        return wake

    async def get_status(
        self, execution_result: ExecutionResult | str
    ) -> tuple[Response, JobStatus]:
        """One status request: the response and the parsed status."""
        job_id = job_id_of(execution_result)
        response = await self._ctx.sender.request("GET", job_path(job_id, "status/"))
        where = f"{response.method} {response.path}"
        return response, self._note_status(job_id, response.json(), where)

    async def _status(self, job_id: str, hold: float) -> tuple[Response, JobStatus]:
        """The job's status; with `hold` > 0 a long poll, when the server can watch jobs."""
        if hold > 0 and self.can_watch():
            watched = await self._watch([job_id], hold)
            if watched is not None and watched.entries[job_id] is not None:
                entry = watched.entries[job_id]
                status = self._note_status(job_id, entry, watched.where)
                # Only a terminal status hands its response on (to `on_complete`).
                response = watched.response_of(job_id) if status.is_terminal else watched.response
                return response, status
        return await self.get_status(job_id)

    def can_watch(self) -> bool:
        return self._ctx.config.polling.watch and not self._missing

    async def _watch(
        self, job_ids: list[str], hold: float, *, settled_only: bool = False, inline: int = 0
    ) -> _Watched | None:
        """One `jobs/watch/` long poll (an extension): each job's status, None if unknown.

        With `settled_only`, the server may leave out jobs that are not settled
        (neither terminal nor unknown): hundreds of running jobs are then not
        sent back, and parsed, at every round. With `inline` > 0, a COMPLETED
        job with at most that many results may carry them (`results_page`).
        Returns None, and stops trying, when the server does not have the
        extension (an error status or an answer of another shape).
        """
        body: dict[str, Any] = {"job_ids": job_ids, "timeout": hold}
        if settled_only:
            body["settled_only"] = True
        inline = 0 if self._no_inline else min(inline, INLINE_RESULTS_MAX)
        if inline:
            body["inline_results"] = inline
        try:
            response = await self._ctx.sender.request("POST", "jobs/watch/", body=body, hold=hold)
        except (HTTPStatusError, ProtocolError) as exc:
            if (
                isinstance(exc, HTTPStatusError)
                and exc.status_code in (400, 413)
                and len(job_ids) > SMALL_WATCH_BATCH
            ):
                raise _GroupTooLarge(str(exc)) from exc  # a smaller cap, not a missing extension
            if isinstance(exc, HTTPStatusError) and exc.status_code not in _NO_WATCH:
                raise  # 401, 429 or 5xx after retries: trouble, not a missing extension
            if not inline or (isinstance(exc, HTTPStatusError) and exc.status_code != 400):
                self._no_watch(exc)  # no route, method or feature: no extension at all
                return None
            # Refused (400), or too large, with results inline: ask again without them.
            logger.debug("jobs/watch/ with inline results failed (%s); without them", exc)
            self._no_inline = True
            return await self._watch(job_ids, hold, settled_only=settled_only)
        async with self._answers:
            try:
                return _Watched.parse(response, job_ids, partial=settled_only)
            except ProtocolError as exc:
                self._no_watch(exc)
                return None

    def _no_watch(self, exc: Exception) -> None:
        """Note that the server has no `jobs/watch/` extension: jobs are polled from now on."""
        logger.debug("no jobs/watch/ extension (%s); polling each job", exc)
        self._missing = True

    async def watch_jobs(
        self,
        jobs: dict[str, list[ExecutionResult]],
        done: Callable[[ExecutionResult, JobStatus | None, dict[str, Any] | None], None],
        *,
        inline: int = 0,
    ) -> None:
        """Follow `jobs` with `jobs/watch/` long polls; hand each over to `done` with its status.

        Rounds start at least `PollingPolicy.watch_pace` apart.
        A finished job gets its terminal status, and its first results page when
        the answer carried one (`inline` > 0 asks for those, see `_watch`), else
        None; jobs the server does not know, and every job left if watching
        turns out impossible or fails, get None as status: they are to be
        polled (`JobPollers`, which reports their errors).
        """
        policy = self._ctx.config.polling
        rounds = 0
        try:
            while jobs and self.can_watch():
                rounds += 1
                sent = _now()
                hold = min(policy.delay(rounds), _WATCH_HOLD)
                try:
                    watched = await self._watch(list(jobs), hold, settled_only=True, inline=inline)
                except _GroupTooLarge:
                    logger.debug(
                        "jobs/watch/ refused %d ids; in groups of %d", len(jobs), SMALL_WATCH_BATCH
                    )
                    async with anyio.create_task_group() as tg:
                        for group in watch_groups(jobs, SMALL_WATCH_BATCH):
                            tg.start_soon(
                                functools.partial(self.watch_jobs, group, done, inline=inline)
                            )
                    return
                if watched is None:
                    break
                news = False
                where = watched.where
                async with self._answers:
                    for number, (job_id, entry) in enumerate(watched.entries.items(), 1):
                        # Not thousands of jobs in one loop iteration.
                        if number % _NOTED_AT_ONCE == 0:
                            await anyio.lowlevel.checkpoint()
                        status = None if entry is None else self._note_status(job_id, entry, where)
                        if status is None or status.is_terminal:
                            news = True
                            page = _inline_page(entry) if status is JobStatus.COMPLETED else None
                            for handle in jobs.pop(job_id):
                                done(handle, status, page)
                if not jobs:
                    break
                # The next round starts one pace after this one did, so that it
                # collects the jobs finished meanwhile; after a round without news,
                # one hold after (a server that answers at once is not polled in a loop);
                # at once when the server has more finished jobs than it could send.
                if not (news and watched.more):
                    await _sleep_until(sent + (policy.watch_pace if news else hold))
        except AsyncJobError as exc:
            logger.warning("watching %d jobs failed (%s); polling each", len(jobs), exc)
        for number, handles in enumerate(jobs.values(), 1):
            if number % _NOTED_AT_ONCE == 0:  # not thousands in one loop iteration
                await anyio.lowlevel.checkpoint()
            for handle in handles:
                done(handle, None, None)

    def _note_status(self, job_id: str, data: object, where: str) -> JobStatus:
        """The status in a status body (from `where`), journaled when it changed."""
        raw = data.get("status") if isinstance(data, dict) else None
        status = _WIRE_STATUS.get(raw) if isinstance(raw, str) else None
        if status is None:  # not spelled as the protocol does: checked, or refused
            with self._ctx.token_scrubbed():
                status = JobStatus.from_wire(data_field(data, "status", str, where))
        if self._ctx.seen.get(job_id) is not status:
            remember(self._ctx.seen, job_id, status)
            self._ctx.log(Status(self._ctx.config.base_url, job_id, status.value))
            if status.is_terminal:
                self._ctx.seen.pop(job_id, None)
        if status.is_terminal:
            remember(self._ctx.run_times, job_id, _run_time(data))
        return status


class _GroupTooLarge(AsyncJobError):
    """A `jobs/watch/` request listing more ids than the old group size was refused."""


def watch_groups(
    jobs: dict[str, list[ExecutionResult]], size: int
) -> Iterator[dict[str, list[ExecutionResult]]]:
    """`jobs` cut into groups of at most `size`, each followed by `watch_jobs` on its own."""
    ids = list(jobs)
    for start in range(0, len(ids), size):
        yield {job_id: jobs[job_id] for job_id in ids[start : start + size]}


def _inline_page(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The results page a watch entry carries (`inline_results`); None if none or not a dict."""
    page = None if entry is None else entry.get("results_page")
    return page if isinstance(page, dict) else None


def _now() -> float:
    """The clock of the watch rounds' pace (a function of its own: tests replace it)."""
    return anyio.current_time()


async def _sleep_until(when: float) -> None:
    """Sleep until `_now()` reaches `when`; no sleep (nor checkpoint) once it has."""
    left = when - _now()
    if left > 0:
        await anyio.sleep(left)


def _run_time(data: object) -> float:
    """The seconds of execution a terminal status body reports; 0.0 when it has none."""
    value = data.get("run_time") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0


@attrs.frozen
class _Watched:
    """A `jobs/watch/` answer: each job's status entry (None: a job the server does not know)."""

    response: Response
    entries: dict[str, dict[str, Any] | None]
    more: bool = False
    """The server left out finished jobs whose results did not fit: ask again at once."""

    @property
    def where(self) -> str:
        return f"{self.response.method} {self.response.path}"

    @classmethod
    def parse(cls, response: Response, job_ids: list[str], *, partial: bool = False) -> _Watched:
        """The entries of the listed jobs; with `partial`, jobs left out are still running."""
        data = response.json()
        jobs = data.get("jobs") if isinstance(data, dict) else None
        entries: dict[str, dict[str, Any] | None] = {}
        if isinstance(jobs, dict) and (not partial or len(jobs) <= len(job_ids)):
            for job_id in jobs if partial else job_ids:
                entry = jobs.get(job_id, False)  # False: not there at all
                if entry is not None and not isinstance(entry, dict):
                    break
                entries[job_id] = entry
            else:
                if not partial or entries.keys() <= set(job_ids):
                    return cls(response, entries, partial and data.get("more") is True)
        raise ProtocolError(f"{response.method} {response.path}: no status for every job")

    def response_of(self, job_id: str) -> Response:
        """The job's entry as a `Response` of its own, for `on_complete` callbacks."""
        return attrs.evolve(self.response, text=json.dumps(self.entries[job_id]))
