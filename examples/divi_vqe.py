"""qoro-divi programs on asyncjob: a VQE for H2 and a QAOA MaxCut, `backend=` the one change.

Usage: python examples/divi_vqe.py [BASE_URL TOKEN]
Needs `pip install "asyncjob-quantum[divi,local]"`. The URL and token come from the
command line, else from ASYNCJOB_BASE_URL and ASYNCJOB_TOKEN; with neither, the
script starts a local scheduler of its own that simulates with qiskit-aer.
"""

from __future__ import annotations

import contextlib
import os
import sys

import networkx as nx
from divi.qprog import QAOA, VQE, HartreeFockAnsatz, ScipyMethod, ScipyOptimizer
from divi.qprog.problems import HamiltonianProblem, MaxCutProblem
from qiskit.quantum_info import SparsePauliOp

from asyncjob.divi import DiviBackend

# H2 at 0.74 Å (STO-3G, Jordan-Wigner): a constant and 14 Pauli terms.
H2 = SparsePauliOp.from_sparse_list(
    [
        ("", [], -0.04207897647782276),
        ("Z", [0], 0.17771287465139946),
        ("Z", [1], 0.1777128746513994),
        ("Z", [2], -0.24274280513140462),
        ("Z", [3], -0.24274280513140462),
        ("ZZ", [0, 1], 0.17059738328801052),
        ("ZZ", [0, 2], 0.12293305056183798),
        ("ZZ", [0, 3], 0.16768319457718958),
        ("ZZ", [1, 2], 0.16768319457718958),
        ("ZZ", [1, 3], 0.12293305056183798),
        ("ZZ", [2, 3], 0.17627640804319591),
        ("YYXX", [0, 1, 2, 3], -0.04475014401535161),
        ("XXYY", [0, 1, 2, 3], -0.04475014401535161),
        ("YXXY", [0, 1, 2, 3], 0.04475014401535161),
        ("XYYX", [0, 1, 2, 3], 0.04475014401535161),
    ],
    num_qubits=4,
)


def connect(stack: contextlib.ExitStack) -> tuple[str, str]:
    """The scheduler to use: argv, the environment, or a local aer one started here."""
    if len(sys.argv) == 3:
        return sys.argv[1], sys.argv[2]
    if os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
        return os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
    from asyncjob.local import LocalScheduler

    scheduler = stack.enter_context(LocalScheduler(executor="aer").run_in_thread())
    print(f"started a local scheduler at {scheduler.base_url}")
    return scheduler.base_url, scheduler.token


def main() -> None:
    with contextlib.ExitStack() as stack:
        base_url, token = connect(stack)
        backend = stack.enter_context(
            DiviBackend(base_url, token, shots=2000, polling_interval=0.05)
        )

        vqe = VQE(
            HamiltonianProblem(H2, n_electrons=2),
            ansatz=HartreeFockAnsatz(),
            optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
            max_iterations=10,
            backend=backend,  # the one line that differs from a divi tutorial
        )
        vqe.run()
        print(f"VQE: H2 ground-state energy {vqe.best_loss:.6f} Ha (exact: -1.136189 Ha)")
        print(f"  {vqe.total_circuit_count} circuits, {vqe.total_backend_jobs} backend jobs")

        qaoa = QAOA(
            MaxCutProblem(nx.cycle_graph(6)),
            n_layers=2,
            optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
            max_iterations=10,
            backend=backend,
            seed=1,
        )
        qaoa.run()
        print(f"QAOA: MaxCut of a 6-cycle (best cut: 6), expected cut {-qaoa.best_loss:.3f}")
        print(f"  most probable bitstring {qaoa.solution_bitstring}")
        print(f"  {qaoa.total_circuit_count} circuits, {qaoa.total_run_time:.2f} s of execution")


if __name__ == "__main__":
    main()
