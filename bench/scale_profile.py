"""Where asyncjob's time goes at scale: a 10k submit, a 50k fetch, 5,000 jobs followed.

    python bench/scale_profile.py [--out DIR] [--only submit,fetch,jobs] [--jobs 5000]

Needs pyinstrument and yappi (`pip install pyinstrument yappi`) next to asyncjob.

For each scenario, against a scheduler subprocess with 50 ms latency:

- pyinstrument on the event-loop thread (`scale_profile_<name>.txt`): what runs
  on the loop;
- yappi with its CPU clock on the worker threads (`scale_profile_<name>_threads.txt`):
  the client's CPU by function where asyncjob moves validation, compression and
  journal writes (pyinstrument sees only the loop thread; the two cannot hook the
  same thread, so the loop thread is pyinstrument's);
- for every gap of a 5 ms ticker above 20 ms (a loop stall), the loop thread's
  stack sampled each millisecond from another thread, and asyncio's own report
  of callbacks and task steps that ran longer than 20 ms (debug mode).

yappi and debug mode slow the client down (about 2x): read the shares, not the
absolute times, which `bench/scale.py` measures without them.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yappi
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
                if ident == me or ident != self.loop_thread:
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
        # A thread running Python code drops the GIL only every switch interval
        # (5 ms) or at a blocking call; without a short interval the samples would
        # pile up on blocking calls (socket writes) instead of where time goes.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)

    def report(self) -> list[str]:
        lines: list[str] = []
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
            starts = [a for a, _ in self.gaps]
            for t, ident, stack in self.samples:
                i = bisect.bisect_right(starts, t) - 1
                if ident != self.loop_thread or i < 0 or t > self.gaps[i][1]:
                    continue
                n += 1
                mine = [f for f in stack if f.startswith("asyncjob/")]
                waiting = " (in a blocking call: waiting for the GIL)" if _idle(stack) else ""
                inner[mine[0] if mine else "(no asyncjob frame) " + stack[0] + waiting] += 1
                leaf_chain = " <- ".join(stack[:4])
                outer[leaf_chain] += 1
            lines += [f"| {c} ms | {name} |" for name, c in inner.most_common(15)]
            lines += ["", "Leaf chains (4 frames) on the loop during the stalls:", ""]
            lines += [f"| {c} ms | {name} |" for name, c in outer.most_common(15)]
            lines.append(f"\n{n} loop-thread samples inside stalls")
        return lines


class TimedLock:
    """Stands in for a `Journal`'s lock: how long callers wait for it and hold it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.waited = 0.0
        self.held = 0.0
        self._since = 0.0

    def __enter__(self) -> TimedLock:
        start = time.perf_counter()
        self._lock.acquire()
        self._since = time.perf_counter()
        self.waited += self._since - start
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.held += time.perf_counter() - self._since
        self._lock.release()

    def summary(self) -> str:
        return (
            f"journal lock: {self.count} transactions, held {self.held:.2f} s in all "
            f"({1000 * self.held / max(self.count, 1):.2f} ms each), callers waited "
            f"{self.waited:.2f} s in all ({1000 * self.waited / max(self.count, 1):.2f} ms each)"
        )


def _timed_journal(client: asyncjob.AsyncJobClient) -> TimedLock | None:
    """Put a `TimedLock` in the client's journal (bench instrumentation, private attribute)."""
    journal = client.journal
    if journal is None or not hasattr(journal, "_lock"):
        return None
    lock = TimedLock()
    journal._lock = lock  # type: ignore[attr-defined]
    return lock


def _short(filename: str) -> str:
    for marker in ("/asyncjob/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("asyncjob/" + tail) if marker == "/asyncjob/" else tail
    return os.path.basename(filename)


def _idle(stack: tuple[str, ...]) -> bool:
    return stack[0].rsplit(":", 1)[1] in IDLE_LEAVES


def _yappi_tables(cpu: float) -> list[str]:
    """Self and inclusive CPU time by function, all threads (yappi, CPU clock)."""
    stats = list(yappi.get_func_stats())
    total = cpu or 1.0

    def name(s: Any) -> str:
        return f"{_short(s.module)}:{s.name}"

    lines = [
        f"Shares are of the process CPU time under yappi, {cpu:.2f} s (yappi slows "
        "Python code more than C code such as zlib: Python-heavy shares are overstated).",
        "",
        "## Self CPU time (worker threads; the loop thread is in the pyinstrument file)",
        "",
        "| function | calls | self ms | % of CPU |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in sorted(stats, key=lambda s: -s.tsub)[:30]:
        lines.append(
            f"| {name(s)} | {s.ncall} | {s.tsub * 1000:.0f} | {100 * s.tsub / total:.1f} % |"
        )
    lines += [
        "",
        "## Inclusive CPU time of asyncjob functions (worker threads)",
        "",
        "| function | calls | inclusive ms | % of CPU |",
        "| --- | ---: | ---: | ---: |",
    ]
    mine = [s for s in stats if "/asyncjob/" in s.module]
    for s in sorted(mine, key=lambda s: -s.ttot)[:30]:
        lines.append(
            f"| {name(s)} | {s.ncall} | {s.ttot * 1000:.0f} | {100 * s.ttot / total:.1f} % |"
        )
    lines += ["", "## CPU by thread", "", "| thread | CPU ms |", "| --- | ---: |"]
    for t in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot)[:8]:
        lines.append(f"| {t.name} {t.id} | {t.ttot * 1000:.0f} |")
    return lines


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode "Executing <handle> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.messages.append(message)

    def report(self) -> list[str]:
        def seconds(m: str) -> float:
            return float(m.rsplit(" took ", 1)[1].split()[0])

        ordered = sorted(self.messages, key=seconds, reverse=True)
        counts = collections.Counter(_what(m) for m in ordered)
        lines = [
            "",
            f"## Callbacks / task steps over 20 ms on the loop (asyncio debug): {len(ordered)}",
            "",
            "| what | times | longest |",
            "| --- | ---: | ---: |",
        ]
        longest: dict[str, float] = {}
        for m in ordered:
            longest.setdefault(_what(m), seconds(m))
        for what, c in counts.most_common(20):
            lines.append(f"| {what} | {c} | {longest[what] * 1000:.0f} ms |")
        return lines


def _what(message: str) -> str:
    """The coroutine or callback of an asyncio slow-callback message, without addresses."""
    text = message.split(" took ", 1)[0].removeprefix("Executing ")
    coro = re.search(r"coro=<([^ >(]+)", text)
    if coro:
        return "task step: " + coro.group(1)
    cb = re.search(r"<Handle ([^ (]+)", text) or re.search(r"<TimerHandle [^ ]+ ([^ (]+)", text)
    return "callback: " + (cb.group(1) if cb else text[:80])


async def _profiled(
    name: str,
    run: Callable[[], Awaitable[object]],
    out: Path,
    lock: TimedLock | None = None,
    heavy: bool = True,
) -> None:
    """Profile `run()`; `heavy=False` leaves out yappi and asyncio debug mode.

    With 5,000 concurrent submissions, yappi and debug mode slow the client so much
    that requests time out waiting for a pooled connection: that scenario runs light.
    """
    loop = asyncio.get_running_loop()
    sampler = Sampler()
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    loop.slow_callback_duration = 0.020
    loop.set_debug(heavy)
    profiler = Profiler(interval=0.001, async_mode="disabled")
    ticker = loop.create_task(sampler.ticker())
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    with sampler:
        cpu = time.process_time()
        start = time.perf_counter()
        if heavy:
            yappi.start(builtins=True)
        profiler.start()
        await run()
        profiler.stop()
        if heavy:
            yappi.stop()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    ticker.cancel()
    loop.set_debug(False)
    logging.getLogger("asyncio").removeHandler(slow)
    (out / f"scale_profile_{name}.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False)
    )
    lines = [f"# {name}", "", f"wall {wall:.2f} s, client process CPU {cpu:.2f} s.", ""]
    if lock is not None:
        lines += [lock.summary(), ""]
        lock.count, lock.waited, lock.held = 0, 0.0, 0.0
    if heavy:
        lines += [*_yappi_tables(cpu), ""]
    lines += sampler.report()
    if heavy:
        lines += slow.report()
    (out / f"scale_profile_{name}_threads.txt").write_text("\n".join(lines) + "\n")
    print(f"{name}: wall {wall:.2f} s, cpu {cpu:.2f} s, {len(sampler.gaps)} stalls > 20 ms")
    if lock is not None:
        print("  " + lines[4])


def submit(out: Path, journal: Path) -> None:
    circuits = make_batch(10_000, seed=16)
    with Server(sys.executable, latency=LATENCY) as server:

        async def main() -> None:
            async with asyncjob.AsyncJobClient(server.base_url, TOKEN, journal=str(journal)) as c:
                await c.submit_circuits(make_batch(20, seed=1))  # warm-up
                lock = _timed_journal(c)
                await _profiled("submit_10k", lambda: c.submit_circuits(circuits), out, lock)

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

                lock = _timed_journal(c)
                await _profiled(f"jobs_{n_jobs}_submit", submit_all, out, lock, heavy=False)
                await _profiled(f"jobs_{n_jobs}_follow", follow, out, lock, heavy=False)

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
