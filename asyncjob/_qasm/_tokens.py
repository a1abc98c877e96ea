"""The token checker: a recursive-descent pass over the hot path's subset, with positions.

It accepts, rejects a definite error with its exact line, column and token, or,
on anything outside the subset (gate definitions, ``if``, loops, modifiers,
classical types, ...), raises `_Unsure` so that the full parser decides.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ._semantics import (
    _CONSTANTS,
    _FUNCTIONS,
    _KEYWORDS,
    _SCALAR,
    _Fault,
    _negated,
    _Operand,
    _Program,
    _Unsure,
)

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
