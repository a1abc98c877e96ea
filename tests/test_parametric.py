"""Parametric circuits (a template plus labelled rows) and the new `ExecutionResult` fields."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from typing import Any

import pytest

from asyncjob import (
    ExecutionResult,
    JobBackend,
    Limits,
    ParametricCircuit,
    QasmValidationError,
)
from asyncjob._parametric import bind_template
from asyncjob.local import LocalScheduler, ThreadedScheduler

from .conftest import BELL

TEMPLATE = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "rx(w[0]) q[0];\nry(-w[1] + w[10] * 2) q[1];\nrz(w10) q[0];\nmeasure q -> c;\n"
)
NAMES = ("w[0]", "w[1]", "w[10]", "w10")


def rows(n: int, prefix: str = "r") -> list[tuple[str, list[float]]]:
    return [(f"{prefix}{i}", [0.01 * i, -0.5, 1e-7 * i, -2.0 - i]) for i in range(n)]


@pytest.fixture
def sampler() -> Iterator[ThreadedScheduler]:
    with LocalScheduler(executor="sampler", job_duration=0.02).run_in_thread() as threaded:
        yield threaded


def backend_for(threaded: ThreadedScheduler, **options: Any) -> JobBackend:
    return JobBackend(
        threaded.base_url, threaded.token, journal=False, polling_interval=0.02, **options
    )


def run(backend: JobBackend, circuits: Any, **options: Any) -> tuple[ExecutionResult, Any]:
    handle = backend.submit_circuits(circuits, **options)
    assert backend.poll_job_status(handle, loop_until_complete=True, verbose=False) == "COMPLETED"
    return handle, backend.get_job_results(handle)


def test_binding_replaces_whole_names_only() -> None:
    bound = bind_template(TEMPLATE, NAMES, [0.5, -1.25, 3.0, -4.0])
    assert "rx(0.5) q[0];" in bound
    assert "ry(-(-1.25) + 3.0 * 2) q[1];" in bound
    assert "rz((-4.0)) q[0];" in bound
    assert bind_template(BELL, (), ()) == BELL


@pytest.mark.parametrize(
    ("names", "sets", "error"),
    [
        (["a"], [("x", [1.0, 2.0])], ValueError),  # arity
        (["a"], [("x", [math.nan])], ValueError),
        (["a"], [("x", [math.inf])], ValueError),
        (["a"], [("x", [True])], TypeError),
        (["a"], [("x", ["1"])], TypeError),
        (["a"], [("x", "1")], TypeError),
        (["a"], [], ValueError),
        (["a"], "x", TypeError),
        (["a", "a"], [("x", [1.0, 2.0])], ValueError),
        ([""], [("x", [1.0])], ValueError),
        ("a", [("x", [1.0])], TypeError),
    ],
)
def test_bad_rows_and_names_are_refused_at_construction(
    names: Any, sets: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ParametricCircuit(TEMPLATE, names, sets)


def test_the_server_binds_as_the_client_does(sampler: ThreadedScheduler) -> None:
    circuit = ParametricCircuit(TEMPLATE, NAMES, rows(5))
    with backend_for(sampler, shots=50) as backend:
        _, parametric = run(backend, circuit)
        _, bound = run(backend, circuit.bound())
    # The sampler's counts depend on the exact source: equal counts, equal circuits.
    assert parametric.results == bound.results
    assert [r["label"] for r in parametric.results] == list(circuit.labels)


def test_rows_are_chunked_in_order_under_the_cap(sampler: ThreadedScheduler) -> None:
    first = ParametricCircuit(TEMPLATE, NAMES, rows(700, "a"))
    second = ParametricCircuit(TEMPLATE, NAMES, rows(300, "b"))
    circuits = [first, ("bell", BELL), second, ("bell2", BELL)]
    groups = [[0, 500, 10], [500, 1002, 20]]
    limits = Limits(chunk_bytes=20_000, max_payload_bytes=40_000)
    with backend_for(sampler, limits=limits) as backend:
        handle, result = run(backend, circuits, shot_groups=groups)
    labels = [*first.labels, "bell", *second.labels, "bell2"]
    assert [r["label"] for r in result.results] == labels
    shots = [sum(r["results"].values()) for r in result.results]
    assert shots == [10] * 500 + [20] * 502
    requests = sampler.stats.requests_by_endpoint["add_circuits"]
    assert handle.backend_jobs == requests > 4
    assert result.backend_jobs == handle.backend_jobs


def test_a_bad_template_or_batch_is_refused_before_sending(sampler: ThreadedScheduler) -> None:
    broken = ParametricCircuit(TEMPLATE.replace("rx(w[0])", "rx(w[0], 2)"), NAMES, rows(3))
    duplicate = [ParametricCircuit(TEMPLATE, NAMES, rows(3)), ("r1", BELL)]
    with backend_for(sampler) as backend:
        with pytest.raises(QasmValidationError) as caught:
            backend.submit_circuits([("bell", BELL), broken])
        assert caught.value.label == "r0"
        with pytest.raises(ValueError, match="duplicate circuit label 'r1'"):
            backend.submit_circuits(duplicate)
        with pytest.raises(TypeError, match="only them and"):
            backend.submit_circuits([ParametricCircuit(TEMPLATE, NAMES, rows(1)), BELL])
        with pytest.raises(ValueError, match="shot_groups"):
            backend.submit_circuits(
                ParametricCircuit(TEMPLATE, NAMES, rows(3)), shot_groups=[[0, 2, 5]]
            )
    assert sampler.stats.requests_total == 0


class Kind(enum.Enum):
    """An enum of another library (not a str enum), like divi's `JobType`."""

    EXECUTE = "EXECUTE"
    EXPECTATION = "EXPECTATION"
    OTHER = "VALIDATE"


def test_job_type_takes_any_enum_with_a_valid_value(sampler: ThreadedScheduler) -> None:
    with backend_for(sampler) as backend:
        run(backend, {"a": BELL}, job_type=Kind.EXECUTE)
        _, result = run(backend, {"a": BELL}, job_type=Kind.EXPECTATION, ham_ops="ZZ")
        assert set(result.results[0]["results"]) == {"ZZ"}
        with pytest.raises(ValueError, match="job_type must be one of"):
            backend.submit_circuits({"a": BELL}, job_type=Kind.OTHER)
    assert [job.job_type for job in sampler.jobs()] == ["EXECUTE", "EXPECTATION"]


def test_results_carry_the_run_time_of_the_terminal_status(sampler: ThreadedScheduler) -> None:
    with backend_for(sampler) as backend:
        handle, result = run(backend, {"a": BELL})
        assert handle.run_time == 0.0 and handle.backend_jobs == 1
        [job] = sampler.jobs()
        assert result.run_time == job.run_time and result.run_time > 0
    done = result.with_results(result.results or [], 2.5)
    assert done.run_time == 2.5 and done.backend_jobs == 1
    assert ExecutionResult.from_dict(done.to_dict()) == done
