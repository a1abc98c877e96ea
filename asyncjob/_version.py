"""The package version, read from the installed distribution's metadata (one source)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["DISTRIBUTION", "__version__"]

DISTRIBUTION = "asyncjob-quantum"
"""The distribution name in `pyproject.toml` (what `pip install` takes)."""

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # pragma: no cover - a source tree never installed
    __version__ = "0+unknown"
