"""A throwaway PostgreSQL cluster for tests that stop, restart or move the server: ``initdb`` into
a temporary directory (as the ``postgres`` user: the server refuses to run as root), started with
``pg_ctl`` on a free port and the address asked for, trust authentication, removed at the end.

The system server at 127.0.0.1:5432 is never touched. :func:`cluster_unavailable` says why one
cannot be made here (not root, no PostgreSQL binaries), for a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return Path(d)
    return None


def cluster_unavailable() -> str | None:
    """None when a throwaway cluster can be made, else the reason it cannot."""
    if os.geteuid() != 0:
        return "a throwaway PostgreSQL cluster is run as the postgres user: the test must run as root"
    if _bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres system user to run a throwaway cluster"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Cluster:
    """One throwaway cluster: ``start()``, ``stop(mode)``, ``restart()``, ``url(db)``, ``remove()``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, prefix: list[str] | None = None):
        self.prefix = prefix or []  # e.g. ["ip", "netns", "exec", "db"]: the server runs in that namespace
        self.bindir = _bindir()
        assert self.bindir is not None, cluster_unavailable()
        self.host = host
        self.port = port or free_port(host if host.startswith("127.") else "127.0.0.1")
        self.dir = Path(tempfile.mkdtemp(prefix="nl-pgcluster-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                           "--no-sync", "-E", "UTF8", "--locale", "C"])
        # initdb's trust covers the Unix socket and loopback; the test hosts connect from their subnet
        with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as f:
            f.write("host all all samenet trust\n")

    def _as_postgres(self, cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.prefix, "runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {r.stderr.strip()[-800:]}")
        return r

    def start(self) -> "Cluster":
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off "
                f"-c full_page_writes=off -c max_connections=60 -c log_connections=on")
        self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                           str(self.dir / "server.log"), "-w", "-t", "60", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended, the server shuts down cleanly; ``immediate``: as a crash."""
        self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def running(self) -> bool:
        r = subprocess.run([*self.prefix, "runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D", str(self.data),
                            "status"], capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def createdb(self, name: str = "test") -> str:
        """Create database ``name`` (through the Unix socket: works from any network namespace)."""
        import psycopg

        with psycopg.connect(self.socket_url("postgres").replace("+psycopg", ""), autocommit=True,
                             connect_timeout=10) as conn:
            conn.execute(f'create database "{name}"')
        return self.url(name)

    def url(self, db: str = "test") -> str:
        """The TCP URL (``host``:``port``), as a worker on another host would use it."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{db}"

    def socket_url(self, db: str = "test") -> str:
        """The Unix-socket URL: the file system is shared by every network namespace of this machine."""
        return f"postgresql+psycopg://postgres@/{db}?host={self.dir}&port={self.port}"

    def remove(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()
