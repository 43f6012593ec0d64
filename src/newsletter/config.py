"""One configuration object: built from a TOML file, then ``NEWSLETTER_*`` environment
variables, then CLI flags — each layer overriding the one before.

Secrets (SMTP passwords, the HMAC secret key, the admin password) come from the
environment only, are never read from the TOML file and never appear in ``repr()``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
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

    database_url: str = "sqlite:///newsletter.db"  # SQLite file or postgresql+psycopg://user@host:5432/db (also --db)
    newsletter_name: str = "The Weekly Dispatch"  # masthead and default subject of the digest
    site_url: str = "https://example.org"  # link base for Markdown articles without url, and the fetch User-Agent
    base_url: str = "http://127.0.0.1:8000"  # public address of `newsletter serve`: unsubscribe, confirm, web-version links
    from_address: str = "The Weekly Dispatch <newsletter@example.org>"  # From of digests and campaigns (env NEWSLETTER_FROM too)
    reply_to: str | None = None  # Reply-To of campaigns
    asset_base_url: str | None = None  # where out/assets/ is published; without it mailed campaigns embed thumbnails as CID parts
    template_dir: str | None = None  # your own digest templates (see Composing a digest)
    language: str = "en"  # language of the public pages and the digest's fixed words when a list sets none (en, fr, de, es, pt, ar)
    sources: list[str] = field(default_factory=list)  # article sources used when compose gets none, and by the web preview
    outbox: str = "outbox"  # folder of .eml files, the transport when no SMTP server is configured
    smtp: dict[str, SMTPServer] = field(default_factory=dict)  # named SMTP servers, [smtp.NAME] tables (url, tls, user, rate, max_connections)
    default_smtp: str | None = None  # which [smtp.NAME] server send uses by default
    rate: str | None = None  # default send rate, e.g. 20/s, 600/m, 10000/h
    concurrency: int = 4  # SMTP connections per sending process
    ledger_sync: str = ""  # what a send's committed marks survive: "full" (a power cut; a disk flush per group) or "normal" (a killed sender; faster); default: full on PostgreSQL, normal on SQLite
    max_attempts: int = 100  # a backstop only: retry_max_age is the limit (100 retries take about 2 days or more)
    retry_base: float = 60.0  # first retry after about this many seconds, doubling each time
    retry_max_delay: float = 3600.0  # longest wait between two retries of a deferred copy (seconds)
    retry_max_age: float = 172800.0  # a deferred copy is retried until this long after its first temporary failure
    max_connection_failures: int = 5  # consecutive connection failures before a campaign auto-pauses
    smtp_timeout: float = 30.0  # seconds for every SMTP step
    rate_window: str | None = None  # provider quotas as sliding windows, e.g. "500/h,2000/d"
    precedence: str | None = None  # "bulk" adds Precedence: bulk (off by default)
    unsubscribe_mailto: str | None = None  # mailto target in List-Unsubscribe (default: reply-to or from)
    bounce_address: str | None = None  # envelope sender (Return-Path); default: the From address
    allow_local_links: bool = False  # let SMTP sends carry links to a non-https or loopback base_url
    timezone: str = "UTC"  # time zone for naive article dates, --since DATE, scheduling defaults
    default_since: str = "7d"  # compose and new campaigns without --since: articles this recent when no earlier campaign to the list says (12h, 7d, 2w; "all": the whole archive)
    dkim_key_file: str | None = None  # DKIM private key (PEM); signing needs dkim_key_file, dkim_selector and dkim_domain
    dkim_selector: str | None = None  # DKIM selector (s=)
    dkim_domain: str | None = None  # DKIM signing domain (d=)
    poll_interval: float = 5.0  # seconds between `newsletter worker` passes
    fetch_timeout: float = 10.0  # seconds allowed for fetching one feed or page
    fetch_max_bytes: int = 10 * 1024 * 1024  # largest feed or page fetched
    vimeo_oembed_url: str = "https://vimeo.com/api/oembed.json"  # "" turns Vimeo thumbnail lookups off
    signup_origins: list[str] = field(default_factory=list)  # other sites whose pages may post the signup form
    trusted_proxies: list[str] = field(default_factory=list)  # reverse proxies whose X-Forwarded-For is believed
    # --- fetch safety ---
    allow_private_fetch: bool = False  # let fetches reach loopback/private/reserved addresses (docs/fetching.md)
    fetch_allow_networks: list[str] = field(default_factory=list)  # networks fetches may reach anyway, e.g. ["10.1.0.0/16"]
    local_image_dirs: list[str] = field(default_factory=list)  # folders besides a source's own tree local images may come from
    source_time_budget: float = 30.0  # seconds reading one source document may take before it is skipped (0: no limit)

    # --- bounces, complaints and the feedback mailbox ---
    soft_bounce_limit: int = 3  # soft bounces within soft_bounce_window that act like a hard bounce
    soft_bounce_window: str = "30d"  # how far back soft bounces count (30m, 12h, 3d, 2w)
    soft_bounce_reset_after: str = "3d"  # a later copy accepted and not bounced this long after resets the count
    complaint_pause_rate: float = 0.003  # a campaign pauses when complaints / copies passes this (0.003 = 0.3 %)
    bounce_pause_rate: float = 0.05  # ... or when hard bounces / copies passes this (0.05 = 5 %)
    pause_min_sent: int = 1000  # ... once at least this many copies were sent
    verp: bool = True  # with bounce_address set, each copy's envelope sender carries a signed token (VERP)
    webhook_max_age: int = 300  # seconds: a signed webhook request (or SNS message) older than this, or as far in the future, is refused
    webhook_ses_topics: list[str] = field(default_factory=list)  # SNS topic ARNs whose SES notifications /webhooks/ses accepts (none: endpoint off)
    webhook_ses_confirm: bool = False  # confirm SNS SubscriptionConfirmation requests for those topics (fetch their SubscribeURL)
    webhook_sendgrid_key: str | None = None  # SendGrid event webhook verification key (base64 public key; env NEWSLETTER_WEBHOOK_SENDGRID_KEY)
    webhook_mailgun_key: str | None = field(default=None, repr=False)  # Mailgun webhook signing key (env NEWSLETTER_WEBHOOK_MAILGUN_KEY only)
    webhook_postmark_user: str | None = None  # user of the basic-auth credentials in the Postmark webhook URL (env NEWSLETTER_WEBHOOK_POSTMARK_USER)
    webhook_postmark_password: str | None = field(default=None, repr=False)  # their password (env NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD only)
    webhook_postmark_ips: list[str] = field(default_factory=list)  # if set, Postmark webhooks only from these addresses/networks
    # mailbox (i13-mailbox): where bounce reports and mailto unsubscribes arrive; see docs/bounces-mailbox.md
    bounce_mailbox: str | None = None  # imaps://user@host:993/INBOX, imap://… (STARTTLS), pop3s://user@host, maildir:///path, mbox:///path
    unsubscribe_mailbox: str | None = None  # where List-Unsubscribe mailto requests arrive; may equal bounce_mailbox
    bounce_processed_folder: str = "newsletter-processed"  # IMAP folder / Maildir subfolder processed messages move to (created if missing)
    bounce_poll_interval: float = 300.0  # seconds between mailbox polls in `newsletter worker` (0: never)
    bounce_max_message_bytes: int = 10 * 1024 * 1024  # larger messages are left in place and counted, never fetched
    bounce_mailbox_timeout: float = 30.0  # seconds per IMAP/POP3 network operation
    bounce_pop3_delete: bool = False  # POP3: delete a message once processed (never one we have not processed)

    # --- deliverability: DNS, DKIM, warm-up ---
    dns_resolver: str | None = None  # "127.0.0.1:5353" (comma-separated for several): where `domain check` asks; default: the system resolver
    spf_include: str | None = None  # the relay's SPF domain, e.g. "_spf.relay.example": `domain check` wants include:<it> in the SPF record
    dkim_ed25519_key_file: str | None = None  # a second key (Ed25519, RFC 8463): each message is then signed with both
    dkim_ed25519_selector: str | None = None  # its selector, published at <selector>._domainkey.<dkim_domain>
    strict_auth: bool = False  # refuse to send when DKIM d= is not aligned with the From domain (otherwise: warn once per campaign)
    warmup: str | None = None  # daily volume ramp of a new sending domain, "200/d x2 up to 50000" (start, factor per UTC day, cap); see Warm-up and per-domain limits
    warmup_start: str | None = None  # first UTC day of the warm-up ramp, YYYY-MM-DD (required with warmup)
    rate_per_domain: dict[str, str] = field(default_factory=dict)  # recipient-domain limits on top of rate, {"gmail.com" = "20/s"} (env: gmail.com=20/s,outlook.com=10/s)

    # --- engagement: opens and clicks (off by default) ---
    track: str = "off"  # what new campaigns track by default: off, opens, clicks or opens,clicks (campaigns create --track)
    track_lists: dict[str, str] = field(default_factory=dict)  # per-list default, {"weekly" = "opens,clicks"}, used when every target list agrees
    tracking_note: str | None = None  # the footer sentence of a tracked email (default: says that opens and clicks are counted)
    tracking_privacy_url: str | None = None  # where the footer's privacy link goes (default: this app's /privacy page)
    privacy_note_file: str | None = None  # a text file shown on /privacy (paragraphs separated by blank lines); default: what is tracked and why
    store_ip: bool = False  # keep the IP address of each open and click (otherwise only a coarse class)
    tracking_retention_days: int = 395  # `newsletter tracking purge` deletes events older than this (13 months)
    scanner_seconds: float = 10.0  # a click this soon after delivery is a link scanner's
    event_webhooks: list[str] = field(default_factory=list)  # URLs that receive signed JSON events (subscribed, confirmed, unsubscribed, bounced, complained, opened, clicked)
    event_webhook_events: list[str] = field(default_factory=list)  # which events to send (default: all)
    event_webhook_timeout: float = 10.0  # seconds per POST
    event_webhook_max_attempts: int = 12  # retries back off from 30 s to 6 h; then the event is given up
    event_webhook_interval: float = 10.0  # seconds between two rounds of the worker's webhook thread

    # --- secrets: environment only ---
    secret_key: str | None = field(default=None, repr=False)  # HMAC key for signed links (env NEWSLETTER_SECRET_KEY only)
    admin_password: str | None = field(default=None, repr=False)  # web admin password (env NEWSLETTER_ADMIN_PASSWORD only)
    admin_token: str | None = field(default=None, repr=False)  # bearer token for the REST API (env NEWSLETTER_ADMIN_TOKEN only)
    bounce_mailbox_password: str | None = field(default=None, repr=False)  # mailbox login password (env NEWSLETTER_BOUNCE_MAILBOX_PASSWORD only)
    unsubscribe_mailbox_password: str | None = field(default=None, repr=False)  # its password (env NEWSLETTER_UNSUBSCRIBE_MAILBOX_PASSWORD only)
    event_webhook_secret: str | None = field(default=None, repr=False)  # HMAC key signing event webhooks (env NEWSLETTER_EVENT_WEBHOOK_SECRET only)
    config_path: str | None = None  # the TOML file this config was read from (set by load_config)
    # Where each setting load_config set came from: "file", "env NEWSLETTER_X" or "flag"; a key
    # not in it has its default (the admin's Settings page shows this).
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

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


_SECRET_KEYS = {"secret_key", "admin_password", "admin_token", "webhook_mailgun_key", "webhook_postmark_password"}
_SECRET_KEYS |= {"bounce_mailbox_password", "unsubscribe_mailbox_password"}  # mailbox logins
_SECRET_KEYS |= {"event_webhook_secret"}
_SCALAR_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in {"smtp", "config_path", "origins"}}
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
        if typ.startswith("dict"):  # {"gmail.com" = "20/s"}, or "gmail.com=20/s,outlook.com=10/s" from the environment
            if isinstance(value, str):
                pairs = [p.partition("=") for p in value.split(",") if p.strip()]
                if any(not sep for _, sep, _ in pairs):
                    raise ValueError("expected NAME=VALUE pairs separated by commas")
                value = {k.strip(): v.strip() for k, _, v in pairs}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError("expected a table of strings")
            return dict(value)
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


# Settings written into mail headers: refused at load when they could inject a header.
_HEADER_SETTINGS = ("from_address", "reply_to", "newsletter_name", "bounce_address", "unsubscribe_mailto")


def _check_default_since(cfg: Config, file: str | None) -> None:
    """One-line ConfigError naming ``default_since`` when it is neither a span (7d) nor ``all``."""
    if cfg.default_since.strip().lower() == "all":
        return
    from .articles.dates import parse_span

    try:
        parse_span(cfg.default_since)
    except ValueError as e:
        origin = cfg.origins.get("default_since", "")
        where = origin.replace("env ", "environment ") if origin.startswith("env ") else file if origin == "file" else None
        raise ConfigError(f"{where + ': ' if where else ''}default_since: {e} (or all, for the whole archive)") from None


def _check_header_settings(cfg: Config, file: str | None, env: Mapping[str, str]) -> None:
    """One-line ConfigError naming the setting when a value bound for a mail header holds a line
    break or control character (also inside an RFC 2047 encoded word), or when
    ``unsubscribe_mailto`` is not a plain address. The header module is imported only when a
    value looks suspect, so a normal config load stays cheap."""
    from .errors import InvalidInput

    for key in _HEADER_SETTINGS:
        value = getattr(cfg, key)
        if not value or (key != "unsubscribe_mailto" and value.isprintable() and "=?" not in value):
            continue
        from .compose.headers import check_header, check_mailto

        try:
            check_mailto(key, value) if key == "unsubscribe_mailto" else check_header(key, value)
        except InvalidInput as e:
            env_name = "NEWSLETTER_FROM" if key == "from_address" else f"NEWSLETTER_{key.upper()}"
            where = f"environment {env_name}" if env.get(env_name) == value else file
            message = str(e) if str(e).startswith(key) else f"{key}: {e}"
            raise ConfigError(f"{where}: {message}" if where else message) from None


def _check_deliverability(cfg: Config, file: str | None) -> None:
    """One-line ConfigError naming the key for a bad warmup, warmup_start or rate_per_domain."""
    if not (cfg.warmup or cfg.warmup_start or cfg.rate_per_domain):
        return
    from .dispatch.ratelimit import parse_domain_rates
    from .dispatch.warmup import parse_warmup

    parse_warmup(cfg.warmup, cfg.warmup_start, where=file or "")
    parse_domain_rates(cfg.rate_per_domain, where=file or "")


LEDGER_SYNC = ("full", "normal")


def _check_ledger_sync(cfg: Config, file: str | None) -> None:
    """One-line ConfigError for a ledger_sync that is neither full nor normal (nor unset)."""
    if cfg.ledger_sync not in ("", *LEDGER_SYNC):
        at = f"{file}: " if file else ""
        raise ConfigError(f"{at}ledger_sync: {cfg.ledger_sync!r} is not full or normal")


def _check_tracking(cfg: Config, file: str | None) -> None:
    """One-line ConfigError naming the key for a bad track, track_lists or retention."""
    from .errors import InvalidInput

    at = f"{file}: " if file else ""
    try:
        from .engagement.links import parse_track

        parse_track(cfg.track, where="track")
        for slug, spec in cfg.track_lists.items():
            parse_track(spec, where=f"track_lists {slug}")
    except InvalidInput as e:
        raise ConfigError(f"{at}{e}") from None
    if cfg.tracking_retention_days < 1:
        raise ConfigError(f"{at}tracking_retention_days: must be at least 1 (days)")
    if cfg.scanner_seconds < 0:
        raise ConfigError(f"{at}scanner_seconds: must not be negative")
    if cfg.event_webhooks or cfg.event_webhook_events:
        from .engagement.outbound import check_settings

        try:
            check_settings(cfg)
        except ConfigError as e:
            raise ConfigError(f"{at}{e}") from None


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config: TOML file (``path``, ``$NEWSLETTER_CONFIG`` or ./newsletter.toml if present),
    then ``NEWSLETTER_*`` environment variables, then ``overrides`` (CLI flags; ``None`` values ignored)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
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
                    origins[f"smtp.{name}"] = "file"
            elif key in _SECRET_KEYS:
                raise ConfigError(f"{p}: {key} is a secret; set NEWSLETTER_{key.upper()} in the environment instead")
            elif key in _SCALAR_FIELDS:
                values[key] = _coerce(key, value, str(p))
                origins[key] = "file"
            else:
                raise ConfigError(f"{p}: unknown config key {key!r}")
        values["config_path"] = str(p)

    for name, raw in env.items():
        if not name.startswith("NEWSLETTER_") or name == "NEWSLETTER_CONFIG":
            continue
        key = _ENV_ALIASES.get(name) or name[len("NEWSLETTER_"):].lower()
        if key in _SCALAR_FIELDS:
            values[key] = _coerce(key, raw, f"environment {name}")
            origins[key] = f"env {name}"

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _SCALAR_FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = value
        origins[key] = "flag"

    cfg = Config(smtp=smtp, origins=origins, **values)
    _check_header_settings(cfg, values.get("config_path"), env)
    _check_default_since(cfg, values.get("config_path"))
    for net in cfg.fetch_allow_networks:  # fetch safety: a typo must not silently allow nothing
        try:
            ipaddress.ip_network(net.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"fetch_allow_networks: {net!r} is not a network like 10.1.0.0/16") from None
    _check_deliverability(cfg, values.get("config_path"))
    _check_tracking(cfg, values.get("config_path"))
    _check_ledger_sync(cfg, values.get("config_path"))
    if cfg.default_smtp and cfg.default_smtp not in cfg.smtp:
        raise ConfigError(f"default_smtp names {cfg.default_smtp!r}, which is not an [smtp.*] server")
    return cfg
