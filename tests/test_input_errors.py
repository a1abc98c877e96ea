"""Every bad-input error is an `AsyncJobError` and still the builtin a caller would catch."""

from __future__ import annotations

from typing import Any

import pytest

from asyncjob import (
    AsyncJobClient,
    AsyncJobError,
    ClientClosedError,
    ConfigurationError,
    ExecutionResult,
    InvalidInputError,
    InvalidInputTypeError,
    PayloadTooLargeError,
    QasmValidationError,
    ResumeError,
)
from asyncjob._histogram import encode_histogram
from asyncjob.local import ExecutorUnavailableError

from .conftest import BASE, BELL, TOKEN

BAD_SUBMISSIONS: dict[str, tuple[Any, dict[str, Any], type[Exception]]] = {
    "empty batch": ({}, {}, ValueError),
    "empty sequence": ([], {}, ValueError),
    "bare string": (BELL, {}, TypeError),
    "not a batch": (42, {}, TypeError),
    "label not a str": ({1: BELL}, {}, TypeError),
    "empty label": ({"": BELL}, {}, ValueError),
    "source not a str": ({"a": b"OPENQASM"}, {}, TypeError),
    "bogus job_type": ({"a": BELL}, {"job_type": "BOGUS"}, ValueError),
    "unknown keyword": ({"a": BELL}, {"shotz": 10}, TypeError),
    "bad tag": ({"a": BELL}, {"tag": ""}, TypeError),
    "ham_ops with shot_groups": (
        {"a": BELL},
        {"ham_ops": "ZZ", "shot_groups": [[0, 1, 10]]},
        ValueError,
    ),
    "bad ham_ops term": ({"a": BELL}, {"ham_ops": "AB"}, ValueError),
    "shot_groups gap": ({"a": BELL, "b": BELL}, {"shot_groups": [[1, 2, 10]]}, ValueError),
    "shot_groups of strings": ({"a": BELL}, {"shot_groups": "0,1,10"}, TypeError),
    "execution_configuration not a mapping": (
        {"a": BELL},
        {"execution_configuration": [1]},
        TypeError,
    ),
    "invalid QASM": ({"a": "OPENQASM 2.0; qreg q[1]; foo q[0];"}, {}, ValueError),
    "shots=0": ({"a": BELL}, {"shots": 0}, ValueError),
}


@pytest.mark.parametrize(
    ("circuits", "options", "builtin"),
    [pytest.param(*case, id=name) for name, case in BAD_SUBMISSIONS.items()],
)
async def test_bad_submissions_are_asyncjob_errors_and_builtins(
    client: AsyncJobClient, circuits: Any, options: dict[str, Any], builtin: type[Exception]
) -> None:
    with pytest.raises(AsyncJobError) as info:
        await client.submit_circuits(circuits, **options)
    assert isinstance(info.value, builtin)
    family = InvalidInputTypeError if builtin is TypeError else ValueError
    assert isinstance(info.value, family)
    assert isinstance(
        info.value,
        InvalidInputTypeError | InvalidInputError | ConfigurationError,
    )


def test_unknown_client_option_is_an_asyncjob_type_error() -> None:
    with pytest.raises(InvalidInputTypeError, match="unknown option"):
        AsyncJobClient(BASE, TOKEN, polling_intervall=1)
    with pytest.raises(InvalidInputTypeError):
        AsyncJobClient(BASE, TOKEN, simulator_cluster=1)


@pytest.mark.parametrize("handle", ["", "..", ExecutionResult(job_id=None)])
async def test_unusable_handles_are_asyncjob_value_errors(
    client: AsyncJobClient, handle: Any
) -> None:
    with pytest.raises(InvalidInputError) as info:
        await client.poll_job_status(handle)
    assert isinstance(info.value, ValueError)


def test_the_error_tree_keeps_its_builtins() -> None:
    assert issubclass(QasmValidationError, InvalidInputError)
    assert issubclass(PayloadTooLargeError, InvalidInputError)
    assert issubclass(ExecutorUnavailableError, AsyncJobError)
    assert issubclass(ExecutorUnavailableError, ImportError)
    assert issubclass(ResumeError, AsyncJobError)
    assert issubclass(ResumeError, LookupError)
    assert issubclass(ClientClosedError, AsyncJobError)
    assert issubclass(ClientClosedError, RuntimeError)


@pytest.mark.parametrize(
    ("counts", "n_bits"),
    [({}, None), ({"01": 3}, 0), ({"012": 1}, 3), ({"01": 0}, 2)],
    ids=["empty without n_bits", "n_bits 0", "not a bitstring", "count 0"],
)
def test_histogram_encoder_input_errors_are_asyncjob_value_errors(
    counts: dict[str, int], n_bits: int | None
) -> None:
    with pytest.raises(InvalidInputError) as info:
        encode_histogram(counts, n_bits)
    assert isinstance(info.value, ValueError)
