"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a free port, configurable misbehaviour.

Use it as a context manager or through the pytest fixtures at the bottom of this file
(``smtp_server`` for a plain accepting server, ``smtp_server_factory(**behaviour)`` for more)::

    with SMTPTestServer(tempfail_first=2, reject={"ghost@example.com"}) as srv:
        send(..., host=srv.host, port=srv.port)
        assert srv.recipient_counts()["ana@example.com"] == 1

Behaviours (all may be changed on the running server through ``srv.behaviour``):

- ``tempfail_first=N`` with ``tempfail_per="recipient"`` (default): the first N RCPT TO
  attempts for each address get ``451 4.7.1``; with ``tempfail_per="message"`` the first N
  DATA attempts for each Message-ID (or, lacking one, each recipient set) get ``451 4.3.0``.
- ``tempfail_until=T``: every RCPT before ``time.time()`` reaches T gets ``451 4.7.1`` (an
  outage of the "try later" kind, measured in wall time rather than attempts).
- ``reject``: addresses (set, case-insensitive) or a predicate refused at RCPT with
  ``550 5.1.1`` (unknown user).
- ``reject_code`` / ``reject_message`` to use another permanent reply, e.g. ``554 5.7.1``.
- ``drop_data=N``: the first N DATA transfers are cut: the server reads the message and then
  closes the connection without answering (what a client sees when a server dies mid-DATA).
  ``drop_data_for``: only for these addresses (every time, not counted).
- ``delay``: seconds to wait before answering each DATA; ``rcpt_delay`` before each RCPT.
- ``hold``: a ``threading.Event``; each DATA waits (at most 60 s) until it is set, so a test can
  check what happens while a message is still on its way, without timing anything.
- ``auth=("user", "password")``: require AUTH (PLAIN/LOGIN) before MAIL; wrong logins get 535.
- ``tls="starttls"`` or ``"implicit"``: offer STARTTLS / speak TLS from the first byte with a
  throw-away self-signed certificate (needs ``openssl`` on PATH); ``srv.client_context()``
  returns an SSL context that trusts it.

Every accepted message is recorded as a :class:`Received` (envelope sender, recipients,
raw bytes, parsed headers, ``time.time()`` of receipt, and with ``clock=`` the test's injected clock at receipt). ``srv.stats`` counts connections,
RCPT and DATA attempts and the peak number of simultaneous connections.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.parser
import email.policy
import logging
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Callable, Iterable, Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["SMTPTestServer", "RefusingServer", "Received", "Behaviour", "free_port", "max_in_window", "smtp_server",
           "smtp_server_factory"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One message the server accepted (after the final dot, with a 250 reply)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    headers: Message
    received_at: float  # time.time()
    peer: tuple | None = None
    clock_at: object = None  # the test's injected clock at receipt (``SMTPTestServer(clock=...)``), else None

    @property
    def message_id(self) -> str | None:
        return self.headers.get("Message-ID")

    def message(self) -> Message:
        """The whole message parsed with the modern email policy."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class Behaviour:
    """What the server does; tests may change fields while it runs."""

    tempfail_first: int = 0
    tempfail_per: str = "recipient"  # recipient | message
    tempfail_until: float = 0.0  # time.time() before which every RCPT is answered 451
    reject: set[str] | Callable[[str], bool] = field(default_factory=set)
    reject_code: str = "550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
    drop_data: int = 0
    drop_data_for: set[str] = field(default_factory=set)
    delay: float = 0.0
    rcpt_delay: float = 0.0
    hold: threading.Event | None = None
    auth: tuple[str, str] | None = None

    def rejects(self, addr: str) -> bool:
        if callable(self.reject):
            return bool(self.reject(addr))
        return addr.lower() in {a.lower() for a in self.reject}


@dataclass
class Stats:
    connections: int = 0
    open_connections: int = 0
    peak_connections: int = 0
    mail_attempts: int = 0
    rcpt_attempts: int = 0
    data_attempts: int = 0
    dropped: int = 0
    tempfailed: int = 0
    rejected: int = 0
    auth_failures: int = 0
    rsets: int = 0


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP protocol that tells the test server about connections and RSETs."""

    def __init__(self, *args, owner: "SMTPTestServer", **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, transport):
        with self._owner._lock:
            st = self._owner.stats
            st.connections += 1
            st.open_connections += 1
            st.peak_connections = max(st.peak_connections, st.open_connections)
        super().connection_made(transport)

    def connection_lost(self, exc):
        with self._owner._lock:
            self._owner.stats.open_connections -= 1
        super().connection_lost(exc)

    async def smtp_RSET(self, arg):
        with self._owner._lock:
            self._owner.stats.rsets += 1
        await super().smtp_RSET(arg)


class _Controller(Controller):
    def __init__(self, owner: "SMTPTestServer", **kwargs):
        self._owner = owner
        super().__init__(**kwargs)

    def factory(self):
        return _CountingSMTP(self.handler, owner=self._owner, **self.SMTP_kwargs)


class _Handler:
    def __init__(self, owner: "SMTPTestServer"):
        self.o = owner

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.o._lock:
            self.o.stats.mail_attempts += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        b = self.o.behaviour
        if b.rcpt_delay:
            await asyncio.sleep(b.rcpt_delay)
        key = address.lower()
        with self.o._lock:
            self.o.stats.rcpt_attempts += 1
            self.o.rcpt_attempts[key] += 1
            n = self.o.rcpt_attempts[key]
        if b.rejects(address):
            with self.o._lock:
                self.o.stats.rejected += 1
            return b.reject_code.format(addr=address)
        if (b.tempfail_per == "recipient" and n <= b.tempfail_first) or time.time() < b.tempfail_until:
            with self.o._lock:
                self.o.stats.tempfailed += 1
            return "451 4.7.1 <{}>: try again later (attempt {})".format(address, n)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        b = self.o.behaviour
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.hold is not None:
            for _ in range(600):  # bounded: 60 s
                if b.hold.is_set():
                    break
                await asyncio.sleep(0.1)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)
        with self.o._lock:
            self.o.stats.data_attempts += 1
            self.o.data_attempts_total += 1
            drop = self.o.data_attempts_total <= b.drop_data or any(
                r.lower() in {a.lower() for a in b.drop_data_for} for r in envelope.rcpt_tos
            )
            key = headers.get("Message-ID") or ",".join(sorted(envelope.rcpt_tos))
            self.o.data_attempts[key] += 1
            n = self.o.data_attempts[key]
        if drop:
            with self.o._lock:
                self.o.stats.dropped += 1
            server.transport.abort()  # no reply: the client cannot know whether we kept it
            return "421 4.3.0 connection dropped"  # never delivered: the transport is gone
        if b.tempfail_per == "message" and n <= b.tempfail_first:
            with self.o._lock:
                self.o.stats.tempfailed += 1
            return f"451 4.3.0 try again later (attempt {n})"
        rec = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            headers=headers,
            received_at=time.time(),
            peer=session.peer,
            clock_at=self.o.clock() if self.o.clock is not None else None,
        )
        with self.o._lock:
            self.o.messages.append(rec)
            self.o._cond.notify_all()
        return "250 2.0.0 OK queued"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class SMTPTestServer:
    """An aiosmtpd server on 127.0.0.1 in a background thread; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, *, tls: str | None = None, cert_dir: str | Path | None = None,
                 clock: Callable[[], object] | None = None, **behaviour):
        self.clock = clock  # read at each accepted message into Received.clock_at (an injected clock)
        self.behaviour = Behaviour(**behaviour)
        self.tls = tls
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._tmp = None
        self.port: int | None = None
        self.messages: list[Received] = []
        self.stats = Stats()
        self.rcpt_attempts: collections.Counter[str] = collections.Counter()
        self.data_attempts: collections.Counter[str] = collections.Counter()
        self.data_attempts_total = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._controller: _Controller | None = None
        self.cert: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def _auth(self, server, session, envelope, mechanism, auth_data):
        expected = self.behaviour.auth
        ok = (
            expected is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == expected[0]
            and auth_data.password.decode() == expected[1]
        )
        if not ok:
            with self._lock:
                self.stats.auth_failures += 1
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    def start(self) -> "SMTPTestServer":
        kwargs: dict = {}
        if self.tls:
            if self._cert_dir is None:
                import tempfile

                self._tmp = tempfile.TemporaryDirectory(prefix="smtp-test-tls-")
                self._cert_dir = Path(self._tmp.name)
            self.cert, key = _self_signed(self._cert_dir)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, key)
            if self.tls == "starttls":
                kwargs.update(tls_context=ctx, require_starttls=False)
            elif self.tls == "implicit":
                kwargs.update(ssl_context=ctx)
            else:
                raise ValueError(f"tls must be 'starttls' or 'implicit', not {self.tls!r}")
        if self.behaviour.auth is not None:
            kwargs.update(authenticator=self._auth, auth_required=True, auth_require_tls=False)
            import warnings

            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            logging.getLogger("mail.log").setLevel(logging.ERROR)
        last: Exception | None = None
        for _ in range(20):  # a free port can be taken between probe and bind: retry a few times
            self.port = free_port()
            ctrl = _Controller(self, handler=_Handler(self), hostname=self.host, port=self.port,
                               ready_timeout=10, decode_data=False, **kwargs)
            try:
                ctrl.start()
            except Exception as e:  # pragma: no cover - rare port race
                last = e
                continue
            self._controller = ctrl
            # The controller opened one probe connection on start: wait for it to close, then
            # start counting from zero so tests see only their own connections.
            deadline = time.monotonic() + 2
            while self.stats.open_connections > 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            with self._lock:
                self.stats = Stats()
            return self
        raise RuntimeError(f"could not start the test SMTP server: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "SMTPTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests look at --------------------------------------------------------------
    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:PORT`` (``smtps://`` for implicit TLS), with the AUTH user if any."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        user = f"{self.behaviour.auth[0]}@" if self.behaviour.auth else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's self-signed certificate."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def recipients(self) -> list[str]:
        """Every accepted envelope recipient, once per copy received (lower-cased)."""
        with self._lock:
            return [r.lower() for m in self.messages for r in m.rcpt_tos]

    def recipient_counts(self) -> collections.Counter[str]:
        return collections.Counter(self.recipients())

    def timestamps(self) -> list[float]:
        with self._lock:
            return [m.received_at for m in self.messages]

    def by_recipient(self, addr: str) -> list[Received]:
        addr = addr.lower()
        with self._lock:
            return [m for m in self.messages if addr in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` messages were accepted (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def clear(self) -> None:
        """Forget received messages and attempt counters (behaviour stays)."""
        with self._lock:
            self.messages.clear()
            self.rcpt_attempts.clear()
            self.data_attempts.clear()
            self.data_attempts_total = 0
            self.stats = Stats()


class RefusingServer:
    """A mail server that is up but turns every connection away: it greets with ``421 4.3.2``
    and hangs up (what an overloaded or shut-down relay does). ``connections`` holds the
    ``time.time()`` of each connection, so a test can see when a client stopped trying."""

    host = "127.0.0.1"

    def __init__(self, greeting: bytes = b"421 4.3.2 Service not available, closing transmission channel\r\n"):
        self.greeting = greeting
        self.connections: list[float] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> "RefusingServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="refusing-smtp", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append(time.time())
            try:
                conn.sendall(self.greeting)
            except OSError:
                pass
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "RefusingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def max_in_window(stamps: Iterable[float], window: float) -> int:
    """The largest number of ``stamps`` in any closed interval of ``window`` seconds."""
    ts = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _iter_server(**kwargs) -> Iterator[SMTPTestServer]:
    with SMTPTestServer(**kwargs) as srv:
        yield srv


try:  # fixtures, when imported under pytest (tests/conftest.py re-exports them)
    import pytest

    @pytest.fixture
    def smtp_server() -> Iterable[SMTPTestServer]:
        """A running SMTP server on 127.0.0.1 that accepts everything; change ``.behaviour`` to misbehave."""
        yield from _iter_server()

    @pytest.fixture
    def smtp_server_factory(tmp_path):
        """``smtp_server_factory(**behaviour)`` starts another server; all are stopped after the test."""
        started: list[SMTPTestServer] = []

        def make(**kwargs) -> SMTPTestServer:
            if kwargs.get("tls"):
                d = tmp_path / f"tls{len(started)}"
                d.mkdir()
                kwargs.setdefault("cert_dir", d)
            srv = SMTPTestServer(**kwargs).start()
            started.append(srv)
            return srv

        yield make
        for srv in started:
            srv.stop()
except ImportError:  # pragma: no cover - used outside pytest
    pass
