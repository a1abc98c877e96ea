"""Value types, configuration and the error tree."""

from __future__ import annotations

import json
import pickle

import pytest

import asyncjob
from asyncjob import (
    AsyncJobClient,
    AsyncJobError,
    ConfigurationError,
    ExecutionResult,
    JobStatus,
    JobType,
    PollingPolicy,
    ProtocolError,
    Response,
    RetryPolicy,
    Timeout,
)
from asyncjob._config import ClientConfig

from .conftest import BASE, TOKEN


def test_every_public_name_is_exported() -> None:
    for name in asyncjob.__all__:
        assert hasattr(asyncjob, name), name


def test_job_status_values_and_terminal_set() -> None:
    assert [s.value for s in JobStatus] == [
        "PENDING",
        "SCHEDULED",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "INSUFFICIENT_CREDITS",
        "TIMED_OUT",
    ]
    terminal = {s for s in JobStatus if s.is_terminal}
    assert terminal == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.INSUFFICIENT_CREDITS,
        JobStatus.TIMED_OUT,
    }
    assert JobStatus.from_wire("running") is JobStatus.RUNNING
    with pytest.raises(ProtocolError, match="unknown job status 'NOPE'"):
        JobStatus.from_wire("NOPE")
    assert JobType("EXPECTATION") is JobType.EXPECTATION


def test_execution_result_round_trips() -> None:
    handle = ExecutionResult(job_id="j1")
    assert handle.is_async()
    done = handle.with_results([{"label": "a", "results": {"0": 1}}])
    assert not done.is_async() and handle.results is None
    assert pickle.loads(pickle.dumps(done)) == done
    assert ExecutionResult.from_dict(json.loads(json.dumps(done.to_dict()))) == done
    with pytest.raises(AttributeError):
        done.job_id = "x"  # type: ignore[misc]


def test_response_json() -> None:
    assert Response(200, text='{"a": 1}').json() == {"a": 1}
    with pytest.raises(ProtocolError):
        Response(200, text="<html>", method="GET", path="/x").json()


def test_errors_subclass_the_builtins_callers_catch() -> None:
    assert issubclass(asyncjob.QasmValidationError, ValueError)
    assert issubclass(asyncjob.RequestTimeoutError, TimeoutError)
    assert issubclass(asyncjob.AuthenticationError, asyncjob.HTTPStatusError)
    for name in asyncjob.__all__:
        obj = getattr(asyncjob, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, AsyncJobError), name


def test_errors_pickle() -> None:
    errors = [
        asyncjob.QasmValidationError("a", "bad", line=2, column=3, token="x"),
        asyncjob.ServerError(502, "Bad Gateway", method="GET", path="/p"),
        asyncjob.JobNotCompleteError("j", "RUNNING"),
        asyncjob.MaxRetriesReachedError("j", 3, "RUNNING"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)


def test_config_defaults() -> None:
    config = ClientConfig.build(BASE, TOKEN, 1000)
    assert config.timeout == Timeout(request=30.0, connect=10.0)
    assert config.polling == PollingPolicy(interval=3.0, max_retries=None, deadline=None)
    assert config.limits.max_payload_bytes == int(0.95 * 1024 * 1024)
    assert TOKEN not in repr(config)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCJOB_BASE_URL", "https://example.test/api")
    monkeypatch.setenv("ASYNCJOB_TOKEN", "env-token")
    client = AsyncJobClient()
    assert client.config.base_url == "https://example.test/api/"
    assert "env-token" not in repr(client)


def test_missing_url_or_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCJOB_BASE_URL", raising=False)
    monkeypatch.delenv("ASYNCJOB_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="ASYNCJOB_BASE_URL"):
        AsyncJobClient(token="t")
    with pytest.raises(ConfigurationError, match="ASYNCJOB_TOKEN"):
        AsyncJobClient(BASE)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/", "http://localhost/api", "http://[::1]:8/", "https://x.test/"]
)
def test_allowed_urls(url: str) -> None:
    AsyncJobClient(url, TOKEN)


def test_plain_http_to_remote_host_needs_opt_in() -> None:
    with pytest.raises(ConfigurationError, match="non-loopback"):
        AsyncJobClient("http://example.test/api", TOKEN)
    AsyncJobClient("http://example.test/api", TOKEN, allow_insecure_http=True)


@pytest.mark.parametrize("url", ["ftp://x/", "example.test", "https://user:pw@x.test/"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncJobClient(url, TOKEN)


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match=r"unknown option.*polling_intervall"):
        AsyncJobClient(BASE, TOKEN, polling_intervall=1)
    with pytest.raises(ConfigurationError):
        AsyncJobClient(BASE, TOKEN, polling_interval=0)
    with pytest.raises(ConfigurationError):
        AsyncJobClient(BASE, TOKEN, max_retries=0)
    with pytest.raises(ConfigurationError):
        AsyncJobClient(BASE, TOKEN, timeout="soon")
    client = AsyncJobClient(
        BASE,
        TOKEN,
        timeout=5,
        connect_timeout=1,
        retry=None,
        polling_interval=0.5,
        polling_backoff=2.0,
        max_polling_interval=4,
        upload_concurrency=2,
    )
    config = client.config
    assert config.timeout == Timeout(5.0, 1.0)
    assert config.retry == RetryPolicy.off()
    assert [config.polling.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert config.limits.upload_concurrency == 2


def test_token_with_newline_refused() -> None:
    with pytest.raises(ConfigurationError, match="line break"):
        AsyncJobClient(BASE, "abc\r\nX-Evil: 1")
