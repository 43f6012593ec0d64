"""Group commit of the ledger writes of a send: many lanes, one transaction at a time.

Before a lane hands a message to a server it commits that row as ``sending`` in the same
transaction as the previous message's result, so at any instant each lane has at most one row
whose outcome the database does not know. Lanes hand their writes in; whichever arrives while no
commit runs leads and commits everyone's writes in one transaction (leader/follower), so the
price of that guarantee is one commit per group, not per message. On PostgreSQL a group is one
statement run in autocommit (``queries.record_and_mark_sending``): one round trip and one commit,
with ``synchronous_commit`` left on, so a mark is on disk before any of its DATA is sent.
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


class GroupCommit:
    """Leader/follower group commit: lanes hand in ledger updates, one of them commits them all.

    A lane's call returns once its updates are durable, which is what bounds the ambiguous rows."""

    def __init__(self, engine: Engine, worker_id: str, on_failed_suppress: Callable[[list[dict]], None],
                 on_committed: Callable[[int], None]):
        self.on_committed = on_committed
        self.engine = engine
        self.conn: Connection | None = None  # one connection for all ledger writes (used by one leader at a time)
        self.worker = worker_id
        self.cond = threading.Condition()
        self.pending: list[dict] = []
        self.leader = False
        self.suppress = on_failed_suppress
        self.clock: Callable[[], datetime] | None = None  # stamps sent_at (send_campaign's clock)

    def run(self, results: Sequence[dict] = (), sending: Sequence[int] = ()) -> set[int]:
        """Hand in results to record and row ids to mark ``sending``; returns, once they are
        committed (by this lane as the leader, or by the leader of the moment), those of
        ``sending`` that were marked: a row that was not (no longer ``claimed`` by this worker)
        must not be sent. Raises what the commit raised."""
        ticket: dict[str, Any] = {"results": list(results), "sending": list(sending), "done": False, "error": None,
                                  "marked": set()}
        with self.cond:
            self.pending.append(ticket)
            while not ticket["done"] and self.leader:
                self.cond.wait()
            if ticket["done"]:
                if ticket["error"]:
                    raise ticket["error"]
                return ticket["marked"]
            self.leader = True
            batch, self.pending = self.pending, []
        error: BaseException | None = None
        try:
            results_all = [r for t in batch for r in t["results"]]
            sending_all = [(i, self.worker) for t in batch for i in t["sending"]]
            marked = self._write(results_all, sending_all)
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
                for t in batch:
                    t["done"], t["error"] = True, error
                self.leader = False
                self.cond.notify_all()
        if error:
            raise error
        return ticket["marked"]

    def _write(self, results: list[dict], sending: list[tuple[int, str]]) -> set[int]:
        """One transaction on the shared connection (on PostgreSQL one autocommit statement); a
        database error is described and the connection dropped. Returns the ids marked."""
        now = self.clock() if self.clock else None
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
                if self.engine.dialect.name == "postgresql":
                    self.conn = self.conn.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql":
                return q.record_and_mark_sending(self.conn, results, sending, now=now)
            with self.conn.begin():
                return q.record_and_mark_sending(self.conn, results, sending, now=now)
        except sa_exc.SQLAlchemyError as e:
            self.close()
            raise describe_db_error(e, self.engine.url) from None
        except Exception as e:  # driver errors raised outside SQLAlchemy's wrapping
            self.close()
            if type(e).__module__.split(".")[0] in ("sqlite3", "psycopg"):
                raise describe_db_error(e, self.engine.url) from None
            raise

    def close(self) -> None:
        """Drop the ledger connection (the next commit opens a new one)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

