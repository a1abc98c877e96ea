"""The aer executor runs a job in a few batched qiskit-aer calls, with unchanged results.

A spy wraps (never replaces) ``AerSimulator.run`` to count the calls; every
result comes from the real simulator.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import aiohttp
import pytest

from asyncjob._histogram import decode_result
from asyncjob.local import AerExecutor, CircuitTask, Counts, ExecutionAborted, Expectations, _aer
from asyncjob.local._aer import CALL_BUDGET_US, estimate_cost, load

from .conftest import BELL, Factory, completed_results, submit

pytest.importorskip("qiskit_aer")

from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer import AerSimulator


def basis_state(n_qubits: int, value: int, *, measure: bool = True) -> str:
    """An OpenQASM 2 circuit preparing |value> (qubit 0 = bit 0) and measuring every qubit."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n_qubits}];"]
    if measure:
        lines.append(f"creg c[{n_qubits}];")
    lines += [f"x q[{i}];" for i in range(n_qubits) if value >> i & 1]
    if measure:
        lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def rotations(rng: random.Random, n_qubits: int, layers: int = 3) -> str:
    """A random entangling circuit of rx/ry/rz layers and a cx ladder, unmeasured."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n_qubits}];"]
    for _ in range(layers):
        for i in range(n_qubits):
            for gate in ("rx", "ry", "rz"):
                lines.append(f"{gate}({rng.uniform(-3.2, 3.2)!r}) q[{i}];")
        lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n_qubits - 1)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of circuits of every ``AerSimulator.run`` call made during the test."""
    calls: list[int] = []
    real_run = AerSimulator.run

    def spy(self: Any, circuits: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(circuits) if isinstance(circuits, list) else 1)
        return real_run(self, circuits, *args, **kwargs)

    monkeypatch.setattr(AerSimulator, "run", spy)
    return calls


def counts_of(outcomes: list[Any]) -> list[dict[str, int]]:
    assert all(isinstance(outcome, Counts) for outcome in outcomes)
    return [outcome.counts for outcome in outcomes]


def test_one_job_is_one_run_call(run_calls: list[int]) -> None:
    tasks = [CircuitTask(f"c{i}", basis_state(3, i % 8), shots=100) for i in range(40)]
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [40]
    assert counts_of(outcomes) == [{format(i % 8, "03b"): 100} for i in range(40)]


def test_one_run_call_per_shots_value_in_label_order(run_calls: list[int]) -> None:
    shots = [100, 250, 100, 7, 250, 7, 100]
    tasks = [
        CircuitTask(f"c{i}", basis_state(3, i), shots=n) for i, n in enumerate(shots)
    ]  # interleaved: the executor groups by shots and must put results back in order
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert sorted(run_calls) == [2, 2, 3]
    assert counts_of(outcomes) == [{format(i, "03b"): n} for i, n in enumerate(shots)]


def test_mixed_widths_in_one_job(run_calls: list[int]) -> None:
    widths = [1, 5, 2, 3, 1, 4]
    tasks = [
        CircuitTask(f"w{i}", basis_state(n, (1 << n) - 1 - i % 2), shots=50)
        for i, n in enumerate(widths)
    ]
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [len(widths)]
    assert [outcome.n_bits for outcome in outcomes] == widths
    expected = [{format((1 << n) - 1 - i % 2, f"0{n}b"): 50} for i, n in enumerate(widths)]
    assert counts_of(outcomes) == expected


MID_CIRCUIT = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg low[2];
creg flag[1];
creg spare[2];
x q[0];
measure q[0] -> low[1];
x q[0];
cx q[1], q[2];
measure q[0] -> flag[0];
x q[2];
measure q[2] -> spare[0];
"""
# low[1]=1 (q0 before the second x), flag[0]=0 (q0 after it), spare[0]=1, other bits 0.
# Classical bits in order: low[0] low[1] flag[0] spare[0] spare[1]; bit 0 rightmost.
MID_CIRCUIT_COUNTS = "01010"


def test_mid_circuit_partial_measurements_and_several_registers(run_calls: list[int]) -> None:
    tasks = [
        CircuitTask("mid", MID_CIRCUIT, shots=20),
        CircuitTask("bell", BELL, shots=20),
        CircuitTask("mid-again", MID_CIRCUIT, shots=20),
    ]
    outcomes = AerExecutor(seed=5).run(tasks, threading.Event())
    assert run_calls == [3]
    mid, bell, again = outcomes
    assert isinstance(mid, Counts) and isinstance(bell, Counts)
    assert mid.counts == again.counts == {MID_CIRCUIT_COUNTS: 20}
    assert mid.n_bits == 5
    assert set(bell.counts) <= {"00", "11"} and sum(bell.counts.values()) == 20


def test_counts_keys_are_qiskits_with_register_spaces_removed() -> None:
    source = basis_state(3, 0b101, measure=False) + (
        "creg a[1];\ncreg b[2];\n"
        "measure q[0] -> b[1];\nmeasure q[1] -> a[0];\nmeasure q[2] -> b[0];\n"
    )
    outcome = AerExecutor().sample(CircuitTask("x", source, shots=10))
    reference = AerSimulator().run(load(source), shots=10).result().get_counts()
    assert reference == {"11 0": 10}
    assert outcome.counts == {"110": 10}


QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[2] c;
bit flag;
x q[0];
x q[2];
c[0] = measure q[0];
c[1] = measure q[1];
flag = measure q[2];
"""


def test_openqasm3_input_in_a_batch(run_calls: list[int]) -> None:
    pytest.importorskip("qiskit_qasm3_import")
    tasks = [CircuitTask("v3", QASM3, shots=30), CircuitTask("v2", basis_state(2, 2), shots=30)]
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [2]
    assert counts_of(outcomes) == [{"101": 30}, {"10": 30}]


def test_custom_gates_are_unrolled_next_to_native_circuits(run_calls: list[int]) -> None:
    custom = """OPENQASM 2.0;
include "qelib1.inc";
gate flip2 a, b { x a; x b; }
qreg q[3];
creg c[3];
flip2 q[0], q[2];
measure q -> c;
"""
    tasks = [
        CircuitTask("custom", custom, shots=10),
        CircuitTask("native", basis_state(3, 2), shots=10),
    ]
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [2]
    assert counts_of(outcomes) == [{"101": 10}, {"010": 10}]


def reference_value(source: str, term: str) -> float:
    circuit = load(source)
    circuit.remove_final_measurements(inplace=True)
    label = term.ljust(circuit.num_qubits, "I")[::-1]  # qiskit: qubit 0 rightmost
    return float(Statevector(circuit).expectation_value(SparsePauliOp(label)).real)


def test_expectations_match_statevector_exactly(run_calls: list[int]) -> None:
    rng = random.Random(11)
    tasks: list[CircuitTask] = []
    for i, n in enumerate([2, 4, 3, 5, 1, 4]):
        source = rotations(rng, n)
        if i % 2:
            source = source.replace(f"qreg q[{n}];", f"qreg q[{n}];\ncreg m[{n}];")
            source += "measure q -> m;\n"  # final measurements are removed
        terms = {"".join(rng.choice("IXYZ") for _ in range(n)) for _ in range(6)}
        terms |= {"I" * n, "Z"}  # identity, and a term shorter than the circuit
        tasks.append(CircuitTask(f"e{i}", source, terms=tuple(sorted(terms))))
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [len(tasks)]
    for task, outcome in zip(tasks, outcomes, strict=True):
        assert isinstance(outcome, Expectations)
        assert list(outcome.values) == list(task.terms or ())
        for term, value in outcome.values.items():
            assert value == pytest.approx(reference_value(task.source, term), abs=1e-10)


def test_a_wide_observable_fails_the_batch_naming_its_circuit() -> None:
    tasks = [
        CircuitTask("ok", BELL, terms=("ZZ",)),
        CircuitTask("narrow", basis_state(1, 0, measure=False), terms=("ZZ",)),
    ]
    with pytest.raises(ValueError, match=r"'narrow'.*wider"):
        AerExecutor().run(tasks, threading.Event())


def test_an_unloadable_circuit_is_named() -> None:
    tasks = [
        CircuitTask("ok", BELL, shots=5),
        CircuitTask("broken", "OPENQASM 2.0; qreg q[1]; nope q[0];", shots=5),
    ]
    with pytest.raises(ValueError, match="'broken'"):
        AerExecutor().run(tasks, threading.Event())


def expensive(n: int) -> list[CircuitTask]:
    """Circuits each estimated at more than a third of a call's budget."""
    source = basis_state(4, 5)
    shots = 20_000
    assert estimate_cost(load(source), shots) > CALL_BUDGET_US / 3
    return [CircuitTask(f"x{i}", source, shots=shots) for i in range(n)]


def test_an_expensive_job_is_cut_into_several_calls_in_order(run_calls: list[int]) -> None:
    tasks = expensive(7)
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert len(run_calls) > 1 and sum(run_calls) == 7
    assert counts_of(outcomes) == [{"0101": 20_000}] * 7


def test_a_huge_job_runs_window_by_window_in_order(
    run_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_aer, "WINDOW", 4)
    shots = [10, 20] * 5
    tasks = [CircuitTask(f"c{i}", basis_state(4, i), shots=n) for i, n in enumerate(shots)]
    outcomes = AerExecutor().run(tasks, threading.Event())
    assert run_calls == [4, 1, 4, 1]  # shots 10: windows of 4 and 1; then shots 20 alike
    assert counts_of(outcomes) == [{format(i, "04b"): n} for i, n in enumerate(shots)]


def test_cancellation_is_noticed_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled = threading.Event()
    calls: list[int] = []
    real_run = AerSimulator.run

    def cancel_after_run(self: Any, circuits: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(circuits))
        job = real_run(self, circuits, *args, **kwargs)
        cancelled.set()  # the job is cancelled while this call runs
        return job

    monkeypatch.setattr(AerSimulator, "run", cancel_after_run)
    with pytest.raises(ExecutionAborted):
        AerExecutor().run(expensive(7), cancelled)
    assert len(calls) == 1 and calls[0] < 7


def test_a_seed_makes_a_job_reproducible() -> None:
    rng = random.Random(3)
    sources = [rotations(rng, 3) for _ in range(5)]
    tasks = [CircuitTask(f"r{i}", s, shots=500) for i, s in enumerate(sources)]

    def run(seed: int) -> list[dict[str, int]]:
        return counts_of(AerExecutor(seed=seed).run(tasks, threading.Event()))

    first = run(42)
    assert run(42) == first
    assert run(43) != first
    assert all(sum(c.values()) == 500 for c in first)


def test_sample_and_expectation_still_take_one_task(run_calls: list[int]) -> None:
    executor = AerExecutor(seed=2)
    counts = executor.sample(CircuitTask("one", basis_state(2, 1), shots=9))
    values = executor.expectation(CircuitTask("two", BELL, terms=("ZZ", "XI")))
    assert counts == Counts({"01": 9}, 2)
    assert values.values["ZZ"] == pytest.approx(1.0, abs=1e-12)
    assert values.values["XI"] == pytest.approx(0.0, abs=1e-12)
    assert run_calls == [1, 1]


async def test_shot_groups_through_the_scheduler(make_scheduler: Factory) -> None:
    server = await make_scheduler(executor="aer")
    circuits = {f"s{i}": basis_state(3, i) for i in range(6)}
    groups = [[0, 2, 300], [2, 3, 40], [3, 6, 300]]
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, circuits, shot_groups=groups)
        results = await completed_results(server, http, job_id)
    assert [r["label"] for r in results] == list(circuits)
    shots = [300, 300, 40, 300, 300, 300]
    assert [decode_result(r["results"]) for r in results] == [
        {format(i, "03b"): n} for i, n in enumerate(shots)
    ]


def test_counts_in_every_call_follow_the_exact_distribution(run_calls: list[int]) -> None:
    """Chi-square of each circuit's counts against its exact probabilities, over several calls.

    15 random circuits, each three times in one job: 45 circuits cut into several
    ``run`` calls (equal sources share one parsed circuit). Seeded, so deterministic;
    the bounds are those of independent multinomial samples (per circuit p < 2e-5,
    the sum of the 45 statistics within 5 standard deviations of its mean).
    """
    rng = random.Random(11)
    distinct = [rotations(rng, 3) for _ in range(15)]
    sources = distinct * 3
    shots = 4000
    tasks = [CircuitTask(f"r{i}", s, shots=shots) for i, s in enumerate(sources)]
    outcomes = counts_of(AerExecutor(seed=9).run(tasks, threading.Event()))
    assert len(run_calls) >= 3 and sum(run_calls) == len(tasks)
    exact = {s: Statevector(load(s)).probabilities_dict() for s in distinct}
    statistics = []
    for source, counts in zip(sources, outcomes, strict=True):
        assert sum(counts.values()) == shots and set(counts) <= set(exact[source])
        expected = {key: p * shots for key, p in exact[source].items() if p > 1e-12}
        statistics.append(sum((counts.get(k, 0) - e) ** 2 / e for k, e in expected.items()))
    assert max(statistics) < 35  # 7 degrees of freedom
    degrees = 7 * len(statistics)
    assert abs(sum(statistics) - degrees) < 5 * (2 * degrees) ** 0.5
    # The three copies of a circuit are independent samples, not one stream repeated.
    assert all(outcomes[i] != outcomes[i + 15] != outcomes[i + 30] for i in range(15))
