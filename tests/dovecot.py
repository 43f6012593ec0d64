"""A real Dovecot (Debian's dovecot-imapd / dovecot-pop3d) for tests: ``/usr/sbin/dovecot -F`` with a
throwaway config, on free loopback ports, one passwd-file user, a Maildir of its own,
a self-signed certificate (openssl) for IMAPS, IMAP STARTTLS, POP3S and POP3 STLS, and its log in
a file. Stopped and removed at teardown. Its directory is a private temporary directory of its own
(linked from ``tmp_path``), not under pytest's, whose permissions other pytest sessions reset.

Use the ``dovecot`` fixture (function scope)::

    def test_x(dovecot):
        dovecot.deliver(raw_bytes)                  # a file in the Maildir's new/
        dovecot.append(raw_bytes)                   # or through IMAP APPEND
        url = dovecot.url("imaps")                  # imaps://bounces@127.0.0.1:PORT/INBOX
        ... NEWSLETTER_BOUNCE_MAILBOX_PASSWORD=dovecot.password, SSL_CERT_FILE=dovecot.cert

Under CI=true a missing dovecot is a failure; elsewhere the test skips with the reason. A small
``DroppingProxy`` sits in front of a port and cuts the connection after N bytes from the server,
which is what a client sees when the server dies in the middle of a FETCH.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def missing_reason() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not Path(DOVECOT).exists():
        return f"{DOVECOT} not found (apt-get install dovecot-imapd dovecot-pop3d)"
    if not Path("/usr/lib/dovecot/imap").exists() or not Path("/usr/lib/dovecot/pop3").exists():
        return "dovecot-imapd or dovecot-pop3d is not installed"
    if shutil.which("openssl") is None:
        return "openssl not found (needed for the test certificate)"
    return None


class Dovecot:
    """A running Dovecot; see the module docstring."""

    user = "bounces"
    password = "s3cret-Pass"

    def __init__(self, directory: Path, extra_config: str = ""):
        self.extra_config = extra_config
        self.dir = directory
        self.maildir = directory / "Maildir"
        self.log = directory / "dovecot.log"
        self.ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
        self.proc: subprocess.Popen | None = None
        self.cert: Path | None = None

    def _config(self) -> str:
        uid, gid = os.getuid(), os.getgid()
        root = os.getuid() == 0
        # As root, mail processes run as a normal user (Dovecot refuses UID 0 for mail access).
        mail_uid = 65534 if root else uid
        mail_gid = 65534 if root else gid
        users = "" if root else f"default_internal_user = {os.environ.get('USER', 'nobody')}\ndefault_login_user = {os.environ.get('USER', 'nobody')}\n"
        p = self.ports
        return f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
instance_name = nltest-{self.dir.name}
log_path = {self.log}
info_log_path = {self.log}
debug_log_path = {self.log}
{users}protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.dir}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{self.maildir}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={self.dir}/home
}}
# Long-lived login processes, connected to auth before any client comes: on a loaded machine a
# login process spawned per connection may not have met auth in time ("Temporary authentication
# failure"). Failed logins are answered at once (no 2 s delay): tests only.
auth_failure_delay = 0
service imap-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener imap {{
    address = 127.0.0.1
    port = {p['imap']}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p['imaps']}
    ssl = yes
  }}
}}
service pop3-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p['pop3']}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {p['pop3s']}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
{self.extra_config}
"""

    def start(self) -> "Dovecot":
        self.cert, _ = _self_signed(self.dir)
        (self.dir / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        for d in (self.maildir / "cur", self.maildir / "new", self.maildir / "tmp", self.dir / "home",
                  self.dir / "run", self.dir / "state"):
            d.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            # Temporary directories are private to root: let the mail and auth users reach their files.
            for p in [self.dir, *self.dir.parents]:
                if p == Path("/") or p == Path(tempfile.gettempdir()):
                    break
                os.chmod(p, os.stat(p).st_mode | 0o011)
            for p in (self.maildir, self.maildir / "cur", self.maildir / "new", self.maildir / "tmp", self.dir / "home"):
                os.chown(p, 65534, 65534)
        conf = self.dir / "dovecot.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "dovecot.stderr", "wb"), start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}: "
                                   f"{(self.dir / 'dovecot.stderr').read_text(errors='replace')[-2000:]}"
                                   f"{self.log.read_text(errors='replace')[-2000:] if self.log.exists() else ''}")
            if all(self._listening(port) for port in self.ports.values()) and self._can_log_in():
                return self
            time.sleep(0.05)
        self.stop()
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"
        raise RuntimeError(f"dovecot did not answer a login within 60 s; its log ends:\n{log}")

    def _can_log_in(self) -> bool:
        """Ready means a login works: the auth process answers (right after start, a login may get
        "[UNAVAILABLE] Temporary authentication failure" on a loaded machine)."""
        try:
            c = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=10)
            try:
                c.login(self.user, self.password)
            finally:
                c.shutdown()
            return True
        except (imaplib.IMAP4.error, OSError):
            return False

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    # --- what tests use ---------------------------------------------------------------------

    def url(self, scheme: str = "imaps", folder: str = "INBOX", tls: str | None = None) -> str:
        port = self.ports[{"imaps": "imaps", "imap": "imap", "pop3s": "pop3s", "pop3": "pop3"}[scheme]]
        path = f"/{folder}" if scheme.startswith("imap") else ""
        return f"{scheme}://{self.user}@127.0.0.1:{port}{path}" + (f"?tls={tls}" if tls else "")

    def env(self) -> dict[str, str]:
        """Environment for a ``newsletter`` process that reads this mailbox."""
        return {"NEWSLETTER_BOUNCE_MAILBOX_PASSWORD": self.password, "SSL_CERT_FILE": str(self.cert)}

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def deliver(self, raw: bytes, name: str | None = None) -> Path:
        """Put a message in the Maildir's new/ the way an MDA does (tmp/ then rename)."""
        name = name or f"{time.time_ns()}.P{os.getpid()}Q{threading.get_ident()}.nltest"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        target = self.maildir / "new" / name
        os.rename(tmp, target)
        if os.getuid() == 0:
            os.chown(target, 65534, 65534)
        return target

    def imap(self) -> imaplib.IMAP4_SSL:
        for attempt in range(5):
            c = imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=self.client_context(), timeout=30)
            try:
                c.login(self.user, self.password)
                return c
            except imaplib.IMAP4.error as e:  # "[UNAVAILABLE] Temporary authentication failure": busy auth process
                c.shutdown()
                if "UNAVAILABLE" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        c = self.imap()
        try:
            for raw in messages:
                typ, data = c.append(folder, None, None, raw)
                assert typ == "OK", data
        finally:
            c.logout()

    def folder_count(self, folder: str = "INBOX") -> int:
        """How many messages a folder holds (0 when it does not exist), as Dovecot says."""
        c = self.imap()
        try:
            typ, data = c.select(f'"{folder}"', readonly=True)
            return int(data[0]) if typ == "OK" else 0
        finally:
            c.logout()


class DroppingProxy:
    """A TCP proxy to 127.0.0.1:``target`` that closes both sides once ``limit`` bytes have come
    from the server (``limit=None``: never). Plain TCP, so put it in front of a plain/STARTTLS port."""

    def __init__(self, target: int, limit: int | None):
        self.target, self.limit = target, limit
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)  # accept() wakes up to see the stop flag
        self.port = self.sock.getsockname()[1]
        self.dropped = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "DroppingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target), timeout=30)
        sent = [0]

        def up():
            try:
                while data := client.recv(65536):
                    server.sendall(data)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        try:
            while data := server.recv(65536):
                if self.limit is not None and sent[0] + len(data) >= self.limit:
                    client.sendall(data[: self.limit - sent[0]])
                    self.dropped.set()
                    break
                client.sendall(data)
                sent[0] += len(data)
        except OSError:
            pass
        finally:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.fixture
def dovecot_factory(tmp_path):
    """``make(extra_config="")`` starts a Dovecot (several may run); all stop at teardown."""
    reason = missing_reason()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    servers: list[Dovecot] = []

    def make(extra_config: str = "") -> Dovecot:
        # Not under tmp_path: Dovecot's auth and mail processes run as other users, and every pytest
        # session on the machine resets /tmp/pytest-of-<user> to 0700, which would lock them out of
        # their passwd file and Maildir in the middle of a test. tmp_path/dovecotN links to it.
        d = Path(tempfile.mkdtemp(prefix="nltest-dovecot-"))
        os.chmod(d, 0o711)
        (tmp_path / f"dovecot{len(servers) or ''}").symlink_to(d)
        servers.append(Dovecot(d, extra_config))
        return servers[-1].start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
            if server.log.exists():  # shown by pytest only when the test failed
                lines = [l for l in server.log.read_text(errors="replace").splitlines()
                         if "Info: Login:" not in l and "Logged out" not in l]
                print(f"--- {server.log} (Login/Logout lines left out) ---", *lines[-40:], sep="\n")
            shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_factory):
    """A running Dovecot with an empty Maildir (see the module docstring)."""
    return dovecot_factory()
