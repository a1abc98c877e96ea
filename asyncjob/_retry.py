"""What is retried, and how long to wait: the retry policy as data, and the one decision.

`should_retry` is the only place that says whether a failed attempt is tried
again: the request must be idempotent (its method, or an endpoint that is,
or an `Idempotency-Key`) and the failure transient (429, 502, 503, 504, a
connection error or a timeout). `RetryPolicy.delay` says how long to wait,
honouring `Retry-After` in both of its forms, within the call's time budget.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from typing import Any

import attrs

from ._errors import ConfigurationError, ConnectionFailedError, RequestTimeoutError

__all__ = ["RETRY_STATUSES", "RetryPolicy", "idempotent", "parse_retry_after", "should_retry"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses that say "try again later": rate limited, or a proxy that lost the service."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with full jitter for requests that are safe to retry.

    Retried: 429 (after `Retry-After` when given), 502, 503, 504, connection
    errors and timeouts; only for GET, DELETE, `cancel/`, `jobs/watch/`, and
    POSTs that carry an `Idempotency-Key`. `budget` bounds the retrying of one
    call: no wait (and so no retry) that would end past it is taken, counting
    from the call's start; an attempt under way still runs to its own timeout.
    `RetryPolicy.off()` disables retries (handy in tests).
    """

    attempts: int = attrs.field(default=5, validator=_at_least_one)
    """Total tries per request, the first included (1 = no retries)."""
    initial: float = attrs.field(default=0.2, validator=_positive)
    """Backoff before the first retry, in seconds (before jitter)."""
    max_backoff: float = attrs.field(default=10.0, validator=_positive)
    """Cap of one backoff, in seconds."""
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)
    """Longest `Retry-After` waited for; a larger hint ends retrying at once."""
    jitter: bool = True
    """Full jitter: sleep uniformly in [0, backoff]. Off gives exact backoffs."""
    budget: float | None = attrs.field(default=120.0, validator=_positive)
    """Seconds from a call's start past which it is not retried (None: no limit)."""

    @classmethod
    def off(cls) -> RetryPolicy:
        """No retries at all."""
        return cls(attempts=1)

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based), budget aside."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        ceiling = min(self.max_backoff, self.initial * (2 ** (retry - 1)))
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def delay(
        self, retry: int, retry_after: float | None = None, elapsed: float = 0.0
    ) -> float | None:
        """Seconds to wait before retry number `retry`, or None: no retry.

        None when the attempts are used up, when `Retry-After` asks for more
        than `max_retry_after`, or when the wait would end past the budget
        (`elapsed` seconds of the call are already spent): retrying earlier
        than `Retry-After` asks would only be refused again.
        """
        if retry >= self.attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        wait = self.backoff(retry, retry_after)
        budget = math.inf if self.budget is None else self.budget
        return wait if elapsed + wait <= budget else None


def idempotent(method: str, path: str, idempotency_key: str | None) -> bool:
    """True when sending the request twice has the effect of sending it once.

    Safe methods are; so are the POSTs to `job/{id}/cancel/` (cancelling twice
    cancels once) and `jobs/watch/` (a read), and any POST with an
    `Idempotency-Key` (the server de-duplicates it).
    """
    if method.upper() in SAFE_METHODS or idempotency_key:
        return True
    path = path.split("?", 1)[0]
    return path == "jobs/watch/" or (path.startswith("job/") and path.endswith("/cancel/"))


def should_retry(
    method: str, path: str, idempotency_key: str | None, outcome: int | BaseException
) -> bool:
    """The one decision on retrying: an idempotent request and a transient failure.

    `outcome` is the status code answered, or the exception the attempt raised.
    """
    if not idempotent(method, path, idempotency_key):
        return False
    if isinstance(outcome, int):
        return outcome in RETRY_STATUSES
    return isinstance(outcome, RequestTimeoutError | ConnectionFailedError)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delta-seconds or an HTTP date.

    A date in the past is 0; a value of neither form is None (ignored).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; `-0000` parses as naive
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
