"""Developer sessions: `nox -s tests lint typecheck`, `nox -s tests_newest_aiohttp`, and
`nox -s bench` for the benchmarks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"
DIVI = "qoro-divi==0.15.1"
"""The divi release `nox -s bench` compares with."""


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the `test` extra brings qoro-divi and qiskit-aer for the divi tests)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def tests_newest_aiohttp(session: nox.Session) -> None:
    """The suite against the newest aiohttp, without aioresponses (which caps it below 3.14).

    The tests that mock aiohttp with aioresponses are skipped (tests/conftest.py
    marks them `needs_aioresponses`); everything else runs, real servers included.
    """
    session.install("-e", ".", "pytest>=8", "pytest-asyncio>=0.24", "hypothesis>=6", "qoro-divi")
    session.install("--upgrade", "aiohttp")
    session.run("python", "-c", "import aiohttp; print('aiohttp', aiohttp.__version__)")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "asyncjob")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """asyncjob vs qoro-divi on the local scheduler: bench/results.md and bench/submit_time.png.

    qoro-divi gets a venv of its own (.nox/bench-divi, reused when present), since
    the two clients' dependencies must not mix. Arguments go to bench/run.py,
    e.g. `nox -s bench -- --quick`.
    """
    session.install("-e", ".[divi]", "matplotlib", "pyinstrument")
    divi_venv = Path(".nox") / "bench-divi"
    divi_python = divi_venv / "bin" / "python"
    # run_install: these are installs, so `--install-only` makes them too.
    if not divi_python.exists():
        session.run_install("python", "-m", "venv", str(divi_venv))
    # openqasm3: the bare-parser row of the CPU table is measured in both venvs.
    divi_deps = [DIVI, "openqasm3[parser]"]
    check = subprocess.run([str(divi_python), "-c", "import divi, openqasm3"], capture_output=True)
    if check.returncode != 0:
        session.run_install(
            str(divi_python), "-m", "pip", "install", "--quiet", *divi_deps, external=True
        )
    session.run(
        "python",
        "bench/run.py",
        "--divi-python",
        str(divi_python),
        "--baseline",
        "bench/baseline.json",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def bench_aer(session: nox.Session) -> None:
    """The aer executor before and after batching, and a sampled H2 VQE through the scheduler.

    Writes the "aer" section of bench/results.md; a few minutes (`-- --quick`: one).
    Arguments go to bench/aer_speed.py.
    """
    session.install("-e", ".[local]")
    session.run("python", "bench/aer_speed.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_decode(session: nox.Session) -> None:
    """Histogram decoding, asyncjob vs divi's numba decoder in one process.

    Writes the "decode" section of bench/results.md. Arguments go to bench/decode_speed.py.
    """
    session.install("-e", ".[divi]")
    session.run("python", "bench/decode_speed.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The reliability soak: 500 jobs through a faulty local scheduler; bench/reliability.md.

    502/503s, 429s, resets and hangs on 127.0.0.1; fails if any job is lost, wrong,
    duplicated or left un-finalized. A few minutes at most. Arguments go to
    bench/soak.py, e.g. `nox -s soak -- --jobs 100`.
    """
    session.install("-e", ".")
    session.run("python", "bench/soak.py", "--out", "bench/reliability.md", *session.posargs)


@nox.session(python=PYTHON)
def bench_scale(session: nox.Session) -> None:
    """asyncjob at scale (issue 16): bench/scale.md, bench/scale.json, a section of results.md.

    Submit curve from 100 to 50,000 circuits against the floor, event-loop stalls,
    5,000 jobs followed with `as_completed` (jobs finishing during the submission, and
    jobs outliving it), journal size, histogram decoding next
    to divi's numba decoder (hence qoro-divi in this venv). Compared with
    bench/scale_before.json. Arguments go to bench/scale.py, e.g.
    `nox -s bench_scale -- --quick` (about 2 minutes).
    """
    session.install("-e", ".", DIVI)
    baseline = Path("bench") / "scale_before.json"
    extra = ["--baseline", str(baseline)] if baseline.exists() else []
    session.run("python", "bench/scale.py", *extra, *session.posargs)
