"""A divi program whose job fails, and one interrupted by Ctrl+C in a real subprocess."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from divi.backends import JobFailedError
from divi.exceptions import ExecutionCancelledError
from divi.pipeline import CircuitPipeline, PipelineEnv
from divi.pipeline.stages import MeasurementStage, QiskitSpecStage
from divi.qprog import VQE, HartreeFockAnsatz, ScipyMethod, ScipyOptimizer
from divi.qprog.problems import HamiltonianProblem
from qiskit import QuantumCircuit

import asyncjob
from asyncjob.local import FaultConfig, LocalScheduler, ThreadedScheduler

from .conftest import H2, divi_backend

SCRIPTS = Path(__file__).parent / "scripts"


def test_a_scheduler_failing_every_job_ends_the_vqe_in_job_failed_error() -> None:
    faults = FaultConfig(fail_rate=1.0)
    with LocalScheduler(
        executor="sampler", faults=faults, job_duration=0.01
    ).run_in_thread() as threaded:
        with divi_backend(threaded) as backend:
            vqe = VQE(
                HamiltonianProblem(H2, n_electrons=2),
                ansatz=HartreeFockAnsatz(),
                backend=backend,
                optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
                max_iterations=2,
            )
            with pytest.raises(JobFailedError) as caught:
                vqe.run()
        [job] = threaded.jobs()
    assert job.status == "FAILED" and caught.value.job_id == job.id
    # `.reason` is the scheduler's, as on every asyncjob JobFailedError; divi's word is kept.
    error = caught.value
    assert isinstance(error, asyncjob.JobFailedError)
    assert error.reason == "injected failure (fail_rate)"
    assert error.status_word == "failed"  # type: ignore[attr-defined]
    assert str(error) == f"job {job.id} failed (FAILED): injected failure (fail_rate)"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.job_id, copy.reason) == (type(error), job.id, error.reason)


@pytest.fixture
def slow() -> Iterator[ThreadedScheduler]:
    """A scheduler whose jobs run until cancelled."""
    with LocalScheduler(executor="sampler", job_duration=600).run_in_thread() as threaded:
        yield threaded


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_vqe_cancels_the_remote_job(slow: ThreadedScheduler) -> None:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "vqe_interrupted.py"), slow.base_url, slow.token],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_a_running_job(slow)
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == 3, err
    assert out == "cancelled: DiviExecutionCancelledError\n"
    [job] = slow.jobs()
    assert slow.wait_for_status(job.id).status == "CANCELLED"


def _wait_for_a_running_job(threaded: ThreadedScheduler) -> None:
    scheduler = threaded.scheduler

    async def running() -> None:
        with anyio.fail_after(60):
            await scheduler.wait_until(
                lambda: any(job.status == "RUNNING" for job in scheduler.jobs())
            )

    threaded.call(running)


def test_setting_divis_event_during_a_pipeline_cancels_the_remote_job(
    slow: ThreadedScheduler,
) -> None:
    """The event path, not only SIGINT: divi's pipeline catches our error and cancels."""
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    event = threading.Event()
    pipeline = CircuitPipeline(stages=[QiskitSpecStage(), MeasurementStage()])
    raised: list[BaseException] = []

    def run() -> None:
        env = PipelineEnv(backend=backend, cancellation_event=event)
        try:
            pipeline.run(initial_spec=bell, env=env)
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    with divi_backend(slow) as backend:
        worker = threading.Thread(target=run)
        worker.start()
        try:
            _wait_for_a_running_job(slow)
        finally:
            event.set()
            worker.join(60)
    assert not worker.is_alive()
    [error] = raised
    assert isinstance(error, ExecutionCancelledError)
    [job] = slow.jobs()
    assert slow.wait_for_status(job.id).status == "CANCELLED"
