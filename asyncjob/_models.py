"""Value types shared by the async core and the blocking facade."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import ProtocolError

__all__ = ["ExecutionResult", "JobStatus", "JobType", "Response"]


class JobStatus(enum.StrEnum):
    """Every job status of the wire protocol; values are the wire strings."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change state."""
        return self in _TERMINAL

    @classmethod
    def from_wire(cls, value: object) -> JobStatus:
        """Parse a wire status string; an unknown one is a `ProtocolError`."""
        if isinstance(value, str):
            try:
                return cls(value.upper())
            except ValueError:
                pass
        shown = repr(value)[:60]
        raise ProtocolError(f"server reported an unknown job status {shown}")


_TERMINAL = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.INSUFFICIENT_CREDITS,
        JobStatus.TIMED_OUT,
    }
)


class JobType(enum.StrEnum):
    """What a job computes: count histograms, or expectation values of observables."""

    EXECUTE = "EXECUTE"
    EXPECTATION = "EXPECTATION"


def _results_converter(value: Any) -> list[dict[str, Any]] | None:
    return None if value is None else list(value)


@attrs.frozen(hash=False)
class ExecutionResult:
    """A job handle (`job_id`, no results) or a finished batch (`results`).

    `results` is a list of `{"label": str, "results": dict}` in submission order.
    `backend_jobs` counts the requests that carried the batch (its chunks);
    `run_time` is the seconds of execution the server reported for the job
    (0.0 until `get_job_results` fills it, or when the server reports none).
    """

    results: list[dict[str, Any]] | None = attrs.field(default=None, converter=_results_converter)
    job_id: str | None = None
    backend_jobs: int = 1
    run_time: float = 0.0

    def is_async(self) -> bool:
        """True for a handle of a remote job whose results are not fetched yet."""
        return self.job_id is not None and self.results is None

    def with_results(
        self, results: list[dict[str, Any]], run_time: float | None = None
    ) -> ExecutionResult:
        """A copy carrying `results` (and `run_time`, when given)."""
        if run_time is None:
            return attrs.evolve(self, results=results)
        return attrs.evolve(self, results=results, run_time=run_time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_dict` reverses it."""
        return {
            "job_id": self.job_id,
            "results": self.results,
            "backend_jobs": self.backend_jobs,
            "run_time": self.run_time,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionResult:
        """Rebuild a result from `to_dict()` output (e.g. after a JSON round trip)."""
        return cls(
            results=data.get("results"),
            job_id=data.get("job_id"),
            backend_jobs=int(data.get("backend_jobs", 1)),
            run_time=float(data.get("run_time", 0.0)),
        )


@attrs.frozen(hash=False)
class Response:
    """A finished HTTP response, fully read: no connection is held."""

    status_code: int
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    text: str = attrs.field(default="", repr=False)
    method: str = ""
    path: str = ""

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body is a `ProtocolError`."""
        try:
            return json.loads(self.text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise ProtocolError(
                f"{self.method} {self.path} answered {self.status_code} with a body "
                f"that is not JSON"
            ) from exc
