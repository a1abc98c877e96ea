"""Chunk bodies of a batch holding parametric circuits (templates plus rows)."""

from __future__ import annotations

from typing import Any

from ._batch import Submission, encode_circuit
from ._errors import PayloadTooLargeError
from ._parametric import ParametricCircuit
from ._wire import wire_json

__all__ = ["template_bodies"]


def template_bodies(submission: Submission, max_bytes: int, target: int) -> list[dict[str, Any]]:
    """Every `add_circuits/` body of a submission made of pieces, in order, none finalized.

    A run of plain circuits is chunked like any batch; a parametric circuit's
    rows are split into bodies of about `target` bytes (never over `max_bytes`),
    each carrying the compressed template once.
    """
    assert submission.pieces is not None
    bodies: list[dict[str, Any]] = []
    position = 0
    for piece in submission.pieces:
        if isinstance(piece, ParametricCircuit):
            bodies += _row_bodies(submission, piece, position, max_bytes, target)
            position += len(piece.parameter_sets)
        else:
            encoded = [encode_circuit(source) for _, source in piece]
            # chunk_bodies indexes encoded circuits by batch position.
            padded = [""] * position + encoded
            bodies += submission.chunk_bodies(padded, max_bytes, position, target)
            position += len(piece)
    return bodies


def _row_bodies(
    submission: Submission, piece: ParametricCircuit, position: int, max_bytes: int, target: int
) -> list[dict[str, Any]]:
    template = encode_circuit(piece.template)
    rows = [{"label": label, "values": list(values)} for label, values in piece.parameter_sets]
    sizes = [len(wire_json(row)) + 1 for row in rows]
    target = min(target, max_bytes)

    def body(start: int, end: int) -> dict[str, Any]:
        return {
            "circuit_template": template,
            "parameter_names": list(piece.parameter_names),
            "parameter_sets": rows[start:end],
            "mode": "append",
            "finalized": "false",
            **submission.extras(position + start, position + end),
        }

    bodies = []
    start = 0
    while start < len(rows):
        size = len(wire_json(body(start, start)))
        end = start
        while end < len(rows) and (end == start or size + sizes[end] <= target):
            size += sizes[end]
            end += 1
        while len(wire_json(candidate := body(start, end))) > max_bytes:
            if end - start == 1:
                raise PayloadTooLargeError(
                    f"parametric circuit of {piece.labels[0]!r} needs a "
                    f"{len(wire_json(candidate))}-byte request for one row, over the "
                    f"{max_bytes}-byte limit"
                )
            end = start + (end - start) // 2
        bodies.append(candidate)
        start = end
    return bodies
