"""CLI commands for `schedule`: `digests ...`, `campaigns schedule`, and `worker`.

A thin shell: the library (newsletter.schedule) returns data and raises newsletter.errors;
these functions parse flags, format output and nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from . import app, get_config
from ..errors import InvalidInput

digests_app = typer.Typer(
    help="Recurring digests: compose and send the new articles on a schedule.",
    no_args_is_help=True,
)
app.add_typer(digests_app, name="digests")


def _engine(config):
    from ..store.db import get_engine, require_current_schema

    engine = get_engine(config.database_url)
    require_current_schema(engine)
    return engine


def _when(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    return dt.strftime(fmt) if dt else "-"


def _now_opt(now: Optional[str]):
    if now is None:
        return None
    from ..schedule.cron import parse_instant

    return parse_instant(now)


# --- digests ---------------------------------------------------------------------------------

@digests_app.command("add")
def digests_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A unique name for the digest (e.g. weekly)."),
    cron_expr: Optional[str] = typer.Option(None, "--cron", help='Cron expression, e.g. "0 8 * * MON".'),
    every: Optional[str] = typer.Option(None, "--every", help='Simple form: "daily 07:30", "weekdays 08:00", "weekly mon 08:00", "monthly 1 09:00".'),
    tz: Optional[str] = typer.Option(None, "--tz", help="IANA time zone the schedule is read in (default: config timezone)."),
    sources: List[str] = typer.Option([], "--source", "-s", help="Article source: folder, file or feed URL (repeatable; default: config sources)."),
    lists: List[str] = typer.Option([], "--list", "-l", help="Target list slug (repeatable)."),
    template: Optional[Path] = typer.Option(None, "--template", help="Template folder (digest.mjml and digest.txt)."),
    subject: str = typer.Option("", "--subject", help='Jinja subject, e.g. "Weekly digest — {{ date }}" (default: the template\'s).'),
    max_articles: int = typer.Option(10, "--max-articles", help="At most this many articles per occurrence."),
    min_articles: int = typer.Option(1, "--min-articles", help="Skip the occurrence with fewer new articles than this."),
    category: Optional[str] = typer.Option(None, "--category", help="Only articles in this category."),
    tags: List[str] = typer.Option([], "--tag", help="Only articles with one of these tags (repeatable)."),
    catch_up: str = typer.Option("latest", "--catch-up", help="After downtime: latest (send the newest missed occurrence), all, or none."),
) -> None:
    """Create a recurring digest."""
    from ..schedule.digests import DigestSpec, add_digest

    schedule = cron_expr or every
    if not schedule or (cron_expr and every):
        raise InvalidInput("give exactly one of --cron or --every")
    config = get_config(ctx)
    spec = DigestSpec(
        name=name, schedule=schedule, timezone=tz or config.timezone,
        sources=list(sources) or list(config.sources), lists=list(lists),
        template_dir=str(template) if template else None, subject=subject, max_articles=max_articles,
        min_articles=min_articles, category=category, tags=list(tags), catch_up=catch_up,
    )
    info = add_digest(_engine(config), config, spec)
    typer.echo(f"digest {name!r} added: {info.digest.schedule} ({info.digest.timezone}); "
               f"next run {_when(info.next_run_local)} = {_when(info.next_run)}")


@digests_app.command("list")
def digests_list(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Every digest with its next run (its time zone and UTC), last run and articles sent."""
    from ..schedule.digests import list_digests

    if fmt not in ("table", "json"):
        raise InvalidInput(f"--format {fmt!r}: expected table or json")
    infos = list_digests(_engine(get_config(ctx)))
    if fmt == "json":
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2, ensure_ascii=False))
        return
    if not infos:
        typer.echo("no digests (add one with `newsletter digests add`)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("name", "schedule", "lists", "next run (local)", "next run (UTC)", "last run", "sent", "status"):
        table.add_column(col)
    for i in infos:
        d = i.digest
        last = i.last_run
        last_text = "never"
        if last is not None:
            from ..schedule.cron import get_zone

            last_text = f"{_when(last.scheduled_for.astimezone(get_zone(d.timezone)))} {last.status}"
        table.add_row(
            d.name, f"{d.schedule} ({d.timezone})", ", ".join(i.list_slugs), _when(i.next_run_local),
            _when(i.next_run), last_text, str(d.articles_sent), "paused" if d.paused else "active",
        )
    Console(width=200).print(table)


SHOW_WARNINGS = 5  # per occurrence in `digests show`; --format json has them all


@digests_app.command("show")
def digests_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The digest's name (see `newsletter digests list`)."),
    runs: int = typer.Option(10, "--runs", help="How many recent occurrences to show."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """One digest's settings and its recent occurrences, each with its warnings (failed sources first)."""
    from ..schedule.digests import show_digest
    from ..schedule.occurrences import SOURCE_FAILED

    if fmt not in ("text", "json"):
        raise InvalidInput(f"--format {fmt!r}: expected text or json")
    info = show_digest(_engine(get_config(ctx)), name, runs=runs)
    data = info.as_dict()
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key in ("name", "schedule", "timezone", "sources", "lists", "template_dir", "subject", "max_articles",
                "min_articles", "category", "tags", "catch_up", "paused", "next_run_local", "next_run",
                "last_run", "articles_sent"):
        value = data[key]
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        typer.echo(f"{key:15} {value if value not in (None, '') else '-'}")
    typer.echo("runs:" if info.runs else "runs:           none yet")
    for r in info.runs:
        what = f"campaign {r.campaign_id}, {r.article_count} article(s)" if r.status == "created" else r.reason
        typer.echo(f"  {r.scheduled_for.isoformat()}  {r.status:8} {what}{'  (manual)' if r.manual else ''}")
        # Failed sources first (they change what went out), then the other notes; a few per run.
        warnings = sorted(r.warnings or [], key=lambda w: not w.startswith(SOURCE_FAILED))
        for w in warnings[:SHOW_WARNINGS]:
            typer.echo(f"      warning: {w}")
        if len(warnings) > SHOW_WARNINGS:
            typer.echo(f"      ... and {len(warnings) - SHOW_WARNINGS} more warning(s) (--format json lists them all)")


@digests_app.command("pause")
def digests_pause(ctx: typer.Context, name: str = typer.Argument(..., help="The digest's name (see `newsletter digests list`).")) -> None:
    """Stop running a digest's occurrences (those falling while paused are never sent)."""
    from ..schedule.digests import pause_digest

    pause_digest(_engine(get_config(ctx)), name)
    typer.echo(f"digest {name!r} paused")


@digests_app.command("resume")
def digests_resume(ctx: typer.Context, name: str = typer.Argument(..., help="The digest's name (see `newsletter digests list`).")) -> None:
    """Run a paused digest again from its next occurrence."""
    from ..schedule.digests import resume_digest

    info = resume_digest(_engine(get_config(ctx)), name)
    typer.echo(f"digest {name!r} resumed; next run {_when(info.next_run_local)} = {_when(info.next_run)}")


@digests_app.command("remove")
def digests_remove(ctx: typer.Context, name: str = typer.Argument(..., help="The digest's name (see `newsletter digests list`).")) -> None:
    """Delete a digest and its run history (campaigns it created are kept)."""
    from ..schedule.digests import remove_digest

    remove_digest(_engine(get_config(ctx)), name)
    typer.echo(f"digest {name!r} removed")


@digests_app.command("run")
def digests_run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The digest's name (see `newsletter digests list`)."),
    now: bool = typer.Option(False, "--now", help="Required: run this occurrence immediately."),
    no_send: bool = typer.Option(False, "--no-send", help="Only create the campaign (scheduled for now); a worker sends it."),
    smtp: Optional[str] = typer.Option(None, "--smtp", help="As for `newsletter send`: URL, a configured smtp server name, or a,b."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", help="Write .eml files to this folder instead of SMTP."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Rate limit, e.g. 20/s."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256, help="SMTP connections in parallel."),
    clock: Optional[str] = typer.Option(None, "--clock", help="Pretend the clock says this ISO instant (with offset)."),
) -> None:
    """Compose the new articles into this occurrence's campaign now and send it (sources are retried)."""
    from ..schedule.occurrences import SOURCE_FAILED, run_digest_now

    if not now:
        raise InvalidInput("digests run needs --now (the schedule itself is run by `newsletter worker`)")
    config = get_config(ctx)
    engine = _engine(config)
    result = run_digest_now(engine, config, name, now=_now_opt(clock))
    for w in result.warnings:
        if not w.startswith(SOURCE_FAILED):  # failed sources are in result.line()
            typer.echo(f"warning: {w}", err=True)
    typer.echo(result.line())
    if result.status == "failed":
        raise typer.Exit(1)
    if result.campaign_id is None or no_send:
        return
    from ..dispatch.sender import send_campaign

    with _stop_on_signals() as stop:
        summary = send_campaign(engine, result.campaign_id, config, smtp=smtp, outbox=str(outbox) if outbox else None,
                                rate=rate, concurrency=concurrency, stop_event=stop.event)
    c = summary.counts
    typer.echo(f"campaign {summary.campaign_id}: {summary.status}; sent {summary.sent_now}, failed {summary.failed_now}, "
               f"deferred {summary.deferred_now} via {summary.transport}; ledger sent {c.get('sent', 0)} of {summary.total}")


def _stop_on_signals():
    """While in use, SIGTERM and SIGINT set ``.event`` (the current send finishes its in-flight
    messages); set from a helper thread, never inside the handler (``signals``)."""
    from .signals import SignalStop

    return SignalStop()


# --- campaigns schedule ----------------------------------------------------------------------

def _register_campaigns_schedule() -> None:
    from .dispatch import campaigns_app

    @campaigns_app.command("schedule")
    def campaigns_schedule(
        ctx: typer.Context,
        campaign: str = typer.Argument(..., help="Campaign id (a draft, or a scheduled one to move)."),
        at: Optional[str] = typer.Option(None, "--at", help='Local time, "2026-12-01 08:00" (or ISO 8601 with an offset).'),
        tz: Optional[str] = typer.Option(None, "--tz", help="IANA time zone of --at, or of --local-time's default day (default: config timezone)."),
        local_time: Optional[str] = typer.Option(None, "--local-time", help="Instead of --at: send at this time of day (HH:MM) in each reader's own time zone."),
        day: Optional[str] = typer.Option(None, "--date", help="With --local-time: the day readers get it, YYYY-MM-DD (default: today in --tz)."),
        window: Optional[str] = typer.Option(None, "--window", help="With --local-time: how late a zone may still get it when sending starts, e.g. 30m, 6h (default 1h)."),
        past: Optional[str] = typer.Option(None, "--past", help="With --local-time: zones whose time passed more than --window ago: send (now), skip, or next-day (default)."),
    ) -> None:
        """Send a campaign at a set time, or at a local time in each reader's zone (a running
        `newsletter worker` starts it then)."""
        from zoneinfo import ZoneInfo

        config = get_config(ctx)
        zone = tz or config.timezone
        if local_time is None:
            extra = [name for name, v in (("--date", day), ("--window", window), ("--past", past)) if v is not None]
            if at is None:
                raise InvalidInput("campaigns schedule needs --at TIME or --local-time HH:MM")
            if extra:
                raise InvalidInput(f"{', '.join(extra)} only go with --local-time")
            from ..schedule.oneoff import schedule_campaign_at

            c = schedule_campaign_at(_engine(config), campaign, at, zone)
            local = c.scheduled_at.astimezone(ZoneInfo(zone))
            typer.echo(f"campaign {c.id} scheduled for {local:%Y-%m-%d %H:%M %Z} = {c.scheduled_at:%Y-%m-%d %H:%M} UTC")
            return
        if at is not None:
            raise InvalidInput("give --at or --local-time, not both")
        from ..schedule.localtime import LocalTime, schedule_local_time

        c = schedule_local_time(_engine(config), campaign, local_time, tz=zone, day=day, window=window, past=past)
        lt = LocalTime.from_meta(c.meta["local_time"])
        typer.echo(f"campaign {c.id} scheduled for {lt.time} local time on {lt.day.isoformat()} in each reader's time zone "
                   f"(window {int(lt.window.total_seconds() // 60)} min, past: {lt.past}); the first zone (UTC+14) "
                   f"starts at {c.scheduled_at:%Y-%m-%d %H:%M} UTC")


_register_campaigns_schedule()


# --- worker ----------------------------------------------------------------------------------

@app.command("worker")
def worker_command(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One pass, then exit (for cron, tests and catch-up by hand)."),
    now: Optional[str] = typer.Option(None, "--now", help="Run with the clock at this ISO instant, e.g. 2026-12-07T08:00:05+01:00."),
    poll: Optional[float] = typer.Option(None, "--poll", help="Seconds between passes (default: config poll_interval, 5)."),
    catch_up: Optional[str] = typer.Option(None, "--catch-up", help="Override every digest's catch-up policy: latest, all or none."),
    standby: bool = typer.Option(False, "--standby", help="SQLite: wait for the running worker to stop instead of refusing to start."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256, help="SMTP connections in parallel per campaign."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Rate limit per worker, e.g. 20/s, 600/m."),
    smtp: Optional[str] = typer.Option(None, "--smtp", help="As for `newsletter send`: URL, a configured smtp server name, or a,b."),
    starttls: bool = typer.Option(False, "--starttls", help="Require STARTTLS."),
    tls: bool = typer.Option(False, "--tls", help="Implicit TLS (port 465)."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", help="Write .eml files to this folder instead of SMTP."),
) -> None:
    """Run due digests and scheduled campaigns, and send running ones; one log line per event.
    SIGTERM/SIGINT stop it cleanly (in-flight messages finish, the rest are released)."""
    from ..errors import ConfigError
    from ..schedule.worker import run_worker

    if starttls and tls:
        raise ConfigError("--starttls and --tls exclude each other")
    config = get_config(ctx)
    engine = _engine(config)

    def emit(line: str) -> None:
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S%z")
        typer.echo(f"{stamp} {line}", err=True)

    with _stop_on_signals() as stop:
        report = run_worker(
            engine, config, once=once, now=_now_opt(now), poll_interval=poll, catch_up=catch_up, stop_event=stop.event,
            standby=standby, smtp=smtp, tls="starttls" if starttls else "tls" if tls else None,
            outbox=str(outbox) if outbox else None, concurrency=concurrency, rate=rate, on_event=emit,
        )
    if once and report.errors:
        raise typer.Exit(1)
