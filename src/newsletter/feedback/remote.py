"""IMAP and POP3 mailboxes (standard library ``imaplib`` / ``poplib``) behind the interface of
``feedback.mailbox``: TLS from the first byte (imaps, pop3s) or STARTTLS/STLS (required, never
silently skipped), certificates verified against the system store (or ``SSL_CERT_FILE``).

IMAP moves processed messages by UID (in batches, after their events are committed) with MOVE
(RFC 6851), or COPY + STORE \\Deleted + UID EXPUNGE of those UIDs only (UIDPLUS); without either it
copies and flags, never expunging others' messages. POP3 cannot move: processed messages stay
unless ``bounce_pop3_delete`` is set, and then only those are deleted (DELE takes effect at a clean
QUIT).
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
import ssl
import time

from ..errors import MailboxError
from .mailbox import DEFAULT_PORTS, MailboxOptions, MailboxSpec, MessageRef, TooLarge, _check_folder_name

MOVE_BATCH = 100  # UIDs per MOVE command
LOGIN_ATTEMPTS = 3
LOGIN_RETRY_PAUSE = 1.0  # seconds
_NET_ERRORS = (OSError, EOFError, ssl.SSLError, imaplib.IMAP4.abort, poplib.error_proto)


def _text(e: BaseException) -> str:
    """An exception as one short line (imaplib errors carry bytes reprs)."""
    s = e.args[0] if e.args else str(e) or type(e).__name__
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    s = str(s).strip()
    return " ".join(s.split())[:200] or type(e).__name__


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class IMAPMailbox:
    """An IMAP folder; see the module docstring."""

    def __init__(self, spec: MailboxSpec, options: MailboxOptions):
        self.spec, self.options, self.name = spec, options, spec.name
        self.folder = _check_folder_name(options.processed_folder)
        self._imap: imaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._caps: set[str] = set()
        self._folder_ready = False
        self._pending: list[str] = []  # UIDs processed and committed, to move

    def _context(self) -> ssl.SSLContext:
        return self.options.ssl_context or ssl.create_default_context()

    def __enter__(self) -> "IMAPMailbox":
        s, t = self.spec, self.options.timeout
        port = s.port or DEFAULT_PORTS[s.scheme]
        imap: imaplib.IMAP4
        try:
            if s.tls == "tls":
                imap = imaplib.IMAP4_SSL(s.host, port, ssl_context=self._context(), timeout=t)
            else:
                imap = imaplib.IMAP4(s.host, port, timeout=t)
                if s.tls == "starttls":
                    if "STARTTLS" not in imap.capabilities:
                        imap.shutdown()
                        raise MailboxError(f"{self.name}: the server does not offer STARTTLS")
                    imap.starttls(ssl_context=self._context())
        except ssl.SSLCertVerificationError as e:
            raise MailboxError(f"{self.name}: TLS certificate not trusted: {e.verify_message}") from None
        except (socket.timeout, TimeoutError):
            raise MailboxError(f"{self.name}: no answer within {t:g} s") from None
        except (imaplib.IMAP4.error, *_NET_ERRORS) as e:
            raise MailboxError(f"{self.name}: cannot connect: {_text(e)}") from None
        self._imap = imap
        try:
            for attempt in range(LOGIN_ATTEMPTS):
                try:
                    imap.login(s.user, s.password or "")
                    break
                except imaplib.IMAP4.abort as e:
                    raise MailboxError(f"{self.name}: connection lost at login: {_text(e)}") from None
                except imaplib.IMAP4.error as e:
                    # [UNAVAILABLE] (RFC 5530) is the server's own "try again": its auth service was busy
                    if "[UNAVAILABLE]" not in _text(e) or attempt == LOGIN_ATTEMPTS - 1:
                        raise MailboxError(f"{self.name}: login refused for {s.user!r}: {_text(e)}") from None
                    time.sleep(LOGIN_RETRY_PAUSE)
            typ, data = self._call("capability")  # after login: MOVE, UIDPLUS... are often only listed now
            words = (data[0] or b"").decode("ascii", "replace").split() if typ == "OK" and data else []
            self._caps = {c.upper() for c in [*imap.capabilities, *words]}
            typ, data = self._call("select", _quote(s.folder))
            if typ != "OK":
                raise MailboxError(f"{self.name}: cannot open folder {s.folder!r}: {_text(Exception(data[0] if data else typ))}")
            uv = imap.untagged_responses.get("UIDVALIDITY") or [b""]
            last = uv[-1]
            self._uidvalidity = last.decode("ascii", "replace") if isinstance(last, bytes) else ""
        except BaseException:
            self._close()
            raise
        return self

    def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()
        except Exception:  # the connection may be gone already: closing is best effort
            try:
                imap.shutdown()
            except Exception:
                pass

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None and self._imap is not None:
                self.flush()
        finally:
            self._close()

    def _call(self, what: str, *args):
        """One IMAP command; a dropped connection or a timeout becomes a MailboxError."""
        assert self._imap is not None
        try:
            if what == "uid":
                return self._imap.uid(*args)
            return getattr(self._imap, what)(*args)
        except (socket.timeout, TimeoutError):
            raise MailboxError(f"{self.name}: no answer within {self.options.timeout:g} s") from None
        except imaplib.IMAP4.abort as e:
            raise MailboxError(f"{self.name}: connection lost: {_text(e)}") from None
        except imaplib.IMAP4.error as e:
            raise MailboxError(f"{self.name}: {what} {args[0] if args else ''} failed: {_text(e)}") from None
        except _NET_ERRORS as e:
            raise MailboxError(f"{self.name}: connection lost: {_text(e)}") from None

    _FETCH_ITEM = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)")

    def messages(self) -> list[MessageRef]:
        typ, data = self._call("uid", "FETCH", "1:*", "(UID RFC822.SIZE)")
        if typ != "OK":
            raise MailboxError(f"{self.name}: cannot list messages: {_text(Exception(data[0] if data else typ))}")
        refs = []
        for line in data:
            if isinstance(line, tuple):
                line = line[0]
            if not line:
                continue
            uid = size = None
            for m in self._FETCH_ITEM.finditer(line):
                uid = int(m.group(1)) if m.group(1) else uid
                size = int(m.group(2)) if m.group(2) else size
            if uid is not None:
                refs.append(MessageRef(key=f"{self._uidvalidity}:{uid}", size=size))
        return sorted(refs, key=lambda r: int(r.key.rsplit(":", 1)[1]))

    @staticmethod
    def _uid(ref: MessageRef) -> str:
        return ref.key.rsplit(":", 1)[1]

    def fetch(self, ref: MessageRef, max_bytes: int) -> bytes:
        if ref.size is not None and ref.size > max_bytes:
            raise TooLarge(ref.key)
        typ, data = self._call("uid", "FETCH", self._uid(ref), "(BODY.PEEK[])")
        if typ != "OK":
            raise MailboxError(f"{self.name}: cannot fetch message {ref.key}: {_text(Exception(data[0] if data else typ))}")
        parts = [d[1] for d in data if isinstance(d, tuple) and len(d) > 1]
        if not parts:
            raise MailboxError(f"{self.name}: message {ref.key} is gone (expunged by another client?)")
        if len(parts[0]) > max_bytes:
            raise TooLarge(ref.key)
        return parts[0]

    def _ensure_folder(self) -> None:
        if self._folder_ready:
            return
        typ, data = self._call("list", '""', _quote(self.folder))
        if typ != "OK" or not [d for d in data if d]:
            typ, data = self._call("create", _quote(self.folder))
            if typ != "OK":
                raise MailboxError(f"{self.name}: cannot create folder {self.folder!r}: {_text(Exception(data[0] if data else typ))}")
        self._folder_ready = True

    def mark_processed(self, ref: MessageRef) -> None:
        """Queue the move; moves go out ``MOVE_BATCH`` UIDs per command (one round trip and one index
        update on the server instead of one per message) and at the end of a clean session. A
        message whose move was lost with the connection is moved by the next run, never re-counted."""
        self._pending.append(self._uid(ref))
        if len(self._pending) >= MOVE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Move every queued message to the processed folder now."""
        if not self._pending:
            return
        self._ensure_folder()
        uids, folder = ",".join(self._pending), _quote(self.folder)
        if "MOVE" in self._caps:
            typ, data = self._call("uid", "MOVE", uids, folder)
        else:
            typ, data = self._call("uid", "COPY", uids, folder)
            if typ == "OK":
                self._call("uid", "STORE", uids, "+FLAGS.SILENT", r"(\Seen \Deleted)")
                if "UIDPLUS" in self._caps:  # expunge these UIDs only, never someone else's \Deleted mail
                    self._call("uid", "EXPUNGE", uids)
        if typ != "OK":
            raise MailboxError(f"{self.name}: cannot move {len(self._pending)} message(s) (UID {uids[:60]}) to "
                               f"{self.folder!r}: {_text(Exception(data[0] if data else typ))}")
        self._pending.clear()


class POP3Mailbox:
    """A POP3 maildrop; see the module docstring."""

    def __init__(self, spec: MailboxSpec, options: MailboxOptions):
        self.spec, self.options, self.name = spec, options, spec.name
        self._pop: poplib.POP3 | None = None
        self._delete: list[int] = []

    def __enter__(self) -> "POP3Mailbox":
        s, t = self.spec, self.options.timeout
        ctx = self.options.ssl_context or ssl.create_default_context()
        port = s.port or DEFAULT_PORTS[s.scheme]
        pop: poplib.POP3
        try:
            if s.tls == "tls":
                pop = poplib.POP3_SSL(s.host, port, timeout=t, context=ctx)
            else:
                pop = poplib.POP3(s.host, port, timeout=t)
                if s.tls == "starttls":
                    try:
                        pop.stls(context=ctx)
                    except poplib.error_proto as e:
                        pop.close()
                        raise MailboxError(f"{self.name}: the server refused STLS: {_text(e)}") from None
        except MailboxError:
            raise
        except ssl.SSLCertVerificationError as e:
            raise MailboxError(f"{self.name}: TLS certificate not trusted: {e.verify_message}") from None
        except (socket.timeout, TimeoutError):
            raise MailboxError(f"{self.name}: no answer within {t:g} s") from None
        except _NET_ERRORS as e:
            raise MailboxError(f"{self.name}: cannot connect: {_text(e)}") from None
        self._pop = pop
        for attempt in range(LOGIN_ATTEMPTS):
            try:
                pop.user(s.user)
                pop.pass_(s.password or "")
                break
            except poplib.error_proto as e:
                # [SYS/TEMP] (RFC 3206) is the server's own "try again": its auth service was busy
                if "[SYS/TEMP]" not in _text(e) or attempt == LOGIN_ATTEMPTS - 1:
                    self._abandon()
                    raise MailboxError(f"{self.name}: login refused for {s.user!r}: {_text(e)}") from None
                time.sleep(LOGIN_RETRY_PAUSE)
            except _NET_ERRORS as e:
                self._abandon()
                raise MailboxError(f"{self.name}: connection lost at login: {_text(e)}") from None
        return self

    def _abandon(self) -> None:
        """Close without QUIT: nothing marked for deletion is deleted (RFC 1939 UPDATE state)."""
        pop, self._pop = self._pop, None
        if pop is not None:
            try:
                pop.close()
            except Exception:
                pass

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None or self._pop is None:
            self._abandon()
            return
        try:
            self._pop.quit()  # DELE of processed messages takes effect here
        except _NET_ERRORS as e:
            self._abandon()
            raise MailboxError(f"{self.name}: connection lost at QUIT (processed messages not deleted): {_text(e)}") from None
        self._pop = None

    def _call(self, what: str, *args):
        assert self._pop is not None
        try:
            return getattr(self._pop, what)(*args)
        except (socket.timeout, TimeoutError):
            raise MailboxError(f"{self.name}: no answer within {self.options.timeout:g} s") from None
        except _NET_ERRORS as e:
            raise MailboxError(f"{self.name}: connection lost: {_text(e)}") from None

    def messages(self) -> list[MessageRef]:
        _, uidls, _ = self._call("uidl")
        _, sizes, _ = self._call("list")
        size_of = {}
        for line in sizes:
            n, _, size = line.partition(b" ")
            size_of[int(n)] = int(size.split()[0])
        refs = []
        for line in uidls:
            n, _, uid = line.partition(b" ")
            refs.append(MessageRef(key=uid.strip().decode("ascii", "replace"), size=size_of.get(int(n)), number=int(n)))
        return refs

    def fetch(self, ref: MessageRef, max_bytes: int) -> bytes:
        if ref.size is not None and ref.size > max_bytes:
            raise TooLarge(ref.key)
        _, lines, _ = self._call("retr", ref.number)
        data = b"\r\n".join(lines) + b"\r\n"
        if len(data) > max_bytes:
            raise TooLarge(ref.key)
        return data

    def mark_processed(self, ref: MessageRef) -> None:
        if self.options.pop3_delete and ref.number is not None:
            self._call("dele", ref.number)
