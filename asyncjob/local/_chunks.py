"""Parsing of an `add_circuits` chunk's body: circuits, parameter sets, shots, observables.

Each function checks one field of the wire protocol (docs/protocol.md) and
raises `BadRequest` (a 400 answer) with what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from typing import Any

from .._parametric import bind_template
from .._wire import check_shot_groups
from ._decode import BadRequest, gunzip, unpack

__all__ = [
    "as_int",
    "decode_observables",
    "packed_circuits",
    "shots_per_circuit",
    "template_circuits",
]

_SPARSE_TERM = re.compile(r"([XYZ])(\d+)")


def _is_text(value: str) -> bool:
    """False for a string with lone surrogates (JSON allows them; UTF-8 does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sparse_to_dense(term: str, n_qubits: int) -> str:
    if term == "I":
        return "I" * n_qubits
    paulis = ["I"] * n_qubits
    end = 0
    for match in _SPARSE_TERM.finditer(term):
        if match.start() != end:
            break
        index = int(match.group(2))
        if index >= n_qubits or paulis[index] != "I":
            raise ValueError(f"term {term!r}: qubit {index} out of range or repeated")
        paulis[index] = match.group(1)
        end = match.end()
    if end != len(term) or not term:
        raise ValueError(f"term {term!r} is not in sparse <Pauli><index> form")
    return "".join(paulis)


def decode_observables(value: object) -> list[list[str]]:
    """The `observables` field: `|`-joined groups, each `@gzs<n>:` compressed or dense."""
    if not isinstance(value, str) or not value:
        raise BadRequest("observables must be a non-empty string")
    groups: list[list[str]] = []
    for number, group in enumerate(value.split("|")):
        try:
            if group.startswith("@gzs"):
                head, colon, data = group.partition(":")
                if not colon or not head[4:].isdigit():
                    raise ValueError("expected @gzs<number of qubits>:<base64>")
                n_qubits = int(head[4:])
                sparse = gunzip(base64.b64decode(data, validate=True)).decode("utf-8")
                terms = [_sparse_to_dense(term, n_qubits) for term in sparse.split(";")]
            else:
                terms = group.split(";")
                if any(not t or t.strip("IXYZ") for t in terms):
                    raise ValueError("terms must be non-empty strings over I, X, Y, Z")
            if len({len(t) for t in terms}) != 1:
                raise ValueError("terms of one group must all have the same length")
        except (binascii.Error, ValueError, zlib.error) as exc:
            raise BadRequest(f"observables group {number}: {exc}") from None
        groups.append(terms)
    return groups


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def shots_per_circuit(value: object, n_circuits: int) -> list[int]:
    """Per-circuit shots from `shot_groups`, whose ranges must tile the chunk (wire rule)."""
    try:
        groups = check_shot_groups(value, n_circuits, unit="chunk", ordered=False)
    except (TypeError, ValueError) as exc:
        raise BadRequest(str(exc)) from None
    shots = [0] * n_circuits
    for start, end, count in groups:
        shots[start:end] = [count] * (end - start)
    return shots


def _resolve_template(template: str, names: list[str], values: list[object], label: str) -> str:
    """Substitute parameter values into a parametric QASM template (divi's payload form)."""
    if len(values) != len(names):
        raise BadRequest(
            f"parameter set {label!r} has {len(values)} values for {len(names)} parameters"
        )
    numbers: list[float] = []
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise BadRequest(f"parameter set {label!r}: value {value!r} is not a finite number")
        numbers.append(float(value))
    return bind_template(template, names, numbers)


def packed_circuits(body: dict[str, Any]) -> dict[str, object] | None:
    """A chunk's `circuits` map (label -> packed circuit), labels checked; None if absent."""
    if "circuits" not in body:
        return None
    circuits = body["circuits"]
    if not isinstance(circuits, dict) or not circuits:
        raise BadRequest("circuits must be a non-empty object label -> circuit")
    for label in circuits:
        if not label or not _is_text(label):
            raise BadRequest("circuit labels must be non-empty, valid UTF-8 strings")
    return circuits


def template_circuits(body: dict[str, Any]) -> dict[str, str]:
    """label -> QASM source of divi's parametric form (a template and parameter sets)."""
    if "circuit_template" not in body:
        raise BadRequest("the chunk carries no circuits")
    template = unpack(body["circuit_template"], "circuit_template")
    names = body.get("parameter_names", [])
    rows = body.get("parameter_sets")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("parameter_names must be a list of strings")
    if not isinstance(rows, list) or not rows:
        raise BadRequest("parameter_sets must be a non-empty list")
    out: dict[str, str] = {}
    for row in rows:
        label = row.get("label") if isinstance(row, dict) else None
        values = row.get("values") if isinstance(row, dict) else None
        if (
            not isinstance(label, str)
            or not label
            or not _is_text(label)
            or not isinstance(values, list)
        ):
            raise BadRequest(f"parameter_sets entry {row!r} is not {{label, values}}")
        if label in out:
            raise BadRequest(f"duplicate label {label!r} in the chunk")
        out[label] = _resolve_template(template, names, values, label)
    return out
