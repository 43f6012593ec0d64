"""What earlier campaigns to a list already covered: where the next digest's articles start by
default, and which of its articles those readers already received.

A campaign *counts* once it started sending and was not cancelled (``campaigns.ARCHIVED``; the
public archive adds its own conditions): a draft, a scheduled or a cancelled campaign told readers nothing.
Its cut-off is when its content was composed (``meta["composed_at"]``, else ``created_at``), not
when it started sending: articles published between composing and sending (a campaign scheduled
days ahead) were not in it, and a later cut-off would drop them silently, while an earlier one at
worst overlaps, and the overlap is named by :func:`already_received`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Engine

from ..articles.identity import comparable_key
from ..config import Config
from ..errors import ConfigError, SelectionError
from ..store import queries as q
from ..store.lifecycle import CampaignStatus, DeliveryState
from .campaigns import ARCHIVED, list_ids_of

ALL = "all"  # --since all: the whole archive, said explicitly


@dataclass
class SinceChoice:
    """The start of the articles a digest takes (None: the whole archive) and why, in words."""

    since: datetime | None
    reason: str
    campaign_id: int | None = None
    list_slug: str | None = None

    def line(self, tz: str = "UTC") -> str:
        """One line for the publisher: ``articles since 2026-11-27 09:00 Europe/Paris (the last campaign to weekly, #12)``."""
        if self.since is None:
            return f"all articles ({self.reason})"
        from ..articles.dates import zone

        return f"articles since {self.since.astimezone(zone(tz)):%Y-%m-%d %H:%M} {tz or 'UTC'} ({self.reason})"

    def sentence(self, tz: str = "UTC") -> str:
        """:meth:`line` as a sentence, what the commands print."""
        text = self.line(tz)
        return text[:1].upper() + text[1:] + "."

    def explain(self, error: SelectionError) -> SelectionError:
        """``error`` (nothing left to compose) with a hint when the start was a default, not asked for."""
        if self.since is None or self.reason.startswith("--since"):
            return error
        return SelectionError(f"{error}; the start was a default ({self.reason}): pass --since 2w, a date or all")


@dataclass
class Received:
    """An article of the new digest that readers of the lists already received in a campaign."""

    key: str
    title: str
    campaign_id: int
    subject: str
    lists: list[str]

    def warning(self) -> str:
        return (f"{self.title!r} was already sent to {', '.join(self.lists)} in campaign #{self.campaign_id} "
                f"({self.subject!r})")


@dataclass
class _Sent:
    id: int
    subject: str
    meta: dict
    composed: datetime
    lists: list[str]
    counts: bool  # started and not cancelled (a cancelled one only matters for what it delivered)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _composed_at(meta: dict, created: datetime) -> datetime:
    raw = (meta or {}).get("composed_at")
    if isinstance(raw, str):
        try:
            return _aware(datetime.fromisoformat(raw))
        except ValueError:
            pass
    return _aware(created)


def _sent_campaigns(engine: Engine, list_slugs: list[str], *, exclude: int | None = None) -> list[_Sent]:
    """Campaigns to any of ``list_slugs`` that reached readers, newest composition first: started
    and not cancelled, or cancelled after at least one copy was sent. NotFound for an unknown list."""
    c, cl, lists, d = q.campaigns, q.campaign_lists, q.lists, q.deliveries
    delivered = exists(select(d.c.id).where(d.c.campaign_id == c.c.id, d.c.state == DeliveryState.SENT.value))
    counting = and_(c.c.status.in_([s.value for s in ARCHIVED]), c.c.started_at.is_not(None))
    with engine.connect() as conn:
        ids = list_ids_of(conn, list_slugs)
        rows = conn.execute(
            select(c.c.id, c.c.subject, c.c.meta, c.c.created_at, c.c.status, lists.c.slug)
            .select_from(c.join(cl, cl.c.campaign_id == c.c.id).join(lists, lists.c.id == cl.c.list_id))
            .where(cl.c.list_id.in_(ids), or_(counting, and_(c.c.status == CampaignStatus.CANCELLED.value, delivered)))
        ).all()
    found: dict[int, _Sent] = {}
    for cid, subject, meta, created, status, slug in rows:
        if cid == exclude:
            continue
        s = found.get(cid)
        if s is None:
            s = found[cid] = _Sent(cid, subject, dict(meta or {}), _composed_at(meta or {}, created), [],
                                   status != CampaignStatus.CANCELLED.value)
        s.lists.append(slug)
    return sorted(found.values(), key=lambda s: (s.composed, s.id), reverse=True)


def configured_since(config: Config, now: datetime | None = None) -> SinceChoice:
    """``now − default_since`` (or the whole archive for ``all``); ConfigError naming the key."""
    from ..articles.dates import parse_span

    value = (config.default_since or "").strip()
    if value.lower() == ALL:
        return SinceChoice(None, "default_since is all")
    try:
        span = parse_span(value)
    except ValueError as e:
        raise ConfigError(f"default_since: {e} (or all, for the whole archive)") from None
    now = _aware(now or datetime.now(timezone.utc))
    return SinceChoice(now - span, f"default_since {value}")


def default_since(engine: Engine | None, config: Config, list_slugs: Iterable[str] = (), *,
                  now: datetime | None = None, exclude: int | None = None) -> SinceChoice:
    """Where a digest for ``list_slugs`` starts when nobody said: when the last campaign that
    reached them was composed, else ``now − default_since``.

    With several lists, the latest of their last campaigns: the digest is one message to all of
    them, and starting at an older list's last campaign would send the more recently served list
    again what it just received; the reason names the list, so a publisher can pass ``--since``
    for the other. ``exclude`` leaves out one campaign (the draft being edited)."""
    slugs = [s for s in dict.fromkeys(list_slugs) if s]
    configured = configured_since(config, now)
    if engine is None or not slugs:
        return configured
    for s in _sent_campaigns(engine, slugs, exclude=exclude):
        if not s.counts:
            continue
        slug = next(x for x in slugs if x in s.lists)
        several = f"; the latest of {', '.join(slugs)}" if len(slugs) > 1 else ""
        return SinceChoice(s.composed, f"the last campaign to {slug}, #{s.id}{several}", s.id, slug)
    return SinceChoice(configured.since, f"no earlier campaign to {', '.join(slugs)}; {configured.reason}")


def choose_since(engine: Engine | None, config: Config, since: str | None, list_slugs: Iterable[str] = (), *,
                 now: datetime | None = None) -> SinceChoice:
    """The since a command uses: ``--since`` as given (``all``: the whole archive), else
    :func:`default_since`. SelectionError (one line) for a malformed value."""
    if since is not None and since.strip():
        if since.strip().lower() == ALL:
            return SinceChoice(None, "--since all")
        from ..compose.since import parse_since

        return SinceChoice(parse_since(since.strip(), now, config.timezone), f"--since {since.strip()}")
    if since is not None:
        raise SelectionError("--since '': expected a duration like 7d, 12h, 2w, a date like 2026-11-01 or all")
    return default_since(engine, config, list_slugs, now=now)


def sent_keys(engine: Engine, list_slugs: Iterable[str], *, exclude: int | None = None) -> set[str]:
    """The article keys (canonical) of every campaign that reached readers of ``list_slugs``."""
    out: set[str] = set()
    for s in _sent_campaigns(engine, list(dict.fromkeys(list_slugs)), exclude=exclude):
        out.update(comparable_key(str(k)) for k in s.meta.get("article_keys") or ())
    return out


def already_received(engine: Engine, list_slugs: Iterable[str], articles: Iterable, *,
                     exclude: int | None = None) -> list[Received]:
    """The ``articles`` (``Article`` objects, or ``(key, title)`` pairs) readers of ``list_slugs``
    already received in an earlier campaign, each with the latest campaign that carried it.
    Identities compared as ``articles.identity.comparable_key`` does (tracking parameters aside)."""
    slugs = [s for s in dict.fromkeys(list_slugs) if s]
    items = [(a.key, a.title or a.url) if hasattr(a, "key") else (a[0], a[1]) for a in articles]
    if not slugs or not items:
        return []
    campaigns = [(s, {comparable_key(str(x)) for x in s.meta.get("article_keys") or ()})
                 for s in _sent_campaigns(engine, slugs, exclude=exclude)]
    out: list[Received] = []
    for key, title in items:
        k = comparable_key(str(key))
        for s, keys in campaigns:  # newest first: name the latest campaign that carried it
            if k in keys:
                out.append(Received(str(key), title, s.id, s.subject, [x for x in slugs if x in s.lists]))
                break
    return out
