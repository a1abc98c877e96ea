"""Where asyncjob's time goes at scale: a 10k submit, a 50k fetch, 5,000 jobs followed.

    python bench/scale_profile.py [--out DIR] [--only submit,fetch,jobs] [--jobs 5000]

For each scenario, against a scheduler subprocess with 50 ms latency:

- pyinstrument on the event-loop thread (`scale_profile_<name>.txt`): what runs
  on the loop;
- a sampler thread reading every thread's stack (`sys._current_frames()`) each
  millisecond (`scale_profile_<name>_threads.txt`): the client's CPU by function
  across all threads (asyncjob moves validation and compression to worker
  threads, which pyinstrument does not see), idle samples left out, and, for
  every gap of the 5 ms ticker above 20 ms, which synchronous call held the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import BENCH_DIR, LATENCY, TOKEN, Server, create_job, make_batch, small_batch
from pyinstrument import Profiler
from scale_worker import TICK

import asyncjob

IDLE_LEAVES = {
    "select",
    "poll",
    "wait",
    "_wait_for_tstate_lock",
    "acquire",
    "get",
    "sleep",
    "_worker",
    "run_forever",
}
"""Leaf functions that mean a thread is waiting, not working (left out of the CPU table)."""


class Sampler:
    """Samples every thread's stack each millisecond; a ticker on the loop marks stalls."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, tuple[str, ...]]] = []
        self.gaps: list[tuple[float, float]] = []
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            now = time.perf_counter()
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack: list[str] = []
                f: Any = frame
                while f is not None and len(stack) < 60:
                    code = f.f_code
                    stack.append(f"{_short(code.co_filename)}:{code.co_name}")
                    f = f.f_back
                self.samples.append((now, ident, tuple(stack)))
            time.sleep(0.001)

    async def ticker(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            if now - last - TICK > 0.020:
                self.gaps.append((last, now))
            last = now

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, title: str, wall: float, cpu: float) -> str:
        busy = [(t, i, s) for t, i, s in self.samples if not _idle(s)]
        lines = [
            f"# {title}",
            "",
            f"wall {wall:.2f} s, client process CPU {cpu:.2f} s; {len(self.samples)} samples "
            f"(1 ms), {len(busy)} busy (leaf not a wait).",
            "",
            "## Self time (leaf frame), busy samples of all threads",
            "",
            *_table(collections.Counter(s[0] for _, _, s in busy), len(busy), cpu),
            "",
            "## Inclusive time of asyncjob functions, busy samples of all threads",
            "",
            *_table(_inclusive(busy, "asyncjob/"), len(busy), cpu),
            "",
            "## Inclusive time, busy samples of the event-loop thread only",
            "",
            *_table(
                _inclusive([x for x in busy if x[1] == self.loop_thread], ""),
                len(busy),
                cpu,
                limit=40,
            ),
            "",
        ]
        lines += [f"## Loop stalls over 20 ms: {len(self.gaps)}", ""]
        if self.gaps:
            longest = sorted(self.gaps, key=lambda g: g[0] - g[1])
            lines.append(
                "Longest: " + ", ".join(f"{(b - a - TICK) * 1000:.0f} ms" for a, b in longest[:15])
            )
            lines.append(f"Sum of stall time: {sum(b - a - TICK for a, b in self.gaps):.2f} s")
            lines += ["", "Innermost asyncjob frame on the loop thread during the stalls:", ""]
            inner: collections.Counter[str] = collections.Counter()
            outer: collections.Counter[str] = collections.Counter()
            n = 0
            for t, ident, stack in self.samples:
                if ident != self.loop_thread or not any(a <= t <= b for a, b in self.gaps):
                    continue
                n += 1
                mine = [f for f in stack if f.startswith("asyncjob/")]
                inner[mine[0] if mine else "(no asyncjob frame) " + stack[0]] += 1
                leaf_chain = " <- ".join(stack[:4])
                outer[leaf_chain] += 1
            lines += [f"| {c} ms | {name} |" for name, c in inner.most_common(15)]
            lines += ["", "Leaf chains (4 frames) on the loop during the stalls:", ""]
            lines += [f"| {c} ms | {name} |" for name, c in outer.most_common(15)]
            lines.append(f"\n{n} loop-thread samples inside stalls")
        return "\n".join(lines) + "\n"


def _short(filename: str) -> str:
    for marker in ("/asyncjob/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("asyncjob/" + tail) if marker == "/asyncjob/" else tail
    return os.path.basename(filename)


def _idle(stack: tuple[str, ...]) -> bool:
    return stack[0].rsplit(":", 1)[1] in IDLE_LEAVES


def _inclusive(
    samples: list[tuple[float, int, tuple[str, ...]]], prefix: str
) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for _, _, stack in samples:
        for name in set(stack):
            if name.startswith(prefix):
                counts[name] += 1
    return counts


def _table(counts: collections.Counter[str], total: int, cpu: float, limit: int = 25) -> list[str]:
    out = ["| function | samples (ms) | % of busy samples |", "| --- | ---: | ---: |"]
    for name, c in counts.most_common(limit):
        out.append(f"| {name} | {c} | {100 * c / max(total, 1):.1f} % |")
    return out


async def _profiled(name: str, run: Callable[[], Awaitable[object]], out: Path) -> None:
    sampler = Sampler()
    profiler = Profiler(interval=0.001, async_mode="disabled")
    ticker = asyncio.get_running_loop().create_task(sampler.ticker())
    with sampler:
        cpu = time.process_time()
        start = time.perf_counter()
        profiler.start()
        await run()
        profiler.stop()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    ticker.cancel()
    (out / f"scale_profile_{name}.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False)
    )
    (out / f"scale_profile_{name}_threads.txt").write_text(sampler.report(name, wall, cpu))
    print(f"{name}: wall {wall:.2f} s, cpu {cpu:.2f} s, {len(sampler.gaps)} stalls > 20 ms")


def submit(out: Path, journal: Path) -> None:
    circuits = make_batch(10_000, seed=16)
    with Server(sys.executable, latency=LATENCY) as server:

        async def main() -> None:
            async with asyncjob.AsyncJobClient(server.base_url, TOKEN, journal=str(journal)) as c:
                await c.submit_circuits(make_batch(20, seed=1))  # warm-up
                await _profiled("submit_10k", lambda: c.submit_circuits(circuits), out)

        asyncio.run(main())


def fetch(out: Path) -> None:
    with Server(sys.executable, latency=LATENCY) as server:
        job_id = create_job(server.base_url, small_batch(50_000))

        async def main() -> None:
            async with asyncjob.AsyncJobClient(server.base_url, TOKEN, journal=False) as c:

                async def run() -> None:
                    result = await c.get_job_results(job_id)
                    assert result.results is not None and len(result.results) == 50_000

                await _profiled("fetch_50k", run, out)

        asyncio.run(main())


def jobs(out: Path, journal: Path, n_jobs: int) -> None:
    batches = [make_batch(1 + i % 2, seed=i) for i in range(n_jobs)]
    with Server(
        sys.executable, latency=LATENCY, job_duration="1,6", max_concurrent_jobs=100_000
    ) as server:

        async def main() -> None:
            options = {"polling_interval": 0.5, "journal": str(journal)}
            async with asyncjob.AsyncJobClient(server.base_url, TOKEN, **options) as c:
                handles: list[Any] = []

                async def submit_all() -> None:
                    handles.extend(await asyncio.gather(*(c.submit_circuits(b) for b in batches)))

                async def follow() -> None:
                    async with c.as_completed(handles) as outcomes:
                        async for outcome in outcomes:
                            assert outcome.result is not None

                await _profiled(f"jobs_{n_jobs}_submit", submit_all, out)
                await _profiled(f"jobs_{n_jobs}_follow", follow, out)

        asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "profiles")
    parser.add_argument("--only", default="submit,fetch,jobs")
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    only = set(args.only.split(","))
    if "submit" in only:
        submit(args.out, tmp / f"scale-profile-{os.getpid()}-submit.sqlite3")
    if "fetch" in only:
        fetch(args.out)
    if "jobs" in only:
        jobs(args.out, tmp / f"scale-profile-{os.getpid()}-jobs.sqlite3", args.jobs)


if __name__ == "__main__":
    main()
