"""The exception tree: everything asyncjob raises derives from `AsyncJobError`.

Where a builtin says what went wrong (`ValueError`, `TimeoutError`,
`ConnectionError`, `LookupError`, ...), the error subclasses it too, so code
that knows nothing of asyncjob can still catch it. Messages are short, never
contain HTML pages and never contain the API token.
"""

from __future__ import annotations

__all__ = [
    "AsyncJobError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "EventLoopError",
    "ExecutionCancelledError",
    "HTTPStatusError",
    "InvalidInputError",
    "InvalidInputTypeError",
    "JobFailedError",
    "JobNotCompleteError",
    "MaxRetriesReachedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "QasmValidationError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResumeError",
    "ServerError",
]


class AsyncJobError(Exception):
    """Base class of every error asyncjob raises."""


class ConfigurationError(AsyncJobError, ValueError):
    """The client or backend was configured wrongly (missing URL/token, bad option)."""


class ClientClosedError(AsyncJobError, RuntimeError):
    """A request was made through a client that was already closed."""


class InvalidInputError(AsyncJobError, ValueError):
    """A bad batch, option value or job handle; raised before anything is sent."""


class InvalidInputTypeError(AsyncJobError, TypeError):
    """An argument of the wrong type (a bare string for a batch) or an unknown keyword."""


class ResumeError(AsyncJobError, LookupError):
    """`resume` found no job to re-attach to (no journal, not journaled) or cannot finish it."""


class ExecutionCancelledError(AsyncJobError):
    """A cancellation event (or Ctrl+C) stopped the operation."""


class EventLoopError(AsyncJobError, RuntimeError):
    """The event loop a client or backend runs on is gone, or is another thread's."""


class QasmValidationError(InvalidInputError):
    """A circuit is not valid OpenQASM; carries its label and the position of the fault."""

    def __init__(
        self,
        label: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        token: str | None = None,
    ) -> None:
        self.label = label
        self.reason = reason
        self.line = line
        self.column = column
        self.token = token
        where = f" at line {line}, column {column}" if line is not None else ""
        near = f" near {token!r}" if token else ""
        super().__init__(f"circuit {label!r}: {reason}{where}{near}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_qasm_error, (self.label, self.reason, self.line, self.column, self.token))


def _rebuild_qasm_error(
    label: str, reason: str, line: int | None, column: int | None, token: str | None
) -> QasmValidationError:
    return QasmValidationError(label, reason, line=line, column=column, token=token)


class PayloadTooLargeError(InvalidInputError):
    """A single circuit is larger, once encoded, than the request payload cap."""


class RequestTimeoutError(AsyncJobError, TimeoutError):
    """An HTTP request did not complete within its timeout (after any retries)."""

    reason: str | None = None
    """What happened, without naming the request (e.g. "host:port did not answer ...")."""


class ConnectionFailedError(AsyncJobError, ConnectionError):
    """The server could not be reached, or dropped the connection (after any retries)."""

    reason: str | None = None
    """The cause in words, without naming the request (e.g. "... connection refused")."""
    request_sent: bool = True
    """False when no attempt got a connection (refused, DNS, TLS): the server never saw it."""


class ProtocolError(AsyncJobError):
    """The server answered something the wire protocol does not allow.

    Malformed JSON, a body of the wrong shape, an unknown job status, a corrupt
    histogram, missing or duplicated result labels.
    """


class JobNotCompleteError(AsyncJobError):
    """Results were asked for a job that has not reached COMPLETED.

    `reason` is the scheduler's explanation of a FAILED job, when it gave one.
    """

    def __init__(self, job_id: str, status: str, reason: str | None = None) -> None:
        self.job_id = job_id
        self.status = status
        self.reason = reason
        if status in _ENDED:
            because = f" ({reason})" if reason else ""
            message = f"job {job_id} ended {status}{because}: it has no results"
        else:
            message = (
                f"job {job_id} is not complete yet (status {status}); wait until it is "
                "COMPLETED, e.g. poll_job_status(handle, loop_until_complete=True)"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.status, self.reason))


class JobFailedError(AsyncJobError):
    """`run()` waited for a job that ended in a terminal status other than COMPLETED."""

    def __init__(self, job_id: str, status: str, reason: str | None = None) -> None:
        self.job_id = job_id
        self.status = status
        self.reason = reason
        because = f" ({reason})" if reason else ""
        super().__init__(f"job {job_id} ended {status}{because}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.status, self.reason))


_ENDED = frozenset({"FAILED", "CANCELLED", "INSUFFICIENT_CREDITS", "TIMED_OUT"})
"""Terminal statuses other than COMPLETED: such a job will never have results."""


class MaxRetriesReachedError(AsyncJobError, TimeoutError):
    """Polling ended (maximum number of polls or deadline) before a terminal status."""

    def __init__(self, job_id: str, polls: int, last_status: str) -> None:
        self.job_id = job_id
        self.polls = polls
        self.last_status = last_status
        super().__init__(
            f"job {job_id} still {last_status} after {polls} polls; polling limit reached"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.polls, self.last_status))


class HTTPStatusError(AsyncJobError):
    """The server answered with an error status. `message` is short and HTML-free."""

    def __init__(
        self, status_code: int, message: str, *, method: str = "", path: str = ""
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.method = method
        self.path = path
        request = f" for {method} {path}" if method else ""
        super().__init__(f"HTTP {status_code}{request}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_http_error,
            (type(self), self.status_code, self.message, self.method, self.path),
        )


def _rebuild_http_error(
    cls: type[HTTPStatusError], status_code: int, message: str, method: str, path: str
) -> HTTPStatusError:
    return cls(status_code, message, method=method, path=path)


class BadRequestError(HTTPStatusError, ValueError):
    """400, or 413 (body too large): the server refused the request as malformed."""


class AuthenticationError(HTTPStatusError, PermissionError):
    """401 or 403: the token is missing, wrong or lacks access."""


class NotFoundError(HTTPStatusError, LookupError):
    """404: the job (or endpoint) does not exist."""


class ConflictError(HTTPStatusError):
    """409: the job is in the wrong state for the request (e.g. already terminal)."""


class RateLimitedError(HTTPStatusError):
    """429: too many requests; `retry_after` is the server's hint in seconds, if any."""

    retry_after: float | None = None


class ServerError(HTTPStatusError):
    """5xx: the server or a proxy in front of it is in trouble."""
