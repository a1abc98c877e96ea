"""A divi VQE on `DiviBackend` until Ctrl+C; `test_failures.py` sends the SIGINT.

Usage: vqe_interrupted.py BASE_URL TOKEN. Prints how the run ended: exit code 3
and "cancelled: <class of the cause>" for divi's `ExecutionCancelledError`.
"""

import sys
from pathlib import Path

from divi.exceptions import ExecutionCancelledError
from divi.qprog import VQE, HartreeFockAnsatz, ScipyMethod, ScipyOptimizer
from divi.qprog.problems import HamiltonianProblem

sys.path.insert(0, str(Path(__file__).parents[1]))
from _h2 import H2

from asyncjob.divi import DiviBackend

base_url, token = sys.argv[1:3]
backend = DiviBackend(base_url, token, journal=False, polling_interval=0.02)
vqe = VQE(
    HamiltonianProblem(H2, n_electrons=2),
    ansatz=HartreeFockAnsatz(),
    backend=backend,
    optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
    max_iterations=3,
)
try:
    vqe.run()
except ExecutionCancelledError as exc:
    print(f"cancelled: {type(exc.__cause__).__name__}", flush=True)
    sys.exit(3)
print("finished", flush=True)
