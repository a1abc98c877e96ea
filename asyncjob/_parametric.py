"""Parametric circuits: one OpenQASM template plus the rows of values the server binds into it.

A variational sweep submits the same circuit with many parameter values. Sent
in this form (the `circuit_template` / `parameter_names` / `parameter_sets`
shape of an `add_circuits/` chunk), the template travels once per chunk and
each circuit costs one short JSON row, instead of one compressed circuit each.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Iterable, Sequence

import attrs

from . import _qasm
from ._errors import InvalidInputError, InvalidInputTypeError

__all__ = ["ParametricCircuit", "bind_template", "check_pieces"]

Row = tuple[str, tuple[float, ...]]


def _rows(value: Iterable[tuple[str, Iterable[object]]]) -> tuple[Row, ...]:
    """Each `(label, values)` row as tuples, its values checked and made floats."""
    if isinstance(value, str | bytes):
        raise InvalidInputTypeError("parameter_sets must be a sequence of (label, values) rows")
    rows: list[Row] = []
    for row in value:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != 2:
            raise InvalidInputTypeError(
                f"each parameter set must be a (label, values) pair, got {row!r:.60}"
            )
        label, values = row
        if isinstance(values, str | bytes):
            raise InvalidInputTypeError(
                f"parameter set {label!r}: values must be a sequence of numbers"
            )
        numbers_ = []
        for number in values:
            if isinstance(number, bool) or not isinstance(number, numbers.Real):
                raise InvalidInputTypeError(
                    f"parameter set {label!r}: {number!r:.40} is not a real number"
                )
            as_float = float(number)
            if not math.isfinite(as_float):
                raise InvalidInputError(
                    f"parameter set {label!r}: {as_float} is not a finite number"
                )
            numbers_.append(as_float)
        rows.append((label, tuple(numbers_)))
    return tuple(rows)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise InvalidInputTypeError("parameter_names must be a sequence of names, not one string")
    return tuple(value)


@attrs.frozen
class ParametricCircuit:
    """An OpenQASM template with named parameters, and one labelled row of values per circuit.

    ```python
    ParametricCircuit(
        "OPENQASM 2.0; include \\"qelib1.inc\\"; qreg q[1]; creg c[1]; rx(theta) q[0]; "
        "measure q -> c;",
        parameter_names=["theta"],
        parameter_sets=[("a", [0.1]), ("b", [0.2])],
    )
    ```
    Pass it to `submit_circuits` (alone, or in a sequence with others and with
    `(label, source)` pairs): each row is one circuit of the batch, labelled by
    its label, whose source is the template with every parameter name replaced
    by the row's value. Rows are checked here (one value per name, each a finite
    real number); the template when submitted, by binding its first row.
    """

    template: str = attrs.field(validator=attrs.validators.instance_of(str))
    parameter_names: tuple[str, ...] = attrs.field(converter=_names)
    parameter_sets: tuple[Row, ...] = attrs.field(converter=_rows)

    def __attrs_post_init__(self) -> None:
        if not self.template.strip():
            raise InvalidInputError("a ParametricCircuit needs a non-empty template")
        for name in self.parameter_names:
            if not isinstance(name, str) or not name or name != name.strip():
                raise InvalidInputError(
                    f"parameter names must be non-empty, unpadded str: {name!r}"
                )
        if len(set(self.parameter_names)) != len(self.parameter_names):
            raise InvalidInputError(f"duplicate parameter names in {list(self.parameter_names)}")
        if not self.parameter_sets:
            raise InvalidInputError("a ParametricCircuit needs at least one parameter set")
        for label, values in self.parameter_sets:
            if len(values) != len(self.parameter_names):
                raise InvalidInputError(
                    f"parameter set {label!r} has {len(values)} values for the "
                    f"{len(self.parameter_names)} parameters {list(self.parameter_names)}"
                )

    @property
    def labels(self) -> tuple[str, ...]:
        """The label of each row, in order."""
        return tuple(label for label, _ in self.parameter_sets)

    def bind(self, index: int) -> str:
        """The source of row `index`: the template with that row's values substituted."""
        return bind_template(self.template, self.parameter_names, self.parameter_sets[index][1])

    def bound(self) -> dict[str, str]:
        """Every row's label -> source (what the server runs)."""
        return {label: self.bind(i) for i, (label, _) in enumerate(self.parameter_sets)}


def _format(value: float) -> str:
    text = str(float(value))
    return f"({text})" if text.startswith("-") else text


@functools.lru_cache(maxsize=64)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """A name as a whole token: not part of a longer identifier, a number or an indexing."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])({alternatives})(?![\w\[])")


def bind_template(template: str, names: Sequence[str], values: Sequence[float]) -> str:
    """`template` with each name replaced by its value (`str(float)`, negatives in parentheses).

    The substitution the server applies to a `circuit_template`; the client uses
    it to validate a template before sending it.
    """
    if not names:
        return template
    mapping = {name: _format(value) for name, value in zip(names, values, strict=True)}
    return _pattern(tuple(names)).sub(lambda m: mapping[m.group(1)], template)


def check_pieces(
    pieces: Sequence[ParametricCircuit | tuple[tuple[str, str], ...]], *, full: bool = False
) -> None:
    """Validate every plain circuit, and each template by binding its first row.

    The other rows differ from the first only in the numbers substituted, which
    are checked to be finite reals, so they are valid whenever it is.
    """
    items: list[tuple[str, str]] = []
    for piece in pieces:
        if isinstance(piece, ParametricCircuit):
            items.append((piece.labels[0], piece.bind(0)))
        else:
            items.extend(piece)
    _qasm.check_batch(items, full=full)
