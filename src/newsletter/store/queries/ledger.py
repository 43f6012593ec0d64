"""The ledger (``deliveries``): create it, claim and skip rows, send and record (the per-message hot path), release and recover, and the reads the senders decide on."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy import and_, func, literal, not_, or_, select
from sqlalchemy.engine import Connection

from ..lifecycle import DeliveryState, delivery_sources
from ..models import utcnow
from ..suppressions import suppressed_condition
from .common import (
    D, LEDGER_CHUNK, UNWANTED_REPLY, CANCELLED_REPLY, campaign_lists, deliveries, subscribers,
    subscriptions, _still_wanted, _segment_condition, _moving, _utc,
)
from .localtime import DueTimes


# --- the ledger: create -------------------------------------------------------------------------
def active_recipients_count(conn: Connection, campaign_id: int) -> int:
    """How many distinct subscribers are active on the campaign's lists and not suppressed.

    Shape: ``SELECT count(DISTINCT s.id) FROM campaign_lists JOIN subscriptions (active) JOIN
    subscribers WHERE NOT suppressed``. Used to refuse a send to nobody and to show the audience."""
    q = (
        select(func.count(sa.distinct(subscribers.c.id)))
        .select_from(
            campaign_lists.join(subscriptions, subscriptions.c.list_id == campaign_lists.c.list_id)
            .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        )
        .where(
            campaign_lists.c.campaign_id == campaign_id,
            subscriptions.c.status == "active",
            not_(suppressed_condition(subscribers.c.email_key)),
        )
    )
    seg = _segment_condition(conn, campaign_id)
    return int(conn.execute(q if seg is None else q.where(seg)).scalar_one())


def create_ledger(conn: Connection, campaign_id: int, now: datetime | None = None, *,
                  state: DeliveryState = D.PENDING, due: "DueTimes | None" = None) -> int:
    """Insert one ``pending`` row (``held`` for an A/B test, whose ``dispatch.abtest`` then
    releases the test share) per subscriber active on any target list and not suppressed.

    Shape: ``INSERT INTO deliveries (...) SELECT ... GROUP BY subscriber ON CONFLICT DO NOTHING``
    — a reader on two target lists gets one row (with the lowest list id, whose unsubscribe link
    the copy carries), and running it twice adds nothing: the unique (campaign, subscriber) key
    is what makes "one copy per reader" a database fact. Run in subscriber-id ranges of
    LEDGER_CHUNK so memory stays flat however large the lists (one transaction: the caller's).
    ``due`` (a local-time campaign) gives each row its ``due_at`` in the same statement (see
    :class:`DueTimes`). Returns the number of rows added."""
    now = now or utcnow()
    lo, hi = conn.execute(select(func.min(subscribers.c.id), func.max(subscribers.c.id))).one()
    if lo is None:
        return 0
    added = 0
    seg = _segment_condition(conn, campaign_id, now)
    # A segment's filter is evaluated in one statement: per-chunk statements would each pay the
    # filter's set-up and scan again (200 of them for a million readers).
    step = LEDGER_CHUNK if seg is None else hi - lo + 1
    for start in range(lo, hi + 1, step):
        added += _create_ledger_range(conn, campaign_id, now, start, start + step, seg, state, due)
    if conn.dialect.name == "postgresql":
        # Fresh statistics for the rows just added: until autovacuum gets to them (a minute or
        # more), the planner believes the table small and runs the per-batch checks by ``id IN
        # (…)`` as a scan of the whole (campaign, state, id) index — 44 ms for 100 ids out of
        # 8,000, instead of 0.1 ms through the primary key: a third of a sender's speed.
        # The same for the tables the per-batch "still wanted?" check probes (``skip_unwanted``):
        # for a list imported just before the send, with no statistics yet, the planner probed
        # the (list, status) index and walked the whole list for each row: 140 ms per batch of
        # 100 at 20,000 readers.
        # ANALYZE samples a fixed number of rows, so it costs about the same on any table size.
        conn.exec_driver_sql("ANALYZE deliveries, subscriptions, subscribers")
    return added


def _create_ledger_range(conn: Connection, campaign_id: int, now: datetime, start: int, stop: int, seg=None,
                         state: DeliveryState = D.PENDING, due: "DueTimes | None" = None) -> int:
    """One id range of :func:`create_ledger`."""
    src = (
        select(
            literal(campaign_id).label("campaign_id"),
            subscribers.c.id.label("subscriber_id"),
            func.min(subscriptions.c.list_id).label("list_id"),
            subscribers.c.email,
            literal(DeliveryState(state).value).label("state"),
            literal(0).label("attempts"),
            literal(now, deliveries.c.created_at.type).label("created_at"),
            literal(now, deliveries.c.updated_at.type).label("updated_at"),
        )
        .select_from(
            campaign_lists.join(subscriptions, subscriptions.c.list_id == campaign_lists.c.list_id)
            .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        )
        .where(
            campaign_lists.c.campaign_id == campaign_id,
            subscriptions.c.status == "active",
            subscribers.c.id >= start,
            subscribers.c.id < stop,
            # the same range on the subscription side lets the planner walk its (subscriber, list)
            # index per chunk instead of scanning every subscription of the list each time
            subscriptions.c.subscriber_id >= start,
            subscriptions.c.subscriber_id < stop,
            not_(suppressed_condition(subscribers.c.email_key)),
            or_(subscribers.c.pause_until.is_(None), subscribers.c.pause_until <= now),  # paused readers wait
        )
        .group_by(subscribers.c.id, subscribers.c.email)
    )
    if seg is not None:  # the campaign's segment (see _segment_condition)
        src = src.where(seg)
    cols = ["campaign_id", "subscriber_id", "list_id", "email", "state", "attempts", "created_at", "updated_at"]
    if due is not None:
        src, cols = due.select_from(src), cols + ["due_at"]
    stmt: sa.Insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(deliveries).from_select(cols, src).on_conflict_do_nothing(
            index_elements=["campaign_id", "subscriber_id"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(deliveries).from_select(cols, src).on_conflict_do_nothing(
            index_elements=["campaign_id", "subscriber_id"])
    # preserve_rowcount: without it SQLAlchemy reports -1 for an INSERT … SELECT on psycopg
    return max(conn.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount or 0, 0)


# --- the ledger: claim and skip -----------------------------------------------------------------
def claim_batch(conn: Connection, campaign_id: int, worker_id: str, limit: int, now: datetime | None = None,
                *, due_by: datetime | None = None, after: int = 0) -> list[int]:
    """Take up to ``limit`` claimable rows for ``worker_id``: pending ones first, then deferred
    ones whose retry time has come.

    Shape on PostgreSQL: ``UPDATE deliveries SET state='claimed', worker_id=:w WHERE id IN
    (SELECT id FROM deliveries WHERE campaign_id=:c AND state='pending' ORDER BY id LIMIT :n
    FOR UPDATE SKIP LOCKED) RETURNING id`` — concurrent workers skip each other's locked rows
    instead of waiting, so several processes share one campaign without ever claiming a row
    twice. The (campaign_id, state, id) index makes each claim a short range scan, whatever the
    size of the campaign. On SQLite the same statement runs under the campaign lock (one sender
    at a time), where no row locks are needed. ``due_by`` (a local-time campaign): only pending
    rows whose bucket is due by then (``due_at <= :due_by``, in due order).

    ``after`` (the caller's highest claimed id so far) starts the pending scan there: on
    PostgreSQL the index keeps an entry for every row already claimed until VACUUM comes by,
    and a scan from the start of the campaign steps over all of them (160 ms per claim after
    290,000 copies, against 4 ms). When fewer than ``limit`` are found past it, the scan runs
    again from the start, so a row given back behind it (a released claim) is still taken.
    Returns the ids."""
    now = now or utcnow()
    ids: list[int] = []
    pending = _moving([D.PENDING], D.CLAIMED)
    if due_by is not None:
        pending = and_(pending, deliveries.c.due_at <= due_by)
        after = 0  # claimed in due order, not id order
    conds = [pending, and_(_moving([D.DEFERRED], D.CLAIMED), deliveries.c.next_attempt_at <= now)]
    if after:
        conds.insert(0, and_(pending, deliveries.c.id > after))
    for cond in conds:
        want = limit - len(ids)
        if want <= 0:
            break
        order = (deliveries.c.due_at, deliveries.c.id) if due_by is not None else (deliveries.c.id,)
        sub = (select(deliveries.c.id).where(deliveries.c.campaign_id == campaign_id, cond)
               .order_by(*order).limit(want))
        if conn.dialect.name == "postgresql":
            sub = sub.with_for_update(skip_locked=True)
        stmt = (
            deliveries.update()
            .where(deliveries.c.id.in_(sub.scalar_subquery()))
            .values(state=D.CLAIMED, worker_id=worker_id, updated_at=now)
            .returning(deliveries.c.id)
        )
        ids.extend(r[0] for r in conn.execute(stmt))
    return sorted(ids)


def claimed_recipients(conn: Connection, ids: Sequence[int]) -> list[sa.Row]:
    """The rows in ``ids`` still ``claimed``, with what personalization needs from the subscriber.

    Shape: ``SELECT d.id, d.subscriber_id, d.list_id, d.email, d.attempts, s.name, s.attributes
    FROM deliveries d JOIN subscribers s ... WHERE d.id IN (:ids) AND d.state='claimed'``. The
    address comes from the ledger (snapshot), name and attributes from the subscriber now."""
    if not ids:
        return []
    q = (
        select(
            deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.list_id, deliveries.c.email,
            deliveries.c.attempts, deliveries.c.first_deferred_at, subscribers.c.name, subscribers.c.attributes,
            deliveries.c.variant,
        )
        .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == D.CLAIMED)
        .order_by(deliveries.c.id)
    )
    return list(conn.execute(q))


def skip_unwanted(conn: Connection, campaign_id: int, ids: Sequence[int], now: datetime | None = None) -> int:
    """Mark ``skipped`` those of ``ids`` whose subscriber unsubscribed, bounced or was suppressed
    since the ledger was made (someone who leaves mid-send gets nothing from then on).

    Shape: ``UPDATE deliveries SET state='skipped' WHERE id IN (:ids) AND state IN
    ('claimed','pending','deferred') AND NOT (active on a target list AND NOT suppressed)``.
    Checked per claimed batch, so the cost is proportional to the batch, not the campaign."""
    if not ids:
        return 0
    now = now or utcnow()
    stmt = (
        deliveries.update()
        .where(
            deliveries.c.id.in_(list(ids)),
            _moving([D.CLAIMED, D.PENDING, D.DEFERRED], D.SKIPPED),
            not_(_still_wanted(campaign_id)),
        )
        .values(state=D.SKIPPED, last_reply=UNWANTED_REPLY, worker_id=None, updated_at=now)
    )
    return conn.execute(stmt).rowcount or 0


def skip_unwanted_claimed(conn: Connection, campaign_id: int, ids: Sequence[int], worker_id: str,
                          now: datetime | None = None) -> list[int]:
    """Just before sending: mark ``skipped`` those of a worker's ``claimed`` rows whose subscriber
    left (unsubscribed, bounced, suppressed) since the claim, and return their ids.

    Shape: ``UPDATE deliveries SET state='skipped' WHERE id IN (:ids) AND state='claimed' AND
    worker_id=:w AND NOT (active on a target list AND NOT suppressed) RETURNING id``. Claims run
    ahead of the sending lanes (minutes at a low rate), so the claim-time check alone would still
    mail someone who unsubscribed meanwhile; senders run this once per small group of rows."""
    if not ids:
        return []
    now = now or utcnow()
    stmt = (
        deliveries.update()
        .where(
            deliveries.c.id.in_(list(ids)),
            _moving([D.CLAIMED], D.SKIPPED),
            deliveries.c.worker_id == worker_id,
            not_(_still_wanted(campaign_id)),
        )
        .values(state=D.SKIPPED, last_reply=UNWANTED_REPLY, worker_id=None, updated_at=now)
        .returning(deliveries.c.id)
    )
    return [r[0] for r in conn.execute(stmt)]


def skip_cancelled(conn: Connection, campaign_id: int, now: datetime | None = None) -> int:
    """A cancelled campaign's copies not yet claimed or handed to a server never go out.

    Shape: ``UPDATE deliveries SET state='skipped' WHERE campaign_id=:c AND state IN
    ('pending','deferred','held')`` (claimed ones are skipped by their sender on release)."""
    now = now or utcnow()
    stmt = (deliveries.update()
            .where(deliveries.c.campaign_id == campaign_id, _moving([D.PENDING, D.DEFERRED, D.HELD], D.SKIPPED))
            .values(state=D.SKIPPED, last_reply=CANCELLED_REPLY, updated_at=now))
    return conn.execute(stmt).rowcount or 0


# --- the ledger: send and record (the per-message hot path) -----------------------------------
# SQLite (in-process, no round trips): driver-level executemany for the results, one UPDATE …
# RETURNING for the marks, in the caller's transaction.
_RESULT_SQL = (
    "UPDATE deliveries SET state=?, last_reply=?, message_id=?, server=?, next_attempt_at=?, "
    "sent_at=?, updated_at=?, worker_id=NULL, first_deferred_at=COALESCE(first_deferred_at, ?) "
    "WHERE id=? AND state='sending'"
)
_SENDING_SQL = (
    "UPDATE deliveries SET state='sending', attempts=attempts+1, updated_at=? "
    "WHERE id IN ({ids}) AND state='claimed' AND worker_id=? RETURNING id"
)
# PostgreSQL: the results and the marks of a whole group in ONE statement (one round trip, one
# commit when run in autocommit): the results come as arrays joined back to their rows
# (UPDATE … FROM unnest), the marks as an id array; the statement returns the ids it marked.
_GROUP_SQL_PG = (
    "WITH v (id, state, reply, message_id, server, next_attempt_at, sent_at, first_deferred_at) AS ("
    " SELECT * FROM unnest(%(r_id)s::bigint[], %(r_state)s::text[], %(r_reply)s::text[], %(r_msgid)s::text[],"
    " %(r_server)s::text[], %(r_next)s::timestamptz[], %(r_sent)s::timestamptz[], %(r_deferred)s::timestamptz[])),"
    " results AS (UPDATE deliveries AS d SET state=v.state, last_reply=v.reply, message_id=v.message_id,"
    " server=v.server, next_attempt_at=v.next_attempt_at, sent_at=v.sent_at, updated_at=%(now)s,"
    " worker_id=NULL, first_deferred_at=COALESCE(d.first_deferred_at, v.first_deferred_at)"
    " FROM v WHERE d.id = v.id AND d.state = 'sending' RETURNING d.id),"
    " marks AS (UPDATE deliveries AS d SET state='sending', attempts=d.attempts+1, updated_at=%(now)s"
    " FROM unnest(%(m_id)s::bigint[], %(m_worker)s::text[]) AS m (id, worker)"
    " WHERE d.id = m.id AND d.state = 'claimed' AND d.worker_id = m.worker RETURNING d.id)"
    " SELECT id FROM marks"
)
# The moves the statements above make (checked once: they are plain SQL for speed).
for _result in (D.SENT, D.FAILED, D.DEFERRED):
    delivery_sources([D.SENDING], _result)
delivery_sources([D.CLAIMED], D.SENDING)


def record_and_mark_sending(conn: Connection, results: Sequence[dict], sending: Sequence[tuple[int, str]],
                            now: datetime | None = None, prepare: bool = False) -> set[int]:
    """Record finished messages (``sending`` → sent, failed or deferred) and mark the next ones
    ``sending`` (``claimed`` → ``sending``, attempts + 1), together; returns the ids marked.

    This is the per-message hot path: a sender commits the previous message's result together
    with the next message's ``sending`` mark, so a crash never leaves more than one unknown
    outcome per connection, and lanes share these commits (``dispatch.group_commit``). On
    PostgreSQL it is one statement for the whole group (``WITH results AS (UPDATE … FROM
    unnest(…)), marks AS (UPDATE … FROM unnest(…) RETURNING id) SELECT id FROM marks``): one
    round trip, and one commit when the caller runs it in autocommit. On SQLite, an
    ``executemany`` and one ``UPDATE … RETURNING``, in the caller's transaction. A row not marked
    (no longer ``claimed`` by that worker) must not be sent. Each result is a dict with id,
    state, reply and optionally message_id, server, next_attempt_at; ``sending`` holds
    (id, worker_id) pairs. ``prepare``: on PostgreSQL, run it as a server-side prepared
    statement (a ledger connection that asked for it, ``dispatch.group_commit``)."""
    now = now or utcnow()
    for r in results:
        if r["state"] not in (D.SENT, D.FAILED, D.DEFERRED):
            raise ValueError(f"ledger row {r['id']}: {r['state']!r} is not the result of a send (sent, failed, deferred)")
    rows = [(r["state"], (r.get("reply") or "")[:1000], r.get("message_id"), r.get("server"),
             r.get("next_attempt_at") if r["state"] == D.DEFERRED else None,
             now if r["state"] == D.SENT else None, now if r["state"] == D.DEFERRED else None, r["id"])
            for r in results]
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None, "an open connection"
    cur = dbapi.cursor()
    try:
        if conn.dialect.name == "postgresql":
            if not rows and not sending:
                return set()
            now = _utc(now)
            cols = list(zip(*rows)) if rows else [()] * 8
            cur.execute(_GROUP_SQL_PG, {  # type: ignore[call-arg]  # psycopg takes prepare=
                "r_state": list(cols[0]), "r_reply": list(cols[1]), "r_msgid": list(cols[2]),
                "r_server": list(cols[3]), "r_next": [_utc(t) for t in cols[4]], "r_sent": [_utc(t) for t in cols[5]],
                "r_deferred": [_utc(t) for t in cols[6]], "r_id": list(cols[7]), "now": now,
                "m_id": [i for i, _ in sending], "m_worker": [w for _, w in sending]}, prepare=prepare or None)
            return {r[0] for r in cur.fetchall()}
        ts = deliveries.c.updated_at.type.bind_processor(conn.dialect) or (lambda v: v)
        if rows:
            cur.executemany(_RESULT_SQL, [(st, rep, mid, srv, ts(nxt), ts(sent), ts(now), ts(dfr), i)
                                          for st, rep, mid, srv, nxt, sent, dfr, i in rows])
        marked: set[int] = set()
        for w in {w for _, w in sending}:
            ids = [i for i, ww in sending if ww == w]
            cur.execute(_SENDING_SQL.format(ids=",".join("?" * len(ids))), [ts(now), *ids, w])
            marked.update(r[0] for r in cur.fetchall())
        return marked
    finally:
        cur.close()



def unmark_sending(conn: Connection, ids: Sequence[int], worker_id: str, reply: str = "",
                   now: datetime | None = None) -> int:
    """``sending`` → ``pending`` for rows no server took because the send stopped on a
    configuration error (e.g. a login is required): the attempt is given back, nothing deferred.

    Shape: ``UPDATE deliveries SET state='pending', attempts=attempts-1, worker_id=NULL WHERE id IN
    (:ids) AND state='sending' AND worker_id=:w``."""
    if not ids:
        return 0
    now = now or utcnow()
    stmt = (
        deliveries.update()
        .where(deliveries.c.id.in_(list(ids)), _moving([D.SENDING], D.PENDING), deliveries.c.worker_id == worker_id)
        .values(state=D.PENDING, attempts=sa.case((deliveries.c.attempts > 0, deliveries.c.attempts - 1), else_=0),
                worker_id=None, last_reply=reply[:1000] or None, updated_at=now)
    )
    return conn.execute(stmt).rowcount or 0


# --- the ledger: release and recover ------------------------------------------------------------
def release_claimed(conn: Connection, campaign_id: int, worker_id: str, now: datetime | None = None,
                    *, cancelled: bool = False) -> int:
    """Give a worker's ``claimed`` (never handed to a server) rows back: ``claimed`` → ``pending``
    (or ``skipped`` when the campaign was cancelled meanwhile, so its counts stay truthful).

    Shape: ``UPDATE deliveries SET state='pending', worker_id=NULL WHERE campaign_id=:c AND
    worker_id=:w AND state='claimed'``. Run on clean shutdown, and for a worker found dead."""
    now = now or utcnow()
    to = D.SKIPPED if cancelled else D.PENDING
    values: dict = {"state": to, "worker_id": None, "updated_at": now}
    if cancelled:
        values["last_reply"] = CANCELLED_REPLY
    stmt = (
        deliveries.update()
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.worker_id == worker_id, _moving([D.CLAIMED], to))
        .values(**values)
    )
    return conn.execute(stmt).rowcount or 0


def sending_by_worker(conn: Connection, campaign_id: int) -> dict[str | None, int]:
    """{worker id: copies in ``sending``} of a campaign (to tell in-flight copies from ambiguous ones)."""
    d = deliveries.c
    return {w: int(n) for w, n in conn.execute(select(d.worker_id, func.count()).where(
        d.campaign_id == campaign_id, d.state == D.SENDING).group_by(d.worker_id))}


def workers_holding_rows(conn: Connection, campaign_id: int) -> list[str]:
    """Distinct worker ids with ``claimed`` or ``sending`` rows in the campaign (to check liveness)."""
    q = (
        select(deliveries.c.worker_id)
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state.in_((D.CLAIMED, D.SENDING)),
               deliveries.c.worker_id.is_not(None))
        .distinct()
    )
    return [r[0] for r in conn.execute(q)]


def ambiguous_rows(conn: Connection, campaign_id: int, live_workers: Iterable[str]) -> list[sa.Row]:
    """``sending`` rows whose worker is gone: handed to a server, outcome never recorded.

    Shape: ``SELECT id, email, worker_id, updated_at FROM deliveries WHERE campaign_id=:c AND
    state='sending' AND worker_id NOT IN (:live)``. These are the only rows a crash can leave
    ambiguous; they are reported by address and not resent unless asked."""
    live = list(live_workers)
    cond = [deliveries.c.campaign_id == campaign_id, deliveries.c.state == D.SENDING]
    if live:
        cond.append(or_(deliveries.c.worker_id.is_(None), deliveries.c.worker_id.not_in(live)))
    q = select(deliveries.c.id, deliveries.c.email, deliveries.c.worker_id, deliveries.c.updated_at).where(*cond).order_by(deliveries.c.id)
    return list(conn.execute(q))


def requeue_ambiguous(conn: Connection, ids: Sequence[int], now: datetime | None = None) -> int:
    """``sending`` → ``pending`` for the given ambiguous rows (``--resend-ambiguous``): they go again,
    with the same Message-ID so the receiving side can recognise the duplicate."""
    if not ids:
        return 0
    now = now or utcnow()
    stmt = (
        deliveries.update()
        .where(deliveries.c.id.in_(list(ids)), _moving([D.SENDING], D.PENDING))
        .values(state=D.PENDING, worker_id=None, last_reply="resent after an interrupted send", updated_at=now)
    )
    return conn.execute(stmt).rowcount or 0


# --- ledger reads -------------------------------------------------------------------------------
def counts_by_state(conn: Connection, campaign_id: int) -> dict[str, int]:
    """``{state: n}`` for the campaign's ledger. Shape: ``SELECT state, count(*) ... GROUP BY state``."""
    q = select(deliveries.c.state, func.count()).where(deliveries.c.campaign_id == campaign_id).group_by(deliveries.c.state)
    return {s: int(n) for s, n in conn.execute(q)}


def next_retry_at(conn: Connection, campaign_id: int) -> datetime | None:
    """When the earliest deferred row becomes due (None when none is deferred)."""
    q = select(func.min(deliveries.c.next_attempt_at)).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.state == D.DEFERRED
    )
    v = conn.execute(q).scalar()
    if v is not None and v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v


def delivery_rows(conn: Connection, campaign_id: int, states: Iterable[str] | None = None, limit: int | None = None) -> list[sa.Row]:
    """Ledger rows of a campaign (optionally in some states), for display and reports."""
    q = select(
        deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.email, deliveries.c.state, deliveries.c.attempts,
        deliveries.c.last_reply, deliveries.c.message_id, deliveries.c.updated_at, deliveries.c.sent_at,
        deliveries.c.worker_id,
    ).where(deliveries.c.campaign_id == campaign_id)
    if states:
        q = q.where(deliveries.c.state.in_(list(states)))
    q = q.order_by(deliveries.c.id)
    if limit:
        q = q.limit(limit)
    return list(conn.execute(q))


def sent_since(conn: Connection, since: datetime) -> list[datetime]:
    """``sent_at`` of every copy sent (any campaign) since ``since``: seeds provider quota windows
    so a restarted sender still knows how much of today's allowance is used."""
    q = select(deliveries.c.sent_at).where(deliveries.c.state == D.SENT, deliveries.c.sent_at >= since)
    return [r[0] for r in conn.execute(q)]


def campaign_sent_since(conn: Connection, campaign_id: int, since: datetime) -> int:
    """How many copies of a campaign were sent since ``since`` (its live rate on the admin page)."""
    d = deliveries.c
    return int(conn.execute(select(func.count()).where(d.campaign_id == campaign_id, d.state == D.SENT,
                                                       d.sent_at >= since)).scalar_one())
