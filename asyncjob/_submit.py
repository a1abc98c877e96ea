"""The submission pipeline: validate, encode, create the job, upload its chunks, finish or abandon.

`Submitter` also completes (or cancels) a submission the journal shows was
interrupted, e.g. by the death of the process (`resume`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Sized
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _qasm
from ._batch import Submission, build_submission
from ._cleanup import never_sent
from ._config import Limits
from ._context import ClientContext, data_field, first_leaf
from ._encode import ENCODE_SLICE, THREAD_THRESHOLD, PlainBatch, encode_all
from ._errors import (
    AsyncJobError,
    ConnectionFailedError,
    HTTPStatusError,
    ProtocolError,
    RequestTimeoutError,
    ResumeError,
)
from ._forksafe import PerLoop
from ._journal import PendingChunk
from ._journal_records import Abandoned, Begin, Cancelling, Chunk, ChunkSent, Created, Submitted
from ._models import ExecutionResult, Response
from ._parametric import ParametricCircuit, check_pieces
from ._sender import job_path
from ._template_chunks import template_bodies
from ._turns import Slots, Turns
from ._wire import wire_json

__all__ = ["Submitter"]

logger = logging.getLogger("asyncjob")
T = TypeVar("T")

_FINAL_CIRCUITS = 8
"""Most circuits in the final chunk of a multi-chunk submission (see `_small_final`)."""
_CLEANUP_TIMEOUT = 5.0
"""Seconds a caller waits for the cleanup of a submission that failed (not cancelled)."""
_PREPARING = 4
"""Submissions whose batch is checked (and a small one compressed) at the same time."""
_FIRST_CHUNK_REFUSED = (400, 413, 422)
"""Answers to a `job/init/` carrying `first_chunk` after which it is sent again without."""
IN_FLIGHT_PER_CONNECTION = 4
"""Submissions under way per pooled connection (`max_connections`); later ones wait their turn.

A one-chunk submission needs one or two round trips and a journal commit: four
per connection keep every connection busy, and thousands of submissions started
together wait holding next to nothing (not their bodies, requests and tasks).
"""


class Submitter:
    """Sends a batch as a job: journaled chunk by chunk, cancelled if it cannot finish."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._no_first_chunk = False
        """True once a server refused a `job/init/` carrying `first_chunk`, then took it plain."""
        self._preparing = PerLoop(lambda: Turns(_PREPARING))
        admitted = IN_FLIGHT_PER_CONNECTION * ctx.config.limits.max_connections
        self._admitting = PerLoop(lambda: Slots(admitted))

    async def submit_batch(self, circuits: object, options: Mapping[str, Any]) -> ExecutionResult:
        """`submit_circuits`: wait for a turn, check (and compress) the batch, then send it.

        Only `IN_FLIGHT_PER_CONNECTION` submissions per pooled connection are
        under way at a time; the others wait in `Slots` before their batch is
        looked at, holding no bodies, records, requests or chains of coroutines
        while they queue for a connection: with thousands of them alive, each
        full pass of the garbage collector stalled the event loop for 50-150 ms.
        """
        admission = self._admitting.get()
        turn = admission.take()
        if turn is not None:  # awaited here: a waiter keeps this one coroutine, no other
            try:
                await turn
            except BaseException:
                admission.leave(turn)
                raise
        try:
            async with self.preparing():
                submission = await self._build(circuits, options)
                bodies = self.prepare(submission)
            return await self.submit(submission, bodies)
        finally:
            admission.release()

    async def _build(self, circuits: object, options: Mapping[str, Any]) -> Submission:
        """`build_submission`; in a worker thread for a batch of more than `THREAD_THRESHOLD`.

        Checking the labels of 50,000 circuits takes 20-30 ms: on the loop, that
        is one stall; in a thread, the loop gets the GIL back between the checks.
        """
        config = self._ctx.config
        if _size(circuits) <= THREAD_THRESHOLD:
            return build_submission(circuits, config, options)
        return await anyio.to_thread.run_sync(
            build_submission, circuits, config, options, abandon_on_cancel=True
        )

    def preparing(self) -> Turns:
        """Admits a few submissions at a time to the CPU work before their first request.

        Thousands of submissions started together would otherwise each check
        their batch in the same turn of the event loop, stalling it for a second.
        """
        return self._preparing.get()

    def prepare(self, submission: Submission) -> list[dict[str, Any]] | None:
        """A small batch's chunk bodies: validated and compressed here, on the loop.

        Called inside `preparing()`, so thousands of small submissions started
        together check and compress their batches a few at a time, not all in
        one turn of the loop. None for a larger batch: `submit` does it off the loop.
        """
        if len(submission.labels) > THREAD_THRESHOLD:
            return None
        if submission.pieces is not None:
            return self._checked(submission)
        self._check_circuits(submission)
        # Not `check_sizes`: cutting the bodies refuses a circuit too large for a request.
        limits = self._ctx.config.limits
        return _bodies(submission, encode_all(submission.sources), 0, 0, True, limits)

    async def submit(
        self, submission: Submission, bodies: list[dict[str, Any]] | None = None
    ) -> ExecutionResult:
        """Validate everything, then create the job and upload the compressed chunks.

        `bodies` are the chunk bodies `prepare` built (None: validate and build
        them here). A large plain batch is compressed while it is validated, in
        worker threads (`_encode`); nothing is journaled or sent before the last
        circuit has passed. Chunks go out as soon as each is compressed (and
        journaled), so the server takes in one chunk while the next is being
        compressed.
        """
        if bodies is not None and len(bodies) == 1:
            return await self._submit_one(submission, bodies[0])
        key = _new_key()
        send, receive = anyio.create_memory_object_stream[PendingChunk](math.inf)
        try:
            async with anyio.create_task_group() as tg:
                slices: MemoryObjectReceiveStream[list[str]] | None = None
                if bodies is None:
                    async with self.preparing():
                        if (
                            submission.pieces is None
                            and len(submission.sources) > THREAD_THRESHOLD
                        ):
                            slices_send, slices = anyio.create_memory_object_stream[list[str]](
                                math.inf
                            )
                            await self._validate_large(submission, tg, slices_send)
                        else:
                            bodies = await self._validate(submission)
                options = {"init": submission.init_body, "ordered": submission.ordered_upload}
                await self._ctx.durable(
                    self._ctx.log(
                        Begin(key, self._ctx.config.base_url, submission.labels, options)
                    )
                )
                if bodies is None:
                    tg.start_soon(self._encode_chunks, submission, key, slices, send)
                else:
                    tg.start_soon(self._hand_over, bodies, key, send)
                job_id, _ = await self._init(key, submission.init_body)
                self._ctx.remember_labels(job_id, submission.labels)
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
            error = first_leaf(group.split(_ChunksEnded)[1] or group)
            if not isinstance(error, anyio.get_cancelled_exc_class()):
                # The upload saw the producer's failure as a cancellation: wait here.
                with anyio.move_on_after(_CLEANUP_TIMEOUT):
                    await self._ctx.cleanups.join(key)
            raise error from None
        logger.debug("job %s submitted: %d circuits", job_id, len(submission.labels))
        return ExecutionResult(job_id=job_id, backend_jobs=sent)

    async def _submit_one(self, submission: Submission, body: dict[str, Any]) -> ExecutionResult:
        """A batch that is one chunk: the same steps as `submit`, without its machinery.

        The submission and its only chunk are journaled as one record, behind
        one barrier, before `job/init/`; the chunk goes along with it
        (`first_chunk`), or, if the server does not take it there, alone after it.
        """
        key, chunk_key = _new_key(), _new_key()
        chunk, text = _serialised(PendingChunk(0, chunk_key, body, final=True))
        options = {"init": submission.init_body, "ordered": submission.ordered_upload}
        only = Chunk(key, 0, chunk_key, text, True)
        base_url = self._ctx.config.base_url
        ticket = self._ctx.log(Begin(key, base_url, submission.labels, options, only))
        try:
            await self._ctx.durable(ticket)
        except BaseException:  # cancelled before anything was sent: not to be resumed
            self._ctx.log(Abandoned(key))
            raise
        job_id, landed = await self._init(key, submission.init_body, chunk)
        self._ctx.remember_labels(job_id, submission.labels)
        if landed is True:  # `Created` and `Submitted` in one record: one write, not two
            self._ctx.log(Submitted(key, job_id))
            logger.debug("job %s submitted: %d circuits", job_id, len(submission.labels))
            return ExecutionResult(job_id=job_id, backend_jobs=1)
        self._ctx.log(Created(key, job_id))
        try:
            await self._ctx.sender.request(
                "POST",
                job_path(job_id, "add_circuits/"),
                body=chunk.data,
                idempotency_key=chunk_key,
            )
        except BaseException as exc:
            await self.clean_up(exc, key, lambda: self.abandon(job_id, key), f"job {job_id}")
            raise
        if landed is None:  # refused with the init, taken alone: the field was refused
            self._no_first_chunk = True
        self._ctx.log(Submitted(key))
        logger.debug("job %s submitted: %d circuits", job_id, len(submission.labels))
        return ExecutionResult(job_id=job_id, backend_jobs=1)

    async def _validate_large(
        self,
        submission: Submission,
        tg: anyio.abc.TaskGroup,
        slices: MemoryObjectSendStream[list[str]],
    ) -> None:
        """Check a large plain batch in worker threads that compress it meanwhile.

        The compressed slices go to `slices`, in order; they are taken only
        once this returns, after every circuit has passed.
        """
        full = self._ctx.config.full_qasm_check
        batch = PlainBatch(submission.labels, submission.sources, full=full)
        validated = anyio.Event()
        tg.start_soon(batch.run, slices, validated)
        await validated.wait()
        batch.raise_error()
        if not batch.validated:  # the workers failed: their error is raised, not this one
            raise _ChunksEnded("the batch's validation stopped")
        max_bytes = self._ctx.config.limits.max_payload_bytes
        await anyio.to_thread.run_sync(submission.check_sizes, max_bytes, abandon_on_cancel=True)

    async def _validate(self, submission: Submission) -> list[dict[str, Any]] | None:
        """Check every circuit, and that each fits in a request, before anything is sent.

        A batch with parametric circuits gets all its chunk bodies built here
        (templates are compressed once, rows are cheap), and returned.
        """
        if len(submission.labels) <= THREAD_THRESHOLD:
            return self._checked(submission)
        return await anyio.to_thread.run_sync(self._checked, submission, abandon_on_cancel=True)

    def _checked(self, submission: Submission) -> list[dict[str, Any]] | None:
        """Check the batch; a parametric one's chunk bodies (built here), None for a plain one."""
        limits = self._ctx.config.limits
        full = self._ctx.config.full_qasm_check
        if submission.pieces is not None:
            check_pieces(submission.pieces, full=full)
            return template_bodies(submission, limits.max_payload_bytes, limits.chunk_bytes)
        self._check_circuits(submission)
        submission.check_sizes(limits.max_payload_bytes)
        return None

    def _check_circuits(self, submission: Submission) -> None:
        """Validate every circuit of a plain batch, here (the first invalid one is named)."""
        items = list(zip(submission.labels, submission.sources, strict=True))
        _qasm.check_batch(items, full=self._ctx.config.full_qasm_check)

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
        """A chunk with a key of its own, queued for the journal (see `_durable`).

        Its body is serialised once, here: the journal keeps that text and the
        upload sends it (a chunk's JSON is up to a megabyte).
        """
        chunk, text = _serialised(PendingChunk(index, _new_key(), body, final=last))
        ticket = self._ctx.log(Chunk(key, index, chunk.chunk_key, text, last))
        return attrs.evolve(chunk, ticket=ticket)

    async def _encode_chunks(
        self,
        submission: Submission,
        key: str,
        slices: MemoryObjectReceiveStream[list[str]] | None,
        send: MemoryObjectSendStream[PendingChunk],
    ) -> None:
        """Take the batch's compressed slices and hand over each chunk once it is full.

        `slices` brings the compressed circuits of a large batch (see
        `PlainBatch`); a small batch is compressed here. Chunks are cut only
        once the circuits since the last one may fill one. Each chunk is
        journaled before it is handed over; the last one is final.
        """
        limits = self._ctx.config.limits
        sources = submission.sources
        encoded: list[str] = []
        start = index = 0
        waiting = 0  # encoded characters since the last chunk: less than its size
        async with send:
            while len(encoded) < len(sources):
                if slices is None:
                    more = encode_all(sources[len(encoded) : len(encoded) + ENCODE_SLICE])
                else:
                    more = await slices.receive()
                encoded += more
                waiting += sum(map(len, more))
                done = len(encoded) == len(sources)
                if not done and waiting < min(limits.chunk_bytes, limits.max_payload_bytes):
                    continue
                bodies = _bodies(submission, encoded, start, index, done, limits)
                for body in bodies:
                    waiting -= sum(map(len, body["circuits"].values()))
                    start += len(body["circuits"])
                    last = start == len(sources)
                    chunk = self._journaled_chunk(key, index, body, last)
                    try:
                        await send.send(chunk)
                    except anyio.BrokenResourceError:
                        return  # the upload failed and stopped taking chunks
                    index += 1

    async def _init(
        self, key: str, init_body: dict[str, Any], first: PendingChunk | None = None
    ) -> tuple[str, bool | None]:
        """`job/init/`: the job id, and whether `first` (a chunk) went along and landed.

        With `first`, the request carries the chunk (`first_chunk`, an extension
        of the local scheduler): one round trip instead of two. A server without
        the extension ignores it (False: the chunk is still to be sent), or
        refuses the request, which is then sent again plain (None: whether the
        field or the chunk was refused is known once the chunk is sent alone).
        If its outcome is unknown when it fails, find that job and cancel it:
        repeating the request with the same `Idempotency-Key` returns the job
        the first one may have created, without creating another.
        """
        data = self._with_first_chunk(init_body, first)
        refused = False
        try:
            try:
                response = await self._ctx.sender.request(
                    "POST", "job/init/", body=data or init_body, idempotency_key=key
                )
            except HTTPStatusError as exc:
                if data is None or exc.status_code not in _FIRST_CHUNK_REFUSED:
                    raise
                logger.debug("job/init/ with first_chunk answered %d; without", exc.status_code)
                data = None
                response = await self._ctx.sender.request(
                    "POST", "job/init/", body=init_body, idempotency_key=key
                )
                refused = True
        except BaseException as exc:
            if _outcome_known(exc) or never_sent(exc):
                self._ctx.log(Abandoned(key))
            else:
                await self.clean_up(
                    exc, key, lambda: self._find_and_cancel(key, init_body), f"submission {key}"
                )
            raise
        with self._ctx.token_scrubbed():
            answer = response.json()
            job_id = _job_id_field(response, answer)
            if refused:
                return job_id, None
            return job_id, data is not None and _first_chunk_landed(answer)

    def _with_first_chunk(
        self, init_body: dict[str, Any], first: PendingChunk | None
    ) -> bytes | None:
        """The `job/init/` body carrying `first` as JSON; None to send it plain.

        Plain when there is no chunk, the server refused one before, or the two
        together would not fit in one request (`Limits.max_payload_bytes`).
        """
        if first is None or self._no_first_chunk:
            return None
        body = wire_json(first.wire_body).encode() if first.data is None else first.data
        # The chunk's body is JSON already: it goes in last, where the text ends in "}}".
        fields = {name: value for name, value in init_body.items() if name != "first_chunk"}
        head = wire_json({**fields, "first_chunk": {"idempotency_key": first.chunk_key}})
        data = b"".join([head[:-2].encode(), b',"body":', body, b"}}"])
        return data if len(data) <= self._ctx.config.limits.max_payload_bytes else None

    async def _find_and_cancel(self, key: str, init_body: dict[str, Any]) -> None:
        """Cancel the job a `job/init/` of unknown outcome may have created.

        Repeating it with the same `Idempotency-Key` returns that job without
        creating another (the server de-duplicates).
        """
        try:
            response = await self._ctx.sender.request(
                "POST", "job/init/", body=init_body, idempotency_key=key
            )
        except AsyncJobError as exc:
            if not _outcome_known(exc):
                raise
            self._ctx.log(Abandoned(key))  # refused: there is no job
            return
        with self._ctx.token_scrubbed():
            job_id = _job_id_field(response, response.json())
        self._ctx.log(Created(key, job_id))
        await self.abandon(job_id, key)

    async def clean_up(
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
            self._ctx.log(Cancelling(key))
        task = self._ctx.cleanups.start(func, f"cancelling the job of {what}", key)
        if not cancelled:
            with anyio.move_on_after(_CLEANUP_TIMEOUT):
                await asyncio.wait([task])  # a cancellation ends the wait, not the cleanup

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
        limiter = anyio.CapacityLimiter(self._ctx.config.limits.upload_concurrency)

        async def send(chunk: PendingChunk) -> None:
            await self._ctx.durable(chunk.ticket)  # journaled before it is sent
            await self._ctx.sender.request(
                "POST",
                path,
                body=chunk.wire_body if chunk.data is None else chunk.data,
                idempotency_key=chunk.chunk_key,
            )
            if not chunk.final:  # `Submitted`, recorded next, says the final one landed
                self._ctx.log(ChunkSent(key, chunk.index))

        async def send_early(chunk: PendingChunk, borrower: object) -> None:
            try:
                await send(chunk)
            finally:
                limiter.release_on_behalf_of(borrower)

        try:
            if created:
                self._ctx.log(Created(key, job_id))
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
                raise first_leaf(group) from None
            if final_required and not final:  # whoever made the chunks stopped early
                raise _ChunksEnded(f"the chunks of job {job_id} ended before the final one")
            for chunk in final:
                await send(chunk)
        except BaseException as exc:
            await self.clean_up(exc, key, lambda: self.abandon(job_id, key), f"job {job_id}")
            raise
        self._ctx.log(Submitted(key))
        return count

    async def abandon(self, job_id: str, key: str | None = None) -> None:
        """Cancel a job whose submission failed, so it is not left un-finalized."""
        with anyio.move_on_after(_CLEANUP_TIMEOUT):
            try:
                await self._ctx.cancel(job_id)
            except AsyncJobError as exc:
                logger.warning("could not cancel abandoned job %s: %s", job_id, exc)
                return
            logger.info("submission of job %s failed; the job was cancelled", job_id)
            if key is not None:
                self._ctx.log(Abandoned(key))
            return
        logger.warning("cancelling abandoned job %s timed out", job_id)

    async def resume(
        self, execution_result: ExecutionResult | str, *, finish: bool = True
    ) -> ExecutionResult:
        """`AsyncJobClient.resume`: finish or cancel a submission the journal shows unfinished."""
        ref = getattr(execution_result, "job_id", execution_result)
        if not isinstance(ref, str) or not ref or self._ctx.writer is None:
            raise ResumeError("resume needs a job id and an enabled journal")
        await self._ctx.writer.flush()
        base_url = self._ctx.config.base_url
        found = await self._ctx.from_journal(lambda j: (j.find(base_url, ref), j))
        if found is None:
            raise ResumeError("resume needs a job id and an enabled journal")
        entry, journal = found
        if entry is None:
            raise ResumeError(f"job {ref!r} is not in the journal {journal.path}")
        job_id = entry.job_id
        if entry.interrupted:
            # Everything that can wait happens before the job may be (re)created, so
            # no cancellation point sits between its creation and the upload's guard.
            pending = await anyio.to_thread.run_sync(journal.pending_chunks, entry.key)
            created = job_id is None
            if job_id is None:
                job_id, _ = await self._init(entry.key, entry.options["init"])
            self._ctx.remember_labels(job_id, entry.labels)
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
                    await self.abandon(job_id, entry.key)
                if finish and entry.cancelling:
                    raise ResumeError(
                        f"submission {entry.key} was cancelled, so it is not finished; "
                        f"its job {job_id} was cancelled"
                    )
                if finish:
                    raise ResumeError(
                        f"submission {entry.key} stopped before all of its circuits were "
                        f"recorded, so it cannot be finished; its job {job_id} was cancelled"
                    )
        if job_id is None:  # an init that never got through, abandoned earlier
            raise ResumeError(f"submission {ref!r} never created a job")
        self._ctx.remember_labels(job_id, entry.labels)
        return ExecutionResult(job_id=job_id)


class _ChunksEnded(AsyncJobError):
    """The chunk producer stopped before the final chunk (its own error says why)."""


def _size(circuits: object) -> int:
    """About how many circuits a batch holds, to choose where to check it.

    A parametric circuit counts its parameter sets; a short sequence holding
    some, theirs too. 0 for an object without a length (refused on the loop).
    """
    if isinstance(circuits, ParametricCircuit):
        return len(circuits.parameter_sets)
    if not isinstance(circuits, Sized):
        return 0
    n = len(circuits)
    if n <= THREAD_THRESHOLD and isinstance(circuits, Sequence):
        return sum(_size(item) if isinstance(item, ParametricCircuit) else 1 for item in circuits)
    return n


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


def _bodies(
    submission: Submission,
    encoded: Sequence[str],
    start: int,
    index: int,
    done: bool,
    limits: Limits,
) -> list[dict[str, Any]]:
    """The full chunks of `encoded[start:]` (all of them once `done`); `index` is the next's."""
    bodies = submission.chunk_bodies(encoded, limits.max_payload_bytes, start, limits.chunk_bytes)
    if not done:
        return bodies[:-1]
    if index > 0 or len(bodies) > 1:
        return _small_final(submission, encoded, bodies, limits)
    return bodies


def _stream_of(items: Iterable[T]) -> MemoryObjectReceiveStream[T]:
    """A closed stream holding `items`."""
    send, receive = anyio.create_memory_object_stream[T](math.inf)
    with send:
        for item in items:
            send.send_nowait(item)
    return receive


def _outcome_known(exc: BaseException) -> bool:
    """True when a failed request certainly did not change anything on the server."""
    if isinstance(exc, HTTPStatusError):
        return exc.status_code < 500
    return isinstance(exc, AsyncJobError | ValueError | TypeError) and not isinstance(
        exc, RequestTimeoutError | ConnectionFailedError
    )


def _serialised(chunk: PendingChunk) -> tuple[PendingChunk, str]:
    """`chunk` carrying its wire body as JSON bytes, and that JSON as text for the journal.

    Serialised once, for both: a chunk's JSON is up to a megabyte.
    """
    text = wire_json(chunk.wire_body)
    return attrs.evolve(chunk, data=text.encode()), text


def _new_key() -> str:
    return str(uuid.uuid4())


def _first_chunk_landed(answer: object) -> bool:
    """True when a `job/init/` answer says it applied its `first_chunk` (an object there)."""
    return isinstance(answer, dict) and isinstance(answer.get("first_chunk"), dict)


def _job_id_field(response: Response, answer: object) -> str:
    """The job id in `answer` (`response` parsed), checked to be usable in a path."""
    where = f"{response.method} {response.path}"
    job_id: str = data_field(answer, "job_id", str, where)
    try:
        job_path(job_id)
    except ValueError:
        raise ProtocolError(f"server returned an unusable job id {job_id[:40]!r}") from None
    return job_id
