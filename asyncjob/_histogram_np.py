"""The vectorised (numpy) route of the histogram decoder, for histograms of many outcomes.

`decode_body` decodes what follows a QH1/QH2 header with array operations
instead of a Python loop per outcome. It never refuses anything itself: it
returns None whenever the input is outside what it handles exactly (a varint
over 9 bytes, an outcome wider than 63 bits) or fails any check, and the pure
decoder then decodes the same bytes and refuses them with the precise error.
So both routes refuse corrupt input identically, whatever the route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._errors import ProtocolError
from ._histogram import _COUNT_BYTES, _read_varint

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["MAX_WIDTH", "decode_body"]

MAX_WIDTH = 63
"""Widest outcome this route renders (indices are uint64 and must not wrap)."""

_RENDER_ROWS = 1 << 16
"""Rows rendered per block, so the temporary arrays stay small whatever the histogram."""
_LOW7 = np.uint64(0x7F)
_ZERO_CHAR = np.uint32(ord("0"))


def read_varints(
    data: bytes, pos: int, count: int, max_len: int
) -> tuple[NDArray[np.uint64], int, int] | None:
    """`count` ULEB128 varints at `pos`: (uint64 values, next position, longest in bytes).

    None when the stream ends first or a varint is longer than `max_len` or 9
    bytes (63 bits): the pure reader then gives the precise error or value.
    """
    if count == 0:
        return np.zeros(0, np.uint64), pos, 1
    span = min(len(data) - pos, count * min(max_len, 9))
    if span < count:
        return None
    if data[pos : pos + count].isascii():  # one byte each (uint8: sums and cumsum widen)
        return np.frombuffer(data, np.uint8, count, pos), pos + count, 1
    chunk = np.frombuffer(data, np.uint8, span, pos)
    ends = np.flatnonzero(chunk < 0x80)
    if len(ends) < count:
        return None
    ends = ends[:count]
    end = int(ends[-1]) + 1
    chunk = chunk[:end]
    high = chunk[ends]
    low = chunk[ends - 1]  # for ends[0] == 0, the last byte: a terminator, so never used
    two = low >= 0x80
    if int(two.sum()) == end - count:  # no varint is over two bytes: the common case
        joined = (high.astype(np.uint64) << np.uint64(7)) | (low & 0x7F)
        return np.where(two, joined, high), pos + end, 2
    starts = np.empty(count, np.intp)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    longest = int(lengths.max())
    if longest > max_len or longest > 9:
        return None
    shifts = np.arange(end, dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    shifts *= np.uint64(7)
    values = np.bitwise_or.reduceat((chunk & 0x7F).astype(np.uint64) << shifts, starts)
    return values, pos + end, longest


def render(indices: NDArray[np.uint64], width: int) -> list[str]:
    """The `width`-bit keys (MSB first) of uint64 `indices`, `width` <= 63."""
    size = 1 if width <= 8 else 2 if width <= 16 else 4 if width <= 32 else 8
    skip = size * 8 - width
    keys: list[str] = []
    wide = indices.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)
    for start in range(0, len(indices), _RENDER_ROWS):
        block = wide[start : start + _RENDER_ROWS, size - 1 :: -1]  # low `size` bytes, MSB first
        chars = np.add(np.unpackbits(block, axis=1)[:, skip:], _ZERO_CHAR, dtype=np.uint32)
        keys += chars.view(f"<U{width}").ravel().tolist()
    return keys


def decode_body(
    data: bytes, pos: int, width: int, unique: int, shots: int
) -> dict[str, int] | None:
    """The histogram whose outcome gaps start at `pos`; None to leave it to the pure route."""
    if width > MAX_WIDTH:
        return None
    try:
        return _decode_body(data, pos, width, unique, shots)
    except ProtocolError:  # the pure route finds it too, and says where first
        return None


def _total(values: NDArray[np.uint64], longest: int) -> int:
    """The exact sum of `values` (varints of at most `longest` bytes, so each below 2**63)."""
    if 7 * longest + len(values).bit_length() <= 63:  # cannot wrap in uint64
        return int(values.sum(dtype=np.uint64))
    return sum(values.tolist())


def _decode_body(
    data: bytes, pos: int, width: int, unique: int, shots: int
) -> dict[str, int] | None:
    read = read_varints(data, pos, unique, (width + 6) // 7 + 1)
    if read is None:
        return None
    gaps, pos, longest = read
    if unique > 1 and not gaps[1:].all():
        return None
    indices = np.cumsum(gaps, dtype=np.uint64)
    if 7 * longest + unique.bit_length() > 63 and not (indices[1:] > indices[:-1]).all():
        return None  # the sum wrapped (each gap is below 2**63, so a wrap goes down)
    if unique and int(indices[-1]).bit_length() > width:
        return None
    rle_len, pos = _read_varint(data, pos, _COUNT_BYTES, "run-length block size")
    end = pos + rle_len
    if rle_len == 0 or end > len(data):
        return None
    n_runs, at = _read_varint(data, pos, _COUNT_BYTES, "run count")
    if n_runs == 0 or at >= end or data[at] > 1:
        return None
    other = 1 if data[at] else 0  # parity of the runs of counts other than 1
    read = read_varints(data, at + 1, n_runs, _COUNT_BYTES)
    if read is None or read[1] != end:
        return None
    runs, _, run_bytes = read
    if _total(runs, run_bytes) != unique:  # so each run, and the repeats below, fit
        return None
    extras_len, pos = _read_varint(data, end, _COUNT_BYTES, "extras count")
    if extras_len != _total(runs[other::2], run_bytes):
        return None
    read = read_varints(data, pos, extras_len, _COUNT_BYTES)
    if read is None or read[1] != len(data):
        return None
    extras, _, extra_bytes = read
    if unique + extras_len + _total(extras, extra_bytes) != shots:
        return None
    counts = np.ones(unique, np.uint64)
    repeats = runs if runs.dtype == np.uint8 else runs.astype(np.intp)
    counts[np.repeat(_alternating(n_runs, other), repeats)] = extras + np.uint64(2)
    return dict(zip(render(indices, width), counts.tolist(), strict=True))


_PATTERN = np.zeros(0, bool)


def _alternating(n: int, first: int) -> NDArray[np.bool_]:
    """`n` booleans, True at the positions of parity `first` (a view of a shared pattern)."""
    global _PATTERN
    pattern = _PATTERN
    if len(pattern) < n + 1:
        pattern = np.zeros(max(2 * n + 2, 1024), bool)
        pattern[::2] = True
        _PATTERN = pattern  # a larger one replaces it; concurrent callers keep theirs
    return pattern[first : first + n]
