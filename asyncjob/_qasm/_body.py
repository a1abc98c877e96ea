"""The whole-body fast path: one compiled regex per register layout checks every gate.

After the header, includes and declarations (checked statement by statement by
`_hot`), the rest of a typical program is gate calls on indexed qubits and
measurements. For a given layout (version, includes, registers and sizes) one
regular expression accepts such a body when every gate is known with the
right arity, every index is in range and no qubit appears twice in one gate, so
the body costs one ``fullmatch`` in C instead of Python work per statement.

It accepts a subset of what the statement loop accepts (no whitespace inside an
operand, indices without leading zeros, no whole-register gate operands, angles
without parentheses or functions, no comments): a body it does not match goes to
the statement loop, so verdicts never depend on it.
"""

from __future__ import annotations

import re

from .._forksafe import ForkSafeLock
from ._hot import _FLAT_EXPR, _S, _run
from ._semantics import _Program

_MAX_REGISTERS = 16  # beyond this the alternations cost more than the loop saves
_MAX_QUBITS = 6  # gates on more qubits are left to the statement loop
_LAYOUTS_MAX = 256

# (version, includes, quantum registers, classical registers) -> compiled body regex
_Layout = tuple[int, frozenset[str], tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]
_bodies: dict[_Layout, re.Pattern[str] | None] = {}
_MISSING = re.compile("")  # a marker: layout not compiled yet
# The leading statements' text -> the body regex of their layout, None if they fail
_heads: dict[str, re.Pattern[str] | None] = {}
_HEADS_MAX = 1024
_HEAD_CHARS_MAX = 4096  # longer heads are read again each time rather than kept
# Recently accepted sources themselves (not a digest: a hit then costs one dict lookup,
# and the string's hash is usually cached already), up to _ACCEPTED_CHARS in all.
_accepted: dict[str, None] = {}
_accepted_chars = 0
_ACCEPTED_CHARS = 1 << 21
_lock = ForkSafeLock()  # held to write any of these memos; a read is one dict lookup
# The leading statements that may declare something (the header, includes, registers):
# the statement loop runs on these, the body regex on the rest.
_HEAD_RE = re.compile(r"(?:[ \t\r\n]*+(?:OPENQASM|include|qreg|creg|qubit|bit)[^;]*+;)*+")


def _body_accepts(source: str) -> bool:
    """True if the leading declarations pass the statement loop and the rest the body regex.

    The body regex accepts only statements the loop would accept after the same
    declarations, so True here means `_hot_accepts` would return True too (and the
    source is neither empty nor invalid UTF-8).
    """
    if source in _accepted:
        return True
    if "#" in source or "//" in source or "/*" in source:
        return False
    if not source.isascii():
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            return False  # a lone surrogate: the caller's checks name it
    head = _HEAD_RE.match(source)
    assert head is not None  # the pattern matches the empty string
    end = head.end()
    body = _heads.get(source[:end], _MISSING)
    if body is _MISSING:
        body = _head_body(source[:end])
        if end <= _HEAD_CHARS_MAX:
            with _lock:
                if len(_heads) >= _HEADS_MAX:
                    _heads.clear()
                _heads[source[:end]] = body
    if body is None or body.fullmatch(source, end) is None:
        return False
    global _accepted_chars
    with _lock:
        if _accepted_chars + len(source) > _ACCEPTED_CHARS:
            _accepted.clear()
            _accepted_chars = 0
        if len(source) <= _ACCEPTED_CHARS:
            _accepted[source] = None
            _accepted_chars += len(source)
    return True


def _head_body(head: str) -> re.Pattern[str] | None:
    """The body regex for the layout these leading statements declare; None if they fail."""
    if not head or "(" in head:
        return None  # the statement loop would see these with angles masked
    prog = _Program()
    if not _run(head.split(";")[:-1], prog) or prog.defined or prog.other:
        return None
    layout = (prog.version, prog.includes, tuple(prog.qregs.items()), tuple(prog.cregs.items()))
    body = _bodies.get(layout, _MISSING)
    if body is _MISSING:
        body = _compile(prog.gates, layout[2], layout[3])
        with _lock:
            if len(_bodies) >= _LAYOUTS_MAX:
                _bodies.clear()
            _bodies[layout] = body
    return body


def _digits_at_most(top: str, first: bool) -> str:
    """A regex for decimal strings as long as `top` and not above it (no leading zero if first)."""
    low = 1 if first and len(top) > 1 else 0
    high = int(top[0])
    if len(top) == 1:
        return f"[{low}-{high}]"
    branches = [f"{high}{_digits_at_most(top[1:], False)}"]
    if high > low:
        branches.append(f"[{low}-{high - 1}][0-9]{{{len(top) - 1}}}")
    return "(?:" + "|".join(branches) + ")"


def _below(size: int) -> str:
    """A regex for the canonical decimal integers 0 <= i < size (size >= 1)."""
    top = str(size - 1)
    branches = [f"[1-9][0-9]{{{n - 1}}}" if n > 1 else "[0-9]" for n in range(1, len(top))]
    branches.append(_digits_at_most(top, True))
    return "(?:" + "|".join(branches) + ")"


def _indexed(registers: tuple[tuple[str, int], ...]) -> str:
    """One operand `name[i]` of these registers with an index in range (no inner blanks)."""
    return "(?:" + "|".join(rf"{name}\[{_below(size)}\]" for name, size in registers) + ")"


def _trie(shapes: list[tuple[str, str]]) -> str:
    """An alternation of word + rest, branching on one character at a time.

    The regex engine skips a branch that starts with a different literal at once,
    so a statement costs a few character tests to find its shape, not one try per shape.
    """
    rests = [rest for word, rest in shapes if not word]
    children: dict[str, list[tuple[str, str]]] = {}
    for word, rest in shapes:
        if word:
            children.setdefault(word[0], []).append((word[1:], rest))
    branches = [re.escape(c) + _trie(sub) for c, sub in sorted(children.items())] + rests
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _compile(
    gates: dict[str, tuple[int, int]],
    qregs: tuple[tuple[str, int], ...],
    cregs: tuple[tuple[str, int], ...],
) -> re.Pattern[str] | None:
    """The body regex for this layout; None when it would not pay."""
    qubit_regs = tuple((n, s) for n, s in qregs if s > 0)
    bit_regs = tuple((n, s) for n, s in cregs if s > 0)
    if not qubit_regs or len(qregs) + len(cregs) > _MAX_REGISTERS:
        return None
    qubit = _indexed(qubit_regs)
    # Gates grouped by how many qubits they take; within a group, one trie of names per
    # parameter count (the angle pattern appears once per count, which keeps the regex
    # small and quick to compile). Only the operands another must differ from are
    # captured (few groups keep the engine's backtracking state small).
    by_width: dict[int, dict[int, list[tuple[str, str]]]] = {}
    for name, (n_params, n_qubits) in sorted(gates.items()):
        if 1 <= n_qubits <= _MAX_QUBITS:
            by_width.setdefault(n_qubits, {}).setdefault(n_params, []).append((name, ""))
    statements = []
    group = 0
    for width, by_params in sorted(by_width.items()):
        heads = []
        for n_params, names in sorted(by_params.items()):
            if n_params:
                more = rf"(?:,{_FLAT_EXPR}){{{n_params - 1}}}" if n_params > 1 else ""
                heads.append(rf"{_trie(names)}{_S}\({_FLAT_EXPR}{more}\){_S}")
            else:
                heads.append(rf"{_trie(names)}[ \t\r\n]++")
        # With canonical indices and no blanks, equal operand text means the same qubit.
        operands = ""
        for k in range(width):
            if k:
                operands += _S + "," + _S
                operands += "".join(rf"(?!\{j})" for j in range(group + 1, group + k + 1))
            operands += qubit if k == width - 1 else f"({qubit})"
        group += width - 1
        statements.append("(?:" + "|".join(heads) + ")" + operands)
    if bit_regs:
        bit = _indexed(bit_regs)
        shapes = [("measure", rf"[ \t\r\n]++{qubit}{_S}->{_S}{bit}")]
        for c, size in bit_regs:
            shapes.append((c, rf"\[{_below(size)}\]{_S}={_S}measure[ \t\r\n]++{qubit}"))
        for q, q_size in qubit_regs:
            for c, c_size in bit_regs:
                if q_size == c_size:
                    shapes.append(("measure", rf"[ \t\r\n]++{q}{_S}->{_S}{c}"))
        statements.append(_trie(shapes))
    body = "(?:" + "|".join(statements) + ")"
    return re.compile(rf"(?:{_S}{body}{_S};)*+{_S}")
