"""Where the command line finds its settings: flags, then the environment, then a TOML file.

Every message names what the user can set - a flag, an environment variable or
a key of the config file (with the file's path) - never a Python keyword.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._errors import ConfigurationError
from ._paths import config_dir
from ._wire import is_loopback

__all__ = [
    "CONFIG_KEYS",
    "CliSettings",
    "config_path",
    "journal_option",
    "load_config",
    "positive_int",
    "settings",
    "token",
]

CONFIG_KEYS = ("base_url", "token_file", "journal", "allow_insecure_http")
"""The keys a config file may hold."""


def config_path() -> Path:
    """`$ASYNCJOB_CONFIG`, else ``config.toml`` in the user's config directory."""
    configured = os.environ.get("ASYNCJOB_CONFIG")
    return Path(configured) if configured else config_dir() / "config.toml"


def load_config() -> dict[str, Any]:
    """The config file's settings ({} when there is none); a key it may not hold is an error.

    A ``token`` key is refused rather than ignored: a token in a config file is
    easily shared or committed by mistake, so the file names a token file instead.
    """
    path = config_path()
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from None
    if "token" in config:
        raise ConfigurationError(
            f"config file {path} holds a token: tokens do not belong in config files; "
            'put it in a file of its own (chmod 600) and set token_file = "PATH" instead'
        )
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigurationError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(CONFIG_KEYS)}"
        )
    for key in ("base_url", "token_file", "journal"):
        if key in config and not isinstance(config[key], str):
            raise ConfigurationError(f'config file {path}: {key} must be a string ("...")')
    if not isinstance(config.get("allow_insecure_http", False), bool):
        raise ConfigurationError(f"config file {path}: allow_insecure_http must be true or false")
    return config


@attrs.frozen
class CliSettings:
    """What a job command connects with, resolved from flags, environment and config file."""

    base_url: str
    token: str = attrs.field(repr=False)
    journal: str | bool | None
    allow_insecure_http: bool


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def journal_option(args: argparse.Namespace, config: dict[str, Any]) -> str | bool | None:
    """``--journal`` or the config's ``journal`` (``off`` disables it); None: the default."""
    value = getattr(args, "journal", None) or config.get("journal")
    if isinstance(value, str) and value.lower() == "off":
        return False
    return value if isinstance(value, str) else None


def base_url(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """The scheduler URL: ``--base-url``, ``ASYNCJOB_BASE_URL`` or the config's ``base_url``."""
    url = args.base_url or os.environ.get("ASYNCJOB_BASE_URL") or config.get("base_url")
    if not url:
        raise ConfigurationError(
            "no scheduler URL configured: pass --base-url URL, set ASYNCJOB_BASE_URL, "
            f'or put base_url = "URL" in {config_path()}'
        )
    return str(url)


def _check_scheme(url: str, allow_insecure_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"the scheduler URL must be an http(s) URL like https://host/api/, got {url!r}"
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname!r} (the token would travel unencrypted): "
            "use https://, or pass --allow-insecure-http"
        )


def _read_token(path: Path) -> str:
    try:
        token = path.expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigurationError(f"token file {path} is empty")
    return token


def token(args: argparse.Namespace, config: dict[str, Any], *, prompt: bool = True) -> str | None:
    """The API token: a file, a prompt, ``ASYNCJOB_TOKEN`` or the config's ``token_file``.

    Prompts on a terminal when nothing else gives one (unless `prompt` is False);
    None when there is none.
    """
    if getattr(args, "token_file", None):
        return _read_token(args.token_file)
    if getattr(args, "token_prompt", False):
        return getpass.getpass("asyncjob token: ") or None
    if os.environ.get("ASYNCJOB_TOKEN"):
        return os.environ["ASYNCJOB_TOKEN"]
    if config.get("token_file"):
        return _read_token(Path(config["token_file"]))
    if prompt and sys.stdin.isatty():
        return getpass.getpass("asyncjob token: ") or None
    return None


def settings(args: argparse.Namespace) -> CliSettings:
    """Everything a job command needs; the URL is checked before any token is asked for."""
    config = load_config()
    url = base_url(args, config)
    insecure = bool(getattr(args, "allow_insecure_http", False)) or bool(
        config.get("allow_insecure_http", False)
    )
    _check_scheme(url, insecure)
    secret = token(args, config)
    if not secret:
        raise ConfigurationError(
            "no API token: pass --token-file FILE or --token-prompt, set ASYNCJOB_TOKEN, "
            f'or put token_file = "FILE" in {config_path()}'
        )
    return CliSettings(url, secret, journal_option(args, config), insecure)
