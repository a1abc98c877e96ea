"""Encode and decode the `qh1`/`qh2` histograms of `resultsV2` (see docs/protocol.md).

A histogram travels as base64 of a small binary blob: a magic, the outcome
width, delta-coded outcome indices, a run-length block saying which counts are
1, and the other counts. The decoder trusts nothing: every length is checked
against the bytes actually present before anything is allocated, and every
fault is a `ProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from itertools import accumulate, groupby, pairwise
from typing import Any

from ._errors import InvalidInputError, ProtocolError

__all__ = [
    "MAX_WIDTH",
    "decode_histogram",
    "decode_result",
    "encode_histogram",
    "load_vector_route",
    "vector_route_loaded",
]

MAX_WIDTH = 2**20
"""Widest outcome (in bits) a payload may declare."""

_MAX_KEY_CHARS = 2**28
"""Cap on unique * n_bits, the characters of all keys: a tiny forged payload must not
make us render gigabytes of bitstrings."""

_COUNT_BYTES = 10
"""Longest varint for a length, count or run (10 bytes hold 70 bits, far above any shot count)."""

_MAGICS = {"qh1": b"QH1", "qh2": b"QH2"}

# One ULEB128 varint: continuation bytes, then a final byte below 0x80.
_VARINT = re.compile(rb"[\x80-\xff]*[\x00-\x7f]")


def _read_varint(data: bytes, pos: int, max_len: int, what: str) -> tuple[int, int]:
    """Read one varint of at most `max_len` bytes at `pos`; return (value, next position).

    Linear even for the megabit indices QH2 allows (a shift-and-or loop is quadratic).
    """
    if pos < len(data) and data[pos] < 0x80:
        return data[pos], pos + 1
    match = _VARINT.match(data, pos, pos + max_len)
    if match is None:
        if pos + max_len < len(data):
            raise ProtocolError(f"corrupt histogram: {what} varint longer than {max_len} bytes")
        raise ProtocolError(f"corrupt histogram: stream ends inside the {what}")
    end = match.end()
    if end - pos <= 9:
        value = 0
        for byte in reversed(data[pos:end]):
            value = (value << 7) | (byte & 0x7F)
        return value, end
    bits = "".join([format(byte & 0x7F, "07b") for byte in reversed(data[pos:end])])
    return int(bits, 2), end


def _read_varints(
    data: bytes, pos: int, count: int, max_len: int, what: str
) -> tuple[list[int], int]:
    """Read `count` consecutive varints; the hot loop of the decoder, hence the fast paths."""
    end = pos + count
    if end <= len(data) and data[pos:end].isascii():  # all single-byte: no loop needed
        return list(data[pos:end]), end
    values: list[int] = []
    append = values.append
    try:
        for _ in range(count):
            byte = data[pos]
            if byte < 0x80:
                append(byte)
                pos += 1
                continue
            second = data[pos + 1]
            if second < 0x80:  # max_len is always at least 2 here
                append((byte & 0x7F) | (second << 7))
                pos += 2
                continue
            value, pos = _read_varint(data, pos, max_len, what)
            append(value)
    except IndexError:
        raise ProtocolError(f"corrupt histogram: stream ends inside the {what}") from None
    return values, pos


def _read_runs(data: bytes, pos: int) -> tuple[list[int], bool, int]:
    """Read the length-prefixed run-length block: (run lengths, first run is of 1s, next pos)."""
    rle_len, pos = _read_varint(data, pos, _COUNT_BYTES, "run-length block size")
    end = pos + rle_len
    if end > len(data):
        raise ProtocolError("corrupt histogram: stream ends inside the run-length block")
    if rle_len == 0:
        return [], False, pos
    block = data[pos:end]
    n_runs, at = _read_varint(block, 0, _COUNT_BYTES, "run count")
    if n_runs == 0:
        runs: list[int] = []
        first = 0
    else:
        if n_runs > len(block) - at - 1:  # one flag byte, then at least a byte per run
            raise ProtocolError(f"corrupt histogram: {n_runs} runs cannot fit in the block")
        first = block[at]
        if first > 1:
            raise ProtocolError(f"corrupt histogram: run-length flag byte is {first}, not 0 or 1")
        runs, at = _read_varints(block, at + 1, n_runs, _COUNT_BYTES, "run lengths")
    if at != rle_len:
        raise ProtocolError(f"corrupt histogram: run-length block has {rle_len - at} stray bytes")
    return runs, first == 1, end


def _expand_counts(runs: list[int], first_is_one: bool, extras: list[int]) -> list[int]:
    """Turn the alternating runs (of 1s, and of counts taken from `extras`) into counts."""
    more = [extra + 2 for extra in extras]
    counts: list[int] = []
    taken = 0
    is_one = first_is_one
    for length in runs:
        if is_one:
            counts += [1] * length
        else:
            counts += more[taken : taken + length]
            taken += length
        is_one = not is_one
    return counts


_TABLE_BITS = 12


@functools.lru_cache(maxsize=_TABLE_BITS)
def _keys(width: int) -> list[str]:
    """Every `width`-bit key in index order (`width` <= _TABLE_BITS; shared, never mutate)."""
    return [bin(index)[2:].zfill(width) for index in range(1 << width)]


def _render(indices: list[int], width: int) -> list[str]:
    """The keys of `indices` (each known to fit in `width` bits), MSB first."""
    if width <= _TABLE_BITS:
        return list(map(_keys(width).__getitem__, indices))
    if width <= 2 * _TABLE_BITS:
        high, low, mask = _keys(width - _TABLE_BITS), _keys(_TABLE_BITS), (1 << _TABLE_BITS) - 1
        return [high[index >> _TABLE_BITS] + low[index & mask] for index in indices]
    # bin + zfill renders the same strings as format(index, f"0{width}b"), ~40% faster.
    return [bin(index)[2:].zfill(width) for index in indices]


def decode_histogram(encoding: str, n_bits: int, payload: str) -> dict[str, int]:
    """Decode a base64 QH1/QH2 payload to {bitstring: count} in increasing outcome order.

    Raises `ProtocolError`, with the reason, for anything the format does not allow.
    """
    return _decode(encoding, n_bits, payload, None)


def _vector_wins(unique: int, width: int) -> bool:
    """Whether the numpy route decodes this histogram faster (measured crossovers)."""
    return unique >= _vector_min_unique(width)


def _vector_min_unique(width: int) -> int:
    """The fewest outcomes for which the numpy route is faster, by width."""
    if width <= _TABLE_BITS:  # the pure route's keys come from a table: cheap
        return 320
    return 112 if width <= 2 * _TABLE_BITS else 40


_MIN_HEADER = 7
"""Bytes before the first outcome gap: magic (3), then width, outcome, shot and gap
counts (a byte each at least)."""


def may_take_vector_route(obj: object) -> bool:
    """Whether decoding this `results` object might take the numpy route.

    False when its payload is too short to hold the fewest outcomes that route
    is taken for (every outcome takes a byte at least): then decoding it never
    imports numpy, whose first import stalls a busy process's event loop.
    """
    if not isinstance(obj, dict):
        return False
    payload, n_bits = obj.get("payload"), obj.get("n_bits")
    if not isinstance(payload, str) or not isinstance(n_bits, int):
        return False  # passed through or refused by `decode_result`, not decoded
    return len(payload) * 3 // 4 >= _vector_min_unique(n_bits) + _MIN_HEADER


@functools.cache
def _vector_route() -> Any:
    """The numpy route's module, or None without numpy."""
    try:
        from . import _histogram_np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    return _histogram_np


def vector_route_loaded() -> bool:
    """Whether the numpy route is imported (numpy's first import takes tens of ms)."""
    return _vector_route.cache_info().currsize > 0


def load_vector_route() -> None:
    """Import the numpy route now: called in a worker thread before decoding on the loop."""
    _vector_route()


def _decode(encoding: str, n_bits: int, payload: str, vector: bool | None) -> dict[str, int]:
    """`decode_histogram`; `vector`: force the numpy route on or off (None: by size)."""
    magic = _MAGICS.get(encoding) if isinstance(encoding, str) else None
    if magic is None:
        raise ProtocolError(f"unsupported histogram encoding {encoding!r}")
    if not isinstance(n_bits, int) or isinstance(n_bits, bool) or not 1 <= n_bits <= MAX_WIDTH:
        raise ProtocolError(f"histogram n_bits must be an integer in 1..2**20, got {n_bits!r}")
    if not isinstance(payload, str):
        raise ProtocolError(f"histogram payload must be a base64 string, not {type(payload)}")
    try:  # what base64.b64decode(validate=True) does, without its wrapper's cost
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("histogram payload is not valid base64") from None

    if len(data) < 4:
        raise ProtocolError("corrupt histogram: payload too short for a header")
    head = data[:3]
    if head != magic:
        if head not in _MAGICS.values():
            raise ProtocolError(f"corrupt histogram: magic {head!r} is neither QH1 nor QH2")
        raise ProtocolError(f"corrupt histogram: magic {head!r} but encoding {encoding!r}")
    if magic == b"QH1":
        width, pos = data[3], 4
    else:
        width, pos = _read_varint(data, 3, _COUNT_BYTES, "width")
    if width > MAX_WIDTH:
        raise ProtocolError(f"corrupt histogram: width {width} bits is over 2**20")
    if width != n_bits:
        raise ProtocolError(f"corrupt histogram: payload width {width} but n_bits {n_bits}")

    unique, pos = _read_varint(data, pos, _COUNT_BYTES, "unique count")
    shots, pos = _read_varint(data, pos, _COUNT_BYTES, "shot count")
    n_gaps, pos = _read_varint(data, pos, _COUNT_BYTES, "gap count")
    if unique > len(data) - pos:  # every outcome takes at least one gap byte
        raise ProtocolError(
            f"corrupt histogram: {unique} outcomes cannot fit in {len(data)} bytes"
        )
    if unique * width > _MAX_KEY_CHARS:
        raise ProtocolError(f"histogram too large: {unique} outcomes of {width} bits")
    if n_gaps != unique:
        raise ProtocolError(f"corrupt histogram: {n_gaps} gaps for {unique} outcomes")
    if vector is None:
        vector = _vector_wins(unique, width)
    if vector and (route := _vector_route()) is not None:
        decoded: dict[str, int] | None = route.decode_body(data, pos, width, unique, shots)
        if decoded is not None:
            return decoded
    return _decode_body(data, pos, width, unique, shots)


def _decode_body(data: bytes, pos: int, width: int, unique: int, shots: int) -> dict[str, int]:
    """The pure route: the histogram whose outcome gaps start at `pos`."""
    n_gaps = unique
    gaps, pos = _read_varints(data, pos, n_gaps, (width + 6) // 7 + 1, "outcome indices")
    if 0 in gaps[1:]:
        raise ProtocolError("corrupt histogram: outcome indices are not strictly increasing")
    indices = list(accumulate(gaps))
    if indices and indices[-1].bit_length() > width:
        needed = indices[-1].bit_length()
        raise ProtocolError(
            f"corrupt histogram: an outcome index needs {needed} bits, not {width}"
        )

    runs, first_is_one, pos = _read_runs(data, pos)
    if sum(runs) != unique:
        raise ProtocolError(f"corrupt histogram: runs cover {sum(runs)} outcomes, not {unique}")
    other_runs = runs[1::2] if first_is_one else runs[0::2]
    extras_len, pos = _read_varint(data, pos, _COUNT_BYTES, "extras count")
    if extras_len != sum(other_runs):
        raise ProtocolError(
            f"corrupt histogram: {extras_len} extra counts but the runs need {sum(other_runs)}"
        )
    extras, pos = _read_varints(data, pos, extras_len, _COUNT_BYTES, "extra counts")
    if pos != len(data):
        raise ProtocolError(f"corrupt histogram: {len(data) - pos} trailing bytes")

    counts = _expand_counts(runs, first_is_one, extras)
    total = sum(counts)
    if total != shots:
        raise ProtocolError(f"corrupt histogram: counts add up to {total}, not {shots} shots")

    return dict(zip(_render(indices, width), counts, strict=True))


def decode_result(obj: object) -> object:
    """Decode one `results` object of a resultsV2 entry if it carries a payload.

    EXPECTATION jobs return plain JSON values there, so anything that is not a dict
    with a non-empty `payload` is returned unchanged.
    """
    if not isinstance(obj, dict) or not obj.get("payload"):
        return obj
    encoding = obj.get("encoding")
    n_bits = obj.get("n_bits")
    if not isinstance(encoding, str):
        raise ProtocolError(f"histogram result without a valid encoding: {encoding!r}")
    if not isinstance(n_bits, int) or isinstance(n_bits, bool):
        raise ProtocolError(f"histogram result without a valid n_bits: {n_bits!r}")
    return _decode(encoding, n_bits, obj["payload"], None)


def _uleb128(value: int) -> bytes:
    """Encode a non-negative integer as ULEB128."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_histogram(counts: Mapping[str, int], n_bits: int | None = None) -> dict[str, object]:
    """Encode {bitstring: count} as a resultsV2 histogram object (the local server's side).

    Uses qh1 up to 255 bits, qh2 beyond. `n_bits` defaults to the length of the keys
    and is required for an empty histogram. Bad input raises `InvalidInputError`
    (a `ValueError`).
    """
    if n_bits is None:
        if not counts:
            raise InvalidInputError("n_bits is required to encode an empty histogram")
        n_bits = len(next(iter(counts)))
    if not isinstance(n_bits, int) or isinstance(n_bits, bool) or not 1 <= n_bits <= MAX_WIDTH:
        raise InvalidInputError(f"n_bits must be an integer in 1..2**20, got {n_bits!r}")
    entries: list[tuple[int, int]] = []
    for key, count in counts.items():
        if not isinstance(key, str) or len(key) != n_bits or key.strip("01"):
            raise InvalidInputError(f"histogram key {key!r} is not a bitstring of length {n_bits}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidInputError(f"count for {key!r} must be a positive integer, got {count!r}")
        entries.append((int(key, 2), count))
    entries.sort()

    indices = [index for index, _ in entries]
    values = [count for _, count in entries]
    gaps = [b - a for a, b in pairwise([0, *indices])]
    runs = [len(list(group)) for _, group in groupby(values, key=lambda count: count == 1)]
    rle = b""
    if values:
        first = int(values[0] == 1)
        rle = _uleb128(len(runs)) + bytes([first]) + b"".join(map(_uleb128, runs))
    extras = [count - 2 for count in values if count != 1]

    magic, width = (b"QH1", bytes([n_bits])) if n_bits <= 255 else (b"QH2", _uleb128(n_bits))
    blob = b"".join(
        [
            magic,
            width,
            _uleb128(len(entries)),
            _uleb128(sum(values)),
            _uleb128(len(gaps)),
            *map(_uleb128, gaps),
            _uleb128(len(rle)),
            rle,
            _uleb128(len(extras)),
            *map(_uleb128, extras),
        ]
    )
    return {
        "encoding": magic.decode().lower(),
        "n_bits": n_bits,
        "payload": base64.b64encode(blob).decode("ascii"),
    }
