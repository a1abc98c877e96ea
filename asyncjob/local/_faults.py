"""Fault injection for the local scheduler: what goes wrong, how often, and when.

`FaultConfig` describes the faults; `FaultInjector` draws them from a seeded RNG
so that a run can be replayed exactly: the same seed and the same sequence of
requests give the same faults. Every request in scope consumes the same number
of random draws whatever the rates are, so changing one rate does not shift the
draws of the others.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from typing import Any, Literal

import attrs

__all__ = ["ENDPOINTS", "FaultConfig", "FaultEvent", "FaultInjector", "FaultPlan", "Phase"]

Phase = Literal["before", "after", "random"]
"""When a request fault strikes: before the request is processed (no state
change), after it (the state changed but the response is lost), or either, at
random (50/50, drawn from the seeded RNG)."""

ENDPOINTS = (
    "ping",
    "qpusystem",
    "simulatorcluster",
    "init",
    "add_circuits",
    "status",
    "watch",
    "results",
    "cancel",
    "delete",
    "other",
)
"""Endpoint names accepted by `FaultConfig.only` (and keys of `requests_by_endpoint`)."""

_PHASES = ("before", "after", "random")


def _flag(help: str, kind: str = "", flag: str | None = None) -> dict[str, Any]:
    """Field metadata from which `asyncjob serve` generates the field's flag.

    `kind` says how the flag's value is read: `fraction`, `seconds`, `duration`
    (seconds or MIN,MAX), `count`, `names` (comma-separated); a `Literal` field
    offers its values as choices. `flag` overrides the name (`--field-name`).
    """
    return {"cli": {"help": help, "kind": kind, "flag": flag}}


def _rate(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _phase(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _PHASES:
        raise ValueError(f"{attribute.name} must be one of {_PHASES}, got {value!r}")


def _latency(value: float | tuple[float, float] | list[float]) -> float | tuple[float, float]:
    if isinstance(value, tuple | list):
        low, high = (float(v) for v in value)
        if not 0.0 <= low <= high:
            raise ValueError(f"latency range must satisfy 0 <= min <= max, got {value!r}")
        return (low, high)
    if not float(value) >= 0.0:
        raise ValueError(f"latency must be >= 0, got {value!r}")
    return float(value)


def _only(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = sorted(set(names) - set(ENDPOINTS))
    if unknown:
        raise ValueError(f"unknown endpoint(s) {unknown} in only=; known: {', '.join(ENDPOINTS)}")
    return names


@attrs.frozen
class FaultConfig:
    """Which faults the local scheduler injects; everything is off by default.

    Request faults (`rate_limit_rate`, `error_rate`, `reset_rate`, `hang_rate`,
    `truncate_rate`) are mutually exclusive per request: one uniform draw picks
    at most one of them, so their rates must add up to at most 1. `latency` and
    `slow_body` apply to every request in scope; `fail_rate` applies to jobs.

    When they strike (see `Phase`):

    - 429 rate limiting is always *before* processing, as a real limiter does.
    - 502/503 errors default to *before* (`error_when`): the proxy failed to reach
      the service. Set `error_when="after"` for "processed, then the proxy timed
      out", which is what exercises idempotent retries.
    - connection resets default to *after* (`reset_when`): the state changed and
      the response was lost.
    - hangs default to *before* (`hang_when`): an overloaded server.
    - truncation and slow bodies are necessarily *after*: they mangle the real
      response.
    """

    seed: int | None = None
    """Seed of the fault RNG; None draws a random seed (not replayable)."""
    only: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_only,
        metadata=_flag(
            "restrict faults, latency and slow bodies to these endpoints (e.g. status,results)",
            "names",
            flag="--fault-endpoints",
        ),
    )
    """Restrict request faults, latency and slow bodies to these endpoints (see `ENDPOINTS`)."""
    max_faults: int | None = attrs.field(
        default=None, metadata=_flag("stop injecting request faults after N", "count")
    )
    """Stop injecting request faults after this many (None: no limit). Handy for "fail once"."""

    latency: float | tuple[float, float] = attrs.field(
        default=0.0,
        converter=_latency,
        metadata=_flag(
            "seconds added before each request, or a range drawn per request", "duration"
        ),
    )
    """Seconds added before each request is handled, or a (min, max) range drawn per request."""

    rate_limit_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag("fraction answered 429 with Retry-After", "fraction"),
    )
    retry_after: float = attrs.field(
        default=1.0,
        validator=_non_negative,
        metadata=_flag("seconds put in the Retry-After header (e.g. 0.05)", "seconds"),
    )

    error_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag(
            "fraction answered 502/503 with an HTML page, as a proxy would", "fraction"
        ),
    )
    error_when: Phase = attrs.field(
        default="before", validator=_phase, metadata=_flag("when 502/503 errors strike")
    )

    reset_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag("fraction whose connection is reset without an answer", "fraction"),
    )
    reset_when: Phase = attrs.field(
        default="after", validator=_phase, metadata=_flag("when connection resets strike")
    )

    hang_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag("fraction that stall for --hang-time before answering", "fraction"),
    )
    hang_time: float = attrs.field(
        default=3600.0,
        validator=_non_negative,
        metadata=_flag("seconds a hanging request stalls", "seconds"),
    )
    hang_when: Phase = attrs.field(
        default="before", validator=_phase, metadata=_flag("when hangs strike")
    )

    truncate_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag(
            "fraction of responses cut short (full Content-Length, half the body)", "fraction"
        ),
    )

    slow_body: float = attrs.field(
        default=0.0,
        validator=_non_negative,
        metadata=_flag("seconds to pause between body pieces of every response", "seconds"),
    )
    slow_body_piece: int = attrs.field(
        default=16, metadata=_flag("bytes per piece when --slow-body is on", "count")
    )

    fail_rate: float = attrs.field(
        default=0.0,
        validator=_rate,
        metadata=_flag("fraction of finalized jobs that end FAILED", "fraction"),
    )

    def __attrs_post_init__(self) -> None:
        total = (
            self.rate_limit_rate
            + self.error_rate
            + self.reset_rate
            + self.hang_rate
            + self.truncate_rate
        )
        if total > 1.0 + 1e-9:
            raise ValueError(
                "rate_limit_rate + error_rate + reset_rate + hang_rate + truncate_rate "
                f"must be <= 1 (one request gets at most one of them), got {total:g}"
            )
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError(f"max_faults must be >= 0, got {self.max_faults!r}")
        if self.slow_body_piece < 1:
            raise ValueError(f"slow_body_piece must be >= 1, got {self.slow_body_piece!r}")

    def applies_to(self, endpoint: str) -> bool:
        """True when request faults may hit `endpoint`."""
        return self.only is None or endpoint in self.only


FaultKind = Literal["rate_limit", "error", "reset", "hang", "truncate"]


@attrs.frozen
class FaultPlan:
    """What happens to one request, decided when it arrives."""

    endpoint: str
    latency: float = 0.0
    kind: FaultKind | None = None
    phase: Literal["before", "after"] = "before"
    status: int = 0
    """502 or 503 for `error` faults."""
    retry_after: float = 0.0
    hang_time: float = 0.0
    slow_body: float = 0.0
    slow_body_piece: int = 16


@attrs.frozen
class FaultEvent:
    """One injected fault, as recorded in `LocalScheduler.fault_log`."""

    sequence: int
    """Index of the request among those faults could apply to (0-based)."""
    endpoint: str
    kind: str
    phase: str
    job_id: str | None = None
    """For `fail` events (from `fail_rate`): the job that was made to fail."""


class FaultInjector:
    """Draws `FaultPlan`s from a `FaultConfig` with a seeded RNG; thread-safe."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._job_rng = random.Random(None if config.seed is None else config.seed + 1)
        self._lock = threading.Lock()
        self._sequence = 0
        self._injected = 0
        self.log: list[FaultEvent] = []

    def plan(self, endpoint: str) -> FaultPlan:
        """Decide the fate of one request to `endpoint`."""
        config = self.config
        if not config.applies_to(endpoint):
            return FaultPlan(endpoint)
        with self._lock:
            sequence = self._sequence
            self._sequence += 1
            u, v, w, x = (self._rng.random() for _ in range(4))
            latency = config.latency
            delay = (
                latency[0] + (latency[1] - latency[0]) * x
                if isinstance(latency, tuple)
                else latency
            )
            kind = self._pick(u)
            if kind is not None and (
                config.max_faults is not None and self._injected >= config.max_faults
            ):
                kind = None
            phase: Literal["before", "after"] = "before"
            status = 0
            if kind is not None:
                self._injected += 1
                when = {
                    "rate_limit": "before",
                    "error": config.error_when,
                    "reset": config.reset_when,
                    "hang": config.hang_when,
                    "truncate": "after",
                }[kind]
                if when == "random":
                    when = "before" if w < 0.5 else "after"
                phase = "before" if when == "before" else "after"
                status = 502 if v < 0.5 else 503
                self.log.append(FaultEvent(sequence, endpoint, kind, phase))
        return FaultPlan(
            endpoint,
            latency=delay,
            kind=kind,
            phase=phase,
            status=status,
            retry_after=config.retry_after,
            hang_time=config.hang_time,
            slow_body=config.slow_body,
            slow_body_piece=config.slow_body_piece,
        )

    def _pick(self, u: float) -> FaultKind | None:
        config = self.config
        edge = 0.0
        choices: tuple[tuple[FaultKind, float], ...] = (
            ("rate_limit", config.rate_limit_rate),
            ("error", config.error_rate),
            ("reset", config.reset_rate),
            ("hang", config.hang_rate),
            ("truncate", config.truncate_rate),
        )
        for kind, rate in choices:
            edge += rate
            if rate > 0.0 and u < edge:
                return kind
        return None

    def job_fails(self) -> bool:
        """Draw whether a newly finalized job ends FAILED (`fail_rate`)."""
        with self._lock:
            draw = self._job_rng.random()
        return draw < self.config.fail_rate

    def record_job_failure(self, job_id: str) -> None:
        """Log a `fail_rate` failure in the fault log."""
        with self._lock:
            self.log.append(FaultEvent(-1, "job", "fail", "after", job_id))
