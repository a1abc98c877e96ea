"""The verdict cache: an LRU keyed by a content hash, shared by threads (fork-safe lock)."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

from .._forksafe import ForkSafeLock
from ._hot import _SKIP
from ._semantics import _line_column, _Verdict

_CACHE_SIZE = 4096
_cache: OrderedDict[bytes, _Verdict] = OrderedDict()
_cache_lock = ForkSafeLock()
_EMPTY_RE = re.compile(_SKIP)


def _precheck(source: str) -> tuple[bytes | None, _Verdict]:
    """Cheap checks before any parsing; returns (cache key, verdict or None)."""
    try:
        data = source.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = _line_column(source, exc.start)
        bad = source[exc.start].encode("unicode_escape").decode("ascii")
        return None, ("source is not valid UTF-8 text (lone surrogate)", line, column, bad)
    if _EMPTY_RE.fullmatch(source):
        return None, ("empty circuit", None, None, None)
    return hashlib.blake2b(data, digest_size=16).digest(), None


def _cache_get(key: bytes) -> tuple[bool, _Verdict]:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return True, _cache[key]
    return False, None


def _cache_put(key: bytes, verdict: _Verdict) -> None:
    with _cache_lock:
        _cache[key] = verdict
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _key(digest: bytes, full: bool) -> bytes:
    return digest + (b"F" if full else b"f")
