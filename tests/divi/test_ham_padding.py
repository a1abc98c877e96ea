"""Pauli terms shorter than the circuit: padded as divi's own runners pad them.

divi's `QiskitSimulator` (and `QoroService`) measure `ZI` on a 3-qubit circuit
as `ZII` and key the result by `ZII`; `DiviBackend` against a real aer
scheduler must hand back the same keys and values.
"""

from __future__ import annotations

from typing import Any

import pytest
from divi.backends import QiskitSimulator
from divi.circuits import CircuitPayload
from qiskit.circuit import Parameter

from asyncjob.local import ThreadedScheduler

from .conftest import divi_backend

THREE = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n'
    "x q[0];\nry({theta}) q[1];\nh q[2];\n"
)
TWO = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nx q[1];\n'


def _by_label(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {row["label"]: row["results"] for row in results}


def _reference(circuits: dict[str, str], **options: Any) -> dict[str, Any]:
    with pytest.warns(UserWarning, match="padded"):
        return _by_label(QiskitSimulator().submit_circuits(circuits, **options).results)


def test_short_terms_are_padded_as_divis_simulator_pads_them(
    aer_scheduler: ThreadedScheduler,
) -> None:
    circuits = {"a": THREE.format(theta="0.3"), "b": THREE.format(theta="1.1")}
    expected = _reference(circuits, ham_ops="ZI;IZ;XY")
    with divi_backend(aer_scheduler) as backend:
        with pytest.warns(UserWarning, match=r"'ZI' -> 'ZII'"):
            handle = backend.submit_circuits(circuits, ham_ops="ZI;IZ;XY")
        backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
        got = _by_label(backend.get_job_results(handle).results)
    assert set(got) == {"a", "b"}
    for label, values in got.items():
        assert set(values) == {"ZII", "IZI", "XYI"}
        for term, value in values.items():
            assert value == pytest.approx(expected[label][term], abs=1e-9)


def test_parametric_payloads_and_groups_are_padded_per_circuit_width(
    aer_scheduler: ThreadedScheduler,
) -> None:
    """Each `|` group is padded to the width of the circuits its range covers."""
    template = THREE.format(theta="t")
    rows = (("r0", (0.4,)), ("r1", (2.0,)))
    payloads = [
        CircuitPayload(circuit=template, parameters=(Parameter("t"),), parameter_sets=rows),
        CircuitPayload(circuit=TWO, parameters=(), parameter_sets=(("two", ()),)),
    ]
    bound = {"r0": THREE.format(theta="0.4"), "r1": THREE.format(theta="2.0"), "two": TWO}
    options = {"ham_ops": "Z;X|Z", "circuit_ham_map": [[0, 2], [2, 3]]}
    expected = _reference(bound, **options)
    with divi_backend(aer_scheduler, parametric=True) as backend:
        with pytest.warns(UserWarning, match="padded"):
            handle = backend.submit_circuits(payloads, **options)
        backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
        got = _by_label(backend.get_job_results(handle).results)
    assert set(got["r0"]) == set(got["r1"]) == {"ZII", "XII"}
    assert set(got["two"]) == {"ZI"}
    for label, values in got.items():
        for term, value in values.items():
            assert value == pytest.approx(expected[label][term], abs=1e-9)


def test_short_terms_on_circuits_of_different_widths_are_refused(
    aer_scheduler: ThreadedScheduler,
) -> None:
    with divi_backend(aer_scheduler) as backend:
        with pytest.raises(ValueError, match=r"circuits of \[2, 3\] qubits"):
            backend.submit_circuits({"a": THREE.format(theta="0.1"), "b": TWO}, ham_ops="Z")
