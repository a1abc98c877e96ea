"""Print how fast `check_batch` validates circuits that need the full openqasm3 parser.

400 distinct OpenQASM 3 circuits that define a gate (so the fast paths defer to
the reference parser), validated as one batch, wall clock (start-up included).
Run it once per revision to compare; other load on the machine shows in the figure.

    python bench/qasm_batch.py [--circuits N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import time

from asyncjob._qasm import check_batch


def gate_circuit(rng: random.Random, n_qubits: int = 6, n_gates: int = 40) -> str:
    """A random OpenQASM 3 circuit with a gate definition (the full-parser path)."""
    lines = [
        "OPENQASM 3.0;",
        'include "stdgates.inc";',
        "gate bellpair a, b { h a; cx a, b; }",
        f"qubit[{n_qubits}] q;",
        f"bit[{n_qubits}] c;",
    ]
    for _ in range(n_gates):
        a, b = rng.sample(range(n_qubits), 2)
        if rng.random() < 0.5:
            lines.append(f"rz({rng.uniform(-3, 3)!r}) q[{a}];")
        else:
            lines.append(f"bellpair q[{a}], q[{b}];")
    lines.append("c = measure q;")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for run in range(args.repeat):
        rng = random.Random(run)  # fresh sources each run: the verdict cache never helps
        batch = [(f"c{i}", gate_circuit(rng)) for i in range(args.circuits)]
        start = time.perf_counter()
        check_batch(batch)
        elapsed = time.perf_counter() - start
        print(
            f"run {run}: {len(batch)} full-parser circuits in {elapsed:.2f} s: "
            f"{len(batch) / elapsed:.0f} circuits/s"
        )


if __name__ == "__main__":
    main()
