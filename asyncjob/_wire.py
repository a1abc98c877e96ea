"""The wire rules both ends enforce: shot groups, circuit-to-observables maps, loopback hosts.

The client checks a submission with these before anything is sent, and the
local scheduler checks each chunk it receives with the same functions, so the
two cannot drift apart. Errors are `InvalidInputTypeError` (a `TypeError`: wrong
shape) or `InvalidInputError` (a `ValueError`: wrong values); the scheduler
answers either with a 400.

Also `wire_json`, the one way the client writes a JSON body: chunk sizes are
counted in it, and a body serialised once is sent as it is.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

from ._errors import InvalidInputError, InvalidInputTypeError

__all__ = ["check_ham_map", "check_shot_groups", "is_loopback", "wire_json"]

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""Built once: `json.dumps` with `separators` builds an encoder on every call."""


def wire_json(value: object) -> str:
    """`value` as the client sends it: compact JSON, ASCII only (so its length is its size)."""
    return _ENCODER.encode(value)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _int_rows(name: str, value: object, fields: str) -> list[tuple[int, ...]]:
    """`value` as a non-empty list of rows of ints, one per entry of `fields`."""
    width = len(fields.split(", "))
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInputTypeError(f"{name} must be a non-empty list of [{fields}]")
    rows: list[tuple[int, ...]] = []
    for row in value:
        if (
            isinstance(row, str | bytes)
            or not isinstance(row, Sequence)
            or len(row) != width
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in row)
        ):
            raise InvalidInputTypeError(
                f"{name}: each entry must be [{fields}] of {width} ints, got {row!r}"
            )
        rows.append(tuple(row))
    if not rows:
        raise InvalidInputError(f"{name} is empty: it must be a non-empty list of [{fields}]")
    return rows


def _check_tiling(name: str, ranges: Sequence[tuple[int, ...]], n: int, unit: str) -> None:
    """The `[start, end)` ranges, in the order given, tile [0, n) exactly."""
    expected = 0
    for row in ranges:
        start, end = row[0], row[1]
        if start != expected:
            kind = "overlap" if start < expected else "leave a gap"
            raise InvalidInputError(
                f"{name}: ranges must tile [0, {n}); [{start}, {end}) would {kind}"
            )
        if end <= start:
            raise InvalidInputError(f"{name}: range [{start}, {end}) is empty or reversed")
        if end > n:
            raise InvalidInputError(f"{name}: range [{start}, {end}) goes past the {n} circuits")
        expected = end
    if expected != n:
        raise InvalidInputError(
            f"{name}: ranges cover [0, {expected}) but the {unit} has {n} circuits"
        )


def check_shot_groups(
    value: object, n: int, *, unit: str = "batch", ordered: bool = True
) -> tuple[tuple[int, int, int], ...]:
    """`shot_groups`: `[start, end, shots]` entries whose ranges tile [0, n).

    Shots must be positive. The client asks for the ranges in order; a
    scheduler takes them in any order (`ordered=False`), as other clients send
    them. `unit` names what the indices count in messages (a batch, a chunk).
    """
    rows = _int_rows("shot_groups", value, "start, end, shots")
    for row in rows:
        if row[2] <= 0:
            raise InvalidInputError(f"shot_groups entry {list(row)!r}: shots must be positive")
    _check_tiling("shot_groups", rows if ordered else sorted(rows), n, unit)
    return tuple((r[0], r[1], r[2]) for r in rows)


def check_ham_map(
    value: object, n_groups: int, n: int | None = None
) -> tuple[tuple[int, int], ...]:
    """`circuit_ham_map`: one `[start, end)` range per observables group, job-wide positions.

    With `n` (the whole batch, known to the client) the ranges must tile
    [0, n) in group order; a scheduler, seeing one chunk, checks each range alone.
    """
    rows = _int_rows("circuit_ham_map", value, "start, end")
    if len(rows) != n_groups:
        raise InvalidInputError(
            f"circuit_ham_map has {len(rows)} ranges but ham_ops has {n_groups} groups"
        )
    if n is not None:
        _check_tiling("circuit_ham_map", rows, n, "batch")
    for start, end in rows:
        if not 0 <= start <= end:
            raise InvalidInputError(
                f"circuit_ham_map: range [{start}, {end}) is negative or reversed"
            )
    return tuple((r[0], r[1]) for r in rows)
