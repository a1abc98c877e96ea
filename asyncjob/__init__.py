"""asyncjob: run batches of quantum circuits as remote asynchronous jobs.

`AsyncJobClient` is the asyncio-native core; `JobBackend` the blocking facade
implementing the `AsyncJobBackend` protocol; `asyncjob.local` a scheduler that
speaks the same wire protocol on your machine.
"""

from ._backend import JobBackend
from ._client import AsyncJobClient, JobOutcome
from ._config import ClientConfig, Limits, PollingPolicy, RetryPolicy, Timeout
from ._errors import (
    AsyncJobError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    EventLoopError,
    ExecutionCancelledError,
    HTTPStatusError,
    InvalidInputError,
    InvalidInputTypeError,
    JobFailedError,
    JobNotCompleteError,
    MaxRetriesReachedError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    QasmValidationError,
    RateLimitedError,
    RequestTimeoutError,
    ResumeError,
    ServerError,
)
from ._models import ExecutionResult, JobStatus, JobType, Response
from ._parametric import ParametricCircuit
from ._protocol import AsyncJobBackend
from ._transport import AiohttpTransport, AsyncTransport, MockTransport, Request
from ._version import __version__ as __version__

__all__ = [
    "AiohttpTransport",
    "AsyncJobBackend",
    "AsyncJobClient",
    "AsyncJobError",
    "AsyncTransport",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ClientConfig",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "EventLoopError",
    "ExecutionCancelledError",
    "ExecutionResult",
    "HTTPStatusError",
    "InvalidInputError",
    "InvalidInputTypeError",
    "JobBackend",
    "JobFailedError",
    "JobNotCompleteError",
    "JobOutcome",
    "JobStatus",
    "JobType",
    "Limits",
    "MaxRetriesReachedError",
    "MockTransport",
    "NotFoundError",
    "ParametricCircuit",
    "PayloadTooLargeError",
    "PollingPolicy",
    "ProtocolError",
    "QasmValidationError",
    "RateLimitedError",
    "Request",
    "RequestTimeoutError",
    "Response",
    "ResumeError",
    "RetryPolicy",
    "ServerError",
    "Timeout",
]
