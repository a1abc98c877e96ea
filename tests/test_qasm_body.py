"""The whole-body regex fast path (`_qasm._body`) gives the verdicts the statement loop gives.

Differential: random programs of the bench's shape (random 10-qubit circuits of
one- and two-qubit gates with angles) and malformed variants of them go through
the new fast path and through the previous layers (statement loop, then token
checker); every verdict, error position and token must be identical, and the
body regex may only accept what the statement loop and the token checker accept.
"""

from __future__ import annotations

import random
import re

import pytest

from asyncjob._errors import QasmValidationError
from asyncjob._qasm import _SLOW, _body, _fast_check, _quick, check_circuit
from asyncjob._qasm._body import _below, _body_accepts
from asyncjob._qasm._hot import _hot_accepts
from asyncjob._qasm._semantics import _Fault, _Unsure, _Verdict
from asyncjob._qasm._tokens import _Checker

ONE = ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "id"]
ONE_ODD = ["u", "U", "hx", "foo", "measure", "CX", "reset"]
ROT = ["rx", "ry", "rz", "p", "u1"]
ROT_ODD = ["u2", "u3", "cu", "crz", "rxx", "h", "U", "rxx"]
TWO = ["cx", "cz", "swap"]
TWO_ODD = ["CX", "ccx", "c3x", "c4x", "crx", "rzz", "cswap", "c3sqrtx", "cy"]
ANGLES = [
    "0.5", "-1.25", "pi/2", "-pi", "2*pi/3", "1e-3", "-.5E+2", "sin(0.1)", "(1+2)*3", "1e",
    "1.5dt", "pi pi", "", "τ", "-(-1)", "1.2.3", "π/4", "cos(pi/8)*-2",
]  # fmt: skip


def _pick(rng: random.Random, bad: float, good: list[str], odd: list[str]) -> str:
    return rng.choice(odd if rng.random() < bad else good)


def _operand(rng: random.Random, regs: list[tuple[str, int]], bad: float) -> str:
    name, size = rng.choice(regs)
    if rng.random() >= bad:
        return f"{name}[{rng.randrange(size)}]"
    return rng.choice(
        [
            f"{name}[{size}]",  # out of range
            f"{name}[-1]",
            f"{name}[0{rng.randrange(size)}]",  # leading zero
            f"{name}[ {rng.randrange(size)} ]",
            f"{name} [{rng.randrange(size)}]",
            name,  # whole register
            f"r[{rng.randrange(3)}]",  # undeclared
            f"{name}[{10**12}]",
        ]
    )


def _statement(
    rng: random.Random, qregs: list[tuple[str, int]], cregs: list[tuple[str, int]], bad: float
) -> str:
    r = rng.random()
    if r < 0.3:
        return f"{_pick(rng, bad, ONE, ONE_ODD)} {_operand(rng, qregs, bad)}"
    if r < 0.65:
        n_params = 1 if rng.random() >= bad else rng.choice([0, 2, 3, 4])
        params = ",".join(_pick(rng, bad, ANGLES[:6], ANGLES[6:]) for _ in range(n_params))
        gap = rng.choice(["", "", " ", "\n"])
        return f"{_pick(rng, bad, ROT, ROT_ODD)}{gap}({params}) {_operand(rng, qregs, bad)}"
    if r < 0.9:
        width = 2 if rng.random() >= bad else rng.choice([1, 3, 4, 5])
        ops = [_operand(rng, qregs, bad) for _ in range(width)]
        if rng.random() < bad:
            ops[-1] = ops[0]  # the same qubit twice
        sep = rng.choice([",", ",", ", ", " , ", ",\n"])
        return f"{_pick(rng, bad, TWO, TWO_ODD)} {sep.join(ops)}"
    target = _operand(rng, cregs, bad) if cregs else "c[0]"
    if rng.random() < 0.5:
        return f"measure {_operand(rng, qregs, bad)} -> {target}"
    if rng.random() < 0.5:
        return f"{target} = measure {_operand(rng, qregs, bad)}"
    q, c = rng.choice(qregs)[0], (rng.choice(cregs)[0] if cregs else "c")
    return f"measure {q} -> {c}"


def random_program(rng: random.Random) -> str:
    """A program of the bench's shape, often with a defect somewhere."""
    version = rng.choice([2, 2, 3, 3, None])
    lines = []
    if version == 2:
        lines.append("OPENQASM 2.0;")
    elif version == 3:
        lines.append(rng.choice(["OPENQASM 3.0;", "OPENQASM 3;"]))
    if version is not None or rng.random() < 0.7:
        lines.append(rng.choice(['include "qelib1.inc";', 'include "stdgates.inc";']))
    n_regs = rng.choice([1, 1, 1, 2])
    qregs = [(name, rng.choice([1, 2, 5, 10, 10, 11, 100])) for name in ["q", "qq"][:n_regs]]
    cregs = [
        (name, size) for name, size in [("c", qregs[0][1]), ("d", 5)][: rng.choice([0, 1, 1, 2])]
    ]
    for name, size in qregs:
        lines.append(f"qreg {name}[{size}];" if version == 2 else f"qubit[{size}] {name};")
    for name, size in cregs:
        lines.append(f"creg {name}[{size}];" if version == 2 else f"bit[{size}] {name};")
    bad = rng.choice([0.0, 0.0, 0.01, 0.03, 0.2])  # how often a statement has a defect
    for _ in range(rng.randrange(1, 40)):
        lines.append(_statement(rng, qregs, cregs, bad) + ";")
    if rng.random() < 0.05:
        lines.append("h q[0]")  # no final ';'
    if rng.random() < 0.05:
        lines.insert(rng.randrange(len(lines)), "// a comment")
    if rng.random() < 0.05:
        lines.insert(rng.randrange(1, len(lines)), "qreg late[2];")
    return "\n".join(lines) + "\n"


def _old_fast_check(source: str) -> _Fault | _Unsure | None:
    """The fast path as it was before the body regex: statement loop, then token checker."""
    if _hot_accepts(source):
        return None
    try:
        _Checker(source).run()
    except (_Fault, _Unsure) as exc:
        return exc
    return None


def _old_quick(source: str) -> _Verdict | object:
    """What `_quick` answered before the body regex (for a non-empty UTF-8 source)."""
    result = _old_fast_check(source)
    if isinstance(result, _Unsure):
        return _SLOW
    return None if result is None else result.verdict(source)


@pytest.mark.parametrize("seed", range(8))
def test_body_path_gives_the_same_verdicts_as_before(seed: int) -> None:
    rng = random.Random(seed)
    accepted = rejected = 0
    for _ in range(400):
        source = random_program(rng)
        if _body_accepts(source):
            accepted += 1
            assert _hot_accepts(source), source
            _Checker(source).run()  # raises if the token checker disagrees
        new = _quick(source, False)
        assert new == _old_quick(source), source
        rejected += new is not None
    assert accepted > 20 and rejected > 20  # both sides of the generator are exercised


def test_bench_circuits_take_the_body_path_and_agree_with_openqasm3() -> None:
    rng = random.Random(7)
    for _ in range(20):
        lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[10];", "creg c[10];"]
        for _ in range(120):
            kind = rng.random()
            if kind < 0.3:
                lines.append(f"{rng.choice(['h', 'x', 'sx', 't'])} q[{rng.randrange(10)}];")
            elif kind < 0.7:
                angle = rng.uniform(-3.2, 3.2)
                lines.append(
                    f"{rng.choice(['rx', 'ry', 'rz'])}({angle!r}) q[{rng.randrange(10)}];"
                )
            else:
                a, b = rng.sample(range(10), 2)
                lines.append(f"{rng.choice(['cx', 'cz', 'swap'])} q[{a}],q[{b}];")
        lines.append("measure q -> c;")
        source = "\n".join(lines) + "\n"
        assert _body_accepts(source)
        check_circuit("c", source, full=True)  # the reference parser agrees: valid


def test_body_path_leaves_errors_to_the_other_layers() -> None:
    base = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[10];\ncreg c[10];\n'
    for body, reason in [
        ("cx q[3],q[3];", "qubit 'q[3]' used twice in one gate"),
        ("h q[10];", "index 10 out of range for 'q' of size 10"),
        ("rx q[0];", "gate 'rx' takes 1 parameter, got 0"),
        ("foo q[0];", "unknown gate 'foo'"),
        ("measure q[0] -> c[10];", "index 10 out of range for 'c' of size 10"),
        ("ccx q[0],q[1],q[0];", "qubit 'q[0]' used twice in one gate"),
    ]:
        source = base + body + "\n"
        assert not _body_accepts(source)
        result = _fast_check(source)
        assert isinstance(result, _Fault) and result.reason == reason


@pytest.mark.parametrize("size", [*range(1, 130), 999, 1000, 1001, 1024, 12345])
def test_index_regex_matches_exactly_the_canonical_indices_in_range(size: int) -> None:
    pattern = re.compile(_below(size))
    candidates = [*range(0, 1100), size - 1, size, size + 1, 10 * size]
    for i in candidates:
        assert (pattern.fullmatch(str(i)) is not None) == (0 <= i < size), (size, i)
        assert pattern.fullmatch(f"0{i}") is None


def test_body_path_leaves_a_lone_surrogate_to_the_utf8_check() -> None:
    source = 'OPENQASM 2.0;\ninclude "a\ud800.inc";\nqreg q[2];\nCX q[0],q[1];\n'
    assert not _body_accepts(source)
    with pytest.raises(QasmValidationError, match="not valid UTF-8"):
        check_circuit("c", source)


def test_body_path_is_not_taken_with_full_true() -> None:
    source = 'OPENQASM 3;\ninclude "stdgates.inc";\nqubit[2] q;\ncx q[0],q[1];\n'
    assert _body_accepts(source)
    assert _quick(source, True) is _SLOW  # the reference parser still runs


def test_only_accepted_sources_are_remembered() -> None:
    base = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n'
    good, bad = base + "cx q[0],q[2];\nrz(0.25) q[1];\n", base + "cx q[0],q[0];\n"
    check_circuit("good", good)
    assert good in _body._accepted
    check_circuit("good again", good)  # answered from the memo
    with pytest.raises(QasmValidationError, match="used twice"):
        check_circuit("bad", bad)
    with pytest.raises(QasmValidationError, match="used twice"):
        check_circuit("bad again", bad)
    assert bad not in _body._accepted
