"""Where bounce reports and mailto unsubscribes arrive: one small interface over IMAP, POP3, a
local Maildir and a local mbox, named by a URL in the config (``bounce_mailbox``).

A mailbox lists its messages (a key stable across connections, and a size), fetches one, and
marks one processed — IMAP moves it to ``bounce_processed_folder``, a Maildir moves the file
into that subfolder, POP3 and mbox change nothing on the server (the database records the key;
POP3 may delete processed messages when ``bounce_pop3_delete`` is set). Nothing here deletes a
message it has not been told was processed. Errors are :class:`MailboxError` naming the mailbox
by its URL, never with a password.
"""

from __future__ import annotations

import ipaddress
import mailbox as stdlib_mailbox
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError, MailboxError

SCHEMES = ("imaps", "imap", "pop3s", "pop3", "maildir", "mbox")
DEFAULT_PORTS = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
TLS_MODES = ("tls", "starttls", "none")


@dataclass(frozen=True)
class MessageRef:
    """One message in a mailbox: ``key`` is stable across connections (IMAP UIDVALIDITY:UID,
    POP3 UIDL, Maildir unique name, mbox content digest); ``size`` in bytes when known."""

    key: str
    size: int | None = None
    number: int | None = None  # POP3 message number in this session


@dataclass(frozen=True)
class MailboxSpec:
    """A parsed mailbox URL: scheme, server or path, folder and TLS mode; no password."""

    scheme: str
    host: str = ""
    port: int | None = None
    user: str = ""
    folder: str = "INBOX"
    path: str = ""
    tls: str = "tls"
    password: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The URL as shown in messages and stored in the database (never the password)."""
        if self.scheme in ("maildir", "mbox"):
            return f"{self.scheme}://{self.path}"
        user = f"{self.user}@" if self.user else ""
        folder = f"/{self.folder}" if self.scheme.startswith("imap") else ""
        tls = f"?tls={self.tls}" if self.tls != _default_tls(self.scheme) else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{folder}{tls}"

    @property
    def is_local(self) -> bool:
        return self.scheme in ("maildir", "mbox")


def _default_tls(scheme: str) -> str:
    return "tls" if scheme in ("imaps", "pop3s") else "starttls"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_mailbox_url(url: str, *, password: str | None = None, key: str = "bounce_mailbox") -> MailboxSpec:
    """Read a mailbox URL (``imaps://user@host:993/INBOX``, ``imap://user@host/INBOX?tls=starttls``,
    ``pop3s://user@host``, ``maildir:///var/mail/bounces``, ``mbox:///var/mail/bounces``).

    ``imap://`` and ``pop3://`` use STARTTLS/STLS unless ``?tls=none``, which is refused except on
    a loopback address (the password must not cross a network in clear). A password written in the
    URL is refused: it comes from the environment only."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{key}: {text!r} is not a mailbox URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{key}: {text!r}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    if parts.password is not None:
        env = "NEWSLETTER_" + key.upper() + "_PASSWORD"
        raise ConfigError(f"{key}: passwords are not read from the mailbox URL; set {env} in the environment")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme in ("maildir", "mbox"):
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{key}: {scheme}:// takes a local path (e.g. {scheme}:///var/mail/bounces), not a host")
        path = unquote(parts.path)
        if not path:
            raise ConfigError(f"{key}: {scheme}:// needs a path")
        return MailboxSpec(scheme=scheme, path=path, tls="none")
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"{key}: {text!r} names no server")
    tls = query.get("tls", _default_tls(scheme)).lower()
    if tls not in TLS_MODES or (scheme.endswith("s") and tls != "tls"):
        raise ConfigError(f"{key}: tls={tls!r} does not fit {scheme}:// (imaps/pop3s are TLS; imap/pop3 take starttls or none)")
    if tls == "none" and not _is_loopback(host):
        raise ConfigError(f"{key}: tls=none is only allowed on a loopback address, not {host!r}: the password would cross the network in clear")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if scheme.startswith("pop3") and parts.path.strip("/"):
        raise ConfigError(f"{key}: POP3 has no folders; remove {parts.path!r} from the URL")
    return MailboxSpec(scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], user=unquote(parts.username or ""),
                       folder=folder, tls=tls, password=password)


class Mailbox(Protocol):
    """What the processing loop needs from a mailbox; see the module docstring."""

    name: str

    def __enter__(self) -> "Mailbox": ...

    def __exit__(self, *exc) -> None: ...

    def messages(self) -> list[MessageRef]: ...

    def fetch(self, ref: MessageRef, max_bytes: int) -> bytes: ...

    def mark_processed(self, ref: MessageRef) -> None: ...


class TooLarge(Exception):
    """A message over the size cap (raised by ``fetch`` when the size was not known beforehand)."""


@dataclass
class MailboxOptions:
    """The config values a mailbox needs, in one place."""

    processed_folder: str = "newsletter-processed"
    timeout: float = 30.0
    pop3_delete: bool = False
    ssl_context: ssl.SSLContext | None = None


def open_mailbox(spec: MailboxSpec, options: MailboxOptions) -> Mailbox:
    """The mailbox for ``spec`` (not yet connected: use it as a context manager)."""
    if spec.scheme == "maildir":
        return MaildirMailbox(spec, options)
    if spec.scheme == "mbox":
        return MboxMailbox(spec, options)
    from .remote import IMAPMailbox, POP3Mailbox

    if spec.scheme.startswith("imap"):
        return IMAPMailbox(spec, options)
    return POP3Mailbox(spec, options)


def _check_folder_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\x00" in name or any(ord(c) < 32 for c in name):
        raise ConfigError(f"bounce_processed_folder: {name!r} is not a usable folder name")
    return name


class MaildirMailbox:
    """A local Maildir (``new/`` and ``cur/``); processed messages move, by one ``rename``, into the
    Maildir++ subfolder ``.<processed_folder>/cur`` with the Seen flag — never deleted."""

    def __init__(self, spec: MailboxSpec, options: MailboxOptions):
        self.spec, self.name = spec, spec.name
        self.root = Path(spec.path)
        self.folder = _check_folder_name(options.processed_folder)
        self._paths: dict[str, Path] = {}

    def __enter__(self) -> "MaildirMailbox":
        missing = [d for d in ("cur", "new", "tmp") if not (self.root / d).is_dir()]
        if missing:
            raise MailboxError(f"{self.name}: not a Maildir (no {missing[0]}/ directory)")
        return self

    def __exit__(self, *exc) -> None:
        self._paths.clear()

    def messages(self) -> list[MessageRef]:
        refs: list[MessageRef] = []
        self._paths.clear()
        for sub in ("new", "cur"):
            try:
                entries = sorted(os.scandir(self.root / sub), key=lambda e: e.name)
            except OSError as e:
                raise MailboxError(f"{self.name}: cannot list {sub}/: {e.strerror or e}") from None
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                key = entry.name.split(":", 1)[0]
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    size = None  # vanished or unreadable: fetch will say so
                self._paths[key] = Path(entry.path)
                refs.append(MessageRef(key=key, size=size))
        return refs

    def fetch(self, ref: MessageRef, max_bytes: int) -> bytes:
        path = self._paths[ref.key]
        try:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise MailboxError(f"{self.name}: cannot read message {ref.key}: {e.strerror or e}") from None
        if len(data) > max_bytes:
            raise TooLarge(ref.key)
        return data

    def _ensure_folder(self) -> Path:
        target = self.root / f".{self.folder}"
        for d in ("cur", "new", "tmp"):
            (target / d).mkdir(parents=True, exist_ok=True)
        (target / "maildirfolder").touch(exist_ok=True)
        return target

    def mark_processed(self, ref: MessageRef) -> None:
        path = self._paths.get(ref.key)
        if path is None:
            return
        name = path.name
        flags = name.split(":2,", 1)[1] if ":2," in name else ""
        flags = "".join(sorted(set(flags) | {"S"}))
        try:
            os.rename(path, self._ensure_folder() / "cur" / f"{ref.key}:2,{flags}")
        except FileNotFoundError:
            return  # someone else moved it already: nothing to do
        except OSError as e:
            raise MailboxError(f"{self.name}: cannot move message {ref.key} to .{self.folder}: {e.strerror or e}") from None
        self._paths.pop(ref.key, None)


class MboxMailbox:
    """A local mbox file, read under its lock and never rewritten (an MTA may be appending to it):
    message keys are content digests and the database remembers which ones were processed, so
    ``mark_processed`` changes nothing here. Rotate the file with the MTA's own tools."""

    def __init__(self, spec: MailboxSpec, options: MailboxOptions):
        self.spec, self.name = spec, spec.name
        self._box: stdlib_mailbox.mbox | None = None
        self._keys: dict[str, str] = {}

    def __enter__(self) -> "MboxMailbox":
        path = Path(self.spec.path)
        if not path.is_file():
            raise MailboxError(f"{self.name}: no such mbox file")
        try:
            self._box = stdlib_mailbox.mbox(str(path), create=False)
        except OSError as e:
            raise MailboxError(f"{self.name}: cannot open: {e.strerror or e}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._box is not None:
            self._box.close()
        self._box, self._keys = None, {}

    def messages(self) -> list[MessageRef]:
        import hashlib

        assert self._box is not None
        refs: list[MessageRef] = []
        self._keys.clear()
        try:
            self._box.lock()
        except (stdlib_mailbox.ExternalClashError, OSError) as e:
            raise MailboxError(f"{self.name}: cannot lock the mbox file: {e}") from None
        try:
            for k in list(self._box.iterkeys()):
                with self._box.get_file(k) as f:
                    digest, size = hashlib.sha256(), 0
                    while chunk := f.read(1 << 16):
                        digest.update(chunk)
                        size += len(chunk)
                key = "sha256:" + digest.hexdigest()
                if key not in self._keys:  # the same bytes twice in one file are one message
                    self._keys[key] = k
                    refs.append(MessageRef(key=key, size=size))
        except OSError as e:
            raise MailboxError(f"{self.name}: cannot read: {e.strerror or e}") from None
        finally:
            self._box.unlock()
        return refs

    def fetch(self, ref: MessageRef, max_bytes: int) -> bytes:
        assert self._box is not None
        with self._box.get_file(self._keys[ref.key]) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise TooLarge(ref.key)
        return data

    def mark_processed(self, ref: MessageRef) -> None:
        return None  # the processed-message table is the mark: an mbox is never rewritten here
