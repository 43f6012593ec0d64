"""The tables and small conditions every statement module of ``store.queries`` shares."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import and_, exists, literal, not_, select
from sqlalchemy.engine import Connection

from ..campaign_models import Campaign, CampaignImage, CampaignList, Delivery
from ..db import table_of
from ..lifecycle import DeliveryState, delivery_sources
from ..models import MailingList, Subscriber, Subscription
from ..segments import campaign_condition
from ..suppressions import suppressed_condition




campaigns = table_of(Campaign)
campaign_lists = table_of(CampaignList)
campaign_images = table_of(CampaignImage)
deliveries = table_of(Delivery)
subscribers = table_of(Subscriber)
subscriptions = table_of(Subscription)
lists = table_of(MailingList)

D = DeliveryState
LEDGER_CHUNK = 5000
UNWANTED_REPLY = "not sent: unsubscribed or suppressed since the campaign started"
CANCELLED_REPLY = "not sent: campaign cancelled"


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
        # OFFSET 0 keeps this a per-row probe of the (subscriber, list) index. Without it PostgreSQL
        # turns an EXISTS under NOT/OR into a hashed subplan of every active subscription of the
        # lists: a scan of the whole list for each batch of 100 rows (11 ms at 30,000 readers,
        # growing with the list). An EXISTS with an OFFSET is left as it is written.
        .offset(0)
    )
    key = (select(subscribers.c.email_key).where(subscribers.c.id == deliveries.c.subscriber_id)
           .correlate(deliveries).scalar_subquery())
    return and_(active, not_(suppressed_condition(key)))


def _segment_condition(conn: Connection, campaign_id: int, now: datetime | None = None):
    """The campaign's segment filter (recorded in its meta at creation), or None: a segment
    narrows the audience at ledger time only; unsubscribe and suppression stay the list's."""
    meta = conn.execute(select(campaigns.c.meta).where(campaigns.c.id == campaign_id)).scalar()
    return campaign_condition(conn, meta, now)


def _moving(sources: Iterable[str], to: str):
    """``state IN (sources)``, each checked as a move into ``to`` by the delivery lifecycle."""
    return deliveries.c.state.in_(delivery_sources(sources, to))



def _utc(t: datetime | None) -> datetime | None:
    """An aware UTC timestamp for PostgreSQL (naive ones are taken as UTC, as ``UtcDateTime`` does)."""
    return None if t is None else (t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t)

