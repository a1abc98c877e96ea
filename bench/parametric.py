"""Parametric vs bound payloads: bytes, requests and time of one VQE iteration via `DiviBackend`.

    python bench/parametric.py [--param-sets 1,100] [--repeats 3]

A divi VQE (H2, 4 qubits, sampling mode: 5 measurement groups) evaluates its
cost at P parameter sets at once, as a population optimizer's iteration does:
5 x P circuits. Each mode runs the same evaluation against a fresh local scheduler
(`bench/server.py`: sampler executor, 50 ms added latency, in a subprocess):
`parametric=True` (templates plus rows), `False` (divi binds every circuit) and
`"auto"`. Bytes and requests are what the scheduler received
(`stats.bytes_received`, `stats.requests_total`) per evaluation, the
`DiviBackend` constructor and a warm-up evaluation included once in the
average.
Prints a Markdown table. Needs qoro-divi (`pip install -e ".[divi]"`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from common import H2_TERMS, LATENCY, TOKEN, Server
from divi.qprog import VQE, HartreeFockAnsatz, ScipyMethod, ScipyOptimizer
from divi.qprog.problems import HamiltonianProblem
from qiskit.quantum_info import SparsePauliOp

from asyncjob.divi import DiviBackend

H2 = SparsePauliOp.from_sparse_list(H2_TERMS, num_qubits=4)


def measure(mode: Any, param_sets: int, repeats: int) -> dict[str, float]:
    times: list[float] = []
    with Server(sys.executable, latency=LATENCY) as server:
        backend = DiviBackend(
            server.base_url,
            TOKEN,
            shots=1000,
            supports_expval=False,
            parametric=mode,
            journal=False,
            polling_interval=0.5,
        )
        with backend:
            vqe = VQE(
                HamiltonianProblem(H2, n_electrons=2),
                ansatz=HartreeFockAnsatz(),
                backend=backend,
                optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
                seed=1,
            )
            rng = np.random.default_rng(7)
            for _ in range(repeats + 1):  # the first one warms up
                params = rng.uniform(-np.pi, np.pi, size=(param_sets, vqe.n_params))
                start = time.perf_counter()
                vqe.evaluate(params, vqe.cost_preprocessor())
                times.append(time.perf_counter() - start)
    report = server.report
    return {
        "time": statistics.median(times[1:]),
        "bytes": report["bytes_received"] / (repeats + 1),
        "requests": report["requests_total"] / (repeats + 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--param-sets", default="1,100")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| parameter sets | circuits | mode | time (median) | bytes sent | requests |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for n in (int(x) for x in args.param_sets.split(",")):
        for mode in (False, True, "auto"):
            m = measure(mode, n, args.repeats)
            print(
                f"| {n} | {5 * n} | parametric={mode!r} | {m['time']:.3f} s "
                f"| {m['bytes']:,.0f} | {m['requests']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
