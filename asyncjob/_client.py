"""`AsyncJobClient`: the asyncio-native core that submits, polls, fetches and cancels jobs.

A thin public class: submission lives in `_submit`, statuses in `_status`,
results in `_results`, `as_completed` in `_completed`; they share one
`ClientContext` (configuration, sender, journal recorder, memory of jobs).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._cancel import run_until_event
from ._completed import JobOutcome, as_completed
from ._config import ClientConfig
from ._context import ClientContext, job_id_of
from ._errors import ClientClosedError, JobFailedError
from ._journal import Journal
from ._models import ExecutionResult, JobStatus, Response
from ._outcome import failure_reason
from ._results import ResultsFetcher
from ._sender import Sender, default_transport, job_path
from ._status import StatusFollower
from ._submit import Submitter
from ._transport import AsyncTransport

__all__ = ["AsyncJobClient", "JobOutcome", "job_id_of"]


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
        self._ctx = ctx = ClientContext(
            config, Sender(config, transport or default_transport(config))
        )
        self._submitter = Submitter(ctx)
        self._status = StatusFollower(ctx)
        self._results = ResultsFetcher(ctx, self._status)

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
        return self._ctx.sender.transport

    @property
    def is_closed(self) -> bool:
        """True once `aclose()` was called: the client sends nothing more."""
        return self._ctx.sender.closed

    @property
    def config(self) -> ClientConfig:
        """The validated configuration."""
        return self._ctx.config

    @property
    def shots(self) -> int:
        """Shots per circuit unless a submission says otherwise."""
        return self._ctx.config.shots

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent by this client so far (each retry counts)."""
        return self._ctx.sender.requests_sent

    def __repr__(self) -> str:
        return f"AsyncJobClient(base_url={self._ctx.config.base_url!r}, shots={self.shots})"

    async def __aenter__(self) -> AsyncJobClient:
        if self._ctx.sender.closed:
            raise ClientClosedError("this AsyncJobClient is closed; create a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its connection pool, and write out the journal.

        Cleanups of cancelled submissions still running in the background are
        waited for first, within their bound (`CLEANUP_TIMEOUT`). Closing twice
        is harmless; any request after it is a `ClientClosedError`.
        """
        with anyio.CancelScope(shield=True):
            try:
                await self._ctx.cleanups.wait()
                await self._ctx.sender.aclose()
            finally:
                if self._ctx.writer is not None:  # off the loop: it waits for the writer thread
                    await anyio.to_thread.run_sync(self._ctx.writer.close)

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
        if cancellation_event is None:  # one coroutine less alive while it waits for its turn
            return await self._submitter.submit_batch(circuits, kwargs)
        return await run_until_event(
            cancellation_event, self._submitter.submit_batch, "submission", circuits, kwargs
        )

    # -- journal and resume ------------------------------------------------

    @property
    def journal(self) -> Journal | None:
        """The job journal (None when disabled); opened on first use."""
        return None if self._ctx.writer is None else self._ctx.writer.journal()

    async def resume(
        self, execution_result: ExecutionResult | str, *, finish: bool = True
    ) -> ExecutionResult:
        """Re-attach to a job recorded in the journal, e.g. after the process died.

        Labels are restored, so results come back in submission order. A
        submission that was interrupted is completed by sending the chunks the
        server never acknowledged (with their original idempotency keys), or,
        with `finish=False`, cancelled. Accepts a job id or a submission key.
        """
        return await self._submitter.resume(execution_result, finish=finish)

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
            return await self._status.poll(
                job_id, loop_until_complete, on_complete, verbose, progress_callback, hold=True
            )

        return await run_until_event(cancellation_event, poll, "polling")

    async def get_status(
        self, execution_result: ExecutionResult | str
    ) -> tuple[Response, JobStatus]:
        """One status request: the response and the parsed status."""
        return await self._status.get_status(execution_result)

    # -- results ----------------------------------------------------------

    async def get_job_results(self, execution_result: ExecutionResult | str) -> ExecutionResult:
        """Fetch every results page (concurrently once the total is known) and decode it.

        Results come back in submission order. A job that is not COMPLETED is a
        `JobNotCompleteError`. `run_time` is the one the job's terminal status
        reported when this client saw it (polling, watching), else 0.0: no
        request is made for it.
        """
        return await self._results.fetch(execution_result)

    # -- cancel -----------------------------------------------------------

    async def cancel_job(self, execution_result: ExecutionResult | str) -> Response:
        """Ask the scheduler to cancel the job; a job already terminal (409) is not an error."""
        return await self._ctx.cancel(job_id_of(execution_result))

    async def delete_job(self, execution_result: ExecutionResult | str) -> Response:
        """Remove the job record from the scheduler."""
        return await self._ctx.sender.request("DELETE", job_path(job_id_of(execution_result)))

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
                await self._submitter.clean_up(
                    exc, None, lambda: self._submitter.abandon(job_id), f"job {job_id}"
                )
                raise
            if status is not JobStatus.COMPLETED:
                reason = failure_reason(final[-1] if final else None)
                raise JobFailedError(job_id_of(handle), status.value, reason)
            return await self.get_job_results(handle)

        return await run_until_event(cancellation_event, run, "run")

    def as_completed(
        self, handles: Iterable[ExecutionResult], *, fetch_results: bool = True
    ) -> contextlib.AbstractAsyncContextManager[MemoryObjectReceiveStream[JobOutcome]]:
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
        return as_completed(
            self._ctx, self._status, self._results, handles, fetch_results=fetch_results
        )
