"""`AsyncJobClient`: the asyncio-native core that submits, polls, fetches and cancels jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _qasm
from ._batch import Submission, build_submission, encode_circuit
from ._cancel import run_until_event
from ._cleanup import Cleanups
from ._config import ClientConfig, Limits
from ._errors import (
    AsyncJobError,
    BadRequestError,
    ClientClosedError,
    ConnectionFailedError,
    HTTPStatusError,
    InvalidInputError,
    JobFailedError,
    JobNotCompleteError,
    MaxRetriesReachedError,
    ProtocolError,
    RequestTimeoutError,
)
from ._histogram import decode_result
from ._journal import Journal, PendingChunk
from ._journal_records import (
    Abandoned,
    Begin,
    Cancelling,
    Chunk,
    ChunkSent,
    Created,
    Record,
    Results,
    Status,
    Submitted,
)
from ._journal_writer import JournalWriter
from ._models import ExecutionResult, JobStatus, Response
from ._outcome import failure_reason
from ._parametric import check_pieces
from ._secrets import scrub
from ._sender import Sender, default_transport, job_path
from ._template_chunks import template_bodies
from ._transport import AsyncTransport

__all__ = ["AsyncJobClient", "JobOutcome"]

logger = logging.getLogger("asyncjob")
T = TypeVar("T")

_THREAD_THRESHOLD = 16
"""Batches larger than this are validated and encoded off the event loop."""
_ENCODE_SLICE = 256
"""Circuits compressed at a time between looks for a full chunk to send."""
_FINAL_CIRCUITS = 8
"""Most circuits in the final chunk of a multi-chunk submission (see `_small_final`)."""
_CLEANUP_TIMEOUT = 5.0
"""Seconds a caller waits for the cleanup of a submission that failed (not cancelled)."""
_KNOWN_LABELS = 16384
"""Jobs whose labels (and last seen status) are kept in memory; the journal keeps the rest."""
_WATCH_BATCH = 500
"""Jobs listed in one `jobs/watch/` request."""
_WATCH_HOLD = 60.0
"""Longest hold asked of the server (the local scheduler's cap)."""
_NO_WATCH = (400, 403, 404, 405, 410, 501)
"""Answers to `jobs/watch/` that mean the server does not have the extension."""


@attrs.frozen
class JobOutcome:
    """One job of `as_completed`: its final status and, when COMPLETED, its results."""

    handle: ExecutionResult
    status: JobStatus
    result: ExecutionResult | None = None
    error: Exception | None = None
    """Why following this job failed: an `AsyncJobError`, or a `ValueError` for a bad handle."""


def job_id_of(execution_result: ExecutionResult | str) -> str:
    """The job id of a handle; a handle without one is a `ValueError`."""
    job_id = (
        execution_result
        if isinstance(execution_result, str)
        else getattr(execution_result, "job_id", None)
    )
    if not job_id:
        raise InvalidInputError(
            "this ExecutionResult carries no job_id: it is not a remote job handle"
        )
    job_path(job_id)
    return job_id


class AsyncJobClient:
    """Submit circuit batches and follow them as remote jobs, from async code.

    ```python
    async with AsyncJobClient(base_url, token) as client:
        handle = await client.submit_circuits({"bell": BELL})
        await client.poll_job_status(handle, loop_until_complete=True)
        result = await client.get_job_results(handle)
    ```
    One connection pool per client (an `AiohttpTransport` unless `transport=`
    gives another, e.g. a `MockTransport` in tests); every request has its
    own timeout; any call can be cancelled (anyio cancel scope, or a
    `threading.Event`) without leaving a half-submitted job behind. A closed
    client refuses further requests (`ClientClosedError`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        shots: int = 1000,
        transport: AsyncTransport | None = None,
        **options: Any,
    ) -> None:
        self._setup(ClientConfig.build(base_url, token, shots, **options), transport)

    def _setup(self, config: ClientConfig, transport: AsyncTransport | None = None) -> None:
        self._config = config
        self._sender = Sender(config, transport or default_transport(config))
        self._labels: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._seen: OrderedDict[str, JobStatus] = OrderedDict()
        self._run_times: OrderedDict[str, float] = OrderedDict()
        self._writer = None if config.journal is None else JournalWriter(config.journal)
        self._cleanups = Cleanups()
        self._watch_missing = False

    @classmethod
    def from_config(
        cls, config: ClientConfig, *, transport: AsyncTransport | None = None
    ) -> AsyncJobClient:
        """A client for an already validated configuration."""
        client = cls.__new__(cls)
        client._setup(config, transport)
        return client

    @property
    def transport(self) -> AsyncTransport:
        """The transport requests go through (closed with the client)."""
        return self._sender.transport

    @property
    def is_closed(self) -> bool:
        """True once `aclose()` was called: the client sends nothing more."""
        return self._sender.closed

    @property
    def config(self) -> ClientConfig:
        """The validated configuration."""
        return self._config

    @property
    def shots(self) -> int:
        """Shots per circuit unless a submission says otherwise."""
        return self._config.shots

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent by this client so far (each retry counts)."""
        return self._sender.requests_sent

    def __repr__(self) -> str:
        return f"AsyncJobClient(base_url={self._config.base_url!r}, shots={self.shots})"

    async def __aenter__(self) -> AsyncJobClient:
        if self._sender.closed:
            raise ClientClosedError("this AsyncJobClient is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its connection pool, and write out the journal.

        Cleanups of cancelled submissions still running in the background are
        waited for first, within their bound (`CLEANUP_TIMEOUT`). Closing twice
        is harmless; any request after it is a `ClientClosedError`.
        """
        with anyio.CancelScope(shield=True):
            try:
                await self._cleanups.wait()
                await self._sender.aclose()
            finally:
                if self._writer is not None:  # off the loop: it waits for the writer thread
                    await anyio.to_thread.run_sync(self._writer.close)

    # -- submission -------------------------------------------------------

    async def submit_circuits(
        self,
        circuits: Mapping[str, str] | Iterable[str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Validate, create a job, upload the batch in chunks and return its handle.

        Every circuit is checked before anything is sent. If anything fails or is
        cancelled after the job was created, the job is cancelled before raising.
        """
        submission = build_submission(circuits, self._config, kwargs)
        return await run_until_event(
            cancellation_event, lambda: self._submit(submission), "submission"
        )

    async def _submit(self, submission: Submission) -> ExecutionResult:
        """Validate everything, then create the job while the batch is compressed.

        Chunks go out as soon as each is compressed (and journaled), so the
        server takes in one chunk while the next is being compressed.
        """
        bodies = await self._validate(submission)
        key = _new_key()
        options = {"init": submission.init_body, "ordered": submission.ordered_upload}
        await self._durable(
            self._log(Begin(key, self._config.base_url, submission.labels, options))
        )
        send, receive = anyio.create_memory_object_stream[PendingChunk](math.inf)
        try:
            async with anyio.create_task_group() as tg:
                if bodies is None:
                    tg.start_soon(self._encode_chunks, submission, key, send)
                else:
                    tg.start_soon(self._hand_over, bodies, key, send)
                job_id = await self._init(key, submission.init_body)
                self._remember_labels(job_id, submission.labels)
                sent = await self._upload(
                    key,
                    job_id,
                    receive,
                    ordered=submission.ordered_upload,
                    created=True,
                    final_required=True,
                )
        except BaseExceptionGroup as group:
            # The producer's own error, rather than the upload's note that it stopped.
            error = _first_leaf(group.split(_ChunksEnded)[1] or group)
            if not isinstance(error, anyio.get_cancelled_exc_class()):
                # The upload saw the producer's failure as a cancellation: wait here.
                with anyio.move_on_after(_CLEANUP_TIMEOUT):
                    await self._cleanups.join(key)
            raise error from None
        logger.debug("job %s submitted: %d circuits", job_id, len(submission.labels))
        return ExecutionResult(job_id=job_id, backend_jobs=sent)

    async def _validate(self, submission: Submission) -> list[dict[str, Any]] | None:
        """Check every circuit, and that each fits in a request, before anything is sent.

        A batch with parametric circuits gets all its chunk bodies built here
        (templates are compressed once, rows are cheap), and returned.
        """
        limits = self._config.limits

        def validate() -> list[dict[str, Any]] | None:
            if submission.pieces is not None:
                check_pieces(submission.pieces, full=self._config.full_qasm_check)
                return template_bodies(submission, limits.max_payload_bytes, limits.chunk_bytes)
            _qasm.check_batch(
                list(zip(submission.labels, submission.sources, strict=True)),
                full=self._config.full_qasm_check,
            )
            submission.check_sizes(limits.max_payload_bytes)
            return None

        if len(submission.labels) <= _THREAD_THRESHOLD:
            return validate()
        return await anyio.to_thread.run_sync(validate, abandon_on_cancel=True)

    async def _hand_over(
        self, bodies: list[dict[str, Any]], key: str, send: MemoryObjectSendStream[PendingChunk]
    ) -> None:
        """Journal and hand over chunk bodies built beforehand; the last one is final."""
        async with send:
            for index, body in enumerate(bodies):
                last = index == len(bodies) - 1
                chunk = self._journaled_chunk(key, index, body, last)
                try:
                    await send.send(chunk)
                except anyio.BrokenResourceError:
                    return  # the upload failed and stopped taking chunks

    def _journaled_chunk(
        self, key: str, index: int, body: dict[str, Any], last: bool
    ) -> PendingChunk:
        """A chunk with a key of its own, queued for the journal (see `_durable`)."""
        chunk = PendingChunk(index, _new_key(), body, final=last)
        ticket = self._log(Chunk(key, index, chunk.chunk_key, chunk.wire_body, last))
        return attrs.evolve(chunk, ticket=ticket)

    async def _encode_chunks(
        self, submission: Submission, key: str, send: MemoryObjectSendStream[PendingChunk]
    ) -> None:
        """Compress the batch slice by slice and hand over each chunk once it is full.

        Each chunk is journaled before it is handed over; the last one is final.
        """
        limits = self._config.limits
        max_bytes = limits.max_payload_bytes
        sources = submission.sources
        encoded: list[str] = []
        start = index = 0
        async with send:
            while len(encoded) < len(sources):
                more = sources[len(encoded) : len(encoded) + _ENCODE_SLICE]
                if len(more) <= _THREAD_THRESHOLD:
                    encoded += _encode_all(more)
                else:
                    encoded += await anyio.to_thread.run_sync(
                        _encode_all, more, abandon_on_cancel=True
                    )
                bodies = submission.chunk_bodies(encoded, max_bytes, start, limits.chunk_bytes)
                done = len(encoded) == len(sources)
                if done and (index > 0 or len(bodies) > 1):
                    bodies = _small_final(submission, encoded, bodies, limits)
                for body in bodies if done else bodies[:-1]:
                    start += len(body["circuits"])
                    last = start == len(sources)
                    chunk = self._journaled_chunk(key, index, body, last)
                    try:
                        await send.send(chunk)
                    except anyio.BrokenResourceError:
                        return  # the upload failed and stopped taking chunks
                    index += 1

    async def _init(self, key: str, init_body: dict[str, Any]) -> str:
        """`job/init/`; if its outcome is unknown when it fails, find that job and cancel it.

        Repeating the request with the same `Idempotency-Key` returns the job the
        first one may have created, without creating another.
        """
        try:
            response = await self._sender.request(
                "POST", "job/init/", body=init_body, idempotency_key=key
            )
        except BaseException as exc:
            if _outcome_known(exc):
                self._log(Abandoned(key))
            else:
                await self._clean_up(
                    exc, key, lambda: self._find_and_cancel(key, init_body), f"submission {key}"
                )
            raise
        with self._token_scrubbed():
            return _job_id_field(response)

    async def _find_and_cancel(self, key: str, init_body: dict[str, Any]) -> None:
        """Cancel the job a `job/init/` of unknown outcome may have created.

        Repeating it with the same `Idempotency-Key` returns that job without
        creating another (the server de-duplicates).
        """
        try:
            response = await self._sender.request(
                "POST", "job/init/", body=init_body, idempotency_key=key
            )
        except AsyncJobError as exc:
            if not _outcome_known(exc):
                raise
            self._log(Abandoned(key))  # refused: there is no job
            return
        job_id = _job_id_field(response)
        self._log(Created(key, job_id))
        await self._abandon(job_id, key)

    async def _clean_up(
        self, exc: BaseException, key: str | None, func: Callable[[], Awaitable[None]], what: str
    ) -> None:
        """Run `func` (cancelling a job) in the background; wait for it unless cancelled.

        A cancelled call returns at once and starts no request itself: the
        cleanup's requests go out from a task of the client's (see `_cleanup`),
        journaled as cancelling so that `resume` cancels the job rather than
        finishing the submission.
        """
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        if cancelled and key is not None:
            self._log(Cancelling(key))
        task = self._cleanups.start(func, f"cancelling the job of {what}", key)
        if not cancelled:
            with anyio.move_on_after(_CLEANUP_TIMEOUT):
                await asyncio.wait([task])  # a cancellation ends the wait, not the cleanup

    @contextlib.contextmanager
    def _token_scrubbed(self) -> Iterator[None]:
        """A `ProtocolError` quoting what the server sent never quotes the token.

        A server (or proxy) may echo the Authorization header back in any field.
        The message is scrubbed in place: a new error would chain the old one.
        """
        try:
            yield
        except ProtocolError as exc:
            exc.args = tuple(
                scrub(arg, self._config.token) if isinstance(arg, str) else arg for arg in exc.args
            )
            raise

    async def _upload(
        self,
        key: str,
        job_id: str,
        chunks: MemoryObjectReceiveStream[PendingChunk],
        *,
        ordered: bool,
        created: bool = False,
        final_required: bool = False,
    ) -> int:
        """Send the chunks as they come, the final one after every other one landed.

        Returns the number of chunks sent.
        On any failure or cancellation the job is cancelled. Every await between
        the job's creation and its finalization is inside the same guard, so no
        cancellation point can leave it un-finalized.
        """
        path = job_path(job_id, "add_circuits/")
        limiter = anyio.CapacityLimiter(self._config.limits.upload_concurrency)

        async def send(chunk: PendingChunk) -> None:
            await self._durable(chunk.ticket)  # journaled before it is sent
            await self._sender.request(
                "POST", path, body=chunk.wire_body, idempotency_key=chunk.chunk_key
            )
            self._log(ChunkSent(key, chunk.index))

        async def send_early(chunk: PendingChunk, borrower: object) -> None:
            try:
                await send(chunk)
            finally:
                limiter.release_on_behalf_of(borrower)

        try:
            if created:
                self._log(Created(key, job_id))
            final: list[PendingChunk] = []
            count = 0
            try:
                async with anyio.create_task_group() as tg, chunks:
                    async for chunk in chunks:
                        count += 1
                        if chunk.final:
                            final.append(chunk)
                        elif ordered:  # circuit_ham_map positions follow arrival order
                            await send(chunk)
                        else:
                            borrower = object()
                            await limiter.acquire_on_behalf_of(borrower)
                            tg.start_soon(send_early, chunk, borrower)
            except BaseExceptionGroup as group:
                raise _first_leaf(group) from None
            if final_required and not final:  # whoever made the chunks stopped early
                raise _ChunksEnded(f"the chunks of job {job_id} ended before the final one")
            for chunk in final:
                await send(chunk)
        except BaseException as exc:
            await self._clean_up(exc, key, lambda: self._abandon(job_id, key), f"job {job_id}")
            raise
        self._log(Submitted(key))
        return count

    async def _abandon(self, job_id: str, key: str | None = None) -> None:
        """Cancel a job whose submission failed, so it is not left un-finalized."""
        with anyio.move_on_after(_CLEANUP_TIMEOUT):
            try:
                await self._cancel(job_id)
            except AsyncJobError as exc:
                logger.warning("could not cancel abandoned job %s: %s", job_id, exc)
                return
            logger.info("submission of job %s failed; the job was cancelled", job_id)
            if key is not None:
                self._log(Abandoned(key))
            return
        logger.warning("cancelling abandoned job %s timed out", job_id)

    # -- journal ------------------------------------------------------------

    def _log(self, record: Record) -> int:
        """Queue a journal record (never blocks); its ticket for `_durable`, 0 if none."""
        return 0 if self._writer is None else self._writer.record(record)

    async def _durable(self, ticket: int) -> None:
        """Wait until a record is in the journal (not if the journal is degraded); see writer."""
        if ticket and self._writer is not None:
            await self._writer.durable(ticket)

    async def _from_journal(self, func: Callable[[Journal], T]) -> T | None:
        """`func(journal)` off the loop (abandoned on cancellation); None without a journal."""
        writer = self._writer
        if writer is None:
            return None

        def read() -> T | None:
            journal = writer.journal()
            return None if journal is None else func(journal)

        try:
            return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
        except (OSError, sqlite3.Error) as exc:
            logger.warning("journal %s could not be read: %s", writer.path, exc)
            return None

    @property
    def journal(self) -> Journal | None:
        """The job journal (None when disabled); opened on first use."""
        return None if self._writer is None else self._writer.journal()

    async def resume(
        self, execution_result: ExecutionResult | str, *, finish: bool = True
    ) -> ExecutionResult:
        """Re-attach to a job recorded in the journal, e.g. after the process died.

        Labels are restored, so results come back in submission order. A
        submission that was interrupted is completed by sending the chunks the
        server never acknowledged (with their original idempotency keys), or,
        with `finish=False`, cancelled. Accepts a job id or a submission key.
        """
        ref = getattr(execution_result, "job_id", execution_result)
        if not isinstance(ref, str) or not ref or self._writer is None:
            raise LookupError("resume needs a job id and an enabled journal")
        await self._writer.flush()
        base_url = self._config.base_url
        found = await self._from_journal(lambda j: (j.find(base_url, ref), j))
        if found is None:
            raise LookupError("resume needs a job id and an enabled journal")
        entry, journal = found
        if entry is None:
            raise LookupError(f"job {ref!r} is not in the journal {journal.path}")
        job_id = entry.job_id
        if entry.interrupted:
            # Everything that can wait happens before the job may be (re)created, so
            # no cancellation point sits between its creation and the upload's guard.
            pending = await anyio.to_thread.run_sync(journal.pending_chunks, entry.key)
            created = job_id is None
            if job_id is None:
                job_id = await self._init(entry.key, entry.options["init"])
            self._remember_labels(job_id, entry.labels)
            if finish and entry.complete and not entry.cancelling:
                await self._upload(
                    entry.key,
                    job_id,
                    _stream_of(pending),
                    ordered=bool(entry.options.get("ordered")),
                    created=created,
                )
            else:
                with anyio.CancelScope(shield=True):
                    await self._abandon(job_id, entry.key)
                if finish and entry.cancelling:
                    raise LookupError(
                        f"submission {entry.key} was cancelled, so it is not finished; "
                        f"its job {job_id} was cancelled"
                    )
                if finish:
                    raise LookupError(
                        f"submission {entry.key} stopped before all of its circuits were "
                        f"recorded, so it cannot be finished; its job {job_id} was cancelled"
                    )
        if job_id is None:  # an init that never got through, abandoned earlier
            raise LookupError(f"submission {ref!r} never created a job")
        self._remember_labels(job_id, entry.labels)
        return ExecutionResult(job_id=job_id)

    # -- status -----------------------------------------------------------

    async def poll_job_status(
        self,
        execution_result: ExecutionResult | str,
        loop_until_complete: bool = False,
        on_complete: Callable[[Response], None] | None = None,
        verbose: bool = True,
        progress_callback: Callable[[int, str], None] | None = None,
        cancellation_event: threading.Event | None = None,
    ) -> JobStatus:
        """Query the job's status once, or poll until it is terminal.

        `on_complete(response)` runs once at a terminal status;
        `progress_callback(poll_attempt, status)` after each non-terminal poll.
        A set `cancellation_event` ends the wait (not the job) within 100 ms.
        """
        job_id = job_id_of(execution_result)

        async def poll() -> JobStatus:
            return await self._poll(
                job_id, loop_until_complete, on_complete, verbose, progress_callback, hold=True
            )

        return await run_until_event(cancellation_event, poll, "polling")

    async def _poll(
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
        policy = self._config.polling
        deadline = None if policy.deadline is None else anyio.current_time() + policy.deadline
        attempt = 0
        last = "unknown"
        while True:
            attempt += 1
            sent = anyio.current_time()
            # The deadline bounds the request in flight too, retries included.
            left = math.inf if deadline is None else deadline - sent
            held = min(policy.delay(attempt), left) if hold and loop else 0.0
            with anyio.move_on_after(left) as wait:
                response, status = await self._status(job_id, held)
            if wait.cancelled_caught:
                raise MaxRetriesReachedError(job_id, attempt - 1, last)
            last = status.value
            if verbose:
                logger.info("job %s: %s (poll %d)", job_id, status.value, attempt)
            if status.is_terminal:
                if on_complete is not None:
                    on_complete(response)
                return status
            if progress_callback is not None:
                progress_callback(attempt, status.value)
            if not loop:
                return status
            if policy.max_retries is not None and attempt >= policy.max_retries:
                raise MaxRetriesReachedError(job_id, attempt, status.value)
            # Polls start one interval apart (not one interval after each answer),
            # so the request's own latency does not stretch the period.
            wake = sent + policy.delay(attempt)
            if deadline is not None:
                if anyio.current_time() >= deadline:
                    raise MaxRetriesReachedError(job_id, attempt, status.value)
                wake = min(wake, deadline)
            await anyio.sleep(max(0.0, wake - anyio.current_time()))

    async def get_status(
        self, execution_result: ExecutionResult | str
    ) -> tuple[Response, JobStatus]:
        """One status request: the response and the parsed status."""
        job_id = job_id_of(execution_result)
        response = await self._sender.request("GET", job_path(job_id, "status/"))
        where = f"{response.method} {response.path}"
        return response, self._note_status(job_id, response.json(), where)

    async def _status(self, job_id: str, hold: float) -> tuple[Response, JobStatus]:
        """The job's status; with `hold` > 0 a long poll, when the server can watch jobs."""
        if hold > 0 and self._can_watch():
            watched = await self._watch([job_id], hold)
            if watched is not None and watched.entries[job_id] is not None:
                entry = watched.entries[job_id]
                status = self._note_status(job_id, entry, watched.where)
                # Only a terminal status hands its response on (to `on_complete`).
                response = watched.response_of(job_id) if status.is_terminal else watched.response
                return response, status
        return await self.get_status(job_id)

    def _can_watch(self) -> bool:
        return self._config.polling.watch and not self._watch_missing

    async def _watch(self, job_ids: list[str], hold: float) -> _Watched | None:
        """One `jobs/watch/` long poll (an extension): each job's status, None if unknown.

        Returns None, and stops trying, when the server does not have the
        extension (an error status or an answer of another shape).
        """
        body = {"job_ids": job_ids, "timeout": hold}
        try:
            response = await self._sender.request("POST", "jobs/watch/", body=body, hold=hold)
            entries = _Watched.parse(response, job_ids)
        except (HTTPStatusError, ProtocolError) as exc:
            if isinstance(exc, HTTPStatusError) and exc.status_code not in _NO_WATCH:
                raise  # 401, 429 or 5xx after retries: trouble, not a missing extension
            logger.debug("no jobs/watch/ extension (%s); polling each job", exc)
            self._watch_missing = True
            return None
        return entries

    async def _watch_jobs(
        self,
        jobs: dict[str, list[ExecutionResult]],
        done: Callable[[ExecutionResult, Callable[[], Awaitable[JobStatus]]], None],
    ) -> None:
        """Follow `jobs` with `jobs/watch/` long polls; hand each over to `done` with its status.

        A finished job gets its terminal status; jobs the server does not know,
        and every job left if watching turns out impossible or fails, are handed
        over to be polled one by one (which reports their errors).
        """
        policy = self._config.polling
        rounds = 0
        try:
            while jobs and self._can_watch():
                rounds += 1
                sent = anyio.current_time()
                hold = min(policy.delay(rounds), _WATCH_HOLD)
                watched = await self._watch(list(jobs), hold)
                if watched is None:
                    break
                news = False
                for job_id, entry in watched.entries.items():
                    status = (
                        None if entry is None else self._note_status(job_id, entry, watched.where)
                    )
                    if status is None or status.is_terminal:
                        news = True
                        for handle in jobs.pop(job_id):
                            done(handle, self._follower(handle, status))
                if not news:  # a server that answers at once must not be polled in a loop
                    await anyio.sleep(max(0.0, sent + hold - anyio.current_time()))
        except AsyncJobError as exc:
            logger.warning("watching %d jobs failed (%s); polling each", len(jobs), exc)
        for handles in jobs.values():
            for handle in handles:
                done(handle, self._follower(handle, None))

    def _follower(
        self, handle: ExecutionResult, status: JobStatus | None
    ) -> Callable[[], Awaitable[JobStatus]]:
        """`status` as an awaitable, or (None) one that polls the job until it is terminal."""

        async def follow() -> JobStatus:
            if status is not None:
                return status
            return await self._poll(job_id_of(handle), True, None, False, None, hold=False)

        return follow

    def _note_status(self, job_id: str, data: object, where: str) -> JobStatus:
        """The status in a status body (from `where`), journaled when it changed."""
        with self._token_scrubbed():
            status = JobStatus.from_wire(_data_field(data, "status", str, where))
        if self._seen.get(job_id) is not status:
            _remember(self._seen, job_id, status)
            self._log(Status(self._config.base_url, job_id, status.value))
            if status.is_terminal:
                self._seen.pop(job_id, None)
        if status.is_terminal:
            _remember(self._run_times, job_id, _run_time(data))
        return status

    # -- results ----------------------------------------------------------

    async def get_job_results(self, execution_result: ExecutionResult | str) -> ExecutionResult:
        """Fetch every results page (concurrently once the total is known) and decode it.

        Results come back in submission order. A job that is not COMPLETED is a
        `JobNotCompleteError`. `run_time` is the one the job's terminal status
        reported when this client saw it (polling, watching), else 0.0: no
        request is made for it.
        """
        job_id = job_id_of(execution_result)
        path = job_path(job_id, "resultsV2/")
        size = self._config.limits.results_page_size
        with self._token_scrubbed():
            try:
                first = await self._sender.request(
                    "GET", path, params={"limit": size, "offset": 0}
                )
            except BadRequestError:
                response, status = await self.get_status(job_id)
                if status is not JobStatus.COMPLETED:
                    reason = failure_reason(response)
                    raise JobNotCompleteError(job_id, status.value, reason) from None
                raise
            page, entries = await _decoded_page(first, job_id)
            labels: set[str] = set()
            _new_labels(job_id, labels, entries)
            expected = await self._submitted_labels(job_id)
            count = _results_count(page, job_id, expected)
            if count is not None and count > len(entries):
                if not entries:
                    raise ProtocolError(f"job {job_id}: first results page is empty of {count}")
                # Pages come from the client's own URLs: a `next` link is not followed,
                # so it is not checked either. The first page's length is the page size
                # the server really uses.
                step = len(entries)
                entries.extend(
                    await self._fetch_pages(job_id, path, step, len(entries), count, labels)
                )
            else:
                await self._follow_pages(job_id, page.get("next"), entries, expected, labels)
            if count is not None and len(entries) != count:
                raise ProtocolError(
                    f"job {job_id}: the server counts {count} results but sent {len(entries)}"
                )
            results = _in_order(job_id, entries, expected)
        if self._config.journal_results:
            self._log(Results(self._config.base_url, job_id, results))
        run_time = self._run_times.get(job_id, 0.0)
        handle = execution_result if isinstance(execution_result, ExecutionResult) else None
        return (handle or ExecutionResult(job_id=job_id)).with_results(results, run_time)

    async def _fetch_pages(
        self, job_id: str, path: str, size: int, start: int, count: int, labels: set[str]
    ) -> list[dict[str, Any]]:
        """The pages from `start` to `count`, by a few workers (not one task per page).

        A page that brings nothing new (no entry, or a label already seen) is
        refused at once, so a forged `count` cannot keep the client busy.
        """
        offsets = range(start, count, size)
        pages: dict[int, list[dict[str, Any]]] = {}
        todo = iter(offsets)

        async def worker(number: int) -> None:
            for offset in todo:  # shared: each offset is taken by one worker
                response = await self._sender.request(
                    "GET", path, params={"limit": size, "offset": offset}
                )
                _, entries = await _decoded_page(response, job_id)
                if not entries:
                    raise ProtocolError(
                        f"job {job_id}: results page at offset {offset} is empty of {count}"
                    )
                _new_labels(job_id, labels, entries)
                pages[offset] = entries

        workers = min(self._config.limits.results_concurrency, len(offsets))
        await _run_bounded(worker, range(workers), workers)
        return [entry for offset in offsets for entry in pages[offset]]

    async def _follow_pages(
        self,
        job_id: str,
        link: object,
        entries: list[dict[str, Any]],
        expected: tuple[str, ...] | None,
        labels: set[str],
    ) -> None:
        """Follow `next` links (same origin only) until there is none; no loops, no padding."""
        followed: set[str] = set()
        while link is not None:
            url = str(link)
            if url in followed:
                raise ProtocolError(f"job {job_id}: results pagination loops")
            followed.add(url)
            response = await self._sender.request("GET", self._sender.same_origin_path(url))
            page, more = await _decoded_page(response, job_id)
            link = page.get("next")
            if not more and link is not None:
                raise ProtocolError(f"job {job_id}: empty results page with a next link")
            _new_labels(job_id, labels, more)
            entries.extend(more)
            if expected is not None and len(entries) > len(expected):
                raise ProtocolError(
                    f"job {job_id}: more results than the {len(expected)} circuits submitted"
                )

    async def _submitted_labels(self, job_id: str) -> tuple[str, ...] | None:
        """The labels in submission order, from memory or else from the journal."""
        labels = self._labels.get(job_id)
        if labels is None:
            base_url = self._config.base_url
            entry = await self._from_journal(lambda j: j.find(base_url, job_id))
            if entry is not None:
                labels = entry.labels
        return labels

    def _remember_labels(self, job_id: str, labels: tuple[str, ...]) -> None:
        _remember(self._labels, job_id, labels)

    # -- cancel -----------------------------------------------------------

    async def cancel_job(self, execution_result: ExecutionResult | str) -> Response:
        """Ask the scheduler to cancel the job; a job already terminal (409) is not an error."""
        return await self._cancel(job_id_of(execution_result))

    async def _cancel(self, job_id: str) -> Response:
        return await self._sender.request("POST", job_path(job_id, "cancel/"), ok=(409,))

    async def delete_job(self, execution_result: ExecutionResult | str) -> Response:
        """Remove the job record from the scheduler."""
        return await self._sender.request("DELETE", job_path(job_id_of(execution_result)))

    # -- conveniences -----------------------------------------------------

    async def run(
        self,
        circuits: Mapping[str, str] | Iterable[str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Submit, wait and fetch: the results of a batch, or `JobFailedError`."""

        async def run() -> ExecutionResult:
            handle = await self.submit_circuits(circuits, **kwargs)
            final: list[Response] = []
            try:
                status = await self.poll_job_status(
                    handle, loop_until_complete=True, on_complete=final.append, verbose=False
                )
            except BaseException as exc:
                job_id = job_id_of(handle)
                await self._clean_up(exc, None, lambda: self._abandon(job_id), f"job {job_id}")
                raise
            if status is not JobStatus.COMPLETED:
                reason = failure_reason(final[-1] if final else None)
                raise JobFailedError(job_id_of(handle), status.value, reason)
            return await self.get_job_results(handle)

        return await run_until_event(cancellation_event, run, "run")

    @contextlib.asynccontextmanager
    async def as_completed(
        self, handles: Iterable[ExecutionResult], *, fetch_results: bool = True
    ) -> AsyncIterator[MemoryObjectReceiveStream[JobOutcome]]:
        """Follow many jobs at once; iterate the stream to get each as it finishes.

        ```python
        async with client.as_completed(handles) as outcomes:
            async for outcome in outcomes:
                ...
        ```
        With `fetch_results`, a COMPLETED job's outcome carries its results. An
        error while following one job is reported in its outcome, not raised.
        Leaving the block early stops following the remaining jobs.
        """
        handles = list(handles)
        send, receive = anyio.create_memory_object_stream[JobOutcome](len(handles) or 1)
        policy = self._config.polling
        watch = policy.max_retries is None and policy.deadline is None and self._can_watch()

        async def report(
            handle: ExecutionResult,
            wait: Callable[[], Awaitable[JobStatus]],
            send: MemoryObjectSendStream[JobOutcome],
        ) -> None:
            async with send:
                await send.send(await self._outcome(handle, wait, fetch_results))

        async def watcher(
            jobs: dict[str, list[ExecutionResult]], send: MemoryObjectSendStream[JobOutcome]
        ) -> None:
            def done(handle: ExecutionResult, wait: Callable[[], Awaitable[JobStatus]]) -> None:
                tg.start_soon(report, handle, wait, send.clone())

            async with send:
                await self._watch_jobs(jobs, done)

        async with anyio.create_task_group() as tg, receive:
            async with send:
                watched: dict[str, list[ExecutionResult]] = {}
                for handle in handles:
                    job_id = getattr(handle, "job_id", None)
                    if watch and isinstance(job_id, str) and _watchable(job_id):
                        watched.setdefault(job_id, []).append(handle)
                    else:
                        tg.start_soon(report, handle, self._follower(handle, None), send.clone())
                ids = list(watched)
                for start in range(0, len(ids), _WATCH_BATCH):
                    group = {
                        job_id: watched[job_id] for job_id in ids[start : start + _WATCH_BATCH]
                    }
                    tg.start_soon(watcher, group, send.clone())
            yield receive
            tg.cancel_scope.cancel()

    async def _outcome(
        self,
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
                result = await self.get_job_results(handle)
            return JobOutcome(handle, status, result)
        except (AsyncJobError, ValueError) as exc:
            last = self._seen.get(str(getattr(handle, "job_id", "")), status)
            return JobOutcome(handle, last, None, exc)


class _ChunksEnded(AsyncJobError):
    """The chunk producer stopped before the final chunk (its own error says why)."""


def _small_final(
    submission: Submission,
    encoded: Sequence[str],
    bodies: list[dict[str, Any]],
    limits: Limits,
) -> list[dict[str, Any]]:
    """Split off the batch's last few circuits as the final chunk.

    The final chunk goes out only after every other chunk was acknowledged, so
    its upload and the server's work on it add to the submission's time in full.
    """
    count = len(bodies[-1]["circuits"])
    if count <= _FINAL_CIRCUITS:
        return bodies
    n = len(encoded)
    split = n - _FINAL_CIRCUITS
    max_bytes, target = limits.max_payload_bytes, limits.chunk_bytes
    return [
        *bodies[:-1],
        *submission.chunk_bodies(encoded[:split], max_bytes, n - count, target),
        *submission.chunk_bodies(encoded, max_bytes, split, target),
    ]


def _encode_all(sources: Sequence[str]) -> list[str]:
    return [encode_circuit(source) for source in sources]


def _stream_of(items: Iterable[T]) -> MemoryObjectReceiveStream[T]:
    """A closed stream holding `items`."""
    send, receive = anyio.create_memory_object_stream[T](math.inf)
    with send:
        for item in items:
            send.send_nowait(item)
    return receive


async def _run_bounded(
    func: Callable[[T], Awaitable[None]], items: Iterable[T], limit: int
) -> None:
    """`func(item)` for every item, at most `limit` at once.

    The first failure cancels the rest and is raised as itself, not wrapped in
    an exception group, so callers see the same exception types as sequentially.
    """
    limiter = anyio.CapacityLimiter(limit)

    async def run(item: T) -> None:
        async with limiter:
            await func(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(run, item)
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None


def _results_count(
    page: dict[str, Any], job_id: str, expected: tuple[str, ...] | None
) -> int | None:
    """The page's `count` when it is an int; it must be the number of circuits submitted."""
    count = page.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        return None
    if count < 0 or (expected is not None and count != len(expected)):
        shown = "" if expected is None else f" for the {len(expected)} circuits submitted"
        raise ProtocolError(f"job {job_id}: the server counts {count} results{shown}")
    return count


def _new_labels(job_id: str, labels: set[str], entries: list[dict[str, Any]]) -> None:
    """Add the labels of a page to `labels`; one seen before is refused at once."""
    for entry in entries:
        label = entry["label"]
        if label in labels:
            raise ProtocolError(f"job {job_id}: label {label!r} appears twice in results")
        labels.add(label)


def _in_order(
    job_id: str, entries: list[dict[str, Any]], expected: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """Results in submission order; missing or unknown labels are refused."""
    by_label = {entry["label"]: entry for entry in entries}  # labels are unique: _new_labels
    if expected is None:
        return entries
    missing = [label for label in expected if label not in by_label]
    unknown = sorted(set(by_label) - set(expected))
    if missing or unknown:
        raise ProtocolError(
            f"job {job_id}: results do not match the submission "
            f"(missing {missing[:5]}, unknown {unknown[:5]})"
        )
    return [by_label[label] for label in expected]


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _remember(memory: OrderedDict[str, T], key: str, value: T) -> None:
    """Store `value`, forgetting the oldest entries beyond `_KNOWN_LABELS`."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > _KNOWN_LABELS:
        memory.popitem(last=False)


def _outcome_known(exc: BaseException) -> bool:
    """True when a failed request certainly did not change anything on the server."""
    if isinstance(exc, HTTPStatusError):
        return exc.status_code < 500
    return isinstance(exc, AsyncJobError | ValueError | TypeError) and not isinstance(
        exc, RequestTimeoutError | ConnectionFailedError
    )


def _new_key() -> str:
    return str(uuid.uuid4())


def _field(response: Response, name: str, kind: type) -> Any:
    return _data_field(response.json(), name, kind, f"{response.method} {response.path}")


def _data_field(data: object, name: str, kind: type, where: str) -> Any:
    """`data[name]` when it is a (non-empty) `kind`; `where` names the answer in errors."""
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise ProtocolError(f"{where}: response has no valid {name!r} field")
    return value


def _run_time(data: object) -> float:
    """The seconds of execution a terminal status body reports; 0.0 when it has none."""
    value = data.get("run_time") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0


def _watchable(job_id: str) -> bool:
    """True for an id that makes a valid job path (others are reported by polling)."""
    try:
        job_path(job_id)
    except ValueError:
        return False
    return True


@attrs.frozen
class _Watched:
    """A `jobs/watch/` answer: each job's status entry (None: a job the server does not know)."""

    response: Response
    entries: dict[str, dict[str, Any] | None]

    @property
    def where(self) -> str:
        return f"{self.response.method} {self.response.path}"

    @classmethod
    def parse(cls, response: Response, job_ids: list[str]) -> _Watched:
        data = response.json()
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, dict) or not all(
            isinstance(jobs.get(job_id), dict | None) and job_id in jobs for job_id in job_ids
        ):
            raise ProtocolError(f"{response.method} {response.path}: no status for every job")
        return cls(response, {job_id: jobs[job_id] for job_id in job_ids})

    def response_of(self, job_id: str) -> Response:
        """The job's entry as a `Response` of its own, for `on_complete` callbacks."""
        return attrs.evolve(self.response, text=json.dumps(self.entries[job_id]))


def _job_id_field(response: Response) -> str:
    job_id: str = _field(response, "job_id", str)
    try:
        job_path(job_id)
    except ValueError:
        raise ProtocolError(f"server returned an unusable job id {job_id[:40]!r}") from None
    return job_id


_DECODE_IN_THREAD = 64 * 1024
"""Pages with more text than this are decoded off the event loop."""


async def _decoded_page(
    response: Response, job_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A results page and its entries, histograms decoded."""
    data = response.json()
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ProtocolError(f"{response.method} {response.path}: results page has no list")

    def decode() -> list[dict[str, Any]]:
        entries = []
        for entry in data["results"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
                raise ProtocolError(f"job {job_id}: malformed result entry")
            entries.append(
                {"label": entry["label"], "results": decode_result(entry.get("results"))}
            )
        return entries

    if len(response.text) > _DECODE_IN_THREAD:
        return data, await anyio.to_thread.run_sync(decode, abandon_on_cancel=True)
    return data, decode()
