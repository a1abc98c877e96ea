"""The job commands of the `asyncjob` CLI: submit, status, wait, results, cancel, jobs, demo.

Configuration comes from flags, then the environment (`ASYNCJOB_BASE_URL`,
`ASYNCJOB_TOKEN`), then a TOML config file (`$ASYNCJOB_CONFIG`, default
`config.toml` in the user's config directory, e.g. `~/.config/asyncjob/` on
Linux; keys `base_url`, `token_file`, `journal`).
The token is read from a file, the environment or a prompt, never from a flag
value (which other users could see in the process list) and never echoed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._backend import JobBackend
from ._config import journal_path
from ._display import Progress, format_results
from ._errors import ConfigurationError, ExecutionCancelledError
from ._journal import Journal
from ._models import ExecutionResult, JobStatus
from ._paths import config_dir

__all__ = ["add_job_commands"]

EXIT_JOB_NOT_COMPLETED = 3
EXIT_INTERRUPTED = 130


def add_job_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Register every job command on the CLI's subparsers."""
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--base-url", help="scheduler URL (default: $ASYNCJOB_BASE_URL or config)")
    conn.add_argument("--token-file", type=Path, help="read the API token from this file")
    conn.add_argument(
        "--token-prompt", action="store_true", help="ask for the token (input is not echoed)"
    )
    conn.add_argument("--journal", help="journal file (default: the user's data directory)")
    conn.add_argument(
        "--polling-interval", type=float, default=None, help="seconds between status polls"
    )
    parents = [common, conn]

    p = subparsers.add_parser("submit", parents=parents, help="submit QASM files as one job")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.qasm")
    p.add_argument("--shots", type=int, default=1000)
    p.add_argument("--tag", default="default")
    p.add_argument(
        "--wait", action="store_true", help="wait with live progress, then show results"
    )
    p.set_defaults(run=_submit)

    p = subparsers.add_parser("status", parents=parents, help="show a job's status")
    p.add_argument("job")
    p.set_defaults(run=_status)

    p = subparsers.add_parser("wait", parents=parents, help="wait for a job, with live progress")
    p.add_argument("job")
    p.set_defaults(run=_wait)

    p = subparsers.add_parser("results", parents=parents, help="show a completed job's results")
    p.add_argument("job")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable JSON")
    form.add_argument("--table", action="store_true", help="readable table (the default)")
    p.add_argument("--top", type=int, default=16, help="outcomes shown per circuit")
    p.set_defaults(run=_results)

    p = subparsers.add_parser("cancel", parents=parents, help="cancel a job")
    p.add_argument("job")
    p.set_defaults(run=_cancel)

    p = subparsers.add_parser("jobs", parents=[common], help="list the jobs in the journal")
    p.add_argument("--journal", help="journal file (default: the user's data directory)")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=_jobs)

    p = subparsers.add_parser(
        "demo", parents=[common], help="run example circuits on an embedded local scheduler"
    )
    p.add_argument("--executor", choices=("auto", "aer", "sampler"), default="auto")
    p.set_defaults(run=_demo)


# -- configuration ---------------------------------------------------------------


def _config_file() -> dict[str, Any]:
    path = Path(os.environ.get("ASYNCJOB_CONFIG") or config_dir() / "config.toml")
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from None


def _read_token(path: Path) -> str:
    try:
        token = path.expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigurationError(f"token file {path} is empty")
    return token


def _journal_option(args: argparse.Namespace, config: dict[str, Any]) -> str | bool | None:
    value = args.journal or config.get("journal")
    if isinstance(value, str) and value.lower() == "off":
        return False
    return value if isinstance(value, str) else None


def _backend(args: argparse.Namespace) -> JobBackend:
    config = _config_file()
    base_url = args.base_url or os.environ.get("ASYNCJOB_BASE_URL") or config.get("base_url")
    if args.token_file:
        token = _read_token(args.token_file)
    elif args.token_prompt:
        token = getpass.getpass("asyncjob token: ")
    elif os.environ.get("ASYNCJOB_TOKEN"):
        token = os.environ["ASYNCJOB_TOKEN"]
    elif config.get("token_file"):
        token = _read_token(Path(config["token_file"]))
    elif sys.stdin.isatty():
        token = getpass.getpass("asyncjob token: ")
    else:
        token = ""
    options: dict[str, Any] = {"journal": _journal_option(args, config)}
    if args.polling_interval is not None:
        options["polling_interval"] = args.polling_interval
    return JobBackend(base_url, token or None, shots=getattr(args, "shots", 1000), **options)


# -- commands ---------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    circuits: dict[str, str] = {}
    for path in args.files:
        label = path.stem if path.stem not in circuits else str(path)
        try:
            circuits[label] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read {path}: {exc}") from None
    with _backend(args) as backend:
        handle = backend.submit_circuits(circuits, tag=args.tag)
        print(handle.job_id, flush=True)
        if not args.wait:
            return 0
        # No event: a first Ctrl+C cancels the remote job too, as the backend does.
        status = _follow(backend, handle, cancellation_event=None)
        return _show_if_completed(backend, handle, status)


def _status(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        print(backend.poll_job_status(_handle(args), verbose=False).value)
    return 0


def _wait(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _backend(args) as backend, _sigint_sets(stop):
        try:
            status = _follow(backend, _handle(args), cancellation_event=stop)
        except ExecutionCancelledError:
            print(f"stopped waiting; job {args.job} goes on", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(status.value)
    return 0 if status is JobStatus.COMPLETED else EXIT_JOB_NOT_COMPLETED


def _results(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        result = backend.get_job_results(_handle(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_results(result.results or [], top=args.top))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        response = backend.cancel_job(_handle(args))
    print("cancelled" if response.status_code != 409 else "already finished")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    value = _journal_option(args, _config_file())
    path = journal_path(value)
    if path is None:
        raise ConfigurationError("the journal is disabled")
    entries = Journal(path).entries(limit=args.limit)
    if not entries:
        print(f"no jobs in {path}")
        return 0
    now = time.time()
    print(f"{'JOB':<38} {'STATUS':<12} {'AGE':>7} {'CIRCUITS':>8}  SERVER")
    for e in entries:
        status = e.status or ("INTERRUPTED" if e.interrupted else e.state.upper())
        print(
            f"{(e.job_id or '(no id yet)'):<38} {status:<12} {_age(now - e.created):>7} "
            f"{len(e.labels):>8}  {e.base_url}"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .local import LocalScheduler

    executor = args.executor
    if executor == "auto":
        executor = "aer" if _aer_available() else "sampler"
        if executor == "sampler":
            print(
                "note: qiskit-aer is not installed, so the local scheduler uses the 'sampler' "
                "executor (synthetic counts). pip install -e '.[local]' for real simulation.\n"
            )
    circuits = _demo_circuits()
    with (
        LocalScheduler(executor=executor, job_duration=(0.5, 1.5)).run_in_thread() as server,
        JobBackend(server.base_url, server.token, polling_interval=0.2, journal=False) as backend,
    ):
        print(f"local scheduler ({executor}) at {server.base_url}")
        handle = backend.submit_circuits(circuits, tag="demo", shots=1000)
        print(f"submitted {len(circuits)} circuits as job {handle.job_id}")
        status = _follow(backend, handle, cancellation_event=None)
        return _show_if_completed(backend, handle, status)


# -- helpers ----------------------------------------------------------------------


def _handle(args: argparse.Namespace) -> ExecutionResult:
    return ExecutionResult(job_id=args.job)


def _follow(
    backend: JobBackend, handle: ExecutionResult, cancellation_event: threading.Event | None
) -> JobStatus:
    with Progress(handle.job_id or "?", sys.stderr) as progress:
        status = backend.poll_job_status(
            handle,
            loop_until_complete=True,
            verbose=False,
            progress_callback=progress,
            cancellation_event=cancellation_event,
        )
        progress.finish(status.value)
    return status


def _show_if_completed(backend: JobBackend, handle: ExecutionResult, status: JobStatus) -> int:
    if status is not JobStatus.COMPLETED:
        print(f"job {handle.job_id} ended {status.value}", file=sys.stderr)
        return EXIT_JOB_NOT_COMPLETED
    print(format_results(backend.get_job_results(handle).results or []))
    return 0


@contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """While inside, Ctrl+C sets `event` instead of raising KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.floor(seconds / size)}{unit}"
    return f"{int(seconds)}s"


def _aer_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("qiskit_aer") is not None


def _demo_circuits() -> dict[str, str]:
    """The example circuits: Bell, GHZ and a small rotation sweep."""
    folder = Path(__file__).resolve().parent.parent / "examples" / "circuits"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parent / "_examples"
    circuits = {
        "bell": (folder / "bell.qasm").read_text(),
        "ghz4": (folder / "ghz4.qasm").read_text(),
    }
    template = (folder / "rotation.qasm.template").read_text()
    for step in range(5):
        theta = step * math.pi / 4
        circuits[f"ry({step}pi/4)"] = template.replace("{theta}", f"{theta:.6f}")
    return circuits
