"""Validate OpenQASM 2.0 and 3 circuit sources before they leave the machine.

Three layers, cheapest first; each hands over to the next only when it cannot decide:

1. A hot path for programs made only of common statements (header, ``include``,
   register declarations, gate calls with numeric angles, measure, reset,
   barrier): angles are masked with one regular expression, the text is split
   at ';', each statement is parsed once (memoised across circuits) and the
   semantic checks run on the pieces. It only ever *accepts*; on any doubt it
   defers to layer 2.
2. A token-level checker for the same subset (comments anywhere, parameter
   expressions with ``sin``/``cos``/..., trailing commas). It accepts, rejects a
   definite error with its exact line, column and token, or, when it meets
   something outside the subset (gate definitions, ``if``, loops, modifiers,
   classical types, ...), hands the whole program to layer 3.
3. The full path: ``openqasm3.parse`` (the reference ANTLR grammar), then the
   same semantic checks applied to the AST, where gates the program defines
   count as known. ``full=True`` always takes this path.

Semantic checks (the parser has none): the version header, registers declared
before use and only once, positive register sizes, indices in range (a negative
index counts from the end in OpenQASM 3 and is an error in OpenQASM 2), known gate
names (``qelib1.inc`` and ``stdgates.inc`` tables, the ``U``/``CX`` built-ins),
parameter and qubit counts, no qubit twice in one gate, equal register sizes in
a broadcast, matching measure widths, gate bodies that use only their own qubit
arguments.

The header is checked leniently but correctly: ``OPENQASM 2.0;``, ``OPENQASM 3;``,
``OPENQASM 3.0;`` and ``OPENQASM 3.1;`` are accepted, any other version is an error.
OpenQASM 3 makes the header optional, so a program without one is read as
OpenQASM 3 (an OpenQASM 2 program must therefore start with ``OPENQASM 2.0;``
to get the ``U``/``CX`` built-ins). Either library may be included under either
version; an unknown include file switches the unknown-gate check off.

Limitations: the reference grammar is OpenQASM 3's, so OpenQASM 2 constructs it
lacks (``opaque``) are rejected and OpenQASM 3 syntax inside an ``OPENQASM 2.0``
program is accepted. On the full path, checks that need values (non-literal
sizes or indices, aliases, loop variables, subroutine bodies, hardware qubits)
are skipped. Programs nested deeper than the parser can recurse are rejected.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from ._errors import QasmValidationError
from ._forksafe import ForkSafeLock

__all__ = ["check_batch", "check_circuit", "circuit_clbits", "circuit_qubits"]

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


# --------------------------------------------------------------------------- hot path

_S = r"[ \t\r\n]*+"
_ID = r"[A-Za-z_][A-Za-z0-9_]*+"
_INT = r"[0-9]++"
_NUM = r"(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+"
_FLAT_ATOM = rf"(?:-{_S})*+(?:{_NUM}|pi|π)"
_FLAT_EXPR = rf"{_S}{_FLAT_ATOM}{_S}(?:[-+*/]{_S}{_FLAT_ATOM}{_S})*+"
# One level of parentheses or of a function call, e.g. `-sin(pi/8)*(1+2)`.
_ATOM = rf"(?:-{_S})*+(?:{_NUM}|pi|π|(?:(?:sin|cos|tan|exp|ln|sqrt){_S})?\({_FLAT_EXPR}\))"
_EXPR = rf"{_S}{_ATOM}{_S}(?:[-+*/]{_S}{_ATOM}{_S})*+"
_OPND = rf"{_ID}(?:{_S}\[{_S}{_INT}{_S}\])?+"
_OPNDS = rf"{_OPND}(?:{_S},{_S}{_OPND})*+"
_SKIP = r"(?:[ \t\r\n]++|//[^\r\n]*+|/\*(?:[^*]++|\*(?!/))*+\*/)*+"

# A list of one to four numeric gate parameters, masked as '(#)', '(#,)', '(#,,)' or
# '(#,,,)' before statements are looked up.
_PARAMS_RE = re.compile(rf"\({_EXPR}(?:(,){_EXPR}(?:(,){_EXPR}(?:(,){_EXPR})?+)?+)?+\)")
_MASKS = {None: "(#)", 1: "(#,)", 2: "(#,,)", 3: "(#,,,)"}  # by the last ',' group matched


def _mask(m: re.Match[str]) -> str:
    return _MASKS[m.lastindex]


# Whole statements without their ';' (matched with fullmatch).
_PARAM_GATE_RE = re.compile(rf"{_S}({_ID}){_S}\(#(,*+)\){_S}({_OPNDS}){_S}")
_GATE_RE = re.compile(rf"{_S}({_ID})[ \t\r\n]++({_OPNDS}){_S}")
_MEASURE_RE = re.compile(rf"{_S}measure[ \t\r\n]++({_OPND}){_S}->{_S}({_OPND}){_S}")
_ASSIGN_RE = re.compile(rf"{_S}({_OPND}){_S}={_S}measure[ \t\r\n]++({_OPND}){_S}")
_NEW_DECLARATION_RE = re.compile(rf"{_S}(qubit|bit){_S}\[{_S}({_INT}){_S}\]{_S}({_ID}){_S}")
_HEADER_RE = re.compile(rf"{_S}OPENQASM[ \t\r\n]++([0-9]++(?:\.[0-9]++)?+){_S}")
_INCLUDE_STATEMENT_RE = re.compile(rf'{_S}include{_S}"([^"\r\t\n]++)"{_S}')
_OPND_RE = re.compile(rf"({_ID})(?:{_S}\[{_S}({_INT}))?")
_COMMENT_RE = re.compile(r"//[^\r\n]*+|/\*(?:[^*]++|\*(?!/))*+\*/")
_HEADER_COMMENT_RE = re.compile(r"(?:OPENQASM|include)[ \t\r\n]*+/")
_BLANK = " \t\r\n"

# A parsed statement: (kind, name, (parameters, qubits), operands, needs). Kinds: "gate",
# "measure", "qreg", "creg", "qubit", "bit", "header", "include", "reset", "barrier".
# For a gate on distinct single qubits, `needs` gives for each register the size its
# indices require. A declaration's one operand carries the register size as its index.
_Statement = tuple[
    str, str, tuple[int, int], tuple[_Operand, ...], tuple[tuple[str, int], ...] | None
]
_statements: dict[str, _Statement | None] = {}  # memo: circuits repeat statements
_STATEMENTS_MAX = 1 << 14
_MISSING: _Statement = ("", "", (0, 0), (), None)


def _operands(text: str) -> tuple[_Operand, ...]:
    return tuple((n, int(i) if i else None, 0) for n, i in _OPND_RE.findall(text))


def _gate_statement(name: str, n_params: int, operands: tuple[_Operand, ...]) -> _Statement:
    arity = (n_params, len(operands))
    indexed = {(n, i) for n, i, _ in operands if i is not None}
    if len(indexed) != len(operands):
        return ("gate", name, arity, operands, None)
    needs: dict[str, int] = {}
    for n, i in indexed:
        needs[n] = max(needs.get(n, 0), i + 1)
    return ("gate", name, arity, operands, tuple(needs.items()))


def _parse_statement(text: str) -> _Statement | None:
    """Parse one common statement (text between two ';'); None if it is anything else.

    Numeric gate parameters arrive masked (see _PARAMS_RE), so that statements
    differing only in their angles share a memo entry.
    """
    if "(" in text:
        m = _PARAM_GATE_RE.fullmatch(text)
        if m is None:
            return None
        return _gate_statement(m.group(1), 1 + len(m.group(2)), _operands(m.group(3)))
    if m := _GATE_RE.fullmatch(text):
        name, operands = m.group(1), _operands(m.group(2))
        if name not in _KEYWORDS:
            return _gate_statement(name, 0, operands)
        if name in ("qreg", "creg", "qubit", "bit") and len(operands) == 1:
            register, size, _ = operands[0]
            if size is None or name in ("qreg", "creg"):  # `qubit q[2];` is an error
                size = _SCALAR if size is None else size
                return (name, register, (0, 0), ((register, size, 0),), None)
            return None
        if name == "measure" and len(operands) == 1:
            return ("measure", "", (0, 0), operands, None)
        if name == "barrier" or (name == "reset" and len(operands) == 1):
            return (name, "", (0, 0), operands, None)
    if m := _MEASURE_RE.fullmatch(text):
        return ("measure", "", (0, 0), _operands(m.group(1)) + _operands(m.group(2)), None)
    if m := _ASSIGN_RE.fullmatch(text):
        return ("measure", "", (0, 0), _operands(m.group(2)) + _operands(m.group(1)), None)
    if m := _NEW_DECLARATION_RE.fullmatch(text):
        return (m.group(1), m.group(3), (0, 0), ((m.group(3), int(m.group(2)), 0),), None)
    if m := _HEADER_RE.fullmatch(text):
        return ("header", m.group(1), (0, 0), (), None)
    if m := _INCLUDE_STATEMENT_RE.fullmatch(text):
        return ("include", m.group(1), (0, 0), (), None)
    return None


def _hot_accepts(source: str) -> bool:
    """True when the program is made only of common statements and passes every check.

    Never rejects: anything unusual or wrong returns False and the token checker
    decides (with positions for the error message).
    """
    if "#" in source:
        return False  # '#' masks parameters below
    if "//" in source or "/*" in source:
        if _HEADER_COMMENT_RE.search(source):
            return False  # the lexer allows no comment before a version or file name
        source = _COMMENT_RE.sub(" ", source)  # elsewhere a comment only separates tokens
    if "(" in source:
        source = _PARAMS_RE.sub(_mask, source)
    *texts, last = source.split(";")
    if not texts or last.strip(_BLANK):
        return False
    prog = _Program()
    gates, qregs, memo = prog.gates, prog.qregs, _statements
    try:
        for number, text in enumerate(texts):
            statement = memo.get(text, _MISSING)
            if statement is _MISSING:
                statement = _parse_statement(text)
                if len(memo) >= _STATEMENTS_MAX:
                    memo.clear()
                memo[text] = statement
            if statement is None:
                return False
            kind, name, arity, operands, needs = statement
            if kind == "gate":
                # Shortcut for the usual call on distinct single qubits; `prog.gate`
                # does the same checks in general (and raises on errors).
                if needs and gates.get(name) == arity:
                    for register, size in needs:
                        if qregs.get(register, 0) < size:
                            break
                    else:
                        continue
                prog.gate(name, 0, arity[0], operands)
            elif kind == "measure":
                prog.measure(operands[0], operands[1] if len(operands) == 2 else None)
            elif kind in ("reset", "barrier"):
                prog.qubits(operands)
            elif kind == "header":
                if number:
                    return False
                prog.header(name, 0)
            elif kind == "include":
                prog.include(name)
            else:
                declared = operands[0][1]
                assert declared is not None
                prog.declare(name, 0, declared, kind in ("qreg", "qubit"))
            gates = prog.gates
    except (_Fault, _Unsure):
        return False
    return True


# --------------------------------------------------------------------------- token checker

_TOKEN_RE = re.compile(
    r"(?P<skip>[ \t\r\n]++|//[^\r\n]*+|/\*(?:[^*]++|\*(?!/))*+\*/)"
    r"|(?P<num>(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*+|[πτℇ])"
    r"|(?P<comment>/\*)"
    r"|(?P<op>\*\*|\+\+|<<|>>|&&|\|\||[-+*/%&|^<>=!~]=)"
    r"|(?P<punct>->|[()\[\],;=+\-*/{}])"
    r"|(?P<odd>[\s\S])"
)
# After a number the ANTLR lexer may build a longer token (timing or imaginary
# literal, `1_000`, `1e`...): treat such a number as not understood.
_NUM_TAIL_RE = re.compile(r"[ \t]*+(?:im|dt|ns|us|µs|ms|s)|[A-Za-z0-9_.]|[^\x00-\x7f]")
_ID_TAIL_RE = re.compile(r"[A-Za-z0-9_]|[^\x00-\x7f]")
_INCLUDE_RE = re.compile(r'[ \t\r\n]*+"([^"\r\t\n]++)"')
_VERSION_RE = re.compile(r"[ \t\r\n]*+([0-9]++(?:\.[0-9]++)?+)")


class _Tok(NamedTuple):
    kind: str  # "num", "id", "kw", "op", "odd", "eof", or the punctuation itself
    text: str
    pos: int


# Tokens that can never continue an expression, or start one.
_NOT_AFTER_OPERAND = frozenset({"id", "num", ";", "]", "}", "{", "->", "eof", "("})
_NOT_AN_OPERAND = frozenset({")", ",", ";", "]", "}", "=", "->", "*", "/", "+", "eof"})
_NOT_A_STATEMENT = frozenset({")", "]", "}", ",", "=", "->", "*", "/", "+", ";"})


class _Checker:
    """Recursive-descent checker for the statement subset, with exact positions."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.end = 0  # source offset just after the current token
        self.prog = _Program()
        self.tok = self._lex()

    def _lex(self) -> _Tok:
        src = self.src
        while True:
            m = _TOKEN_RE.match(src, self.end)
            if m is None:
                return _Tok("eof", "", len(src))
            kind, text, start, self.end = m.lastgroup or "odd", m.group(), m.start(), m.end()
            if kind == "skip":
                continue
            if kind == "comment":
                raise _Fault("unterminated comment", start, "/*", semantic=False)
            if kind == "punct":
                kind = text
            elif kind == "num" and _NUM_TAIL_RE.match(src, self.end):
                kind = "odd"
            elif kind == "id":
                if _ID_TAIL_RE.match(src, self.end):
                    kind = "odd"
                elif text in _KEYWORDS:
                    kind = "kw"
            return _Tok(kind, text, start)

    def _advance(self) -> _Tok:
        tok, self.tok = self.tok, self._lex()
        return tok

    def _fail(self, expected: str, tok: _Tok | None = None) -> Exception:
        """A syntax error at `tok` (default: the current token), unless it may be valid."""
        tok = tok or self.tok
        if tok.kind in ("odd", "op"):
            return _Unsure()
        if tok.kind == "eof":
            return _Fault(f"unexpected end of input, expected {expected}", tok.pos, None,
                          semantic=False)  # fmt: skip
        return _Fault(f"syntax error, expected {expected}", tok.pos, tok.text, semantic=False)

    def _expect(self, kind: str, expected: str) -> _Tok:
        if self.tok.kind != kind:
            raise self._fail(expected)
        return self._advance()

    def run(self) -> _Program:
        if self.tok.kind == "eof":
            raise _Fault("empty circuit", None, None, semantic=False)
        if self.tok.text == "OPENQASM" and self.tok.kind == "kw":
            self._header()
        while self.tok.kind != "eof":
            self._statement()
        return self.prog

    def _header(self) -> None:
        # After OPENQASM the lexer only allows whitespace, then a version number.
        m = _VERSION_RE.match(self.src, self.end)
        if m is None:
            raise _Unsure
        self.end = m.end()
        self.tok = self._lex()
        self._expect(";", "';'")
        self.prog.header(m.group(1), m.start(1))

    def _statement(self) -> None:
        tok = self.tok
        kind, text = tok.kind, tok.text
        if kind == "id":
            self._identifier_statement()
        elif kind == "kw":
            if text == "include":
                self._include()
            elif text in ("qreg", "creg"):
                self._old_declaration()
            elif text in ("qubit", "bit"):
                self._new_declaration()
            elif text == "measure":
                self._advance()
                source = self._operand()
                target = None
                if self.tok.kind == "->":
                    self._advance()
                    target = self._operand()
                    self._expect(";", "';'")
                elif not self._advance_if(";"):
                    raise self._fail("'->' or ';'")
                self.prog.measure(source, target)
            elif text == "reset":
                self._advance()
                operand = self._operand()
                self._expect(";", "';'")
                self.prog.qubits([operand])
            elif text == "barrier":
                self._advance()
                self.prog.qubits([] if self._advance_if(";") else self._operand_list())
            elif text == "OPENQASM":
                raise _Fault("the OPENQASM header must be the first statement", tok.pos, text,
                             semantic=False)  # fmt: skip
            else:
                raise _Unsure
        elif kind in _NOT_A_STATEMENT:
            raise _Fault("syntax error, expected a statement", tok.pos, text, semantic=False)
        else:
            raise _Unsure

    def _advance_if(self, kind: str) -> bool:
        if self.tok.kind == kind:
            self._advance()
            return True
        return False

    def _include(self) -> None:
        # After `include` the lexer only allows whitespace, then a string.
        m = _INCLUDE_RE.match(self.src, self.end)
        if m is None:
            raise _Unsure
        self.end = m.end()
        self.tok = self._lex()
        self._expect(";", "';'")
        self.prog.include(m.group(1))

    def _name(self) -> _Tok:
        if self.tok.kind != "id":
            raise self._fail("an identifier")
        return self._advance()

    def _size(self) -> int:
        """A designator `[n]`, the current token being `[`."""
        self._advance()
        tok = self.tok
        if tok.kind == "]":
            raise self._fail("a size")
        if tok.kind != "num" or not tok.text.isdigit():
            raise _Unsure  # an expression
        self._advance()
        if self.tok.kind != "]":
            raise _Unsure
        self._advance()
        return int(tok.text)

    def _old_declaration(self) -> None:
        quantum = self._advance().text == "qreg"
        name = self._name()
        size = _SCALAR
        if self.tok.kind == "[":
            size = self._size()
        elif self.tok.kind != ";":
            raise self._fail("'[' or ';'")
        self._expect(";", "';'")
        self.prog.declare(name.text, name.pos, size, quantum)

    def _new_declaration(self) -> None:
        quantum = self._advance().text == "qubit"
        size = self._size() if self.tok.kind == "[" else _SCALAR
        if self.tok.kind == "(":
            raise _Unsure  # a cast such as `bit[2](x)`
        name = self._name()
        if self.tok.kind == "=" and not quantum:
            raise _Unsure  # an initialised bit
        self._expect(";", "';'")
        self.prog.declare(name.text, name.pos, size, quantum)

    def _operand(self) -> _Operand:
        name = self._name()
        if self.tok.kind != "[":
            return (name.text, None, name.pos)
        self._advance()
        negative = self._advance_if("-")
        tok = self.tok
        if tok.kind != "num" or not tok.text.isdigit():
            if tok.kind == "]":
                raise self._fail("an index")
            raise _Unsure  # ranges, sets, expressions
        self._advance()
        if self.tok.kind != "]":
            if self.tok.kind in (";", "eof", ")", "}", "->", "="):
                raise self._fail("']'")
            raise _Unsure
        self._advance()
        if self.tok.kind == "[":
            raise _Unsure  # q[1][2]
        index = int(tok.text)
        return (name.text, _negated(index) if negative else index, name.pos)

    def _operand_list(self) -> list[_Operand]:
        """Operands separated by commas (a trailing comma is allowed), then ';'."""
        operands = [self._operand()]
        while True:
            if self._advance_if(";"):
                return operands
            if not self._advance_if(","):
                raise self._fail("',' or ';'")
            if self._advance_if(";"):
                return operands
            operands.append(self._operand())

    def _identifier_statement(self) -> None:
        name = self._advance()
        kind = self.tok.kind
        if kind == "id":
            self.prog.gate(name.text, name.pos, 0, self._operand_list())
        elif kind == "(":
            n_params = self._params()
            kind = self.tok.kind
            if kind == "id":
                self.prog.gate(name.text, name.pos, n_params, self._operand_list())
            elif kind in ("num", "eof", ")", "]", "}", ",", "->"):
                raise self._fail("a qubit operand")
            else:
                raise _Unsure  # a designator, a function call statement, ...
        elif kind in ("[", "="):
            self._measure_assignment(name)
        else:
            raise _Unsure

    def _measure_assignment(self, name: _Tok) -> None:
        index = None
        if self._advance_if("["):
            tok = self.tok
            if tok.kind != "num" or not tok.text.isdigit():
                raise _Unsure
            self._advance()
            if not self._advance_if("]"):
                raise _Unsure
            index = int(tok.text)
        if not self._advance_if("=") or not (self.tok.kind == "kw" and self.tok.text == "measure"):
            raise _Unsure  # a classical assignment
        self._advance()
        source = self._operand()
        self._expect(";", "';'")
        self.prog.measure(source, (name.text, index, name.pos))

    def _params(self) -> int:
        """A parenthesised expression list (trailing comma allowed); returns its length."""
        self._advance()
        count = 0
        while not self._advance_if(")"):
            self._expression()
            count += 1
            if self._advance_if(","):
                continue
            if self.tok.kind != ")":
                raise self._operator_expected()
        return count

    def _operator_expected(self) -> Exception:
        if self.tok.kind in _NOT_AFTER_OPERAND:
            return self._fail("an operator, ',' or ')'")
        return _Unsure()

    def _expression(self) -> None:
        self._operand_expression()
        while self.tok.kind in ("+", "-", "*", "/"):
            self._advance()
            self._operand_expression()

    def _operand_expression(self) -> None:
        while self._advance_if("-"):
            pass
        tok = self.tok
        if tok.kind == "num":
            self._advance()
        elif tok.kind == "id" and tok.text in _CONSTANTS:
            self._advance()
            if self.tok.kind == "(":
                raise _Unsure  # `pi(2)` is a (meaningless) function call
        elif tok.kind == "id" and tok.text in _FUNCTIONS:
            self._advance()
            if self.tok.kind != "(":
                raise _Unsure
            self._parenthesised(call=True)
        elif tok.kind == "(":
            self._parenthesised()
        elif tok.kind in _NOT_AN_OPERAND:
            raise self._fail("an expression")
        else:
            raise _Unsure

    def _parenthesised(self, call: bool = False) -> None:
        self._advance()
        if call and self.tok.kind == ")":
            raise _Unsure  # `sin()` parses: a call without arguments
        self._expression()
        if not self._advance_if(")"):
            raise _Unsure() if self.tok.kind == "," else self._operator_expected()


def _fast_check(source: str) -> _Fault | _Unsure | None:
    """The fast path's answer: None (valid), a definite _Fault, or _Unsure."""
    if _hot_accepts(source):
        return None
    try:
        _Checker(source).run()
    except (_Fault, _Unsure) as exc:
        return exc
    except RecursionError:  # absurdly nested parentheses
        return _Unsure()
    return None


# --------------------------------------------------------------------------- full path

_ANTLR_LOCK = ForkSafeLock()


@contextlib.contextmanager
def _quiet_antlr() -> Iterator[None]:
    """Stop ANTLR printing syntax errors to stderr while openqasm3 parses.

    openqasm3 raises on errors but leaves ANTLR's console listener in place; the
    listener is read when a recognizer is built, so swap it for the duration.
    """
    from antlr4.error.ErrorListener import ConsoleErrorListener, ErrorListener

    with _ANTLR_LOCK:
        saved = ConsoleErrorListener.INSTANCE
        ConsoleErrorListener.INSTANCE = ErrorListener()
        try:
            yield
        finally:
            ConsoleErrorListener.INSTANCE = saved


_POSITION_RE = re.compile(r"L(\d+):C(\d+): (.*)", re.DOTALL)
_TOKEN_AT_RE = re.compile(r"[A-Za-z0-9_.]+|\S")


def _parse_failure(exc: Exception, source: str) -> _Verdict:
    """Turn any openqasm3.parse failure into a verdict with 1-based line and column."""
    m = _POSITION_RE.match(str(exc))
    if m is not None:  # lexer errors and the AST builder's own checks
        line, column, message = int(m.group(1)), int(m.group(2)), m.group(3)
        bad = re.match(r"token recognition error at: '(.*)'$", message, re.DOTALL)
        if bad is not None:
            return ("syntax error, unexpected character", line, column + 1, bad.group(1))
        return (message, line, column + 1, _token_at(source, line, column))
    if isinstance(exc, RecursionError):
        return ("too deeply nested to parse", None, None, None)
    token = _offending_token(exc)
    if token is None:
        return (f"could not be parsed ({type(exc).__name__})", None, None, None)
    line, column, text = int(token.line), int(token.column) + 1, str(token.text)
    if int(token.type) == -1:  # EOF
        return ("unexpected end of input", line, column, None)
    return ("syntax error", line, column, text)


def _offending_token(exc: BaseException) -> Any:
    """The ANTLR token on the cause chain (the parse error itself has an empty message)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        for candidate in (seen, *seen.args):
            token = getattr(candidate, "offendingToken", None)
            if token is not None and getattr(token, "line", None) is not None:
                return token
        seen = seen.__cause__ or seen.__context__
    return None


def _token_at(source: str, line: int, column0: int) -> str | None:
    offset = _line_starts(source)[line - 1] + column0 if line > 0 else None
    if offset is None or offset >= len(source):
        return None
    m = _TOKEN_AT_RE.match(source, offset)
    return m.group() if m else None


def _line_starts(source: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", source))]


def _line_column(source: str, pos: int) -> tuple[int, int]:
    line = source.count("\n", 0, pos) + 1
    return line, pos - (source.rfind("\n", 0, pos) + 1) + 1


def _verdict_slow(source: str) -> _Verdict:
    """The full path: openqasm3's grammar, then the semantic checks on its AST."""
    import openqasm3

    try:
        with _quiet_antlr():
            program = openqasm3.parse(source)
    except Exception as exc:  # every failure mode of the parser is a verdict
        return _parse_failure(exc, source)
    try:
        _AstChecker(source).run(program)
    except _Fault as fault:
        return fault.verdict(source)
    except RecursionError:
        return ("too deeply nested to parse", None, None, None)
    except _Unsure:
        return None
    return None


class _AstChecker:
    """Feeds an openqasm3 AST to `_Program`, skipping what cannot be known statically."""

    def __init__(self, source: str) -> None:
        from openqasm3 import ast

        self.ast = ast
        self.source = source
        self.starts = _line_starts(source)
        self.prog = _Program()

    def pos(self, node: object) -> int | None:
        """The source offset of a node.

        openqasm3 gives identifiers taken straight from a token the token's
        absolute offset as `start_column`, and other nodes a real column, so an
        identifier is looked for at both places.
        """
        span = getattr(node, "span", None)
        if span is None or not 0 < span.start_line <= len(self.starts):
            return None
        offset = int(self.starts[span.start_line - 1] + span.start_column)
        name = getattr(node, "name", None)
        source = self.source
        if isinstance(name, str) and not source.startswith(name, offset):
            return int(span.start_column) if source.startswith(name, span.start_column) else offset
        return offset

    def run(self, program: object) -> None:
        version = getattr(program, "version", None)
        if version is not None:
            m = re.search(r"OPENQASM[ \t\r\n]*", self.source)
            self.prog.header(version, m.end() if m else None)
        for statement in getattr(program, "statements", []):
            self.statement(statement)

    def size(self, expression: object | None) -> int:
        ast = self.ast
        if expression is None:
            return _SCALAR
        if isinstance(expression, ast.IntegerLiteral):
            return int(expression.value)
        if isinstance(expression, ast.FloatLiteral | ast.BooleanLiteral):
            raise _semantic("register size must be an integer", self.pos(expression), None)
        return _ANY

    def operand(self, node: object) -> _Operand | None:
        ast = self.ast
        if isinstance(node, ast.Identifier):
            if node.name.startswith("$"):
                return None  # a hardware qubit
            return (node.name, None, self.pos(node) or 0)
        if isinstance(node, ast.IndexedIdentifier):
            index = _ANY_INDEX  # unless it is a single integer literal, possibly negated
            indices = node.indices
            if len(indices) == 1 and isinstance(indices[0], list) and len(indices[0]) == 1:
                first = indices[0][0]
                if isinstance(first, ast.IntegerLiteral):
                    index = int(first.value)
                elif (
                    isinstance(first, ast.UnaryExpression)
                    and first.op == ast.UnaryOperator["-"]
                    and isinstance(first.expression, ast.IntegerLiteral)
                ):
                    index = _negated(int(first.expression.value))
            return (node.name.name, index, self.pos(node.name) or 0)
        return None  # a hardware qubit, or an expression

    def controls(self, modifiers: list[object]) -> int | None:
        ast = self.ast
        total = 0
        for modifier in modifiers:
            assert isinstance(modifier, ast.QuantumGateModifier)
            if modifier.modifier in (ast.GateModifierName.ctrl, ast.GateModifierName.negctrl):
                if modifier.argument is None:
                    total += 1
                elif isinstance(modifier.argument, ast.IntegerLiteral):
                    total += int(modifier.argument.value)
                else:
                    return None
        return total

    def statement(self, node: object) -> None:
        ast, prog = self.ast, self.prog
        if isinstance(node, ast.Include):
            prog.include(node.filename)
        elif isinstance(node, ast.QubitDeclaration):
            prog.declare(node.qubit.name, self.pos(node.qubit), self.size(node.size), True)
        elif isinstance(node, ast.ClassicalDeclaration):
            name = node.identifier
            if isinstance(node.type, ast.BitType):
                prog.declare(name.name, self.pos(name), self.size(node.type.size), False)
                if isinstance(node.init_expression, ast.QuantumMeasurement):
                    bits: _Operand = (name.name, None, self.pos(name) or 0)
                    prog.measure(self.operand(node.init_expression.qubit), bits)
            else:
                prog.declare_other(name.name)
        elif isinstance(node, ast.QuantumGateDefinition):
            self.gate_body(node.name.name, [q.name for q in node.qubits], node.body)
            prog.define_gate(node.name.name, len(node.arguments), len(node.qubits))
        elif isinstance(node, ast.QuantumGate):
            operands = [self.operand(q) for q in node.qubits]
            prog.gate(node.name.name, self.pos(node.name), len(node.arguments), operands,
                      self.controls(node.modifiers))  # fmt: skip
        elif isinstance(node, ast.QuantumMeasurementStatement):
            target = None if node.target is None else self.operand(node.target)
            prog.measure(self.operand(node.measure.qubit), target)
        elif isinstance(node, ast.QuantumReset):
            prog.qubits([self.operand(node.qubits)])
        elif isinstance(node, ast.QuantumBarrier | ast.QuantumPhase):  # gphase: its controls
            prog.qubits([self.operand(q) for q in node.qubits])
        elif isinstance(node, ast.BranchingStatement):
            self.block(node.if_block)
            self.block(node.else_block)
        elif isinstance(node, ast.ForInLoop):
            self.block(node.block, hide=node.identifier.name)
        elif isinstance(node, ast.WhileLoop):
            self.block(node.block)
        elif isinstance(node, ast.Box):
            self.block(node.body)
        elif isinstance(node, ast.CompoundStatement):
            self.block(node.statements)
        elif isinstance(node, ast.AliasStatement):
            prog.declare_other(node.target.name)
        elif isinstance(node, ast.ConstantDeclaration | ast.IODeclaration):
            prog.declare_other(node.identifier.name)
        elif isinstance(node, ast.ExternDeclaration | ast.SubroutineDefinition):
            prog.declare_other(node.name.name)

    def gate_body(self, gate: str, qubits: list[str], body: Sequence[object]) -> None:
        """Check a gate definition's body: its only qubits are the gate's (single) arguments."""
        prog = self.prog
        saved = (prog.qregs, prog.cregs, prog.other)
        prog.qregs, prog.cregs, prog.other = dict.fromkeys(qubits, _SCALAR), {}, set()
        prog.defining = gate
        try:
            for statement in body:
                self.statement(statement)
        finally:
            prog.qregs, prog.cregs, prog.other = saved
            prog.defining = None

    def block(self, statements: Sequence[object], hide: str | None = None) -> None:
        """Check a nested block; its declarations (and a loop variable) stay local."""
        prog = self.prog
        saved = (dict(prog.qregs), dict(prog.cregs), set(prog.other))
        if hide is not None:
            prog.qregs.pop(hide, None)
            prog.cregs.pop(hide, None)
            prog.other.add(hide)
        try:
            for statement in statements:
                self.statement(statement)
        finally:
            prog.qregs, prog.cregs, prog.other = saved


# --------------------------------------------------------------------------- verdicts, cache

_CACHE_SIZE = 4096
_cache: OrderedDict[bytes, _Verdict] = OrderedDict()
_cache_lock = ForkSafeLock()
_EMPTY_RE = re.compile(_SKIP)


def _precheck(source: str) -> tuple[bytes | None, _Verdict]:
    """Cheap checks before any parsing; returns (cache key, verdict or None)."""
    try:
        data = source.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = _line_column(source, exc.start)
        bad = source[exc.start].encode("unicode_escape").decode("ascii")
        return None, ("source is not valid UTF-8 text (lone surrogate)", line, column, bad)
    if _EMPTY_RE.fullmatch(source):
        return None, ("empty circuit", None, None, None)
    return hashlib.blake2b(data, digest_size=16).digest(), None


def _cache_get(key: bytes) -> tuple[bool, _Verdict]:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return True, _cache[key]
    return False, None


def _cache_put(key: bytes, verdict: _Verdict) -> None:
    with _cache_lock:
        _cache[key] = verdict
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _key(digest: bytes, full: bool) -> bytes:
    return digest + (b"F" if full else b"f")


_SLOW = object()  # a marker: the verdict needs the full parser


def _quick(source: str, full: bool) -> _Verdict | object:
    """The verdict if it is cheap to get (checks, cache, fast path), else _SLOW."""
    digest, verdict = _precheck(source)
    if digest is None:
        return verdict
    key = _key(digest, full)
    hit, verdict = _cache_get(key)
    if hit:
        return verdict
    if full:
        return _SLOW
    result = _fast_check(source)
    if isinstance(result, _Unsure):
        return _SLOW
    verdict = None if result is None else result.verdict(source)
    _cache_put(key, verdict)
    return verdict


def _verdict(source: str, full: bool) -> _Verdict:
    verdict = _quick(source, full)
    if verdict is _SLOW:
        verdict = _verdict_slow(source)
        digest = _precheck(source)[0]
        assert digest is not None
        _cache_put(_key(digest, full), verdict)
    assert verdict is None or isinstance(verdict, tuple)
    return verdict


def _raise(label: str, verdict: _Verdict) -> None:
    if verdict is not None:
        reason, line, column, token = verdict
        raise QasmValidationError(label, reason, line=line, column=column, token=token)


def check_circuit(label: str, source: str, *, full: bool = False) -> None:
    """Raise QasmValidationError (naming `label`) unless `source` is a valid circuit.

    With `full=True` the reference openqasm3 parser always runs (then the
    semantic checks on its AST), even where the fast path could decide alone.
    """
    _raise(label, _verdict(source, full))


# --------------------------------------------------------------------------- batches


def check_batch(items: Sequence[tuple[str, str]], *, full: bool = False) -> None:
    """Raise QasmValidationError for the first invalid circuit in batch order.

    Everything runs in the calling thread: no process is ever started, so a
    script without an ``if __name__ == "__main__":`` guard is safe.
    """
    # Verdicts are kept here, not only in the LRU cache: a batch larger than the
    # cache would evict its own first verdicts and be validated twice.
    known: dict[str, _Verdict] = {}
    for label, source in items:
        if source not in known:
            known[source] = _verdict(source, full)
        _raise(label, known[source])


# --------------------------------------------------------------------------- register sizes

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
