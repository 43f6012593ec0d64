"""The SQL of an import batch: bulk statements as raw driver SQL, for SQLite and PostgreSQL.

SQLAlchemy's per-value type processing is skipped on purpose (it made imports several times
slower). Which rows go into which statement is decided by the writer (importer.py); this module
only knows how to look people up and insert or update them in bulk.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.engine import Engine

from .models import OPTED_OUT_STATUSES

IMPORT_SQLITE_CACHE_KIB = 32768  # 32 MiB


def _may_skip_fk_triggers(engine: Engine) -> bool:
    """PostgreSQL: may the insert of new people skip the per-row foreign-key triggers?

    Only when this role may ``SET session_replication_role`` (a superuser, or granted SET on it)
    and the two tables have no triggers or rules besides the foreign keys' own, so that nothing
    a DBA added (an audit trigger, say) is ever bypassed. Otherwise the triggers run."""
    from sqlalchemy import exc as sa_exc

    try:
        with engine.begin() as conn:
            extra = conn.exec_driver_sql(
                "select (select count(*) from pg_trigger where not tgisinternal and tgrelid in "
                "('subscribers'::regclass, 'subscriptions'::regclass)) + (select count(*) from pg_rules "
                "where schemaname = current_schema() and tablename in ('subscribers', 'subscriptions'))"
            ).scalar()
            if extra:
                return False
            conn.exec_driver_sql("set local session_replication_role = replica")
            return True
    except sa_exc.DBAPIError:  # not allowed: the normal path
        return False


class _SQL:
    """The handful of bulk statements an import batch runs, as raw driver SQL for speed.

    Going below SQLAlchemy's per-value type processing makes imports several times faster.
    SQLite gets a batch's keys as one JSON array (``json_each``) and rows through ``executemany``.
    PostgreSQL gets the whole batch in one COPY, formatted by the reader process, into a
    transaction-local temporary table that every statement reads; new people are inserted and
    subscribed in one statement (``RETURNING`` feeds the subscriptions insert)."""

    _TEMP = (
        "create temp table if not exists nl_imp_batch (e text, k text, n text, a text, st text) on commit delete rows;"
        "create temp table if not exists nl_imp_upd (i int, n text, a text) on commit delete rows;"
        "create temp table if not exists nl_imp_subs (s int, st text) on commit delete rows"
    )

    def __init__(self, engine: Engine):
        self.pg = engine.dialect.name == "postgresql"
        self.p = "%s" if self.pg else "?"
        self._keys_json = "[]"
        self.skip_fk_triggers = self.pg and _may_skip_fk_triggers(engine)

    def ts(self, now: datetime):
        """``now`` as this database's driver stores it."""
        # SQLite: the text format SQLAlchemy's DateTime reads back; PostgreSQL: timestamptz.
        return now if self.pg else now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def begin(self, conn, keys: list[str], copy: bytes | None) -> None:
        """Start a batch whose address keys are ``keys`` (PostgreSQL: whose rows are ``copy``)."""
        if self.pg:
            conn.exec_driver_sql(self._TEMP)
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cur, cur.copy("copy nl_imp_batch from stdin") as cp:
                cp.write(copy)
        else:
            # Only a bulk import wants a big page cache (the email index stays hot); other
            # connections keep SQLite's small default, so a sender's memory does not grow with the list.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_SQLITE_CACHE_KIB}")
            self._keys_json = json.dumps(keys)

    def drop_keys(self, conn, keys: set[str]) -> None:
        """Leave ``keys`` (suppressed) out of the rest of the batch."""
        if self.pg:
            conn.exec_driver_sql("delete from nl_imp_batch where k = any(%s)", (list(keys),))
        else:
            self._keys_json = json.dumps([k for k in json.loads(self._keys_json) if k not in keys])

    def _fill(self, conn, table: str, rows, analyze: bool = False) -> None:
        """PostgreSQL: replace the rows of a temp table with ``rows`` (tuples) through COPY."""
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(f"delete from {table}")
            with cur.copy(f"copy {table} from stdin") as cp:
                for row in rows:
                    cp.write_row(row)
            if analyze:  # temp tables have no statistics: without them an UPDATE ... FROM scans the whole table
                cur.execute(f"analyze {table}")

    def _batch_keys(self, column: str) -> tuple[str, tuple]:
        """SQL condition: ``column`` is one of this batch's keys; and its parameters."""
        if self.pg:
            return f"{column} in (select k from nl_imp_batch)", ()
        return f"{column} in (select value from json_each(?))", (self._keys_json,)

    def suppressed_addresses(self, conn) -> set[str]:
        """The batch's keys that are suppressed as addresses."""
        if conn.exec_driver_sql("select 1 from suppressions where kind = 'address' limit 1").first() is None:
            return set()
        cond, params = self._batch_keys("value")
        return {r[0] for r in conn.exec_driver_sql(f"select value from suppressions where kind = 'address' and {cond}", params)}

    def suppressed_domains(self, conn) -> set[str]:
        """Every suppressed domain (few: read whole, matched against the batch in Python)."""
        return {r[0] for r in conn.exec_driver_sql("select value from suppressions where kind = 'domain'")}

    def existing(self, conn, list_id: int) -> dict[str, tuple]:
        """The batch's people already stored: key -> (id, name, attributes as JSON text, and their
        subscription to ``list_id``: id and status, or None, None), in one query."""
        cond, params = self._batch_keys("u.email_key")
        attrs = "u.attributes::text" if self.pg else "u.attributes"
        sql = (f"select u.id, u.email_key, u.name, {attrs}, s.id, s.status from subscribers u "
               f"left join subscriptions s on s.subscriber_id = u.id and s.list_id = {self.p} where {cond}")
        return {key: (sid, name, text or "{}", sub_id, status)
                for sid, key, name, text, sub_id, status in conn.exec_driver_sql(sql, (list_id, *params))}

    def ids(self, conn) -> dict[str, int]:
        """key -> subscriber id for the batch's people stored so far."""
        cond, params = self._batch_keys("email_key")
        return dict(conn.exec_driver_sql(f"select email_key, id from subscribers where {cond}", params).all())

    _SUBSCRIBER_COLS = "(email, email_key, name, attributes, consent_source, consent_at, created_at, updated_at)"
    _SUBSCRIPTION_COLS = "(subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at)"

    def insert_subscribers(self, conn, rows: list[tuple], source: str, now) -> None:
        """Insert new people who come with a status of their own (rows: email, email_key, name,
        attributes_json; PostgreSQL takes them from the batch table, where they have a status)."""
        if self.pg:
            conn.exec_driver_sql(
                f"insert into subscribers {self._SUBSCRIBER_COLS} select e, k, n, a::json, %s, %s, %s, %s "
                "from nl_imp_batch where st is not null on conflict (email_key) do nothing",
                (source, now, now, now),
            )
        else:
            conn.exec_driver_sql(
                f"insert into subscribers {self._SUBSCRIBER_COLS} values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (email_key) do nothing",
                [(e, k, n, a, source, now, now, now) for e, k, n, a in rows],
            )

    def insert_and_subscribe(self, conn, rows: list[tuple], list_id: int, status: str, source: str, now,
                             stored: list[str]) -> None:
        """Insert the new people without a status of their own (rows: email, email_key, name,
        attributes_json) and subscribe them with ``status``; ``stored`` are the batch's other
        status-less keys, people already stored.

        PostgreSQL takes the rows from the batch table, leaving out ``stored``: no ON CONFLICT
        (speculative insertion costs ~35 % of a row's insert); a person stored meanwhile by a
        concurrent import raises _Retry instead. Where allowed (see ``_may_skip_fk_triggers``) the
        statement runs without the per-row foreign-key triggers, which cost 40 % of it: every
        subscription it writes points at a subscriber the same statement created, and at the list
        locked here just as the trigger would lock it, so each check could only pass."""
        from sqlalchemy import exc as sa_exc

        confirmed = now if status == "active" else None
        if self.pg:
            if self.skip_fk_triggers:
                conn.exec_driver_sql("select id from lists where id = %s for key share", (list_id,))
                conn.exec_driver_sql("set local session_replication_role = replica")
            leave_out = " and k <> all(%s)" if stored else ""
            try:
                conn.exec_driver_sql(
                    f"with ins as (insert into subscribers {self._SUBSCRIBER_COLS} "
                    f"select e, k, n, a::json, %s, %s, %s, %s from nl_imp_batch where st is null{leave_out} returning id) "
                    f"insert into subscriptions {self._SUBSCRIPTION_COLS} select id, %s, %s, %s, %s, %s, %s from ins",
                    (source, now, now, now, *([stored] if stored else []), list_id, status, source, now, now, confirmed),
                )
            except sa_exc.IntegrityError as e:
                if getattr(e.orig, "sqlstate", "") == "23505":  # unique_violation
                    raise _Retry() from None
                raise
            if self.skip_fk_triggers:
                conn.exec_driver_sql("set local session_replication_role = origin")
            return
        self.insert_subscribers(conn, rows, source, now)
        conn.exec_driver_sql(
            f"insert into subscriptions {self._SUBSCRIPTION_COLS} select id, ?, ?, ?, ?, ?, ? from subscribers "
            "where email_key in (select value from json_each(?)) on conflict (subscriber_id, list_id) do nothing",
            (list_id, status, source, now, now, confirmed, json.dumps([r[1] for r in rows])),
        )

    def update_subscribers(self, conn, rows: list[tuple], now) -> None:
        """rows: (id, name, attributes_json)."""
        if self.pg:
            self._fill(conn, "nl_imp_upd", rows, analyze=True)
            conn.exec_driver_sql(
                "update subscribers set name = v.n, attributes = v.a::json, updated_at = %s "
                "from nl_imp_upd as v where subscribers.id = v.i",
                (now,),
            )
        else:
            conn.exec_driver_sql(
                "update subscribers set name = ?, attributes = ?, updated_at = ? where id = ?",
                [(n, a, now, i) for i, n, a in rows],
            )

    def move_timezones(self, conn) -> None:
        """The batch's ``timezone`` values (checked by the reader) become the readers' zone —
        ``subscribers.timezone``, where the preference centre and signup keep it — and leave their
        attributes. People the batch did not write (who left the list) are not touched: their
        attributes never got the value."""
        cond, params = self._batch_keys("email_key")
        if self.pg:
            conn.exec_driver_sql(
                "update subscribers set timezone = attributes->>'timezone', "
                f"attributes = (attributes::jsonb - 'timezone')::json where {cond} and attributes->>'timezone' is not null",
                params)
        else:
            conn.exec_driver_sql(
                "update subscribers set timezone = json_extract(attributes, '$.timezone'), "
                f"attributes = json_remove(attributes, '$.timezone') where {cond} "
                "and json_extract(attributes, '$.timezone') is not null", params)

    _OPTED_OUT_SQL = "('unsubscribed', 'bounced', 'complained')"

    def insert_subscriptions(self, conn, list_id: int, source: str, now, rows: list[tuple]) -> None:
        """rows: (subscriber_id, status); confirmed_at/unsubscribed_at follow from the status."""
        cols = "(subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at, unsubscribed_at)"
        if self.pg:
            self._fill(conn, "nl_imp_subs", rows)
            conn.exec_driver_sql(
                f"insert into subscriptions {cols} select s, %s, st, %s, %s, %s, "
                f"case when st = 'active' then %s::timestamptz end, case when st in {self._OPTED_OUT_SQL} then %s::timestamptz end "
                "from nl_imp_subs on conflict (subscriber_id, list_id) do nothing",
                (list_id, source, now, now, now, now),
            )
        else:
            conn.exec_driver_sql(
                f"insert into subscriptions {cols} values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (subscriber_id, list_id) do nothing",
                [(sid, list_id, st, source, now, now, now if st == "active" else None,
                  now if st in OPTED_OUT_STATUSES else None) for sid, st in rows],
            )

    def update_subscriptions(self, conn, rows: list[tuple]) -> None:
        """rows: (subscription id, status, updated_at, confirmed_at, unsubscribed_at)."""
        p = self.p
        conn.exec_driver_sql(
            # A re-subscription awaiting confirmation gets a fresh confirmation email: forget the old one.
            f"update subscriptions set status = {p}, updated_at = {p}, confirmed_at = {p}, unsubscribed_at = {p}, "
            f"confirmation_sent_at = case when {p} = 'unconfirmed' then null else confirmation_sent_at end where id = {p}",
            [(st, up, cf, un, st, i) for i, st, up, cf, un in rows],
        )


class _Retry(Exception):
    """A batch met a person stored meanwhile by a concurrent import: roll it back and redo it."""

