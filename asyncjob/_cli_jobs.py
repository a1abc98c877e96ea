"""``asyncjob jobs``: the journal's submissions, their statuses refreshed from the scheduler.

Statuses that are not terminal yet are asked of the configured scheduler, all
at once and within `REFRESH_SECONDS`; entries of any other server keep their
last seen status, since the token must never go to a host it was not meant
for. ``--offline`` reads the journal only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from ._cliconfig import journal_option, load_config, positive_int
from ._cliconfig import token as find_token
from ._config import journal_path
from ._errors import AsyncJobError, ConfigurationError
from ._journal import Journal, JournalEntry
from ._models import JobStatus

__all__ = ["REFRESH_SECONDS", "add_jobs_command"]

REFRESH_SECONDS = 10.0
"""Longest time `jobs` spends refreshing statuses before it shows what it has."""


def add_jobs_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Register ``asyncjob jobs``."""
    p = subparsers.add_parser(
        "jobs", parents=[common], help="list the jobs in the journal, statuses refreshed"
    )
    p.add_argument("--journal", help="journal file (default: the user's data directory)")
    p.add_argument("--limit", type=positive_int, default=20, metavar="N")
    p.add_argument(
        "--offline",
        action="store_true",
        help="show the statuses last recorded, without asking the scheduler",
    )
    p.add_argument("--base-url", help="scheduler to refresh statuses from (default: configured)")
    p.add_argument("--token-file", type=Path, help="read the API token from this file")
    p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a non-loopback host",
    )
    p.set_defaults(run=_jobs)


def _jobs(args: argparse.Namespace) -> int:
    config = load_config()
    value = journal_option(args, config)
    path = journal_path(value)
    if path is None:
        raise ConfigurationError(
            'the journal is disabled (ASYNCJOB_JOURNAL=off or journal = "off"): '
            "there is nothing to list"
        )
    if not os.path.exists(path):
        if args.journal:  # named on the command line: most likely a typo
            raise ConfigurationError(f"no journal at {path}: check the path (nothing was created)")
        print(f"no jobs yet (no journal at {path})")
        return 0
    journal = Journal(path)
    try:
        entries = journal.entries(limit=args.limit)
    finally:
        journal.close()
    if not entries:
        print(f"no jobs in {path}")
        return 0
    fresh: dict[str, str] = {}
    if not args.offline:
        fresh = _refresh(args, config, path, entries)
    now = time.time()
    print(f"{'JOB':<38} {'STATUS':<12} {'AGE':>7} {'CIRCUITS':>8}  SERVER")
    for e in entries:
        status = fresh.get(e.job_id or "") or e.status
        status = status or ("INTERRUPTED" if e.interrupted else e.state.upper())
        print(
            f"{(e.job_id or '(no id yet)'):<38} {status:<12} {_age(now - e.created):>7} "
            f"{len(e.labels):>8}  {e.base_url}"
        )
    return 0


def _settled(status: str | None) -> bool:
    try:
        return status is not None and JobStatus(status).is_terminal
    except ValueError:
        return False


def _refresh(
    args: argparse.Namespace, config: dict[str, Any], path: str, entries: list[JournalEntry]
) -> dict[str, str]:
    """Ask the configured scheduler for every unsettled job of its own; {} when it cannot."""
    stale = [e for e in entries if e.job_id and not _settled(e.status)]
    if not stale:
        return {}
    url = args.base_url or os.environ.get("ASYNCJOB_BASE_URL") or config.get("base_url")
    secret = find_token(args, config, prompt=False)
    if not url or not secret:
        print(
            "note: statuses as last recorded (no scheduler URL and token configured to "
            "refresh them; --offline skips this note)",
            file=sys.stderr,
        )
        return {}
    insecure = args.allow_insecure_http or bool(config.get("allow_insecure_http", False))
    try:
        return anyio.run(_ask, str(url), secret, insecure, path, stale)
    except AsyncJobError as exc:
        print(f"note: statuses as last recorded; could not refresh them: {exc}", file=sys.stderr)
        return {}


async def _ask(
    url: str, secret: str, insecure: bool, path: str, stale: list[JournalEntry]
) -> dict[str, str]:
    from ._client import AsyncJobClient
    from ._config import RetryPolicy

    fresh: dict[str, str] = {}
    failures: list[str] = []
    async with AsyncJobClient(
        url,
        secret,
        journal=path,  # new statuses are recorded, so the journal catches up too
        allow_insecure_http=insecure,
        retry=RetryPolicy(attempts=2),
        timeout=REFRESH_SECONDS / 2,
    ) as client:
        mine = [e.job_id for e in stale if e.job_id and e.base_url == client.config.base_url]

        async def ask(job_id: str) -> None:
            try:
                _, status = await client.get_status(job_id)
            except AsyncJobError as exc:
                failures.append(str(exc))
            else:
                fresh[job_id] = status.value

        with anyio.move_on_after(REFRESH_SECONDS):
            async with anyio.create_task_group() as tasks:
                for job_id in mine:
                    tasks.start_soon(ask, job_id)
    missing = len(mine) - len(fresh)
    if missing:
        why = f": {failures[0]}" if failures else " in time"
        print(
            f"note: {missing} status(es) not refreshed{why}; showing the last recorded",
            file=sys.stderr,
        )
    return fresh


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.floor(seconds / size)}{unit}"
    return f"{int(seconds)}s"
