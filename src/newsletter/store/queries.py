"""The SQL that matters for sending, in one readable place (like listmonk's queries.sql).

Every function takes an open SQLAlchemy ``Connection`` (the caller owns the transaction) and
runs one statement whose shape and reason its docstring gives. The delivery ledger
(``deliveries``) has one row per (campaign, subscriber); see ``campaign_models`` for its states.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy import and_, bindparam, exists, func, literal, not_, or_, select
from sqlalchemy.engine import Connection

from .campaign_models import Campaign, CampaignImage, CampaignList, Delivery
from .models import Subscriber, Subscription, utcnow
from .segments import campaign_condition
from .suppressions import suppressed_condition

campaigns = Campaign.__table__
campaign_lists = CampaignList.__table__
campaign_images = CampaignImage.__table__
deliveries = Delivery.__table__
subscribers = Subscriber.__table__
subscriptions = Subscription.__table__

CLAIMABLE = ("pending", "deferred")
UNFINISHED = ("pending", "claimed", "sending", "deferred")


def _claimable(campaign_id: int, now: datetime):
    return and_(
        deliveries.c.campaign_id == campaign_id,
        or_(
            deliveries.c.state == "pending",
            and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now),
        ),
    )


def _still_wanted(campaign_id: int):
    """True for a ledger row whose subscriber is still active on a target list and not suppressed."""
    active = exists(
        select(literal(1))
        .select_from(subscriptions.join(campaign_lists, campaign_lists.c.list_id == subscriptions.c.list_id))
        .where(
            campaign_lists.c.campaign_id == campaign_id,
            subscriptions.c.subscriber_id == deliveries.c.subscriber_id,
            subscriptions.c.status == "active",
        )
    )
    key = (select(subscribers.c.email_key).where(subscribers.c.id == deliveries.c.subscriber_id)
           .correlate(deliveries).scalar_subquery())
    return and_(active, not_(suppressed_condition(key)))


def _segment_condition(conn: Connection, campaign_id: int, now: datetime | None = None):
    """The campaign's segment filter (recorded in its meta at creation), or None: a segment
    narrows the audience at ledger time only; unsubscribe and suppression stay the list's."""
    meta = conn.execute(select(campaigns.c.meta).where(campaigns.c.id == campaign_id)).scalar()
    return campaign_condition(conn, meta, now)


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


LEDGER_CHUNK = 5000


def create_ledger(conn: Connection, campaign_id: int, now: datetime | None = None) -> int:
    """Insert one ``pending`` row per subscriber active on any target list and not suppressed.

    Shape: ``INSERT INTO deliveries (...) SELECT ... GROUP BY subscriber ON CONFLICT DO NOTHING``
    — a reader on two target lists gets one row (with the lowest list id, whose unsubscribe link
    the copy carries), and running it twice adds nothing: the unique (campaign, subscriber) key
    is what makes "one copy per reader" a database fact. Run in subscriber-id ranges of
    LEDGER_CHUNK so memory stays flat however large the lists (one transaction: the caller's).
    Returns the number of rows added."""
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
        added += _create_ledger_range(conn, campaign_id, now, start, start + step, seg)
    return added


def _create_ledger_range(conn: Connection, campaign_id: int, now: datetime, start: int, stop: int, seg=None) -> int:
    """One id range of :func:`create_ledger`."""
    src = (
        select(
            literal(campaign_id).label("campaign_id"),
            subscribers.c.id.label("subscriber_id"),
            func.min(subscriptions.c.list_id).label("list_id"),
            subscribers.c.email,
            literal("pending").label("state"),
            literal(0).label("attempts"),
            literal(now, Delivery.__table__.c.created_at.type).label("created_at"),
            literal(now, Delivery.__table__.c.updated_at.type).label("updated_at"),
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
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(deliveries).from_select(cols, src).on_conflict_do_nothing(
        index_elements=["campaign_id", "subscriber_id"]
    )
    return max(conn.execute(stmt).rowcount or 0, 0)


def claim_batch(conn: Connection, campaign_id: int, worker_id: str, limit: int, now: datetime | None = None) -> list[int]:
    """Take up to ``limit`` claimable rows for ``worker_id``: pending ones first, then deferred
    ones whose retry time has come.

    Shape on PostgreSQL: ``UPDATE deliveries SET state='claimed', worker_id=:w WHERE id IN
    (SELECT id FROM deliveries WHERE campaign_id=:c AND state='pending' ORDER BY id LIMIT :n
    FOR UPDATE SKIP LOCKED) RETURNING id`` — concurrent workers skip each other's locked rows
    instead of waiting, so several processes share one campaign without ever claiming a row
    twice. The (campaign_id, state, id) index makes each claim a short range scan, whatever the
    size of the campaign. On SQLite the same statement runs under the campaign lock (one sender
    at a time), where no row locks are needed. Returns the ids."""
    now = now or utcnow()
    ids: list[int] = []
    for cond in (deliveries.c.state == "pending",
                 and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now)):
        want = limit - len(ids)
        if want <= 0:
            break
        sub = (select(deliveries.c.id).where(deliveries.c.campaign_id == campaign_id, cond)
               .order_by(deliveries.c.id).limit(want))
        if conn.dialect.name == "postgresql":
            sub = sub.with_for_update(skip_locked=True)
        stmt = (
            deliveries.update()
            .where(deliveries.c.id.in_(sub.scalar_subquery()))
            .values(state="claimed", worker_id=worker_id, updated_at=now)
            .returning(deliveries.c.id)
        )
        ids.extend(r[0] for r in conn.execute(stmt))
    return sorted(ids)


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
            deliveries.c.state.in_(("claimed", "pending", "deferred")),
            not_(_still_wanted(campaign_id)),
        )
        .values(state="skipped", last_reply="not sent: unsubscribed or suppressed since the campaign started",
                worker_id=None, updated_at=now)
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
            deliveries.c.state == "claimed",
            deliveries.c.worker_id == worker_id,
            not_(_still_wanted(campaign_id)),
        )
        .values(state="skipped", last_reply="not sent: unsubscribed or suppressed since the campaign started",
                worker_id=None, updated_at=now)
        .returning(deliveries.c.id)
    )
    return [r[0] for r in conn.execute(stmt)]


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
        )
        .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id))
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == "claimed")
        .order_by(deliveries.c.id)
    )
    return list(conn.execute(q))


_mark_sending = (
    deliveries.update()
    .where(deliveries.c.id == bindparam("b_id"), deliveries.c.state == "claimed", deliveries.c.worker_id == bindparam("b_worker"))
    .values(state="sending", attempts=deliveries.c.attempts + 1, updated_at=bindparam("b_now"))
)


def mark_sending(conn: Connection, items: Iterable[tuple[int, str]], now: datetime | None = None) -> int:
    """``claimed`` → ``sending`` for (id, worker_id) pairs, committed before the message goes out.

    Shape: ``UPDATE deliveries SET state='sending', attempts=attempts+1 WHERE id=:id AND
    state='claimed' AND worker_id=:w`` (executemany). From here on a crash leaves the row
    ambiguous: the server may have taken the message. A sender commits this together with the
    previous message's result, so each connection has at most one such row at any moment."""
    now = now or utcnow()
    params = [{"b_id": i, "b_worker": w, "b_now": now} for i, w in items]
    if not params:
        return 0
    return conn.execute(_mark_sending, params).rowcount or 0


_mark_result = (
    deliveries.update()
    .where(deliveries.c.id == bindparam("b_id"), deliveries.c.state == "sending")
    .values(
        state=bindparam("b_state"), last_reply=bindparam("b_reply"), message_id=bindparam("b_msgid"),
        server=bindparam("b_server"), next_attempt_at=bindparam("b_next"), sent_at=bindparam("b_sent"),
        updated_at=bindparam("b_now"), worker_id=None,
        first_deferred_at=func.coalesce(deliveries.c.first_deferred_at, bindparam("b_first")),
    )
)


def mark_results(conn: Connection, results: Iterable[dict], now: datetime | None = None) -> int:
    """Record outcomes of ``sending`` rows: ``sent``, ``failed`` (permanent) or ``deferred``.

    Shape: ``UPDATE deliveries SET state=:state, last_reply=:reply, message_id=:msgid,
    next_attempt_at=:next, sent_at=:sent WHERE id=:id AND state='sending'`` (executemany).
    Each result is a dict with id, state, reply and optionally message_id, server, next_attempt_at."""
    now = now or utcnow()
    params = [
        {
            "b_id": r["id"], "b_state": r["state"], "b_reply": (r.get("reply") or "")[:1000],
            "b_msgid": r.get("message_id"), "b_server": r.get("server"),
            "b_next": r.get("next_attempt_at") if r["state"] == "deferred" else None,
            "b_sent": now if r["state"] == "sent" else None, "b_now": now,
            "b_first": now if r["state"] == "deferred" else None,
        }
        for r in results
    ]
    if not params:
        return 0
    return conn.execute(_mark_result, params).rowcount or 0


def release_claimed(conn: Connection, campaign_id: int, worker_id: str, now: datetime | None = None,
                    *, cancelled: bool = False) -> int:
    """Give a worker's ``claimed`` (never handed to a server) rows back: ``claimed`` → ``pending``
    (or ``skipped`` when the campaign was cancelled meanwhile, so its counts stay truthful).

    Shape: ``UPDATE deliveries SET state='pending', worker_id=NULL WHERE campaign_id=:c AND
    worker_id=:w AND state='claimed'``. Run on clean shutdown, and for a worker found dead."""
    now = now or utcnow()
    values = {"state": "pending", "worker_id": None, "updated_at": now}
    if cancelled:
        values.update(state="skipped", last_reply="not sent: campaign cancelled")
    stmt = (
        deliveries.update()
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.worker_id == worker_id, deliveries.c.state == "claimed")
        .values(**values)
    )
    return conn.execute(stmt).rowcount or 0


def workers_holding_rows(conn: Connection, campaign_id: int) -> list[str]:
    """Distinct worker ids with ``claimed`` or ``sending`` rows in the campaign (to check liveness)."""
    q = (
        select(deliveries.c.worker_id)
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state.in_(("claimed", "sending")),
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
    cond = [deliveries.c.campaign_id == campaign_id, deliveries.c.state == "sending"]
    if live:
        cond.append(or_(deliveries.c.worker_id.is_(None), deliveries.c.worker_id.not_in(live)))
    q = select(deliveries.c.id, deliveries.c.email, deliveries.c.worker_id, deliveries.c.updated_at).where(*cond).order_by(deliveries.c.id)
    return list(conn.execute(q))


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
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == "sending", deliveries.c.worker_id == worker_id)
        .values(state="pending", attempts=sa.case((deliveries.c.attempts > 0, deliveries.c.attempts - 1), else_=0),
                worker_id=None, last_reply=reply[:1000] or None, updated_at=now)
    )
    return conn.execute(stmt).rowcount or 0


def requeue_ambiguous(conn: Connection, ids: Sequence[int], now: datetime | None = None) -> int:
    """``sending`` → ``pending`` for the given ambiguous rows (``--resend-ambiguous``): they go again,
    with the same Message-ID so the receiving side can recognise the duplicate."""
    if not ids:
        return 0
    now = now or utcnow()
    stmt = (
        deliveries.update()
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.state == "sending")
        .values(state="pending", worker_id=None, last_reply="resent after an interrupted send", updated_at=now)
    )
    return conn.execute(stmt).rowcount or 0


def counts_by_state(conn: Connection, campaign_id: int) -> dict[str, int]:
    """``{state: n}`` for the campaign's ledger. Shape: ``SELECT state, count(*) ... GROUP BY state``."""
    q = select(deliveries.c.state, func.count()).where(deliveries.c.campaign_id == campaign_id).group_by(deliveries.c.state)
    return {s: int(n) for s, n in conn.execute(q)}


def next_retry_at(conn: Connection, campaign_id: int) -> datetime | None:
    """When the earliest deferred row becomes due (None when none is deferred)."""
    q = select(func.min(deliveries.c.next_attempt_at)).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.state == "deferred"
    )
    v = conn.execute(q).scalar()
    if v is not None and v.tzinfo is None:
        from datetime import timezone

        v = v.replace(tzinfo=timezone.utc)
    return v


def delivery_rows(conn: Connection, campaign_id: int, states: Iterable[str] | None = None, limit: int | None = None) -> list[sa.Row]:
    """Ledger rows of a campaign (optionally in some states), for display and reports."""
    q = select(
        deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.email, deliveries.c.state, deliveries.c.attempts,
        deliveries.c.last_reply, deliveries.c.message_id, deliveries.c.updated_at, deliveries.c.sent_at,
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
    q = select(deliveries.c.sent_at).where(deliveries.c.state == "sent", deliveries.c.sent_at >= since)
    return [r[0] for r in conn.execute(q)]


# --- campaign-level -----------------------------------------------------------------------------
def acquire_campaign_lock(conn: Connection, campaign_id: int, owner: str, stale_before: datetime,
                          now: datetime | None = None, *, take_from: str | None = None) -> bool:
    """Make ``owner`` the campaign's single sender (SQLite) unless a live sender holds it.

    Shape: ``UPDATE campaigns SET lock_owner=:o, lock_heartbeat_at=:now WHERE id=:c AND
    (lock_owner IS NULL OR lock_owner=:o OR lock_heartbeat_at < :stale OR lock_owner=:dead)``;
    one row updated means the lock is ours. ``take_from`` names an owner known to be dead."""
    now = now or utcnow()
    cond = [campaigns.c.lock_owner.is_(None), campaigns.c.lock_owner == owner, campaigns.c.lock_heartbeat_at < stale_before]
    if take_from:
        cond.append(campaigns.c.lock_owner == take_from)
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, or_(*cond)).values(lock_owner=owner, lock_heartbeat_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def heartbeat_campaign_lock(conn: Connection, campaign_id: int, owner: str, now: datetime | None = None) -> bool:
    """Refresh the lock's heartbeat; False when someone else took it (we must stop)."""
    now = now or utcnow()
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.lock_owner == owner).values(lock_heartbeat_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def release_campaign_lock(conn: Connection, campaign_id: int, owner: str) -> None:
    """Drop the lock if we hold it."""
    conn.execute(
        campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.lock_owner == owner)
        .values(lock_owner=None, lock_heartbeat_at=None)
    )


def campaign_status(conn: Connection, campaign_id: int) -> str | None:
    """The campaign's status now (another process may have paused or cancelled it)."""
    return conn.execute(select(campaigns.c.status).where(campaigns.c.id == campaign_id)).scalar()


def set_campaign_status(conn: Connection, campaign_id: int, allowed_from: Iterable[str], to: str,
                        now: datetime | None = None, reason: str | None = None, **times) -> bool:
    """Compare-and-set the campaign status: ``UPDATE campaigns SET status=:to WHERE id=:c AND
    status IN (:allowed_from)``. False when another process changed it first."""
    now = now or utcnow()
    values = {"status": to, "updated_at": now, **times}
    if reason is not None:
        values["status_reason"] = reason
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.status.in_(list(allowed_from))).values(**values)
    return (conn.execute(stmt).rowcount or 0) == 1


def campaigns_paused_with(conn: Connection, prefix: str) -> list[int]:
    """Ids of paused campaigns whose status reason starts with ``prefix`` (an auto-pause kind)."""
    return [r[0] for r in conn.execute(select(campaigns.c.id).where(
        campaigns.c.status == "paused", campaigns.c.status_reason.startswith(prefix, autoescape=True))
        .order_by(campaigns.c.id))]


def resume_paused_with(conn: Connection, campaign_id: int, prefix: str, now: datetime | None = None) -> bool:
    """Compare-and-set ``paused`` → ``running`` only while the reason still starts with ``prefix``:
    ``UPDATE campaigns SET status='running', status_reason='' WHERE id=:c AND status='paused' AND
    status_reason LIKE :prefix%`` (a pause by a user meanwhile changed the reason: no match)."""
    now = now or utcnow()
    stmt = campaigns.update().where(
        campaigns.c.id == campaign_id, campaigns.c.status == "paused",
        campaigns.c.status_reason.startswith(prefix, autoescape=True)).values(
        status="running", status_reason="", updated_at=now, finished_at=None)
    return (conn.execute(stmt).rowcount or 0) == 1


# --- the per-message hot path -----------------------------------------------------------------
_RESULT_SQL = (
    "UPDATE deliveries SET state={p}, last_reply={p}, message_id={p}, server={p}, next_attempt_at={p}, "
    "sent_at={p}, updated_at={p}, worker_id=NULL, first_deferred_at=COALESCE(first_deferred_at, {p}) "
    "WHERE id={p} AND state='sending'"
)
_SENDING_SQL = (
    "UPDATE deliveries SET state='sending', attempts=attempts+1, updated_at={p} "
    "WHERE id={p} AND state='claimed' AND worker_id={p}"
)


def record_and_mark_sending(conn: Connection, results: Sequence[dict], sending: Sequence[tuple[int, str]],
                            now: datetime | None = None) -> None:
    """Record finished messages and mark the next ones ``sending`` in the caller's transaction.

    The same statements as :func:`mark_results` and :func:`mark_sending`, run as driver-level
    ``executemany`` because this happens once per message: a sender commits the previous
    message's result together with the next message's ``sending`` mark, so a crash never leaves
    more than one unknown outcome per connection, at the price of one commit per message."""
    now = now or utcnow()
    dialect = conn.dialect
    p = "?" if dialect.paramstyle == "qmark" else "%s"
    ts = deliveries.c.updated_at.type.bind_processor(dialect) or (lambda v: v)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        if results:
            stamp = ts(now)
            cur.executemany(_RESULT_SQL.format(p=p), [
                (r["state"], (r.get("reply") or "")[:1000], r.get("message_id"), r.get("server"),
                 ts(r.get("next_attempt_at")) if r["state"] == "deferred" and r.get("next_attempt_at") else None,
                 stamp if r["state"] == "sent" else None, stamp, stamp if r["state"] == "deferred" else None, r["id"])
                for r in results
            ])
        if sending:
            stamp = ts(now)
            cur.executemany(_SENDING_SQL.format(p=p), [(stamp, i, w) for i, w in sending])
    finally:
        cur.close()


# --- schedule: recurring digests ------------------------------------------------------------------

def claim_due_digest(conn: Connection, now: datetime, exclude_ids: Iterable[int] = ()) -> int | None:
    """The id of the most overdue active digest whose next run is at or before ``now``, row-locked
    until the caller's transaction ends. ``FOR UPDATE SKIP LOCKED`` makes concurrent workers on
    PostgreSQL take different digests instead of queueing behind one another; the lock is held
    while the occurrence is composed and its campaign recorded, so no other worker runs the same
    digest meanwhile (SQLite ignores the clause: there, one worker runs at a time).
    ``exclude_ids`` are digests this pass already handled."""
    from .digest_models import RecurringDigest

    digests = RecurringDigest.__table__
    stmt = (
        select(digests.c.id)
        .where(digests.c.paused == sa.false(), digests.c.next_run_at.is_not(None), digests.c.next_run_at <= now)
        .order_by(digests.c.next_run_at, digests.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    ids = list(exclude_ids)
    if ids:
        stmt = stmt.where(digests.c.id.not_in(ids))
    return conn.execute(stmt).scalar()
