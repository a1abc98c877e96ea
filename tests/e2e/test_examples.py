"""The async-service and pipeline examples run, as users would run them, on a local scheduler."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, env: dict[str, str] | None = None) -> str:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_BASE")}
        env.pop("ASYNCJOB_TOKEN", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_async_service_answers_concurrent_requests() -> None:
    answers = [ast.literal_eval(line) for line in run_example("async_service.py").splitlines()]
    assert len(answers) == 8
    assert len({a["job_id"] for a in answers}) == 8
    for answer in answers:
        (result,) = answer["results"]
        i = int(result["label"].removeprefix("bell-"))
        assert sum(result["results"].values()) == 100 + i


def test_pipeline_reports_every_job(tmp_path: Path) -> None:
    # Its 100 circuits on the sampler: the aer path is run by the other examples' tests.
    *lines, note = run_example("pipeline.py", without_aer(tmp_path)).splitlines()
    assert note == "(SYNTHETIC counts from the 'sampler' executor, not a simulation)"
    assert len(lines) == 20
    assert sorted(int(line.split("-")[0].removeprefix("job")) for line in lines) == list(range(20))
    assert all("counts of 1 per step" in line for line in lines)


def test_divi_vqe_and_qaoa_run_on_asyncjob() -> None:
    pytest.importorskip("divi")
    pytest.importorskip("qiskit_aer")
    out = run_example("divi_vqe.py")
    energy = re.search(r"H2 ground-state energy (-[0-9.]+) Ha", out)
    assert energy is not None, out
    assert abs(float(energy.group(1)) - -1.136189) < 0.01
    cut = re.search(r"expected cut ([0-9.]+)", out)
    assert cut is not None and 3 < float(cut.group(1)) <= 6, out  # a random cut expects 3
    assert re.search(r"most probable bitstring [01]{6}\n", out), out


def without_aer(tmp_path: Path) -> dict[str, str]:
    """An environment where qiskit-aer cannot be imported: the examples' scheduler samples."""
    folder = tmp_path / "no_aer"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['qiskit_aer'] = None\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env["PYTHONPATH"] = str(folder)
    return env


def test_examples_say_when_their_counts_are_synthetic(tmp_path: Path) -> None:
    """Without qiskit-aer the examples' own scheduler makes counts up, and they say so."""
    env = without_aer(tmp_path)
    blocking = run_example("blocking_script.py", env)
    assert "(SYNTHETIC counts from the 'sampler' executor, not a simulation)" in blocking
    answers = [
        ast.literal_eval(line) for line in run_example("async_service.py", env).splitlines()
    ]
    assert all(answer["synthetic"] is True for answer in answers)


def test_examples_simulate_when_aer_is_installed() -> None:
    pytest.importorskip("qiskit_aer")
    out = run_example("blocking_script.py")
    assert "SYNTHETIC" not in out
    bell = next(line for line in out.splitlines() if line.startswith("  bell: "))
    assert set(ast.literal_eval(bell.removeprefix("  bell: "))) <= {"00", "11"}
