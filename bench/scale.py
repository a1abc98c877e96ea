"""asyncjob at scale (issue 16): submit curve vs the floor, loop stalls, 5,000 jobs, decoding.

    python bench/scale.py [--quick] [--baseline bench/scale_before.json] [--out DIR]

(`nox -s bench_scale` runs this.) asyncjob only, except the decode rows, which
time divi's numba decoder in the same process. Every workload runs in a
`scale_worker.py` subprocess against fresh scheduler subprocesses
(`server.py`: 50 ms added latency, sampler executor, 2 decode workers).
Writes `scale.json`, `scale.md` and (not with `--quick`) the section "scale" of
`results.md` (every headline figure against issue 16's goal); with `--baseline FILE` (the
scale.json of an earlier run) both add the figures before. `--from-json FILE`
only re-renders the reports.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import BENCH_DIR, DECODE_WORKERS, LATENCY, replace_section
from run import machine
from scale_worker import STARTED_PER_TURN

WORKER = BENCH_DIR / "scale_worker.py"
JOB_DURATION = "1,6"
"""Jobs that finish while later ones are still being submitted."""
OUTLIVING_DURATION = "30,40"
"""Jobs that outlive the submission (about 20 s for 5,000 jobs): `as_completed` alone is timed."""
QUICK_OUTLIVING = "4,6"
"""The same for `--quick`'s few jobs, submitted in about a second."""
POLLING_INTERVAL = 0.5
SHAPES = {
    "watch": "watch",
    "no_watch": "watch=False",
    "watch_outliving": "watch, jobs outlive the submission",
    "no_watch_outliving": "watch=False, jobs outlive the submission",
}
"""The many-jobs runs: key in scale.json -> name in the report."""


def shapes(during: str, outliving: str) -> list[list[Any]]:
    """`[key, watch, job_duration]` of each many-jobs run."""
    return [
        ["watch", True, during],
        ["no_watch", False, during],
        ["watch_outliving", True, outliving],
        ["no_watch_outliving", False, outliving],
    ]


DECODE_BLOCKS = {"large": 100, "small": 1000}
"""Histograms per block of the decoders' turns (about 20-30 ms of CPU each here)."""


def decode_ratio(d: dict[str, Any]) -> float:
    """asyncjob's decoding speed over divi's: the median block ratio (the ratio of the
    median rates for runs before blocks were paired)."""
    return med(d["paired"]) if d.get("paired") else med(d["asyncjob"]) / med(d["divi"])


def plan(quick: bool) -> dict[str, Any]:
    """Sizes and repeats of every workload (`--quick`: a smoke run of about 2 minutes)."""
    if quick:
        return {
            "sizes": [100, 1000, 5000],
            "submit_repeats": {"100": 2, "1000": 2, "5000": 1},
            "fetch": {"circuits": 5000, "repeats": 1, "n_qubits": 10},
            "many_jobs": {"jobs": 300, "repeats": 1},
            "decode": {"repeats": 2, "large": 300, "small": 3000},
        }
    return {
        "sizes": [100, 1000, 10_000, 50_000],
        "submit_repeats": {"100": 3, "1000": 3, "10000": 3, "50000": 2},
        "fetch": {"circuits": 50_000, "repeats": 2, "n_qubits": 10},
        "many_jobs": {"jobs": 5000, "repeats": 1},
        "decode": {"repeats": 5, "large": 2000, "small": 20_000},
    }


def call(params: dict[str, Any]) -> Any:
    """Run one workload in a worker subprocess; its progress lines go to our stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=BENCH_DIR,
    )
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        if line.startswith("    "):
            print(line[:240].rstrip(), flush=True)
        last = line
    if proc.wait() != 0:
        raise RuntimeError(f"scale_worker {params['workload']} failed ({proc.returncode})")
    print(f"  {params['workload']}: {time.monotonic() - started:.1f} s", flush=True)
    return json.loads(last)


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def number(x: float, digits: int = 3) -> str:
    """3 significant digits, or a whole number with thousands separators from 1,000 up."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"


def spread(values: list[float], unit: str = "s", scale: float = 1.0, digits: int = 3) -> str:
    """Median [min-max] (or the single value) of `values` x `scale`, with `unit`."""
    v = [x * scale for x in values]
    unit = f" {unit}" if unit else ""
    if len(v) == 1:
        return f"{number(v[0], digits)}{unit}"
    return f"{number(med(v), digits)}{unit} [{number(min(v), digits)}-{number(max(v), digits)}]"


def full_collection(runs: list[dict[str, Any]]) -> str:
    """The fetches' full-collection times (absent from runs of older harnesses)."""
    times = [r["full_collection"] for r in runs if "full_collection" in r]
    return spread([t * 1000 for t in times], "ms") if times else "-"


def stall_cell(figures: list[dict[str, Any]]) -> str:
    """The worst stall of some runs, with the most own work and collector time in one gap.

    Those two maxima may come from other gaps than the worst: not a split of it.
    """
    text = f"{max(f['stall'] for f in figures) * 1000:.0f} ms"
    if all("stall_own" in f for f in figures):
        own = max(f["stall_own"] for f in figures) * 1000
        collector = max(f["stall_gc"] for f in figures) * 1000
        text += f" (own {own:.0f}, GC {collector:.0f})"
    return text


def stall_rows(out: dict[str, float], name: str, figures: list[dict[str, Any]]) -> None:
    """Headline rows of one stall: the worst gap, and the most own work in a gap."""
    out[f"{name} (ms)"] = max(f["stall"] for f in figures) * 1000
    if all("stall_own" in f for f in figures):
        out[f"{name}, own work (ms)"] = max(f["stall_own"] for f in figures) * 1000


def compressor(data: dict[str, Any]) -> str:
    """The client's gzip in the submit runs, as the runs recorded it."""
    names = {r.get("compressor", "not recorded") for runs in data["submit"].values() for r in runs}
    return ", ".join(sorted(names))


def headline(data: dict[str, Any]) -> dict[str, float]:
    """The figures issue 16 sets goals on, by name (for the before/after table)."""
    out: dict[str, float] = {}
    for size, runs in data["submit"].items():
        n = int(size)
        out[f"submit {n:,}: time (s)"] = med([r["wall"] for r in runs])
        out[f"submit {n:,}: time / floor"] = med([r["wall"] / r["floor"] for r in runs])
        if all("own_floor" in r for r in runs):
            out[f"submit {n:,}: time / floor with the client's own gzip"] = med(
                [r["wall"] / r["own_floor"] for r in runs]
            )
        out[f"submit {n:,}: client CPU per circuit (ms)"] = med(
            [r["cpu"] / n * 1000 for r in runs]
        )
        stall_rows(out, f"submit {n:,}: max loop stall", runs)
        out[f"submit {n:,}: journal on disk (MB per 10,000 circuits)"] = med(
            [r["journal_bytes"] / 1e6 * 10_000 / n for r in runs]
        )
    fetch = data["fetch"]["runs"]
    n_fetch = data["plan"]["fetch"]["circuits"]
    out[f"fetch {n_fetch:,}: time (s)"] = med([r["wall"] for r in fetch])
    stall_rows(out, f"fetch {n_fetch:,}: max loop stall", fetch)
    if all("full_collection" in r for r in fetch):
        out[f"fetch {n_fetch:,}: one full collection, results alive (ms)"] = (
            med([r["full_collection"] for r in fetch]) * 1000
        )
    jobs = data["plan"]["many_jobs"]["jobs"]
    for key, name in SHAPES.items():
        runs = data["many_jobs"].get(key)
        if not runs:
            continue
        out[f"{jobs:,} jobs ({name}): p95 delay (s)"] = med([r["delays"]["p95"] for r in runs])
        out[f"{jobs:,} jobs ({name}): client CPU per job, submit (ms)"] = med(
            [r["submit"]["cpu"] / jobs * 1000 for r in runs]
        )
        out[f"{jobs:,} jobs ({name}): client CPU per job, follow (ms)"] = med(
            [r["follow"]["cpu"] / jobs * 1000 for r in runs]
        )
        if all("without_ticker" in r for r in runs):
            for phase in ("submit", "follow"):
                out[f"{jobs:,} jobs ({name}): client CPU per job, {phase}, no ticker (ms)"] = med(
                    [r["without_ticker"][f"{phase}_cpu"] / jobs * 1000 for r in runs]
                )
        for phase in ("submit", "follow"):
            stall_rows(
                out, f"{jobs:,} jobs ({name}): max loop stall, {phase}", [r[phase] for r in runs]
            )
    for name, d in data["decode"].items():
        out[f"decode {name}: asyncjob (results/s)"] = med(d["asyncjob"])
        out[f"decode {name}: asyncjob / divi"] = decode_ratio(d)
    return out


def report(data: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    p = data["plan"]
    lines = [
        "# asyncjob at scale (issue 16)",
        "",
        f"Generated by `bench/scale.py{' --quick' if data['quick'] else ''}` (what "
        f"`nox -s bench_scale` runs) on {data['date']}, at commit {data['commit']} "
        f"(`asyncjob/` last changed in {data.get('package_commit', '?')}); "
        f"the run took {data['duration']:.0f} s.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in data["machine"].items()],
        f"- load average at end: {data['load_end']}",
        "- The machine is shared with other work (see the load averages): absolute "
        "times move by 10-30 % between runs.",
        "",
        "## Setup",
        "",
        f"- A fresh local scheduler subprocess (`bench/server.py`) per run, on 127.0.0.1, "
        f"{LATENCY * 1000:.0f} ms added before every answer, sampler executor, "
        f"{DECODE_WORKERS} decode worker processes; the client in a worker subprocess "
        "(`bench/scale_worker.py`), default options, journal on in a temporary file.",
        "- Loop stall: a task on the client's event loop sleeps 5 ms in a loop; the stall"
        " is the largest gap between two of its wake-ups minus 5 ms (max over the runs). "
        "Each gap is split: 'own' is the most CPU time the loop thread spent in one gap "
        "outside the garbage collector's passes, minus the 5 ms (the work of the code on "
        "the loop: asyncjob's, and the harness's); 'GC' is the longest the collector ran "
        "within one gap, on any thread (its full passes take longer the more objects the "
        "process holds, the caller's included). The rest of a gap is waiting for a core "
        "(shared with the scheduler's processes) or for the GIL (held by a worker thread:"
        " validation, compression, the journal).",
        "- Client CPU: `time.process_time()` of the client process (all its threads) "
        "during the call.",
        "",
        "## 1. Submit: random 10-qubit, 120-gate circuits, validation on",
        "",
        "Time from `submit_circuits(...)` to the handle, client constructed beforehand. "
        "Floor = round trips x 50 ms + the CPU time of gzip (level 6) + base64 of every "
        "circuit of the same batch, measured in the same process after the run; round "
        "trips = 1 (`job/init/` carrying the batch as its `first_chunk`) when the batch "
        "fits in one request, else 3 (init, the chunks, then the final chunk). "
        "That is issue 16's floor, zlib's gzip at level 6; since `9b75cc4` the client "
        "compresses with ISA-L's gzip where it is installed (about 4x faster, ~7% "
        f"larger; this run: {compressor(data)}), so the results also give the ratio to "
        "the same floor with the client's own compressor (its `encode_circuit` over "
        "the batch, on one core, and the round trips its sizes need). "
        "Journal = bytes on disk of the "
        "journal file (with its -wal and -shm) after the client is closed. Median "
        "[min-max] of the repeats; the stall is the max.",
        "",
        "| circuits | runs | time | floor | time/floor | client CPU | CPU per circuit "
        "| scheduler CPU | max loop stall | journal, MB per 10k circuits |",
        "| ---: | ---: | --- | --- | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for size in p["sizes"]:
        runs = data["submit"][str(size)]
        lines.append(
            f"| {size:,} | {len(runs)} | {spread([r['wall'] for r in runs])} | "
            f"{spread([r['floor'] for r in runs])} | "
            f"{med([r['wall'] / r['floor'] for r in runs]):.2f}x | "
            f"{spread([r['cpu'] for r in runs])} | "
            f"{med([r['cpu'] / size * 1000 for r in runs]):.2f} ms | "
            f"{spread([r['server_cpu'] for r in runs])} | "
            f"{stall_cell(runs)} | "
            f"{med([r['journal_bytes'] / 1e6 * 10_000 / size for r in runs]):.2f} |"
        )
    fp = p["fetch"]
    fetch = data["fetch"]["runs"]
    lines += [
        "",
        f"## 2. Fetch {fp['circuits']:,} results",
        "",
        f"`get_job_results` of a COMPLETED job of {fp['circuits']:,} {fp['n_qubits']}-qubit "
        "circuits (`h` on every qubit, 1,000 shots: the sampler's histograms), set up "
        "with plain HTTP; default options, journal off.",
        "",
        "The last column is the stall's floor: one full garbage collection with the "
        "results alive, timed right after the call (any program holding them pays it "
        "whenever the collector runs a full pass).",
        "",
        "| runs | time | client CPU | max loop stall | gaps > 20 ms | full collection |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
        f"| {len(fetch)} | {spread([r['wall'] for r in fetch])} | "
        f"{spread([r['cpu'] for r in fetch])} | {stall_cell(fetch)} | "
        f"{max(r['stalls_over_20ms'] for r in fetch):.0f} | {full_collection(fetch)} |",
        "",
    ]
    mj = p["many_jobs"]
    jobs = mj["jobs"]
    keys = [key for key in SHAPES if data["many_jobs"].get(key)]
    runs_of = {key: data["many_jobs"][key] for key in keys}

    def duration(key: str) -> str:
        low, high = runs_of[key][0].get("job_duration", JOB_DURATION).split(",")
        return f"{low}-{high} s"

    lines += [
        f"## 3. {jobs:,} small jobs followed with `as_completed`",
        "",
        "Jobs of 1 or 2 random circuits, all submitted concurrently (one task each, "
        f"started {STARTED_PER_TURN} per loop turn), then followed with "
        "`client.as_completed(handles)` "
        f"(`polling_interval={POLLING_INTERVAL}`). Each job runs for a time drawn "
        "uniformly from the range in the column's head, counted from its finalization. "
        "With 1-6 s, jobs submitted early finish while later ones are still being "
        "submitted, and nothing follows them yet: their delay includes the rest of the "
        "submission (at least 10,000 requests over 32 connections at 50 ms: 15.6 s). "
        "Jobs that outlive the submission time `as_completed` alone; issue 16's delay "
        "goal (p95 at most 1 s) is read there. "
        "Delay = results in hand (client `time.monotonic()`) minus the job's finish on "
        "the scheduler (its `finished_at`, read once when the server stops and moved to "
        "the monotonic clock). 'Delay after following began' counts jobs that finished "
        "during the submission from the start of `as_completed`. `watch` = the "
        "`jobs/watch/` long polls (default); `watch=False` = a status request per job per "
        "interval. 'gather of no-op coroutines', for reference: the stall of an "
        f"`asyncio.gather` of {jobs:,} coroutines that only `await asyncio.sleep(0)` "
        "(asyncio runs their first steps in one loop iteration), what a program starting "
        "its submissions that way pays by itself. 'no ticker': client CPU "
        "of a second run of the same watch shape without the 5 ms ticker, whose own "
        "wake-ups cost about 27 ms of CPU a second on an idle loop here (0.2 ms a job "
        "over a 40 s follow of 5,000 jobs).",
        "",
        "| | " + " | ".join(f"{SHAPES[k].split(',')[0]}, jobs {duration(k)}" for k in keys) + " |",
        "| --- |" + " --- |" * len(keys),
    ]

    def row(name: str, get: Callable[[dict[str, Any]], float], unit: str, scale: float) -> None:
        cells = [spread([get(r) for r in runs_of[k]], unit, scale) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    def worst(name: str, get: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        cells = [stall_cell([get(r) for r in runs_of[k]]) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("submit all: time", lambda r: r["submit"]["wall"], "s", 1)
    row("follow all: time", lambda r: r["follow"]["wall"], "s", 1)
    row("delay, median", lambda r: r["delays"]["median"], "s", 1)
    row("delay, p95", lambda r: r["delays"]["p95"], "s", 1)
    row("delay, max", lambda r: r["delays"]["max"], "s", 1)
    row("delay after following began, p95", lambda r: r["follow_delays"]["p95"], "s", 1)
    row("jobs finished before following began", lambda r: r["finished_before_follow"], "", 1)
    row("client CPU per job, submit", lambda r: r["submit"]["cpu"] / jobs, "ms", 1000)
    row("client CPU per job, follow", lambda r: r["follow"]["cpu"] / jobs, "ms", 1000)
    for phase in ("submit", "follow"):  # second runs of the watch shapes, no ticker
        cells = [
            spread([r["without_ticker"][f"{phase}_cpu"] / jobs for r in runs_of[k]], "ms", 1000)
            if all("without_ticker" in r for r in runs_of[k])
            else "-"
            for k in keys
        ]
        lines.append(f"| client CPU per job, {phase}, no ticker | " + " | ".join(cells) + " |")
    worst("max loop stall, submit", lambda r: r["submit"])
    worst("max loop stall, follow", lambda r: r["follow"])
    if all("noop_gather" in r for k in keys for r in runs_of[k]):
        worst("max loop stall, gather of no-op coroutines", lambda r: r["noop_gather"])
    row("requests, all", lambda r: r["server"]["requests_total"], "", 1)
    endpoints = {k: runs_of[k][-1]["server"]["requests_by_endpoint"] for k in keys}
    by_endpoint = "; ".join(
        f"{SHAPES[k]} {json.dumps(v, sort_keys=True)}" for k, v in endpoints.items()
    )
    lines += [
        "",
        f"Requests by endpoint (last run): {by_endpoint}.",
        "",
        "## 4. Histogram decoding, asyncjob vs divi's numba decoder",
        "",
        "Results per second of CPU time (so the machine's other load counts little), "
        "decoding encoded histograms one by one in one process, both decoders warmed "
        "first (numba compiles on its first call), taking turns on blocks of the same "
        f"histograms ({DECODE_BLOCKS['large']} large or {DECODE_BLOCKS['small']:,} small, "
        "which decoder goes first alternating); divi gets a copy of each result (it "
        f"decodes in place). Rates: median [min-max] of {p['decode']['repeats']} passes "
        "over all the histograms. The ratio is the median of the blocks' ratios "
        "[min-max]: this machine's speed drifts by tens of percent within seconds, even "
        "in CPU time (a virtual machine's stolen time counts as the process's), and two "
        "neighbouring blocks share its state. (Runs before 2026-12-03 13:00 UTC gave "
        "the ratio of the median rates; before 09:00 UTC, the before/after table's "
        "baseline among them, they counted wall time over 3 repeats: compare their "
        "ratios to divi, not their rates.)",
        "",
        "| histograms | asyncjob | divi | asyncjob/divi (rate) |",
        "| --- | --- | --- | --- |",
    ]
    for name, d in data["decode"].items():
        lines.append(
            f"| {d['count']:,} x {d['n_bits']}-bit, {d['outcomes']:,} outcomes ({name}) | "
            f"{spread(d['asyncjob'], '/s')} | {spread(d['divi'], '/s')} | "
            f"{decode_ratio(d):.2f}"
            + (f" [{min(d['paired']):.2f}-{max(d['paired']):.2f}]" if d.get("paired") else "")
            + " |"
        )
    lines.append("")
    if baseline is not None:
        lines += before_after(baseline, data)
    return "\n".join(lines) + "\n"


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    b, a = headline(before), headline(after)
    out = [
        "## Before/after",
        "",
        f"Before: {before['date']}, `asyncjob/` last changed in "
        f"{before.get('package_commit', '?')}; "
        "after: this run. Same workloads, same machine unless the dates say otherwise. "
        "Absolute times are noisy on a shared machine; compare ratios to the floor.",
        "",
        "| figure | before | after | after/before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, value in a.items():
        if name in b:
            r = value / b[name] if b[name] else float("nan")
            out.append(f"| {name} | {b[name]:.4g} | {value:.4g} | {r:.3f} |")
    return [*out, ""]


def goal_of(name: str) -> tuple[str, Callable[[float], bool]] | None:
    """Issue 16's goal on a headline figure, as text and a test; None if it has none."""
    if name.startswith("submit 100:"):
        return None  # the goals start at 1,000 circuits
    if name.endswith("time / floor"):
        return "<= 2.0x", lambda v: v <= 2.0
    if "max loop stall" in name:  # both the whole gap and its own work are held to it
        return "<= 20 ms", lambda v: v <= 20
    if "journal on disk" in name:
        return "<= 2 MB", lambda v: v <= 2
    if "outlive" in name and "watch=False" not in name and name.endswith("p95 delay (s)"):
        return "<= 1 s", lambda v: v <= 1  # the goal is set "with long polls"
    if name.startswith(tuple(f"{n:,} jobs (watch" for n in (5000,))):
        if name.endswith(("CPU per job, submit (ms)", "CPU per job, submit, no ticker (ms)")):
            return "<= 1 ms", lambda v: v <= 1
        follow = ("CPU per job, follow (ms)", "CPU per job, follow, no ticker (ms)")
        if name.endswith(follow) and "watch=False" not in name:
            return "<= 0.3 ms", lambda v: v <= 0.3
    if name.endswith("asyncjob / divi"):
        return ">= 1.2x", lambda v: v >= 1.2
    return None


def results_section(data: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """The section "scale" of results.md: every headline figure, before, after, goal."""
    before = headline(baseline) if baseline is not None else {}
    lines = [
        "## At scale (issue 16): `nox -s bench_scale`",
        "",
        f"One full run of `bench/scale.py` on {data['date']}, `asyncjob/` as of "
        f"{data.get('package_commit', '?')}"
        + (
            f"; before: {baseline['date']}, `asyncjob/` as of "
            f"{baseline.get('package_commit', '?')}, same machine"
            if baseline is not None
            else ""
        )
        + ". Workloads, method and every run's figures: `scale.md`. Goals are issue 16's; "
        "a dash means the figure was not measured in that run."
        + "".join(f" Before: {note}." for note in (baseline or {}).get("notes", [])),
        "",
        "| figure | before | after | goal | met |",
        "| --- | ---: | ---: | ---: | :---: |",
    ]
    for name, value in headline(data).items():
        goal = goal_of(name)
        old = f"{before[name]:.4g}" if name in before else "-"
        met = "" if goal is None else ("yes" if goal[1](value) else "no")
        lines.append(f"| {name} | {old} | {value:.4g} | {goal[0] if goal else ''} | {met} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def commit(*path: str) -> str:
    """The short hash of HEAD, or of the last commit touching `path` (`asyncjob`)."""
    try:
        return subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", *path],
            capture_output=True,
            text=True,
            cwd=BENCH_DIR,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (~2 minutes)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    parser.add_argument("--baseline", type=Path, help="scale.json of an earlier run")
    parser.add_argument("--from-json", type=Path, help="only re-render a scale.json")
    parser.add_argument("--only", help="comma-separated workloads (raw JSON only)")
    parser.add_argument(
        "--job-duration",
        default=JOB_DURATION,
        help=f"MIN,MAX seconds each of the many jobs runs (default {JOB_DURATION})",
    )
    parser.add_argument(
        "--outliving-duration",
        help="MIN,MAX seconds of jobs that outlive the submission "
        f"(default {OUTLIVING_DURATION}; {QUICK_OUTLIVING} with --quick)",
    )
    args = parser.parse_args()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        (args.out / "scale.md").write_text(report(data, baseline))
        replace_section(args.out / "results.md", "scale", results_section(data, baseline))
        return
    started = time.monotonic()
    p = plan(args.quick)
    outliving = args.outliving_duration or (QUICK_OUTLIVING if args.quick else OUTLIVING_DURATION)
    data: dict[str, Any] = {
        "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "package_commit": commit("../asyncjob"),
        "machine": machine(),
        "plan": {
            **p,
            "job_duration": args.job_duration,
            "outliving_duration": outliving,
        },
    }
    me = sys.executable
    dp = p["decode"]
    workloads: dict[str, dict[str, Any]] = {
        "decode": {
            "repeats": dp["repeats"],
            "sizes": {
                "large": [dp["large"], 20, 1000, DECODE_BLOCKS["large"]],
                "small": [dp["small"], 10, 16, DECODE_BLOCKS["small"]],
            },
        },
        "submit": {"sizes": p["sizes"], "repeats": p["submit_repeats"]},
        "fetch": p["fetch"],
        "many_jobs": {
            **p["many_jobs"],
            "shapes": shapes(args.job_duration, outliving),
            "polling_interval": POLLING_INTERVAL,
        },
    }
    only = set(args.only.split(",")) if args.only else set(workloads)
    for name, params in workloads.items():
        if name in only:
            print(f"{name}:", flush=True)
            data[name] = call({"workload": name, "python": me, **params})
    data["duration"] = time.monotonic() - started
    data["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(data, indent=1))
    if args.only:
        print(f"partial run: raw data in {args.out / 'scale.json'}")
        return
    (args.out / "scale.md").write_text(report(data, baseline))
    if args.quick:  # a smoke run does not replace a full run's figures in results.md
        print(f"wrote {args.out / 'scale.md'} and {args.out / 'scale.json'}")
        return
    replace_section(args.out / "results.md", "scale", results_section(data, baseline))
    print(f"wrote {args.out / 'scale.md'}, {args.out / 'scale.json'} and a section of results.md")


if __name__ == "__main__":
    main()
