"""Sender liveness: which senders of a campaign are alive, so rows held by a dead one come back.

On PostgreSQL each sender holds a session advisory lock named after its worker id for as long as
it runs; the lock dies with its connection, so "can I take that lock?" tells whether the sender
holding some rows is gone. On SQLite one sender holds the campaign (``campaigns.lock_owner`` with
a heartbeat); a second one is told who has it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ..errors import DispatchError, NewsletterError
from ..store import queries as q
from ..store.db import transaction
from ..store.models import utcnow

log = logging.getLogger("newsletter.dispatch.sender")

LOCK_HEARTBEAT_S = 5.0
LOCK_STALE_S = 60.0


def new_worker_id() -> str:
    """A sender's id: host, pid and a random tag (the pid lets a sender on the same host see a dead owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _advisory_key(worker_id: str) -> int:
    """The PostgreSQL advisory lock key of a worker id."""
    return int.from_bytes(hashlib.sha256(b"newsletter-worker:" + worker_id.encode()).digest()[:8], "big", signed=True)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Liveness:
    """Who is alive: PostgreSQL session advisory locks, or the SQLite campaign lock."""

    def __init__(self, engine: Engine, campaign_id: int, worker_id: str):
        self.engine = engine
        self.cid = campaign_id
        self.me = worker_id
        self.pg = engine.dialect.name == "postgresql"
        self.conn: Connection | None = None
        self.last_beat = 0.0

    def start(self) -> None:
        """Take the advisory lock (PostgreSQL) or the campaign lock (SQLite, DispatchError when a
        live process holds it; a dead process of this host is taken over)."""
        if self.pg:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.conn.execute(text("select pg_advisory_lock(:k)"), {"k": _advisory_key(self.me)})
            return
        now = utcnow()
        with transaction(self.engine) as conn:
            if q.acquire_campaign_lock(conn, self.cid, self.me, now - timedelta(seconds=LOCK_STALE_S), now):
                self.last_beat = time.monotonic()
                return
            owner, beat = q.campaign_lock_holder(conn, self.cid)
            host, _, rest = (owner or "").partition(":")
            pid = rest.split(":", 1)[0]
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                if q.acquire_campaign_lock(conn, self.cid, self.me, now - timedelta(seconds=LOCK_STALE_S), now,
                                           take_from=owner):
                    self.last_beat = time.monotonic()
                    return
        when = f", alive at {beat:%H:%M:%S} UTC" if beat else ""
        raise DispatchError(
            f"campaign {self.cid} is being sent by another process ({owner}{when}); "
            "on SQLite one sender works a campaign at a time (use PostgreSQL for several workers)")

    def alive(self, worker_id: str) -> bool:
        """Whether the worker holding some rows is still alive (its session still holds its lock)."""
        if worker_id == self.me:
            return True
        if not self.pg:
            return False  # we hold the campaign lock: any other holder of rows is gone
        assert self.conn is not None, "start() first"
        k = _advisory_key(worker_id)
        got = self.conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": k}).scalar()
        if got:
            self.conn.execute(text("select pg_advisory_unlock(:k)"), {"k": k})
            return False
        return True

    def beat(self) -> None:
        """Refresh the SQLite lock's heartbeat every LOCK_HEARTBEAT_S (DispatchError when it was taken).

        On PostgreSQL, check that the session holding the advisory lock is still there: once it is
        gone (the server restarted, ``pg_terminate_backend``, a network cut) other workers see this
        one as dead and take its rows, so it must stop before it hands another message over."""
        if self.pg:
            assert self.conn is not None, "start() first"
            try:
                self.conn.execute(text("select 1"))
            except Exception as e:  # any failure: the session, and with it the lock, may be gone
                from ..store.db import describe_db_error

                raise DispatchError(f"campaign {self.cid}: lost the database session that marks this sender alive "
                                    f"({describe_db_error(e)}); stopped so that other workers can take over "
                                    "its copies without sending any twice") from None
            return
        if time.monotonic() - self.last_beat < LOCK_HEARTBEAT_S:
            return
        with transaction(self.engine) as conn:
            if not q.heartbeat_campaign_lock(conn, self.cid, self.me):
                raise DispatchError(f"campaign {self.cid}: another process took over the campaign lock; stopping")
        self.last_beat = time.monotonic()

    def stop(self, *, quiet: bool = False) -> None:
        """Release the lock (never raises: a failure is logged, as a warning unless ``quiet``: the
        send already failed and says why; a dead sender's lock is taken over by the next one)."""
        try:
            if self.pg and self.conn is not None:
                # Release explicitly: close() only hands the connection back to the pool, whose
                # session would keep the lock, and this worker's next send (on another pooled
                # connection) would wait for it forever.
                try:
                    self.conn.execute(text("select pg_advisory_unlock_all()"))
                except Exception:  # a broken session: its locks died with it; throw it away
                    self.conn.invalidate()
                finally:
                    self.conn.close()
            elif not self.pg:
                with transaction(self.engine) as conn:
                    q.release_campaign_lock(conn, self.cid, self.me)
        except NewsletterError:
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "campaign %s: could not release the sender lock cleanly", self.cid)



def sender_alive(engine: Engine, campaign_id: int, worker_id: str | None) -> bool:
    """Whether the sender ``worker_id`` is alive, seen from outside any send (the admin page):
    on PostgreSQL its advisory lock is held; on SQLite it holds the campaign lock with a fresh
    heartbeat and, when it runs on this host, its process exists."""
    if not worker_id:
        return False
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            k = _advisory_key(worker_id)
            got = conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": k}).scalar()
            if got:
                conn.execute(text("select pg_advisory_unlock(:k)"), {"k": k})
            conn.commit()
            return not got
    with transaction(engine) as conn:
        owner, beat = q.campaign_lock_holder(conn, campaign_id)
    if owner != worker_id or beat is None or utcnow() - beat > timedelta(seconds=LOCK_STALE_S):
        return False
    host, _, rest = worker_id.partition(":")
    pid = rest.split(":", 1)[0]
    return not (host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)))


def in_flight(engine: Engine, campaign_id: int) -> tuple[int, int]:
    """(copies being sent right now by a live sender, ambiguous copies whose sender died): an
    ambiguous copy may or may not have reached its reader (``send --resend-ambiguous``)."""
    with transaction(engine) as conn:
        held = q.sending_by_worker(conn, campaign_id)
    live = dead = 0
    for worker, n in held.items():
        if sender_alive(engine, campaign_id, worker):
            live += n
        else:
            dead += n
    return live, dead
