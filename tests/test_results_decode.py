"""Result pages above the size threshold are parsed and decoded off the event loop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.lowlevel
import pytest

import asyncjob._histogram as histogram
import asyncjob._results as results_module
from asyncjob import AsyncJobClient, Limits, MockTransport, Request, Response
from asyncjob._turns import OneStepPerTurn
from asyncjob.local import LocalScheduler

from .conftest import BELL, TurnCounter


def decoding_turns(monkeypatch: pytest.MonkeyPatch) -> tuple[TurnCounter, list[int]]:
    """A turn counter, and the turn of every histogram decoded from now on (in order)."""
    counter = TurnCounter()
    seen_at: list[int] = []
    decode_result = results_module.decode_result

    def recording(results: Any) -> Any:
        seen_at.append(counter.turns)
        return decode_result(results)

    monkeypatch.setattr(results_module, "decode_result", recording)
    return counter, seen_at


SMALL = histogram.encode_histogram({"00": 600, "11": 400})
LARGE = histogram.encode_histogram({format(i, "012b"): 3 for i in range(400)})


@pytest.mark.parametrize("threshold", [0, 10**9])
async def test_large_pages_are_decoded_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    decoded_on: list[threading.Thread] = []
    decode_result = results_module.decode_result

    def recording(results: Any) -> Any:
        decoded_on.append(threading.current_thread())
        return decode_result(results)

    monkeypatch.setattr(results_module, "decode_result", recording)
    monkeypatch.setattr(results_module, "_DECODE_IN_THREAD", threshold)
    async with LocalScheduler(executor="sampler", job_duration=0.01) as server:
        async with AsyncJobClient(server.base_url, server.token, polling_interval=0.02) as c:
            loop_thread = threading.current_thread()
            result = await c.run({f"c{i}": BELL for i in range(5)})
    assert [r["label"] for r in result.results] == [f"c{i}" for i in range(5)]  # type: ignore[index]
    assert len(decoded_on) == 5
    if threshold == 0:
        assert loop_thread not in decoded_on
    else:
        assert set(decoded_on) == {loop_thread}


async def test_a_page_is_decoded_a_few_entries_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Page workers that finish together do not decode their pages in one turn of the loop."""
    counter, seen_at = decoding_turns(monkeypatch)
    n = 3 * results_module._ENTRIES_PER_STEP
    async with LocalScheduler(executor="sampler", job_duration=0.01) as server:
        limits = Limits(results_page_size=n)
        async with AsyncJobClient(
            server.base_url, server.token, polling_interval=0.02, limits=limits
        ) as c:
            handle = await c.submit_circuits({f"c{i}": BELL for i in range(n)})
            await c.poll_job_status(handle, loop_until_complete=True, verbose=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(counter.run)
                result = await c.get_job_results(handle)
                tg.cancel_scope.cancel()
    assert len(result.results or []) == n and len(seen_at) == n
    assert len(set(seen_at)) >= 3  # the loop turned between the slices of the one page


async def test_pages_that_arrive_together_are_decoded_one_step_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Page workers whose responses come in the same turn take turns: no turn decodes two steps."""
    step = results_module._ENTRIES_PER_STEP
    size, pages = 2 * step, 5
    total = size * pages

    def handler(request: Request) -> Response:  # every page at once: no network in between
        offset = int(parse_qs(urlsplit(request.url).query)["offset"][0])
        entries = [
            {"label": f"c{i}", "results": SMALL} for i in range(offset, min(offset + size, total))
        ]
        return Response(200, text=json.dumps({"results": entries, "count": total}))

    counter, seen_at = decoding_turns(monkeypatch)
    limits = Limits(results_page_size=size, results_concurrency=pages - 1)
    transport = MockTransport(handler)
    async with AsyncJobClient(
        "http://127.0.0.1:1/api/", "t", transport=transport, limits=limits, journal=False
    ) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            result = await c.get_job_results("job-1")
            tg.cancel_scope.cancel()
    assert len(result.results or []) == total == len(seen_at)
    assert max(Counter(seen_at).values()) <= step


async def test_the_result_dicts_are_built_a_batch_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Building 50,000 result dicts takes 8-15 ms: the loop turns between batches of them."""
    monkeypatch.setattr(results_module, "_DICTS_PER_STEP", 4)
    counter = TurnCounter()
    labels = [f"c{i}" for i in range(10)]
    for served in (labels, labels[::-1]):  # in submission order, and not
        decoded = results_module._Decoded(list(served), [int(label[1:]) for label in served])
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            await anyio.lowlevel.checkpoint()
            before = counter.turns
            results = await decoded.in_order("job-1", tuple(labels), OneStepPerTurn())
            during = counter.turns - before
            tg.cancel_scope.cancel()
        assert results == [{"label": f"c{i}", "results": i} for i in range(10)]
        assert during >= 2  # three batches of at most 4


def one_page(*histograms: dict[str, object]) -> MockTransport:
    """A server whose every job has these histograms as its results, on one page."""
    entries = [{"label": f"c{i}", "results": h} for i, h in enumerate(histograms)]
    text = json.dumps({"results": entries, "count": len(entries)})
    return MockTransport(lambda request: Response(200, text=text))


@pytest.mark.parametrize("large", [False, True])
async def test_numpy_is_imported_in_a_worker_thread_and_only_for_large_histograms(
    monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    """numpy's first import (tens of ms) is in a thread, and only if a histogram needs it."""
    events: list[tuple[str, threading.Thread]] = []
    load, decode_result = results_module.load_vector_route, results_module.decode_result

    def loading() -> None:
        events.append(("load", threading.current_thread()))
        load()

    def recording(results: Any) -> Any:
        events.append(("decode", threading.current_thread()))
        return decode_result(results)

    histogram._vector_route.cache_clear()  # as in a process that never decoded
    monkeypatch.setattr(results_module, "load_vector_route", loading)
    monkeypatch.setattr(results_module, "decode_result", recording)
    transport = one_page(SMALL, LARGE if large else SMALL)
    async with AsyncJobClient("http://127.0.0.1:1/api/", "t", transport=transport) as c:
        result = await c.get_job_results("job-1")
    loop_thread = threading.current_thread()
    second = LARGE if large else SMALL
    expected = histogram.decode_histogram(
        "qh1", int(str(second["n_bits"])), str(second["payload"])
    )
    assert (result.results or [])[1]["results"] == expected
    assert [kind for kind, _ in events] == (["load"] if large else []) + ["decode", "decode"]
    assert all(thread is loop_thread for kind, thread in events if kind == "decode")
    assert all(thread is not loop_thread for kind, thread in events if kind == "load")
    assert histogram.vector_route_loaded() is large


def test_a_program_whose_histograms_are_small_never_imports_numpy() -> None:
    """numpy's first import holds the GIL for tens of ms (more on a busy machine)."""
    program = textwrap.dedent(
        """
        import json, sys, anyio
        from asyncjob import AsyncJobClient, MockTransport, Response
        from asyncjob._histogram import encode_histogram

        small = encode_histogram({"00": 600, "11": 400})
        entries = [{"label": f"c{i}", "results": small} for i in range(100)]
        text = json.dumps({"results": entries, "count": 100})

        async def main():
            transport = MockTransport(lambda request: Response(200, text=text))
            async with AsyncJobClient("http://127.0.0.1:1/api/", "t", transport=transport) as c:
                result = await c.get_job_results("job-1")
            assert len(result.results) == 100
            print("numpy" in sys.modules)

        anyio.run(main)
        """
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
