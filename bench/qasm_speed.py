"""Print how many circuits per second `check_circuit` validates.

Random 10-qubit, ~100-gate OpenQASM 2 and 3 circuits with random angles, through
the fast path, the full openqasm3 parser (`full=True`) for comparison, and
`check_batch` with the full parser (in the calling thread; wall clock). Every
check sees a distinct source, so the verdict cache never helps.

    python bench/qasm_speed.py [--circuits N] [--full-circuits M]
"""

from __future__ import annotations

import argparse
import random
import time

from asyncjob._qasm import check_batch, check_circuit

ONE_QUBIT = ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx"]
ROTATIONS = ["rx", "ry", "rz"]
TWO_QUBIT = ["cx", "cz", "swap"]


def random_circuit(
    rng: random.Random, version: int, n_qubits: int = 10, n_gates: int = 100
) -> str:
    """A random circuit in OpenQASM `version` (2 or 3)."""
    if version == 2:
        lines = [
            "OPENQASM 2.0;",
            'include "qelib1.inc";',
            f"qreg q[{n_qubits}];",
            f"creg c[{n_qubits}];",
        ]
    else:
        lines = [
            "OPENQASM 3.0;",
            'include "stdgates.inc";',
            f"qubit[{n_qubits}] q;",
            f"bit[{n_qubits}] c;",
        ]
    for _ in range(n_gates):
        kind = rng.random()
        if kind < 0.4:
            lines.append(f"{rng.choice(ONE_QUBIT)} q[{rng.randrange(n_qubits)}];")
        elif kind < 0.7:
            angle = rng.uniform(-6.3, 6.3)
            lines.append(f"{rng.choice(ROTATIONS)}({angle!r}) q[{rng.randrange(n_qubits)}];")
        else:
            a, b = rng.sample(range(n_qubits), 2)
            lines.append(f"{rng.choice(TWO_QUBIT)} q[{a}], q[{b}];")
    for i in range(n_qubits):
        lines.append(f"measure q[{i}] -> c[{i}];" if version == 2 else f"c[{i}] = measure q[{i}];")
    return "\n".join(lines) + "\n"


def rate(sources: list[str], *, full: bool) -> float:
    """Circuits per second of this process's CPU time (one core, immune to other load)."""
    start = time.process_time()
    for i, source in enumerate(sources):
        check_circuit(f"c{i}", source, full=full)
    return len(sources) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", type=int, default=5000)
    parser.add_argument("--full-circuits", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1234)
    for version in (2, 3):
        fast = [random_circuit(rng, version) for _ in range(args.circuits)]
        slow = [random_circuit(rng, version) for _ in range(args.full_circuits)]
        batch = [random_circuit(rng, version) for _ in range(args.full_circuits * 2)]
        print(f"OpenQASM {version}: fast path {rate(fast, full=False):8.0f} circuits/s")
        print(f"OpenQASM {version}: full=True  {rate(slow, full=True):8.0f} circuits/s")
        start = time.perf_counter()
        check_batch([(f"b{i}", s) for i, s in enumerate(batch)], full=True)
        elapsed = time.perf_counter() - start
        print(f"OpenQASM {version}: check_batch(full=True) {len(batch) / elapsed:8.0f} circuits/s")


if __name__ == "__main__":
    main()
