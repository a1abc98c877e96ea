"""What a valid program is: gate tables, the program model `_Program` and its checks.

Every path (hot regex, token checker, AST walk) drives `_Program` statement by
statement, so they agree on what is semantically valid. Nothing here is mutated
after import but the `_gate_table` memo (``functools.lru_cache`` locks itself).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

# A verdict: None when the source is valid, else (reason, line, column, token).
_Verdict = tuple[str, int | None, int | None, str | None] | None

# --------------------------------------------------------------------------- gate tables
# name -> (number of parameters, number of qubits)

_QELIB1: dict[str, tuple[int, int]] = {
    "u3": (3, 1), "u2": (2, 1), "u1": (1, 1), "cx": (0, 2), "id": (0, 1), "u0": (1, 1),
    "u": (3, 1), "p": (1, 1), "x": (0, 1), "y": (0, 1), "z": (0, 1), "h": (0, 1),
    "s": (0, 1), "sdg": (0, 1), "t": (0, 1), "tdg": (0, 1), "rx": (1, 1), "ry": (1, 1),
    "rz": (1, 1), "sx": (0, 1), "sxdg": (0, 1), "cz": (0, 2), "cy": (0, 2), "swap": (0, 2),
    "ch": (0, 2), "ccx": (0, 3), "cswap": (0, 3), "crx": (1, 2), "cry": (1, 2), "crz": (1, 2),
    "cu1": (1, 2), "cp": (1, 2), "cu3": (3, 2), "csx": (0, 2), "cu": (4, 2), "rxx": (1, 2),
    "rzz": (1, 2), "rccx": (0, 3), "rc3x": (0, 4), "c3x": (0, 4), "c3sqrtx": (0, 4),
    "c4x": (0, 5),
}  # fmt: skip

_STDGATES: dict[str, tuple[int, int]] = {
    "p": (1, 1), "x": (0, 1), "y": (0, 1), "z": (0, 1), "h": (0, 1), "s": (0, 1),
    "sdg": (0, 1), "t": (0, 1), "tdg": (0, 1), "sx": (0, 1), "rx": (1, 1), "ry": (1, 1),
    "rz": (1, 1), "cx": (0, 2), "cy": (0, 2), "cz": (0, 2), "cp": (1, 2), "crx": (1, 2),
    "cry": (1, 2), "crz": (1, 2), "ch": (0, 2), "swap": (0, 2), "ccx": (0, 3),
    "cswap": (0, 3), "cu": (4, 2),
    # OpenQASM 2 compatibility
    "CX": (0, 2), "phase": (1, 1), "cphase": (1, 2), "id": (0, 1), "u1": (1, 1),
    "u2": (2, 1), "u3": (3, 1),
}  # fmt: skip

_LIBRARIES = {"qelib1.inc": _QELIB1, "stdgates.inc": _STDGATES}
_BUILTINS_2 = {"U": (3, 1), "CX": (0, 2)}
_BUILTINS_3 = {"U": (3, 1)}  # gphase is a keyword and goes to the full path
_VERSIONS = {"2.0": 2, "3": 3, "3.0": 3, "3.1": 3}

# Reserved words of the OpenQASM 3 lexer: never a register or gate name.
_KEYWORDS = frozenset(
    {
        "OPENQASM", "include", "defcalgrammar", "def", "cal", "defcal", "gate", "extern", "box",
        "let", "break", "continue", "if", "else", "end", "return", "for", "while", "in",
        "switch", "case", "default", "pragma", "input", "output", "const", "readonly",
        "mutable", "qreg", "qubit", "creg", "bool", "bit", "int", "uint", "float", "angle",
        "complex", "array", "void", "duration", "stretch", "gphase", "inv", "pow", "ctrl",
        "negctrl", "durationof", "delay", "reset", "measure", "barrier", "true", "false", "im",
    }
)  # fmt: skip
_CONSTANTS = frozenset({"pi", "π", "tau", "τ", "euler", "ℇ"})
_FUNCTIONS = frozenset({"sin", "cos", "tan", "exp", "ln", "sqrt"})


@functools.lru_cache(maxsize=64)
def _gate_table(version: int, includes: frozenset[str]) -> dict[str, tuple[int, int]]:
    """The gates known after the given header and includes (shared: never mutate)."""
    table = dict(_BUILTINS_2 if version == 2 else _BUILTINS_3)
    for name in sorted(includes):
        table.update(_LIBRARIES[name])
    return table


# --------------------------------------------------------------------------- semantics

_SCALAR = -2  # register size of `qubit q;` / `bit c;`
_ANY = -1  # register size the checker cannot know statically
# An index (or range, or set) the checker cannot know statically. Literal indices may be
# negative (OpenQASM 3 counts them from the end), so this one lies far below: see _negated.
_ANY_INDEX = -(1 << 256)

# (name, index or None for the whole register or _ANY_INDEX, source offset of the name)
_Operand = tuple[str, int | None, int]


class _Fault(Exception):
    """A definite error at a source offset."""

    def __init__(self, reason: str, pos: int | None, token: str | None, *, semantic: bool):
        super().__init__(reason)
        self.reason = reason
        self.pos = pos
        self.token = token
        self.semantic = semantic

    def verdict(self, source: str) -> _Verdict:
        if self.pos is None:
            return (self.reason, None, None, self.token)
        line, column = _line_column(source, self.pos)
        return (self.reason, line, column, self.token)


class _Unsure(Exception):
    """The fast checker met something it does not fully understand."""


def _semantic(reason: str, pos: int | None, token: str | None) -> _Fault:
    return _Fault(reason, pos, token, semantic=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _show(name: str, index: int | None) -> str:
    return name if index is None or index == _ANY_INDEX else f"{name}[{index}]"


def _negated(index: int) -> int:
    """The literal index `-index`, kept clear of _ANY_INDEX (it is out of range either way)."""
    return max(-index, _ANY_INDEX + 1)


class _Program:
    """Symbol tables and the semantic checks, fed statement by statement in source order.

    Every path (hot regex, token checker, AST walk) drives this one class, so they
    agree on what is semantically valid.
    """

    def __init__(self) -> None:
        self.version = 3
        self.includes: frozenset[str] = frozenset()
        self.defined: dict[str, tuple[int, int]] = {}  # by gate definitions (full path)
        self.gates = _gate_table(3, self.includes)
        self.open_gates = False  # an unknown include may define any gate
        self.qregs: dict[str, int] = {}
        self.cregs: dict[str, int] = {}
        self.other: set[str] = set()  # names declared by statements we do not model
        self.defining: str | None = None  # the gate whose body is being checked (full path)

    def header(self, version: str, pos: int | None) -> None:
        major = _VERSIONS.get(version)
        if major is None:
            raise _semantic(
                f"unsupported OpenQASM version {version!r} (expected 2.0 or 3)", pos, version
            )
        self.version = major
        self._refresh()

    def include(self, filename: str) -> None:
        if filename in _LIBRARIES:
            self.includes = self.includes | {filename}
            self._refresh()
        else:
            self.open_gates = True

    def define_gate(self, name: str, n_params: int, n_qubits: int) -> None:
        self.defined[name] = (n_params, n_qubits)
        self._refresh()

    def _refresh(self) -> None:
        table = _gate_table(self.version, self.includes)
        self.gates = {**table, **self.defined} if self.defined else table

    def declare(self, name: str, pos: int | None, size: int, quantum: bool) -> None:
        if name in _KEYWORDS:
            raise _Unsure
        if name in self.qregs or name in self.cregs or name in self.other:
            raise _semantic(f"register {name!r} is already declared", pos, name)
        if size == 0:
            raise _semantic(f"register {name!r} must have a positive size", pos, name)
        (self.qregs if quantum else self.cregs)[name] = size

    def declare_other(self, name: str) -> None:
        self.other.add(name)

    def _size(self, op: _Operand, quantum: bool) -> int:
        """The register size of an operand, after checking it exists and its index fits."""
        name, index, pos = op
        regs, others = (self.qregs, self.cregs) if quantum else (self.cregs, self.qregs)
        size = regs.get(name)
        if size is None:
            if name in others:
                kind = "classical register, not qubits" if quantum else "qubit register, not bits"
                raise _semantic(f"{name!r} is a {kind}", pos, name)
            if name in self.other:
                return _ANY
            if name in _KEYWORDS:
                raise _Unsure
            if self.defining is not None:
                reason = f"{name!r} is not a qubit argument of gate {self.defining!r}"
                raise _semantic(reason, pos, name)
            raise _semantic(f"undefined register {name!r}", pos, name)
        if index is not None and (index >= 0 or index != _ANY_INDEX):
            if size == _SCALAR:
                single = "qubit" if quantum else "bit"
                raise _semantic(f"{name!r} is a single {single} and cannot be indexed", pos, name)
            if index < 0 and self.version == 2:
                reason = f"negative index {index} (OpenQASM 2 indices start at 0)"
                raise _semantic(reason, pos, _show(name, index))
            if size > 0 and (index >= size if index >= 0 else index < -size):
                raise _semantic(
                    f"index {index} out of range for {name!r} of size {size}",
                    pos,
                    _show(name, index),
                )
        return size

    @staticmethod
    def _width(size: int, index: int | None) -> int | None:
        """How many (qu)bits an operand stands for; None when unknown."""
        if index is not None or size == _SCALAR:
            return 1 if index is None or index >= 0 or index != _ANY_INDEX else None
        return size if size > 0 else None

    def gate(
        self,
        name: str,
        pos: int | None,
        n_params: int,
        operands: Sequence[_Operand | None],
        controls: int | None = 0,
    ) -> None:
        """Check one gate call; None operands (hardware qubits, gate arguments) only count."""
        spec = self.gates.get(name)
        if spec is None:
            if name in _KEYWORDS:
                raise _Unsure
            if not (self.open_gates or name in self.other):
                raise _semantic(f"unknown gate {name!r}{self._hint(name)}", pos, name)
        else:
            want_params, want_qubits = spec
            if n_params != want_params:
                reason = f"gate {name!r} takes {_plural(want_params, 'parameter')}, got {n_params}"
                raise _semantic(reason, pos, name)
            if controls is not None and len(operands) != want_qubits + controls:
                want = want_qubits + controls
                reason = f"gate {name!r} acts on {_plural(want, 'qubit')}, got {len(operands)}"
                raise _semantic(reason, pos, name)
        if len(operands) == 1:
            if operands[0] is not None:
                self._size(operands[0], True)
            return
        whole: set[str] = set()
        single: set[tuple[str, int]] = set()
        width: tuple[int, str] | None = None
        for op in operands:
            if op is None:
                continue
            size = self._size(op, True)
            op_name, index, op_pos = op
            if index is None:
                if op_name in whole or any(n == op_name for n, _ in single):
                    raise _semantic(f"qubit {op_name!r} used twice in one gate", op_pos, op_name)
                whole.add(op_name)
                if size > 0:
                    if width is not None and width[0] != size:
                        raise _semantic(
                            f"broadcast over registers of different sizes: {width[1]!r} has "
                            f"{width[0]}, {op_name!r} has {size}",
                            op_pos,
                            op_name,
                        )
                    width = (size, op_name)
            elif index >= 0 or (index != _ANY_INDEX and size > 0):
                qubit = index + size if index < 0 else index  # counting from the end
                if op_name in whole or (op_name, qubit) in single:
                    shown = _show(op_name, index)
                    raise _semantic(f"qubit {shown!r} used twice in one gate", op_pos, shown)
                single.add((op_name, qubit))

    def _hint(self, name: str) -> str:
        library = "qelib1.inc" if self.version == 2 else "stdgates.inc"
        if name in _LIBRARIES[library] and library not in self.includes:
            return f' (missing include "{library}"?)'
        return ""

    def measure(self, source: _Operand | None, target: _Operand | None) -> None:
        q_width = None if source is None else self._width(self._size(source, True), source[1])
        if target is None:
            return
        c_width = self._width(self._size(target, False), target[1])
        if q_width is not None and c_width is not None and q_width != c_width:
            reason = f"measure maps {_plural(q_width, 'qubit')} to {_plural(c_width, 'bit')}"
            raise _semantic(reason, target[2], target[0])

    def qubits(self, operands: Sequence[_Operand | None]) -> None:
        """Check the operands of reset or barrier."""
        for op in operands:
            if op is not None:
                self._size(op, True)


def _line_column(source: str, pos: int) -> tuple[int, int]:
    line = source.count("\n", 0, pos) + 1
    return line, pos - (source.rfind("\n", 0, pos) + 1) + 1
