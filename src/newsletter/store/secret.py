"""The HMAC secret key that signs unsubscribe and confirmation links.

Production sets ``NEWSLETTER_SECRET_KEY``. Without it, a development key is generated
once into a 0600 file beside the SQLite database (or in the working directory for
PostgreSQL) and a warning is logged; the key itself is never stored in the database
and never logged. Changing the key invalidates every link already sent.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

log = logging.getLogger(__name__)
DEV_KEY_SUFFIX = ".secret-key"
MIN_KEY_LENGTH = 16
_warned: set[str] = set()


def dev_key_path(config: Config) -> Path:
    """Where the development key lives: ``<db file>.secret-key`` for SQLite, else ./newsletter.secret-key."""
    from .db import sqlite_path

    try:
        path = sqlite_path(config.database_url)
    except Exception:
        path = None
    if path is not None:
        return path.with_name(path.name + DEV_KEY_SUFFIX)
    return Path.cwd() / ("newsletter" + DEV_KEY_SUFFIX)


def secret_key(config: Config) -> bytes:
    """The signing key: ``config.secret_key`` (NEWSLETTER_SECRET_KEY) or the generated development key."""
    if config.secret_key:
        if len(config.secret_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"NEWSLETTER_SECRET_KEY is too short: use at least {MIN_KEY_LENGTH} random characters")
        return config.secret_key.encode("utf-8")
    path = dev_key_path(config)
    key = _read_or_create(path)
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            "NEWSLETTER_SECRET_KEY is not set: signing links with the development key in %s "
            "(set NEWSLETTER_SECRET_KEY in production)", path
        )
    return key


def _read_or_create(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the development secret key: {e.__class__.__name__}") from None
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"{path}: development secret key is empty or truncated; delete the file to generate a new one")
        return key.encode("ascii")
    except OSError as e:
        raise ConfigError(f"{path}: cannot create the development secret key: {e.strerror}") from None
    key = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return key.encode("ascii")


def existing_secret_key(config: Config) -> bytes | None:
    """The signing key if one is already set or generated (never creates one), else None.

    Read-only tools (``bounces parse``) use it to check VERP tokens without leaving a key file
    behind in whatever directory they were run from.
    """
    if config.secret_key:
        return secret_key(config)
    path = dev_key_path(config)
    if not path.is_file():
        return None
    return _read_or_create(path)
