"""An unmodified qoro-divi `QoroService` against the local scheduler.

Skipped unless `divi` is importable (the `test` extra installs it). divi
hard-codes its API URL in the module constant
``divi.backends.runners._qoro.API_URL``; the test points it at the local
scheduler with monkeypatch (divi's code itself is untouched).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from asyncjob.local import LocalScheduler, ThreadedScheduler

from .conftest import BELL, ghz

pytest.importorskip("divi")

from divi.backends import (
    JobCancelledError,
    JobConfig,
    JobStatus,
    QoroService,
)
from divi.backends.runners import _qoro

TOKEN = "divi-compat-token"


def make_service(threaded: ThreadedScheduler, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(_qoro, "API_URL", threaded.base_url.rstrip("/"))
    return QoroService(
        auth_token=threaded.token,
        job_config=JobConfig(simulator_cluster="qoro_maestro", tag="divi-compat"),
        polling_interval=0.01,
    )


@pytest.fixture
def threaded() -> Iterator[ThreadedScheduler]:
    with LocalScheduler(
        token=TOKEN, job_duration=0.01, executor="sampler"
    ).run_in_thread() as scheduler:
        yield scheduler


@pytest.fixture
def service(threaded: ThreadedScheduler, monkeypatch: pytest.MonkeyPatch) -> Any:
    return make_service(threaded, monkeypatch)


def run(service: Any, handle: Any) -> list[dict[str, Any]]:
    status = service.poll_job_status(handle, loop_until_complete=True, verbose=False)
    assert status == JobStatus.COMPLETED
    results: list[dict[str, Any]] = service.get_job_results(handle).results
    return results


def test_constructor_ping_and_targets(service: Any, threaded: ThreadedScheduler) -> None:
    assert service.test_connection().status_code == 200
    assert [s.name for s in service.fetch_simulator_clusters()] == ["qoro_maestro"]
    by_endpoint = threaded.stats.requests_by_endpoint
    assert by_endpoint["qpusystem"] >= 1
    assert by_endpoint["simulatorcluster"] >= 1


def test_submit_poll_results(service: Any, threaded: ThreadedScheduler) -> None:
    handle = service.submit_circuits({"bell": BELL, "ghz": ghz(4)})
    assert handle.job_id
    assert service.poll_job_status(handle) in (
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
    )
    results = run(service, handle)
    assert [r["label"] for r in results] == ["bell", "ghz"]
    for result in results:
        counts = result["results"]
        assert sum(counts.values()) == 1000
        assert all(len(key) == (2 if result["label"] == "bell" else 4) for key in counts)
    (record,) = threaded.jobs()
    assert record.tag == "divi-compat"
    assert record.status == "COMPLETED"


def test_large_batches_are_chunked(service: Any, threaded: ThreadedScheduler) -> None:
    # Random comments defeat gzip, so the batch needs several add_circuits/ requests.
    circuits = {f"c{i:02d}": BELL + f"// {secrets.token_hex(40_000)}\n" for i in range(30)}
    results = run(service, service.submit_circuits(circuits))
    assert [r["label"] for r in results] == list(circuits)
    assert threaded.stats.requests_by_endpoint["add_circuits"] >= 2


def test_shot_groups(service: Any) -> None:
    circuits = {"a": BELL, "b": BELL, "c": BELL}
    handle = service.submit_circuits(circuits, shot_groups=[[0, 1, 10], [1, 3, 20]])
    assert [sum(r["results"].values()) for r in run(service, handle)] == [10, 20, 20]


def test_expectation_values(service: Any, threaded: ThreadedScheduler) -> None:
    handle = service.submit_circuits(
        {"x": BELL, "y": BELL}, ham_ops="ZZ;XX|ZI", circuit_ham_map=[[0, 1], [1, 2]]
    )
    results = run(service, handle)
    assert set(results[0]["results"]) == {"ZZ", "XX"}
    assert set(results[1]["results"]) == {"ZI"}
    assert all(isinstance(v, float) for r in results for v in r["results"].values())
    assert threaded.jobs()[0].job_type == "EXPECTATION"


def test_parametric_payloads(service: Any) -> None:
    from divi.circuits import CircuitPayload
    from qiskit.circuit import Parameter

    template = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\n'
        "rx(theta) q[0];\nmeasure q[0] -> c[0];\n"
    )
    payload = CircuitPayload(
        circuit=template,
        parameters=(Parameter("theta"),),
        parameter_sets=(("a", (0.1,)), ("b", (-3.0,))),
    )
    results = run(service, service.submit_circuits([payload]))
    assert [r["label"] for r in results] == ["a", "b"]
    assert all(sum(r["results"].values()) == 1000 for r in results)


def test_cancel_and_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    with LocalScheduler(
        token=TOKEN, job_duration=60, executor="sampler"
    ).run_in_thread() as threaded:
        service = make_service(threaded, monkeypatch)
        handle = service.submit_circuits({"bell": BELL})
        threaded.wait_for_status(handle.job_id, "RUNNING", timeout=10)
        response = service.cancel_job(handle)
        assert response.status_code == 200
        assert response.json() == {
            "status": "cancelled",
            "job_id": handle.job_id,
            "circuits_cancelled": 1,
        }
        assert service.poll_job_status(handle) == JobStatus.CANCELLED
        with pytest.raises(JobCancelledError):
            service.poll_job_status(handle, loop_until_complete=True, verbose=False)
        with pytest.raises(requests.HTTPError, match="409"):
            service.cancel_job(handle)
        assert service.delete_job(handle).status_code == 204
        assert threaded.jobs() == []
