"""A/B subject tests (SQLModel table): one ``ab_tests`` row per tested campaign.

The variants (subjects, optionally an intro line each) and the test's settings are fixed at
creation; ``tested_at``, ``decided_at``, ``winner`` and ``decision`` (the numbers the winner was
chosen on) are set once, by compare-and-set, by the worker that makes the decision. Which reader
got which variant is the ledger's ``deliveries.variant``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow

WINNER_METRICS = ("clicks", "opens")


class ABTest(SQLModel, table=True):
    """A campaign's subject test: variants, share, wait, metric, and the decision once made."""

    __tablename__ = "ab_tests"
    __table_args__ = (
        sa.CheckConstraint("winner_by in ('clicks', 'opens')", name="ck_ab_tests_winner_by"),
        sa.CheckConstraint("test_share > 0 and test_share < 10000", name="ck_ab_tests_test_share"),
    )

    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], primary_key=True)
    # [{"subject": ..., "intro": ...}, ...]: variant 0 is A (the campaign's own subject), up to 4.
    variants: list = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    test_share: int = Field(nullable=False)  # basis points of the audience in the test (2000 = 20 %)
    wait_seconds: int = Field(nullable=False)  # from the test's last copy handed over to the decision
    winner_by: str = Field(default="clicks", sa_type=sa.String(8), nullable=False)
    min_sample: int = Field(default=50, nullable=False)  # delivered copies per variant for a decision on data
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    tested_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    decided_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    winner: Optional[int] = Field(default=None, nullable=True)
    decision: Optional[dict] = Field(default=None, sa_type=sa.JSON(), nullable=True)
