"""What the local scheduler runs circuits with.

- `SamplerExecutor` (``"sampler"``, no extra dependency) does **not** simulate
  anything: it makes up plausible, *deterministic* counts (a few dominant
  outcomes plus a small tail, summing exactly to the shots) and expectation
  values in [-1, 1], seeded from the circuit text, label and shots. It is for
  exercising clients, not for physics.
- `AerExecutor` (``"aer"``, needs ``pip install 'asyncjob-quantum[local]'``) really
  simulates the circuits with qiskit-aer: counts by sampling, expectation values
  exactly from the statevector, a job's circuits in a few batched aer calls.

Executors are synchronous and run in a worker thread; they check the
`cancelled` event between circuits (the aer executor between its calls) so a
cancelled job stops early.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import random
import threading
from collections.abc import Sequence
from typing import ClassVar

import attrs

from .._errors import AsyncJobError
from .._qasm import circuit_clbits, circuit_qubits
from ._aer import AerBatcher, is_qasm3

__all__ = [
    "AerExecutor",
    "CircuitTask",
    "Counts",
    "ExecutionAborted",
    "Executor",
    "ExecutorUnavailableError",
    "Expectations",
    "Outcome",
    "SamplerExecutor",
    "make_executor",
]


@attrs.frozen
class CircuitTask:
    """One circuit of a job, as handed to an executor."""

    label: str
    source: str
    """OpenQASM 2 or 3 source text."""
    shots: int | None = None
    """Shots for EXECUTE jobs; None for EXPECTATION jobs."""
    terms: tuple[str, ...] | None = None
    """Dense Pauli terms (qubit 0 leftmost) for EXPECTATION jobs; None for EXECUTE jobs."""


@attrs.frozen
class Counts:
    """A measured histogram: bitstring (classical bit 0 rightmost) -> count."""

    counts: dict[str, int]
    n_bits: int


@attrs.frozen
class Expectations:
    """Expectation values keyed by the dense Pauli term they were asked for."""

    values: dict[str, float]


Outcome = Counts | Expectations


class ExecutionAborted(Exception):
    """Raised by an executor that noticed its job was cancelled."""


class ExecutorUnavailableError(AsyncJobError, ImportError):
    """The executor's optional dependency is not installed."""


class Executor(abc.ABC):
    """Runs the circuits of one job; subclass and implement `sample` and `expectation`."""

    name: ClassVar[str] = "custom"

    def run(self, tasks: Sequence[CircuitTask], cancelled: threading.Event) -> list[Outcome]:
        """Run every task in order; raise `ExecutionAborted` once `cancelled` is set."""
        outcomes: list[Outcome] = []
        for task in tasks:
            if cancelled.is_set():
                raise ExecutionAborted("job cancelled")
            outcomes.append(self.sample(task) if task.terms is None else self.expectation(task))
        return outcomes

    @abc.abstractmethod
    def sample(self, task: CircuitTask) -> Counts:
        """Counts of `task.shots` measurements of `task.source`."""

    @abc.abstractmethod
    def expectation(self, task: CircuitTask) -> Expectations:
        """Expectation values of each of `task.terms` on the state `task.source` prepares."""


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "big")


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` into integer shares proportional to `weights`, summing exactly."""
    scale = sum(weights)
    shares = [int(total * w / scale) for w in weights]
    shares[0] += total - sum(shares)
    return shares


class SamplerExecutor(Executor):
    """Synthetic, deterministic results without any simulator (see the module doc)."""

    name: ClassVar[str] = "sampler"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def sample(self, task: CircuitTask) -> Counts:
        """A few dominant outcomes and a small tail over the measured bits."""
        shots = task.shots or 1
        n_bits = circuit_clbits(task.source) or circuit_qubits(task.source) or 1
        rng = random.Random(_seed("counts", self.seed, task.label, shots, task.source))
        space = 1 << n_bits
        n_dominant = rng.randint(1, min(4, space))
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < n_dominant:
            index = rng.getrandbits(n_bits)
            if index not in seen:
                seen.add(index)
                chosen.append(index)
        n_tail = rng.randint(0, min(12, space - n_dominant))
        tail_shots = int(shots * rng.uniform(0.02, 0.15)) if n_tail else 0
        n_tail = min(n_tail, tail_shots)
        tail: list[int] = []
        while len(tail) < n_tail:
            index = rng.getrandbits(n_bits)
            if index not in seen:
                seen.add(index)
                tail.append(index)
        if not tail:
            tail_shots = 0
        weights = [rng.uniform(1.0, 4.0) for _ in chosen]
        allocation = _split(shots - tail_shots, weights)
        if tail:
            allocation += _split(tail_shots, [rng.uniform(0.5, 1.5) for _ in tail])
        counts: dict[str, int] = {}
        for index, count in zip([*chosen, *tail], allocation, strict=True):
            if count > 0:
                counts[format(index, f"0{n_bits}b")] = count
        return Counts(counts, n_bits)

    def expectation(self, task: CircuitTask) -> Expectations:
        """A deterministic value in [-1, 1] per term (1.0 for the identity)."""
        values: dict[str, float] = {}
        for term in task.terms or ():
            if not term.strip("I"):
                values[term] = 1.0
                continue
            rng = random.Random(_seed("expval", self.seed, task.label, term, task.source))
            values[term] = round(rng.uniform(-1.0, 1.0), 6)
        return Expectations(values)


class AerExecutor(Executor):
    """Simulates circuits with qiskit-aer (optional extra ``asyncjob-quantum[local]``).

    OpenQASM 2 is loaded with ``qiskit.qasm2.loads`` (legacy gate set, like
    ``QuantumCircuit.from_qasm_str``); OpenQASM 3 with ``qiskit.qasm3.loads``,
    which needs ``qiskit-qasm3-import``. Counts keys have the register spaces
    removed; a circuit without classical bits is measured on all qubits.
    Expectation values are exact (statevector), one per requested term.
    A job's circuits run in a few batched aer calls (see `asyncjob.local._aer`);
    with a `seed`, the same job always gives the same counts.
    """

    name: ClassVar[str] = "aer"

    def __init__(self, *, seed: int | None = None, method: str = "automatic") -> None:
        if any(importlib.util.find_spec(m) is None for m in ("qiskit", "qiskit_aer")):
            raise ExecutorUnavailableError(
                "the 'aer' executor needs qiskit and qiskit-aer: "
                "pip install 'asyncjob-quantum[local]'"
            )
        self.seed = seed
        self.method = method
        self._batcher = AerBatcher(seed=seed, method=method)

    @staticmethod
    def _check_qasm3(tasks: Sequence[CircuitTask]) -> None:
        if importlib.util.find_spec("qiskit_qasm3_import") is None and any(
            is_qasm3(task.source) for task in tasks
        ):
            raise ExecutorUnavailableError(
                "OpenQASM 3 circuits need qiskit-qasm3-import with the 'aer' executor: "
                "pip install qiskit-qasm3-import (or submit OpenQASM 2)"
            )

    def run(self, tasks: Sequence[CircuitTask], cancelled: threading.Event) -> list[Outcome]:
        """Run every task in batched aer calls; `ExecutionAborted` once `cancelled` is set."""
        self._check_qasm3(tasks)
        outcomes: list[Outcome | None] = [None] * len(tasks)
        sampled = [i for i, task in enumerate(tasks) if task.terms is None]
        measured = [tasks[i] for i in sampled]
        for position, counts, n_bits in self._batcher.sample(
            [task.label for task in measured],
            [task.source for task in measured],
            [task.shots or 1 for task in measured],
            cancelled,
        ):
            outcomes[sampled[position]] = Counts(counts, n_bits)
        estimated = [i for i, task in enumerate(tasks) if task.terms is not None]
        observed = [tasks[i] for i in estimated]
        for position, values in self._batcher.expectation(
            [task.label for task in observed],
            [task.source for task in observed],
            [task.terms or () for task in observed],
            cancelled,
        ):
            outcomes[estimated[position]] = Expectations(values)
        done = [outcome for outcome in outcomes if outcome is not None]
        if len(done) < len(tasks):
            raise ExecutionAborted("job cancelled")
        return done

    def sample(self, task: CircuitTask) -> Counts:
        """Sample the circuit `task.shots` times."""
        outcome = self.run([task], threading.Event())[0]
        assert isinstance(outcome, Counts)
        return outcome

    def expectation(self, task: CircuitTask) -> Expectations:
        """Exact expectation value of each term (qubit 0 is the leftmost Pauli)."""
        outcome = self.run([task], threading.Event())[0]
        assert isinstance(outcome, Expectations)
        return outcome


def make_executor(spec: str | Executor) -> Executor:
    """An executor from its name (``"sampler"`` or ``"aer"``) or an instance."""
    if isinstance(spec, Executor):
        return spec
    if spec == "sampler":
        return SamplerExecutor()
    if spec == "aer":
        return AerExecutor()
    raise ValueError(f"unknown executor {spec!r}; use 'sampler', 'aer' or an Executor instance")
