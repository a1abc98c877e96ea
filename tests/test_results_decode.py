"""Result pages above the size threshold are parsed and decoded off the event loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import asyncjob._results as results_module
from asyncjob import AsyncJobClient
from asyncjob.local import LocalScheduler

from .conftest import BELL


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
