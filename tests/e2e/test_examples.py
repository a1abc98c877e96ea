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


def run_example(name: str) -> str:
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


def test_pipeline_reports_every_job() -> None:
    lines = run_example("pipeline.py").splitlines()
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
