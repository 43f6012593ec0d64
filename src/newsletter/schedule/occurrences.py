"""Recurring digests, run: each occurrence becomes at most one campaign.

An occurrence loads the digest's sources (retrying a failing one a few times), selects the
articles published since the last sent occurrence that no earlier occurrence sent, and either
records a skipped run (fewer than ``min_articles``) or renders the digest and creates ONE
campaign through the dispatcher — in the same database transaction that inserts the
(digest, occurrence) row whose unique key makes a duplicate impossible. :func:`plan_occurrence`
is the one place that decides what an occurrence holds; the worker's run and the admin's
preview both call it.
"""

from __future__ import annotations

import dataclasses
import logging
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..config import Config
from ..errors import InvalidInput, NewsletterError, ScheduleError, SelectionError, SourceError
from ..store.digest_models import DigestRun, DigestSentArticle, RecurringDigest
from ..store.models import MailingList
from . import cron
from .digests import _get, _now, render_subject

if TYPE_CHECKING:
    from ..compose.model import Digest

log = logging.getLogger("newsletter.schedule")

# A failing source is tried this many times within one occurrence, waiting these seconds between.
SOURCE_RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0)


# --- running occurrences ---------------------------------------------------------------------

@dataclass
class RunResult:
    """What one occurrence did: ``status`` created/skipped/failed/duplicate (someone else ran it)."""

    digest: str
    scheduled_for: datetime
    status: str
    campaign_id: int | None = None
    article_count: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One log line for the worker and the CLI: what happened, then the sources that failed
        (each one, unless the reason already names it) and how many other warnings there were."""
        when = self.scheduled_for.isoformat()
        if self.status == "created":
            head = f"digest {self.digest!r} {when}: campaign {self.campaign_id} created with {self.article_count} article(s)"
        elif self.status == "duplicate":
            return f"digest {self.digest!r} {when}: already run by another worker"
        else:
            head = f"digest {self.digest!r} {when}: {self.status}: {self.reason}"
        return head + warnings_tail(self.warnings, self.digest, already_said=self.reason)


# A run's warning for a source that still failed after its retries starts with this.
SOURCE_FAILED = "source failed after"


def warnings_tail(warnings: Sequence[str], digest: str, *, already_said: str = "") -> str:
    """``; warning: <source failed ...>`` per failed source not already in ``already_said``, and a
    count of the other warnings (article or template notes) with where to read them."""
    failed = [w for w in warnings if w.startswith(SOURCE_FAILED) and w not in already_said]
    others = sum(1 for w in warnings if not w.startswith(SOURCE_FAILED))
    out = "".join(f"; warning: {w}" for w in failed)
    if others:
        out += f"; {others} other warning(s) (see `newsletter digests show {digest}`)"
    return out


@dataclass
class Loaded:
    articles: list
    warnings: list[str]
    failed: list[str]  # sources that still failed after the retries


def load_with_retries(sources: Sequence[str], config: Config, *, delays: Sequence[float] = SOURCE_RETRY_DELAYS,
                      sleep: Callable[[float], None] = _time.sleep) -> Loaded:
    """Load each source on its own, retrying a URL that fails ``len(delays)`` more times; the failures
    that remain are reported (one line each), and the others' articles are used."""
    from ..articles import load_sources

    articles: list = []
    warnings: list[str] = []
    failed: list[str] = []
    for src in sources:
        # Only the network is worth retrying: a missing folder stays missing.
        tries = len(delays) + 1 if "://" in src else 1
        for attempt in range(tries):
            try:
                res = load_sources([src], config)  # one source: failing outright raises
            except SourceError as e:
                if attempt < tries - 1:
                    sleep(delays[attempt])
                    continue
                failed.append(src)
                warnings.append(f"{SOURCE_FAILED} {attempt + 1} attempt(s): {e}")
                break
            articles.extend(res.articles)
            warnings.extend(res.warnings)
            break
    from ..articles import dedupe

    unique = dedupe(articles)  # one article reachable from two sources is one article
    return Loaded(unique, warnings, failed)


def _since_for(session: Session, d: RecurringDigest, sched: cron.Schedule, when: datetime) -> datetime:
    """Articles must be newer than the last occurrence that SENT something (a skipped week's few
    articles wait for the next one); until one has, newer than the schedule's last occurrence
    before the digest was created (its first issue covers one period)."""
    last = session.exec(
        select(DigestRun.scheduled_for)
        .where(col(DigestRun.digest_id) == d.id, col(DigestRun.status) == "created", col(DigestRun.scheduled_for) < when)
        .order_by(col(DigestRun.scheduled_for).desc()).limit(1)
    ).first()
    if last is not None:
        return last
    start = min(d.created_at, when)
    prev = cron.last_in(sched, d.timezone, start - timedelta(days=400), start)
    return prev or (start - timedelta(days=7))


def _sent_keys(session: Session, digest_id: int) -> set[str]:
    return set(session.exec(select(DigestSentArticle.article_key).where(DigestSentArticle.digest_id == digest_id)).all())


def _list_slugs(session: Session, d: RecurringDigest) -> list[str]:
    rows = session.exec(select(MailingList).where(col(MailingList.id).in_(list(d.list_ids)))).all()
    by_id = {m.id: m.slug for m in rows}
    return [by_id[i] for i in d.list_ids if i in by_id]


def _id(d: RecurringDigest) -> int:
    """A stored digest's id (rows read from the database always have one)."""
    assert d.id is not None
    return d.id


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, NewsletterError) else f"unexpected {type(e).__name__}: {e}"


def _already_run(session: Session, d: RecurringDigest, when: datetime) -> bool:
    return session.exec(
        select(DigestRun.id).where(DigestRun.digest_id == d.id, DigestRun.scheduled_for == when)
    ).first() is not None


@dataclass
class OccurrencePlan:
    """What one occurrence holds, decided in one place for the worker's run and the admin's preview."""

    since: datetime  # articles published after this, and not sent by an earlier occurrence
    outcome: str  # "send", "skip" (too few new articles) or "fail"
    reason: str = ""  # why it is skipped or fails; empty for "send"
    warnings: list[str] = field(default_factory=list)
    selected: list = field(default_factory=list)
    composed: Digest | None = None  # the rendered issue, when rendered


def plan_occurrence(d: RecurringDigest, config: Config, when: datetime, *, since: datetime, sent_keys: set[str],
                    retry_delays: Sequence[float] = SOURCE_RETRY_DELAYS,
                    sleep: Callable[[float], None] = _time.sleep, render_short: bool = False) -> OccurrencePlan:
    """Load ``d``'s sources, select what is new since ``since`` and not in ``sent_keys``, and render
    it — or say why the occurrence is skipped or fails. Nothing is stored. ``render_short`` renders
    a selection below ``min_articles`` too (the preview shows what there is)."""
    from ..compose.model import ComposeOptions
    from ..compose.render import render
    from ..compose.select import select as select_articles

    plan = OccurrencePlan(since=since, outcome="fail")
    try:
        loaded = load_with_retries(d.sources, config, delays=retry_delays, sleep=sleep)
    except Exception as e:  # a bug in a reader must not stop every worker pass: recorded, schedule moves on
        if isinstance(e, Interrupted):
            raise
        log.exception("digest %r: loading sources failed", d.name)
        plan.reason = f"loading sources failed: {_describe(e)}"
        return plan
    plan.warnings = list(loaded.warnings)
    if loaded.failed and len(loaded.failed) == len(d.sources):
        plan.reason = f"every source failed: {'; '.join(w for w in plan.warnings if w.startswith(SOURCE_FAILED))}"
        return plan
    subject = None
    if d.subject:
        try:
            subject = render_subject(d.subject, when=when, tz=d.timezone, name=d.name, newsletter_name=config.newsletter_name)
        except InvalidInput as e:
            plan.reason = str(e)
            return plan
    options = ComposeOptions(
        since=since, limit=d.max_articles, category=d.category, tags=list(d.tags),
        template_dir=d.template_dir, subject=subject, exclude_keys=sent_keys, now=when,
    )
    why = ""
    try:
        plan.selected = select_articles(loaded.articles, options).selected
    except SelectionError as e:
        why = str(e)
    short = len(plan.selected) < max(d.min_articles, 1)
    if short:
        plan.outcome = "skip"
        plan.reason = f"nothing new: {why}" if why else f"{len(plan.selected)} new article(s), fewer than min_articles {d.min_articles}"
        if loaded.failed:
            plan.reason += f" ({len(loaded.failed)} source(s) failed)"
        if not (render_short and plan.selected):
            return plan
    try:
        plan.composed = render(plan.selected, config.replace(timezone=d.timezone), options)
    except Exception as e:  # a template error, or a bug: recorded, and the schedule moves on
        if not isinstance(e, NewsletterError):
            log.exception("digest %r: rendering failed", d.name)
        plan.outcome, plan.reason = "fail", f"rendering failed: {_describe(e)}"
        return plan
    plan.warnings.extend(plan.composed.warnings)
    if not short:
        plan.outcome = "send"
    return plan


def run_occurrence(session: Session, config: Config, d: RecurringDigest, when: datetime, *, now: datetime,
                   manual: bool = False, retry_delays: Sequence[float] = SOURCE_RETRY_DELAYS,
                   sleep: Callable[[float], None] = _time.sleep) -> RunResult:
    """Run one occurrence of ``d`` in the caller's transaction (which holds ``d``'s row lock on
    PostgreSQL); the caller commits.

    Plans first (:func:`plan_occurrence`), then inserts the (digest, occurrence) row — its unique
    key refuses a second one, so a concurrent or repeated run ends here as ``duplicate`` — and only
    then creates the campaign through the dispatcher *in the same transaction*, scheduled for the
    occurrence's time (a worker sends it), and remembers the article keys. All of it commits or none.
    """
    if _already_run(session, d, when):
        return RunResult(d.name, when, "duplicate", reason="already run")

    def record(status: str, reason: str, warnings: list[str], count: int = 0) -> DigestRun | None:
        run = DigestRun(digest_id=_id(d), scheduled_for=when, status=status, manual=manual, started_at=now,
                        article_count=count, reason=reason, warnings=list(warnings), finished_at=now)
        try:
            with session.begin_nested():
                session.add(run)
                session.flush()
        except sa_exc.IntegrityError:  # another process recorded this occurrence first: it is theirs
            return None
        return run

    since = _since_for(session, d, cron.parse_schedule(d.schedule), when)
    from ..store.lists import common_language

    language = common_language(session, _list_slugs(session, d))  # the digest's words in its lists' language
    plan = plan_occurrence(d, dataclasses.replace(config, language=language) if language else config, when, since=since, sent_keys=_sent_keys(session, _id(d)),
                           retry_delays=retry_delays, sleep=sleep)
    if plan.outcome != "send":
        status = "skipped" if plan.outcome == "skip" else "failed"
        if record(status, plan.reason, plan.warnings, len(plan.selected)) is None:
            return RunResult(d.name, when, "duplicate", reason="recorded by another process")
        return RunResult(d.name, when, status, None, len(plan.selected), plan.reason, list(plan.warnings))
    composed = plan.composed
    if composed is None:
        raise RuntimeError(f"digest {d.name!r}: an occurrence planned to send has no rendered issue")
    keys = list(dict.fromkeys(a.key for a in composed.articles))
    run = record("created", "", plan.warnings, len(keys))
    if run is None:
        return RunResult(d.name, when, "duplicate", reason="recorded by another process")
    try:
        with session.begin_nested():
            campaign_id = create_campaign_for_run(session, config, d, composed, when, _list_slugs(session, d))
            schedule_run_campaign(session.connection(), campaign_id, when, now=now)
    except NewsletterError as e:
        # e.g. a target list was deleted: recorded as failed, and the next occurrence tries again.
        run.status, run.reason = "failed", str(e)
        session.add(run)
        session.flush()
        return RunResult(d.name, when, "failed", None, len(keys), str(e), plan.warnings)
    run.campaign_id = campaign_id
    session.add(run)
    for key in keys:
        session.add(DigestSentArticle(digest_id=_id(d), run_id=run.id, article_key=key, sent_at=now))
    d.last_run_at = when
    d.articles_sent = (d.articles_sent or 0) + len(keys)
    session.add(d)
    session.flush()
    return RunResult(d.name, when, "created", campaign_id, len(keys), "", plan.warnings)


def create_campaign_for_run(session: Session, config: Config, d: RecurringDigest, composed: Digest, when: datetime,
                            list_slugs: list[str]) -> int:
    """The occurrence's campaign, written by the dispatcher in ``session``'s transaction (a draft
    until :func:`schedule_run_campaign`). The dispatcher embeds relatively linked thumbnails."""
    from ..dispatch.campaigns import create_campaign

    local = when.astimezone(cron.get_zone(d.timezone))
    bind = session.get_bind()
    campaign = create_campaign(
        bind if isinstance(bind, Engine) else bind.engine, composed, list_slugs, config, name=f"{d.name} {local:%Y-%m-%d %H:%M %Z}",
        meta={"digest": d.name, "digest_id": d.id, "occurrence": when.isoformat()}, conn=session.connection(),
    )
    assert campaign.id is not None  # written and read back: it has its id
    return campaign.id


def schedule_run_campaign(conn, campaign_id: int, when: datetime, *, now: datetime) -> None:
    """draft → scheduled at the occurrence's time, in the caller's transaction."""
    from ..dispatch.campaigns import transition
    from ..store import queries as q

    transition(conn, campaign_id, "scheduled", allow_from=("draft",), now=now)
    q.set_scheduled_at(conn, campaign_id, when, now)


def _advance(d: RecurringDigest, cursor: datetime | None, now: datetime) -> None:
    sched = cron.parse_schedule(d.schedule)
    if cursor is not None and cursor > d.handled_until:
        d.handled_until = cursor
    d.next_run_at = None if d.paused else cron.next_after(sched, d.timezone, d.handled_until)
    d.updated_at = now


class Interrupted(Exception):
    """A stop was requested while an occurrence waited to retry a source: it is left for later."""


def _run_next_due(session: Session, config: Config, now: datetime, catch_up: str | None, broken: set[int],
                  retry_delays: Sequence[float], sleep: Callable[[float], None],
                  notes: list[str]) -> list[RunResult] | None:
    """Claim one due digest and run its oldest planned occurrence; None when nothing is due."""
    from ..store import queries

    did = queries.claim_due_digest(session.connection(), now, broken)
    if did is None:
        return None
    d = session.get_one(RecurringDigest, did)  # claimed in this transaction: it is there
    policy = catch_up or d.catch_up
    try:
        plan = cron.plan_due(cron.parse_schedule(d.schedule), d.timezone, d.handled_until, now, policy)
    except ScheduleError as e:  # a row edited by hand: reported once, then left alone this pass
        broken.add(did)
        notes.append(f"digest {d.name!r}: {e}")
        return []
    if plan.missed:
        many = f"{plan.missed}{'+' if plan.missed >= 1000 else ''}"
        if not plan.run and plan.cursor is not None:  # catch-up "none": even the newest one is dropped
            late = int((now - plan.cursor).total_seconds() // 60)
            notes.append(f"warning: digest {d.name!r}: dropped {many} missed occurrence(s), the newest "
                         f"{plan.cursor.isoformat()} ({late} min late; catch-up none runs only occurrences at most "
                         f"{int(cron.DEFAULT_GRACE.total_seconds() // 60)} min late)")
        else:
            notes.append(f"warning: digest {d.name!r}: passed over {many} missed occurrence(s) (catch-up {policy})")
    out: list[RunResult] = []
    cursor = plan.cursor
    if plan.run:
        when = plan.run[0]
        out.append(run_occurrence(session, config, d, when, now=now, retry_delays=retry_delays, sleep=sleep))
        if len(plan.run) > 1:  # catch-up "all": move only past this one, the rest come next
            cursor = when
    _advance(d, cursor or now, now)
    session.add(d)
    return out


def run_due_digests(engine: Engine, config: Config, *, now: datetime | None = None, catch_up: str | None = None,
                    retry_delays: Sequence[float] = SOURCE_RETRY_DELAYS, max_occurrences: int = 1000,
                    on_event: Callable[[str], None] | None = None, stop_event=None) -> list[RunResult]:
    """Run the digest occurrences due at ``now``, one transaction per occurrence: claim a due digest
    (row lock, SKIP LOCKED on PostgreSQL, so several workers share digests and never run one
    twice), plan under its catch-up policy (or ``catch_up``), run the oldest planned occurrence,
    advance the digest's schedule past it, commit; repeat until nothing is due or ``stop_event``."""
    from ..store.db import session_scope

    now = _now(now)
    if catch_up is not None:
        cron.check_catch_up(catch_up)
    emit = on_event or (lambda line: None)
    results: list[RunResult] = []
    broken: set[int] = set()

    def sleep(seconds: float) -> None:
        # A stop request (SIGTERM) must not wait out source retries: abandon the occurrence, whose
        # transaction rolls back, so the next worker pass runs it from the start.
        if stop_event is None:
            _time.sleep(seconds)
        elif stop_event.wait(seconds):
            raise Interrupted()

    for _ in range(max_occurrences):
        if stop_event is not None and stop_event.is_set():
            break
        notes: list[str] = []
        out: list[RunResult] | None = None
        try:
            with session_scope(engine) as session:
                out = _run_next_due(session, config, now, catch_up, broken, retry_delays, sleep, notes)
        except Interrupted:
            notes.append("stop requested while retrying a source; the occurrence is left for the next pass")
        finally:
            for n in notes:
                emit(n)
        if out is None:
            break
        for r in out:
            results.append(r)
            emit(r.line())
    return results


@dataclass
class DigestPreview:
    """What a digest's next occurrence would send if it ran now (nothing stored)."""

    name: str
    when: datetime  # the occurrence previewed (UTC): the next run, or now when none is planned
    timezone: str
    since: datetime  # articles published after this, and not sent by an earlier occurrence
    digest: Digest | None  # the rendered issue; None when no article is selected
    warnings: list[str] = field(default_factory=list)
    problem: str = ""  # why the occurrence would be skipped or fail; empty when it would go out


def preview_digest(engine: Engine, config: Config, name: str, *, now: datetime | None = None,
                   retry_delays: Sequence[float] = ()) -> DigestPreview:
    """Compose a stored digest's next occurrence the way the worker will (the same
    :func:`plan_occurrence`) without storing anything. Sources are tried once (``retry_delays`` adds
    retries); with fewer articles than ``min_articles`` the rendered digest is still returned, with
    ``problem`` saying it would be skipped (with none at all, ``digest`` is None)."""
    from ..store.db import session_scope

    now = _now(now)
    with session_scope(engine) as session:
        d = _get(session, name)
        when = d.next_run_at if d.next_run_at is not None else now
        since = _since_for(session, d, cron.parse_schedule(d.schedule), when)
        sent = _sent_keys(session, _id(d))
    plan = plan_occurrence(d, config, when, since=since, sent_keys=sent, retry_delays=retry_delays, render_short=True)
    out = DigestPreview(d.name, when, d.timezone, since, plan.composed, list(plan.warnings))
    if plan.outcome == "skip":
        local = since.astimezone(cron.get_zone(d.timezone))
        out.problem = (f"the occurrence would be skipped: {plan.reason} "
                       f"(articles published since {local:%Y-%m-%d %H:%M %Z} and not sent before)")
    elif plan.outcome == "fail":
        out.problem = f"the occurrence would fail: {plan.reason}"
    return out


def run_digest_now(engine: Engine, config: Config, name: str, *, now: datetime | None = None,
                   retry_delays: Sequence[float] = SOURCE_RETRY_DELAYS) -> RunResult:
    """``digests run NAME --now``: one occurrence at ``now``, outside the schedule (which is unchanged).
    Its campaign is scheduled for ``now``: the caller sends it (or the next worker pass does)."""
    from ..errors import StateError
    from ..store.db import session_scope

    now = _now(now).replace(microsecond=0)
    with session_scope(engine) as session:
        d = _get(session, name, lock=True)
        # A manual run is not a schedule slot: two in the same second (a double click, a script) get
        # successive whole-second keys rather than a "try again". The digest row lock serializes this.
        when = now
        while _already_run(session, d, when) and when - now < timedelta(seconds=60):
            when += timedelta(seconds=1)
        result = run_occurrence(session, config, d, when, now=now, manual=True, retry_delays=retry_delays)
    if result.status == "duplicate":
        raise StateError(f"digest {name!r}: an occurrence at {when.isoformat()} was already recorded; try again")
    return result
