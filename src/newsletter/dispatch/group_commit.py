"""Group commit of the ledger writes of a send: many lanes, few transactions.

Before a lane hands a message's content to a server it commits that row as ``sending`` in the
same transaction as the previous message's result, so at any instant each lane has at most one
row whose outcome the database does not know. Lanes hand their writes in; whichever arrives
while a ledger connection is free leads and commits every write waiting at that moment in one
transaction (leader/follower), so the price of that guarantee is one commit per group, not per
message.

On PostgreSQL a group is one statement run in autocommit (``queries.record_and_mark_sending``:
one round trip, one commit), and there may be several ledger connections (``slots``): a lane that arrives
while a commit is in flight then starts the next one at once instead of waiting for it to end
(the server merges the WAL flushes of concurrent commits). SQLite has one writer: one slot.

``sync`` (config ``ledger_sync``) says what a committed mark survives: ``full``, a power cut (the
commit waits for the disk: PostgreSQL's ``synchronous_commit = on``, SQLite's ``synchronous =
FULL``); ``normal``, a killed sender only (``off`` and ``NORMAL``: the database has the commit,
its disk may not yet). Default: full on PostgreSQL, normal on SQLite. Set on the ledger
connections alone, and reset before they go back to the pool.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from ..store import queries as q
from ..store.db import describe_db_error
from ..store.lifecycle import DeliveryState

# Ledger connections of one send on PostgreSQL (at most one per lane). More than one lets the
# next group commit while one is in flight; on the 2-core benchmark machine two measured no
# faster (1.02x) and cost 1.0 commit per message instead of 0.7 (docs/benchmarks.md), so one.
LEDGER_CONNECTIONS = 1


class GroupCommit:
    """Leader/follower group commit: lanes hand in ledger updates, a leader commits them all.

    A lane's call returns once its updates are durable, which is what bounds the ambiguous rows."""

    def __init__(self, engine: Engine, worker_id: str, on_failed_suppress: Callable[[list[dict]], None],
                 on_committed: Callable[[int], None], slots: int = 1, sync: str = ""):
        self.on_committed = on_committed
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.sync = sync or ("full" if self.postgres else "normal")
        # free ledger connections (None: opened on first use); each used by one leader at a time
        self.free: list[Connection | None] = [None] * (max(1, slots) if self.postgres else 1)
        self.worker = worker_id
        self.cond = threading.Condition()
        self.pending: list[dict] = []
        self.suppress = on_failed_suppress
        self.clock: Callable[[], datetime] | None = None  # stamps sent_at (send_campaign's clock)

    def run(self, results: Sequence[dict] = (), sending: Sequence[int] = ()) -> set[int]:
        """Hand in results to record and row ids to mark ``sending``; returns, once they are
        committed (by this lane as a leader, or by another lane leading), those of ``sending``
        that were marked: a row that was not (no longer ``claimed`` by this worker) must not be
        sent. Raises what the commit raised."""
        ticket: dict[str, Any] = {"results": list(results), "sending": list(sending), "done": False, "error": None,
                                  "marked": set(), "taken": False}
        with self.cond:
            self.pending.append(ticket)
            while not ticket["done"] and (ticket["taken"] or not self.free):
                self.cond.wait()
            if ticket["done"]:
                if ticket["error"]:
                    raise ticket["error"]
                return ticket["marked"]
            conn = self.free.pop()
            batch, self.pending = self.pending, []
            for t in batch:
                t["taken"] = True
        error: BaseException | None = None
        try:
            results_all = [r for t in batch for r in t["results"]]
            sending_all = [(i, self.worker) for t in batch for i in t["sending"]]
            written, conn = conn, None  # a failed write has closed it
            conn, marked = self._write(written, results_all, sending_all)
            for t in batch:
                t["marked"] = marked.intersection(t["sending"])
            self.on_committed(len(results_all))
            failed = [r for r in results_all if r["state"] == DeliveryState.FAILED]
            if failed:  # 5xx replies go through the bounce rules (one table of events)
                self.suppress(failed)
        except BaseException as e:  # every waiting lane learns about it
            error = e
        finally:
            with self.cond:
                self.free.append(conn)
                for t in batch:
                    t["done"], t["error"] = True, error
                self.cond.notify_all()
        if error:
            raise error
        return ticket["marked"]

    def _write(self, conn: Connection | None, results: list[dict],
               sending: list[tuple[int, str]]) -> tuple[Connection | None, set[int]]:
        """One transaction on a ledger connection (on PostgreSQL one autocommit statement); a
        database error is described and the connection dropped. Returns the connection (None
        once dropped) and the ids marked."""
        now = self.clock() if self.clock else None
        try:
            if conn is None:
                conn = self.engine.connect()
                if self.postgres:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                _ready_ledger_session(conn, self.postgres, self.sync)
            if self.postgres:
                return conn, q.record_and_mark_sending(conn, results, sending, now=now, prepare=True)
            with conn.begin():
                return conn, q.record_and_mark_sending(conn, results, sending, now=now)
        except sa_exc.SQLAlchemyError as e:
            _drop(conn)
            raise describe_db_error(e, self.engine.url) from None
        except Exception as e:  # driver errors raised outside SQLAlchemy's wrapping
            _drop(conn)
            if type(e).__module__.split(".")[0] in ("sqlite3", "psycopg"):
                raise describe_db_error(e, self.engine.url) from None
            raise

    def close(self) -> None:
        """Drop the ledger connections (a later commit opens new ones)."""
        with self.cond:
            conns, self.free = self.free, [None] * len(self.free)
        for c in conns:
            _release(c, self.postgres)


# The ledger connection's setting for each ledger_sync, and the engine's own (restored on close).
_SYNC_SQL = {(True, "full"): "SET synchronous_commit = on", (True, "normal"): "SET synchronous_commit = off",
             (False, "full"): "PRAGMA synchronous = FULL", (False, "normal"): "PRAGMA synchronous = NORMAL"}
_SYNC_RESET = {True: "RESET synchronous_commit", False: "PRAGMA synchronous = NORMAL"}

# psycopg prepares a statement after this many runs; the engine turns that off (db.get_engine),
# and a ledger connection turns it on for the statements that ask (prepare=True) alone.
_ONLY_WHEN_ASKED = 2 ** 31 - 1


def _ready_ledger_session(conn: Connection, postgres: bool, sync: str) -> None:
    """Ready a ledger connection: its ``ledger_sync``, and on PostgreSQL the group statement
    prepared once with a generic plan (``plan_cache_mode``). Planning that statement afresh
    for each group cost the server about half its CPU per message (docs/benchmarks.md); its plan
    is a primary-key lookup per array element whatever the table holds, and it lives only as
    long as this send's ledger connection (:func:`_release` deallocates it)."""
    conn.exec_driver_sql(_SYNC_SQL[(postgres, sync)])
    if postgres:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None, "an open connection"
        dbapi.prepare_threshold = _ONLY_WHEN_ASKED
    if conn.in_transaction():
        conn.commit()  # SQLAlchemy began a transaction for the setting; the ledger's own begins next


def _release(conn: Connection | None, postgres: bool) -> None:
    """Give a ledger connection back to the pool as the engine made it: its sync setting, and on
    PostgreSQL no prepared statement and the planner's own plan choice."""
    if conn is not None:
        try:
            conn.exec_driver_sql(_SYNC_RESET[postgres])
            if postgres:
                conn.exec_driver_sql("DEALLOCATE ALL")  # psycopg forgets its names on seeing it
                conn.exec_driver_sql("RESET plan_cache_mode")
                dbapi = conn.connection.dbapi_connection
                if dbapi is not None:
                    dbapi.prepare_threshold = None
            if conn.in_transaction():
                conn.commit()
        except Exception:
            _drop(conn)
            return
        _close(conn)


def _close(conn: Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


def _drop(conn: Connection | None) -> None:
    """Throw away a connection that failed: invalidated, not handed back to the pool, whose reset
    (a rollback on a session the server ended) would log a traceback under the one-line error."""
    if conn is not None:
        try:
            conn.invalidate()
        except Exception:
            pass
        _close(conn)
