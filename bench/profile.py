"""Profile asyncjob's slowest workloads with pyinstrument; write text reports to bench/.

    python bench/profile.py [--out DIR]

- `profile_results.txt`: `get_job_results` of 5,000 results (50 pages, default
  options) against a scheduler subprocess with 50 ms latency.
- `profile_submit.txt`: the client-side work of submitting 5,000 circuits
  (validation, compression, chunking). The client does it in a worker thread,
  which pyinstrument does not sample, so it is run here on the main thread.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from common import BENCH_DIR, LATENCY, TOKEN, Server, create_job, make_batch, small_batch
from pyinstrument import Profiler

from asyncjob import AsyncJobClient
from asyncjob._batch import build_submission, encode_circuit
from asyncjob._config import ClientConfig
from asyncjob._qasm import check_batch


async def fetch(base_url: str, job_id: str) -> None:
    async with AsyncJobClient(base_url, TOKEN, journal=False) as client:
        result = await client.get_job_results(job_id)
    assert result.results is not None and len(result.results) == 5000


def profile_results() -> str:
    with Server(sys.executable, latency=LATENCY) as server:
        job_id = create_job(server.base_url, small_batch(5000))
        asyncio.run(fetch(server.base_url, job_id))  # warm-up
        profiler = Profiler(interval=0.0005)
        with profiler:
            asyncio.run(fetch(server.base_url, job_id))
    return profiler.output_text(unicode=False, color=False)


def profile_submit() -> str:
    config = ClientConfig.build("http://127.0.0.1:9/api/", TOKEN, 1000, journal=False)
    check_batch(list(make_batch(20, seed=1).items()))  # warm-up
    submission = build_submission(make_batch(5000, seed=5), config, {})
    profiler = Profiler(interval=0.0005)
    with profiler:
        check_batch(list(zip(submission.labels, submission.sources, strict=True)))
        encoded = [encode_circuit(source) for source in submission.sources]
        submission.chunk_bodies(encoded, config.limits.max_payload_bytes)
    return profiler.output_text(unicode=False, color=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_results.txt").write_text(profile_results())
    (args.out / "profile_submit.txt").write_text(profile_submit())
    print(f"wrote {args.out / 'profile_results.txt'} and {args.out / 'profile_submit.txt'}")


if __name__ == "__main__":
    main()
