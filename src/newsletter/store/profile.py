"""Everything stored about one person, gathered for the admin's subscriber page (and a subject
access request): their data, consent evidence, each subscription with its confirmation and
opt-out times, preference-centre state and log, campaigns they were sent, and suppression.

Also the publisher's edit of a person's name and attributes (``edit_subscriber``). Read-only
otherwise; bounce history comes from feedback.record beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..errors import InvalidInput, NotFound
from .db import table_of, transaction
from .lookups import _key_of, _subscriber_by_key, lists_t, subs_t, subscribers_t
from .models import utcnow
from .suppressions import _find_suppression
from .textrules import check_attributes, check_text


@dataclass
class SubscriptionInfo:
    """One list a person is on, with the times that are its consent trail."""

    list_id: int
    slug: str
    list_name: str
    opt_in: str
    status: str
    source: str | None
    created_at: datetime
    confirmed_at: datetime | None
    confirmation_sent_at: datetime | None
    unsubscribed_at: datetime | None


@dataclass
class Received:
    """A campaign copy addressed to this person (the delivery ledger)."""

    campaign_id: int
    subject: str
    state: str
    sent_at: datetime | None
    created_at: datetime


@dataclass
class Profile:
    """One person as the admin page shows them."""

    id: int
    email: str
    name: str
    attributes: dict[str, Any]
    consent_source: str | None
    consent_at: datetime | None
    created_at: datetime
    updated_at: datetime
    pause_until: datetime | None  # only when still in the future
    timezone: str | None
    suppressed: str | None  # "address x@y: reason" when a suppression entry covers them
    subscriptions: list[SubscriptionInfo] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    received_total: int = 0
    preference_log: list[Any] = field(default_factory=list)  # PreferenceChange rows, newest first

    @property
    def lists(self) -> dict[str, str]:
        return {s.slug: s.status for s in self.subscriptions}


RECEIVED_SHOWN = 50
LOG_SHOWN = 50


def profile(engine: Engine, email: str, *, now: datetime | None = None) -> Profile:
    """The person with this address (any case); NotFound otherwise."""
    from sqlalchemy import func

    from .campaign_models import Campaign, Delivery
    from .preference_models import PreferenceChange

    now = now or utcnow()
    deliveries_t, campaigns_t, changes_t = table_of(Delivery), table_of(Campaign), table_of(PreferenceChange)
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, _key_of(email))
        if r is None:
            raise NotFound(f"subscriber {email.strip()[:320]!r} does not exist")
        sid = r["id"]
        subs = conn.execute(
            select(subs_t, lists_t.c.slug, lists_t.c.name.label("list_name"), lists_t.c.opt_in)
            .join(lists_t, lists_t.c.id == subs_t.c.list_id).where(subs_t.c.subscriber_id == sid).order_by(lists_t.c.slug)
        ).mappings().all()
        received = conn.execute(
            select(deliveries_t.c.campaign_id, campaigns_t.c.subject, deliveries_t.c.state, deliveries_t.c.sent_at,
                   deliveries_t.c.created_at)
            .join(campaigns_t, campaigns_t.c.id == deliveries_t.c.campaign_id)
            .where(deliveries_t.c.subscriber_id == sid)
            .order_by(deliveries_t.c.id.desc()).limit(RECEIVED_SHOWN)
        ).all()
        total = conn.execute(select(func.count()).select_from(deliveries_t).where(deliveries_t.c.subscriber_id == sid)).scalar_one()
        log = conn.execute(select(changes_t).where(changes_t.c.subscriber_id == sid)
                           .order_by(changes_t.c.at.desc(), changes_t.c.id.desc()).limit(LOG_SHOWN)).mappings().all()
        supp = _find_suppression(conn, r["email_key"])
    pause = r["pause_until"] if r["pause_until"] is not None and r["pause_until"] > now else None
    return Profile(
        id=sid, email=r["email"], name=r["name"], attributes=dict(r["attributes"] or {}),
        consent_source=r["consent_source"], consent_at=r["consent_at"], created_at=r["created_at"],
        updated_at=r["updated_at"], pause_until=pause, timezone=r["timezone"],
        suppressed=(f"{supp['kind']} {supp['value']}" + (f": {supp['reason']}" if supp["reason"] else "")) if supp else None,
        subscriptions=[SubscriptionInfo(s["list_id"], s["slug"], s["list_name"], s["opt_in"], s["status"], s["source"],
                                        s["created_at"], s["confirmed_at"], s["confirmation_sent_at"], s["unsubscribed_at"])
                       for s in subs],
        received=[Received(*row) for row in received], received_total=total, preference_log=list(log),
    )


def parse_attributes(text: str) -> dict[str, Any]:
    """Attributes as the admin's edit form writes them: one ``name = value`` per line (blank
    lines ignored; a value that is JSON — a number, true, a list — is kept as that). InvalidInput
    naming the line for anything else."""
    import json

    out: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"attributes, line {number}: write name = value")
        value = value.strip()
        try:
            parsed = json.loads(value) if value[:1] in "[{\"-0123456789tfn" and value else value
        except ValueError:
            parsed = value
        if name.strip() in out:
            raise InvalidInput(f"attributes, line {number}: {name.strip()!r} is given twice")
        out[name.strip()] = parsed
    return out


def format_attributes(attributes: dict[str, Any]) -> str:
    """The edit form's text for ``attributes`` (``parse_attributes`` reads it back unchanged)."""
    import json

    def shown(v: Any) -> str:
        plain = isinstance(v, str) and v[:1] not in '[{"-0123456789tfn' and "\n" not in v and v == v.strip()
        return v if plain else json.dumps(v, ensure_ascii=False)

    return "\n".join(f"{k} = {shown(v)}" for k, v in attributes.items())


def edit_subscriber(engine: Engine, email: str, *, name: str, attributes: dict[str, Any]) -> bool:
    """Set a person's name and replace their attributes (the admin's edit form); True when
    anything changed. The address itself is not editable: it is who they are."""
    name = check_text("the name", name.strip())
    for k in attributes:
        if not str(k).strip():
            raise InvalidInput("attribute names cannot be empty")
    attrs = check_attributes({str(k).strip(): v for k, v in attributes.items()})
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, _key_of(email))
        if r is None:
            raise NotFound(f"subscriber {email.strip()[:320]!r} does not exist")
        if r["name"] == name and (r["attributes"] or {}) == attrs:
            return False
        conn.execute(subscribers_t.update().where(subscribers_t.c.id == r["id"])
                     .values(name=name, attributes=attrs, updated_at=utcnow()))
    return True
