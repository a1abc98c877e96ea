"""A backend (or the library's module state) inherited across fork() works in the child.

Findings 2 and 3 of issue 13: the child used to wait forever on the parent's
event-loop thread, or on the validation pool the parent had started. Every wait
here is bounded, so a regression fails instead of hanging.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading

import pytest

from asyncjob import EventLoopError, JobBackend
from asyncjob._backend import _wait
from asyncjob._qasm import check_batch
from asyncjob.local import ThreadedScheduler

from . import _workers
from .conftest import TOKEN, check_server

WAIT = 60.0

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()"
)


def test_backend_used_in_the_parent_works_in_a_forked_child(
    scheduler: ThreadedScheduler, backend: JobBackend, expected: dict[int, dict[str, int]]
) -> None:
    _workers.BACKEND = backend
    try:
        assert _workers.run_with_global(0) == (0, expected[0])  # the parent's loop is running
        with multiprocessing.get_context("fork").Pool(1) as pool:
            child = pool.apply_async(_workers.run_with_global, (1,)).get(timeout=WAIT)
        assert child == (1, expected[1])
        assert _workers.run_with_global(2) == (2, expected[2])  # the parent is unharmed
    finally:
        _workers.BACKEND = None
    check_server(scheduler, 3)


def test_backend_closed_in_a_forked_child_leaves_the_parents_loop_alone(
    scheduler: ThreadedScheduler, backend: JobBackend, expected: dict[int, dict[str, int]]
) -> None:
    """Closing (or exiting with) an inherited backend never waits on the parent's thread."""
    assert _workers._run(backend, 0) == (0, expected[0])
    pid = os.fork()
    if pid == 0:  # the child: close the inherited backend
        code = 1
        try:
            backend.close()
            code = 0
        finally:
            os._exit(code)
    assert _wait_for_child(pid) == 0
    assert _workers._run(backend, 1) == (1, expected[1])
    check_server(scheduler, 2)


def test_fresh_backend_in_a_forked_child_after_a_large_validation(
    scheduler: ThreadedScheduler,
) -> None:
    """Finding 3: the validation pool the parent had started survived fork, and a child
    validating a large batch waited on it forever."""
    check_batch(list(_workers.gate_circuits(80).items()))
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(
            _workers.fresh_backend_large_batch, (scheduler.base_url, TOKEN)
        ).get(timeout=WAIT)
    assert child == 70
    (job,) = scheduler.jobs()
    assert job.status == "COMPLETED" and len(job.labels) == 70


def test_forked_while_another_thread_is_mid_call(
    scheduler: ThreadedScheduler, backend: JobBackend, expected: dict[int, dict[str, int]]
) -> None:
    """A fork while another thread is inside a backend call (its locks held) is fine too."""
    stop = threading.Event()
    done: list[int] = []

    def busy() -> None:
        index = 100
        while not stop.is_set():
            backend.poll_job_status(backend.submit_circuits({"x": _workers.circuit(index)}))
            done.append(index)
            index += 1

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        _workers.BACKEND = backend
        with multiprocessing.get_context("fork").Pool(2) as pool:
            children = pool.map_async(_workers.run_with_global, range(4)).get(timeout=WAIT)
    finally:
        _workers.BACKEND = None
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert children == [(i, expected[i]) for i in range(4)]


def test_a_wait_on_a_loop_thread_that_is_not_there_raises(backend: JobBackend) -> None:
    """The liveness check behind every wait: a loop whose thread is not in this process
    (as after fork) is a clear `EventLoopError`, not a wait forever."""
    loop = backend._running()
    real_pid = loop.pid
    loop.pid = -1  # as if inherited: its thread lives in another process
    try:
        with pytest.raises(EventLoopError, match="create a new JobBackend"):
            _wait(queue.SimpleQueue(), None, loop)
    finally:
        loop.pid = real_pid


def _wait_for_child(pid: int) -> int:
    """The child's exit code; fails (and kills it) if it does not end within WAIT."""
    ended = threading.Event()
    timer = threading.Timer(WAIT, lambda: ended.is_set() or os.kill(pid, 9))
    timer.start()
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        ended.set()
        timer.cancel()
    assert os.WIFEXITED(status), "the forked child hung (killed)"
    return os.WEXITSTATUS(status)
