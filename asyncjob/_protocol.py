"""The `AsyncJobBackend` protocol, with the exact signatures of the reference page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from ._models import ExecutionResult, JobStatus, Response

__all__ = ["AsyncJobBackend"]


@runtime_checkable
class AsyncJobBackend(Protocol):
    """A backend that runs circuits as an asynchronous remote job.

    `submit_circuits` returns an `ExecutionResult` carrying a `job_id`; callers
    poll with `poll_job_status`, fetch with `get_job_results` and may
    `cancel_job`. `asyncjob.JobBackend` implements it.

    This is the one written definition of these signatures: `JobBackend` and
    the async `AsyncJobClient` keep to it (a test compares them parameter by
    parameter).
    """

    @property
    def shots(self) -> int:
        """Number of measurement shots applied to sampling-mode circuits."""
        ...

    def submit_circuits(
        self,
        circuits: Mapping[str, str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Submit a batch of QASM circuits and return a handle."""
        ...

    def poll_job_status(
        self,
        execution_result: ExecutionResult,
        loop_until_complete: bool = False,
        on_complete: Callable[[Response], None] | None = None,
        verbose: bool = True,
        progress_callback: Callable[[int, str], None] | None = None,
        cancellation_event: threading.Event | None = None,
    ) -> JobStatus:
        """Query the job's status once, or until it is terminal."""
        ...

    def get_job_results(self, execution_result: ExecutionResult) -> ExecutionResult:
        """Fetch the results of a COMPLETED job, in submission order."""
        ...

    def cancel_job(self, execution_result: ExecutionResult) -> Response:
        """Cancel a job; idempotent (a job already terminal is not an error)."""
        ...
