"""The one token scrubber: what a server echoes back never carries the token further."""

from __future__ import annotations

__all__ = ["scrub"]

_SHORTEST_PREFIX = 8
"""Prefixes of the token down to this length are scrubbed too (a length cap may cut it)."""


def scrub(text: str, token: str) -> str:
    """`text` without the token, nor any prefix of it (8+ characters) a length cap left."""
    if not token:
        return text
    text = text.replace(token, "***")
    for size in range(len(token) - 1, min(_SHORTEST_PREFIX, len(token)) - 1, -1):
        if token[:size] in text:
            text = text.replace(token[:size], "***")
    return text
