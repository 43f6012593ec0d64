"""The preference centre: what a reader may change through their signed preferences link.

A link names (subscriber, key version) and is honoured only while that version is the one stored
with the subscriber; rotating it (``rotate``) revokes every older link. Through it a reader sees
their lists, joins or leaves any list, changes their name, pauses mail for 1-3 months (the
ledger skips them until ``pause_until``), sets their IANA time zone, turns tracking off (the
``no_tracking`` attribute the tracker honours) or leaves everything. Joining follows the consent
rule (store/consent.py: the reader using their own mailed link is fresh consent; a double-opt-in
list still wants its confirmation email), leaving goes through store/leaving.py. Every change
is logged in ``preference_changes`` with its evidence (what, old and new value, source, a
coarse network class, when).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine, RowMapping

from ..config import Config
from ..errors import InvalidInput, InvalidToken, NotFound, StateError
from . import tokens
from .consent import Join, joining_status, may_join, rejoin_in
from .db import table_of, transaction
from .leaving import leave_lists
from .lookups import _key_of, _subscriber_by_key, lists_t, subs_t, subscribers_t
from .models import utcnow
from .optin import Invitation
from .preference_models import PreferenceChange
from .signup import RESEND_AFTER, _due
from .suppressions import _find_suppression
from .textrules import check_reader_name
from ..i18n import N_

SOURCE = "preferences"
PAUSE_MONTHS = (1, 2, 3)
MAX_NAME = 200
MAX_VALUE = 200  # old/new values in the log are short text
changes_t = table_of(PreferenceChange)


@dataclass
class ListState:
    """One list as the preferences page shows it: the reader's status on it (None: never joined)."""

    id: int
    slug: str
    name: str
    description: str
    opt_in: str
    status: str | None

    @property
    def on(self) -> bool:
        """Whether the reader is on the list (active, or waiting for their confirmation)."""
        return self.status in ("active", "unconfirmed")


@dataclass
class Preferences:
    """Everything the preferences page shows for one reader."""

    subscriber_id: int
    email: str
    name: str
    timezone: str
    pause_until: datetime | None  # None: not paused (a pause that ended is None too)
    no_tracking: bool
    suppressed: bool
    lists: list[ListState] = field(default_factory=list)


@dataclass
class Joined:
    """What joining a list did: the status now, and the confirmation email to send (double opt-in)."""

    list_name: str
    status: str
    invitation: Invitation | None = None


# --- links ---------------------------------------------------------------------------------------


def preferences_url(config: Config, subscriber_id: int, version: int, *, secret: bytes | None = None) -> str:
    """The reader's preferences page ``{base_url}/preferences/{token}``."""
    from .secret import secret_key

    key = secret if secret is not None else secret_key(config)
    return f"{config.base_url.rstrip('/')}/preferences/{tokens.preferences_token(key, subscriber_id, version)}"


def link_for(engine: Engine, config: Config, email: str, *, rotate: bool = False, secret: bytes | None = None,
             now: datetime | None = None) -> str:
    """The preferences link of the subscriber with address ``email`` (NotFound otherwise); with
    ``rotate`` their key version is bumped first, so every link given out before stops working."""
    with transaction(engine) as conn:
        person = _subscriber_by_key(conn, _key_of(email))
        if person is None:
            raise NotFound(f"subscriber {email.strip()!r} does not exist")
        version = person["pref_key_version"]
        if rotate:
            conn.execute(subscribers_t.update().where(subscribers_t.c.id == person["id"])
                         .values(pref_key_version=version + 1))
            _log(conn, person["id"], "link", str(version), str(version + 1), source="cli", now=now or utcnow())
            version += 1
    return preferences_url(config, person["id"], version, secret=secret)


def token_maker(engine: Engine, secret: bytes) -> Callable[[int], str]:
    """``subscriber_id -> preferences token`` for one campaign's copies: the few rotated key
    versions are read once, so each copy costs one HMAC and no query."""
    with transaction(engine) as conn:
        rotated = dict(conn.execute(select(subscribers_t.c.id, subscribers_t.c.pref_key_version)
                                    .where(subscribers_t.c.pref_key_version != 0)).all())
    return lambda sid: tokens.preferences_token(secret, sid, rotated.get(sid, 0))


def _revoked(reason: str) -> InvalidToken:
    err = InvalidToken(f"preferences token is {reason}")
    err.reason = reason
    return err


def _reader(conn: Connection, secret: bytes, token: str) -> RowMapping:
    """The subscriber a genuine, current preferences token names; InvalidToken otherwise
    (forged, of an erased reader, or revoked by a rotation)."""
    sid, version = tokens.verify_preferences_token(secret, token)
    person = conn.execute(select(subscribers_t).where(subscribers_t.c.id == sid)).mappings().first()
    if person is None:
        raise _revoked("unknown")
    if person["pref_key_version"] != version:
        raise _revoked("revoked")
    return person


def _log(conn: Connection, subscriber_id: int, what: str, old: str, new: str, *, now: datetime,
         ip_class: str = "", source: str = SOURCE) -> None:
    conn.execute(changes_t.insert().values(
        subscriber_id=subscriber_id, what=what[:80], old=old[:MAX_VALUE], new=new[:MAX_VALUE], source=source,
        ip_class=ip_class[:16], at=now))


def history(engine: Engine, subscriber_id: int) -> list[RowMapping]:
    """A reader's logged preference changes, oldest first."""
    with transaction(engine) as conn:
        return list(conn.execute(select(changes_t).where(changes_t.c.subscriber_id == subscriber_id)
                                 .order_by(changes_t.c.at, changes_t.c.id)).mappings().all())


# --- the page ------------------------------------------------------------------------------------


def _tracking_off(attributes) -> bool:
    from ..engagement.links import Tracker

    return Tracker.skip(attributes or {})


def show(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None) -> Preferences:
    """What the preferences page shows, changing nothing; InvalidToken for a bad or revoked link."""
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        status = dict(conn.execute(select(subs_t.c.list_id, subs_t.c.status)
                                   .where(subs_t.c.subscriber_id == p["id"])).all())
        rows = conn.execute(select(lists_t.c.id, lists_t.c.slug, lists_t.c.name, lists_t.c.description, lists_t.c.opt_in)
                            .order_by(lists_t.c.name, lists_t.c.slug)).all()
        suppressed = _find_suppression(conn, p["email_key"]) is not None
    pause = p["pause_until"] if p["pause_until"] is not None and p["pause_until"] > now else None
    return Preferences(p["id"], p["email"], p["name"], p["timezone"] or "", pause, _tracking_off(p["attributes"]),
                       suppressed, [ListState(r.id, r.slug, r.name, r.description, r.opt_in, status.get(r.id)) for r in rows])


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The IANA time zone names a reader may choose, sorted."""
    names = {z for z in available_timezones() if "/" in z and not z.startswith(("posix/", "right/", "Etc/"))}
    return tuple(sorted(names | {"UTC"}))


def check_timezone(name: str) -> str:
    """``name`` when it is an IANA time zone zoneinfo knows ("" clears it); InvalidInput otherwise."""
    name = (name or "").strip()
    if not name:
        return ""
    if len(name) > 64 or ".." in name or name.startswith("/"):
        raise InvalidInput(N_("%(zone)s is not a time zone", zone=repr(name[:64])))
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(N_("%(zone)s is not a time zone: choose one from the list, like Europe/Paris", zone=repr(name))) from None
    return name


def add_months(when: datetime, months: int) -> datetime:
    """``when`` plus calendar months, the day clamped to the month's length (31 Jan + 1 = 28/29 Feb)."""
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


# --- changes -------------------------------------------------------------------------------------


def set_name(engine: Engine, secret: bytes, token: str, name: str, *, ip_class: str = "",
             now: datetime | None = None) -> bool:
    """Change the reader's name (blanks collapsed, at most MAX_NAME characters); True if it changed."""
    name = check_reader_name(" ".join((name or "").split()))
    if len(name) > MAX_NAME:
        raise InvalidInput(N_("the name is longer than %(max)d characters", max=MAX_NAME))
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        if p["name"] == name:
            return False
        conn.execute(subscribers_t.update().where(subscribers_t.c.id == p["id"]).values(name=name, updated_at=now))
        _log(conn, p["id"], "name", p["name"], name, now=now, ip_class=ip_class)
    return True


def pause(engine: Engine, secret: bytes, token: str, months: int, *, ip_class: str = "",
          now: datetime | None = None) -> datetime | None:
    """Pause the reader's mail for 1, 2 or 3 months (campaigns skip them until then), or with
    ``months`` 0 end a pause early. Returns the new ``pause_until`` (None: not paused)."""
    if months not in (0, *PAUSE_MONTHS):
        raise InvalidInput(N_("a pause lasts 1, 2 or 3 months, not %(months)s", months=months))
    now = now or utcnow()
    until = add_months(now, months) if months else None
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        before = p["pause_until"] if p["pause_until"] is not None and p["pause_until"] > now else None
        if before is None and until is None:
            return None
        conn.execute(subscribers_t.update().where(subscribers_t.c.id == p["id"]).values(pause_until=until, updated_at=now))
        _log(conn, p["id"], "pause", before.isoformat() if before else "", until.isoformat() if until else "",
             now=now, ip_class=ip_class)
    return until


def set_timezone(engine: Engine, secret: bytes, token: str, name: str, *, ip_class: str = "",
                 now: datetime | None = None) -> bool:
    """Set the reader's IANA time zone ("" clears it); InvalidInput for a name zoneinfo does not know."""
    name = check_timezone(name)
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        if (p["timezone"] or "") == name:
            return False
        conn.execute(subscribers_t.update().where(subscribers_t.c.id == p["id"])
                     .values(timezone=name or None, updated_at=now))
        _log(conn, p["id"], "timezone", p["timezone"] or "", name, now=now, ip_class=ip_class)
    return True


def set_tracking(engine: Engine, secret: bytes, token: str, track: bool, *, ip_class: str = "",
                 now: datetime | None = None) -> bool:
    """Turn opens and clicks tracking on or off for the reader (attribute ``no_tracking``)."""
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        was_off = _tracking_off(p["attributes"])
        if was_off == (not track):
            return False
        attributes = dict(p["attributes"] or {})
        if track:
            attributes.pop("no_tracking", None)
        else:
            attributes["no_tracking"] = True
        conn.execute(subscribers_t.update().where(subscribers_t.c.id == p["id"])
                     .values(attributes=attributes, updated_at=now))
        _log(conn, p["id"], "tracking", "off" if was_off else "on", "on" if track else "off", now=now, ip_class=ip_class)
    return True


def join(engine: Engine, secret: bytes, token: str, list_id: int, *, ip_class: str = "",
         now: datetime | None = None) -> Joined:
    """Put the reader on a list by the consent rule: their own mailed link is fresh consent, so
    they may join or come back; a double-opt-in list makes them unconfirmed and asks for its
    confirmation email (``Joined.invitation``, sent by the caller with optin.mail_confirmation).
    Someone waiting for a confirmation gets it again once RESEND_AFTER has passed. StateError
    for a suppressed address; NotFound for an unknown list."""
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        lst = conn.execute(select(lists_t).where(lists_t.c.id == list_id)).mappings().first()
        if lst is None:
            raise NotFound(N_("there is no list #%(id)s", id=list_id))
        sub = conn.execute(select(subs_t).where(subs_t.c.subscriber_id == p["id"], subs_t.c.list_id == list_id)).mappings().first()
        status = sub["status"] if sub is not None else None
        decision = may_join(status, fresh_consent=True, suppressed=_find_suppression(conn, p["email_key"]) is not None)
        invitation = Invitation(p["id"], list_id, p["email"], p["name"], lst["name"])
        if decision is Join.SUPPRESSED:
            raise StateError(N_("%(email)s cannot be subscribed: mail to this address has been stopped", email=p["email"]))
        if decision is Join.PRESENT:
            assert sub is not None and status is not None
            due = status == "unconfirmed" and _due(sub["confirmation_sent_at"], RESEND_AFTER, now)
            return Joined(lst["name"], status, invitation if due else None)
        new_status = joining_status(lst["opt_in"])
        rejoin_in(conn, subscriber_id=p["id"], list_id=list_id, subscription_id=sub["id"] if sub is not None else None,
                  status=new_status, source=SOURCE, now=now)
        _log(conn, p["id"], f"join:{lst['slug']}", status or "", new_status, now=now, ip_class=ip_class)
    return Joined(lst["name"], new_status, invitation if new_status == "unconfirmed" else None)


def _leave(conn: Connection, p: RowMapping, list_ids: Sequence[int] | None, now: datetime, ip_class: str) -> list[str]:
    q = (select(lists_t.c.id, lists_t.c.slug, lists_t.c.name, subs_t.c.status)
         .join(subs_t, subs_t.c.list_id == lists_t.c.id)
         .where(subs_t.c.subscriber_id == p["id"], subs_t.c.status.in_(("active", "unconfirmed")))
         .order_by(lists_t.c.name))
    if list_ids is not None:
        q = q.where(lists_t.c.id.in_(list(list_ids)))
    leaving = conn.execute(q).all()
    if leaving:
        leave_lists(conn, p["id"], [r.id for r in leaving], now)
    for r in leaving:
        _log(conn, p["id"], f"leave:{r.slug}", r.status, "unsubscribed", now=now, ip_class=ip_class)
    return [r.name for r in leaving]


def leave(engine: Engine, secret: bytes, token: str, list_ids: Sequence[int], *, ip_class: str = "",
          now: datetime | None = None) -> list[str]:
    """Take the reader off these lists (store/leaving.py); returns the names of the lists left."""
    now = now or utcnow()
    with transaction(engine) as conn:
        return _leave(conn, _reader(conn, secret, token), list_ids, now, ip_class)


def leave_everything(engine: Engine, secret: bytes, token: str, *, ip_class: str = "",
                     now: datetime | None = None) -> list[str]:
    """Take the reader off every list they are on; returns the names of the lists left."""
    now = now or utcnow()
    with transaction(engine) as conn:
        p = _reader(conn, secret, token)
        left = _leave(conn, p, None, now, ip_class)
        _log(conn, p["id"], "leave-everything", "", "unsubscribed", now=now, ip_class=ip_class)
    return left
