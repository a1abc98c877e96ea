"""The aer executor: a real simulation (skipped when qiskit-aer is not installed)."""

from __future__ import annotations

import base64
import gzip

import aiohttp
import anyio
import pytest

from asyncjob._histogram import decode_result
from asyncjob.local import AerExecutor, CircuitTask

from .conftest import BELL, BELL3, Factory, chunk, completed_results, new_job, submit

pytest.importorskip("qiskit_aer")

TWO_REGISTERS = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg a[1];
creg b[1];
x q[0];
measure q[0] -> a[0];
measure q[1] -> b[0];
"""


def compress(group: str) -> str:
    terms = group.split(";")
    sparse = ["".join(f"{p}{i}" for i, p in enumerate(t) if p != "I") or "I" for t in terms]
    packed = base64.b64encode(gzip.compress(";".join(sparse).encode())).decode()
    return f"@gzs{len(terms[0])}:{packed}"


async def test_bell_counts(make_scheduler: Factory) -> None:
    server = await make_scheduler(executor="aer")
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, {"bell2": BELL, "bell3": BELL3}, shots=2000)
        results = await completed_results(server, http, job_id)
    assert [r["label"] for r in results] == ["bell2", "bell3"]
    for result in results:
        counts = decode_result(result["results"])
        assert isinstance(counts, dict)
        assert set(counts) == {"00", "11"}
        assert sum(counts.values()) == 2000
        assert 800 < counts["00"] < 1200


async def test_bell_expectations(make_scheduler: Factory) -> None:
    server = await make_scheduler(executor="aer")
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        observables = compress("ZZ;XX;YY;ZI;II")
        circuits = {"bell": BELL, "bell3": BELL3}
        job_id = await submit(http, circuits, "EXPECTATION", observables=observables)
        results = await completed_results(server, http, job_id)
    for result in results:
        values = result["results"]
        assert values["ZZ"] == pytest.approx(1.0)
        assert values["XX"] == pytest.approx(1.0)
        assert values["YY"] == pytest.approx(-1.0)
        assert values["ZI"] == pytest.approx(0.0, abs=1e-9)
        assert values["II"] == pytest.approx(1.0)


def test_register_spaces_are_removed() -> None:
    outcome = AerExecutor(seed=1).sample(CircuitTask("x", TWO_REGISTERS, shots=50))
    assert outcome.n_bits == 2
    assert outcome.counts == {"01": 50}  # b[0]=0, a[0]=1, register a rightmost


def test_unmeasured_circuit_is_measured_on_all_qubits() -> None:
    source = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\nx q[2];\n'
    outcome = AerExecutor(seed=1).sample(CircuitTask("x", source, shots=10))
    assert outcome.counts == {"100": 10}


def test_observable_wider_than_the_circuit_fails() -> None:
    with pytest.raises(ValueError, match="wider"):
        AerExecutor().expectation(CircuitTask("x", BELL, terms=("ZZZ",)))


async def test_a_failing_circuit_fails_the_job(make_scheduler: Factory) -> None:
    server = await make_scheduler(executor="aer")
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await new_job(http, "EXPECTATION")
        body = chunk({"bell": BELL}, observables=compress("ZZZ"))
        async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
            assert r.status == 200
        with anyio.fail_after(60):
            record = await server.wait_for_status(job_id)
        assert record.status == "FAILED"
        async with http.get(f"job/{job_id}/status/") as r:
            assert "wider" in (await r.json())["error"]
        async with http.get("") as r:  # the server is fine
            assert r.status == 200
