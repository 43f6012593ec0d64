"""Mailing lists: create, look up, change, delete, and count subscriptions by status."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from ..errors import InvalidInput, NotFound, StateError
from .db import session_scope, table_of, transaction
from .textrules import check_text
from .models import OPT_IN_MODES, SUBSCRIPTION_STATUSES, MailingList, Subscription, utcnow

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class ListSummary:
    """A list with how many subscriptions it has in each status."""

    id: int
    slug: str
    name: str
    description: str
    opt_in: str
    created_at: datetime
    language: str | None = None
    timezone: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    public: bool = True
    quiet_hours: str | None = None
    archive: bool = True  # its campaigns go in the public archive unless a campaign says otherwise

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def check_slug(slug: str) -> str:
    """The slug if it is lowercase letters, digits, '-' or '_' (at most 64), else InvalidInput."""
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise InvalidInput(f"list slug {slug!r} is invalid: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    return slug


def _check_opt_in(opt_in: str) -> str:
    if opt_in not in OPT_IN_MODES:
        raise InvalidInput(f"opt-in mode {opt_in!r} is invalid: use 'single' or 'double'")
    return opt_in


def _check_language(language: str | None) -> str | None:
    """A shipped language code, or None for "the configured default" (empty or ``default``)."""
    from ..i18n import check_language

    if not language or language.strip().lower() == "default":
        return None
    return check_language(language)


def _check_timezone(tz: str | None) -> str | None:
    """An IANA time zone for the list's readers who gave none (local-time delivery), or None for
    "the configured default" (empty or ``default``); InvalidInput naming it otherwise."""
    from .preferences import check_timezone

    if not tz or tz.strip().lower() == "default":
        return None
    try:
        return check_timezone(tz) or None
    except InvalidInput:
        raise InvalidInput(f"list time zone {tz!r}: unknown (use an IANA name such as Europe/Paris, or 'default')") from None


def _check_quiet_hours(text: str | None) -> str | None:
    """``22:00-07:00`` as written canonically, or None for none (empty, ``none`` or ``off``)."""
    from ..schedule.quiet import parse_quiet_hours

    if not text or text.strip().lower() in ("none", "off"):
        return None
    return str(parse_quiet_hours(text))


def find_list(session, slug: str) -> MailingList:
    """The list named ``slug`` in this session, or NotFound naming the known lists."""
    found = session.execute(select(MailingList).where(col(MailingList.slug) == slug)).scalars().first()
    if found is None:
        known = [r[0] for r in session.execute(select(col(MailingList.slug)).order_by(col(MailingList.slug)).limit(20))]
        hint = f" (known lists: {', '.join(known)})" if known else " (no lists yet: create one with `newsletter lists create`)"
        raise NotFound(f"list {slug!r} does not exist{hint}")
    return found


def get_list(engine: Engine, slug: str) -> MailingList:
    """The list named ``slug``; NotFound when there is none."""
    with session_scope(engine) as s:
        return find_list(s, slug)


def create_list(engine: Engine, slug: str, name: str | None = None, description: str = "", opt_in: str = "single",
                language: str | None = None, timezone: str | None = None, public: bool = True,
                quiet_hours: str | None = None,
                archive: bool | None = None) -> MailingList:
    """Create a list; ``opt_in`` is ``single`` (subscribed at once) or ``double`` (confirmation email first);
    ``language`` (``fr``, ``ar``...) is what its readers' pages and emails are written in (None: config.language);
    ``timezone`` is the zone local-time campaigns use for its readers who gave none (None: config.timezone);
    a list that is not ``public`` has no signup page and is shown on the preference centre only to its readers;
    ``quiet_hours`` (``22:00-07:00``) are when local-time campaigns send its readers nothing, in their zone;
    ``archive`` is whether its campaigns go in the public archive by default (None: as ``public``)."""
    check_slug(slug)
    quiet_hours = _check_quiet_hours(quiet_hours)
    _check_opt_in(opt_in)
    language = _check_language(language)
    timezone = _check_timezone(timezone)
    check_text("the list name", name or "")
    check_text("the list description", description or "", multiline=True)
    with session_scope(engine) as s:
        if s.execute(select(col(MailingList.id)).where(col(MailingList.slug) == slug)).first():
            raise StateError(f"list {slug!r} already exists")
        ml = MailingList(slug=slug, name=(name or slug).strip() or slug, description=description or "", opt_in=opt_in,
                         language=language, timezone=timezone, public=bool(public), quiet_hours=quiet_hours,
                         archive=bool(public) if archive is None else bool(archive))
        s.add(ml)
        s.flush()
        s.refresh(ml)
        return ml


def update_list(engine: Engine, slug: str, *, name: str | None = None, description: str | None = None, opt_in: str | None = None,
                language: str | None = None, timezone: str | None = None, public: bool | None = None,
                quiet_hours: str | None = None, archive: bool | None = None) -> MailingList:
    """Change a list's name, description, opt-in mode (existing subscriptions keep their status),
    language or default time zone (``default`` or ``""`` goes back to the config's; None leaves it),
    visibility, quiet hours (``none`` removes them) or archive default (its campaigns without their
    own choice follow it at once)."""
    tz = _check_timezone(timezone) if timezone is not None else None
    quiet = _check_quiet_hours(quiet_hours) if quiet_hours is not None else None
    with session_scope(engine) as s:
        ml = find_list(s, slug)
        if name is not None:
            ml.name = check_text("the list name", name).strip() or ml.name
        if description is not None:
            ml.description = check_text("the list description", description, multiline=True)
        if opt_in is not None:
            ml.opt_in = _check_opt_in(opt_in)
        if language is not None:
            ml.language = _check_language(language)
        if timezone is not None:
            ml.timezone = tz
        if public is not None:
            if ml.public and not public and archive is None:
                ml.archive = False  # a list going private stops publishing its issues unless told otherwise
            ml.public = bool(public)
        if quiet_hours is not None:
            ml.quiet_hours = quiet
        if archive is not None:
            ml.archive = bool(archive)
        ml.updated_at = utcnow()
        s.add(ml)
        s.flush()
        return ml


def delete_list(engine: Engine, slug: str) -> int:
    """Delete a list and its subscriptions (subscribers stay). Returns how many subscriptions went with it."""
    with session_scope(engine) as s:
        ml = find_list(s, slug)
        n = s.execute(select(func.count()).select_from(Subscription).where(col(Subscription.list_id) == ml.id)).scalar_one()
        s.execute(table_of(Subscription).delete().where(col(Subscription.list_id) == ml.id))
        s.delete(ml)
        return n


def common_language(executor, slugs: list[str]) -> str | None:
    """The language every one of the lists ``slugs`` is set to (a campaign's digest is written in
    it), or None when they set none or differ; ``executor`` is an engine, connection or session."""
    lists_t = table_of(MailingList)
    query = select(lists_t.c.language).where(lists_t.c.slug.in_(list(slugs)))
    if isinstance(executor, Engine):
        with executor.connect() as conn:
            found = {r[0] for r in conn.execute(query)}
    else:
        found = {r[0] for r in executor.execute(query)}
    return found.pop() if len(found) == 1 else None


def list_lists(engine: Engine) -> list[ListSummary]:
    """Every list, by slug, with counts of subscriptions per status (every status present, zeros included)."""
    lists_t, subs_t = table_of(MailingList), table_of(Subscription)
    with transaction(engine) as conn:
        rows = conn.execute(select(lists_t).order_by(lists_t.c.slug)).mappings().all()
        counts = conn.execute(
            select(subs_t.c.list_id, subs_t.c.status, func.count()).group_by(subs_t.c.list_id, subs_t.c.status)
        ).all()
    by_list: dict[int, dict[str, int]] = {}
    for list_id, status, n in counts:
        by_list.setdefault(list_id, {})[status] = n
    return [
        ListSummary(
            id=r["id"], slug=r["slug"], name=r["name"], description=r["description"], opt_in=r["opt_in"],
            created_at=r["created_at"], language=r["language"], timezone=r["timezone"], public=bool(r["public"]),
            quiet_hours=r["quiet_hours"],
            archive=bool(r["archive"]),
            counts={st: by_list.get(r["id"], {}).get(st, 0) for st in SUBSCRIPTION_STATUSES},
        )
        for r in rows
    ]
