"""AsyncJobClient against mocked HTTP (aioresponses): endpoints, errors, retries, cancels."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import threading
from typing import Any

import anyio
import pytest
from yarl import URL

from asyncjob import (
    AsyncJobClient,
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    ExecutionCancelledError,
    ExecutionResult,
    JobFailedError,
    JobNotCompleteError,
    JobStatus,
    Limits,
    MaxRetriesReachedError,
    NotFoundError,
    PollingPolicy,
    ProtocolError,
    QasmValidationError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
)
from asyncjob._histogram import encode_histogram
from asyncjob._retry import should_retry

from .conftest import BASE, BELL, GHZ3, TOKEN, CallbackResult, aioresponses, fast_retry

INIT = BASE + "job/init/"
HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
)


def add_url(job: str = "j1") -> str:
    return f"{BASE}job/{job}/add_circuits/"


def status_url(job: str = "j1") -> str:
    return f"{BASE}job/{job}/status/"


def cancel_url(job: str = "j1") -> str:
    return f"{BASE}job/{job}/cancel/"


def results_url(job: str = "j1", offset: int = 0, limit: int = 100) -> str:
    return f"{BASE}job/{job}/resultsV2/?limit={limit}&offset={offset}"


def calls(m: aioresponses, method: str, url: str) -> list[Any]:
    return m.requests.get((method, URL(url)), [])


def sent_body(call: Any) -> dict[str, Any]:
    return json.loads(call.kwargs["data"])


def all_calls(m: aioresponses) -> int:
    return sum(len(v) for v in m.requests.values())


def histogram_entry(label: str, counts: dict[str, int]) -> dict[str, Any]:
    return {"label": label, "results": encode_histogram(counts)}


# -- submission ------------------------------------------------------------


async def test_submit_sends_init_then_one_finalized_chunk(client: AsyncJobClient) -> None:
    """A plain server ignores `first_chunk`: the chunk follows `job/init/`, with the same key."""
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"}, status=201)
        m.post(add_url(), payload={"job_id": "j1", "circuits_added": 2})
        handle = await client.submit_circuits({"bell": BELL, "ghz": GHZ3}, tag="t1")
        assert handle == ExecutionResult(job_id="j1")
        assert handle.is_async()
        (init,) = calls(m, "POST", INIT)
        init_body = sent_body(init)
        first = init_body.pop("first_chunk")
        assert init_body == {
            "tag": "t1",
            "job_type": "EXECUTE",
            "use_packing": False,
            "simulator_cluster": "qoro_maestro",
        }
        assert re.fullmatch(r"[0-9a-f-]{36}", init.kwargs["headers"]["Idempotency-Key"])
        assert init.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
        (chunk,) = calls(m, "POST", add_url())
        body = sent_body(chunk)
        chunk_key = chunk.kwargs["headers"]["Idempotency-Key"]
        assert first == {"idempotency_key": chunk_key, "body": body}
        assert body["finalized"] == "true" and body["mode"] == "append"
        assert body["shots"] == 1000
        decoded = {
            k: gzip.decompress(base64.b64decode(v)).decode() for k, v in body["circuits"].items()
        }
        assert decoded == {"bell": BELL, "ghz": GHZ3}


async def test_a_server_that_takes_the_first_chunk_gets_one_request(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1", "first_chunk": {"job_id": "j1"}}, status=201)
        handle = await client.submit_circuits({"bell": BELL})
        assert handle == ExecutionResult(job_id="j1")
        (init,) = calls(m, "POST", INIT)
        assert sent_body(init)["first_chunk"]["body"]["finalized"] == "true"
        assert all_calls(m) == 1


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_server_refusing_the_first_chunk_gets_plain_inits_from_then_on(
    client: AsyncJobClient, status: int
) -> None:
    with aioresponses() as m:
        m.post(INIT, status=status, payload={"detail": "extra field first_chunk"})
        m.post(INIT, payload={"job_id": "j1"}, status=201, repeat=True)
        m.post(add_url(), payload={"job_id": "j1"}, repeat=True)
        assert await client.submit_circuits({"bell": BELL}) == ExecutionResult(job_id="j1")
        assert await client.submit_circuits({"bell": BELL}) == ExecutionResult(job_id="j1")
        inits = calls(m, "POST", INIT)
        assert ["first_chunk" in sent_body(call) for call in inits] == [True, False, False]
        keys = [call.kwargs["headers"]["Idempotency-Key"] for call in inits]
        assert keys[0] == keys[1] != keys[2]  # the refused request is sent again, plain
        assert len(calls(m, "POST", add_url())) == 2


async def test_a_refused_chunk_does_not_turn_the_first_chunk_off(client: AsyncJobClient) -> None:
    """A server with the extension refuses one batch's chunk (400, as for a bad circuit).

    That says nothing about the field: the next batch still goes with its `job/init/`.
    """

    def init(url: URL, **kwargs: Any) -> CallbackResult:
        first = json.loads(kwargs["data"]).get("first_chunk")
        if first is not None and "bad" in first["body"]["circuits"]:
            return CallbackResult(status=400, payload={"detail": "circuit 'bad': ..."})
        answer: dict[str, Any] = {"job_id": "j1"}
        if first is not None:
            answer["first_chunk"] = {"job_id": "j1", "circuits_added": 1}
        return CallbackResult(status=201, payload=answer)

    def add(url: URL, **kwargs: Any) -> CallbackResult:
        if "bad" in json.loads(kwargs["data"])["circuits"]:
            return CallbackResult(status=400, payload={"detail": "circuit 'bad': ..."})
        return CallbackResult(payload={"job_id": "j1", "circuits_added": 1})

    with aioresponses() as m:
        m.post(INIT, callback=init, repeat=True)
        m.post(add_url(), callback=add, repeat=True)
        m.post(BASE + "job/j1/cancel/", payload={"job_id": "j1"}, repeat=True)
        with pytest.raises(BadRequestError, match="circuit 'bad'"):
            await client.submit_circuits({"bad": BELL})
        await client.submit_circuits({"good": BELL})
        last = calls(m, "POST", INIT)[-1]
        assert "first_chunk" in sent_body(last)
        assert len(calls(m, "POST", add_url())) == 1  # the bad chunk, sent alone once


async def test_an_init_refused_with_and_without_the_first_chunk_raises(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(INIT, status=400, payload={"detail": "unknown simulator_cluster"}, repeat=True)
        with pytest.raises(BadRequestError, match="unknown simulator_cluster"):
            await client.submit_circuits({"bell": BELL})
        inits = calls(m, "POST", INIT)
        assert ["first_chunk" in sent_body(call) for call in inits] == [True, False]
        assert not calls(m, "POST", add_url())
        with pytest.raises(BadRequestError):  # not taken for a server without the extension
            await client.submit_circuits({"bell": BELL})
        assert "first_chunk" in sent_body(calls(m, "POST", INIT)[2])


@pytest.mark.parametrize(
    ("circuits", "options", "error"),
    [
        (BELL, {}, TypeError),
        ({}, {}, ValueError),
        ({"a": "OPENQASM 2.0;\nqreg q[2];\nh q[5];\n"}, {}, QasmValidationError),
        ({"a": BELL}, {"shots": 0}, ValueError),
        ({"a": BELL}, {"bogus": 1}, TypeError),
    ],
)
async def test_bad_input_sends_nothing(
    client: AsyncJobClient, circuits: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    with aioresponses() as m:
        with pytest.raises(error):
            await client.submit_circuits(circuits, **options)
        assert all_calls(m) == 0


async def test_qasm_error_names_label_line_and_column(client: AsyncJobClient) -> None:
    bad = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0]\ncx q[0],q[1];\n'
    with aioresponses() as m, pytest.raises(QasmValidationError) as info:
        await client.submit_circuits({"good": BELL, "broken": bad})
    assert info.value.label == "broken"
    assert info.value.line is not None and info.value.column is not None
    assert "broken" in str(info.value)
    assert all_calls(m) == 0


async def test_chunks_upload_concurrently_and_final_goes_last() -> None:
    circuits = {f"c{i:03d}": BELL + f"// pad {i} " + "x" * 200 + "\n" for i in range(60)}
    in_flight = 0
    peak = 0
    finished = 0
    release = anyio.Event()
    order: list[str] = []

    async def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        nonlocal in_flight, peak, finished
        body = json.loads(kwargs["data"])
        order.append(body["finalized"])
        if body["finalized"] == "true":
            assert finished == len(order) - 1, "final chunk sent before the others finished"
            return CallbackResult(payload={"job_id": "j1"})
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 3:
            release.set()
        with anyio.move_on_after(1):
            await release.wait()
        in_flight -= 1
        finished += 1
        return CallbackResult(payload={"job_id": "j1"})

    async with AsyncJobClient(
        BASE, TOKEN, limits=Limits(max_payload_bytes=2_000, upload_concurrency=3)
    ) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), callback=on_chunk, repeat=True)
            await client.submit_circuits(circuits)
            chunks = calls(m, "POST", add_url())
    assert len(chunks) > 4
    assert peak == 3
    assert order[-1] == "true" and order.count("true") == 1
    labels = sorted(label for c in chunks for label in sent_body(c)["circuits"])
    assert labels == sorted(circuits)


@pytest.mark.parametrize("ham", [False, True])
async def test_the_final_chunk_of_many_carries_only_the_last_few_circuits(ham: bool) -> None:
    # Whatever the greedy split leaves for the last chunk, at most 8 circuits go last.
    for n in range(200, 216):
        circuits = {f"c{i:03d}": BELL + f"// {i} " + "z" * 40 + "\n" for i in range(n)}
        options: dict[str, Any] = {"shot_groups": [[0, 150, 100], [150, n, 7]]}
        if ham:
            options = {"ham_ops": "ZZ|XX", "circuit_ham_map": [[0, 120], [120, n]]}
        async with AsyncJobClient(BASE, TOKEN, limits=Limits(chunk_bytes=8_000)) as client:
            with aioresponses() as m:
                m.post(INIT, payload={"job_id": "j1"})
                m.post(add_url(), payload={}, repeat=True)
                await client.submit_circuits(circuits, **options)
                chunks = [sent_body(c) for c in calls(m, "POST", add_url())]
        assert len(chunks) > 3
        assert [c["finalized"] for c in chunks] == ["false"] * (len(chunks) - 1) + ["true"]
        final = list(chunks[-1]["circuits"])
        assert 1 <= len(final) <= 8 and final == list(circuits)[-len(final) :]
        # Every chunk near its 8,000-byte target (the estimate leaves out a few bytes).
        assert all(len(json.dumps(c, separators=(",", ":"))) <= 8_200 for c in chunks)
        if ham:
            assert [label for c in chunks for label in c["circuits"]] == list(circuits)
        else:
            assert sorted(label for c in chunks for label in c["circuits"]) == sorted(circuits)
            assert chunks[-1]["shot_groups"] == [[0, len(final), 7]]


async def test_a_batch_in_one_chunk_is_one_request(client: AsyncJobClient) -> None:
    circuits = {f"c{i:03d}": BELL for i in range(50)}
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), payload={}, repeat=True)
        await client.submit_circuits(circuits)
        chunks = [sent_body(c) for c in calls(m, "POST", add_url())]
    assert len(chunks) == 1 and chunks[0]["finalized"] == "true"
    assert list(chunks[0]["circuits"]) == list(circuits)


async def test_chunks_go_out_while_the_rest_of_the_batch_is_compressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncjob._encode as encode_module

    circuits = {f"c{i:04d}": BELL + f"// {i} " + "y" * 100 + "\n" for i in range(600)}
    last = circuits["c0599"]
    first_chunk_sent = threading.Event()
    compressed: list[str] = []
    encode_circuit = encode_module.encode_circuit

    def encode(source: str) -> str:
        # The last circuit waits for a chunk to be on the wire: a client that
        # compressed the whole batch before sending anything would never get past this.
        if source == last and not first_chunk_sent.wait(10):
            raise AssertionError("nothing was sent while the batch was being compressed")
        compressed.append(source)
        return encode_circuit(source)

    def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        first_chunk_sent.set()
        return CallbackResult(payload={})

    monkeypatch.setattr(encode_module, "encode_circuit", encode)
    async with AsyncJobClient(BASE, TOKEN, limits=Limits(max_payload_bytes=5_000)) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), callback=on_chunk, repeat=True)
            await client.submit_circuits(circuits)
            chunks = [sent_body(c) for c in calls(m, "POST", add_url())]
    assert sorted(compressed) == sorted(circuits.values())
    assert sorted(label for c in chunks for label in c["circuits"]) == sorted(circuits)
    assert [c["finalized"] for c in chunks].count("true") == 1
    assert chunks[-1]["finalized"] == "true"


async def test_a_failure_while_compressing_cancels_the_job_and_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncjob._encode as encode_module

    circuits = {f"c{i:04d}": BELL + f"// {i} " + "y" * 100 + "\n" for i in range(600)}
    last = circuits["c0599"]
    encode_circuit = encode_module.encode_circuit
    first_chunk_sent = threading.Event()

    def encode(source: str) -> str:
        if source == last:
            # Fail once the job exists (validation ends before compression does).
            first_chunk_sent.wait(10)
            raise MemoryError("no room for the last circuit")
        return encode_circuit(source)

    def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        first_chunk_sent.set()
        return CallbackResult(payload={})

    monkeypatch.setattr(encode_module, "encode_circuit", encode)
    async with AsyncJobClient(BASE, TOKEN, limits=Limits(max_payload_bytes=5_000)) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), callback=on_chunk, repeat=True)
            m.post(cancel_url(), payload={"status": "cancelled"})
            with pytest.raises(MemoryError, match="last circuit"):
                await client.submit_circuits(circuits)
            assert first_chunk_sent.is_set()
            assert len(calls(m, "POST", cancel_url())) == 1
            finals = [sent_body(c)["finalized"] for c in calls(m, "POST", add_url())]
        journal = client.journal
        assert journal is not None
    (entry,) = journal.entries()  # closing the client wrote the journal out
    assert "true" not in finals  # never finalized with part of the batch
    assert entry.state == "abandoned" and not entry.complete


async def test_each_chunk_is_serialised_once_for_the_journal_and_the_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A chunk's JSON (up to a megabyte) is built once: the journal keeps it, the upload too."""
    circuits = {f"c{i:04d}": BELL + f"// {i} " + "y" * 100 + "\n" for i in range(300)}
    serialised: list[int] = []
    encode = json.JSONEncoder.encode  # what json.dumps and the client's own encoder call

    def counting(self: json.JSONEncoder, value: Any) -> str:
        if isinstance(value, dict) and value.get("circuits"):  # not the size probes
            serialised.append(len(value["circuits"]))
        return encode(self, value)

    monkeypatch.setattr(json.JSONEncoder, "encode", counting)
    journal = str(tmp_path / "journal.sqlite3")
    limits = Limits(max_payload_bytes=5_000)
    async with AsyncJobClient(BASE, TOKEN, limits=limits, journal=journal) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), payload={}, repeat=True)
            await client.submit_circuits(circuits)
            chunks = [sent_body(c) for c in calls(m, "POST", add_url())]
    assert len(chunks) > 3
    assert sorted(serialised) == sorted(len(c["circuits"]) for c in chunks)


async def test_chunks_go_strictly_in_order_with_circuit_ham_map() -> None:
    circuits = {f"c{i:03d}": BELL + "// " + "x" * 300 + "\n" for i in range(30)}
    in_flight = 0
    peak = 0

    async def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return CallbackResult(payload={"job_id": "j1"})

    async with AsyncJobClient(
        BASE, TOKEN, limits=Limits(max_payload_bytes=2_000, upload_concurrency=8)
    ) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), callback=on_chunk, repeat=True)
            await client.submit_circuits(
                circuits, ham_ops="ZZ|XX", circuit_ham_map=[[0, 10], [10, 30]]
            )
            chunks = calls(m, "POST", add_url())
    assert peak == 1
    labels = [label for c in chunks for label in sent_body(c)["circuits"]]
    assert labels == list(circuits)
    assert all("observables" in sent_body(c) for c in chunks)


async def test_failure_after_init_cancels_the_job(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), status=400, payload={"detail": "bad chunk"})
        m.post(cancel_url(), payload={"status": "cancelled"})
        with pytest.raises(BadRequestError, match="bad chunk"):
            await client.submit_circuits({"a": BELL})
        assert len(calls(m, "POST", cancel_url())) == 1


async def test_event_set_before_submit_sends_nothing(client: AsyncJobClient) -> None:
    event = threading.Event()
    event.set()
    with aioresponses() as m, pytest.raises(ExecutionCancelledError):
        await client.submit_circuits({"a": BELL}, cancellation_event=event)
    assert all_calls(m) == 0


async def test_event_set_during_upload_cancels_created_job(client: AsyncJobClient) -> None:
    event = threading.Event()

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        event.set()
        await anyio.sleep(30)
        raise AssertionError("not reached")

    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), callback=hang)
        m.post(cancel_url(), payload={"status": "cancelled"})
        with anyio.fail_after(5), pytest.raises(ExecutionCancelledError):
            await client.submit_circuits({"a": BELL}, cancellation_event=event)
        await client._ctx.cleanups.wait()  # a cancelled call leaves the cleanup to a task
        assert len(calls(m, "POST", cancel_url())) == 1


async def test_cancel_scope_during_upload_leaves_no_orphan_and_client_usable(
    client: AsyncJobClient,
) -> None:
    started = anyio.Event()

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        started.set()
        await anyio.sleep(30)
        raise AssertionError("not reached")

    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), callback=hang)
        m.post(cancel_url(), payload={"status": "cancelled"})
        m.get(status_url(), payload={"status": "RUNNING"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.submit_circuits, {"a": BELL})
            await started.wait()
            tg.cancel_scope.cancel()
        await client._ctx.cleanups.wait()  # a cancelled call leaves the cleanup to a task
        assert len(calls(m, "POST", cancel_url())) == 1
        assert await client.poll_job_status(ExecutionResult(job_id="j1")) is JobStatus.RUNNING


async def test_init_is_retried_with_the_same_idempotency_key(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, status=503, body=HTML_502, content_type="text/html")
        m.post(INIT, exception=__import__("aiohttp").ServerDisconnectedError())
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), payload={})
        await client.submit_circuits({"a": BELL})
        inits = calls(m, "POST", INIT)
        assert len(inits) == 3
        assert len({c.kwargs["headers"]["Idempotency-Key"] for c in inits}) == 1


async def test_retry_after_is_honoured(
    client: AsyncJobClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncjob")
    with aioresponses() as m:
        m.get(status_url(), status=429, headers={"Retry-After": "0.05"}, payload={})
        m.get(status_url(), payload={"status": "PENDING"})
        assert await client.poll_job_status("j1") is JobStatus.PENDING
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 1 and waits[0].endswith("retrying in 0.05 s")


async def test_backoff_grows_exponentially_with_full_jitter() -> None:
    policy = RetryPolicy(initial=1.0, max_backoff=5.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(initial=1.0, max_backoff=5.0)
    samples = [jittered.backoff(3) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples) and len(set(samples)) > 100
    assert RetryPolicy().backoff(1, retry_after=30) == 30.0
    assert RetryPolicy().delay(1, retry_after=1000) is None  # past max_retry_after (60 s)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
async def test_client_errors_are_not_retried(client: AsyncJobClient, status: int) -> None:
    with aioresponses() as m:
        m.get(status_url(), status=status, payload={"detail": "nope"}, repeat=True)
        with pytest.raises(Exception) as info:
            await client.poll_job_status("j1")
        assert len(calls(m, "GET", status_url())) == 1
    assert getattr(info.value, "status_code", None) == status


def test_post_without_idempotency_key_is_not_retried() -> None:
    assert not should_retry("POST", "job/j1/other/", None, 503)
    assert should_retry("POST", "job/j1/other/", "key", 503)


async def test_server_error_message_is_short_and_html_free(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(status_url(), status=502, body=HTML_502, content_type="text/html", repeat=True)
        with pytest.raises(ServerError) as info:
            await client.poll_job_status("j1")
        assert len(calls(m, "GET", status_url())) == 4
    message = str(info.value)
    assert "<" not in message and "502 Bad Gateway" in message
    assert info.value.status_code == 502


async def test_auth_error_never_shows_the_token(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(status_url(), status=401, payload={"detail": f"bad token {TOKEN}"})
        with pytest.raises(AuthenticationError) as info:
            await client.poll_job_status("j1")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert isinstance(info.value, PermissionError)


async def test_timeout_is_retried_then_raised() -> None:
    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        await anyio.sleep(30)
        raise AssertionError("not reached")

    async with AsyncJobClient(BASE, TOKEN, timeout=0.05, retry=fast_retry()) as client:
        with aioresponses() as m:
            m.get(status_url(), callback=hang, repeat=True)
            with pytest.raises(RequestTimeoutError) as info:
                await client.poll_job_status("j1")
            assert len(calls(m, "GET", status_url())) == 4
    assert isinstance(info.value, TimeoutError)


async def test_connection_errors_are_retried_then_raised(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        # aioresponses answers unmatched URLs with a connection error
        with pytest.raises(ConnectionFailedError):
            await client.poll_job_status("j1")
        assert len(calls(m, "GET", status_url())) == 4


async def test_redirects_are_not_followed(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(status_url(), status=302, headers={"Location": "https://evil.example/x"})
        with pytest.raises(ProtocolError, match="redirect"):
            await client.poll_job_status("j1")
        assert all_calls(m) == 1


async def test_oversized_response_is_refused() -> None:
    async with AsyncJobClient(BASE, TOKEN, limits=Limits(max_response_bytes=1000)) as client:
        with aioresponses() as m:
            m.get(status_url(), body=json.dumps({"status": "RUNNING", "x": "y" * 5000}))
            with pytest.raises(ProtocolError, match="limit"):
                await client.poll_job_status("j1")


# -- polling ---------------------------------------------------------------


async def test_single_poll(client: AsyncJobClient) -> None:
    progress: list[tuple[int, str]] = []
    with aioresponses() as m:
        m.get(status_url(), payload={"status": "RUNNING"})
        status = await client.poll_job_status(
            ExecutionResult(job_id="j1"), progress_callback=lambda *a: progress.append(a)
        )
    assert status is JobStatus.RUNNING and progress == [(1, "RUNNING")]


async def test_poll_loop_reports_progress_and_completion(
    client: AsyncJobClient, caplog: pytest.LogCaptureFixture
) -> None:
    progress: list[tuple[int, str]] = []
    finals: list[Any] = []
    with aioresponses() as m:
        for status in ("PENDING", "SCHEDULED", "RUNNING"):
            m.get(status_url(), payload={"status": status})
        m.get(status_url(), payload={"status": "COMPLETED", "run_time": 1.5})
        with caplog.at_level("INFO", logger="asyncjob"):
            status = await client.poll_job_status(
                "j1",
                loop_until_complete=True,
                on_complete=finals.append,
                progress_callback=lambda *a: progress.append(a),
            )
    assert status is JobStatus.COMPLETED
    assert progress == [(1, "PENDING"), (2, "SCHEDULED"), (3, "RUNNING")]
    assert len(finals) == 1 and finals[0].json()["run_time"] == 1.5
    assert sum("j1: " in r.getMessage() for r in caplog.records) == 4
    assert TOKEN not in caplog.text


async def test_poll_quiet_when_not_verbose(
    client: AsyncJobClient, caplog: pytest.LogCaptureFixture
) -> None:
    with aioresponses() as m, caplog.at_level("INFO", logger="asyncjob"):
        m.get(status_url(), payload={"status": "FAILED"})
        assert await client.poll_job_status("j1", verbose=False) is JobStatus.FAILED
    assert not [r for r in caplog.records if r.levelname == "INFO"]


async def test_max_retries_ends_polling() -> None:
    async with AsyncJobClient(
        BASE, TOKEN, polling=PollingPolicy(interval=0.001, max_retries=3, watch=False)
    ) as client:
        with aioresponses() as m:
            m.get(status_url(), payload={"status": "RUNNING"}, repeat=True)
            with pytest.raises(MaxRetriesReachedError, match="3 polls"):
                await client.poll_job_status("j1", loop_until_complete=True)
            assert len(calls(m, "GET", status_url())) == 3


async def test_deadline_ends_polling() -> None:
    async with AsyncJobClient(
        BASE, TOKEN, polling=PollingPolicy(interval=0.01, deadline=0.05, watch=False)
    ) as client:
        with aioresponses() as m:
            m.get(status_url(), payload={"status": "RUNNING"}, repeat=True)
            with pytest.raises(MaxRetriesReachedError):
                await client.poll_job_status("j1", loop_until_complete=True)


@pytest.mark.parametrize("body", [{"status": "EXPLODED"}, {"status": 3}, {}, ["RUNNING"]])
async def test_bad_status_is_protocol_error(client: AsyncJobClient, body: Any) -> None:
    with aioresponses() as m, pytest.raises(ProtocolError):
        m.get(status_url(), payload=body)
        await client.poll_job_status("j1")


async def test_truncated_json_is_protocol_error(client: AsyncJobClient) -> None:
    with aioresponses() as m, pytest.raises(ProtocolError, match="not JSON"):
        m.get(status_url(), body='{"status": "RUN')
        await client.poll_job_status("j1")


async def test_event_ends_a_hanging_poll_without_cancelling_the_job(
    client: AsyncJobClient,
) -> None:
    event = threading.Event()

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        event.set()
        await anyio.sleep(30)
        raise AssertionError("not reached")

    with aioresponses() as m:
        m.get(status_url(), callback=hang)
        with anyio.fail_after(2), pytest.raises(ExecutionCancelledError):
            await client.poll_job_status("j1", loop_until_complete=True, cancellation_event=event)
        assert calls(m, "POST", cancel_url()) == []


# -- results ---------------------------------------------------------------


async def test_results_pages_fetched_concurrently_in_submission_order() -> None:
    labels = [f"c{i}" for i in range(250)]
    entries = [histogram_entry(label, {"00": 3, "11": 5}) for label in labels]
    shuffled = entries[::-1]
    in_flight = 0
    peak = 0
    gate = anyio.Event()

    def page(offset: int) -> dict[str, Any]:
        nxt = None if offset + 100 >= 250 else results_url(offset=offset + 100)
        return {
            "count": 250,
            "next": nxt,
            "previous": None,
            "results": shuffled[offset : offset + 100],
        }

    async def later_page(url: URL, **kwargs: Any) -> CallbackResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 2:
            gate.set()
        with anyio.move_on_after(1):
            await gate.wait()
        in_flight -= 1
        return CallbackResult(payload=page(int(url.query["offset"])))

    async with AsyncJobClient(BASE, TOKEN) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), payload={})
            await client.submit_circuits({label: BELL for label in labels})
            m.get(results_url(offset=0), payload=page(0))
            m.get(results_url(offset=100), callback=later_page)
            m.get(results_url(offset=200), callback=later_page)
            result = await client.get_job_results(ExecutionResult(job_id="j1"))
    assert peak == 2
    assert result.job_id == "j1" and result.results is not None
    assert [r["label"] for r in result.results] == labels
    assert result.results[0]["results"] == {"00": 3, "11": 5}


async def test_results_follow_next_without_count(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(
            results_url(),
            payload={"next": results_url(offset=1), "results": [histogram_entry("a", {"0": 1})]},
        )
        m.get(
            results_url(offset=1),
            payload={"next": None, "results": [{"label": "b", "results": {"value": 0.5}}]},
        )
        result = await client.get_job_results("j1")
    assert result.results == [
        {"label": "a", "results": {"0": 1}},
        {"label": "b", "results": {"value": 0.5}},
    ]


async def test_next_link_to_another_host_is_refused(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(
            results_url(),
            payload={"next": "https://evil.example/api/job/j1/resultsV2/?offset=1", "results": []},
        )
        with pytest.raises(ProtocolError, match="outside the base URL"):
            await client.get_job_results("j1")
        assert all_calls(m) == 1


@pytest.mark.parametrize(
    "link",
    [
        "https://alias.example/api/job/j1/resultsV2/?offset=1",  # another name of the server
        BASE.replace("http://", "https://") + "job/j1/resultsV2/?offset=1",  # other scheme
    ],
)
async def test_next_link_is_not_checked_when_count_pages_by_offset(
    client: AsyncJobClient, link: str
) -> None:
    """Finding 7 of issue 13: with `count` known the link is never followed."""
    with aioresponses() as m:
        m.get(
            results_url(),
            payload={"count": 2, "next": link, "results": [histogram_entry("a", {"0": 1})]},
        )
        m.get(
            results_url(offset=1, limit=1),  # the first page's length sets the page size
            payload={"count": 2, "next": None, "results": [histogram_entry("b", {"1": 2})]},
        )
        result = await client.get_job_results("j1")
    assert result.results == [
        {"label": "a", "results": {"0": 1}},
        {"label": "b", "results": {"1": 2}},
    ]


@pytest.mark.parametrize(
    ("returned", "message"),
    [(["a"], "missing"), (["a", "b", "z"], "unknown"), (["a", "a", "b"], "twice")],
)
async def test_results_must_match_submitted_labels(
    client: AsyncJobClient, returned: list[str], message: str
) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), payload={})
        handle = await client.submit_circuits({"a": BELL, "b": BELL})
        m.get(
            results_url(),
            payload={"next": None, "results": [histogram_entry(x, {"1": 1}) for x in returned]},
        )
        with pytest.raises(ProtocolError, match=message):
            await client.get_job_results(handle)


async def test_corrupt_histogram_is_protocol_error(client: AsyncJobClient) -> None:
    with aioresponses() as m, pytest.raises(ProtocolError):
        bad = {"encoding": "qh1", "n_bits": 2, "payload": "UUhYAgLoBwIAAwMBAAIC+QPrAw=="}
        m.get(results_url(), payload={"next": None, "results": [{"label": "a", "results": bad}]})
        await client.get_job_results("j1")


async def test_results_before_completion_say_not_complete(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(results_url(), status=400, payload={"detail": "Job not completed"})
        m.get(status_url(), payload={"status": "RUNNING"})
        with pytest.raises(JobNotCompleteError, match="RUNNING"):
            await client.get_job_results("j1")


# -- cancel and handles ------------------------------------------------------


async def test_cancel_job(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(cancel_url(), payload={"status": "cancelled", "job_id": "j1"})
        m.post(cancel_url(), status=409, payload={"detail": "already terminal"})
        first = await client.cancel_job(ExecutionResult(job_id="j1"))
        second = await client.cancel_job(ExecutionResult(job_id="j1"))
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert second.status_code == 409


async def test_cancel_is_retried_on_503(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(cancel_url(), status=503)
        m.post(cancel_url(), payload={"status": "cancelled"})
        assert (await client.cancel_job("j1")).status_code == 200


async def test_cancel_unknown_job_is_not_found(client: AsyncJobClient) -> None:
    with aioresponses() as m, pytest.raises(NotFoundError):
        m.post(cancel_url("nope"), status=404, payload={"detail": "Not found"})
        await client.cancel_job("nope")


@pytest.mark.parametrize("job_id", [None, "", ".", ".."])
async def test_handles_without_a_usable_job_id(client: AsyncJobClient, job_id: Any) -> None:
    with aioresponses() as m, pytest.raises(ValueError):
        await client.poll_job_status(ExecutionResult(job_id=job_id))
    assert all_calls(m) == 0


async def test_job_id_is_escaped_into_one_path_segment(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(re.compile(r".*"), payload={"status": "RUNNING"})
        await client.poll_job_status("a/../b?x=1")
        ((_method, url),) = m.requests
    assert url.raw_path == "/api/job/a%2F..%2Fb%3Fx%3D1/status/"


# -- conveniences ------------------------------------------------------------


async def test_run_returns_results(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), payload={})
        m.get(status_url(), payload={"status": "RUNNING"})
        m.get(status_url(), payload={"status": "COMPLETED"})
        m.get(
            results_url(),
            payload={"count": 1, "next": None, "results": [histogram_entry("a", {"11": 4})]},
        )
        result = await client.run({"a": BELL})
    assert result.results == [{"label": "a", "results": {"11": 4}}]


async def test_run_raises_when_the_job_fails(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": "j1"})
        m.post(add_url(), payload={})
        m.get(status_url(), payload={"status": "FAILED"})
        with pytest.raises(JobFailedError, match="FAILED"):
            await client.run({"a": BELL})


async def test_as_completed_yields_each_job_once(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.get(status_url("j1"), payload={"status": "RUNNING"})
        m.get(status_url("j1"), payload={"status": "COMPLETED"})
        m.get(status_url("j2"), payload={"status": "FAILED"})
        m.get(
            results_url("j1"), payload={"next": None, "results": [histogram_entry("a", {"1": 2})]}
        )
        m.get(status_url("j3"), status=404, payload={"detail": "gone"})
        handles = [ExecutionResult(job_id=j) for j in ("j1", "j2", "j3")]
        async with client.as_completed(handles) as outcomes:
            got = {o.handle.job_id: o async for o in outcomes}
    assert got["j1"].status is JobStatus.COMPLETED
    assert got["j1"].result is not None and got["j1"].result.results == [
        {"label": "a", "results": {"1": 2}}
    ]
    assert got["j2"].status is JobStatus.FAILED and got["j2"].result is None
    assert isinstance(got["j3"].error, NotFoundError)


async def test_init_interrupted_by_cancellation_is_found_and_cancelled(
    client: AsyncJobClient,
) -> None:
    started = anyio.Event()
    keys: list[str] = []

    async def init(url: URL, **kwargs: Any) -> CallbackResult:
        keys.append(kwargs["headers"]["Idempotency-Key"])
        if len(keys) == 1:
            started.set()
            await anyio.sleep(30)
        return CallbackResult(payload={"job_id": "j1"})

    with aioresponses() as m:
        m.post(INIT, callback=init, repeat=True)
        m.post(cancel_url(), payload={"status": "cancelled"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.submit_circuits, {"a": BELL})
            await started.wait()
            tg.cancel_scope.cancel()
        await client.aclose()  # waits for the background cleanup that finds the job
        assert len(keys) == 2
        assert keys[0] == keys[1]
        assert len(calls(m, "POST", cancel_url())) == 1
        assert calls(m, "POST", add_url()) == []


async def test_unusable_job_id_from_server_is_protocol_error(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, payload={"job_id": ".."})
        with pytest.raises(ProtocolError, match="unusable job id"):
            await client.submit_circuits({"a": BELL})
        assert all_calls(m) == 1


async def test_token_cut_short_in_a_message_is_still_scrubbed() -> None:
    token = "T" * 20 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
    async with AsyncJobClient(BASE, token) as client:
        with aioresponses() as m:
            m.get(status_url(), payload={"status": f"weird {token} status"})
            with pytest.raises(ProtocolError) as info:
                await client.poll_job_status("j1")
    assert token[:12] not in str(info.value)
    assert "***" in str(info.value)


async def test_an_unusable_journal_is_skipped_not_fatal(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    async with AsyncJobClient(BASE, TOKEN, journal=blocker / "sub" / "j.sqlite3") as client:
        with aioresponses() as m, caplog.at_level("WARNING", logger="asyncjob"):
            m.post(INIT, payload={"job_id": "j1"})
            m.post(add_url(), payload={})
            m.get(status_url(), payload={"status": "RUNNING"})
            handle = await client.submit_circuits({"a": BELL})
            assert await client.poll_job_status(handle) is JobStatus.RUNNING
        assert client.journal is None
    assert sum("cannot be opened" in r.getMessage() for r in caplog.records) == 1


async def test_a_refused_init_is_journaled_as_abandoned(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(INIT, status=401, payload={"detail": "bad token"})
        with pytest.raises(AuthenticationError):
            await client.submit_circuits({"a": BELL})
    journal = client.journal
    assert journal is not None
    await client.aclose()  # the journal is written off the event loop: closing flushes it
    (entry,) = journal.entries()
    assert entry.state == "abandoned"
    assert not entry.interrupted


async def test_as_completed_reports_a_bad_handle_instead_of_raising(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.get(status_url(), payload={"status": "COMPLETED"})
        m.get(results_url(), payload={"next": None, "results": [histogram_entry("a", {"1": 2})]})
        handles = [ExecutionResult(job_id="j1"), ExecutionResult(results=[])]
        async with client.as_completed(handles) as outcomes:
            got = [o async for o in outcomes]
    errors = [o.error for o in got if o.error is not None]
    assert len(got) == 2
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)


async def test_deadline_bounds_a_request_in_flight() -> None:
    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        await anyio.sleep(30)
        raise AssertionError("not reached")

    async with AsyncJobClient(BASE, TOKEN, timeout=60, deadline=0.1) as client:
        with aioresponses() as m:
            m.get(status_url(), callback=hang)
            with anyio.fail_after(5), pytest.raises(MaxRetriesReachedError):
                await client.poll_job_status("j1", loop_until_complete=True)
