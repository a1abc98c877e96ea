"""Configuration: timeouts, polling and limits as frozen attrs classes (retries: `_retry`).

`ClientConfig.build` turns the keyword options that `AsyncJobClient` and
`JobBackend` both accept into one validated, immutable configuration.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._errors import ConfigurationError, InvalidInputTypeError
from ._paths import default_journal_path
from ._retry import RetryPolicy
from ._wire import is_loopback

__all__ = ["ClientConfig", "Limits", "PollingPolicy", "RetryPolicy", "Timeout"]

MAX_PAYLOAD_BYTES = int(0.95 * 1024 * 1024)
DEFAULT_SIMULATOR = "qoro_maestro"


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class Timeout:
    """Per-request time limits in seconds: every HTTP request is bounded by `request`."""

    request: float = attrs.field(default=30.0, validator=_positive)
    """Whole request, from sending to the last byte of the body (default 30 s)."""
    connect: float = attrs.field(default=10.0, validator=_positive)
    """Establishing the TCP/TLS connection, including waiting for a pooled one."""


@attrs.frozen
class PollingPolicy:
    """How `poll_job_status(loop_until_complete=True)` waits for a terminal status."""

    interval: float = attrs.field(default=3.0, validator=_positive)
    """Seconds between polls (default 3 s)."""
    backoff: float = attrs.field(default=1.0)
    """Multiplier applied to the interval after each poll (1.0 = constant)."""
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    """Cap of the interval when backing off."""
    max_retries: int | None = attrs.field(default=None, validator=_at_least_one)
    """Maximum number of polls; None polls until terminal."""
    deadline: float | None = attrs.field(default=None, validator=_positive)
    """Overall seconds to wait; None waits until terminal."""
    watch: bool = True
    """Long-poll with the scheduler's `jobs/watch/` extension when it has one.

    A poll is then held by the server until the job is terminal or the interval
    has passed, so a finished job is seen at once, and `as_completed` follows
    up to 5,000 jobs with one request at a time. Against a server without the
    extension (one request finds out) or with False, each job's status is
    polled every interval. `as_completed` watches only when `max_retries` and
    `deadline` are None.
    """
    watch_pace: float = attrs.field(default=0.25)
    """Least seconds from the start of one `as_completed` watch round to the next.

    A round ends as soon as one of its jobs finishes; without a pace, jobs that
    finish a few at a time cost a round (a request of up to 5,000 ids and its
    answer) each. With it, a round collects the jobs that finished meanwhile,
    for at most this much more delay (plus a round trip). 0 starts the next
    round at once; at most 60 s. Client option `watch_pace`.
    """

    @watch_pace.validator
    def _check_watch_pace(self, _: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 60:
            raise ConfigurationError(f"watch_pace must be >= 0 and < 60 s, got {value!r}")

    @backoff.validator
    def _check_backoff(self, _: attrs.Attribute[float], value: float) -> None:
        if not value >= 1.0:
            raise ConfigurationError(f"backoff must be >= 1.0, got {value!r}")

    def delay(self, poll: int) -> float:
        """Seconds to wait after poll number `poll` (1-based)."""
        return min(self.max_interval, self.interval * self.backoff ** (poll - 1))


@attrs.frozen
class Limits:
    """Concurrency and size limits."""

    max_connections: int = attrs.field(default=32, validator=_at_least_one)
    """Size of the connection pool shared by every request of one client."""
    upload_concurrency: int = attrs.field(default=8, validator=_at_least_one)
    """Non-final chunks of one submission uploaded at once."""
    results_concurrency: int = attrs.field(default=16, validator=_at_least_one)
    """Result pages of one job fetched at once."""
    results_page_size: int = attrs.field(default=100, validator=_at_least_one)
    """Results asked per page."""
    max_payload_bytes: int = attrs.field(default=MAX_PAYLOAD_BYTES, validator=_at_least_one)
    """Cap on one request body (0.95 MiB, the service's limit)."""
    chunk_bytes: int = attrs.field(default=512 * 1024, validator=_at_least_one)
    """Size a chunk aims at (at most `max_payload_bytes`): with chunks below the cap
    the server starts on a batch sooner, while the client still compresses the rest."""
    max_response_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_at_least_one)
    """Cap on one response body; a larger one is a `ProtocolError`, not a memory blow-up."""


def _check_url(base_url: str, allow_insecure_http: bool) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not carry credentials; pass token=")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to non-loopback host {parts.hostname!r}: "
            "use https://, or pass allow_insecure_http=True"
        )
    return base_url if base_url.endswith("/") else base_url + "/"


@attrs.frozen
class ClientConfig:
    """Everything a client needs, validated once; the token never shows in its repr."""

    base_url: str
    token: str = attrs.field(repr=False)
    shots: int = 1000
    timeout: Timeout = Timeout()
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    polling: PollingPolicy = PollingPolicy()
    limits: Limits = Limits()
    simulator_cluster: str | None = DEFAULT_SIMULATOR
    qpu_system: str | None = None
    tag: str = "default"
    verify_tls: bool = True
    allow_insecure_http: bool = False
    full_qasm_check: bool = False
    journal: str | None = None
    journal_results: bool = False

    OPTIONS = (
        "timeout",
        "connect_timeout",
        "retry",
        "polling",
        "polling_interval",
        "polling_backoff",
        "max_polling_interval",
        "max_retries",
        "deadline",
        "watch",
        "watch_pace",
        "limits",
        "max_connections",
        "upload_concurrency",
        "results_concurrency",
        "simulator_cluster",
        "qpu_system",
        "tag",
        "verify_tls",
        "allow_insecure_http",
        "full_qasm_check",
        "journal",
        "journal_results",
    )

    @classmethod
    def build(
        cls, base_url: str | None, token: str | None, shots: int, **options: Any
    ) -> ClientConfig:
        """Validate the constructor arguments of `AsyncJobClient` / `JobBackend`."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise InvalidInputTypeError(
                f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(cls.OPTIONS)}"
            )
        base_url = base_url or os.environ.get("ASYNCJOB_BASE_URL")
        token = token or os.environ.get("ASYNCJOB_TOKEN")
        if not base_url:
            raise ConfigurationError("no base_url given and ASYNCJOB_BASE_URL is not set")
        if not token:
            raise ConfigurationError("no token given and ASYNCJOB_TOKEN is not set")
        if any(c in token for c in "\r\n"):
            raise ConfigurationError("token contains a line break")
        check_shots(shots)
        allow_http = bool(options.get("allow_insecure_http", False))

        timeout = _coerce_timeout(options.get("timeout"), options.get("connect_timeout"))
        retry = options.get("retry", RetryPolicy())
        if retry is None or retry is False:
            retry = RetryPolicy.off()
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy (or None to disable)")
        polling = options.get("polling", PollingPolicy())
        if not isinstance(polling, PollingPolicy):
            raise ConfigurationError("polling must be a PollingPolicy")
        polling = attrs.evolve(
            polling,
            **_pick(
                options,
                {
                    "polling_interval": "interval",
                    "polling_backoff": "backoff",
                    "max_polling_interval": "max_interval",
                    "max_retries": "max_retries",
                    "deadline": "deadline",
                    "watch": "watch",
                    "watch_pace": "watch_pace",
                },
            ),
        )
        limits = options.get("limits", Limits())
        if not isinstance(limits, Limits):
            raise ConfigurationError("limits must be a Limits")
        limits = attrs.evolve(
            limits,
            **_pick(
                options,
                {
                    "max_connections": "max_connections",
                    "upload_concurrency": "upload_concurrency",
                    "results_concurrency": "results_concurrency",
                },
            ),
        )
        qpu = options.get("qpu_system")
        simulator, qpu = check_target(
            options.get("simulator_cluster", None if qpu else DEFAULT_SIMULATOR), qpu
        )
        return cls(
            base_url=_check_url(base_url, allow_http),
            token=token,
            shots=shots,
            timeout=timeout,
            retry=retry,
            polling=polling,
            limits=limits,
            simulator_cluster=simulator,
            qpu_system=qpu,
            tag=str(options.get("tag", "default")),
            verify_tls=bool(options.get("verify_tls", True)),
            allow_insecure_http=allow_http,
            full_qasm_check=bool(options.get("full_qasm_check", False)),
            journal=journal_path(
                options.get("journal"), loopback=is_loopback(urlsplit(base_url).hostname or "")
            ),
            journal_results=bool(options.get("journal_results", False)),
        )


def check_target(simulator: object, qpu: object) -> tuple[str | None, str | None]:
    """A target: `simulator_cluster` or `qpu_system` (not both), each a non-empty str."""
    if simulator is not None and qpu is not None:
        raise ConfigurationError("give either simulator_cluster or qpu_system, not both")
    return _optional_str("simulator_cluster", simulator), _optional_str("qpu_system", qpu)


def _optional_str(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise InvalidInputTypeError(f"{name} must be a non-empty str, got {value!r}")


def check_shots(shots: object) -> int:
    """Shots must be a positive int (bools refused)."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots <= 0:
        raise ConfigurationError(f"shots must be a positive int, got {shots!r}")
    return shots


def journal_path(value: object, *, loopback: bool = False) -> str | None:
    """The journal file for a `journal=` option (None, True, False or a path); None: off.

    With no option (None) and no `ASYNCJOB_JOURNAL`, a `loopback` base URL - a
    local scheduler's throwaway jobs - is not journaled: only `journal=True` or
    a path journals those.
    """
    if value is None and loopback and os.environ.get("ASYNCJOB_JOURNAL") is None:
        return None
    if value is None or value is True:
        path = default_journal_path()
        return None if path is None else str(path)
    if value is False:
        return None
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    raise ConfigurationError("journal must be a path, True (default location) or False")


def _pick(options: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {field: options[name] for name, field in names.items() if name in options}


def _coerce_timeout(value: object, connect: object) -> Timeout:
    if value is None:
        value = Timeout()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        value = Timeout(request=float(value))
    if not isinstance(value, Timeout):
        raise ConfigurationError("timeout must be a Timeout or a number of seconds")
    if connect is not None:
        if not isinstance(connect, int | float) or isinstance(connect, bool):
            raise ConfigurationError("connect_timeout must be a number of seconds")
        value = attrs.evolve(value, connect=float(connect))
    return value
