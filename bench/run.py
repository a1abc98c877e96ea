"""Run asyncjob and qoro-divi side by side on the local scheduler; write the report.

    python bench/run.py --divi-python .nox/bench-divi/bin/python [--quick]

(`nox -s bench` does exactly this, after building both venvs.) Every workload
runs in a worker subprocess per client - `asyncjob_worker.py` with this
interpreter, `divi_worker.py` with the divi venv's - against fresh scheduler
subprocesses (`server.py`, 50 ms added latency per request, sampler executor).
Writes `bench/results.md`, `bench/results.json` and `bench/submit_time.png`.
With `--baseline FILE` (a results.json of an earlier run) the report adds a
before/after table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import BENCH_DIR, DECODE_WORKERS, LATENCY, percentile, write_report

ASYNCJOB_WORKER = BENCH_DIR / "asyncjob_worker.py"
DIVI_WORKER = BENCH_DIR / "divi_worker.py"
POLLING_INTERVAL = 0.5
JOB_DURATION = "1,6"
HANG_TIME_CAP = 2.0


def plan(quick: bool) -> dict[str, Any]:
    """Sizes and repeat counts of every workload (`--quick`: a smoke run)."""
    if quick:
        return {
            "sizes": [100, 1000],
            "submit_repeats": {"100": 5, "1000": 3},
            "results_repeats": 3,
            "many_jobs": {"repeats": 1, "jobs": 60},
            "cancel": {"asyncjob": 10, "divi": 3},
            "cpu": {"repeats": 3, "circuits": 500, "full_circuits": 20, "divi_circuits": 50},
            "histograms": 1000,
            "divi_vqe": {"repeats": 1, "iterations": 3},
        }
    return {
        "sizes": [100, 1000, 5000],
        "submit_repeats": {"100": 7, "1000": 5, "5000": 3},
        "results_repeats": 5,
        "many_jobs": {"repeats": 3, "jobs": 200},
        "cancel": {"asyncjob": 40, "divi": 3},
        "cpu": {"repeats": 3, "circuits": 2000, "full_circuits": 60, "divi_circuits": 200},
        "histograms": 5000,
        "divi_vqe": {"repeats": 3, "iterations": 10},
    }


def call(python: str, worker: Path, params: dict[str, Any], env: dict[str, str]) -> Any:
    """Run one workload in a worker subprocess and return its JSON result."""
    started = time.monotonic()
    proc = subprocess.run(
        [python, str(worker), json.dumps(params)],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCH_DIR,
        check=False,
    )
    took = time.monotonic() - started
    print(f"  {worker.stem} {params['workload']}: {took:.1f} s", flush=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{worker.name} {params['workload']} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_histograms(path: Path, count: int) -> None:
    """`count` encoded histograms of 20 bits with 1,000 distinct outcomes each."""
    from asyncjob._histogram import encode_histogram

    rng = random.Random(20)
    encoded = []
    for _ in range(count):
        outcomes = rng.sample(range(1 << 20), 1000)
        counts = {format(o, "020b"): rng.choice((1, 1, 1, 2, 3, 7)) for o in outcomes}
        encoded.append(encode_histogram(counts, 20))
    path.write_text(json.dumps(encoded))


def write_small_histograms(path: Path, count: int) -> None:
    """`count` encoded 10-bit histograms of 4 to 16 outcomes (`decode_speed.small`)."""
    from decode_speed import small

    path.write_text(json.dumps(small(count)))


def versions(divi_python: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python (asyncjob side)": platform.python_version()}
    for name in ("asyncjob-quantum", "aiohttp", "anyio", "openqasm3"):
        out[name.removesuffix("-quantum")] = metadata.version(name)
    script = (
        "import json, platform; from importlib import metadata as m; "
        "print(json.dumps({'python (divi side)': platform.python_version(), "
        "**{d.metadata['Name']: d.version for d in m.distributions() "
        "if d.metadata['Name'] in ('qoro-divi', 'requests', 'openqasm3')}}))"
    )
    divi = subprocess.run([divi_python, "-c", script], capture_output=True, text=True, check=True)
    for name, version in json.loads(divi.stdout).items():
        out[name if name.startswith("python") else f"{name} (divi side)"] = version
    return out


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --------------------------------------------------------------------------- statistics


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(values: list[float], unit: str = "s", scale: float = 1.0, digits: int = 3) -> str:
    s = summary([v * scale for v in values])
    return f"{s['median']:.{digits}g} {unit} [{s['min']:.{digits}g}-{s['max']:.{digits}g}]"


def ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def job_delays(run: dict[str, Any]) -> list[float]:
    """Per job: results in hand (client clock) minus terminal status (server clock)."""
    finished = run["server"]["finished_at"]
    return [got - finished[job] for job, got in run["got"].items()]


def requests_after_submit(run: dict[str, Any]) -> int:
    by = run["server"]["requests_by_endpoint"]
    return int(by.get("status", 0) + by.get("watch", 0) + by.get("results", 0))


# --------------------------------------------------------------------------- the report


def report(data: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    a, d, p = data["asyncjob"], data["divi"], data["plan"]
    rows: list[tuple[str, str, str, str, str]] = []
    lines = [
        "# asyncjob vs qoro-divi: side-by-side benchmarks",
        "",
        f"Generated by `bench/run.py{' --quick' if data['quick'] else ''}` (what `nox -s bench` "
        f"runs) on {data['date']}; the whole run took {data['duration']:.0f} s.",
        "",
        "## Machine and versions",
        "",
        *[f"- {k}: {v}" for k, v in data["machine"].items()],
        f"- load average at end: {data['load_end']}",
        *[f"- {k}: {v}" for k, v in data["versions"].items()],
        "",
        "## Setup",
        "",
        f"- A fresh local scheduler (`bench/server.py`: `asyncjob serve` plus a stats report on "
        f"exit) in its own subprocess for every run, on 127.0.0.1, sampler executor, "
        f"{LATENCY * 1000:.0f} ms added before every request is answered, uploaded circuits "
        f"unpacked and checked in {DECODE_WORKERS} worker processes (`--decode-workers`), "
        "the same server for both clients.",
        "- Each client runs in its own worker subprocess (`asyncjob_worker.py` in the bench "
        "venv, `divi_worker.py` in the divi venv); divi's `QoroService` is pointed at the "
        "scheduler by setting `divi.backends.runners._qoro.API_URL`, its code untouched.",
        "- Figures: median [min-max] of the repeats; ratio = median(asyncjob) / median(divi), "
        "both measured in the same run. Default options on both sides (asyncjob's job journal "
        "is on, as by default, in a temporary file) unless a row says otherwise.",
        "- The machine is shared (see the load averages): absolute times are noisy; "
        "the ratios are the result.",
        "",
    ]

    # 1. submit
    lines += [
        "## 1. Submit: random 10-qubit circuits of 120 gates",
        "",
        "Time from `submit_circuits(...)` to the job handle (client constructed beforehand). "
        "Floor = 2 x 50 ms latency + asyncjob's own CPU time for validation and compression "
        "of a same-sized batch, measured separately in the same worker. Scheduler CPU = "
        "CPU time the scheduler and its decode workers used during asyncjob's submission "
        "(`/proc`): they decode, decompress and validate every circuit on the same 2 cores. "
        "asyncjob "
        "validates the whole batch before it sends anything, so the scheduler's work can "
        "overlap only the compression and the upload; the last column is asyncjob's time "
        "over the floor plus the scheduler's CPU time.",
        "",
        "| circuits | asyncjob | divi | asyncjob/divi | floor | asyncjob/floor "
        "| scheduler CPU | asyncjob/(floor + scheduler CPU) |",
        "| ---: | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for size in p["sizes"]:
        at = a["submit"][str(size)]["times"]
        dt = d["submit"][str(size)]["times"]
        low = floor(data, size)
        server = a["submit"][str(size)].get("server_cpu") or [0.0]
        serial = [f + s for f, s in zip(low, server, strict=False)]
        lines.append(
            f"| {size:,} | {fmt(at)} | {fmt(dt)} | {ratio(at, dt):.3f} | {fmt(low)} | "
            f"{ratio(at, low):.2f} | {fmt(server)} | {ratio(at, serial):.2f} |"
        )
        if size >= 1000:
            rows.append(
                (
                    f"Submit {size:,} circuits",
                    f"{statistics.median(at):.2f} s",
                    f"{statistics.median(dt):.2f} s",
                    f"{ratio(at, dt):.3f}",
                    "<= 0.25",
                )
            )
    lines += ["", "![submit time vs batch size](submit_time.png)", ""]

    # 2. results
    at, dt = a["results"]["times"], d["results"]["times"]
    tuned = a["results"]["times_concurrency_32"]
    lines += [
        "## 2. Results: 5,000 results in 50 pages of 100",
        "",
        "`get_job_results` of a COMPLETED job of 5,000 10-bit circuits (the sampler's "
        "histograms), set up with plain HTTP.",
        "",
        "| client | time | asyncjob/divi |",
        "| --- | --- | ---: |",
        f"| asyncjob (default: 16 pages at once) | {fmt(at)} | {ratio(at, dt):.3f} |",
        f"| asyncjob, `results_concurrency=32` | {fmt(tuned)} | {ratio(tuned, dt):.3f} |",
        f"| divi (pages one after another) | {fmt(dt)} | 1 |",
        "",
    ]
    rows.append(
        (
            "Fetch 5,000 results",
            f"{statistics.median(at):.2f} s",
            f"{statistics.median(dt):.2f} s",
            f"{ratio(at, dt):.3f}",
            "<= 0.125",
        )
    )

    # 3. many jobs
    mj = p["many_jobs"]
    lines += [
        f"## 3. Many jobs: {mj['jobs']} jobs of 10 circuits",
        "",
        f"Job durations drawn uniformly in [{JOB_DURATION.replace(',', ', ')}] s from "
        f"finalization, so they finish at random times over a 5 s window; the same polling "
        f"interval, {POLLING_INTERVAL} s, on both sides. Both first submit every job "
        "(asyncjob: one task per job on one event loop; divi: `ThreadPoolExecutor(32).map("
        "submit_circuits)`), then follow them: asyncjob with `client.as_completed(handles)`, "
        "divi with 32 threads each doing blocking `poll_job_status(loop_until_complete=True)` "
        "then `get_job_results`.",
        "",
        "asyncjob's polls are long polls by default: one `POST jobs/watch/` (a protocol "
        "extension the local scheduler serves; a server without it answers 404 and asyncjob "
        "polls each job instead) lists every unfinished job and is held by the server until "
        "one of them is terminal or the interval has passed. The column `watch=False` is "
        "asyncjob polling each job's `status/` every interval, the plain protocol divi "
        "speaks; both asyncjob variants run interleaved in the same worker.",
        "",
        "Delay = results in hand (client, `time.monotonic()`) minus the moment the job became "
        "terminal on the scheduler (`bench/server.py` stamps it with `time.monotonic()` when "
        "`LocalScheduler.wait_until` wakes on the state change; CLOCK_MONOTONIC is "
        "system-wide, so both clocks agree). Requests counted by the scheduler "
        "(`stats.requests_by_endpoint`); submission requests are the same on both sides.",
        "",
        "| | asyncjob | asyncjob, `watch=False` | divi | asyncjob/divi |",
        "| --- | --- | --- | --- | ---: |",
    ]
    a_runs, d_runs = a["many_jobs"]["runs"], d["many_jobs"]["runs"]
    n_runs = a["many_jobs"].get("runs_no_watch") or a_runs

    def figures(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
        delays = [job_delays(r) for r in runs]
        return {
            "total time": [r["end"] - r["start"] for r in runs],
            "delay, median": [statistics.median(x) for x in delays],
            "delay, p95": [percentile(x, 0.95) for x in delays],
            "HTTP requests, all": [float(r["server"]["requests_total"]) for r in runs],
            "HTTP requests, polls + results": [float(requests_after_submit(r)) for r in runs],
        }

    af, nf, df = figures(a_runs), figures(n_runs), figures(d_runs)
    for name in af:
        unit, digits = ("s", 3) if name.startswith(("total", "delay")) else ("", 5)
        lines.append(
            f"| {name} | {fmt(af[name], unit, digits=digits)} | "
            f"{fmt(nf[name], unit, digits=digits)} | {fmt(df[name], unit, digits=digits)} | "
            f"{ratio(af[name], df[name]):.3f} |"
        )
    a_p95, d_p95 = af["delay, p95"], df["delay, p95"]
    a_req, d_req = af["HTTP requests, all"], df["HTTP requests, all"]
    by_a = a_runs[-1]["server"]["requests_by_endpoint"]
    by_n = n_runs[-1]["server"]["requests_by_endpoint"]
    by_d = d_runs[-1]["server"]["requests_by_endpoint"]
    lines += [
        "",
        f"Requests by endpoint (last run): asyncjob {json.dumps(by_a, sort_keys=True)}; "
        f"asyncjob `watch=False` {json.dumps(by_n, sort_keys=True)}; "
        f"divi {json.dumps(by_d, sort_keys=True)}.",
        "",
    ]
    rows.append(
        (
            f"{mj['jobs']} jobs: p95 delay to results",
            f"{statistics.median(a_p95):.2f} s",
            f"{statistics.median(d_p95):.2f} s",
            f"{ratio(a_p95, d_p95):.3f}",
            f"<= {POLLING_INTERVAL} s (asyncjob)",
        )
    )
    rows.append(
        (
            f"{mj['jobs']} jobs: HTTP requests",
            f"{statistics.median(a_req):.0f}",
            f"{statistics.median(d_req):.0f}",
            f"{ratio(a_req, d_req):.3f}",
            "< 1",
        )
    )

    # 4. cancellation
    backend, client, divi = (
        a["cancel"]["JobBackend"],
        a["cancel"]["AsyncJobClient"],
        d["cancel"]["QoroService"],
    )
    lines += [
        "## 4. Cancellation latency while a status request hangs",
        "",
        "Fault `hang_rate=1.0` on `status` and `jobs/watch/` (where asyncjob's long polls "
        "go); `poll_job_status(loop_until_complete=True, "
        "cancellation_event=event)`, event set 0.3 s into the hung request; latency = event "
        f"set -> call returned. The scheduler gives up a hung request after {HANG_TIME_CAP:g} "
        "s, which caps divi's wait (its own bound is the `timeout=200` s of its status "
        "request).",
        "",
        "| client | median [min-max] | p99 | n |",
        "| --- | --- | ---: | ---: |",
        f"| asyncjob `JobBackend` | {fmt(backend, 'ms', 1000)} | "
        f"{percentile(backend, 0.99) * 1000:.1f} ms | {len(backend)} |",
        f"| asyncjob `AsyncJobClient` | {fmt(client, 'ms', 1000)} | "
        f"{percentile(client, 0.99) * 1000:.1f} ms | {len(client)} |",
        f"| divi `QoroService` | {fmt(divi, 'ms', 1000)} | "
        f"{percentile(divi, 0.99) * 1000:.0f} ms (capped) | {len(divi)} |",
        "",
    ]
    rows.append(
        (
            "Cancel during a hung request, p99",
            f"{percentile(backend, 0.99) * 1000:.0f} ms",
            f">= {percentile(divi, 0.99) * 1000:.0f} ms",
            f"{percentile(backend, 0.99) / percentile(divi, 0.99):.3f}",
            "< 100 ms (asyncjob)",
        )
    )

    # 5. CPU
    ac, dc = a["cpu"], d["cpu"]
    cp = p["cpu"]
    lines += [
        "## 5. Client CPU cost",
        "",
        f"Rates on distinct random circuits ({cp['circuits']:,} for asyncjob's fast path and "
        f"compression, {cp['divi_circuits']} for divi's `validate_qasm`, {cp['full_circuits']} "
        f"for the openqasm3 parser), {p['histograms']:,} encoded histograms of 20 bits with "
        f"1,000 distinct outcomes each and {10 * p['histograms']:,} of 10 bits with 4 to 16 "
        "(each client in its own process; `bench/decode_speed.py` compares the decoders in one "
        "process, its section below); median [min-max] of "
        f"{cp['repeats']} repeats. Peak RSS: a subprocess decodes and keeps every histogram "
        "(`resource.getrusage` maxrss before and after).",
        "",
        "| step | asyncjob | divi | asyncjob/divi (time per item) |",
        "| --- | --- | --- | ---: |",
    ]

    def rate_row(name: str, av: list[float], dv: list[float] | None, unit: str) -> None:
        right = fmt(dv, unit, digits=4) if dv else "-"
        r = f"{statistics.median(dv) / statistics.median(av):.3f}" if dv else "-"
        lines.append(f"| {name} | {fmt(av, unit, digits=4)} | {right} | {r} |")

    rate_row("validation: fast path, `check_circuit`", ac["check_circuit"], dc["validate_qasm"],
             "circuits/s")  # fmt: skip
    rate_row("validation: `check_batch`", ac["check_batch"], None, "circuits/s")
    rate_row("validation: `check_circuit(full=True)` (openqasm3 + checks)",
             ac["check_circuit_full"], None, "circuits/s")  # fmt: skip
    rate_row("validation: bare `openqasm3.parse`", ac["openqasm3_parse"], dc["openqasm3_parse"],
             "circuits/s")  # fmt: skip
    rate_row("compression (gzip + base64)", ac["compress"], dc["compress"], "circuits/s")
    rate_row("histogram decoding, 20-bit, 1,000 outcomes", ac["decode"], dc["decode"],
             "results/s")  # fmt: skip
    if "decode_small" in ac and "decode_small" in dc:
        rate_row("histogram decoding, 10-bit, 4-16 outcomes", ac["decode_small"],
                 dc["decode_small"], "results/s")  # fmt: skip
    a_rss, d_rss = a["rss"], d["rss"]
    lines += [
        f"| peak RSS decoding {p['histograms']:,} results | "
        f"{fmt([r['peak_kib'] / 1024 for r in a_rss], 'MiB')} "
        f"(+{statistics.median([(r['peak_kib'] - r['before_kib']) / 1024 for r in a_rss]):.0f}"
        f" MiB) | {fmt([r['peak_kib'] / 1024 for r in d_rss], 'MiB')} "
        f"(+{statistics.median([(r['peak_kib'] - r['before_kib']) / 1024 for r in d_rss]):.0f}"
        " MiB) | - |",
        "",
    ]
    fast, divi_validate = (
        statistics.median(ac["check_circuit"]),
        statistics.median(dc["validate_qasm"]),
    )
    rows.append(
        (
            "Validation (fast path vs divi's validate_qasm)",
            f"{fast:,.0f}/s",
            f"{divi_validate:,.0f}/s",
            f"{divi_validate / fast:.3f}",
            "-",
        )
    )
    rows.append(
        (
            "Decode 20-bit, 1,000-outcome histograms",
            f"{statistics.median(ac['decode']):,.0f}/s",
            f"{statistics.median(dc['decode']):,.0f}/s",
            f"{statistics.median(dc['decode']) / statistics.median(ac['decode']):.3f}",
            "<= 0.83",
        )
    )
    if "decode_small" in ac and "decode_small" in dc:
        small_a, small_d = (
            statistics.median(ac["decode_small"]),
            statistics.median(dc["decode_small"]),
        )
        rows.append(
            (
                "Decode 10-bit, 4-16-outcome histograms",
                f"{small_a:,.0f}/s",
                f"{small_d:,.0f}/s",
                f"{small_d / small_a:.3f}",
                "<= 0.83",
            )
        )

    # 6. a divi VQE
    if "divi_vqe" in a and "divi_vqe" in d:
        lines += divi_vqe_section(a["divi_vqe"], d["divi_vqe"], p["divi_vqe"], rows)

    if baseline is not None:
        lines += before_after(baseline, data)

    summary_lines = [
        "## Summary",
        "",
        "| workload | asyncjob | divi | asyncjob/divi | goal |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {w} | {x} | {y} | {r} | {g} |" for w, x, y, r, g in rows],
        "",
        "Ratios are asyncjob time (or time per item) over divi's, from the same run; "
        "lower is better for asyncjob.",
        "",
    ]
    insert_at = lines.index("## 1. Submit: random 10-qubit circuits of 120 gates")
    return "\n".join(lines[:insert_at] + summary_lines + lines[insert_at:]) + "\n"


def divi_vqe_section(
    a: list[dict[str, Any]],
    d: list[dict[str, Any]],
    plan: dict[str, Any],
    rows: list[tuple[str, str, str, str, str]],
) -> list[str]:
    """The divi VQE: the same program on asyncjob's `DiviBackend` and on divi's `QoroService`."""
    figures = {
        "wall time of `vqe.run()`": ([r["time"] for r in a], [r["time"] for r in d], "s"),
        "HTTP requests": (
            [float(r["requests"]) for r in a],
            [float(r["requests"]) for r in d],
            "",
        ),
        "bytes sent (request bodies)": (
            [float(r["bytes"]) for r in a],
            [float(r["bytes"]) for r in d],
            "B",
        ),
    }
    lines = [
        "## 6. A divi VQE on each client",
        "",
        f"The same qoro-divi 0.15.1 VQE (H2, 4 qubits, Hartree-Fock ansatz, COBYLA, "
        f"{plan['iterations']} iterations, sampling mode with 1,000 shots: 5 measurement groups "
        "per evaluation) run with `backend=asyncjob.divi.DiviBackend(...)` (asyncjob venv) and "
        "with divi's `QoroService` (divi venv), each against a fresh scheduler with 50 ms "
        f"latency, polling interval {POLLING_INTERVAL} s on both. Both send divi's parametric "
        "payloads: `QoroService` one template chunk per circuit, `DiviBackend` (default "
        '`parametric="auto"`) binds them with the server\'s substitution into one chunk, so '
        "the sampler executor sees the same circuits and both runs take the same path (same "
        "circuits, same energies). Requests exclude `QoroService`'s two constructor requests.",
        "",
        "| | asyncjob | divi | asyncjob/divi |",
        "| --- | --- | --- | ---: |",
    ]
    for name, (av, dv, unit) in figures.items():
        digits = 4 if unit == "s" else 6
        lines.append(
            f"| {name} | {fmt(av, unit, digits=digits)} | {fmt(dv, unit, digits=digits)} | "
            f"{ratio(av, dv):.3f} |"
        )
    lines += [
        f"| circuits | {a[0]['circuits']} | {d[0]['circuits']} | - |",
        f"| best energy (synthetic counts: not physics) | {a[0]['energy']:.6f} | "
        f"{d[0]['energy']:.6f} | - |",
        "",
        f"Requests by endpoint (last run): asyncjob "
        f"{json.dumps(a[-1]['requests_by_endpoint'], sort_keys=True)}; divi "
        f"{json.dumps(d[-1]['requests_by_endpoint'], sort_keys=True)}.",
        "",
    ]
    at, dt = figures["wall time of `vqe.run()`"][:2]
    rows.append(
        (
            f"divi VQE, {plan['iterations']} iterations (sampling)",
            f"{statistics.median(at):.2f} s",
            f"{statistics.median(dt):.2f} s",
            f"{ratio(at, dt):.3f}",
            "<= 0.5",
        )
    )
    return lines


def same_machine(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Whether two runs had the same CPU model, in a sentence for the report."""
    cpus = before.get("machine", {}).get("cpu"), after.get("machine", {}).get("cpu")
    if cpus[0] == cpus[1]:
        return "same machine."
    return (
        f"the machine differs (before: {cpus[0]}; after: {cpus[1]}), so compare the ratios "
        "to divi of each run rather than these times."
    )


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Rows comparing asyncjob's figures of a baseline run with this run."""
    b, a = before["asyncjob"], after["asyncjob"]
    out = [
        "## Before/after (asyncjob only)",
        "",
        "Profiles (pyinstrument, `bench/profile.py`): `profile_results.txt` (fetching 5,000 "
        "results) and `profile_submit.txt` (the client-side work of submitting 5,000 circuits). "
        "The baseline, `bench/baseline.json`, is a full `nox -s bench` run of the code at "
        "`18bb437` (the start of the round that added the divi backend, the split client "
        "and the faster validator); `bench/NOTES.md` says what changed.",
        "",
        f"Before: {before['date']}; after: this run. Same workloads; "
        + same_machine(before, after),
        "",
        "| figure | before | after | after/before |",
        "| --- | --- | --- | ---: |",
    ]
    items: list[tuple[str, Callable[[dict[str, Any]], list[float]], str]] = [
        ("results: fetch 5,000 (default)", lambda x: x["results"]["times"], "s"),
        ("histogram decoding (20-bit)", lambda x: x["cpu"]["decode"], "results/s"),
    ]
    for size in ("1000", "5000"):
        if size in b["submit"] and size in a["submit"]:
            items.append((f"submit {size} circuits",
                          lambda x, s=size: x["submit"][s]["times"], "s"))  # fmt: skip
            items.append((f"client CPU, {size} circuits",
                          lambda x, s=size: x["submit"][s]["client_cpu"], "s"))  # fmt: skip
    items += [
        ("200 jobs: p95 delay to results",
         lambda x: [percentile(job_delays(r), 0.95) for r in x["many_jobs"]["runs"]], "s"),
        ("200 jobs: HTTP requests",
         lambda x: [float(r["server"]["requests_total"]) for r in x["many_jobs"]["runs"]], ""),
    ]  # fmt: skip
    for name, get, unit in items:
        try:
            bv, av = get(b), get(a)
        except KeyError:
            continue
        out.append(f"| {name} | {fmt(bv, unit, digits=4)} | {fmt(av, unit, digits=4)} | "
                   f"{ratio(av, bv):.3f} |")  # fmt: skip
    return [*out, ""]


def floor(data: dict[str, Any], size: int) -> list[float]:
    return [2 * LATENCY + c for c in data["asyncjob"]["submit"][str(size)]["client_cpu"]]


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = data["plan"]["sizes"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = [
        ("asyncjob", [data["asyncjob"]["submit"][str(s)]["times"] for s in sizes]),
        ("qoro-divi", [data["divi"]["submit"][str(s)]["times"] for s in sizes]),
        ("floor (2 latencies + asyncjob client CPU)", [floor(data, s) for s in sizes]),
    ]
    for (label, runs), style in zip(series, ("o-", "s-", "^:"), strict=True):
        med = [statistics.median(r) for r in runs]
        low = [m - min(r) for m, r in zip(med, runs, strict=True)]
        high = [max(r) - m for m, r in zip(med, runs, strict=True)]
        ax.errorbar(sizes, med, yerr=[low, high], fmt=style, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("circuits per batch (10 qubits, 120 gates)")
    ax.set_ylabel("time from call to job handle (s)")
    ax.set_title(f"Submit time, local scheduler with {LATENCY * 1000:.0f} ms latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divi-python", required=True, help="python of a venv with qoro-divi")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    parser.add_argument("--baseline", type=Path, help="results.json of an earlier run")
    parser.add_argument(
        "--only", help="comma-separated workloads to run (the report needs all of them)"
    )
    parser.add_argument(
        "--from-json", type=Path, help="only re-render the report and plot of a results.json"
    )
    parser.add_argument(
        "--asyncjob-only", action="store_true", help="skip divi (with --only: a baseline)"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        baseline = json.loads(args.baseline.read_text()) if args.baseline else None
        write_report(args.out / "results.md", report(saved, baseline))
        plot(saved, args.out / "submit_time.png")
        return
    started = time.monotonic()
    p = plan(args.quick)
    me = sys.executable
    divi = str(Path(args.divi_python).absolute())
    workdir = Path(tempfile.mkdtemp(prefix="asyncjob-bench-"))
    histograms = workdir / "histograms.json"
    write_histograms(histograms, p["histograms"])
    small_histograms = workdir / "small_histograms.json"
    write_small_histograms(small_histograms, 10 * p["histograms"])
    env = {**os.environ, "ASYNCJOB_JOURNAL": str(workdir / "journal.sqlite3")}
    data: dict[str, Any] = {
        "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(divi),
        "plan": p,
        "asyncjob": {},
        "divi": {},
    }
    cp = p["cpu"]
    workloads: dict[str, dict[str, Any]] = {
        "submit": {"sizes": p["sizes"], "repeats": p["submit_repeats"]},
        "results": {"repeats": p["results_repeats"]},
        "many_jobs": {**p["many_jobs"], "job_duration": JOB_DURATION},
        "cancel": {"hang_time": HANG_TIME_CAP},
        "cpu": {
            **cp,
            "seed": 77,
            "histograms": str(histograms),
            "small_histograms": str(small_histograms),
        },
        "divi_vqe": p["divi_vqe"],
    }
    only = set(args.only.split(",")) if args.only else set(workloads) | {"rss"}
    sides = (("asyncjob", me, ASYNCJOB_WORKER), ("divi", divi, DIVI_WORKER))
    if args.asyncjob_only:
        sides = sides[:1]
    for name, params in workloads.items():
        if name not in only:
            continue
        print(f"{name}:", flush=True)
        for side, python, worker in sides:
            extra = {"repeats": p["cancel"][side]} if name == "cancel" else {}
            data[side][name] = call(
                python, worker, {"workload": name, "python": me, **params, **extra}, env
            )
    if "rss" in only:
        print("rss:", flush=True)
        for side, python, worker in sides:
            data[side]["rss"] = [
                call(python, worker, {"workload": "rss", "histograms": str(histograms)}, env)
                for _ in range(3)
            ]
    data["duration"] = time.monotonic() - started
    data["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(data, indent=1))
    if args.only or args.asyncjob_only:
        print(f"partial run: raw data in {args.out / 'results.json'}")
        return
    if importlib.util.find_spec("pyinstrument") is not None:
        print("profiles:", flush=True)
        subprocess.run([me, str(BENCH_DIR / "profile.py"), "--out", str(args.out)], check=True)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    write_report(args.out / "results.md", report(data, baseline))
    plot(data, args.out / "submit_time.png")
    print(f"wrote {args.out / 'results.md'} and {args.out / 'submit_time.png'}")


if __name__ == "__main__":
    main()
