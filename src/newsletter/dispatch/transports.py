"""Where built messages go: a small Transport protocol and its non-SMTP implementations.

A transport opens one :class:`Session` per sending thread; ``session.send(built)`` returns an
:class:`Outcome` (never raises for a message-level problem). The SMTP pool lives in ``smtp.py``;
here are the outbox folder (one ``.eml`` per recipient, written atomically, the embedded
default so nothing reaches real people) and an in-memory transport for unit tests where no
server is involved.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import DispatchError
from .personalize import Built


@dataclass
class Outcome:
    """What happened to one message.

    ``state`` is ``sent``, ``deferred`` (try again later) or ``failed`` (permanent).
    ``suppress`` asks for the address to be added to the suppression list (unknown user).
    ``server_trouble`` marks failures of the server or connection rather than of the address
    (they count towards auto-pause and taking a server out of rotation). ``fatal`` (one line)
    means no message can go through this server as configured (e.g. it requires a login we do
    not give): the send stops at once and the row goes back to ``pending``."""

    state: str
    reply: str = ""
    suppress: bool = False
    server_trouble: bool = False
    fatal: str = ""


class Session(Protocol):
    def connect(self) -> None:
        """Make sure the session can send (open, TLS, login). Raises ConnectFailed or DispatchError."""

    def send(self, built: Built) -> Outcome: ...

    def close(self) -> None: ...


class Transport(Protocol):
    name: str
    max_connections: int

    def session(self) -> Session: ...

    def describe(self) -> str: ...


class ConnectFailed(Exception):
    """A connection or greeting failed (temporary: counts towards auto-pause); str() is one line."""


# --- outbox ------------------------------------------------------------------------------------
class OutboxTransport:
    """Write each message to ``DIR/<campaign>-<subscriber>.eml`` atomically (write a temp file, fsync, rename).

    The file name comes from the stable Message-ID, so a resend after a crash replaces the same
    file instead of adding a second one."""

    name = "outbox"
    max_connections = 64

    def __init__(self, directory: str | os.PathLike, *, fsync: bool = True):
        self.directory = Path(directory)
        self.fsync = fsync
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DispatchError(f"outbox {self.directory}: cannot create the folder: {e.strerror or e}") from None
        if not os.access(self.directory, os.W_OK):
            raise DispatchError(f"outbox {self.directory}: folder is not writable")

    def describe(self) -> str:
        return f"outbox folder {self.directory}"

    def session(self) -> "_OutboxSession":
        return _OutboxSession(self)

    @staticmethod
    def filename(built: Built) -> str:
        mid = built.message_id.strip("<>").split("@", 1)[0]
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in mid)
        return f"{safe}.eml"


class _OutboxSession:
    def __init__(self, t: OutboxTransport):
        self.t = t

    def connect(self) -> None:
        return None

    def send(self, built: Built) -> Outcome:
        final = self.t.directory / self.t.filename(built)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.t.directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(f"X-Envelope-From: <{built.mail_from}>\r\nX-Envelope-To: <{built.rcpt}>\r\n".encode())
                    f.write(built.data)
                    if self.t.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as e:
            return Outcome("deferred", f"outbox write failed: {e.strerror or e}", server_trouble=True)
        return Outcome("sent", f"written to {final.name}")

    def close(self) -> None:
        return None


# --- in memory ---------------------------------------------------------------------------------
@dataclass
class MemoryTransport:
    """Keeps messages in a list (unit tests of the sending loop that need no server)."""

    name: str = "memory"
    max_connections: int = 8
    messages: list[Built] = field(default_factory=list)
    fail: dict[str, Outcome] = field(default_factory=dict)  # rcpt -> outcome to return instead

    def __post_init__(self):
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def session(self):
        return _MemorySession(self)


class _MemorySession:
    def __init__(self, t: MemoryTransport):
        self.t = t

    def connect(self) -> None:
        return None

    def send(self, built: Built) -> Outcome:
        if built.rcpt in self.t.fail:
            return self.t.fail[built.rcpt]
        with self.t._lock:
            self.t.messages.append(built)
        return Outcome("sent", "250 kept in memory")

    def close(self) -> None:
        return None
