"""`DiviBackend` against divi's contracts: what divi passes, gets back and catches."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from divi.backends import (
    AsyncJobBackend,
    CircuitRunner,
    ExecutionResult,
    InsufficientCreditsError,
    JobCancelledError,
    JobFailedError,
    JobStatus,
    JobTimedOutError,
    JobType,
    QiskitSimulator,
)
from divi.circuits import CircuitPayload
from divi.exceptions import ExecutionCancelledError
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

import asyncjob
from asyncjob import InvalidInputError, InvalidInputTypeError, JobBackend, QasmValidationError
from asyncjob.divi import (
    DiviBackend,
    DiviInsufficientCreditsError,
    DiviJobTimedOutError,
)
from asyncjob.local import FaultConfig, LocalScheduler, ThreadedScheduler

from ..conftest import BELL
from .conftest import divi_backend

TEMPLATE = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\n'
    "rx(w_0[0]) q[0];\nmeasure q[0] -> c[0];\n"
)


@pytest.fixture
def sampler() -> Iterator[ThreadedScheduler]:
    """A scheduler with synthetic counts and 50 ms jobs: the contract, not the physics."""
    with LocalScheduler(executor="sampler", job_duration=0.05).run_in_thread() as threaded:
        yield threaded


@pytest.fixture
def slow() -> Iterator[ThreadedScheduler]:
    """A scheduler whose jobs run until cancelled."""
    with LocalScheduler(executor="sampler", job_duration=600).run_in_thread() as threaded:
        yield threaded


def wait(backend: DiviBackend, handle: Any) -> Any:
    assert backend.poll_job_status(handle, loop_until_complete=True, verbose=False) == "COMPLETED"
    return backend.get_job_results(handle)


def test_it_is_a_divi_circuit_runner_and_async_job_backend(sampler: ThreadedScheduler) -> None:
    with divi_backend(sampler, shots=123, track_depth=True) as backend:
        assert isinstance(backend, CircuitRunner)
        assert isinstance(backend, AsyncJobBackend)
        assert backend.shots == 123
        assert backend.supports_expval and backend.is_async and backend.resolves_parameters
        backend.set_seed(5)
        assert backend.seed == 5
    assert not divi_backend(sampler, supports_expval=False, parametric=False).supports_expval
    assert not divi_backend(sampler, parametric=False).resolves_parameters
    with pytest.raises(InvalidInputError, match="parametric") as info:
        divi_backend(sampler, parametric="yes")
    assert isinstance(info.value, ValueError)


def test_from_backend_wraps_and_leaves_it_open(sampler: ThreadedScheduler) -> None:
    with JobBackend(sampler.base_url, sampler.token, shots=77, journal=False) as job_backend:
        backend = DiviBackend.from_backend(job_backend, supports_expval=False)
        assert backend.shots == 77 and backend.job_backend is job_backend
        backend.close()
        handle = job_backend.submit_circuits({"bell": BELL})  # still open
        assert handle.job_id
    with pytest.raises(InvalidInputTypeError, match="JobBackend") as info:
        DiviBackend.from_backend(object())  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_bad_batches_and_handles_are_asyncjob_errors(sampler: ThreadedScheduler) -> None:
    with divi_backend(sampler) as backend:
        with pytest.raises(InvalidInputTypeError, match="CircuitPayloads") as caught:
            backend.submit_circuits(42)
        assert isinstance(caught.value, TypeError)
        with pytest.raises(InvalidInputError, match="no job_id") as info:
            backend.get_job_results(ExecutionResult(results=[]))
        assert isinstance(info.value, ValueError)


def test_plain_collections_and_qiskit_circuits(sampler: ThreadedScheduler) -> None:
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    with divi_backend(sampler, shots=100, track_depth=True) as backend:
        handle = backend.submit_circuits({"a": BELL, "b": bell})
        assert isinstance(handle, ExecutionResult) and handle.is_async()
        assert handle.backend_jobs == 1
        done = wait(backend, handle)
        assert isinstance(done, ExecutionResult) and done.job_id == handle.job_id
        assert [r["label"] for r in done.results] == ["a", "b"]
        assert done.run_time > 0
        by_index = wait(backend, backend.submit_circuits([bell, BELL]))
        assert [r["label"] for r in by_index.results] == ["0", "1"]
        assert len(backend.depth_history) == 2 and all(backend.depth_history[0])


def test_divi_job_type_and_ham_ops(sampler: ThreadedScheduler) -> None:
    with divi_backend(sampler) as backend:
        handle = backend.submit_circuits(
            {"a": BELL}, ham_ops="ZZ;XX", job_type=JobType.EXPECTATION
        )
        results = wait(backend, handle).results
        assert set(results[0]["results"]) == {"ZZ", "XX"}
        assert sampler.jobs()[0].job_type == "EXPECTATION"


def test_payloads_bound_and_parametric(sampler: ThreadedScheduler) -> None:
    theta = Parameter("w_0[0]")
    rows = tuple((f"r{i}", (0.1 * i - 1,)) for i in range(40))
    parametric = CircuitPayload(circuit=TEMPLATE, parameters=(theta,), parameter_sets=rows)
    bound = CircuitPayload(circuit=BELL, parameters=(), parameter_sets=(("bell", ()),))
    for mode, templates in ((True, 1), ("auto", 0)):
        before = sampler.stats.requests_by_endpoint.get("add_circuits", 0)
        with divi_backend(sampler, parametric=mode, shots=10) as backend:
            handle = backend.submit_circuits([bound, parametric])
            results = wait(backend, handle).results
        assert [r["label"] for r in results] == ["bell", *(label for label, _ in rows)]
        # True: the bound circuit, then the template; "auto": one chunk of 41 bound circuits.
        sent = sampler.stats.requests_by_endpoint["add_circuits"] - before
        assert handle.backend_jobs == sent == 1 + templates
    with divi_backend(sampler, parametric=False) as backend:
        with pytest.raises(InvalidInputError, match="parametric=False") as info:
            backend.submit_circuits([parametric])
        assert isinstance(info.value, ValueError)


def test_a_bad_template_is_refused_before_anything_is_sent(sampler: ThreadedScheduler) -> None:
    broken = TEMPLATE.replace("rx(w_0[0])", "rx(w_0[0], 1)")
    payload = CircuitPayload(
        circuit=broken, parameters=(Parameter("w_0[0]"),), parameter_sets=(("a", (0.5,)),)
    )
    with divi_backend(sampler, parametric=True) as backend:
        with pytest.raises(QasmValidationError):
            backend.submit_circuits([payload])
    assert sampler.stats.requests_total == 0


def test_a_failed_job_raises_divis_job_failed_error(sampler: ThreadedScheduler) -> None:
    sampler.faults = FaultConfig(fail_rate=1.0)
    with divi_backend(sampler) as backend:
        handle = backend.submit_circuits({"a": BELL})
        assert backend.poll_job_status(handle, loop_until_complete=False) in set(JobStatus)
        with pytest.raises(JobFailedError) as caught:
            backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
    assert isinstance(caught.value, asyncjob.JobFailedError)
    assert caught.value.job_id == handle.job_id and caught.value.status == "FAILED"


def test_a_job_cancelled_by_the_scheduler_raises_job_cancelled_error(
    slow: ThreadedScheduler,
) -> None:
    with divi_backend(slow) as backend:
        handle = backend.submit_circuits({"a": BELL})
        slow.wait_for_status(handle.job_id, "RUNNING")
        with JobBackend(slow.base_url, slow.token, journal=False) as other:
            other.cancel_job(handle.job_id)
        with pytest.raises(JobCancelledError):
            backend.poll_job_status(handle, loop_until_complete=True, verbose=False)


def test_the_other_terminal_errors_are_divis_classes() -> None:
    credits, timed_out = DiviInsufficientCreditsError("j1"), DiviJobTimedOutError("j2")
    assert (
        isinstance(credits, InsufficientCreditsError) and credits.status == "INSUFFICIENT_CREDITS"
    )
    assert isinstance(timed_out, JobTimedOutError) and timed_out.job_id == "j2"
    assert all(isinstance(e, asyncjob.AsyncJobError) for e in (credits, timed_out))


def test_a_set_event_ends_the_wait_with_divis_cancellation_error(slow: ThreadedScheduler) -> None:
    event = threading.Event()
    with divi_backend(slow) as backend:
        handle = backend.submit_circuits({"a": BELL})
        slow.wait_for_status(handle.job_id, "RUNNING")
        with pytest.raises(ExecutionCancelledError) as caught:
            backend.poll_job_status(
                handle,
                loop_until_complete=True,
                progress_callback=lambda attempt, status: event.set(),  # set while waiting
                cancellation_event=event,
            )
        assert isinstance(caught.value, asyncjob.ExecutionCancelledError)
        # The caller passed the event, so the caller cancels (divi's pipeline does).
        assert slow.job(handle.job_id).status == "RUNNING"  # type: ignore[union-attr]
        backend.cancel_job(handle)
        backend.cancel_job(handle)  # idempotent
        assert slow.job(handle.job_id).status == "CANCELLED"  # type: ignore[union-attr]
        with pytest.raises(ExecutionCancelledError):
            backend.submit_circuits({"a": BELL}, cancellation_event=event)


def test_depth_history_is_divis_for_bound_and_parametric_batches(
    sampler: ThreadedScheduler,
) -> None:
    """One list of depths per submission, one depth per circuit, as divi's simulator records."""
    theta = Parameter("w_0[0]")
    rows = tuple((f"r{i}", (0.5 * i,)) for i in range(3))
    parametric = CircuitPayload(circuit=TEMPLATE, parameters=(theta,), parameter_sets=rows)
    deep = BELL.replace("cx q[0],q[1];", "cx q[0],q[1];\ncx q[0],q[1];\nh q[1];")
    bound = {"bell": BELL, "deep": deep}
    reference = QiskitSimulator(shots=10, track_depth=True)
    reference.submit_circuits(bound)
    reference.submit_circuits(
        {label: TEMPLATE.replace("w_0[0]", str(value)) for label, (value,) in rows}
    )
    bound_depths, _ = reference.depth_history
    assert bound_depths[0] != bound_depths[1]  # the check below can tell circuits apart
    for mode in (True, "auto"):
        with divi_backend(sampler, parametric=mode, track_depth=True) as backend:
            wait(backend, backend.submit_circuits(bound))
            wait(backend, backend.submit_circuits([parametric]))
            assert backend.depth_history == reference.depth_history
            assert backend.average_depth() == reference.average_depth()
            backend.clear_depth_history()
            assert backend.depth_history == []
    with divi_backend(sampler) as untracked:
        wait(untracked, untracked.submit_circuits(bound))
        assert untracked.depth_history == []


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """Every job is in the status the test sets: ones the local scheduler never reaches."""

    status = "RUNNING"

    def do_GET(self) -> None:
        body = json.dumps({"status": self.status}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "divi_error"),
    [("INSUFFICIENT_CREDITS", InsufficientCreditsError), ("TIMED_OUT", JobTimedOutError)],
)
def test_insufficient_credits_and_timed_out_raise_divis_errors_when_waiting(
    status: str, divi_error: type[Exception]
) -> None:
    handler = type("Handler", (_StatusHandler,), {"status": status})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/api/"
            with DiviBackend(url, "t0ken", journal=False) as backend:
                assert backend.poll_job_status("j1") == status
                with pytest.raises(divi_error) as caught:
                    backend.poll_job_status("j1", loop_until_complete=True, verbose=False)
        finally:
            server.shutdown()
            serving.join()
    assert isinstance(caught.value, asyncjob.JobFailedError)
    assert caught.value.job_id == "j1" and caught.value.status == status  # type: ignore[attr-defined]
    assert caught.value.reason is None  # type: ignore[attr-defined]  # the server gave none
    assert caught.value.status_word == divi_error.reason  # type: ignore[attr-defined]
