"""Pauli terms shorter than their circuit, padded with identities onto its first qubits.

divi's own runners measure `ZZ` on a 3-qubit circuit as `ZZI` and key the
results by the padded term; `DiviBackend` does the same so that a program
gets the keys it would get from divi's runners.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._batch import _check_ham_ops
from ._wire import check_ham_map

__all__ = ["pad_ham_ops"]


def pad_ham_ops(
    ham_ops: object, ham_map: object, widths: Sequence[int]
) -> tuple[str, tuple[str, str] | None]:
    """`ham_ops` with each group's terms padded to the width of the circuits it is measured on.

    `widths` holds each circuit's qubit count in submission order; `ham_map`
    assigns each `|` group a range of them (None: one group for all). Returns
    the padded string and one (short, padded) example, or None if nothing
    changed. Raises ValueError when a group's short terms meet circuits of
    different widths: there is no one way to pad them.
    """
    n_groups = _check_ham_ops(ham_ops)
    assert isinstance(ham_ops, str)  # checked above
    ranges = (
        check_ham_map(ham_map, n_groups, len(widths))
        if ham_map is not None
        else ((0, len(widths)),) * n_groups
    )
    padded: list[str] = []
    example: tuple[str, str] | None = None
    for group, (start, end) in zip(ham_ops.split("|"), ranges, strict=True):
        terms = group.split(";")
        group_widths = set(widths[start:end])
        if group_widths and len(terms[0]) < max(group_widths):
            if len(group_widths) > 1:
                raise ValueError(
                    f"ham_ops terms of {len(terms[0])} qubits are measured on circuits of "
                    f"{sorted(group_widths)} qubits: give terms as wide as the circuits"
                )
            width = group_widths.pop()
            example = example or (terms[0], terms[0].ljust(width, "I"))
            terms = [term.ljust(width, "I") for term in terms]
        padded.append(";".join(terms))
    return "|".join(padded), example
