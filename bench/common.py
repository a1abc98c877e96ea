"""Helpers shared by the bench runner and both workers (standard library only).

Both the asyncjob worker and the divi worker import this module, and the divi
worker runs in a venv without asyncjob, so nothing here imports asyncjob.

- `random_circuit` / `make_batch`: the random 10-qubit circuits of the workloads;
- `Server`: a fresh local scheduler in a subprocess (`bench/server.py`), whose
  stats and job completion times are read when it stops;
- `create_job`: submits a batch with plain HTTP, so the setup of a workload
  (e.g. a completed job whose results are then fetched) favours neither client.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
TOKEN = "bench-token"
LATENCY = 0.05
"""Seconds the scheduler adds before answering each request."""
DECODE_WORKERS = 2
"""Worker processes in which the scheduler unpacks and checks uploaded circuits."""

H2_TERMS: list[tuple[str, list[int], float]] = [
    ("", [], -0.04207897647782276),
    ("Z", [0], 0.17771287465139946),
    ("Z", [1], 0.1777128746513994),
    ("Z", [2], -0.24274280513140462),
    ("Z", [3], -0.24274280513140462),
    ("ZZ", [0, 1], 0.17059738328801052),
    ("ZZ", [0, 2], 0.12293305056183798),
    ("ZZ", [0, 3], 0.16768319457718958),
    ("ZZ", [1, 2], 0.16768319457718958),
    ("ZZ", [1, 3], 0.12293305056183798),
    ("ZZ", [2, 3], 0.17627640804319591),
    ("YYXX", [0, 1, 2, 3], -0.04475014401535161),
    ("XXYY", [0, 1, 2, 3], -0.04475014401535161),
    ("YXXY", [0, 1, 2, 3], 0.04475014401535161),
    ("XYYX", [0, 1, 2, 3], 0.04475014401535161),
]
"""The 4-qubit H2 Hamiltonian at 0.74 Å (STO-3G, Jordan-Wigner) as
`SparsePauliOp.from_sparse_list` terms: a constant and 14 Pauli terms."""

VQE_SHOTS = 1000


def h2_vqe(backend: Any, iterations: int) -> Any:
    """The benchmark's divi VQE: H2, Hartree-Fock ansatz, COBYLA, sampling on `backend`.

    Imports divi (only the workers that run this workload have it).
    """
    from divi.qprog import VQE, HartreeFockAnsatz, ScipyMethod, ScipyOptimizer
    from divi.qprog.problems import HamiltonianProblem
    from qiskit.quantum_info import SparsePauliOp

    return VQE(
        HamiltonianProblem(SparsePauliOp.from_sparse_list(H2_TERMS, num_qubits=4), n_electrons=2),
        ansatz=HartreeFockAnsatz(),
        optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
        max_iterations=iterations,
        seed=1,
        backend=backend,
    )


def vqe_run(vqe: Any, server: Server) -> dict[str, Any]:
    """Run `vqe` (its backend already built) and report time, requests and bytes of the run.

    Requests the backend's constructor made (divi's fetches the target lists)
    are left out: `server` was started for this run alone.
    """
    start = time.perf_counter()
    vqe.run()
    elapsed = time.perf_counter() - start
    report = server.stop()
    by = report["requests_by_endpoint"]
    setup = by.get("qpusystem", 0) + by.get("simulatorcluster", 0)
    return {
        "time": elapsed,
        "requests": report["requests_total"] - setup,
        "bytes": report["bytes_received"],
        "circuits": vqe.total_circuit_count,
        "energy": float(vqe.best_loss),
        "requests_by_endpoint": by,
    }


ONE_QUBIT = ("h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx")
ROTATIONS = ("rx", "ry", "rz")
TWO_QUBIT = ("cx", "cz", "swap")


def random_circuit(rng: random.Random, n_qubits: int = 10, n_gates: int = 120) -> str:
    """An OpenQASM 2 circuit of `n_gates` random gates (40% rotations with random angles)."""
    lines = [
        "OPENQASM 2.0;",
        'include "qelib1.inc";',
        f"qreg q[{n_qubits}];",
        f"creg c[{n_qubits}];",
    ]
    for _ in range(n_gates):
        kind = rng.random()
        if kind < 0.3:
            lines.append(f"{rng.choice(ONE_QUBIT)} q[{rng.randrange(n_qubits)}];")
        elif kind < 0.7:
            angle = rng.uniform(-3.2, 3.2)
            lines.append(f"{rng.choice(ROTATIONS)}({angle!r}) q[{rng.randrange(n_qubits)}];")
        else:
            a, b = rng.sample(range(n_qubits), 2)
            lines.append(f"{rng.choice(TWO_QUBIT)} q[{a}],q[{b}];")
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def make_batch(n: int, seed: int) -> dict[str, str]:
    """`n` distinct random circuits, labelled c0000, c0001, ... (the same for a given seed)."""
    rng = random.Random(seed)
    return {f"c{i:05d}": random_circuit(rng) for i in range(n)}


def small_batch(n: int, n_qubits: int = 10) -> dict[str, str]:
    """`n` cheap circuits measuring `n_qubits` bits (setup of the results workloads)."""
    source = (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{n_qubits}];\ncreg c[{n_qubits}];\n'
        "h q;\nmeasure q -> c;\n"
    )
    return {f"r{i:05d}": source for i in range(n)}


def pack(source: str) -> str:
    """The wire form of a circuit: base64(gzip(utf-8))."""
    return base64.b64encode(gzip.compress(source.encode("utf-8"), 1)).decode("ascii")


def percentile(values: list[float], q: float) -> float:
    """The `q`-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --------------------------------------------------------------------------- report sections

_SECTION = re.compile(r"<!-- section: (\S+) -->\n.*?<!-- /section: \1 -->\n", re.DOTALL)


def replace_section(path: Path, name: str, body: str) -> None:
    """Put `body` in `path` as the section `name`, replacing an earlier one or appending it.

    Bench scripts other than `run.py` (e.g. `aer_speed.py`) report in such
    sections of results.md; `write_report` keeps them when `run.py` rewrites it.
    """
    block = f"<!-- section: {name} -->\n{body.rstrip()}\n<!-- /section: {name} -->\n"
    text = path.read_text() if path.exists() else ""
    for match in _SECTION.finditer(text):
        if match.group(1) == name:
            path.write_text(text[: match.start()] + block + text[match.end() :])
            return
    path.write_text(text.rstrip("\n") + "\n\n" + block if text else block)


def write_report(path: Path, text: str) -> None:
    """Write `text` to `path`, keeping the sections other bench scripts put in the old file."""
    kept = [m.group(0) for m in _SECTION.finditer(path.read_text())] if path.exists() else []
    path.write_text("\n".join([text.rstrip("\n") + "\n", *kept]))


# --------------------------------------------------------------------------- the scheduler


class Server:
    """`bench/server.py` in a subprocess: a fresh local scheduler on 127.0.0.1.

    ``with Server(python, latency=0.05) as server:`` starts it and reads its base
    URL; `stop()` (or leaving the block) sends SIGTERM and returns what the
    server printed on exit: its stats and, with ``watch_jobs``, the
    `time.monotonic()` at which each job became terminal (CLOCK_MONOTONIC is
    system-wide on Linux, so it compares with the client's clock).
    """

    def __init__(self, python: str, **options: Any) -> None:
        self.python = python
        self.options = {"decode_workers": DECODE_WORKERS, **options}
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.report: dict[str, Any] = {}

    def start(self) -> Server:
        args = [self.python, str(BENCH_DIR / "server.py"), "--token", TOKEN]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is not None and value is not False:
                args += [flag, str(value)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if "BENCH_SERVER_PYTHONPATH" in env:  # e.g. an older client against today's server
            env["PYTHONPATH"] = env["BENCH_SERVER_PYTHONPATH"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError(f"the bench server did not start: {line!r}")
        self.base_url = line
        return self

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the scheduler and its decode workers have used so far.

        Read from Linux /proc: the server process and every process whose parent it is.
        """
        assert self.process is not None
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # the process ended meanwhile
                continue
            if stat.parent.name == str(self.process.pid) or fields[1] == str(self.process.pid):
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, Any]:
        process, self.process = self.process, None
        if process is None:
            return self.report
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.report = json.loads(lines[-1]) if lines else {}
        return self.report

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- plain HTTP setup


def _http(method: str, url: str, body: Any = None, timeout: float = 60.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def create_job(base_url: str, circuits: dict[str, str], *, wait: bool = True) -> str:
    """Submit `circuits` (1000 shots each) with plain HTTP; wait until COMPLETED if asked."""
    init = _http("POST", base_url + "job/init/", {"tag": "bench", "job_type": "EXECUTE"})
    job_id = str(init["job_id"])
    labels = list(circuits)
    step = 500
    for start in range(0, len(labels), step):
        part = labels[start : start + step]
        body = {
            "circuits": {label: pack(circuits[label]) for label in part},
            "mode": "append",
            "finalized": "true" if start + step >= len(labels) else "false",
            "shots": 1000,
        }
        _http("POST", base_url + f"job/{job_id}/add_circuits/", body)
    deadline = time.monotonic() + 120
    while wait:
        status = _http("GET", base_url + f"job/{job_id}/status/")["status"]
        if status == "COMPLETED":
            break
        if status in ("FAILED", "CANCELLED") or time.monotonic() > deadline:
            raise RuntimeError(f"setup job {job_id} ended {status}")
        time.sleep(0.05)
    return job_id


def emit(result: Any) -> None:
    """Print a worker's result as the last line of its stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def rate(func: Callable[[T], object], items: list[T]) -> float:
    """Items per second of `func(item)` over `items`."""
    start = time.perf_counter()
    for item in items:
        func(item)
    return len(items) / (time.perf_counter() - start)


def peak_rss(decode: Callable[[Any], object], histograms: str) -> dict[str, Any]:
    """Peak RSS while decoding (and keeping) every histogram of the file."""
    with open(histograms) as f:
        encoded = json.load(f)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decoded = [decode(r) for r in encoded]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(decoded) == len(encoded)
    return {"peak_kib": after, "before_kib": before}


def run_worker(workloads: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    """A worker's entry point: run the workload named in the JSON of argv[1], emit its result."""
    params = json.loads(sys.argv[1])
    emit(workloads[params["workload"]](params))
