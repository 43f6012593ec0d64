"""The per-message ledger statement and its group commit, on SQLite and PostgreSQL.

``record_and_mark_sending`` records results and marks the next copies ``sending`` in one call
(on PostgreSQL one statement) and returns the ids it marked: a copy no longer claimed by the
caller is not marked, and its sender must not send it. ``GroupCommit`` hands every lane its own
marks back, with one ledger connection on SQLite and several on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.campaigns import transition
from newsletter.dispatch.group_commit import GroupCommit
from newsletter.store import queries as q

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def ledger(db_url, tmp_path):
    """An engine and a running campaign of 12 copies, all claimed by worker w1."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    add_people(engine, "weekly", 12)
    c = make_campaign(engine, config)
    with engine.begin() as conn:
        assert q.create_ledger(conn, c.id, now=T0) == 12  # rows added, on both databases
        transition(conn, c.id, "running", now=T0)
        ids = q.claim_batch(conn, c.id, "w1", 100, now=T0)
    yield engine, c.id, ids
    engine.dispose()


def rows(engine, ids):
    d = q.deliveries.c
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(d.id, d.state, d.attempts, d.worker_id, d.sent_at, d.message_id,
                                                     d.server, d.last_reply, d.next_attempt_at, d.first_deferred_at)
                                              .where(d.id.in_(ids)))}


def test_only_copies_claimed_by_the_caller_are_marked_and_results_land_with_the_next_marks(ledger):
    engine, _, ids = ledger
    a, b, c = ids[:3]
    with engine.begin() as conn:
        marked = q.record_and_mark_sending(conn, [], [(a, "w1"), (b, "someone-else")], now=T0)
    assert marked == {a}
    r = rows(engine, [a, b])
    assert (r[a].state, r[a].attempts) == ("sending", 1)
    assert (r[b].state, r[b].attempts, r[b].worker_id) == ("claimed", 0, "w1")  # not ours to send: untouched

    later = T0 + timedelta(seconds=5)
    retry = T0 + timedelta(minutes=1)
    with engine.begin() as conn:
        marked = q.record_and_mark_sending(conn, [
            {"id": a, "state": "sent", "reply": "250 ok", "message_id": "<m1@x>", "server": "relay"}], [(b, "w1")],
            now=later)
    assert marked == {b}
    with engine.begin() as conn:
        marked = q.record_and_mark_sending(conn, [
            {"id": b, "state": "deferred", "reply": "451 later", "next_attempt_at": retry},
            {"id": c, "state": "sent", "reply": "250 ok"}],  # c was never marked sending: no result lands
            [(b, "w1")], now=later)
    assert marked == set()  # b is no longer claimed: a result came first
    r = rows(engine, [a, b, c])
    assert (r[a].state, r[a].sent_at, r[a].message_id, r[a].server, r[a].worker_id) == (
        "sent", later, "<m1@x>", "relay", None)
    assert (r[b].state, r[b].next_attempt_at, r[b].first_deferred_at, r[b].last_reply, r[b].sent_at) == (
        "deferred", retry, later, "451 later", None)
    assert r[c].state == "claimed"


def test_a_result_that_is_not_a_result_state_is_refused_and_nothing_changes(ledger):
    engine, _, ids = ledger
    with engine.begin() as conn:
        q.record_and_mark_sending(conn, [], [(ids[0], "w1")], now=T0)
    with pytest.raises(ValueError, match="'pending' is not the result of a send"):
        with engine.begin() as conn:
            q.record_and_mark_sending(conn, [{"id": ids[0], "state": "pending", "reply": ""}], [(ids[1], "w1")], now=T0)
    r = rows(engine, ids[:2])
    assert (r[ids[0]].state, r[ids[1]].state) == ("sending", "claimed")


def test_concurrent_lanes_each_get_their_own_marks_back(ledger):
    """Twelve lanes mark and record at once through one GroupCommit (two ledger connections on
    PostgreSQL): each gets exactly its own copy back, every result lands, and rows another
    worker holds are never marked."""
    engine, _, ids = ledger
    committed: list[int] = []
    gc = GroupCommit(engine, "w1", lambda failed: None, committed.append, slots=2)
    start = threading.Barrier(len(ids))
    got: dict[int, set[int]] = {}
    errors: list[BaseException] = []

    def lane(i: int) -> None:
        try:
            start.wait(10)
            got[i] = gc.run(sending=[i])
            gc.run(results=[{"id": i, "state": "sent", "reply": "250 ok"}])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=lane, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    gc.close()
    assert not errors
    assert got == {i: {i} for i in ids}
    assert sum(committed) == len(ids)
    assert {r.state for r in rows(engine, ids).values()} == {"sent"}
    assert len(gc.free) == (2 if engine.dialect.name == "postgresql" else 1)
    gc2 = GroupCommit(engine, "w2", lambda failed: None, lambda n: None, slots=2)
    try:
        assert gc2.run(sending=ids[:1]) == set()  # a row in `sent` is nobody's to mark
    finally:
        gc2.close()


SYNC_SHOWN = {("postgresql", "full"): "on", ("postgresql", "normal"): "off",
              ("sqlite", "full"): 2, ("sqlite", "normal"): 1}  # SQLite: PRAGMA synchronous gives 2 (FULL), 1 (NORMAL)


def _sync_of(conn, dialect):
    return conn.exec_driver_sql("SHOW synchronous_commit" if dialect == "postgresql"
                                else "PRAGMA synchronous").scalar()


@pytest.mark.parametrize("sync", ["full", "normal", ""])
def test_ledger_sync_is_set_on_the_ledger_connection_alone_and_reset_when_it_goes_back(ledger, sync):
    """ledger_sync decides what a committed mark survives; the default is full on PostgreSQL and
    normal on SQLite, and the pool gets its connection back with the engine's own setting."""
    engine, _, ids = ledger
    dialect = engine.dialect.name
    want = sync or ("full" if dialect == "postgresql" else "normal")
    gc = GroupCommit(engine, "w1", lambda failed: None, lambda n: None, sync=sync)
    assert gc.run(sending=[ids[0]]) == {ids[0]}
    ledger_conn = gc.free[0]
    assert ledger_conn is not None
    assert _sync_of(ledger_conn, dialect) == SYNC_SHOWN[(dialect, want)]
    raw = ledger_conn.connection.dbapi_connection
    gc.close()
    with engine.connect() as conn:  # the pool's only idle connection: the ledger's, handed out again
        assert conn.connection.dbapi_connection is raw
        assert _sync_of(conn, dialect) == SYNC_SHOWN[(dialect, "full" if dialect == "postgresql" else "normal")]


def test_on_postgresql_the_group_statement_is_planned_once_per_send_and_forgotten_after(ledger):
    """Planning the group statement afresh for each group cost the server about half of its CPU
    per message (docs/benchmarks.md): the ledger connection prepares it once with a generic plan,
    used by every group of the send, and gives the pool its connection back without it."""
    engine, _, ids = ledger
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans in the sender's own process; there is no server to prepare on")
    gc = GroupCommit(engine, "w1", lambda failed: None, lambda n: None)
    previous: list[dict] = []
    for i in ids[:6]:  # a result and the next mark per group, as the lanes send them
        assert gc.run(results=previous, sending=[i]) == {i}
        previous = [{"id": i, "state": "sent", "reply": "250 ok"}]
    assert gc.run(results=previous) == set()
    ledger_conn = gc.free[0]
    assert ledger_conn is not None
    prepared = ledger_conn.exec_driver_sql(
        "select statement, generic_plans, custom_plans from pg_prepared_statements").all()
    # one prepared statement per shape of parameters psycopg sees (e.g. no results yet), each
    # planned once: every group ran on a generic plan, none was planned for its own values
    assert {st.lstrip()[:18] for st, _, _ in prepared} == {"WITH v (id, state,"}
    assert (sum(g for _, g, _ in prepared), sum(c for _, _, c in prepared)) == (7, 0)
    raw = ledger_conn.connection.dbapi_connection
    gc.close()
    with engine.connect() as conn:  # the pool's only idle connection: the ledger's, handed out again
        assert conn.connection.dbapi_connection is raw
        assert conn.exec_driver_sql("select count(*) from pg_prepared_statements").scalar() == 0
        assert conn.exec_driver_sql("show plan_cache_mode").scalar() == "auto"
        assert raw.prepare_threshold is None  # the engine's own: nothing else gets prepared
    states = rows(engine, ids[:7])
    assert [states[i].state for i in ids[:7]] == ["sent"] * 6 + ["claimed"]


def test_a_ledger_sync_that_is_neither_full_nor_normal_is_a_one_line_config_error(tmp_path):
    from newsletter.config import load_config
    from newsletter.errors import ConfigError

    toml = tmp_path / "newsletter.toml"
    toml.write_text('ledger_sync = "fast"\n')
    with pytest.raises(ConfigError, match=r"ledger_sync: 'fast' is not full or normal"):
        load_config(toml, environ={})
    assert load_config(toml, environ={"NEWSLETTER_LEDGER_SYNC": "normal"}).ledger_sync == "normal"


def test_a_new_ledger_on_postgresql_leaves_the_planner_fresh_statistics(ledger):
    """Right after the ledger is made the table has statistics (ANALYZE in ``create_ledger``):
    with those of a never-analyzed table the planner ran the per-batch checks by ``id IN (…)`` as a
    scan of the whole (campaign, state, id) index instead of the primary key — a third of a
    PostgreSQL sender's speed until autovacuum came by (docs/benchmarks.md)."""
    engine, cid, ids = ledger
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's planner keeps no statistics of its own")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select reltuples from pg_class where relname = 'deliveries'").scalar() == len(ids)


def test_the_per_batch_still_wanted_check_reads_the_batch_not_the_whole_list(pg_url, tmp_path):
    """``skip_unwanted`` checks a claimed batch against subscriptions and suppressions. On a list
    imported just before the send (no statistics yet), PostgreSQL planned that check as a walk
    of the whole list per ledger row; with statistics, as a hash of the whole list per batch
    (95 ms per batch of 100 at 300,000 readers, docs/benchmarks.md). Counted here with the
    transaction's own table counters: the rows it reads follow the batch, not the list — and it
    still skips exactly the readers who left."""
    from sqlalchemy import text

    from newsletter.store.suppressions import suppress

    engine = setup_db(pg_url)
    config = make_config(pg_url, tmp_path)
    add_people(engine, "weekly", 1)
    with engine.begin() as conn:  # 20,000 more readers in one statement, as an import would add them
        conn.execute(text(
            "INSERT INTO subscribers (email, email_key, name, attributes, created_at, updated_at) "
            "SELECT 'm' || g || '@example.com', 'm' || g || '@example.com', '', '{}', now(), now() "
            "FROM generate_series(1, 20000) AS g"))
        conn.execute(text(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at) "
            "SELECT s.id, l.id, 'active', now(), now() FROM subscribers s, lists l "
            "WHERE s.email LIKE 'm%' AND l.slug = 'weekly'"))
    c = make_campaign(engine, config)
    with engine.begin() as conn:
        assert q.create_ledger(conn, c.id, now=T0) == 20001
        transition(conn, c.id, "running", now=T0)
        ids = q.claim_batch(conn, c.id, "w1", 100, now=T0)
        gone = conn.execute(text("SELECT id FROM subscribers WHERE email IN ('m5@example.com', 'm7@example.com')")).scalars().all()
        conn.execute(text("UPDATE subscriptions SET status = 'unsubscribed' WHERE subscriber_id = :s"), {"s": gone[0]})
    suppress(engine, "m7@example.com")

    def read(conn) -> int:  # rows of subscriptions read so far in this transaction, by any scan
        return int(conn.execute(text("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                                     "FROM pg_stat_xact_user_tables WHERE relname = 'subscriptions'")).scalar_one())

    with engine.begin() as conn:
        before = read(conn)
        skipped = q.skip_unwanted(conn, c.id, ids, now=T0)
        reads = read(conn) - before
    assert skipped == 2
    assert reads <= 3 * len(ids), f"{reads} rows of subscriptions read to check a batch of {len(ids)}"
    d = q.deliveries.c
    with engine.connect() as conn:
        skipped_for = set(conn.execute(select(d.subscriber_id).where(d.state == "skipped")).scalars())
    assert skipped_for == set(gone)
    engine.dispose()


def test_a_claim_starts_past_the_senders_last_one_and_still_takes_a_copy_given_back_behind_it(db_url, tmp_path):
    """``claim_batch(after=…)``: the scan starts past the caller's highest claimed id (on
    PostgreSQL the index holds an entry for every copy claimed until VACUUM: 160 ms per claim
    after 290,000 copies from the start, 2 ms from the last claim). A copy handed back behind
    that point (another worker's clean stop) is taken once nothing is left past it."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    add_people(engine, "weekly", 10)
    c = make_campaign(engine, config)
    with engine.begin() as conn:
        q.create_ledger(conn, c.id, now=T0)
        transition(conn, c.id, "running", now=T0)
        other = q.claim_batch(conn, c.id, "w2", 2, now=T0)  # another worker's claim, at the front
        first = q.claim_batch(conn, c.id, "w1", 3, now=T0, after=0)
    assert len(first) == 3 and min(first) > max(other)
    with engine.begin() as conn:
        assert q.release_claimed(conn, c.id, "w2", now=T0) == 2  # given back, behind w1's last claim
        past = q.claim_batch(conn, c.id, "w1", 3, now=T0, after=max(first))
    assert len(past) == 3 and min(past) > max(first)  # not the two behind: rows past the point came first
    with engine.begin() as conn:
        rest = q.claim_batch(conn, c.id, "w1", 10, now=T0, after=max(past))
    assert sorted(rest) == sorted(set(rest)) and set(other) <= set(rest) and len(rest) == 4
    with engine.begin() as conn:
        assert q.claim_batch(conn, c.id, "w1", 10, now=T0, after=max(rest)) == []
        assert q.counts_by_state(conn, c.id) == {"claimed": 10}
    engine.dispose()
