"""SMTP transport: one reused connection per sending thread, TLS, AUTH, timeouts, reply classification.

A connection carries many messages: a completed transaction leaves the server ready for the
next ``MAIL FROM`` (RFC 5321 §3.3), and any failed transaction is followed by ``RSET``. The
password comes from the environment (``NEWSLETTER_SMTP_PASSWORD`` or
``NEWSLETTER_SMTP_<NAME>_PASSWORD``) and never appears in a message, log line or error.

Replies map to ledger outcomes: 2xx → sent; 4xx, a dropped connection or a timeout → deferred
(retried later with backoff); 5xx → failed, and an unknown-user reply at RCPT (enhanced code
``5.1.1`` or ``5.1.10``; without an enhanced code, words such as "user unknown") also asks for
the address to be suppressed.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlsplit

from ..config import Config, SMTPServer
from ..errors import ConfigError, DispatchError
from .personalize import Built
from .ratelimit import RateLimiter
from .transports import ConnectFailed, Outcome

log = logging.getLogger(__name__)

TLS_MODES = ("auto", "none", "starttls", "tls")
IDLE_CHECK_S = 20.0  # a connection idle longer than this is checked with NOOP before use
MAX_URL_CONNECTIONS = 256  # a server given by URL: as many connections as --concurrency asks (its limit too)
_POLICY = re.compile(r"^\s*5\.7\.\d{1,3}\b")
# RFC 3463 enhanced status code at the start of a reply's text: class.subject.detail.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# Enhanced codes that say the mailbox does not exist (RFC 3463 5.1.1, RFC 7505 5.1.10 null MX).
# Not 5.1.2 (bad destination domain): a lapsed domain or broken DNS can come back, and a
# suppression is forever; the copy fails, the next campaign tries again.
_UNKNOWN_USER_CODES = {("1", "1"), ("1", "10")}
# Only for replies without an enhanced code. Not "mailbox unavailable": that is RFC 5321's
# standard text for any 550, policy blocks included.
_UNKNOWN_USER_TEXT = re.compile(r"\b5\.1\.(?:1|10)\b|user unknown|unknown user|no such user|no such mailbox"
                                r"|mailbox (?:does not|doesn't) exist|(?:recipient|address|user) does not exist", re.I)


@dataclass
class SMTPSettings:
    """Where and how to connect (parsed from a URL or an ``[smtp.NAME]`` table)."""

    name: str
    host: str
    port: int
    tls: str  # none | starttls | tls | auto (STARTTLS when offered)
    user: str | None
    password: str | None
    rate: str | None = None
    max_connections: int = 4
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None

    def describe(self) -> str:
        scheme = "smtps" if self.tls == "tls" else "smtp"
        user = f"{self.user}@" if self.user else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def __repr__(self) -> str:  # never show the password
        return f"SMTPSettings({self.name!r}, {self.describe()!r}, tls={self.tls!r})"


def parse_smtp_url(url: str, *, name: str = "default", tls: str = "auto", user: str | None = None,
                   password: str | None = None, **kw) -> SMTPSettings:
    """Parse ``smtp://[user@]host[:port]`` or ``smtps://...``; a password in the URL is refused."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"SMTP URL {_mask(text)!r} does not parse (expected smtp://[user@]host[:port])") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"SMTP URL {_mask(text)!r} does not parse (expected smtp://[user@]host[:port] or smtps://...)")
    if parts.password is not None:
        raise ConfigError(
            f"SMTP URL {_mask(text)!r} contains a password: remove it and set NEWSLETTER_SMTP_PASSWORD instead")
    if tls not in TLS_MODES:
        raise ConfigError(f"SMTP TLS mode {tls!r}: expected one of {', '.join(TLS_MODES)}")
    mode = tls
    if parts.scheme == "smtps" and mode in ("auto", "starttls"):
        mode = "tls"
    if port is None:
        port = 465 if mode == "tls" else 587 if (parts.username or user) else 25
    return SMTPSettings(name=name, host=parts.hostname, port=port, tls=mode,
                        user=unquote(parts.username) if parts.username else user, password=password, **kw)


def _mask(url: str) -> str:
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)


def settings_for(config: Config, spec: str | None, *, tls: str | None = None, timeout: float | None = None,
                 environ=None) -> list[SMTPSettings]:
    """The servers a send uses: ``spec`` is a URL, a configured name, or ``a,b`` names; None → the
    configured default. Returns [] when nothing is configured (the caller uses the outbox)."""
    env = os.environ if environ is None else environ
    timeout = timeout or getattr(config, "smtp_timeout", 30.0)
    if spec is None and not config.smtp:
        return []
    if spec is not None and "://" in spec:  # no [smtp.NAME] table to cap it: --concurrency decides
        return [parse_smtp_url(spec, tls=tls or "auto", password=env.get("NEWSLETTER_SMTP_PASSWORD"), timeout=timeout,
                               max_connections=MAX_URL_CONNECTIONS)]
    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else [None]
    out = []
    for n in names:
        srv: SMTPServer = config.smtp_server(n)
        password = srv.password
        if password is None:
            password = env.get("NEWSLETTER_SMTP_" + srv.name.upper().replace("-", "_") + "_PASSWORD") or (
                env.get("NEWSLETTER_SMTP_PASSWORD") if len(names) == 1 else None)
        mode = tls or srv.tls or "auto"
        s = parse_smtp_url(srv.url, name=srv.name, tls=mode, user=srv.user, password=password,
                           rate=srv.rate, max_connections=max(1, int(srv.max_connections or 1)), timeout=timeout)
        out.append(s)
    return out


def classify_reply(code: int, message: bytes | str, *, at: str) -> Outcome:
    """Turn an SMTP reply into an Outcome: 2xx sent, 4xx deferred, 5xx failed (5.1.1 → suppress)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    reply = f"{code} {' '.join(text.split())}".strip()
    if at != "DATA" and at != "RCPT":
        reply = f"{at}: {reply}"
    if 200 <= code < 300:
        return Outcome("sent", reply)
    if 400 <= code < 500 or code < 200:
        return Outcome("deferred", reply, server_trouble=at not in ("RCPT", "DATA"))
    return Outcome("failed", reply, suppress=at == "RCPT" and is_unknown_user(text))


def is_unknown_user(text: str) -> bool:
    """True when a 5xx reply's text says the mailbox does not exist (the address is suppressed).

    With an enhanced status code (``550 5.1.1 ...``) the code alone decides: only 5.1.1 and
    5.1.10 — so ``550 5.7.1 ... mailbox unavailable`` (a policy block) is not an unknown user.
    Without one, explicit wording such as "user unknown" or "no such user" is needed."""
    m = _ENHANCED.match(text)
    if m:
        return m.group(1) == "5" and (m.group(2), m.group(3)) in _UNKNOWN_USER_CODES
    return bool(_UNKNOWN_USER_TEXT.search(text))


class SMTPTransport:
    """A pool of connections to one server: each sending thread gets its own session."""

    def __init__(self, settings: SMTPSettings, *, rate_window: str | None = None,
                 limiter_factory: Callable[..., RateLimiter] | None = None):
        """``limiter_factory`` builds this server's own rate limiter from its rate specs, as
        ``RateLimiter.from_specs`` (the default) does."""
        self.settings = settings
        self.name = settings.name
        self.max_connections = settings.max_connections
        self.limiter = (limiter_factory or RateLimiter.from_specs)(settings.rate, rate_window)

    def describe(self) -> str:
        return self.settings.describe()

    def session(self) -> "SMTPSession":
        return SMTPSession(self.settings)


class SMTPSession:
    """One SMTP connection, opened lazily and reused for many messages."""

    def __init__(self, s: SMTPSettings):
        self.s = s
        self.conn: smtplib.SMTP | None = None
        self.sent_on_connection = 0
        self.last_used = 0.0

    def _context(self) -> ssl.SSLContext:
        return self.s.ssl_context or ssl.create_default_context()

    def connect(self) -> None:
        if self.conn is not None:
            if time.monotonic() - self.last_used < IDLE_CHECK_S:
                return
            try:  # idle a while (waiting for retries): make sure the server did not hang up
                if self.conn.noop()[0] == 250:
                    self.last_used = time.monotonic()
                    return
            except (OSError, smtplib.SMTPException):
                pass
            self.close()
        s = self.s
        where = s.describe()
        try:
            if s.tls == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                      context=self._context(), local_hostname=s.local_hostname)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=s.local_hostname)
            try:
                conn.ehlo()
                if s.tls == "starttls" or (s.tls == "auto" and conn.has_extn("starttls")):
                    if not conn.has_extn("starttls"):
                        raise DispatchError(f"SMTP server {where} does not offer STARTTLS (use --tls, or tls = \"none\")")
                    conn.starttls(context=self._context())
                    conn.ehlo()
                if s.user:
                    if s.password is None:
                        raise DispatchError(
                            f"SMTP server {where}: user {s.user!r} given but no password: set NEWSLETTER_SMTP_PASSWORD"
                            + (f" or NEWSLETTER_SMTP_{s.name.upper()}_PASSWORD" if s.name != "default" else ""))
                    if not conn.has_extn("auth"):
                        raise DispatchError(f"SMTP server {where} does not offer AUTH (is TLS required first?)")
                    try:
                        conn.login(s.user, s.password)
                    except smtplib.SMTPAuthenticationError as e:
                        raise DispatchError(
                            f"SMTP server {where} refused the login for {s.user!r}: {e.smtp_code} "
                            f"{_one_line(e.smtp_error)}") from None
                    except smtplib.SMTPNotSupportedError:
                        raise DispatchError(f"SMTP server {where} does not support a login mechanism we know") from None
            except BaseException:
                _quiet_close(conn)
                raise
        except DispatchError:
            raise
        except ssl.SSLCertVerificationError as e:
            raise DispatchError(f"SMTP server {where}: TLS certificate not trusted: {e.verify_message}") from None
        except smtplib.SMTPConnectError as e:
            raise ConnectFailed(f"SMTP server {where} refused the connection: {e.smtp_code} {_one_line(e.smtp_error)}") from None
        except smtplib.SMTPResponseException as e:
            raise ConnectFailed(f"SMTP server {where}: {e.smtp_code} {_one_line(e.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as e:
            raise ConnectFailed(f"cannot connect to SMTP server {where}: {_os_problem(e)}") from None
        self.conn = conn
        self.sent_on_connection = 0
        self.last_used = time.monotonic()

    def send(self, built: Built) -> Outcome:
        if self.conn is None:
            try:
                self.connect()
            except ConnectFailed as e:
                return Outcome("deferred", str(e), server_trouble=True)
        conn = self.conn
        assert conn is not None
        self.last_used = time.monotonic()
        try:
            return self._transaction(conn, built)
        except smtplib.SMTPServerDisconnected as e:
            self.close()
            return Outcome("deferred", f"connection lost: {_one_line(str(e)) or 'server disconnected'}", server_trouble=True)
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            return Outcome("deferred", f"connection error: {_os_problem(e)}", server_trouble=True)

    def send_gated(self, built: Built, gate: Callable[[], bool]) -> Outcome | None:
        """Send ``built`` once ``gate()`` says so (the sender commits the copy's ``sending`` mark
        there). With PIPELINING the envelope (MAIL, RCPT, DATA) is written first, so its round
        trip overlaps the commit; the content follows only after ``gate()`` returned True. When it
        returns False (None is returned) or raises, the connection is dropped without QUIT before
        any content went out, so the server discards the transaction: nothing is delivered."""
        conn = self.conn
        if conn is None or not conn.has_extn("pipelining"):
            return self.send(built) if gate() else None
        self.last_used = time.monotonic()
        try:
            conn.send(_envelope(built))
        except (OSError, smtplib.SMTPException):
            self.close()  # the connection is gone: the copy goes the usual way (deferred, retried)
            return self.send(built) if gate() else None
        try:
            go = gate()
        except BaseException:
            self.drop()
            raise
        if not go:
            self.drop()
            return None
        try:
            return self._transaction(conn, built, envelope_sent=True)
        except smtplib.SMTPServerDisconnected as e:
            self.close()
            return Outcome("deferred", f"connection lost: {_one_line(str(e)) or 'server disconnected'}", server_trouble=True)
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            return Outcome("deferred", f"connection error: {_os_problem(e)}", server_trouble=True)

    def drop(self) -> None:
        """Close the connection without QUIT (in the middle of a transaction, QUIT would be content)."""
        if self.conn is not None:
            _quiet_close(self.conn, quit=False)
            self.conn = None

    def _transaction(self, conn: smtplib.SMTP, built: Built, envelope_sent: bool = False) -> Outcome:
        """MAIL, RCPT, DATA on the open connection, without smtplib.sendmail's per-message address
        parsing and regex dot-stuffing (our bodies are QP: a line starting with "." is rare and
        handled with one bytes.replace). RSET after any refusal, so the connection stays usable.

        When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
        and their three replies are read after it: one round trip instead of three, which is
        what a relay far away costs per message. The replies are then judged in order exactly
        as if each had been awaited."""
        piped = conn.has_extn("pipelining")
        replies: list[tuple[int, bytes]] = []
        if piped:
            if not envelope_sent:
                conn.send(_envelope(built))
            replies = [conn.getreply() for _ in range(3)]
            (code, msg), rcpt, data_reply = replies
            if data_reply[0] == 354 and (code != 250 or rcpt[0] not in (250, 251)):
                conn.send(b".\r\n")  # DATA was accepted though the envelope was not: end the empty message
                conn.getreply()
        else:
            code, msg = conn.docmd("MAIL", f"FROM:<{built.mail_from}>")
        if code != 250:
            if code == 421:
                self.close()
            else:
                self._rset()
            out = classify_reply(code, msg, at="MAIL FROM")
            fatal = self._refused_sender(code, msg, out.reply)
            # The sender being refused says nothing about this recipient: never fail them for it.
            return Outcome("deferred", out.reply, server_trouble=True, fatal=fatal)
        code, msg = replies[1] if piped else conn.docmd("RCPT", f"TO:<{built.rcpt}>")
        if code not in (250, 251):
            if code == 421:
                self.close()
                return Outcome("deferred", classify_reply(code, msg, at="RCPT").reply, server_trouble=True)
            self._rset()
            out = classify_reply(code, msg, at="RCPT")
            if code == 530:  # "authentication required" at RCPT says nothing about the recipient
                return Outcome("deferred", out.reply, server_trouble=True,
                               fatal=self._refused_sender(code, msg, out.reply))
            return out
        code, msg = replies[2] if piped else conn.docmd("DATA")
        if code != 354:
            if code == 421:
                self.close()
                return Outcome("deferred", classify_reply(code, msg, at="DATA").reply, server_trouble=True)
            self._rset()
            return classify_reply(code, msg, at="DATA")
        data = built.data
        if data[:1] == b".":
            data = b"." + data
        if b"\n." in data:
            data = data.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        conn.send(data + b".\r\n")
        code, msg = conn.getreply()
        if code == 421:
            self.close()
        if not 200 <= code < 300:
            return classify_reply(code, msg, at="DATA")
        self.sent_on_connection += 1
        return Outcome("sent", f"{code} {_one_line(msg)}"[:200])

    def _refused_sender(self, code: int, msg, reply: str) -> str:
        """A one-line configuration error when the server refuses us as a sender for every message
        (530, or a 5.7.x policy reply to MAIL FROM: a login is required or not allowed this
        sender); "" for replies worth retrying."""
        text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        if code != 530 and not (500 <= code < 600 and _POLICY.match(text)):
            return ""
        where = self.s.describe()
        if code == 530 and not self.s.user:
            return (f"{where} requires authentication: give a user in the URL and NEWSLETTER_SMTP_PASSWORD "
                    f"(server said: {reply})")
        if not self.s.user:
            return f"{where} refuses mail from us ({reply}): check the From/bounce address or give a user in the URL"
        return f"{where} refuses mail from {self.s.user!r} ({reply}): check that this login may send as the From address"

    def _rset(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            _quiet_close(self.conn, quit=True)
            self.conn = None


def _envelope(built: Built) -> bytes:
    """MAIL, RCPT and DATA in one write (PIPELINING)."""
    return f"MAIL FROM:<{built.mail_from}>\r\nRCPT TO:<{built.rcpt}>\r\nDATA\r\n".encode("utf-8")


def _quiet_close(conn: smtplib.SMTP, quit: bool = False) -> None:
    try:
        if quit:
            conn.quit()
    except (OSError, smtplib.SMTPException):
        pass
    try:
        conn.close()
    except OSError:
        pass


def _one_line(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return " ".join(str(v).split())


def _os_problem(e: BaseException) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"host not found ({e.strerror})"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return _one_line(str(e)) or type(e).__name__
