"""The SQL of A/B subject tests: record a test, read it, and the two one-time moves of its row —
the test copies all handed over (``tested_at``) and the decision (``winner``) — as
compare-and-set updates, so that of several workers exactly one makes each move."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .ab_models import ABTest
from .campaign_models import Campaign
from .db import table_of
from .lifecycle import CampaignStatus
from .models import utcnow

ab_tests = table_of(ABTest)
campaigns = table_of(Campaign)


def insert_test(conn: Connection, campaign_id: int, *, variants: list[dict], test_share: int, wait_seconds: int,
                winner_by: str, min_sample: int, now: datetime | None = None) -> None:
    """Record the test of a new campaign (in the transaction that creates the campaign)."""
    conn.execute(ab_tests.insert().values(
        campaign_id=campaign_id, variants=variants, test_share=test_share, wait_seconds=wait_seconds,
        winner_by=winner_by, min_sample=min_sample, created_at=now or utcnow()))


def delete_test(conn: Connection, campaign_id: int) -> None:
    """Forget a draft's test (editing it replaces or drops the test; a draft has no results yet)."""
    conn.execute(ab_tests.delete().where(ab_tests.c.campaign_id == campaign_id))


def test_of(conn: Connection, campaign_id: int) -> ABTest | None:
    """The campaign's test, or None when it is not an A/B campaign."""
    row = conn.execute(select(ab_tests).where(ab_tests.c.campaign_id == campaign_id)).mappings().first()
    return ABTest(**row) if row is not None else None


def undecided_running(conn: Connection) -> list[ABTest]:
    """The tests of running campaigns that have no winner yet, in campaign order (for workers)."""
    rows = conn.execute(select(ab_tests).select_from(
        ab_tests.join(campaigns, campaigns.c.id == ab_tests.c.campaign_id)).where(
        campaigns.c.status == CampaignStatus.RUNNING, ab_tests.c.decided_at.is_(None)).order_by(ab_tests.c.campaign_id))
    return [ABTest(**r) for r in rows.mappings()]


def mark_tested(conn: Connection, campaign_id: int, now: datetime) -> bool:
    """Record when the test's last copy was handed over (the wait starts): once.

    Shape: ``UPDATE ab_tests SET tested_at=:now WHERE campaign_id=:c AND tested_at IS NULL``."""
    stmt = ab_tests.update().where(ab_tests.c.campaign_id == campaign_id, ab_tests.c.tested_at.is_(None)).values(
        tested_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def record_decision(conn: Connection, campaign_id: int, winner: int, decision: dict, now: datetime) -> bool:
    """Record the winner and the numbers it was chosen on, unless another worker did first.

    Shape: ``UPDATE ab_tests SET winner=:w, decision=:d, decided_at=:now WHERE campaign_id=:c AND
    decided_at IS NULL``; True when this call made the decision (then, in the same transaction,
    the caller releases the held rows: ``store.queries.release_held``)."""
    stmt = ab_tests.update().where(ab_tests.c.campaign_id == campaign_id, ab_tests.c.decided_at.is_(None)).values(
        winner=winner, decision=decision, decided_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def tested_waiting(conn: Connection) -> list[tuple[int, datetime, int]]:
    """[(campaign, tested_at, wait_seconds)] of undecided tests whose wait has started."""
    return [(c, t, w) for c, t, w in conn.execute(select(
        ab_tests.c.campaign_id, ab_tests.c.tested_at, ab_tests.c.wait_seconds).where(
        ab_tests.c.decided_at.is_(None), ab_tests.c.tested_at.is_not(None)))]
