"""The campaign pages' calls into the library (dispatch.drafts, dispatch.standing, store.workers),
turned into what the pages show: form defaults and choices, a cached preview of a composition,
the standing of a campaign and the numbers its script polls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Form

from ..dispatch.drafts import DraftRequest
from ..errors import NewsletterError, NotFound
from . import preview as pv

DEFAULT_LIMIT = 10  # the new-campaign form takes at most this many articles: never the whole archive
CACHED_COMPOSITIONS = 8

# CLI wording in library messages, as the page says it.
_WORDS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"older than --since"), "older than the start of the date range"),
    (re.compile(r"--since cannot place it"), "the date range cannot place it"),
    (re.compile(r"over --limit (\d+)"), r"over the limit of \1 articles"),
    (re.compile(r"--limit (\d+)"), r"the limit of \1 articles"),
    (re.compile(r"--since "), "the date "),
    (re.compile(r"--at '[^']*' \(([^)]*)\)"), r"the time \1"),
    (re.compile(r"--at '([^']*)'"), r"the time \1"),
    (re.compile(r" \(--list SLUG\)"), ""),
    (re.compile(r"^cron '([^']*)': expected 5 fields.*"),
     r"schedule '\1' is neither a simple form (daily 07:30, weekdays 08:00, weekly mon 08:00, monthly 1 09:00) "
     r"nor a cron expression of 5 fields (minute hour day month weekday)"),
    (re.compile(r"a digest needs at least one --source"), "choose at least one source"),
    (re.compile(r"--max-articles (-?\d+)"), r"at most \1 articles"),
    (re.compile(r"--min-articles (-?\d+)"), r"at least \1 articles"),
    (re.compile(r"--source "), "source "),
    (re.compile(r" \(create it with `newsletter lists create`\)"), ""),
    (re.compile(r" \(remove it first or pick another name\)"), ": pick another name"),
    (re.compile(r"; start it with `newsletter send (\d+)`"), r"; use Send now"),
    # A/B tests and local-time schedules (dispatch.abtest, schedule.localtime)
    (re.compile(r"--subject-([b-d])\b"), lambda m: "subject " + m[1].upper()),
    (re.compile(r"--subject \(variant A\)"), "subject A"),
    (re.compile(r"--subject\b"), "subject A"),
    (re.compile(r"--intro-([b-d])\b"), lambda m: "intro " + m[1].upper()),
    (re.compile(r"--intro\b"), "intro A"),
    (re.compile(r"^--test-share "), "test share "),
    (re.compile(r"--test-wait "), "wait "),
    (re.compile(r"--winner-by "), "winner by "),
    (re.compile(r"--min-sample "), "minimum sample "),
    (re.compile(r"\(add --track (\w+), or opens,clicks\)"), r"(choose Tracking: \1, or opens and clicks)"),
    (re.compile(r"schedule it with --at instead"), "schedule it at a time in your time zone instead"),
    (re.compile(r"give a later --date"), "choose a later day"),
    (re.compile(r"--local-time "), "local time "),
    (re.compile(r"--window "), "window "),
    (re.compile(r"--past "), "late zones "),
    (re.compile(r"--date "), "day "),
    (re.compile(r" \(`newsletter send (\d+) --now` sends it now\)"), r" (Send now starts it at once)"),
]


def publisher_words(message: str) -> str:
    """A library message with its command-line wording (``--since``...) replaced by the page's."""
    for pattern, words in _WORDS:
        message = pattern.sub(words, message)
    first = message.split(" ", 1)[0]
    return message if "_" in first else message[:1].upper() + message[1:]  # "base_url is …" stays a setting's name


def rich(text: str):
    """A standing sentence for a page: escaped, with `commands` in <code>."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def duration_text(seconds: float) -> str:
    from ..dispatch.standing import duration_text as fmt

    return fmt(seconds)


def _zone(st):
    from ..schedule.cron import get_zone

    return get_zone(st.config.timezone)


def local_time(st, when: datetime | None) -> str:
    from ..dispatch.standing import local_time as fmt

    return fmt(when, st.config.timezone) if when else ""


def local_input(st, when: datetime) -> str:
    """``when`` in the publisher's time zone as a datetime-local value."""
    return when.astimezone(_zone(st)).strftime("%Y-%m-%dT%H:%M")


def local_now_input(st) -> str:
    """Now in the publisher's time zone, as a datetime-local value (the schedule picker's minimum)."""
    return local_input(st, datetime.now(timezone.utc))


# --- the form -----------------------------------------------------------------------------------


def suggested_since(st, lists: list[str], exclude: int | None = None):
    """Where a digest for ``lists`` starts by default (``dispatch.previous.SinceChoice``): when the
    last campaign that reached them was composed, else config ``default_since`` before now."""
    from ..dispatch.previous import configured_since, default_since

    try:
        return default_since(st.engine, st.config, lists, exclude=exclude)
    except NotFound:  # a list deleted since the form was shown: its choice is refused on submit
        return configured_since(st.config)


def since_note(st, req: DraftRequest, exclude: int | None = None) -> str:
    """The sentence under the date field: the start these lists suggest and why, and whether the
    field holds it."""
    choice = suggested_since(st, list(req.lists), exclude)
    if choice.since is None:
        return f"No suggested start ({choice.reason}): choose the first day."
    value = local_input(st, choice.since)
    held = req.since.strip()
    same = held == value or (len(held) == 10 and value.startswith(held) and value.endswith("T00:00"))
    return (f"{'Filled in' if same else 'Suggested'}: {value.replace('T', ' ')} — {choice.reason}."
            .replace("default_since", "the configured default_since"))


def default_request(st) -> DraftRequest:
    """The form's start: every configured source, articles since the last campaign to the only list
    (else config ``default_since``, 7 days) up to today, 10 articles, the only list when there is one."""
    today = datetime.now(timezone.utc).astimezone(_zone(st)).date()
    lists = all_lists(st)
    chosen = [lists[0].slug] if len(lists) == 1 else []
    choice = suggested_since(st, chosen)
    return DraftRequest(sources=list(st.config.sources), since=local_input(st, choice.since) if choice.since else "",
                        until=today.isoformat(), limit=DEFAULT_LIMIT, lists=chosen)


def already_received(st, req: DraftRequest, doc, exclude: int | None = None) -> list[str]:
    """The composed articles that readers of the chosen lists already received, one sentence each."""
    from ..dispatch.previous import already_received as find

    digest = getattr(doc, "digest", None) if doc is not None else None
    if digest is None or not req.lists:
        return []
    try:
        return [r.warning() for r in find(st.engine, list(req.lists), digest.articles, exclude=exclude)]
    except NotFound:
        return []


AB_SUBJECTS = ("subject_b", "subject_c", "subject_d")
AB_INTROS = ("ab_intro_a", "ab_intro_b", "ab_intro_c", "ab_intro_d")
AB_SETTINGS = ("test_share", "test_wait", "winner_by", "min_sample", "track")


def ab_form(ab: str = Form(""), subject_b: str = Form(""), subject_c: str = Form(""), subject_d: str = Form(""),
            ab_intro_a: str = Form(""), ab_intro_b: str = Form(""), ab_intro_c: str = Form(""), ab_intro_d: str = Form(""),
            test_share: str = Form(""), test_wait: str = Form(""), winner_by: str = Form(""), min_sample: str = Form(""),
            track: str = Form("")) -> dict:
    """The campaign form's A/B section and tracking choice as typed (a dependency of both the
    new-campaign and the edit-draft handler); checked by the library, not here."""
    typed = dict(subject_b=subject_b, subject_c=subject_c, subject_d=subject_d, ab_intro_a=ab_intro_a,
                 ab_intro_b=ab_intro_b, ab_intro_c=ab_intro_c, ab_intro_d=ab_intro_d, test_share=test_share,
                 test_wait=test_wait, winner_by=winner_by, min_sample=min_sample, track=track)
    out: dict[str, Any] = {"ab": bool(ab)}
    for k, v in typed.items():
        limit = 998 if k in AB_SUBJECTS else 5000 if k in AB_INTROS else 32
        v = v.replace("\r\n", "\n")
        out[k] = (v if k in AB_INTROS else v.strip())[:limit]
    return out


def apple_warning() -> str:
    """Why opens are a poor measure for a winner (the library's words, as the page says them)."""
    from ..dispatch.abtest import APPLE_WARNING

    return publisher_words(APPLE_WARNING.replace("--winner-by opens: ", ""))


def request_from(st, sources, since, until, limit, intro, subject, lists, segment, ab: dict | None = None) -> DraftRequest:
    """The submitted form as a request (only configured sources count; a bad number is kept as None
    and refused with the other checks); ``ab``: the A/B section (:func:`ab_form`)."""
    allowed = set(st.config.sources)
    try:
        n: int | None = int(str(limit).strip())
    except ValueError:
        n = None
    return DraftRequest(sources=[s for s in sources if s in allowed], since=since.strip()[:32], until=until.strip()[:32],
                        limit=n, intro=intro.replace("\r\n", "\n")[:20_000], subject=subject.strip()[:998],
                        lists=[x for x in lists if x][:100], segment=segment.strip()[:200], **(ab or {}))


def request_of_campaign(st, info) -> DraftRequest:
    """A draft's choices as made (meta "compose"), else the defaults with its subject and lists."""
    from ..dispatch.drafts import with_stored_test

    req = DraftRequest.from_meta(info.meta)
    if req is None:
        req = default_request(st)
        req.subject, req.lists = info.subject, list(info.lists)
        choice = suggested_since(st, req.lists, exclude=info.id)
        req.since = local_input(st, choice.since) if choice.since else ""
    return with_stored_test(st.engine, info.id, req)


def all_lists(st):
    from ..store.lists import list_lists

    return list_lists(st.engine)


def form_choices(st) -> dict:
    from ..store.segments import list_segments

    return {"sources": list(st.config.sources), "lists": all_lists(st), "segments": list_segments(st.engine, counts=False)}


def _cache(st) -> OrderedDict:
    return st.preview_cache.setdefault("compositions", OrderedDict())


def draft_preview(st, req: DraftRequest) -> tuple[pv.PreviewDoc, str | None]:
    """The digest ``req`` composes, as the preview shows it, and the key its frame is served under
    (None when it could not be composed: the doc then holds the reason)."""
    from ..compose.templates import resolve_template_dir
    from ..dispatch.drafts import compose_draft

    key = hashlib.sha1(json.dumps([req.as_dict(), pv.fingerprint(list[Path | str](req.sources)), datetime.now(timezone.utc).date().isoformat()],
                                  sort_keys=True).encode()).hexdigest()[:16]
    cache = _cache(st)
    if key in cache:
        cache.move_to_end(key)
        return cache[key], key
    try:
        digest = compose_draft(st.engine, st.config, req)
    except NewsletterError as e:
        return pv.PreviewDoc(label="new campaign", subject="", preheader="", html="", text="", error=publisher_words(str(e))), None
    if req.subject:
        digest.subject = req.subject
    doc = pv.from_digest(digest, "new campaign", template_dir=resolve_template_dir(st.config.template_dir))
    doc.warnings = [publisher_words(w) for w in doc.warnings]
    cache[key] = doc
    while len(cache) > CACHED_COMPOSITIONS:
        cache.popitem(last=False)
    return doc, key


def cached_preview(st, key: str) -> pv.PreviewDoc:
    doc = _cache(st).get(key)
    if doc is None:
        raise NotFound("this preview is no longer kept: press Preview again")
    return doc


def create_draft(st, req: DraftRequest):
    from ..dispatch.drafts import create_draft as make

    return make(st.engine, st.config, req)


def update_draft(st, campaign_id: int, req: DraftRequest):
    from ..dispatch.drafts import update_draft as save

    return save(st.engine, st.config, campaign_id, req)


def schedule(st, campaign_id: int, form: dict):
    """Schedule from the campaign page's form: at a time in the publisher's zone (``mode`` "at",
    ``when``), or at a time of day in each reader's zone (``mode`` "local": ``local_time``,
    ``local_date``, ``window``, ``past``), through the library functions of ``campaigns schedule``."""
    from . import library

    if form.get("mode") != "local":
        return library.schedule_campaign(st, campaign_id, form.get("when", ""))
    from ..schedule.localtime import schedule_local_time

    return schedule_local_time(st.engine, campaign_id, form.get("local_time", ""), tz=st.config.timezone,
                               day=form.get("local_date") or None, window=form.get("window") or None,
                               past=form.get("past") or None)


def schedule_form(mode: str = Form("at"), when: str = Form(""), local_time: str = Form(""), local_date: str = Form(""),
                  window: str = Form(""), past: str = Form("")) -> dict:
    """The schedule form as typed (each value cut to a sane length)."""
    return {"mode": "local" if mode == "local" else "at", "when": when.strip()[:64], "local_time": local_time.strip()[:16],
            "local_date": local_date.strip()[:16], "window": window.strip()[:16], "past": past.strip()[:16]}


def local_time_plan(st, info) -> dict | None:
    """A local-time campaign's wish and bucket progress (``dispatch.buckets``), each bucket's
    instant also in the publisher's zone; None for another campaign."""
    b = getattr(info, "buckets", None)
    if not b:
        return None
    out = dict(b)
    out["buckets"] = [dict(x, local=local_time(st, datetime.fromisoformat(x["at"]))) for x in b["buckets"]]
    return out


def send_now(st, campaign_id: int):
    from ..dispatch.drafts import send_now as start

    return start(st.engine, campaign_id)


def duplicate(st, campaign_id: int):
    from ..dispatch.drafts import duplicate_campaign

    return duplicate_campaign(st.engine, campaign_id)


# --- standing -----------------------------------------------------------------------------------


def standing(st, info):
    from ..dispatch.standing import campaign_standing

    return campaign_standing(st.engine, info, st.config.timezone)


def send_problem(st) -> str | None:
    """Why a worker with this configuration would refuse to send any campaign (a base_url readers
    cannot open, over SMTP), said before the publisher starts or schedules one; else None."""
    from ..dispatch.preflight import check_public_links, make_transports

    try:
        check_public_links(st.config, make_transports(st.config))
    except NewsletterError as e:
        return publisher_words(str(e))
    return None


def worker_summary(st) -> dict:
    """Whether a worker runs, for pages listing scheduled or running campaigns."""
    from ..dispatch.standing import START_WORKER
    from ..store.workers import live_workers

    live = live_workers(st.engine)
    return {"running": len(live),
            "note": (f"{len(live)} worker{'s' if len(live) != 1 else ''} running." if live
                     else f"No worker is running: scheduled and running campaigns and recurring digests wait until you {START_WORKER}.")}


def live_numbers(info, s) -> dict:
    """What the campaign page's script shows without reloading (JSON-ready)."""
    from ..dispatch.progress import ledger_progress
    from ..dispatch.standing import duration_text

    p = ledger_progress(info.counts, audience=info.audience).as_dict()
    counts = dict(p["counts"])
    counts["sending"] = s.sending
    return {"id": info.id, "status": info.status, "counts": counts, "ambiguous": s.ambiguous, "done": p["done"],
            "total": p["total"], "percent": p["percent"], "rate": s.rate,
            "rate_text": f"{s.rate:.1f} messages/s" if s.rate is not None else "",
            "eta_seconds": s.eta_seconds, "eta_text": duration_text(s.eta_seconds) if s.eta_seconds is not None else "",
            "note": s.note, "needs_worker": s.needs_worker, "stall": s.stall, "workers_running": s.workers_running}
