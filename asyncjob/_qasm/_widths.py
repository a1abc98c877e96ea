"""Circuit widths: how many qubits and classical bits a circuit declares (best effort)."""

from __future__ import annotations

import re

from ._hot import _COMMENT_RE

_DECLARATION_RE = re.compile(
    r"(?:^|[;}])\s*(?:output\s+)?"
    r"(?:(qreg|creg)\s+[A-Za-z_]\w*\s*(?:\[\s*([0-9]+)\s*\])?"
    r"|(qubit|bit)\s*(?:\[\s*([0-9]+)\s*\])?\s*[A-Za-z_]\w*)"
)
_HARDWARE_QUBIT_RE = re.compile(r"\$([0-9]+)")


def _declared(source: str, quantum: bool) -> int:
    text = _COMMENT_RE.sub(" ", source)
    total = 0
    for old, old_size, new, new_size in _DECLARATION_RE.findall(text):
        kind, size = (old, old_size) if old else (new, new_size)
        if (kind in ("qreg", "qubit")) == quantum:
            total += int(size) if size else 1
    if quantum and total == 0:
        indices = [int(n) for n in _HARDWARE_QUBIT_RE.findall(text)]
        total = max(indices) + 1 if indices else 0
    return total


def circuit_qubits(source: str) -> int:
    """Number of qubits the circuit declares (best effort: `$n` hardware qubits count too)."""
    return _declared(source, quantum=True)


def circuit_clbits(source: str) -> int:
    """Number of classical bits the circuit declares (best effort; 0 if none)."""
    return _declared(source, quantum=False)
