"""What a status body says beyond the status: why a job failed, and whether its counts are real."""

from __future__ import annotations

from ._errors import ProtocolError
from ._models import Response

__all__ = ["failure_reason", "synthetic_counts"]

_REASON_FIELDS = ("error", "reason", "message", "detail")


def _body(response: Response | None) -> dict[str, object]:
    if response is None:
        return {}
    try:
        body = response.json()
    except ProtocolError:
        return {}
    return body if isinstance(body, dict) else {}


def failure_reason(response: Response | None) -> str | None:
    """The scheduler's one-line explanation of a terminal status, if the body carries one."""
    body = _body(response)
    for field in _REASON_FIELDS:
        value = body.get(field)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text if len(text) <= 300 else text[:297] + "..."
    return None


def synthetic_counts(response: Response | None) -> bool:
    """True when the scheduler says its counts are synthetic (the local ``sampler`` executor)."""
    return _body(response).get("synthetic") is True
