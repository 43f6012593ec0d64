"""CLI commands for `dispatch`: `campaigns create|list|show|pause|resume|cancel` and `send`.

A thin shell over ``newsletter.dispatch``: parse flags, call one library function, format the
result. ``campaigns_app`` is the Typer group other areas add to (``campaigns schedule``).
"""

from __future__ import annotations

import json
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from . import app, get_config

campaigns_app = typer.Typer(help="Campaigns: snapshot a digest for lists, list, show, pause, resume, cancel.",
                            no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")


class Fmt(str, Enum):
    table = "table"
    json = "json"


def _engine(ctx: typer.Context):
    from ..store.db import get_engine, require_current_schema

    config = get_config(ctx)
    engine = get_engine(config.database_url)
    require_current_schema(engine)
    return config, engine


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _headers(values: List[str]) -> dict[str, str]:
    """``--header 'Name: value'`` options, each checked by the one header-safety rule."""
    from ..compose.headers import check_header, check_header_name
    from ..errors import InvalidInput

    out = {}
    for v in values or []:
        k, sep, val = v.partition(":")
        if not sep or not k.strip():
            raise InvalidInput(f"--header {v!r} must look like 'Name: value'")
        try:
            name = check_header_name(k)
            out[name] = check_header(name, val.strip(" \t"))
        except InvalidInput as e:
            raise InvalidInput(f"--header: {e}") from None
    return out


@campaigns_app.command("create")
def create_command(
    ctx: typer.Context,
    lists: List[str] = typer.Option(..., "--list", "-l", help="Target list slug; repeat for several (a reader on two gets one copy)."),
    from_dir: Optional[Path] = typer.Option(None, "--from", help="A composed digest folder (from `newsletter compose --out DIR`)."),
    compose_sources: Optional[List[str]] = typer.Option(None, "--compose", help="Compose from these sources now (repeatable) instead of --from."),
    since: Optional[str] = typer.Option(None, "--since", help="With --compose: only articles since (7d, 2w, a date, or all; default: since the last campaign to the lists, else config default_since)."),
    skip_sent: bool = typer.Option(False, "--skip-sent", help="With --compose: leave out articles an earlier campaign to the lists already carried."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="With --compose: at most this many articles."),
    subject: Optional[str] = typer.Option(None, "--subject", help="Subject line (default: the digest's)."),
    reply_to: Optional[str] = typer.Option(None, "--reply-to", help="Reply-To address (default: config reply_to)."),
    from_address: Optional[str] = typer.Option(None, "--sender", help="From address (default: config from_address / NEWSLETTER_FROM)."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the campaign in listings (default: the subject)."),
    header: Optional[List[str]] = typer.Option(None, "--header", help="Extra header 'Name: value' (repeatable)."),
    segment: Optional[str] = typer.Option(None, "--segment", help="Send only to this segment of the --list (see `newsletter segments`); the filter is recorded on the campaign."),
    track: Optional[str] = typer.Option(None, "--track", help="Track opens, clicks, opens,clicks or off (default: config track / track_lists, off)."),
    subject_b: Optional[str] = typer.Option(None, "--subject-b", help="A/B test: variant B's subject (--subject is A)."),
    subject_c: Optional[str] = typer.Option(None, "--subject-c", help="A/B test: variant C's subject."),
    subject_d: Optional[str] = typer.Option(None, "--subject-d", help="A/B test: variant D's subject."),
    test_share: Optional[str] = typer.Option(None, "--test-share", help="A/B test: the share of readers in the test, split evenly between the variants (default 20%)."),
    test_wait: Optional[str] = typer.Option(None, "--test-wait", help="A/B test: how long after the test copies went out the winner is chosen (4h, 90m, 1d; default 4h)."),
    winner_by: Optional[str] = typer.Option(None, "--winner-by", help="A/B test: clicks (human clicks, the default) or opens (undercounts Apple Mail readers)."),
    min_sample: Optional[int] = typer.Option(None, "--min-sample", help="A/B test: delivered copies each variant needs for a decision on data (default 50; else A is sent)."),
    intro: Optional[str] = typer.Option(None, "--intro", help="A/B body variant: an intro paragraph above variant A's content."),
    intro_b: Optional[str] = typer.Option(None, "--intro-b", help="A/B body variant: variant B's intro (same content otherwise)."),
    intro_c: Optional[str] = typer.Option(None, "--intro-c", help="A/B body variant: variant C's intro."),
    intro_d: Optional[str] = typer.Option(None, "--intro-d", help="A/B body variant: variant D's intro."),
    archive: Optional[bool] = typer.Option(None, "--archive/--no-archive", help="Show it in the public archive once a copy was delivered, or never (default: as its lists say)."),
) -> None:
    """Snapshot a composed digest into a draft campaign; prints the new id alone on the last line.
    With --subject-b (and -c, -d) it is an A/B subject test: see docs/ab-tests.md."""
    from ..dispatch.abtest import APPLE_WARNING, ab_spec
    from ..errors import InvalidInput, SelectionError

    extra_headers = _headers(header or [])  # before anything is opened or composed
    ab = ab_spec(subject, [subject_b, subject_c, subject_d], test_share=test_share, test_wait=test_wait,
                 winner_by=winner_by, min_sample=min_sample, intros=[intro, intro_b, intro_c, intro_d])
    config, engine = _engine(ctx)
    if (from_dir is None) == (not compose_sources):
        raise InvalidInput("give exactly one of --from DIR or --compose SOURCE")
    if skip_sent and from_dir is not None:
        raise InvalidInput("--skip-sent goes with --compose: a digest given with --from is already composed")
    from ..dispatch.previous import already_received, choose_since, sent_keys

    if from_dir is not None:
        from ..compose import load_digest

        digest = load_digest(from_dir)
        meta = {"source": str(from_dir)}
    else:
        from ..compose import ComposeOptions, compose

        from ..store.lists import common_language

        choice = choose_since(engine, config, since, list(lists))
        options = ComposeOptions(since=choice.since, limit=limit, language=common_language(engine, list(lists)),
                                 exclude_keys=sent_keys(engine, list(lists)) if skip_sent else ())
        sources = list(compose_sources or [])
        _console(True).print(choice.sentence(config.timezone), markup=False)
        try:
            digest = compose(sources, config, options)
        except SelectionError as e:
            raise choice.explain(e) from None
        for w in digest.warnings:
            _console(True).print(f"warning: {w}", markup=False)
        meta = {"source": "compose " + " ".join(sources)}
    for r in already_received(engine, list(lists), digest.articles):
        _console(True).print(f"warning: {r.warning()}", markup=False)
    from ..dispatch.campaigns import campaign_info, create_campaign, stored_id

    kw: dict[str, Any] = dict(reply_to=reply_to, from_address=from_address, headers=extra_headers, name=name,
                              meta=meta, segment=segment, track=track, archive=archive)
    if ab is None:
        c = create_campaign(engine, digest, list(lists), config, subject=subject, **kw)
    else:
        from ..dispatch.abtest import create_ab_campaign

        c = create_ab_campaign(engine, digest, list(lists), config, ab, **kw)
    info = campaign_info(engine, stored_id(c))
    err = _console(True)
    if ab is not None:
        err.print(f"A/B test: {len(ab.subjects)} subjects to {ab.test_share / 100:g}% of readers, the winner by "
                  f"{ab.winner_by} to the rest after {test_wait or '4h'} (sent by `newsletter worker`)", markup=False)
        if ab.winner_by == "opens":
            err.print(f"warning: {APPLE_WARNING}", markup=False)
    seg = f" (segment {segment})" if segment else ""
    if (c.meta or {}).get("track"):
        seg += f"; tracking {','.join(c.meta['track'])}"
    err.print(f"created campaign {c.id} ({c.status}): {c.subject!r} for {', '.join(info.lists)}{seg}; "
              f"{info.audience} active subscriber(s) now", markup=False)
    if not info.audience:
        err.print("warning: no active subscribers on these lists yet; `send` will refuse until there are", markup=False)
    typer.echo(str(c.id))


def _fmt_time(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "-"


@campaigns_app.command("list")
def list_command(
    ctx: typer.Context,
    status: Optional[str] = typer.Option(None, "--status", help="Only campaigns in this status."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
) -> None:
    """Campaigns, newest first, with their delivery counts."""
    from ..dispatch.campaigns import list_campaigns
    from ..store.lifecycle import copies_left

    _, engine = _engine(ctx)
    items = list_campaigns(engine, status=status)
    if fmt is Fmt.json:
        typer.echo(json.dumps([i.as_dict() for i in items], indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(show_edge=False)
    for col in ("id", "status", "subject", "lists", "sent", "failed", "left", "created"):
        t.add_column(col)
    for i in items:
        t.add_row(str(i.id), i.status, i.subject, ",".join(i.lists), str(i.counts.get("sent", 0)),
                  str(i.counts.get("failed", 0)), str(copies_left(i.counts)), _fmt_time(i.created_at))
    _console().print(t)


@campaigns_app.command("show")
def show_command(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign id."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
    failures: int = typer.Option(10, "--failures", help="Show up to this many failed/deferred/ambiguous rows."),
) -> None:
    """One campaign: status, times, lists, ledger counts, what happens next and its latest problems."""
    from ..dispatch.campaigns import campaign_info
    from ..dispatch.liveness import sender_alive
    from ..dispatch.standing import campaign_standing, duration_text
    from ..store import queries as q
    from ..store.db import transaction

    config, engine = _engine(ctx)
    info = campaign_info(engine, campaign)
    standing = campaign_standing(engine, info, config.timezone)
    with transaction(engine) as conn:
        problems = q.delivery_rows(conn, info.id, ("failed", "deferred", "sending"), limit=failures)
    alive = {w: sender_alive(engine, info.id, w) for w in {r.worker_id for r in problems if r.state == "sending"}}

    def label(r) -> str:  # a copy in "sending" is in flight while its sender lives, ambiguous once it died
        return ("sending" if alive.get(r.worker_id) else "ambiguous") if r.state == "sending" else r.state

    if fmt is Fmt.json:
        d = info.as_dict()
        d["standing"] = standing.as_dict()
        d["problems"] = [{"email": r.email, "state": label(r), "attempts": r.attempts, "last_reply": r.last_reply}
                         for r in problems]
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    out = _console()
    out.print(f"campaign {info.id}: {info.subject}", markup=False)
    rows = [
        ("status", info.status + (f" ({info.status_reason})" if info.status_reason else "")),
        ("lists", ", ".join(info.lists)), ("from", info.from_address), ("reply-to", info.reply_to or "-"),
        ("created", _fmt_time(info.created_at)), ("scheduled", _fmt_time(info.scheduled_at)),
        ("started", _fmt_time(info.started_at)), ("finished", _fmt_time(info.finished_at)),
        ("audience", str(info.audience)), ("html size", f"{info.html_size / 1024:.1f} KiB"), ("images", str(info.images)),
        ("archive", info.archive.get("reason", "-")),
    ]
    if standing.duration_seconds is not None:
        rows.insert(8, ("took", duration_text(standing.duration_seconds)))
    if standing.note:
        rows.insert(1, ("next", standing.note))
    if standing.stall and not standing.note.startswith("Not sending"):
        rows.insert(2, ("stalled", standing.stall))
    if standing.resume:
        rows.insert(2, ("resume", standing.resume))
    seg = (info.meta or {}).get("segment")
    if seg:
        rows.insert(2, ("segment", f"{seg['name']} {seg['filter']}"))
    for k, v in rows:
        out.print(f"  {k:10} {v}", markup=False)
    if info.counts:
        shown = {k: v for k, v in info.counts.items() if k != "sending"}
        if standing.sending:
            shown["sending"] = standing.sending
        if standing.ambiguous:
            shown["ambiguous"] = standing.ambiguous
        out.print("  ledger     " + ", ".join(f"{k} {v}" for k, v in sorted(shown.items())), markup=False)
    if standing.rate is not None:
        eta = f", about {duration_text(standing.eta_seconds)} to go" if standing.eta_seconds is not None else ""
        out.print(f"  rate       {standing.rate:.1f} messages/s over the last minute{eta}", markup=False)
    fb = info.feedback
    if fb.get("copies"):
        out.print(f"  feedback   hard {fb['hard']} ({fb['hard_rate']:.2%}), soft {fb['soft']} ({fb['soft_rate']:.2%}), "
                  f"complaints {fb['complaints']} ({fb['complaint_rate']:.2%}) of {fb['copies']} copies", markup=False)
    if info.ab:
        from .abtests import ab_lines

        for line in ab_lines(info.ab):
            out.print("  " + line, markup=False)
    if info.buckets is not None:
        _print_buckets(out, info.buckets)
    for r in problems:
        state = label(r)
        note = " — its sender died: it may or may not have arrived (see --resend-ambiguous)" if state == "ambiguous" else ""
        out.print(f"  {state:10} {r.email} (attempts {r.attempts}): {r.last_reply or ''}{note}", markup=False)


def _print_buckets(out, b: dict) -> None:
    """A local-time campaign's plan in `campaigns show`: one line per bucket (dispatch/buckets.py)."""
    head = f"{b['time']} local time on {b['date']} (window {b['window_minutes']} min, past: {b['past']})"
    if not b["planned"]:
        out.print(f"  local time {head}; buckets are planned when sending starts", markup=False)
        return
    out.print(f"  local time {head}: buckets {b['done']} done, {b['to_come']} to come"
              + (f"; {b['skipped_past']} skipped (time passed in {', '.join(b['skipped_zones'])})" if b["skipped_past"] else ""),
              markup=False)
    for k in b["buckets"]:
        out.print(f"    {k['at'][:16].replace('T', ' ')} UTC  {k['state']:8} {', '.join(k['offsets']) or '-'}"
                  f"{' (' + k['kind'] + ')' if k['kind'] not in ('', 'on time') else ''}: sent {k['sent']}, "
                  f"failed {k['failed']}, left {k['left']} of {k['copies']}  {', '.join(k['zones'])}", markup=False)


def _change(ctx: typer.Context, campaign: str, action: str) -> None:
    from ..dispatch import campaigns as c

    _, engine = _engine(ctx)
    done = {"pause": c.pause_campaign, "cancel": c.cancel_campaign}[action](engine, campaign)
    typer.echo(f"campaign {done.id} {done.status}")


@campaigns_app.command("pause")
def pause_command(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Pause sending (senders stop after the messages in flight)."""
    _change(ctx, campaign, "pause")


@campaigns_app.command("resume")
def resume_command(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign id."),
    smtp: Optional[str] = typer.Option(None, "--smtp", help="SMTP URL (smtp://\\[user@]host\\[:port]), a configured \\[smtp.NAME], or a,b names."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", help="Write .eml files to this folder instead."),
    no_send: bool = typer.Option(False, "--no-send", help="Only mark it running (a `newsletter worker` sends it)."),
    resend_ambiguous: bool = typer.Option(False, "--resend-ambiguous", help="Send again the copies whose outcome a crash left unknown."),
    allow_local_links: bool = typer.Option(False, "--allow-local-links", help="As for `send`: allow a non-https or loopback base_url over SMTP."),
) -> None:
    """Resume a paused (or interrupted) campaign and continue sending it here."""
    from ..dispatch.campaigns import check_resumable, get_campaign, resume_campaign, stored_id
    from ..store.lifecycle import CampaignStatus

    config, engine = _engine(ctx)
    if allow_local_links:
        config = config.replace(allow_local_links=True)
    c = get_campaign(engine, campaign)
    check_resumable(c)
    if not no_send:  # refuse before changing the campaign's status
        from ..dispatch.preflight import check_public_links, make_transports

        check_public_links(config, make_transports(config, smtp=smtp, outbox=str(outbox) if outbox else None))
    if c.status == CampaignStatus.PAUSED:
        c = resume_campaign(engine, stored_id(c))
        if c.status == CampaignStatus.SCHEDULED and c.scheduled_at is not None:  # paused before its time: a worker starts it then
            typer.echo(f"campaign {c.id} is scheduled again for {c.scheduled_at.isoformat()}")
            return
    if no_send:
        typer.echo(f"campaign {c.id} is running")
        return
    _do_send(ctx, config, engine, str(c.id), smtp=smtp, tls=None, outbox=outbox, rate=None, concurrency=None,
             resend_ambiguous=resend_ambiguous)


@campaigns_app.command("cancel")
def cancel_command(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Cancel for good: copies not yet sent never go out."""
    _change(ctx, campaign, "cancel")


@app.command("send")
def send_command(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign id (see `newsletter campaigns list`)."),
    smtp: Optional[str] = typer.Option(None, "--smtp", help="smtp://\\[user@]host\\[:port], smtps://..., a configured \\[smtp.NAME], or a,b to spread over several."),
    starttls: bool = typer.Option(False, "--starttls", help="Require STARTTLS."),
    tls: bool = typer.Option(False, "--tls", help="Implicit TLS from the first byte (port 465)."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Limit: 20/s, 600/m, 10000/h (comma-separate several)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256, help="Connections in parallel (default: config concurrency, 4)."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", help="Write one .eml per recipient to this folder instead of SMTP."),
    resend_ambiguous: bool = typer.Option(False, "--resend-ambiguous", help="Send again the copies whose outcome a crash left unknown."),
    test: Optional[str] = typer.Option(None, "--test", help="Send one \\[TEST] copy to this address only; the ledger is not touched."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="Summary as text (table) or json."),
    allow_local_links: bool = typer.Option(False, "--allow-local-links", help="Send over SMTP even though base_url is not https or is a loopback address (local tests; config allow_local_links)."),
    now: bool = typer.Option(False, "--now", help="Send a scheduled campaign now, ahead of its time (it is refused otherwise)."),
) -> None:
    """Send a campaign once to every active subscriber of its lists (resumes where it stopped).

    Exit status: 0 finished; 3 auto-paused (the servers kept failing); 4 stopped before the end
    (SIGTERM, or paused or cancelled from elsewhere); 130 Ctrl-C; 1 an error."""
    from ..errors import ConfigError

    config, engine = _engine(ctx)
    if allow_local_links:
        config = config.replace(allow_local_links=True)
    if starttls and tls:
        raise ConfigError("--starttls and --tls exclude each other")
    mode = "starttls" if starttls else "tls" if tls else None
    if test:
        from ..dispatch.oneoff import send_test_copies

        for r in send_test_copies(engine, campaign, config, test, smtp=smtp, tls=mode, outbox=str(outbox) if outbox else None):
            typer.echo(f"test message {r.message_id}{f' (variant {r.variant})' if r.variant else ''} sent to {test} via {r.transport}")
        return
    if now:
        from ..dispatch.campaigns import start_scheduled_now
        from ..schedule.localtime import planner

        start_scheduled_now(engine, campaign, on_start=planner(config))  # a local-time campaign's buckets: from now
    _do_send(ctx, config, engine, campaign, smtp=smtp, tls=mode, outbox=outbox, rate=rate, concurrency=concurrency,
             resend_ambiguous=resend_ambiguous, fmt=fmt)


# Exit statuses of `send` and `campaigns resume` (1 is any error, before or during the send).
EXIT_AUTO_PAUSED = 3  # the servers kept failing: the campaign auto-paused
EXIT_UNFINISHED = 4  # stopped before the campaign finished: SIGTERM, paused or cancelled elsewhere
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it


def send_exit_code(summary, *, interrupted: bool = False) -> int:
    """The exit status of a send: its outcome (``SendSummary.outcome``), or 130 after Ctrl-C."""
    from ..store.lifecycle import SendOutcome

    if interrupted:
        return EXIT_INTERRUPTED
    return {SendOutcome.FINISHED: 0, SendOutcome.AUTO_PAUSED: EXIT_AUTO_PAUSED,
            SendOutcome.UNFINISHED: EXIT_UNFINISHED}[summary.outcome]


def _do_send(ctx, config, engine, campaign, *, smtp, tls, outbox, rate, concurrency, resend_ambiguous, fmt=Fmt.table):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..dispatch.sender import SendOptions, send_campaign
    from ..store.lifecycle import StopReason
    from .signals import SignalStop

    def on_signal(signum):
        # SIGTERM and the first Ctrl-C: stop at once (messages in flight finish and are recorded,
        # claimed rows go back to pending). A second Ctrl-C does not wait for the messages in flight.
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    signals = SignalStop(on_signal=on_signal).__enter__()
    stop = signals.event
    err = _console(True)
    show_bar = fmt is Fmt.table and err.is_terminal
    bar = Progress(TextColumn("[bold]campaign {task.fields[cid]}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} · sent {task.fields[sent]} · failed {task.fields[failed]}"
                              " · deferred {task.fields[deferred]} · {task.fields[rate]:.0f}/s"),
                   TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=err, disable=not show_bar)
    task = None

    def progress(p):
        nonlocal task
        if task is None:
            task = bar.add_task("send", total=p.total, cid=p.campaign_id, sent=0, failed=0, deferred=0, rate=0.0, note="")
        bar.update(task, total=p.total, completed=p.done, sent=p.sent, failed=p.failed, deferred=p.deferred,
                   rate=p.rate, note=p.note)

    try:
        with bar:
            options = SendOptions(smtp=smtp, tls=tls, outbox=str(outbox) if outbox is not None else None,
                                  concurrency=concurrency, rate=rate, resend_ambiguous=resend_ambiguous,
                                  progress_callback=progress, stop_event=stop)
            summary = send_campaign(engine, campaign, config, options)
    except KeyboardInterrupt:  # the second Ctrl-C: rows left claimed or sending are recovered by the next run
        stop.set()
        err.print(f"interrupted again: stopped without waiting; `newsletter send {campaign}` recovers and continues",
                  markup=False)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        signals.__exit__()
    interrupted = signal.SIGINT in signals.received
    if signals.received and summary.stop == StopReason.STOP_REQUESTED:
        summary.stopped = "interrupted (Ctrl-C)" if interrupted else "terminated (SIGTERM)"
    if fmt is Fmt.json:
        typer.echo(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        c = summary.counts
        out = _console()
        out.print(f"campaign {summary.campaign_id}: {summary.status}"
                  + (f" ({summary.status_reason})" if summary.status_reason else "")
                  + f" via {summary.transport}", markup=False)
        if summary.resumed_from:
            out.print(f"  resumed: the campaign was {summary.resumed_from}", markup=False)
        out.print(f"  this run: sent {summary.sent_now}, failed {summary.failed_now}, deferred {summary.deferred_now}, "
                  f"skipped {summary.skipped_now} in {summary.elapsed:.1f} s ({summary.rate:.0f}/s)", markup=False)
        out.print("  ledger:   " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())), markup=False)
        if summary.suppressed:
            out.print(f"  suppressed (hard bounce): {', '.join(summary.suppressed)}", markup=False)
        if summary.resent_ambiguous:
            out.print(f"  resent {summary.resent_ambiguous} ambiguous copies (same Message-ID): "
                      f"{', '.join(summary.ambiguous_resent)}", markup=False)
        resent = set(summary.ambiguous_resent)
        not_resent = [a for a in summary.ambiguous if a not in resent]
        if not_resent:
            out.print(f"  ambiguous (a crash interrupted them; not resent, use --resend-ambiguous): "
                      f"{', '.join(not_resent)}", markup=False)
        if summary.stopped:
            out.print(f"  stopped: {summary.stopped}", markup=False)
        if outbox is not None or "outbox" in summary.transport:
            out.print(f"  messages are in {summary.transport}", markup=False)
    code = send_exit_code(summary, interrupted=interrupted)
    cid = summary.campaign_id
    left = summary.left
    if code == EXIT_INTERRUPTED:
        err.print(f"interrupted: campaign {cid} stopped with {left} copies left to send; "
                  f"`newsletter send {cid}` continues", markup=False)
    elif code == EXIT_UNFINISHED:
        then = {"paused": f"; `newsletter campaigns resume {cid}` continues", "cancelled": "",
                "running": f"; `newsletter send {cid}` continues"}.get(summary.status, "")
        if summary.stop is StopReason.AB_WAITING:
            then = ""
        err.print(f"campaign {cid} is not finished ({summary.stopped or summary.status}): {left} copies left to send"
                  + then, markup=False)
    if code:
        sys.exit(code)
