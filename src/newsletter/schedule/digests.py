"""Recurring digests, defined: what ``newsletter digests add/list/show/pause/resume/remove`` store.

Running an occurrence (loading sources, selecting, creating its campaign) lives in
:mod:`newsletter.schedule.occurrences`; this module only checks and keeps the definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..config import Config
from ..errors import InvalidInput, NotFound
from ..store.digest_models import DigestRun, DigestSentArticle, RecurringDigest
from ..store.models import MailingList
from . import cron

UTC = timezone.utc


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


# --- defining digests ------------------------------------------------------------------------

@dataclass
class DigestSpec:
    """What ``newsletter digests add`` asks for; checked by :func:`add_digest` before anything is stored."""

    name: str
    schedule: str
    timezone: str = "UTC"
    sources: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)  # list slugs
    template_dir: str | None = None
    subject: str = ""
    max_articles: int | None = 10
    min_articles: int = 1
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    catch_up: str = "latest"


@dataclass
class DigestInfo:
    """A digest as shown by ``digests list/show`` and the admin: the row plus what it takes to read it."""

    digest: RecurringDigest
    list_slugs: list[str]
    next_run: datetime | None  # UTC
    next_run_local: datetime | None  # in the digest's time zone
    last_run: DigestRun | None
    runs: list[DigestRun] = field(default_factory=list)  # newest first (show only)

    def as_dict(self) -> dict:
        d = self.digest
        return {
            "name": d.name, "schedule": d.schedule, "timezone": d.timezone, "sources": list(d.sources),
            "lists": self.list_slugs, "template_dir": d.template_dir, "subject": d.subject,
            "max_articles": d.max_articles, "min_articles": d.min_articles, "category": d.category,
            "tags": list(d.tags), "catch_up": d.catch_up, "paused": d.paused,
            "next_run": _iso(self.next_run), "next_run_local": _iso(self.next_run_local),
            "last_run": _iso(d.last_run_at), "articles_sent": d.articles_sent,
            "runs": [_run_dict(r) for r in self.runs],
        }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _run_dict(r: DigestRun) -> dict:
    return {"scheduled_for": _iso(r.scheduled_for), "status": r.status, "campaign_id": r.campaign_id,
            "articles": r.article_count, "reason": r.reason, "warnings": list(r.warnings), "manual": r.manual}


def render_subject(template: str, *, when: datetime, tz: str, name: str, newsletter_name: str) -> str:
    """The subject for one occurrence: ``template`` is Jinja (sandboxed) with ``date`` (e.g. 7 December
    2026, in the digest's zone), ``date_iso``, ``name`` and ``newsletter_name``. One line, no CR/LF."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    local = when.astimezone(cron.get_zone(tz))
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        out = env.from_string(template).render(
            date=f"{local.day} {local:%B %Y}", date_iso=local.date().isoformat(), name=name,
            newsletter_name=newsletter_name, week=local.isocalendar()[1], year=local.year,
        )
    except jinja2.TemplateError as e:
        raise InvalidInput(f"--subject {template!r}: {e}") from None
    if "\r" in out or "\n" in out:
        raise InvalidInput(f"--subject {template!r}: line breaks are not allowed in a subject")
    return out.strip()


def _check_name(name: str) -> str:
    n = (name or "").strip()
    if not n or len(n) > 100 or any(c.isspace() and c != " " for c in n) or n != name:
        raise InvalidInput(f"digest name {name!r}: use 1-100 characters without leading/trailing spaces or line breaks")
    return n


def _resolve_lists(session: Session, slugs: Sequence[str]) -> list[MailingList]:
    if not slugs:
        raise InvalidInput("a digest needs at least one --list")
    found = {m.slug: m for m in session.exec(select(MailingList).where(col(MailingList.slug).in_(list(slugs))))}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise NotFound(f"list {missing[0]!r} does not exist (create it with `newsletter lists create`)")
    return [found[s] for s in dict.fromkeys(slugs)]


def validate_spec(spec: DigestSpec, config: Config) -> cron.Schedule:
    """Check everything that does not need the database; the parsed schedule on success."""
    _check_name(spec.name)
    sched = cron.parse_schedule(spec.schedule)
    cron.get_zone(spec.timezone)
    cron.check_catch_up(spec.catch_up)
    if not spec.sources:
        raise InvalidInput("a digest needs at least one --source")
    if spec.max_articles is not None and spec.max_articles < 1:
        raise InvalidInput(f"--max-articles {spec.max_articles}: must be at least 1")
    if spec.min_articles < 0:
        raise InvalidInput(f"--min-articles {spec.min_articles}: must be 0 or more")
    if spec.max_articles is not None and spec.min_articles > spec.max_articles:
        raise InvalidInput(f"--min-articles {spec.min_articles} is more than --max-articles {spec.max_articles}")
    if spec.template_dir is not None:
        from ..compose.templates import resolve_template_dir

        resolve_template_dir(spec.template_dir)
    if spec.subject:
        render_subject(spec.subject, when=datetime.now(UTC), tz=spec.timezone, name=spec.name,
                       newsletter_name=config.newsletter_name)
    for s in spec.sources:
        if not s.strip():
            raise InvalidInput("--source: empty value")
        # A feed may be down today; a local path that does not exist is a typo.
        if "://" not in s and not Path(s).expanduser().exists():
            raise InvalidInput(f"--source {s}: no such file or folder")
    return sched


def _abs_source(s: str) -> str:
    if "://" in s:
        return s
    return str(Path(s).expanduser().resolve())


def add_digest(engine: Engine, config: Config, spec: DigestSpec, *, now: datetime | None = None) -> DigestInfo:
    """Store a new digest after checking every field; nothing is stored when one is wrong."""
    from ..store.db import session_scope

    sched = validate_spec(spec, config)
    now = _now(now)
    with session_scope(engine) as session:
        if session.exec(select(RecurringDigest.id).where(RecurringDigest.name == spec.name)).first() is not None:
            raise InvalidInput(f"digest {spec.name!r} already exists (remove it first or pick another name)")
        lists = _resolve_lists(session, spec.lists)
        d = RecurringDigest(
            name=spec.name, sources=[_abs_source(s) for s in spec.sources], list_ids=[m.id for m in lists],
            template_dir=str(Path(spec.template_dir).expanduser().resolve()) if spec.template_dir else None,
            subject=spec.subject or "", max_articles=spec.max_articles, min_articles=spec.min_articles,
            category=spec.category, tags=list(spec.tags), schedule=sched.text, timezone=spec.timezone,
            catch_up=spec.catch_up, paused=False, handled_until=now,
            next_run_at=cron.next_after(sched, spec.timezone, now), created_at=now, updated_at=now,
        )
        session.add(d)
        try:
            session.flush()
        except sa_exc.IntegrityError:
            raise InvalidInput(f"digest {spec.name!r} already exists (remove it first or pick another name)") from None
        return _info(session, d)


def update_digest(engine: Engine, config: Config, spec: DigestSpec, *, now: datetime | None = None) -> DigestInfo:
    """Change the digest named ``spec.name`` to ``spec`` (checked like :func:`add_digest`; nothing
    changes when a field is wrong). Its history and sent-article memory stay; a new schedule or time
    zone counts from now (occurrences already handled are not run again)."""
    from ..store.db import session_scope

    sched = validate_spec(spec, config)
    now = _now(now)
    with session_scope(engine) as session:
        d = _get(session, spec.name, lock=True)
        lists = _resolve_lists(session, spec.lists)
        moved = sched.text != d.schedule or spec.timezone != d.timezone
        d.sources, d.list_ids = [_abs_source(s) for s in spec.sources], [m.id for m in lists]
        d.template_dir = str(Path(spec.template_dir).expanduser().resolve()) if spec.template_dir else None
        d.subject, d.max_articles, d.min_articles = spec.subject or "", spec.max_articles, spec.min_articles
        d.category, d.tags, d.catch_up = spec.category, list(spec.tags), spec.catch_up
        d.schedule, d.timezone, d.updated_at = sched.text, spec.timezone, now
        if moved:
            d.handled_until = max(d.handled_until, now)
            if not d.paused:
                d.next_run_at = cron.next_after(sched, spec.timezone, d.handled_until)
        session.add(d)
        session.flush()
        return _info(session, d)


def spec_of(d: RecurringDigest, list_slugs: list[str]) -> DigestSpec:
    """A stored digest as the spec that would make it (the edit form starts from it)."""
    return DigestSpec(name=d.name, schedule=d.schedule, timezone=d.timezone, sources=list(d.sources), lists=list(list_slugs),
                      template_dir=d.template_dir, subject=d.subject, max_articles=d.max_articles,
                      min_articles=d.min_articles, category=d.category, tags=list(d.tags), catch_up=d.catch_up)


def _info(session: Session, d: RecurringDigest, *, runs: int = 0) -> DigestInfo:
    slugs = []
    if d.list_ids:
        by_id = {m.id: m.slug for m in session.exec(select(MailingList).where(col(MailingList.id).in_(list(d.list_ids))))}
        slugs = [by_id.get(i, f"#{i} (deleted)") for i in d.list_ids]
    last = session.exec(
        select(DigestRun).where(DigestRun.digest_id == d.id).order_by(col(DigestRun.scheduled_for).desc()).limit(max(runs, 1))
    ).all()
    nxt = d.next_run_at
    return DigestInfo(
        digest=d, list_slugs=slugs, next_run=nxt,
        next_run_local=nxt.astimezone(cron.get_zone(d.timezone)) if nxt else None,
        last_run=last[0] if last else None, runs=list(last) if runs else [],
    )


def _get(session: Session, name: str, *, lock: bool = False) -> RecurringDigest:
    q = select(RecurringDigest).where(RecurringDigest.name == name)
    if lock:
        q = q.with_for_update()
    d = session.exec(q).first()
    if d is None:
        raise NotFound(f"digest {name!r} does not exist (see `newsletter digests list`)")
    return d


def list_digests(engine: Engine) -> list[DigestInfo]:
    """Every digest, by name, with its next run (UTC and local), last run and articles sent."""
    from ..store.db import session_scope

    with session_scope(engine) as session:
        return [_info(session, d) for d in session.exec(select(RecurringDigest).order_by(RecurringDigest.name)).all()]


def show_digest(engine: Engine, name: str, *, runs: int = 10) -> DigestInfo:
    """One digest with its ``runs`` most recent occurrences."""
    from ..store.db import session_scope

    with session_scope(engine) as session:
        return _info(session, _get(session, name), runs=runs)


def pause_digest(engine: Engine, name: str, *, now: datetime | None = None) -> DigestInfo:
    """Stop running occurrences until resumed (occurrences while paused are never sent)."""
    from ..store.db import session_scope

    now = _now(now)
    with session_scope(engine) as session:
        d = _get(session, name, lock=True)
        if d.paused:
            raise InvalidInput(f"digest {name!r} is already paused")
        d.paused, d.next_run_at, d.updated_at = True, None, now
        session.add(d)
        session.flush()
        return _info(session, d)


def resume_digest(engine: Engine, name: str, *, now: datetime | None = None) -> DigestInfo:
    """Run occurrences again from now on (the ones that fell while paused are passed over)."""
    from ..store.db import session_scope

    now = _now(now)
    with session_scope(engine) as session:
        d = _get(session, name, lock=True)
        if not d.paused:
            raise InvalidInput(f"digest {name!r} is not paused")
        d.paused = False
        d.handled_until = max(d.handled_until, now)
        d.next_run_at = cron.next_after(cron.parse_schedule(d.schedule), d.timezone, d.handled_until)
        d.updated_at = now
        session.add(d)
        session.flush()
        return _info(session, d)


def remove_digest(engine: Engine, name: str) -> None:
    """Delete a digest with its run history and sent-article memory (campaigns it created stay)."""
    from ..store.db import session_scope

    with session_scope(engine) as session:
        d = _get(session, name, lock=True)
        session.exec(sa.delete(DigestSentArticle).where(col(DigestSentArticle.digest_id) == d.id))
        session.exec(sa.delete(DigestRun).where(col(DigestRun.digest_id) == d.id))
        session.delete(d)
