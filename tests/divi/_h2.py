"""The 4-qubit H2 Hamiltonian the divi tests use (plain data: no PennyLane needed)."""

from __future__ import annotations

from qiskit.quantum_info import SparsePauliOp

H2_TERMS: list[tuple[str, list[int], float]] = [
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
]
"""H2 at 0.74 Å (STO-3G, Jordan-Wigner): a constant and 14 Pauli terms."""

H2 = SparsePauliOp.from_sparse_list(H2_TERMS, num_qubits=4)
