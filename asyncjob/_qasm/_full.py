"""The full path: ``openqasm3.parse`` (the reference ANTLR grammar), then `_Program` on the AST.

openqasm3 is imported on first use, not at import; gates the program defines
count as known here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from .._forksafe import ForkSafeLock
from ._semantics import (
    _ANY,
    _ANY_INDEX,
    _SCALAR,
    _Fault,
    _negated,
    _Operand,
    _Program,
    _semantic,
    _Unsure,
    _Verdict,
)

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
