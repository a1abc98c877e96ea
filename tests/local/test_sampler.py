"""The sampler executor: deterministic, plausible counts that sum exactly to the shots."""

from __future__ import annotations

import threading

import aiohttp
import anyio
import pytest

from asyncjob._histogram import decode_result
from asyncjob.local import (
    CircuitTask,
    Counts,
    ExecutionAborted,
    Expectations,
    LocalScheduler,
    SamplerExecutor,
    make_executor,
)

from .conftest import BELL, BELL3, Factory, all_results, ghz, submit

NO_CREG = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\nh q[0];\n'


@pytest.mark.parametrize("shots", [1, 2, 3, 7, 100, 1000, 123457])
@pytest.mark.parametrize("source", [BELL, BELL3, ghz(1), ghz(12), ghz(70)])
def test_counts_sum_to_shots(source: str, shots: int) -> None:
    outcome = SamplerExecutor().sample(CircuitTask("x", source, shots=shots))
    assert sum(outcome.counts.values()) == shots
    assert all(count > 0 for count in outcome.counts.values())
    assert all(len(key) == outcome.n_bits and not key.strip("01") for key in outcome.counts)


def test_width_is_classical_bits_then_qubits() -> None:
    sampler = SamplerExecutor()
    assert sampler.sample(CircuitTask("a", BELL, shots=10)).n_bits == 2
    assert sampler.sample(CircuitTask("a", ghz(9), shots=10)).n_bits == 9
    assert sampler.sample(CircuitTask("a", NO_CREG, shots=10)).n_bits == 3


def test_deterministic_per_circuit_label_and_shots() -> None:
    one, two = SamplerExecutor(), SamplerExecutor()
    task = CircuitTask("label", ghz(6), shots=1000)
    assert one.sample(task) == two.sample(task)
    others = [
        CircuitTask("other-label", ghz(6), shots=1000),
        CircuitTask("label", ghz(6), shots=999),
        CircuitTask("label", ghz(6) + "// changed\n", shots=1000),
    ]
    assert all(one.sample(other) != one.sample(task) for other in others)
    assert SamplerExecutor(seed=1).sample(task) != one.sample(task)


def test_a_few_dominant_outcomes() -> None:
    counts = SamplerExecutor().sample(CircuitTask("x", ghz(10), shots=10_000)).counts
    top = sorted(counts.values(), reverse=True)[:4]
    assert sum(top) >= 0.85 * 10_000
    assert len(counts) <= 16


def test_expectations_are_deterministic_and_bounded() -> None:
    task = CircuitTask("x", BELL, terms=("ZZ", "XX", "II", "ZI"))
    values = SamplerExecutor().expectation(task)
    assert values == SamplerExecutor().expectation(task)
    assert isinstance(values, Expectations)
    assert list(values.values) == ["ZZ", "XX", "II", "ZI"]
    assert values.values["II"] == 1.0
    assert all(-1.0 <= v <= 1.0 for v in values.values.values())


def test_run_stops_when_cancelled() -> None:
    cancelled = threading.Event()
    tasks = [CircuitTask(str(i), BELL, shots=10) for i in range(3)]
    outcomes = SamplerExecutor().run(tasks, cancelled)
    assert all(isinstance(o, Counts) for o in outcomes)
    cancelled.set()
    with pytest.raises(ExecutionAborted):
        SamplerExecutor().run(tasks, cancelled)


def test_make_executor() -> None:
    sampler = SamplerExecutor(seed=3)
    assert make_executor(sampler) is sampler
    assert make_executor("sampler").name == "sampler"
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("quantum-computer")


async def results_of(server: LocalScheduler, circuits: dict[str, str]) -> list[object]:
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, circuits, shots=500)
        with anyio.fail_after(5):
            await server.wait_for_status(job_id, "COMPLETED")
        return await all_results(http, job_id)


async def test_same_results_across_servers_and_restarts(make_scheduler: Factory) -> None:
    circuits = {"bell": BELL, "bell3": BELL3, "ghz": ghz(8)}
    first = await make_scheduler()
    second = await make_scheduler(seed=123)  # the server seed does not change counts
    reference = await results_of(first, circuits)
    assert await results_of(second, circuits) == reference
    await first.stop()
    await first.start()
    assert await results_of(first, circuits) == reference
    for result in reference:
        assert isinstance(result, dict)
        assert sum(decode_result(result["results"]).values()) == 500  # type: ignore[union-attr]
