"""`JobBackend`: the protocol's signatures, construction, every method end to end, errors."""

from __future__ import annotations

import importlib
import inspect
import logging
import pickle
import threading
import traceback

import pytest

import asyncjob
from asyncjob import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ExecutionCancelledError,
    ExecutionResult,
    JobBackend,
    JobNotCompleteError,
    JobStatus,
    NotFoundError,
    Response,
)
from asyncjob.local import ThreadedScheduler

from ._support import BELL, TOKEN, loop_threads, make_backend, wait_until

PROTOCOL_METHODS = ["submit_circuits", "poll_job_status", "get_job_results", "cancel_job"]


# -- the protocol --------------------------------------------------------------


WIDENED = {"circuits", "execution_result"}
"""Parameters the implementations accept more of than the protocol (iterables, job ids)."""


@pytest.mark.parametrize("owner", [JobBackend, asyncjob.AsyncJobClient])
@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_signature_equals_the_protocols(owner: type, name: str) -> None:
    # The protocol class is the one written definition of each signature; the
    # blocking facade and the async client must keep to it (names, kinds,
    # defaults, and the annotations of all but the widened parameters).
    def shape(func: object) -> list[tuple[str, object, object, object]]:
        params = inspect.signature(func).parameters.values()  # type: ignore[arg-type]
        return [
            (p.name, p.kind, p.default, None if p.name in WIDENED else p.annotation)
            for p in params
        ]

    protocol = getattr(asyncjob.AsyncJobBackend, name)
    assert shape(getattr(owner, name)) == shape(protocol)
    assert inspect.iscoroutinefunction(getattr(owner, name)) is (owner is asyncjob.AsyncJobClient)


def test_is_an_async_job_backend(scheduler: ThreadedScheduler) -> None:
    backend = make_backend(scheduler, shots=123)
    assert isinstance(backend, asyncjob.AsyncJobBackend)
    assert backend.shots == 123
    assert isinstance(inspect.getattr_static(JobBackend, "shots"), property)


def test_is_a_divi_async_job_backend(scheduler: ThreadedScheduler) -> None:
    pytest.importorskip("divi")
    protocol = importlib.import_module("divi.backends").AsyncJobBackend
    assert isinstance(make_backend(scheduler), protocol)


# -- construction ----------------------------------------------------------------


def test_options_are_validated_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCJOB_BASE_URL", raising=False)
    monkeypatch.delenv("ASYNCJOB_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="base_url"):
        JobBackend(token="t")
    with pytest.raises(ConfigurationError, match="token"):
        JobBackend("http://127.0.0.1:1/api/")
    with pytest.raises(TypeError, match="polling_intervall"):
        JobBackend("http://127.0.0.1:1/api/", "t", polling_intervall=1)
    with pytest.raises(ConfigurationError, match="https"):
        JobBackend("http://example.com/api/", "t")
    with pytest.raises(ConfigurationError, match="shots"):
        JobBackend("http://127.0.0.1:1/api/", "t", shots=0)


def test_environment_supplies_url_and_token(
    scheduler: ThreadedScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCJOB_BASE_URL", scheduler.base_url)
    monkeypatch.setenv("ASYNCJOB_TOKEN", scheduler.token)
    with JobBackend(polling_interval=0.01) as backend:
        assert backend.run({"bell": BELL}).results is not None


def test_constructor_sends_nothing_and_starts_no_thread(scheduler: ThreadedScheduler) -> None:
    before = loop_threads()
    backend = make_backend(scheduler)
    assert loop_threads() == before
    assert scheduler.stats.requests_total == 0
    backend.close()
    assert scheduler.stats.requests_total == 0


def test_repr_and_pickle_never_show_the_token(scheduler: ThreadedScheduler) -> None:
    backend = make_backend(scheduler)
    copy = pickle.loads(pickle.dumps(backend))
    for text in (repr(backend), str(backend), repr(copy), str(copy), repr(backend.config)):
        assert TOKEN not in text
    assert scheduler.base_url in repr(backend)
    backend.close()
    assert TOKEN not in repr(backend)


def test_error_messages_never_show_the_token(scheduler: ThreadedScheduler) -> None:
    wrong = "wrong-token-" + TOKEN
    with JobBackend(scheduler.base_url, wrong) as backend:
        with pytest.raises(AuthenticationError) as info:
            backend.submit_circuits({"bell": BELL})
    assert wrong not in str(info.value)
    assert TOKEN not in "".join(traceback.format_exception(info.value))


# -- every method end to end -------------------------------------------------------


def test_submit_poll_fetch_cancel_delete(
    backend: JobBackend, scheduler: ThreadedScheduler
) -> None:
    handle = backend.submit_circuits({"a": BELL, "b": BELL}, shots=50)
    assert handle.is_async()
    assert backend.poll_job_status(handle) in set(JobStatus)

    assert backend.poll_job_status(handle, loop_until_complete=True) is JobStatus.COMPLETED
    result = backend.get_job_results(handle)
    assert result.job_id == handle.job_id
    assert [entry["label"] for entry in result.results or []] == ["a", "b"]
    assert all(sum(entry["results"].values()) == 50 for entry in result.results or [])

    assert backend.cancel_job(handle).status_code == 409  # already terminal: not an error
    assert backend.delete_job(handle).status_code == 204
    assert scheduler.job(str(handle.job_id)) is None


def test_sequence_of_circuits_and_run(backend: JobBackend) -> None:
    result = backend.run([BELL, BELL])
    assert [entry["label"] for entry in result.results or []] == ["0", "1"]


def test_cancel_a_running_job(slow_backend: JobBackend, slow_scheduler: ThreadedScheduler) -> None:
    handle = slow_backend.submit_circuits({"bell": BELL})
    assert slow_backend.cancel_job(handle).status_code == 200
    assert slow_backend.poll_job_status(handle) is JobStatus.CANCELLED
    assert slow_scheduler.job(str(handle.job_id)).status == "CANCELLED"  # type: ignore[union-attr]


def test_callbacks_run_in_the_calling_thread(backend: JobBackend) -> None:
    handle = backend.submit_circuits({"bell": BELL})
    progress: list[tuple[int, str, str]] = []
    completed: list[tuple[Response, str]] = []
    status = backend.poll_job_status(
        handle,
        loop_until_complete=True,
        on_complete=lambda r: completed.append((r, threading.current_thread().name)),
        progress_callback=lambda n, s: progress.append((n, s, threading.current_thread().name)),
    )
    assert status is JobStatus.COMPLETED
    assert [n for n, _, _ in progress] == list(range(1, len(progress) + 1))
    assert all(s in ("PENDING", "SCHEDULED", "RUNNING") for _, s, _ in progress)
    assert len(completed) == 1
    response, thread = completed[0]
    assert response.json()["status"] == "COMPLETED"
    assert {thread} | {t for _, _, t in progress} == {threading.current_thread().name}


def test_verbose_logs_each_poll(
    slow_backend: JobBackend, caplog: pytest.LogCaptureFixture
) -> None:
    handle = slow_backend.submit_circuits({"bell": BELL})
    caplog.set_level(logging.INFO, logger="asyncjob")
    for _ in range(3):
        slow_backend.poll_job_status(handle)
    slow_backend.poll_job_status(handle, verbose=False)
    polls = [r for r in caplog.records if r.name == "asyncjob" and str(handle.job_id) in r.message]
    assert len(polls) == 3


def test_a_failing_callback_ends_the_wait_not_the_job(
    slow_backend: JobBackend, slow_scheduler: ThreadedScheduler
) -> None:
    handle = slow_backend.submit_circuits({"bell": BELL})

    def progress(attempt: int, status: str) -> None:
        raise ValueError("progress bar broke")

    with pytest.raises(ValueError, match="progress bar broke"):
        slow_backend.poll_job_status(handle, loop_until_complete=True, progress_callback=progress)
    assert slow_scheduler.job(str(handle.job_id)).status == "RUNNING"  # type: ignore[union-attr]
    assert slow_backend.poll_job_status(handle) is JobStatus.RUNNING  # the backend still works


# -- errors ------------------------------------------------------------------------


def test_errors_keep_their_type_and_a_readable_traceback(backend: JobBackend) -> None:
    with pytest.raises(NotFoundError) as info:
        backend.get_job_results(ExecutionResult(job_id="no-such-job"))
    files = [frame.filename for frame in traceback.extract_tb(info.tb)]
    # From this test, through the facade, straight into the client and its sender:
    assert files[0] == __file__
    assert any(f.endswith("_client.py") for f in files)
    assert files[-1].endswith("_sender.py")
    # and none of the portal's machinery in between.
    assert not [f for f in files if "anyio" in f or "concurrent" in f or "threading" in f]


def test_results_of_an_unfinished_job(slow_backend: JobBackend) -> None:
    handle = slow_backend.submit_circuits({"bell": BELL})
    with pytest.raises(JobNotCompleteError, match="not complete"):
        slow_backend.get_job_results(handle)


def test_invalid_input_is_refused_without_a_request(
    backend: JobBackend, scheduler: ThreadedScheduler
) -> None:
    with pytest.raises(TypeError):
        backend.submit_circuits(BELL)  # a bare string, the classic mistake
    with pytest.raises(ValueError, match="empty"):
        backend.submit_circuits({})
    with pytest.raises(TypeError, match="shotz"):
        backend.submit_circuits({"bell": BELL}, shotz=10)
    assert scheduler.stats.requests_total == 0


def test_a_set_event_refuses_before_any_request(scheduler: ThreadedScheduler) -> None:
    event = threading.Event()
    event.set()
    backend = make_backend(scheduler)
    with pytest.raises(ExecutionCancelledError):
        backend.submit_circuits({"bell": BELL}, cancellation_event=event)
    with pytest.raises(ExecutionCancelledError):
        backend.poll_job_status(ExecutionResult(job_id="x"), cancellation_event=event)
    with pytest.raises(ExecutionCancelledError):
        backend.run({"bell": BELL}, cancellation_event=event)
    assert scheduler.stats.requests_total == 0
    assert not loop_threads()


# -- lifetime --------------------------------------------------------------------


def test_close_stops_the_loop_and_is_final(scheduler: ThreadedScheduler) -> None:
    with make_backend(scheduler) as backend:
        backend.run({"bell": BELL})
        assert len(loop_threads()) == 1
    assert not loop_threads()
    backend.close()  # idempotent
    with pytest.raises(ClientClosedError, match="closed") as info:
        backend.submit_circuits({"bell": BELL})
    assert isinstance(info.value, RuntimeError)
    assert "closed" in repr(backend)


def test_close_cancels_calls_in_flight(
    slow_backend: JobBackend, slow_scheduler: ThreadedScheduler
) -> None:
    handle = slow_backend.submit_circuits({"bell": BELL})
    polling = threading.Event()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            slow_backend.poll_job_status(
                handle, loop_until_complete=True, progress_callback=lambda n, s: polling.set()
            )
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert polling.wait(10)
    slow_backend.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ExecutionCancelledError)
    assert "closed" in str(errors[0])
    assert not loop_threads()


def test_pickled_backend_works(backend: JobBackend) -> None:
    backend.run({"bell": BELL})
    copy = pickle.loads(pickle.dumps(backend))
    assert copy is not backend
    assert copy.config == backend.config
    with copy:
        assert copy.run({"bell": BELL}).results is not None
    assert backend.run({"bell": BELL}).results is not None  # the original is untouched


def test_garbage_collection_stops_the_loop(scheduler: ThreadedScheduler) -> None:
    backend = make_backend(scheduler)
    backend.run({"bell": BELL})
    assert len(loop_threads()) == 1
    del backend
    wait_until(lambda: not loop_threads())


def test_finalizer_may_run_on_the_loop_thread(scheduler: ThreadedScheduler) -> None:
    """The GC can collect a backend on any thread, its own loop thread included."""
    backend = make_backend(scheduler)
    backend.run({"bell": BELL})
    loop = backend._running()
    finalizer = backend._finalizer
    assert finalizer is not None
    loop.portal.call(finalizer)  # must not deadlock or raise
    wait_until(lambda: not loop_threads())
