"""Tests for the OpenQASM validator: a corpus judged against openqasm3, positions,
property tests (generated and mutated circuits), the verdict cache and batches."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import random
import threading
from collections.abc import Callable, Iterator

import openqasm3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncjob import _qasm
from asyncjob._errors import QasmValidationError
from asyncjob._qasm import (
    _full,
    _hot,
    _semantics,
    _verdict_cache,
    check_batch,
    check_circuit,
    circuit_clbits,
    circuit_qubits,
)

Q2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
Q3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'

VALID = {
    "q2-bell": Q2 + "qreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n",
    "q2-builtins-only": "OPENQASM 2.0;\nqreg q[2];\nU(pi/2,0,pi) q[0];\nCX q[0],q[1];\n",
    "q2-u-gates": Q2
    + "qreg q[1];\nu3(0.1,0.2,0.3) q[0];\nu2(0,pi) q[0];\nu1(-pi/4) q[0];\nu(1,2,3) q[0];\n"
    + "p(0.5) q[0];\n",
    "q2-two-qubit-params": Q2
    + "qreg q[2];\ncu3(1,2,3) q[0],q[1];\ncu1(0.5) q[1],q[0];\ncrz(pi) q[0],q[1];\n"
    + "rzz(1e-3) q[0],q[1];\ncu(1,2,3,4) q[0],q[1];\n",
    "q2-multi-qubit": Q2
    + "qreg q[5];\nccx q[0],q[1],q[2];\ncswap q[2],q[0],q[1];\nc3x q[0],q[1],q[2],q[3];\n"
    + "c4x q[0],q[1],q[2],q[3],q[4];\nrc3x q[4],q[3],q[2],q[1];\n",
    "q2-broadcast": Q2
    + "qreg a[3];\nqreg b[3];\ncreg c[3];\nh a;\ncx a,b;\ncx a[0],b;\nmeasure a -> c;\n",
    "q2-barrier-reset": Q2
    + "qreg q[3];\ncreg c[3];\nreset q[0];\nreset q;\nbarrier q;\nbarrier q[0],q[2];\n"
    + "measure q[1] -> c[2];\n",
    "q2-comments": "// a header comment\nOPENQASM 2.0; // version\n/* block\n comment */ "
    + 'include "qelib1.inc";\nqreg q[1]; /* inline */ h /* between */ q[0];\n// trailing',
    "q2-param-expressions": Q2
    + "qreg q[1];\nrx(-pi/2) q[0];\nry(2*pi/3 - 0.5) q[0];\nrz(sin(pi/4)*cos(0.1)+sqrt(2)) q[0];\n"
    + "u3(exp(1), ln(2), tan(-0.3)) q[0];\nrx((1+2)*(3-4)/5) q[0];\nrx(--1.5e-3) q[0];\n"
    + "rx(1.) q[0];\nrx(.5E+2) q[0];\n",
    "q2-gate-definition": Q2
    + "gate mygate(theta) a, b { cx a, b; rz(theta) b; cx a, b; }\nqreg q[2];\n"
    + "mygate(0.3) q[0], q[1];\n",
    "q2-if": Q2 + "qreg q[1];\ncreg c[1];\nmeasure q[0] -> c[0];\nif (c == 1) x q[0];\n",
    "q2-whitespace": Q2 + "qreg   q [ 2 ] ;\n\tcx\tq[ 0 ] ,\n q[1]\n;\r\nrx ( 0.5 ) q [ 1 ] ;\r\n",
    "q2-many-registers": Q2
    + "qreg a[1];\nqreg b[2];\ncreg c[1];\ncreg d[2];\ncx a[0], b[1];\nmeasure b -> d;\n"
    + "measure a[0] -> c[0];\n",
    "q2-unknown-include": 'OPENQASM 2.0;\ninclude "custom.inc";\nqreg q[2];\n'
    + "mystery(1,2) q[0], q[1];\n",
    "q3-bell": Q3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n",
    "q3-no-header": 'include "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\n'
    + "c[0] = measure q[0];\n",
    "q3-version-3": 'OPENQASM 3;\ninclude "stdgates.inc";\nqubit q;\nh q;\n',
    "q3-builtin-U-only": "OPENQASM 3.0;\nqubit[1] q;\nU(π/2, 0, π) q[0];\n",
    "q3-scalars": Q3 + "qubit a;\nqubit b;\nbit r;\ncx a, b;\nr = measure b;\nmeasure a;\n",
    "q3-stdgates-compat": Q3
    + "qubit[2] q;\nCX q[0], q[1];\nphase(0.1) q[0];\ncphase(0.2) q[0], q[1];\nid q[1];\n"
    + "u1(0.1) q[0];\nu2(0.1, 0.2) q[0];\nu3(1, 2, 3) q[1];\n",
    "q3-all-measure-forms": Q3
    + "qubit[3] q;\nbit[3] c;\nbit b;\nc = measure q;\nc[1] = measure q[2];\n"
    + "measure q[0] -> c[0];\nmeasure q -> c;\nb = measure q[1];\nmeasure q[1];\n",
    "q3-trailing-commas": Q3 + "qubit[2] q;\ncx q[0], q[1],;\nrx(pi,) q[0];\n",
    "q3-constants": Q3 + "qubit q;\nrx(tau/4) q;\nry(euler) q;\nrz(τ - π) q;\n",
    "q3-empty-parens": Q3 + "qubit q;\nh() q;\n",
    "q3-gate-definition": Q3
    + "gate rot(a, b) q { rx(a) q; rz(b) q; }\nqubit[2] q;\nrot(0.1, 0.2) q[1];\n",
    "q3-modifiers": Q3
    + "qubit[3] q;\nctrl @ x q[0], q[1];\nctrl(2) @ x q[0], q[1], q[2];\ninv @ s q[0];\n"
    + "pow(2) @ t q[1];\nnegctrl @ h q[2], q[0];\n",
    "q3-for-loop": Q3 + "qubit[4] q;\nfor int i in [0:3] { h q[i]; }\n",
    "q3-if-else": Q3
    + "qubit[2] q;\nbit[2] c;\nc = measure q;\nif (c[0]) { x q[1]; } else { z q[1]; }\n",
    "q3-input-param": Q3 + "input angle theta;\nqubit q;\nrx(theta) q;\n",
    "q3-const-and-int": Q3 + "const int n = 3;\nqubit[n] q;\nh q[2];\n",
    "q3-hardware-qubits": Q3 + "h $0;\ncx $0, $1;\nbit b = measure $1;\n",
    "q3-gphase": "OPENQASM 3.0;\nqubit q;\ngphase(pi);\nU(0, 0, 0) q;\n",
    "q3-alias": Q3 + "qubit[4] q;\nlet pair = q[0:1];\nh pair;\n",
    "q3-box-barrier": Q3 + "qubit[2] q;\nbox { h q[0]; barrier q; }\nbarrier;\n",
    "q3-negative-index": Q3 + "qubit[2] q;\nh q[-1];\n",
    "q3-negative-indices": Q3
    + "qubit[3] q;\nbit[3] c;\ncx q[-1], q[0];\nc[-1] = measure q[-3];\nmeasure q[-2] -> c[1];\n",
    "q3-gate-body-uses-its-arguments": Q3
    + "gate g a, b { cx a, b; barrier a, b; ctrl @ gphase(pi) a; }\nqubit[2] q;\ng q[-2], q[1];\n",
    "q3-range-index": Q3 + "qubit[4] q;\nh q[1:2];\n",
    "q3-def": Q3 + "def flip(qubit a) { x a; }\nqubit q;\nflip(q);\n",
    "q3-bit-initialised": Q3 + 'qubit[2] q;\nbit[2] c = "00";\nc = measure q;\n',
    "q3-pragma": 'OPENQASM 3.0;\n#pragma simulator\ninclude "stdgates.inc";\nqubit q;\nx q;\n',
    "q3-version-3.1": 'OPENQASM 3.1;\ninclude "stdgates.inc";\nqubit q;\nsx q;\n',
    "q3-header-only": "OPENQASM 3.0;\n",
    "q3-includes-qelib1": 'OPENQASM 3.0;\ninclude "qelib1.inc";\nqubit[2] q;\nu3(1,2,3) q[0];\n'
    + "rzz(0.1) q[0], q[1];\n",
    "q3-crlf": 'OPENQASM 3.0;\r\ninclude "stdgates.inc";\r\nqubit[2] q;\r\ncz q[0], q[1];\r\n',
    "q3-single-quoted-include": "OPENQASM 3.0;\ninclude 'stdgates.inc';\nqubit q;\nh q;\n",
}

# openqasm3 rejects these (syntax errors, plus its one check: a qreg size of 0).
SYNTAX = {
    "missing-semicolon": Q3 + "qubit[2] q;\nh q[0]\ncx q[0], q[1];\n",
    "missing-semicolon-at-end": Q3 + "qubit q;\nh q",
    "missing-comma": Q3 + "qubit[2] q;\ncx q[0] q[1];\n",
    "unclosed-paren": Q3 + "qubit q;\nrx(pi/2 q;\n",
    "extra-paren": Q3 + "qubit q;\nrx(pi/2)) q;\n",
    "unclosed-bracket": Q3 + "qubit[2] q;\nh q[0;\n",
    "empty-index": Q3 + "qubit[2] q;\nh q[];\n",
    "unary-plus": Q3 + "qubit q;\nrx(+1) q;\n",
    "empty-param": Q3 + "qubit q;\nrx(,) q;\n",
    "juxtaposed-numbers": Q3 + "qubit q;\nrx(1 2) q;\n",
    "number-then-name": Q3 + "qubit q;\nrx(2pi) q;\n",
    "dangling-operator": Q3 + "qubit q;\nrx(1+) q;\n",
    "bad-exponent": Q3 + "qubit q;\nrx(1e) q;\n",
    "reset-two-operands": Q3 + "qubit[2] q;\nreset q[0], q[1];\n",
    "measure-two-targets": Q3 + "qubit[2] q;\nbit[2] c;\nmeasure q[0] -> c[0], c[1];\n",
    "measure-no-arrow": Q2 + "qreg q[1];\ncreg c[1];\nmeasure q[0] c[0];\n",
    "double-semicolon": Q3 + "qubit q;\nh q;;\n",
    "header-not-first": Q3 + "qubit q;\nOPENQASM 3.0;\n",
    "bad-version-number": "OPENQASM 3.0.1;\nqubit q;\n",
    "comment-inside-header": "OPENQASM /* no */ 3.0;\nqubit q;\n",
    "comment-inside-include": 'OPENQASM 3.0;\ninclude /* no */ "stdgates.inc";\nqubit q;\n',
    "unterminated-comment": Q3 + "qubit q;\n/* never closed\nh q;\n",
    "unterminated-string": 'OPENQASM 3.0;\ninclude "stdgates.inc;\nqubit q;\n',
    "include-without-semicolon": 'OPENQASM 3.0;\ninclude "stdgates.inc"\nqubit q;\n',
    "garbage-characters": Q3 + "qubit q;\nh q; $$\n",
    "garbage-bytes": "\x00\xff\xfe garbage \x01",
    "declaration-with-index": Q3 + "qubit[2] q[1];\n",
    "qreg-unclosed-size": Q2 + "qreg q[2;\n",
    "keyword-as-register": Q3 + "qubit[2] if;\n",
    "opaque-is-not-qasm3": Q2 + "qreg q[1];\nopaque foo q;\n",
    "qreg-size-zero": Q2 + "qreg q[0];\n",
    "stray-brace": Q3 + "qubit q;\nh q;\n}\n",
    "number-as-operand": Q3 + "qubit q;\nh 1;\n",
    "empty": "",
    "whitespace-only": "  \n\t \r\n",
    "comments-only": "// nothing here\n/* at all */\n",
}

# openqasm3 accepts these: only the semantic checks reject them.
SEMANTIC = {
    "undefined-register": Q3 + "qubit[2] q;\nh r[0];\n",
    "index-out-of-range": Q3 + "qubit[2] q;\nh q[2];\n",
    "measure-index-out-of-range": Q2 + "qreg q[2];\ncreg c[2];\nmeasure q[1] -> c[5];\n",
    "unknown-gate": Q3 + "qubit q;\nfoo q;\n",
    "missing-include": "OPENQASM 3.0;\nqubit q;\nh q;\n",
    "cx-without-include-qasm3": "OPENQASM 3.0;\nqubit[2] q;\nCX q[0], q[1];\n",
    "u-not-in-stdgates": Q3 + "qubit q;\nu(1, 2, 3) q;\n",
    "wrong-param-count": Q3 + "qubit q;\nrx(1, 2) q;\n",
    "missing-params": Q2 + "qreg q[1];\nu3(0.1, 0.2) q[0];\n",
    "params-on-fixed-gate": Q3 + "qubit q;\nh(0.5) q;\n",
    "wrong-qubit-count": Q3 + "qubit[2] q;\ncx q[0];\n",
    "too-many-qubits": Q3 + "qubit[2] q;\nh q[0], q[1];\n",
    "duplicate-qubit": Q3 + "qubit[2] q;\ncx q[1], q[1];\n",
    "duplicate-register-broadcast": Q2 + "qreg q[2];\ncx q, q;\n",
    "register-overlaps-qubit": Q2 + "qreg q[2];\ncx q, q[0];\n",
    "broadcast-size-mismatch": Q2 + "qreg a[2];\nqreg b[3];\ncx a, b;\n",
    "register-declared-twice": Q3 + "qubit[2] q;\nqubit[3] q;\n",
    "quantum-and-classical-same-name": Q2 + "qreg q[1];\ncreg q[1];\n",
    "zero-size-qubit-array": Q3 + "qubit[0] q;\n",
    "measure-size-mismatch": Q2 + "qreg q[3];\ncreg c[2];\nmeasure q -> c;\n",
    "measure-register-into-bit": Q3 + "qubit[2] q;\nbit[2] c;\nc[0] = measure q;\n",
    "classical-register-as-qubit": Q2 + "qreg q[1];\ncreg c[1];\nh c[0];\n",
    "measure-into-qubits": Q2 + "qreg q[1];\nqreg r[1];\nmeasure q[0] -> r[0];\n",
    "indexing-a-scalar": Q3 + "qubit q;\nh q[0];\n",
    "use-before-declaration": Q3 + "h q[0];\nqubit[1] q;\n",
    "unsupported-version": "OPENQASM 4.0;\nqubit q;\n",
    "version-2-without-minor": "OPENQASM 2;\nqreg q[1];\n",
    "defined-gate-wrong-params": Q3 + "gate g(a) q { rx(a) q; }\nqubit q;\ng q;\n",
    "unknown-gate-in-definition": Q3 + "gate g q { nope q; }\nqubit q;\ng q;\n",
    "bad-register-inside-if": Q2 + "qreg q[1];\ncreg c[1];\nif (c == 1) x q[3];\n",
    "gate-used-before-definition": Q3 + "qubit q;\ng q;\ngate g a { x a; }\n",
    "ctrl-modifier-arity": Q3 + "qubit[2] q;\nctrl @ x q[0];\n",
    "negative-index-in-qasm2": Q2 + "qreg q[2];\nh q[-1];\n",
    "negative-measure-index-in-qasm2": Q2 + "qreg q[2];\ncreg c[2];\nmeasure q[0] -> c[-1];\n",
    "negative-index-out-of-range": Q3 + "qubit[2] q;\nh q[-3];\n",
    "negative-index-same-qubit": Q3 + "qubit[2] q;\ncx q[1], q[-1];\n",
    "gate-body-undeclared-qubit": Q3 + "gate g a { h b; }\nqubit q;\ng q;\n",
    "gate-body-uses-a-global-register": Q3 + "qubit[2] q;\ngate g a { cx a, q[0]; }\n",
    "gate-body-uses-an-angle-as-qubit": Q3 + "gate g(t) a { rx(t) t; }\n",
    "gate-body-indexes-an-argument": Q3 + "gate g a { h a[0]; }\n",
    "gate-body-same-qubit-twice": Q2 + "gate g a { CX a, a; }\n",
}


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _verdict_cache._cache.clear()
    yield
    _verdict_cache._cache.clear()


def openqasm3_accepts(source: str) -> bool:
    """The reference parser's verdict (any exception, even on empty input, rejects)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            openqasm3.parse(source)
    except Exception:
        return False
    return True


def error_of(source: str, *, full: bool = False) -> QasmValidationError | None:
    try:
        check_circuit("c", source, full=full)
    except QasmValidationError as exc:
        return exc
    return None


# --------------------------------------------------------------------------- corpus


def test_corpus_is_large_enough() -> None:
    assert len(VALID) >= 40
    assert len(SYNTAX) + len(SEMANTIC) >= 40


@pytest.mark.parametrize("source", VALID.values(), ids=VALID.keys())
def test_valid_programs_are_accepted(source: str) -> None:
    assert openqasm3_accepts(source)
    assert error_of(source) is None
    assert error_of(source, full=True) is None


@pytest.mark.parametrize("source", SYNTAX.values(), ids=SYNTAX.keys())
def test_syntax_errors_are_rejected_like_openqasm3(source: str) -> None:
    assert not openqasm3_accepts(source)
    assert error_of(source) is not None
    assert error_of(source, full=True) is not None


@pytest.mark.parametrize("source", SEMANTIC.values(), ids=SEMANTIC.keys())
def test_semantic_errors_are_rejected_though_openqasm3_parses_them(source: str) -> None:
    assert openqasm3_accepts(source)
    fast, full = error_of(source), error_of(source, full=True)
    assert fast is not None
    assert full is not None
    # Both paths run the same semantic checks, so they even agree on the message.
    assert (fast.reason, fast.line, fast.column, fast.token) == (
        full.reason,
        full.line,
        full.column,
        full.token,
    )


def test_common_circuits_take_the_fast_path_and_uncommon_ones_the_parser() -> None:
    assert _hot._hot_accepts(VALID["q2-bell"])
    assert _hot._hot_accepts(VALID["q3-bell"])
    assert _hot._hot_accepts(VALID["q2-comments"])
    assert _qasm._fast_check(VALID["q2-param-expressions"]) is None
    assert isinstance(_qasm._fast_check(VALID["q3-gate-definition"]), _semantics._Unsure)
    assert isinstance(_qasm._fast_check(VALID["q3-modifiers"]), _semantics._Unsure)


def test_fast_rejection_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(source: str) -> object:
        raise AssertionError("the full parser ran")

    monkeypatch.setattr(_qasm, "_verdict_slow", no_parse)
    fast_syntax = [
        *("missing-semicolon", "missing-semicolon-at-end", "missing-comma", "unclosed-paren"),
        *("extra-paren", "unclosed-bracket", "empty-index", "unary-plus", "empty-param"),
        *("juxtaposed-numbers", "dangling-operator", "reset-two-operands", "measure-no-arrow"),
        *("double-semicolon", "header-not-first", "unterminated-comment", "stray-brace"),
        *("include-without-semicolon", "declaration-with-index", "keyword-as-register"),
        *("opaque-is-not-qasm3", "qreg-size-zero", "empty", "whitespace-only"),
    ]
    for name in fast_syntax:
        assert error_of(SYNTAX[name]) is not None
    for source in SEMANTIC.values():
        if "gate g" not in source and "if (" not in source and "ctrl @" not in source:
            assert error_of(source) is not None


# --------------------------------------------------------------------------- positions

POSITIONS = [
    # (source, words of the reason, line, column, token)
    (SYNTAX["missing-semicolon"], "expected ',' or ';'", 5, 1, "cx"),
    (SYNTAX["missing-comma"], "expected ',' or ';'", 4, 9, "q"),
    (SYNTAX["unclosed-paren"], "expected an operator", 4, 9, "q"),
    (SYNTAX["unclosed-bracket"], "expected ']'", 4, 6, ";"),
    (SYNTAX["unary-plus"], "expected an expression", 4, 4, "+"),
    (SYNTAX["header-not-first"], "must be the first statement", 4, 1, "OPENQASM"),
    (SYNTAX["unterminated-comment"], "unterminated comment", 4, 1, "/*"),
    (SYNTAX["missing-semicolon-at-end"], "unexpected end of input", 4, 4, None),
    (SEMANTIC["index-out-of-range"], "index 2 out of range for 'q' of size 2", 4, 3, "q[2]"),
    (SEMANTIC["unknown-gate"], "unknown gate 'foo'", 4, 1, "foo"),
    (SEMANTIC["missing-include"], 'missing include "stdgates.inc"', 3, 1, "h"),
    (SEMANTIC["wrong-param-count"], "takes 1 parameter, got 2", 4, 1, "rx"),
    (SEMANTIC["wrong-qubit-count"], "acts on 2 qubits, got 1", 4, 1, "cx"),
    (SEMANTIC["duplicate-qubit"], "used twice", 4, 10, "q[1]"),
    (SEMANTIC["broadcast-size-mismatch"], "different sizes", 5, 7, "b"),
    (SEMANTIC["register-declared-twice"], "already declared", 4, 10, "q"),
    (SEMANTIC["measure-size-mismatch"], "measure maps 3 qubits to 2 bits", 5, 14, "c"),
    (SEMANTIC["undefined-register"], "undefined register 'r'", 4, 3, "r"),
    (SEMANTIC["unsupported-version"], "unsupported OpenQASM version", 1, 10, "4.0"),
    (SEMANTIC["defined-gate-wrong-params"], "gate 'g' takes 1 parameter, got 0", 5, 1, "g"),
    (SEMANTIC["bad-register-inside-if"], "index 3 out of range", 5, 15, "q[3]"),
    (SEMANTIC["negative-index-in-qasm2"], "negative index -1", 4, 3, "q[-1]"),
    (SEMANTIC["negative-index-out-of-range"], "index -3 out of range", 4, 3, "q[-3]"),
    (SEMANTIC["negative-index-same-qubit"], "qubit 'q[-1]' used twice", 4, 10, "q[-1]"),
    (SEMANTIC["gate-body-undeclared-qubit"], "'b' is not a qubit argument of gate", 3, 14, "b"),
    (SEMANTIC["gate-body-uses-a-global-register"], "not a qubit argument", 4, 18, "q"),
    (SYNTAX["garbage-characters"], "unexpected character", 4, 6, "$$"),
    (SYNTAX["bad-exponent"], "syntax error", 4, 5, "e"),
]


@pytest.mark.parametrize(("source", "reason", "line", "column", "token"), POSITIONS)
def test_errors_carry_line_column_and_token(
    source: str, reason: str, line: int, column: int, token: str | None
) -> None:
    error = error_of(source)
    assert error is not None
    assert reason in error.reason
    assert (error.line, error.column, error.token) == (line, column, token)
    assert error.label == "c"


@pytest.mark.parametrize(
    "name", ["missing-semicolon", "missing-comma", "unclosed-paren", "unary-plus"]
)
def test_fast_and_parser_positions_agree_on_syntax_errors(name: str) -> None:
    fast, full = error_of(SYNTAX[name]), error_of(SYNTAX[name], full=True)
    assert fast is not None
    assert full is not None
    assert (fast.line, fast.column, fast.token) == (full.line, full.column, full.token)


def test_parser_errors_are_converted() -> None:
    # The parser's own check carries "L3:C6:" in its message.
    error = error_of(SYNTAX["qreg-size-zero"], full=True)
    assert error is not None
    assert "qreg size must be positive" in error.reason
    assert (error.line, error.column) == (3, 7)
    # A syntax error's position is only on the exception's cause chain.
    error = error_of(SYNTAX["missing-semicolon"], full=True)
    assert error is not None
    assert (error.line, error.column, error.token) == (5, 1, "cx")


def test_unexpected_parser_failures_become_validation_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(source: str) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(openqasm3, "parse", broken)
    error = error_of(VALID["q3-bell"], full=True)
    assert error is not None
    assert "RuntimeError" in error.reason


def test_absurd_nesting_is_rejected_not_crashed() -> None:
    source = Q3 + "qubit q;\nrx(" + "(" * 3000 + "1" + ")" * 3000 + ") q;\n"
    error = error_of(source)
    assert error is not None
    assert "nested" in error.reason


def test_lone_surrogate_is_rejected() -> None:
    error = error_of("OPENQASM 3.0;\nqubit q\ud800;\n")
    assert error is not None
    assert "UTF-8" in error.reason
    assert (error.line, error.column) == (2, 8)


def test_antlr_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    assert error_of(SYNTAX["unclosed-paren"], full=True) is not None
    assert error_of(SYNTAX["garbage-characters"], full=True) is not None
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- properties

ANGLES = st.one_of(
    st.floats(-10, 10, allow_nan=False).map(repr),
    st.integers(0, 99).map(str),
    st.sampled_from(
        [
            *("pi", "-pi/2", "pi/4", "2*pi", "π", "3*pi/8", "sin(0.5)", "sqrt(2)/2", "-(pi)"),
            *("(1+2)*3", "1.5e-3", ".5", "1.", "1E+2", "- 0.25"),
        ]
    ),
)
SEPARATORS = st.sampled_from(["\n", " ", "\n\n", "  \t", " // note\n", " /* c */ ", "\r\n"])


@st.composite
def circuits(draw: st.DrawFn) -> str:
    """A valid circuit using gates of the version's library, with random operands."""
    version = draw(st.sampled_from([2, 3]))
    table = _semantics._QELIB1 if version == 2 else _semantics._STDGATES
    n = draw(st.integers(1, 5))
    if version == 2:
        lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];"]
    else:
        lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', f"qubit[{n}] q;", f"bit[{n}] c;"]
    names = sorted(name for name, (_, arity) in table.items() if arity <= n)
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(names))
        n_params, arity = table[name]
        qubits = draw(st.permutations(range(n)))[:arity]
        params = ", ".join(draw(ANGLES) for _ in range(n_params))
        operands = ", ".join(f"q[{i}]" for i in qubits)
        lines.append(f"{name}({params}) {operands};" if n_params else f"{name} {operands};")
    i = draw(st.integers(0, n - 1))
    lines.append(
        draw(
            st.sampled_from(
                [f"measure q[{i}] -> c[{i}];", "measure q -> c;", "barrier q;", f"reset q[{i}];"]
                + ([f"c[{i}] = measure q[{i}];", "c = measure q;"] if version == 3 else [])
            )
        )
    )
    separators = [draw(SEPARATORS) for _ in lines]
    return "".join(line + sep for line, sep in zip(lines, separators, strict=True))


ALPHABET = [*"();,[]{}-+*/=<>.#$@!~\"' \n\tqchxpi019eE_π", "->", "//", "/*", "\xa0"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits())
def test_generated_circuits_are_accepted_by_both_paths(source: str) -> None:
    assert error_of(source) is None
    assert _hot._hot_accepts(source) or _qasm._fast_check(source) is None
    assert openqasm3_accepts(source)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits(), st.integers(0, 10_000), st.sampled_from("idr"), st.sampled_from(ALPHABET))
def test_mutations_never_crash_and_fast_agrees_with_full(
    source: str, where: int, how: str, char: str
) -> None:
    i = where % (len(source) + 1)
    if how == "i":
        source = source[:i] + char + source[i:]
    elif how == "d":
        source = source[:i] + source[i + 1 :]
    else:
        source = source[:i] + char + source[i + 1 :]
    fast, full = error_of(source), error_of(source, full=True)  # nothing else may escape
    assert (fast is None) == (full is None), (source, fast, full)
    result = _qasm._fast_check(source)
    if fast is None:
        assert openqasm3_accepts(source)
    elif isinstance(result, _semantics._Fault) and not result.semantic:
        assert not openqasm3_accepts(source)
    if _hot._hot_accepts(source):
        assert result is None


# --------------------------------------------------------------------------- cache


def counting_slow_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real: Callable[[str], object] = _qasm._verdict_slow

    def counted(source: str) -> object:
        calls.append(source)
        return real(source)

    monkeypatch.setattr(_qasm, "_verdict_slow", counted)
    return calls


def test_cache_parses_each_source_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_slow_path(monkeypatch)
    check_circuit("a", VALID["q3-gate-definition"])
    check_circuit("b", VALID["q3-gate-definition"])
    assert len(calls) == 1
    check_circuit("c", VALID["q3-bell"], full=True)
    check_circuit("d", VALID["q3-bell"], full=True)
    assert len(calls) == 2
    check_circuit("e", VALID["q3-bell"])  # the fast path never parses
    assert len(calls) == 2


def test_cached_rejection_names_each_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_slow_path(monkeypatch)
    source = SEMANTIC["defined-gate-wrong-params"]
    for label in ("first", "second"):
        with pytest.raises(QasmValidationError) as info:
            check_circuit(label, source)
        assert info.value.label == label
        assert info.value.line == 5
    assert len(calls) == 1


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_slow_path(monkeypatch)
    monkeypatch.setattr(_verdict_cache, "_CACHE_SIZE", 3)
    sources = [VALID["q3-gate-definition"] + f"// {i}\n" for i in range(5)]
    for source in sources:
        check_circuit("x", source)
    assert len(_verdict_cache._cache) == 3
    check_circuit("x", sources[-1])  # still cached
    check_circuit("x", sources[0])  # evicted: parsed again
    assert len(calls) == 6


# --------------------------------------------------------------------------- batches

SLOW_VALID = [VALID["q3-gate-definition"] + f"rot({i}, 0) q[0];\n" for i in range(6)]
SLOW_INVALID = SEMANTIC["defined-gate-wrong-params"]


def batch_error(items: list[tuple[str, str]]) -> QasmValidationError | None:
    try:
        check_batch(items)
    except QasmValidationError as exc:
        return exc
    return None


def test_batch_raises_for_the_first_invalid_circuit_in_order() -> None:
    assert batch_error([("a", VALID["q2-bell"]), ("b", VALID["q3-modifiers"])]) is None
    items = [
        ("ok", VALID["q3-bell"]),
        ("slow-bad", SLOW_INVALID),
        ("fast-bad", SEMANTIC["unknown-gate"]),
    ]
    error = batch_error(items)
    assert error is not None
    assert error.label == "slow-bad"
    error = batch_error([items[0], items[2], items[1]])
    assert error is not None
    assert error.label == "fast-bad"


def test_large_batch_starts_no_process_nor_thread() -> None:
    """Finding 1 of issue 13: a batch of >64 full-parser circuits used to start a
    spawn pool, which re-ran a script without a main guard."""
    rng = random.Random(13)
    header = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
    items = [
        (f"c{i}", f"{header}gate g{i} a {{ rz({rng.random()!r}) a; }}\nqubit q;\ng{i} q;\n")
        for i in range(80)
    ]
    threads = set(threading.enumerate())
    check_batch(items)
    assert multiprocessing.active_children() == []
    assert set(threading.enumerate()) <= threads


def test_validation_in_a_forked_child_while_a_thread_holds_the_cache_lock() -> None:
    """A lock held by another thread at fork time is not inherited held."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _verdict_cache._cache_lock, _full._ANTLR_LOCK, _hot._statements_lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            verdict = pool.apply_async(_child_validates).get(timeout=60)
    finally:
        release.set()
        thread.join()
    assert verdict == "ok"


def _child_validates() -> str:
    check_circuit("c", "OPENQASM 3.0;\ngate g a { U(0, 0, 0) a; }\nqubit q;\ng q;\n", full=True)
    check_circuit("d", "OPENQASM 2.0;\nqreg in_child[1];\nU(0, 0, 0) in_child[0];\n")  # hot path
    return "ok"


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("source", "qubits", "clbits"),
    [
        (VALID["q2-bell"], 2, 2),
        (VALID["q3-bell"], 2, 2),
        (VALID["q2-many-registers"], 3, 3),
        (VALID["q3-scalars"], 2, 1),
        (VALID["q3-hardware-qubits"], 2, 1),
        (VALID["q3-def"], 1, 0),
        (VALID["q2-comments"], 1, 0),
        ("// qreg q[5];\nOPENQASM 3.0;\nqubit[3] q;\n", 3, 0),
    ],
)
def test_circuit_sizes(source: str, qubits: int, clbits: int) -> None:
    assert circuit_qubits(source) == qubits
    assert circuit_clbits(source) == clbits
