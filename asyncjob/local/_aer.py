"""How the ``aer`` executor runs a job: in a few batched qiskit-aer calls.

Each distinct source is parsed once, a circuit is transpiled only when it uses
an instruction the simulator does not know (all such circuits in one
`transpile` call), and circuits go to ``AerSimulator.run`` in batches, one shot
count per call. qiskit-aer holds the GIL while it simulates, so a batch is cut
where its *estimated* simulation time passes `CALL_BUDGET_US`: the scheduler's
event loop is never stalled for a whole job, and a cancelled job stops between
calls. The estimate depends only on the circuits and shots, so a job is always
cut the same way (and, with a seed, always gives the same counts). A huge job
is parsed and run `WINDOW` circuits at a time, so its memory stays bounded.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import attrs

__all__ = [
    "CALL_BUDGET_US",
    "WINDOW",
    "AerBatcher",
    "Prepared",
    "estimate_cost",
    "is_qasm3",
    "load",
    "plan_calls",
]

CALL_BUDGET_US = 20_000.0
"""Estimated simulation time (microseconds) of one `AerSimulator.run` call."""
WINDOW = 512
"""Circuits parsed and held at once: a huge job is prepared and run window by window."""

# Rough single-core costs in microseconds (qiskit-aer 0.18, statevector): per
# circuit, per operation, per operation and amplitude, and per shot when aer
# samples every shot from one final state (all measurements at the end).
_PER_CIRCUIT = 200.0
_PER_OP = 1.0
_PER_OP_AMPLITUDE = 0.003
_PER_SAMPLED_SHOT = 0.5
_AER_DEFAULT_SHOTS = 1024
_PARALLEL_QUBITS = 14
"""aer's default ``statevector_parallel_threshold``: smaller states use one thread."""

_VERSION = re.compile(r"^\s*OPENQASM\s+(\d+)", re.MULTILINE)
_CONTROL_FLOW = frozenset({"if_else", "while_loop", "for_loop", "switch_case", "box"})


def is_qasm3(source: str) -> bool:
    """True for OpenQASM 3 source text."""
    match = _VERSION.search(source)
    return bool(match and match.group(1) == "3")


def load(source: str) -> Any:
    """A qiskit circuit from OpenQASM 2 (legacy gate set, like ``from_qasm_str``) or 3."""
    if is_qasm3(source):
        import qiskit.qasm3

        return qiskit.qasm3.loads(source)
    import qiskit.qasm2

    return qiskit.qasm2.loads(source, custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)


def _all_measurements_final(circuit: Any, n_measures: int) -> bool:
    """True when no qubit is acted on after it is measured (aer then samples all shots at once)."""
    trailing = 0
    for instruction in reversed(circuit.data):
        name = instruction.operation.name
        if name == "measure":
            trailing += 1
        elif name != "barrier":
            break
    if trailing == n_measures:
        return True
    measured: set[Any] = set()
    for instruction in circuit.data:
        name = instruction.operation.name
        if name == "measure":
            measured.update(instruction.qubits)
        elif name in _CONTROL_FLOW or (
            name != "barrier" and not measured.isdisjoint(instruction.qubits)
        ):
            return False
    return True


def estimate_cost(circuit: Any, shots: int | None) -> float:
    """Estimated microseconds aer takes to run `circuit` `shots` times (None: aer's default)."""
    counts: dict[str, int] = dict(circuit.count_ops())
    n_ops = sum(counts.values()) - counts.get("barrier", 0)
    n_measures = counts.get("measure", 0)
    per_op = _PER_OP + _PER_OP_AMPLITUDE * (1 << int(circuit.num_qubits))
    state = n_ops * per_op
    n_shots = _AER_DEFAULT_SHOTS if shots is None else shots
    if not _all_measurements_final(circuit, n_measures):
        return _PER_CIRCUIT + n_shots * state
    return _PER_CIRCUIT + state + (n_shots * _PER_SAMPLED_SHOT if n_measures else 0.0)


@attrs.frozen
class Prepared:
    """A task's circuit ready to run: position in the job, shots (None: aer's default), cost."""

    index: int
    circuit: Any
    shots: int | None
    cost: float


def plan_calls(items: Sequence[Prepared], budget: float = CALL_BUDGET_US) -> list[list[Prepared]]:
    """`items` grouped by shots (in order), each group cut where its cost passes `budget`."""
    calls: list[list[Prepared]] = []
    by_shots: dict[int | None, list[Prepared]] = {}
    for item in items:
        by_shots.setdefault(item.shots, []).append(item)
    for group in by_shots.values():
        current: list[Prepared] = []
        spent = 0.0
        for item in group:
            if current and spent + item.cost > budget:
                calls.append(current)
                current, spent = [], 0.0
            current.append(item)
            spent += item.cost
        calls.append(current)
    return calls


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


def _bitstrings(hex_counts: dict[str, int], n_bits: int) -> dict[str, int]:
    """aer's ``{"0x5": n}`` as ``{"101": n}`` (classical bit 0 rightmost, registers joined)."""
    if n_bits == 0:
        return {"": sum(int(count) for count in hex_counts.values())}
    spec = f"0{n_bits}b"
    return {format(int(key, 16), spec): int(count) for key, count in hex_counts.items()}


@attrs.frozen
class _Simulator:
    simulator: Any
    target: Any
    native: frozenset[str]
    """Instruction names the simulator runs without transpiling."""


class AerBatcher:
    """Runs lists of circuits on one `AerSimulator` per method, shared by every job."""

    def __init__(self, *, seed: int | None, method: str) -> None:
        self.seed = seed
        self.method = method
        self._lock = threading.Lock()
        self._simulators: dict[str, _Simulator] = {}

    def _simulator(self, method: str) -> _Simulator:
        with self._lock:
            if method not in self._simulators:
                from qiskit_aer import AerSimulator

                simulator = AerSimulator(method=method)
                target = simulator.target
                native = frozenset(target.operation_names) | {"barrier"}
                self._simulators[method] = _Simulator(simulator, target, native)
            return self._simulators[method]

    @staticmethod
    def _parse(labels: Sequence[str], sources: Sequence[str]) -> list[Any]:
        """Each distinct source parsed once; equal sources share one circuit (copy to edit it)."""
        parsed: dict[str, Any] = {}
        circuits: list[Any] = []
        for label, source in zip(labels, sources, strict=True):
            if source not in parsed:
                try:
                    parsed[source] = load(source)
                except Exception as exc:
                    raise ValueError(f"circuit {label!r}: qiskit cannot load it: {exc}") from exc
            circuits.append(parsed[source])
        return circuits

    @staticmethod
    def _transpile(circuits: list[Any], sim: _Simulator) -> list[Any]:
        """`circuits`, those with instructions the simulator lacks unrolled in one call."""
        todo = [i for i, c in enumerate(circuits) if not sim.native.issuperset(c.count_ops())]
        if todo:
            from qiskit import transpile

            done = transpile(
                [circuits[i] for i in todo],
                target=sim.target,
                optimization_level=0,
                num_processes=1,
            )
            for i, circuit in zip(todo, done, strict=True):
                circuits[i] = circuit
        return circuits

    def _run(
        self,
        sim: _Simulator,
        items: Sequence[Prepared],
        labels: Sequence[str],
        cancelled: threading.Event,
    ) -> Iterator[tuple[Prepared, Any]]:
        """Each item with its aer experiment result, call by call; stops early once cancelled."""
        for call in plan_calls(items):
            if cancelled.is_set():
                return
            options: dict[str, Any] = {}
            if all(item.circuit.num_qubits < _PARALLEL_QUBITS for item in call):
                # aer would not split such small states between threads anyway, and its
                # OpenMP threads waiting at barriers cost far more than they save when
                # the cores are busy (the scheduler's event loop needs one too).
                options["max_parallel_threads"] = 1
            if call[0].shots is not None:
                options["shots"] = call[0].shots
            if self.seed is not None:
                names = [labels[item.index] for item in call]
                options["seed_simulator"] = _seed("aer", self.seed, call[0].shots, *names)
            result = sim.simulator.run([item.circuit for item in call], **options).result()
            for item, experiment in zip(call, result.results, strict=True):
                if not experiment.success:
                    raise RuntimeError(
                        f"circuit {labels[item.index]!r} failed in qiskit-aer: {experiment.status}"
                    )
                yield item, experiment

    def sample(
        self,
        labels: Sequence[str],
        sources: Sequence[str],
        shots: Sequence[int],
        cancelled: threading.Event,
    ) -> Iterator[tuple[int, dict[str, int], int]]:
        """(position, counts, bits) per circuit; one without clbits is measured on all qubits."""
        sim = self._simulator(self.method)
        for window in _windows(shots):
            circuits = self._parse([labels[i] for i in window], [sources[i] for i in window])
            for k, circuit in enumerate(circuits):
                if circuit.num_clbits == 0:
                    circuits[k] = circuit.copy()
                    circuits[k].measure_all()
            circuits = self._transpile(circuits, sim)
            items = [
                Prepared(i, circuit, shots[i], estimate_cost(circuit, shots[i]))
                for i, circuit in zip(window, circuits, strict=True)
            ]
            for item, experiment in self._run(sim, items, labels, cancelled):
                n_bits = int(item.circuit.num_clbits)
                hex_counts = getattr(experiment.data, "counts", None) or {"0x0": item.shots}
                yield item.index, _bitstrings(hex_counts, n_bits), n_bits

    def expectation(
        self,
        labels: Sequence[str],
        sources: Sequence[str],
        terms: Sequence[Sequence[str]],
        cancelled: threading.Event,
    ) -> Iterator[tuple[int, dict[str, float]]]:
        """(position, term -> exact expectation value) of each circuit, on aer's statevector."""
        sim = self._simulator("statevector")
        saves: dict[tuple[str, int], Any] = {}
        for window in _windows([None] * len(labels)):
            circuits = self._parse([labels[i] for i in window], [sources[i] for i in window])
            wanted = {i: list(dict.fromkeys(terms[i])) for i in window}
            circuits = [c.copy() for c in circuits]
            for i, circuit in zip(window, circuits, strict=True):
                circuit.remove_final_measurements(inplace=True)
                for term in wanted[i]:
                    if len(term) > circuit.num_qubits:
                        raise ValueError(
                            f"circuit {labels[i]!r}: observable {term!r} is wider than its "
                            f"{circuit.num_qubits} qubits"
                        )
            circuits = self._transpile(circuits, sim)
            items: list[Prepared] = []
            for i, circuit in zip(window, circuits, strict=True):
                for term in wanted[i]:
                    circuit.append(
                        _save(saves, term, circuit.num_qubits), circuit.qubits, copy=False
                    )
                items.append(Prepared(i, circuit, None, estimate_cost(circuit, None)))
            for item, experiment in self._run(sim, items, labels, cancelled):
                data = experiment.data.to_dict()
                yield item.index, {term: float(data[term].real) for term in wanted[item.index]}


def _save(saves: dict[tuple[str, int], Any], term: str, n_qubits: int) -> Any:
    """The (shared, never mutated) instruction saving `term`'s expectation value on n qubits."""
    key = (term, n_qubits)
    if key not in saves:
        from qiskit.quantum_info import Pauli
        from qiskit_aer.library import SaveExpectationValue

        # qiskit orders Pauli labels with qubit 0 rightmost; terms have it leftmost.
        pauli = Pauli(term.ljust(n_qubits, "I")[::-1])
        saves[key] = SaveExpectationValue(pauli, label=term)
    return saves[key]


def _windows(keys: Sequence[Hashable]) -> Iterator[list[int]]:
    """Positions grouped by key (in order of first appearance), in slices of `WINDOW`."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for group in groups.values():
        for start in range(0, len(group), WINDOW):
            yield group[start : start + WINDOW]
