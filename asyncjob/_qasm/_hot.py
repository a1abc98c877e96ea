"""The hot path: programs made only of common statements, checked with regular expressions.

Angles are masked with one regular expression, the text is split at ';', each
statement is parsed once (memoised across circuits) and `_Program` checks the
pieces. It only ever accepts; on any doubt the token checker decides.
"""

from __future__ import annotations

import re

from .._forksafe import ForkSafeLock
from ._semantics import _KEYWORDS, _SCALAR, _Fault, _Operand, _Program, _Unsure

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
_statements_lock = ForkSafeLock()  # held to write the memo; a read is one dict lookup
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
    return _run(texts, _Program())


def _run(texts: list[str], prog: _Program) -> bool:
    """Feed statements (texts between two ';', angles masked) to `prog`; False on any doubt."""
    gates, qregs, memo = prog.gates, prog.qregs, _statements
    fresh: dict[str, _Statement | None] = {}  # parsed here, memoised at the end under one lock
    try:
        for number, text in enumerate(texts):
            statement = memo.get(text, _MISSING)
            if statement is _MISSING:
                statement = fresh.get(text, _MISSING)
                if statement is _MISSING:
                    statement = fresh[text] = _parse_statement(text)
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
    finally:
        if fresh:
            _remember(fresh)
    return True


def _remember(fresh: dict[str, _Statement | None]) -> None:
    """Add one program's newly parsed statements to the memo, emptying it first when full."""
    with _statements_lock:
        if len(_statements) + len(fresh) > _STATEMENTS_MAX:
            _statements.clear()
        if len(fresh) <= _STATEMENTS_MAX:
            _statements.update(fresh)
