"""Where asyncjob keeps its files by default, per the platform's conventions (platformdirs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["config_dir", "data_dir", "default_journal_path"]

APP = "asyncjob"


def data_dir() -> Path:
    """The user's data directory for asyncjob (e.g. `~/.local/share/asyncjob` on Linux)."""
    return platformdirs.user_data_path(APP, appauthor=False)


def config_dir() -> Path:
    """The user's configuration directory for asyncjob (e.g. `~/.config/asyncjob` on Linux)."""
    return platformdirs.user_config_path(APP, appauthor=False)


def default_journal_path() -> Path | None:
    """`$ASYNCJOB_JOURNAL`, or `journal.sqlite3` in the user's data directory.

    `ASYNCJOB_JOURNAL=off` (or an empty value) disables the journal.
    """
    configured = os.environ.get("ASYNCJOB_JOURNAL")
    if configured is not None:
        return (
            None if configured.strip().lower() in ("", "off", "0", "false") else Path(configured)
        )
    return data_dir() / "journal.sqlite3"
