"""An async web service that runs circuits for its callers: each request awaits its own job.

`POST /run` with `{"circuits": {label: qasm}, "shots": N}` answers with the
histograms (and `"synthetic": true` when the scheduler made them up rather than
simulating them). All requests share one `AsyncJobClient` (one connection pool); while
one request waits for its job, the service keeps serving the others.

Usage: python examples/async_service.py [BASE_URL TOKEN]
Without arguments (or ASYNCJOB_BASE_URL / ASYNCJOB_TOKEN) it starts a local
scheduler, serves on 127.0.0.1, sends itself 8 concurrent requests, prints the
answers and exits.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
import anyio
from aiohttp import web

from asyncjob import AsyncJobClient, AsyncJobError

BELL = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; '
    "h q[0]; cx q[0],q[1]; measure q -> c;"
)
CLIENT = web.AppKey("client", AsyncJobClient)


async def run_circuits(request: web.Request) -> web.Response:
    """Submit the caller's circuits, wait for the job, answer with its results."""
    body = await request.json()
    client = request.app[CLIENT]
    try:
        result = await client.run(body["circuits"], shots=body.get("shots", 1000))
        status, _ = await client.get_status(result)
    except AsyncJobError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    answer = {"job_id": result.job_id, "results": result.results}
    if status.json().get("synthetic") is True:  # the local scheduler's sampler: not physics
        answer["synthetic"] = True
    return web.json_response(answer)


def make_app(base_url: str, token: str) -> web.Application:
    """The web app; its client lives as long as the app."""
    app = web.Application()

    async def client_context(app: web.Application) -> AsyncIterator[None]:
        async with AsyncJobClient(base_url, token, polling_interval=0.1) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(client_context)
    app.router.add_post("/run", run_circuits)
    return app


async def demo(base_url: str, token: str, requests: int = 8) -> list[dict[str, object]]:
    """Serve the app on 127.0.0.1 and send it `requests` concurrent requests."""
    runner = web.AppRunner(make_app(base_url, token))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    answers: list[dict[str, object]] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def call(i: int) -> None:
                payload = {"circuits": {f"bell-{i}": BELL}, "shots": 100 + i}
                async with http.post(f"http://127.0.0.1:{port}/run", json=payload) as resp:
                    answers.append(await resp.json())

            async with anyio.create_task_group() as tg:
                for i in range(requests):
                    tg.start_soon(call, i)
    finally:
        await runner.cleanup()
    return answers


async def main() -> None:
    async with contextlib.AsyncExitStack() as stack:
        if len(sys.argv) == 3:
            base_url, token = sys.argv[1], sys.argv[2]
        elif os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
            base_url, token = os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
        else:
            from asyncjob.local import LocalScheduler

            scheduler = await stack.enter_async_context(LocalScheduler(job_duration=0.5))
            base_url, token = scheduler.base_url, scheduler.token
        for answer in sorted(await demo(base_url, token), key=str):
            print(answer)


if __name__ == "__main__":
    anyio.run(main)
