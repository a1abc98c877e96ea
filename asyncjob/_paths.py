"""Where asyncjob keeps its files by default, per the platform's conventions (platformdirs)."""

from __future__ import annotations

from pathlib import Path

import platformdirs

__all__ = ["config_dir", "data_dir"]

APP = "asyncjob"


def data_dir() -> Path:
    """The user's data directory for asyncjob (e.g. `~/.local/share/asyncjob` on Linux)."""
    return platformdirs.user_data_path(APP, appauthor=False)


def config_dir() -> Path:
    """The user's configuration directory for asyncjob (e.g. `~/.config/asyncjob` on Linux)."""
    return platformdirs.user_config_path(APP, appauthor=False)
