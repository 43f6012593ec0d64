"""One configuration object: built from a TOML file, then ``NEWSLETTER_*`` environment
variables, then CLI flags — each layer overriding the one before.

Secrets (SMTP passwords, the HMAC secret key, the admin password) come from the
environment only, are never read from the TOML file and never appear in ``repr()``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

DEFAULT_CONFIG_FILE = "newsletter.toml"


@dataclass
class SMTPServer:
    """A named SMTP server; its password comes from ``NEWSLETTER_SMTP_<NAME>_PASSWORD``."""

    name: str
    url: str = "smtp://127.0.0.1:1025"
    tls: str = "auto"  # auto (from URL scheme/flags) | none | starttls | tls
    user: str | None = None
    rate: str | None = None  # "20/s", "600/m", "10000/h"
    max_connections: int = 4
    password: str | None = field(default=None, repr=False)


@dataclass
class Config:
    """Everything the library needs to know about this installation."""

    database_url: str = "sqlite:///newsletter.db"
    newsletter_name: str = "The Weekly Dispatch"
    site_url: str = "https://example.org"
    base_url: str = "http://127.0.0.1:8000"
    from_address: str = "The Weekly Dispatch <newsletter@example.org>"
    reply_to: str | None = None
    asset_base_url: str | None = None
    template_dir: str | None = None
    sources: list[str] = field(default_factory=list)
    outbox: str = "outbox"
    smtp: dict[str, SMTPServer] = field(default_factory=dict)
    default_smtp: str | None = None
    rate: str | None = None
    concurrency: int = 4
    max_attempts: int = 100  # a backstop only: retry_max_age is the limit (100 retries take about 2 days or more)
    # dispatch (owner D): retries, timeouts, headers
    retry_base: float = 60.0  # first retry after about this many seconds, doubling each time
    retry_max_delay: float = 3600.0  # ... up to this
    retry_max_age: float = 172800.0  # a deferred copy is retried until this long after sending started
    max_connection_failures: int = 5  # consecutive connection failures before a campaign auto-pauses
    smtp_timeout: float = 30.0
    rate_window: str | None = None  # provider quotas as sliding windows, e.g. "500/h,2000/d"
    precedence: str | None = None  # "bulk" adds Precedence: bulk (off by default)
    unsubscribe_mailto: str | None = None  # mailto target in List-Unsubscribe (default: reply-to or from)
    bounce_address: str | None = None  # envelope sender (Return-Path); default: the From address
    allow_local_links: bool = False  # let SMTP sends carry links to a non-https or loopback base_url
    timezone: str = "UTC"
    dkim_key_file: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    poll_interval: float = 5.0
    fetch_timeout: float = 10.0
    fetch_max_bytes: int = 10 * 1024 * 1024
    vimeo_oembed_url: str = "https://vimeo.com/api/oembed.json"  # "" turns Vimeo thumbnail lookups off
    signup_origins: list[str] = field(default_factory=list)  # other sites whose pages may post the signup form
    trusted_proxies: list[str] = field(default_factory=list)  # reverse proxies whose X-Forwarded-For is believed
    # --- fetch safety (issue 11) ---

    # --- bounces, complaints and the feedback mailbox (issue 13) ---
    soft_bounce_limit: int = 3  # soft bounces within soft_bounce_window that act like a hard bounce
    soft_bounce_window: str = "30d"  # how far back soft bounces count (30m, 12h, 3d, 2w)
    soft_bounce_reset_after: str = "3d"  # a later copy accepted and not bounced this long after resets the count
    complaint_pause_rate: float = 0.003  # a campaign pauses when complaints / copies passes this (0.003 = 0.3 %)
    bounce_pause_rate: float = 0.05  # ... or when hard bounces / copies passes this (0.05 = 5 %)
    pause_min_sent: int = 1000  # ... once at least this many copies were sent
    verp: bool = True  # with bounce_address set, each copy's envelope sender carries a signed token (VERP)
    # mailbox (i13-mailbox): where bounce reports and mailto unsubscribes arrive; see docs/bounces-mailbox.md
    bounce_mailbox: str | None = None  # imaps://user@host:993/INBOX, imap://… (STARTTLS), pop3s://user@host, maildir:///path, mbox:///path
    unsubscribe_mailbox: str | None = None  # where List-Unsubscribe mailto requests arrive; may equal bounce_mailbox
    bounce_processed_folder: str = "newsletter-processed"  # IMAP folder / Maildir subfolder processed messages move to (created if missing)
    bounce_poll_interval: float = 300.0  # seconds between mailbox polls in `newsletter worker` (0: never)
    bounce_max_message_bytes: int = 10 * 1024 * 1024  # larger messages are left in place and counted, never fetched
    bounce_mailbox_timeout: float = 30.0  # seconds per IMAP/POP3 network operation
    bounce_pop3_delete: bool = False  # POP3: delete a message once processed (never one we have not processed)

    # --- deliverability: DNS, DKIM, warm-up (issue 20) ---

    # --- secrets: environment only ---
    secret_key: str | None = field(default=None, repr=False)
    admin_password: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    bounce_mailbox_password: str | None = field(default=None, repr=False)  # NEWSLETTER_BOUNCE_MAILBOX_PASSWORD
    unsubscribe_mailbox_password: str | None = field(default=None, repr=False)  # NEWSLETTER_UNSUBSCRIBE_MAILBOX_PASSWORD
    config_path: str | None = None

    def smtp_server(self, name: str | None = None) -> SMTPServer:
        """Return the named SMTP server, or the default one (a local catcher if none is configured)."""
        name = name or self.default_smtp
        if name is None:
            if len(self.smtp) == 1:
                return next(iter(self.smtp.values()))
            if not self.smtp:
                return SMTPServer(name="default", password=os.environ.get("NEWSLETTER_SMTP_PASSWORD"))
            raise ConfigError("several [smtp.*] servers are configured: set default_smtp or pass --smtp NAME")
        try:
            return self.smtp[name]
        except KeyError:
            raise ConfigError(f"smtp server {name!r} is not configured (known: {', '.join(sorted(self.smtp)) or 'none'})") from None

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (flags that override config)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_SECRET_KEYS = {"secret_key", "admin_password", "admin_token"}
_SECRET_KEYS |= {"bounce_mailbox_password", "unsubscribe_mailbox_password"}  # mailbox logins (issue 13)
_SCALAR_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in {"smtp", "config_path"}}
# Environment names that differ from NEWSLETTER_<FIELD>.
_ENV_ALIASES = {"NEWSLETTER_FROM": "from_address", "NEWSLETTER_DB": "database_url"}


def _coerce(key: str, value: Any, where: str) -> Any:
    f = _SCALAR_FIELDS[key]
    typ = str(f.type)
    try:
        if typ.startswith("bool"):
            if isinstance(value, bool):
                return value
            v = str(value).strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, not {value!r}")
        if typ.startswith("int"):
            return int(value)
        if typ.startswith("float"):
            return float(value)
        if typ.startswith("list"):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return value
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {key}: {e}") from None


def _smtp_from_table(name: str, table: Mapping[str, Any], where: str, env: Mapping[str, str]) -> SMTPServer:
    allowed = {f.name for f in dataclasses.fields(SMTPServer)} - {"name", "password"}
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: [smtp.{name}]: unknown key {sorted(unknown)[0]!r}")
    if "password" in table:
        raise ConfigError(f"{where}: [smtp.{name}]: passwords are not read from files; set NEWSLETTER_SMTP_{name.upper()}_PASSWORD")
    kwargs = dict(table)
    if "max_connections" in kwargs:
        try:
            kwargs["max_connections"] = int(kwargs["max_connections"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: [smtp.{name}]: max_connections must be an integer") from None
    env_name = "NEWSLETTER_SMTP_" + name.upper().replace("-", "_") + "_PASSWORD"
    return SMTPServer(name=name, password=env.get(env_name), **kwargs)


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config: TOML file (``path``, ``$NEWSLETTER_CONFIG`` or ./newsletter.toml if present),
    then ``NEWSLETTER_*`` environment variables, then ``overrides`` (CLI flags; ``None`` values ignored)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    smtp: dict[str, SMTPServer] = {}

    file = path or env.get("NEWSLETTER_CONFIG")
    if file is None and Path(DEFAULT_CONFIG_FILE).is_file():
        file = DEFAULT_CONFIG_FILE
    if file is not None:
        p = Path(file)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read config file: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
        for key, value in data.items():
            if key == "smtp":
                if not isinstance(value, dict):
                    raise ConfigError(f"{p}: smtp must be a table of [smtp.NAME] servers")
                for name, table in value.items():
                    if not isinstance(table, dict):
                        raise ConfigError(f"{p}: smtp.{name} must be a table")
                    smtp[name] = _smtp_from_table(name, table, str(p), env)
            elif key in _SECRET_KEYS:
                raise ConfigError(f"{p}: {key} is a secret; set NEWSLETTER_{key.upper()} in the environment instead")
            elif key in _SCALAR_FIELDS:
                values[key] = _coerce(key, value, str(p))
            else:
                raise ConfigError(f"{p}: unknown config key {key!r}")
        values["config_path"] = str(p)

    for name, raw in env.items():
        if not name.startswith("NEWSLETTER_") or name == "NEWSLETTER_CONFIG":
            continue
        key = _ENV_ALIASES.get(name) or name[len("NEWSLETTER_"):].lower()
        if key in _SCALAR_FIELDS:
            values[key] = _coerce(key, raw, f"environment {name}")

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _SCALAR_FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = value

    cfg = Config(smtp=smtp, **values)
    if cfg.default_smtp and cfg.default_smtp not in cfg.smtp:
        raise ConfigError(f"default_smtp names {cfg.default_smtp!r}, which is not an [smtp.*] server")
    return cfg
