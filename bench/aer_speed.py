"""Throughput of the local scheduler's aer executor, before and after batching, side by side.

    python bench/aer_speed.py [--quick] [--before REV] [--out bench/results.md]

Needs the `local` extra (qiskit, qiskit-aer). The circuits are those of a
sampled VQE of H2 (4 qubits, STO-3G, 0.74 A, Jordan-Wigner): the Hartree-Fock
state, a UCCSD-style ansatz (the double excitation as 8 Pauli-string
exponentials, two singles; ~160 gates), measured in the 5 qubit-wise-commuting
bases of the 15-term Hamiltonian. In one process, for the "before" executor
(`asyncjob/local/_executors.py` at REV, loaded from git; default: the commit
before the batched executor) and the current one:

1. executor throughput: `AerExecutor.run` on one job of sampled circuits (5,000
   shots) and one of expectation-value circuits (the Hamiltonian's 15 terms), in
   circuits per second of wall time (aer runs threads of its own);
2. a sampled VQE of 521 circuits (13 iterations of 8 parameter sets x 5 bases,
   then one final sampling circuit: 14 jobs) submitted with `AsyncJobClient` to
   an in-process `LocalScheduler` on that executor: wall time, and the largest
   gap of a 5 ms ticker on the event loop the scheduler shares with the client.

Writes the section "aer" of `--out` (bench/results.md) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import itertools
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from common import BENCH_DIR, replace_section

from asyncjob import AsyncJobClient
from asyncjob.local import (
    AerExecutor,
    CircuitTask,
    Counts,
    Executor,
    Expectations,
    LocalScheduler,
)
from asyncjob.local._executors import Outcome

REPO = BENCH_DIR.parent
SHOTS = 5000

H2_TERMS: tuple[tuple[float, str], ...] = (  # coefficient, dense Pauli term (qubit 0 leftmost)
    (-0.09886397, "IIII"),
    (0.17119775, "ZIII"),
    (0.17119775, "IZII"),
    (-0.22278593, "IIZI"),
    (-0.22278593, "IIIZ"),
    (0.16862219, "ZZII"),
    (0.12054482, "ZIZI"),
    (0.16586702, "ZIIZ"),
    (0.16586702, "IZZI"),
    (0.12054482, "IZIZ"),
    (0.17434844, "IIZZ"),
    (-0.04532220, "XXYY"),
    (0.04532220, "XYYX"),
    (0.04532220, "YXXY"),
    (-0.04532220, "YYXX"),
)
BASES = ("ZZZZ", "XXYY", "XYYX", "YXXY", "YYXX")
"""Qubit-wise-commuting measurement bases covering every term of H2."""
DOUBLE = (("XXXY", 1), ("XXYX", 1), ("XYXX", -1), ("YXXX", -1))
DOUBLE += (("YYYX", -1), ("YYXY", -1), ("YXYY", 1), ("XYYY", 1))


# --------------------------------------------------------------------------- circuits


def _pauli_exponential(lines: list[str], term: str, angle: float) -> None:
    """exp(-i angle/2 P) for a dense Pauli term: basis change, cx ladder, rz, undo."""
    support = [i for i, p in enumerate(term) if p != "I"]
    into = {"X": "h q[{}];", "Y": f"rx({math.pi / 2!r}) q[{{}}];"}
    back = {"X": "h q[{}];", "Y": f"rx({-math.pi / 2!r}) q[{{}}];"}
    lines += [into[term[i]].format(i) for i in support if term[i] in into]
    ladder = [f"cx q[{a}],q[{b}];" for a, b in itertools.pairwise(support)]
    lines += [*ladder, f"rz({angle!r}) q[{support[-1]}];", *reversed(ladder)]
    lines += [back[term[i]].format(i) for i in support if term[i] in back]


def ansatz(params: Sequence[float]) -> list[str]:
    """The UCCSD-style H2 state for (single 1, single 2, double), unmeasured."""
    single1, single2, double = params
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[4];", "x q[0];", "x q[1];"]
    for term, sign in DOUBLE:
        _pauli_exponential(lines, term, sign * double / 4)
    _pauli_exponential(lines, "XZYI", single1)
    _pauli_exponential(lines, "YZXI", -single1)
    _pauli_exponential(lines, "IXZY", single2)
    _pauli_exponential(lines, "IYZX", -single2)
    return lines


def measured(params: Sequence[float], basis: str) -> str:
    """The ansatz measured on every qubit in `basis` (one Pauli letter per qubit)."""
    lines = [*ansatz(params), "creg c[4];"]
    for i, pauli in enumerate(basis):
        lines += {"X": [f"h q[{i}];"], "Y": [f"sdg q[{i}];", f"h q[{i}];"]}.get(pauli, [])
    lines += [f"measure q[{i}] -> c[{i}];" for i in range(4)]
    return "\n".join(lines) + "\n"


def energy(counts_by_basis: dict[str, dict[str, int]]) -> float:
    """The H2 energy estimated from one histogram per measurement basis."""
    total = 0.0
    for coefficient, term in H2_TERMS:
        support = [i for i, p in enumerate(term) if p != "I"]
        if not support:
            total += coefficient
            continue
        basis = next(b for b in BASES if all(b[i] == term[i] for i in support))
        counts = counts_by_basis[basis]
        signed = sum(
            n * (-1) ** sum(key[-1 - i] == "1" for i in support) for key, n in counts.items()
        )
        total += coefficient * signed / sum(counts.values())
    return total


def random_params(rng: random.Random) -> list[float]:
    return [rng.uniform(-0.3, 0.3) for _ in range(3)]


# --------------------------------------------------------------------------- executors


def load_before(rev: str) -> ModuleType:
    """`asyncjob/local/_executors.py` at `rev`, imported next to the current one."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:asyncjob/local/_executors.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="aer-before-")) / "_executors_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("asyncjob.local._executors_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def default_before() -> str:
    """The parent of the commit that introduced the batched executor (`AerBatcher`)."""
    log = subprocess.run(
        ["git", "-C", str(REPO), "log", "--format=%H", "-S", "AerBatcher", "--", "asyncjob"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{log[-1]}^" if log else "HEAD"


class Before(Executor):
    """The old aer executor behind the current `Executor` interface (for the scheduler)."""

    name = "aer"

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.inner = module.AerExecutor()

    def run(self, tasks: Sequence[CircuitTask], cancelled: threading.Event) -> list[Outcome]:
        old = [
            self.module.CircuitTask(t.label, t.source, shots=t.shots, terms=t.terms) for t in tasks
        ]
        outcomes: list[Outcome] = []
        for outcome in self.inner.run(old, cancelled):
            if hasattr(outcome, "counts"):
                outcomes.append(Counts(outcome.counts, outcome.n_bits))
            else:
                outcomes.append(Expectations(outcome.values))
        return outcomes

    def sample(self, task: CircuitTask) -> Counts:
        raise NotImplementedError

    def expectation(self, task: CircuitTask) -> Expectations:
        raise NotImplementedError


# --------------------------------------------------------------------------- 1. throughput


def throughput(executor: Any, task_type: Any, n: int, repeats: int, seed: int) -> list[float]:
    """Circuits per second of `executor.run` on fresh jobs of `n` sampled / expval circuits."""
    terms = tuple(term for _, term in H2_TERMS)
    sampled: list[float] = []
    expval: list[float] = []
    executor.run([task_type("warm", measured([0.1, 0.1, 0.1], "ZZZZ"), shots=SHOTS)], _never())
    for run in range(repeats):
        rng = random.Random(seed + run)
        job = [
            task_type(f"s{i}", measured(random_params(rng), BASES[i % 5]), shots=SHOTS)
            for i in range(n)
        ]
        start = time.perf_counter()
        executor.run(job, _never())
        sampled.append(n / (time.perf_counter() - start))
        job = [
            task_type(f"e{i}", "\n".join(ansatz(random_params(rng))) + "\n", terms=terms)
            for i in range(n)
        ]
        start = time.perf_counter()
        executor.run(job, _never())
        expval.append(n / (time.perf_counter() - start))
    return [statistics.median(sampled), statistics.median(expval)]


def _never() -> threading.Event:
    return threading.Event()


# --------------------------------------------------------------------------- 2. VQE


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last - 0.005)
        last = now


async def vqe(executor: Executor, seed: int) -> dict[str, float]:
    """A sampled VQE of 521 circuits through a local scheduler; wall time, loop gap, energy."""
    rng = random.Random(seed)
    population = [random_params(rng) for _ in range(8)]
    best: list[tuple[float, list[float]]] = []
    gaps: list[float] = []
    stop = asyncio.Event()
    circuits = 0
    async with LocalScheduler(executor=executor) as server:
        async with AsyncJobClient(server.base_url, server.token, shots=SHOTS) as client:
            ticker = asyncio.create_task(_ticker(gaps, stop))
            start = time.perf_counter()
            for iteration in range(13):
                batch = {
                    f"it{iteration}-p{k}-{basis}": measured(params, basis)
                    for k, params in enumerate(population)
                    for basis in BASES
                }
                handle = await client.submit_circuits(batch)
                await client.poll_job_status(handle, loop_until_complete=True)
                result = await client.get_job_results(handle)
                circuits += len(batch)
                counts = {r["label"]: r["results"] for r in result.results or ()}
                for k, params in enumerate(population):
                    by_basis = {b: counts[f"it{iteration}-p{k}-{b}"] for b in BASES}
                    best.append((energy(by_basis), params))
                best = sorted(best)[:2]
                sigma = 0.2 * 0.8**iteration
                population = [[x + rng.gauss(0, sigma) for x in best[k % 2][1]] for k in range(8)]
            final = {"final": measured(best[0][1], "ZZZZ")}
            handle = await client.submit_circuits(final)
            await client.poll_job_status(handle, loop_until_complete=True)
            await client.get_job_results(handle)
            circuits += 1
            wall = time.perf_counter() - start
            stop.set()
            await ticker
    assert circuits == 521
    return {"wall": wall, "max_gap": max(gaps), "energy": best[0][0]}


def exact_ground_energy() -> float:
    import numpy
    from qiskit.quantum_info import SparsePauliOp

    operator = SparsePauliOp.from_list([(term[::-1], c) for c, term in H2_TERMS])
    return float(numpy.linalg.eigvalsh(operator.to_matrix())[0])


# --------------------------------------------------------------------------- report


def report(data: dict[str, Any]) -> str:
    before, after = data["before"], data["after"]
    rows = [
        ("sampled, 5,000 shots", 0),
        ("expectation values, 15 terms", 1),
    ]
    lines = [
        "## The aer executor: batched qiskit-aer calls",
        "",
        f"Generated by `bench/aer_speed.py` on {data['date']}; {data['machine']}; "
        f"load average {data['load']} at start, {data['load_end']} at the end; "
        f"qiskit {data['qiskit']}, qiskit-aer {data['aer']}.",
        "",
        "Circuits of a sampled H2 VQE (4 qubits, UCCSD-style ansatz of ~160 gates, the 5 "
        "qubit-wise-commuting measurement bases of the 15-term Hamiltonian). Before: the aer "
        f"executor at `{data['before_rev']}` (one circuit per aer call, each transpiled on a "
        "fresh simulator); after: this tree (batched calls). Medians of "
        f"{data['repeats']} runs, wall clock.",
        "",
        "| one job of N circuits, `AerExecutor.run` | before | after | after/before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, k in rows:
        b, a = before["rates"][k], after["rates"][k]
        lines.append(
            f"| {name} (N = {data['n_before']} / {data['n_after']}) "
            f"| {b:,.0f} circuits/s | {a:,.0f} circuits/s | {a / b:.1f}x |"
        )
    lines += [
        "",
        "A sampled VQE of 521 circuits (13 iterations of 8 parameter sets x 5 bases, then one "
        "final circuit: 14 jobs, 5,000 shots) submitted with `AsyncJobClient` to an in-process "
        "`LocalScheduler` on that executor; the loop gap is the largest delay of a 5 ms ticker "
        "on the event loop the scheduler and the client share.",
        "",
        "| sampled H2 VQE, 521 circuits | before | after |",
        "| --- | ---: | ---: |",
    ]
    bv, av = before.get("vqe"), after["vqe"]

    def cell(v: dict[str, float] | None, key: str, fmt: str, scale: float = 1.0) -> str:
        return "not run" if v is None else format(v[key] * scale, fmt)

    lines += [
        f"| wall time (s) | {cell(bv, 'wall', '.1f')} | {cell(av, 'wall', '.1f')} |",
        f"| largest event-loop gap (ms) | {cell(bv, 'max_gap', '.0f', 1e3)} "
        f"| {cell(av, 'max_gap', '.0f', 1e3)} |",
        f"| best sampled energy (Ha; exact ground state {data['exact']:.4f}) "
        f"| {cell(bv, 'energy', '.4f')} | {cell(av, 'energy', '.4f')} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the 'before' executor")
    parser.add_argument("--quick", action="store_true", help="fewer circuits; no 'before' VQE")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.md")
    args = parser.parse_args()
    import qiskit
    import qiskit_aer

    rev = args.before or default_before()
    short = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    repeats = 3
    n_before, n_after = (10, 100) if args.quick else (40, 300)
    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "qiskit": qiskit.__version__,
        "aer": qiskit_aer.__version__,
        "before_rev": short,
        "repeats": repeats,
        "n_before": n_before,
        "n_after": n_after,
        "exact": exact_ground_energy(),
    }
    module = load_before(rev)
    print(f"throughput, before ({short}):", flush=True)
    old = module.AerExecutor()
    data["before"] = {"rates": throughput(old, module.CircuitTask, n_before, repeats, 1)}
    print("throughput, after:", flush=True)
    data["after"] = {"rates": throughput(AerExecutor(), CircuitTask, n_after, repeats, 1)}
    print("VQE, after:", flush=True)
    data["after"]["vqe"] = asyncio.run(vqe(AerExecutor(), seed=5))
    if not args.quick:
        print("VQE, before:", flush=True)
        data["before"]["vqe"] = asyncio.run(vqe(Before(module), seed=5))
    data["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(data)
    replace_section(args.out, "aer", text)
    print(text)


if __name__ == "__main__":
    main()
