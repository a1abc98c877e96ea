"""Bad input: each mistake is a clear, typed error, raised at once, and nothing is sent.

"Nothing is sent" is checked on the server side: the local scheduler's
`requests_total` does not move. Every call is bounded by `anyio.fail_after` (a
bound against hangs, not a timing assertion).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from aiohttp import web

from asyncjob import (
    AsyncJobClient,
    ConfigurationError,
    ExecutionResult,
    InvalidInputTypeError,
    JobBackend,
    NotFoundError,
    PayloadTooLargeError,
    QasmValidationError,
)
from asyncjob.local import LocalScheduler, ThreadedScheduler

from ..conftest import BELL, GHZ3, fast_retry
from .conftest import TOKEN, Stub, StubFactory

H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


@pytest.fixture
async def client(scheduler: LocalScheduler) -> AsyncIterator[AsyncJobClient]:
    async with AsyncJobClient(scheduler.base_url, TOKEN, retry=fast_retry()) as c:
        yield c


async def refused(
    scheduler: LocalScheduler, call: Callable[[], Awaitable[Any]], error: type[BaseException]
) -> BaseException:
    """`call()` raises `error` at once and the scheduler receives no request."""
    before = scheduler.stats.requests_total
    with anyio.fail_after(30), pytest.raises(error) as info:
        await call()
    assert scheduler.stats.requests_total == before, "a request was sent"
    return info.value


# -- circuits -----------------------------------------------------------------------------

INVALID_QASM = {
    "missing semicolon": H2 + "qreg q[2];\nh q[0]\ncx q[0],q[1];\n",
    "unknown gate": H2 + "qreg q[2];\nfoo q[0];\n",
    "index out of range": H2 + "qreg q[2];\nh q[5];\n",
    "undeclared register": H2 + "qreg q[2];\nh r[0];\n",
    "unsupported version": "OPENQASM 4.0;\nqreg q[1];\n",
    "unbalanced parentheses": H2 + "qreg q[1];\nrx((0.5) q[0];\n",
    "missing parameter": H2 + "qreg q[1];\nrx q[0];\n",
    "extra parameter": H2 + "qreg q[1];\nrx(0.1, 0.2) q[0];\n",
    "missing qubit": H2 + "qreg q[2];\ncx q[0];\n",
    "same qubit twice": H2 + "qreg q[2];\ncx q[0],q[0];\n",
    "register declared twice": H2 + "qreg q[2];\nqreg q[3];\n",
    "zero-size register": H2 + "qreg q[0];\n",
    "measure width mismatch": H2 + "qreg q[2];\ncreg c[1];\nmeasure q -> c;\n",
    "broadcast size mismatch": H2 + "qreg a[2];\nqreg b[3];\ncx a, b;\n",
    "huge index": H2 + "qreg q[2];\nh q[99999999999999999999];\n",
    "gate on a classical bit": H2 + "qreg q[2];\ncreg c[2];\ncx q[0],c[1];\n",
    "measure into a qubit": H2 + "qreg q[2];\nmeasure q[0] -> q[1];\n",
    "header twice": "OPENQASM 2.0;\n" + BELL,
    "header after code": 'include "qelib1.inc";\nOPENQASM 2.0;\nqreg q[1];\n',
    "unterminated comment": H2 + "qreg q[1];\n/* never closed\nh q[0];\n",
    "unterminated include": 'OPENQASM 2.0;\ninclude "qelib1.inc;\nqreg q[1];\n',
    "trailing garbage": BELL + "}}}\n",
    "qasm3 syntax error": H3 + "qubit[2] q;\nfor int i in [0:1 { h q[i]; }\n",
    "qasm3 undeclared register": H3 + "qubit[2] q;\nh r[0];\n",
    "NUL byte": BELL.replace("h q[0];", "h q[0];\x00"),
    "binary junk": "\x00\x01\x02\x03\xff\xfe",
    "an HTML page": "<html><body>502 Bad Gateway</body></html>",
    "JSON": '{"circuit": "h q[0]"}',
    "Python": "print('hello')\n",
    "a 140 kB line": H2 + "qreg q[1];\n" + "h q[0] " * 20000 + ";\n",
    "lone surrogate (not UTF-8)": BELL + "// \ud800\n",
    "empty": "",
    "blank": "  \n\t\n",
    "comments only": "// nothing\n/* here */\n",
    "negative index in OpenQASM 2": H2 + "qreg q[2];\nh q[-1];\n",
    "gate body uses an undeclared qubit": H3 + "gate g a { h b; }\nqubit q;\ng q;\n",
}


@pytest.mark.parametrize(
    "source", [pytest.param(src, id=name) for name, src in INVALID_QASM.items()]
)
async def test_invalid_qasm_is_named_and_nothing_is_sent(
    client: AsyncJobClient, scheduler: LocalScheduler, source: str
) -> None:
    error = await refused(
        scheduler, lambda: client.submit_circuits({"good": BELL, "bad": source}), ValueError
    )
    assert isinstance(error, QasmValidationError)
    assert error.label == "bad" and "'bad'" in str(error)
    if source.strip() and "empty" not in error.reason:
        assert error.line is not None and error.column is not None


async def test_invalid_circuit_deep_in_a_large_batch(
    client: AsyncJobClient, scheduler: LocalScheduler
) -> None:
    """A batch large enough to be validated off the event loop names the bad circuit too."""
    circuits = {f"c{i:03d}": BELL if i % 2 else GHZ3 for i in range(200)}
    circuits["c137"] = H2 + "qreg q[2];\nh q[2];\n"
    error = await refused(scheduler, lambda: client.submit_circuits(circuits), ValueError)
    assert isinstance(error, QasmValidationError) and error.label == "c137"
    assert (error.line, error.column) == (4, 3)


@pytest.mark.parametrize("position", [0, 64, 128, 299])
async def test_a_circuit_that_is_not_utf8_text_is_named_in_a_large_batch(
    client: AsyncJobClient, scheduler: LocalScheduler, position: int
) -> None:
    """A lone surrogate fails compression before its check: the check's error is raised."""
    circuits = {f"c{i:03d}": BELL for i in range(300)}
    circuits[f"c{position:03d}"] = BELL + "// \ud800\n"
    error = await refused(scheduler, lambda: client.submit_circuits(circuits), ValueError)
    assert isinstance(error, QasmValidationError) and error.label == f"c{position:03d}"


async def test_execution_configuration_that_is_not_json_is_refused_before_sending(
    client: AsyncJobClient, scheduler: LocalScheduler
) -> None:
    from decimal import Decimal

    error = await refused(
        scheduler,
        lambda: client.submit_circuits({"a": BELL}, execution_configuration={"x": Decimal("1.5")}),
        TypeError,
    )
    assert isinstance(error, InvalidInputTypeError)
    assert "execution_configuration" in str(error) and "Decimal" in str(error)


async def test_invalid_last_circuit_sends_nothing_though_all_was_compressed(
    client: AsyncJobClient, scheduler: LocalScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compression runs alongside validation; a bad last circuit still stops everything.

    The check of the last circuit waits until it has been compressed (by
    another worker thread), so compressed circuits are ready when it fails.
    """
    import threading

    import asyncjob._encode as encode_module

    n = 3 * encode_module.ENCODE_SLICE + 5
    last = f"c{n - 1:04d}"
    bad = H2 + "qreg q[2];\nh q[2];\n"
    circuits = {f"c{i:04d}": (BELL if i % 2 else GHZ3) + f"// {i}\n" for i in range(n - 1)}
    circuits[last] = bad
    last_compressed = threading.Event()
    encode_circuit, check_circuit = encode_module.encode_circuit, encode_module._qasm.check_circuit

    def encode(source: str) -> str:
        encoded = encode_circuit(source)
        if source == bad:
            last_compressed.set()
        return encoded

    def check(label: str, source: str, *, full: bool = False) -> None:
        if label == last:
            assert last_compressed.wait(20), "compression did not run alongside validation"
        check_circuit(label, source, full=full)

    monkeypatch.setattr(encode_module, "worker_count", lambda n: 2)
    monkeypatch.setattr(encode_module, "encode_circuit", encode)
    monkeypatch.setattr(encode_module._qasm, "check_circuit", check)
    error = await refused(scheduler, lambda: client.submit_circuits(circuits), ValueError)
    assert isinstance(error, QasmValidationError) and error.label == last
    assert last_compressed.is_set()


async def test_the_first_invalid_circuit_is_named_whichever_worker_finds_one_first(
    client: AsyncJobClient, scheduler: LocalScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers validate different parts of a batch; the error is the first in batch order.

    The check of the earlier bad circuit waits until the later one has failed,
    so the later one is found first.
    """
    import threading

    import asyncjob._encode as encode_module

    # Three claims' worth of checks: the late circuit is in another worker's claim.
    n = 3 * encode_module.CHECKS_PER_CIRCUIT * encode_module.ENCODE_SLICE
    circuits = {f"c{i:04d}": (BELL if i % 2 else GHZ3) + f"// {i}\n" for i in range(n)}
    early, late = "c0010", f"c{n - 1:04d}"
    circuits[early] = circuits[late] = H2 + "qreg q[2];\nh q[2];\n"
    late_failed = threading.Event()
    check_circuit = encode_module._qasm.check_circuit

    def check(label: str, source: str, *, full: bool = False) -> None:
        if label == early:
            assert late_failed.wait(20), "the later circuit was not checked meanwhile"
        try:
            check_circuit(label, source, full=full)
        finally:
            if label == late:
                late_failed.set()

    monkeypatch.setattr(encode_module, "worker_count", lambda n: 2)
    monkeypatch.setattr(encode_module._qasm, "check_circuit", check)
    error = await refused(scheduler, lambda: client.submit_circuits(circuits), ValueError)
    assert isinstance(error, QasmValidationError) and error.label == early


@pytest.mark.parametrize(
    ("circuits", "error", "fragment"),
    [
        pytest.param(BELL, TypeError, "single string", id="a bare string"),
        pytest.param(BELL.encode(), TypeError, "single string", id="bare bytes"),
        pytest.param({}, ValueError, "empty", id="empty mapping"),
        pytest.param([], ValueError, "empty", id="empty list"),
        pytest.param((), ValueError, "empty", id="empty tuple"),
        pytest.param({"a": 123}, TypeError, "'a'", id="int source"),
        pytest.param({"a": None}, TypeError, "'a'", id="None source"),
        pytest.param({"a": BELL.encode()}, TypeError, "'a'", id="bytes source"),
        pytest.param([BELL, 5], TypeError, "'1'", id="int in a list"),
        pytest.param([("a", BELL), ("a", GHZ3)], ValueError, "duplicate", id="duplicate pairs"),
        pytest.param({1: BELL}, TypeError, "labels must be str", id="int label"),
        pytest.param({None: BELL}, TypeError, "labels must be str", id="None label"),
        pytest.param({("a",): BELL}, TypeError, "labels must be str", id="tuple label"),
        pytest.param([(1, BELL), (2, GHZ3)], TypeError, "labels must be str", id="int pairs"),
        pytest.param({"": BELL}, ValueError, "empty", id="empty label"),
        pytest.param({"\ud800": BELL}, ValueError, "surrogate", id="lone surrogate label"),
        pytest.param({BELL}, TypeError, "mapping or a sequence", id="a set"),
        pytest.param(42, TypeError, "mapping or a sequence", id="an int"),
    ],
)
async def test_malformed_batches_are_refused_before_sending(
    client: AsyncJobClient,
    scheduler: LocalScheduler,
    circuits: Any,
    error: type[Exception],
    fragment: str,
) -> None:
    raised = await refused(scheduler, lambda: client.submit_circuits(circuits), error)
    assert fragment in str(raised)


async def test_circuit_over_the_payload_cap_is_refused_before_sending(
    client: AsyncJobClient, scheduler: LocalScheduler
) -> None:
    # Random hex compresses only ~2:1: ~1.8 MB once gzipped and base64'd, over the 0.95 MiB cap.
    huge = BELL + "".join(f"// {os.urandom(600).hex()}\n" for _ in range(2000))
    error = await refused(
        scheduler, lambda: client.submit_circuits({"small": BELL, "huge": huge}), ValueError
    )
    assert isinstance(error, PayloadTooLargeError)
    assert "'huge'" in str(error) and "limit" in str(error)


async def test_in_a_small_batch_an_invalid_circuit_is_named_before_an_oversize_one(
    client: AsyncJobClient, scheduler: LocalScheduler
) -> None:
    huge = BELL + "".join(f"// {os.urandom(600).hex()}\n" for _ in range(2000))
    bad = H2 + "qreg q[2];\nh q[2];\n"
    error = await refused(
        scheduler, lambda: client.submit_circuits({"huge": huge, "bad": bad}), ValueError
    )
    assert isinstance(error, QasmValidationError) and error.label == "bad"


async def test_in_a_small_batch_the_first_oversize_circuit_is_named(
    client: AsyncJobClient, scheduler: LocalScheduler
) -> None:
    def huge() -> str:
        return BELL + "".join(f"// {os.urandom(600).hex()}\n" for _ in range(2000))

    batch = {"small": BELL, "first": huge(), "second": huge()}
    error = await refused(scheduler, lambda: client.submit_circuits(batch), ValueError)
    assert isinstance(error, PayloadTooLargeError) and "'first'" in str(error)


# -- options ------------------------------------------------------------------------------

THREE = {"a": BELL, "b": GHZ3, "c": BELL + "// c\n"}


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        pytest.param({"shots": 0}, ValueError, "shots", id="shots 0"),
        pytest.param({"shots": -5}, ValueError, "shots", id="negative shots"),
        pytest.param({"shots": 1.5}, ValueError, "shots", id="float shots"),
        pytest.param({"shots": "100"}, ValueError, "shots", id="str shots"),
        pytest.param({"shots": True}, ValueError, "shots", id="bool shots"),
        pytest.param({"shots": None}, ValueError, "shots", id="None shots"),
        pytest.param(
            {"shot_groups": [[0, 2, 10], [1, 3, 10]]}, ValueError, "overlap", id="sg overlap"
        ),
        pytest.param({"shot_groups": [[0, 1, 10], [2, 3, 10]]}, ValueError, "gap", id="sg gap"),
        pytest.param({"shot_groups": [[0, 4, 10]]}, ValueError, "past", id="sg out of range"),
        pytest.param({"shot_groups": [[0, 2, 10]]}, ValueError, "cover", id="sg short"),
        pytest.param({"shot_groups": [[-1, 3, 10]]}, ValueError, "tile", id="sg negative"),
        pytest.param(
            {"shot_groups": [[0, 0, 10], [0, 3, 10]]}, ValueError, "empty", id="sg empty range"
        ),
        pytest.param({"shot_groups": [[2, 0, 10]]}, ValueError, "tile", id="sg reversed"),
        pytest.param({"shot_groups": [[0, 3, 0]]}, ValueError, "shots", id="sg zero shots"),
        pytest.param({"shot_groups": [[0, 3, True]]}, TypeError, "3 ints", id="sg bool shots"),
        pytest.param({"shot_groups": [[0, 3]]}, TypeError, "3 ints", id="sg pair"),
        pytest.param({"shot_groups": [[0, 3.0, 10]]}, TypeError, "3 ints", id="sg float"),
        pytest.param({"shot_groups": []}, ValueError, "empty", id="sg none"),
        pytest.param({"shot_groups": "0,3,10"}, TypeError, "list", id="sg string"),
        pytest.param({"ham_ops": "XYZ;XX"}, ValueError, "same length", id="ham mixed lengths"),
        pytest.param({"ham_ops": "XYA"}, ValueError, "I, X, Y, Z", id="ham bad letter"),
        pytest.param({"ham_ops": "xyz"}, ValueError, "I, X, Y, Z", id="ham lower case"),
        pytest.param({"ham_ops": "XY;;ZZ"}, ValueError, "non-empty", id="ham empty term"),
        pytest.param({"ham_ops": "X Y"}, ValueError, "I, X, Y, Z", id="ham space"),
        pytest.param({"ham_ops": ""}, TypeError, "non-empty", id="ham empty"),
        pytest.param({"ham_ops": 5}, TypeError, "ham_ops", id="ham int"),
        pytest.param({"ham_ops": "XY|ZZ"}, ValueError, "circuit_ham_map", id="ham groups no map"),
        pytest.param(
            {"ham_ops": "XY|ZZ", "circuit_ham_map": [[0, 3]]},
            ValueError,
            "2 groups",
            id="map count",
        ),
        pytest.param(
            {"ham_ops": "XY|ZZ", "circuit_ham_map": [[0, 1], [1, 4]]},
            ValueError,
            "past",
            id="map out of range",
        ),
        pytest.param(
            {"ham_ops": "XY|ZZ", "circuit_ham_map": [[0, 1], [2, 3]]},
            ValueError,
            "gap",
            id="map gap",
        ),
        pytest.param({"circuit_ham_map": [[0, 3]]}, ValueError, "needs ham_ops", id="map alone"),
        pytest.param(
            {"ham_ops": "XY", "shot_groups": [[0, 3, 10]]}, ValueError, "exclusive", id="ham+sg"
        ),
        pytest.param(
            {"ham_ops": "XY", "job_type": "EXECUTE"}, ValueError, "EXPECTATION", id="ham EXECUTE"
        ),
        pytest.param(
            {"job_type": "EXPECTATION"}, ValueError, "needs ham_ops", id="EXPECTATION no ham"
        ),
        pytest.param({"job_type": "VALIDATE"}, ValueError, "job_type", id="job type VALIDATE"),
        pytest.param({"job_type": 5}, ValueError, "job_type", id="job type int"),
        pytest.param({"tag": ""}, TypeError, "tag", id="empty tag"),
        pytest.param({"tag": 5}, TypeError, "tag", id="int tag"),
        pytest.param(
            {"simulator_cluster": "a", "qpu_system": "b"},
            ConfigurationError,
            "either",
            id="two targets",
        ),
        pytest.param({"execution_configuration": [1]}, TypeError, "mapping", id="exec conf list"),
        pytest.param({"shot": 100}, TypeError, "accepted: shots", id="a typo"),
    ],
)
async def test_bad_options_are_refused_before_sending(
    client: AsyncJobClient,
    scheduler: LocalScheduler,
    options: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    raised = await refused(scheduler, lambda: client.submit_circuits(THREE, **options), error)
    assert fragment in str(raised)


# -- handles and job ids --------------------------------------------------------------------

NO_JOB_ID = [
    pytest.param(ExecutionResult(), id="empty handle"),
    pytest.param(
        ExecutionResult(results=[{"label": "a", "results": {"0": 1}}]), id="results only"
    ),
    pytest.param(ExecutionResult(job_id=""), id="empty id"),
    pytest.param(ExecutionResult(job_id="."), id="dot"),
    pytest.param(ExecutionResult(job_id=".."), id="dot dot"),
    pytest.param("", id="empty string"),
    pytest.param("..", id="dot dot string"),
]


@pytest.mark.parametrize("handle", NO_JOB_ID)
@pytest.mark.parametrize("operation", ["poll", "results", "cancel", "delete", "status"])
async def test_handles_without_a_usable_job_id_send_nothing(
    client: AsyncJobClient, scheduler: LocalScheduler, handle: Any, operation: str
) -> None:
    call = {
        "poll": lambda: client.poll_job_status(handle, loop_until_complete=True),
        "results": lambda: client.get_job_results(handle),
        "cancel": lambda: client.cancel_job(handle),
        "delete": lambda: client.delete_job(handle),
        "status": lambda: client.get_status(handle),
    }[operation]
    error = await refused(scheduler, call, ValueError)
    assert "job" in str(error)


def test_backend_refuses_bad_input_and_handles_without_sending(
    local_scheduler_thread: ThreadedScheduler,
) -> None:
    threaded = local_scheduler_thread
    with JobBackend(threaded.base_url, threaded.token, retry=fast_retry()) as backend:
        before = threaded.stats.requests_total
        for call, error in [
            (lambda: backend.submit_circuits(BELL), TypeError),  # type: ignore[arg-type]
            (lambda: backend.submit_circuits({}), ValueError),
            (lambda: backend.submit_circuits({"a": "h q[0];"}), QasmValidationError),
            (lambda: backend.submit_circuits({"a": BELL}, shots=0), ValueError),
            (lambda: backend.submit_circuits({"a": BELL}, ham_ops="XQ"), ValueError),
            (lambda: backend.submit_circuits({"a": BELL}, bogus=1), TypeError),
            (lambda: backend.poll_job_status(ExecutionResult()), ValueError),
            (lambda: backend.get_job_results(ExecutionResult(job_id="..")), ValueError),
            (lambda: backend.cancel_job(ExecutionResult(results=[])), ValueError),
        ]:
            with pytest.raises(error):
                call()
        assert threaded.stats.requests_total == before


# Ids that would change the request path if they were pasted into it unescaped.
HOSTILE_IDS = [
    "a/b",
    "../x",
    "../../etc/passwd",
    "..%2Fx",
    "%2e%2e",
    "a?b=1",
    "?",
    "#frag",
    "a b",
    "a\\b",
    "//",
    "./.",
    "...",
    ";x=1",
    "\r\nX-Injected: 1",
    "é/ü",
    "a/../b?x=1#y",
]


@pytest.fixture
async def recorder(stub: StubFactory) -> Stub:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"status": "RUNNING", "count": 0, "next": None, "results": []}, status=200
        )

    return await stub(answer)


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
async def test_job_ids_never_change_the_request_path(recorder: Stub, job_id: str) -> None:
    """What arrives at the server is /api/job/<one escaped segment>/<endpoint>, no query."""
    async with AsyncJobClient(recorder.base_url, TOKEN, retry=fast_retry()) as client:
        with anyio.fail_after(30):
            await client.poll_job_status(ExecutionResult(job_id=job_id))
            await client.get_job_results(job_id)
            await client.cancel_job(job_id)
            await client.delete_job(job_id)
    segment = quote(job_id, safe="")
    assert "/" not in segment and "?" not in segment and "#" not in segment
    arrived = [(seen.method, seen.raw_path, seen.query_string) for seen in recorder.seen]
    assert arrived == [
        ("GET", f"/api/job/{segment}/status/", ""),
        ("GET", f"/api/job/{segment}/resultsV2/", "limit=100&offset=0"),
        ("POST", f"/api/job/{segment}/cancel/", ""),
        ("DELETE", f"/api/job/{segment}/", ""),
    ]


@pytest.mark.parametrize("job_id", ["a/b", "../../x", "a?b", "..%2F"])
async def test_the_scheduler_sees_one_job_id_and_answers_not_found(
    client: AsyncJobClient, scheduler: LocalScheduler, job_id: str
) -> None:
    with anyio.fail_after(30), pytest.raises(NotFoundError):
        await client.poll_job_status(job_id)
    # The request reached the status route (the id was one segment), not another one.
    assert scheduler.stats.requests_by_endpoint == {"status": 1}


@pytest.fixture
def no_env_url() -> Iterator[None]:
    saved = {
        k: os.environ.pop(k) for k in ("ASYNCJOB_BASE_URL", "ASYNCJOB_TOKEN") if k in os.environ
    }
    yield
    os.environ.update(saved)


@pytest.mark.usefixtures("no_env_url")
@pytest.mark.parametrize(
    ("args", "options", "error"),
    [
        pytest.param((None, TOKEN), {}, ConfigurationError, id="no base url"),
        pytest.param(("http://127.0.0.1:1/api/", None), {}, ConfigurationError, id="no token"),
        pytest.param(("ftp://127.0.0.1/", TOKEN), {}, ConfigurationError, id="ftp"),
        pytest.param(("127.0.0.1:8000", TOKEN), {}, ConfigurationError, id="no scheme"),
        pytest.param(("http://u:p@127.0.0.1/", TOKEN), {}, ConfigurationError, id="credentials"),
        pytest.param(("http://127.0.0.1/", "a\r\nb"), {}, ConfigurationError, id="token newline"),
        pytest.param(("http://127.0.0.1/", TOKEN), {"shots": 0}, ConfigurationError, id="shots"),
        pytest.param(
            ("http://127.0.0.1/", TOKEN), {"timeout": -1}, ConfigurationError, id="timeout"
        ),
        pytest.param(("http://127.0.0.1/", TOKEN), {"retry": 3}, ConfigurationError, id="retry"),
        pytest.param(("http://127.0.0.1/", TOKEN), {"bogus": 1}, TypeError, id="unknown option"),
    ],
)
def test_bad_construction_fails_at_once(
    args: tuple[Any, Any], options: dict[str, Any], error: type[Exception]
) -> None:
    for cls in (AsyncJobClient, JobBackend):
        with pytest.raises(error) as info:
            cls(*args, **options)
        assert TOKEN not in str(info.value)


async def test_the_scheduler_refuses_a_label_that_is_not_utf8(scheduler: LocalScheduler) -> None:
    """JSON can carry a lone surrogate ("\\ud800"); the scheduler answers 400, not a FAILED job."""
    import base64
    import gzip

    import aiohttp

    packed = base64.b64encode(gzip.compress(BELL.encode())).decode()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(scheduler.base_url, headers=headers) as http:
        async with http.post("job/init/", json={"job_type": "EXECUTE"}) as response:
            job_id = (await response.json())["job_id"]
        body = {"circuits": {"\ud800": packed}, "finalized": "true", "shots": 10}
        async with http.post(f"job/{job_id}/add_circuits/", json=body) as response:
            assert response.status == 400
            assert "UTF-8" in (await response.json())["detail"]
    record = scheduler.job(job_id)
    assert record is not None and not record.finalized and record.labels == ()
