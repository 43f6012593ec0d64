"""``campaigns report`` (delivered, opens, clicks, unsubscribes, bounces; people apart from
machines) and ``tracking purge`` (retention)."""

from __future__ import annotations

import json

import typer

from . import app
from .dispatch import Fmt, _console, _engine, campaigns_app

tracking_app = typer.Typer(help="Open and click tracking: retention.", no_args_is_help=True)
app.add_typer(tracking_app, name="tracking")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


@campaigns_app.command("report")
def report_command(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign id."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
    links: bool = typer.Option(False, "--links", help="Clicks per link instead of the summary."),
) -> None:
    """What happened to a campaign: delivered, opens and clicks (people apart from machines), unsubscribes, bounces."""
    from ..engagement.report import campaign_report

    _, engine = _engine(ctx)
    r = campaign_report(engine, campaign, links=links)
    if fmt == Fmt.json:
        d = r.as_dict()
        if not links:
            d.pop("links")
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False, default=str))
        return
    from rich.table import Table

    out = _console()
    if links:  # the URL last, unwrapped: a long link stays one line you can copy
        out.print(f"campaign {r.campaign_id}: clicks per link (people: clicks, readers; machines: clicks)", markup=False)
        out.print(f"{'people':>7} {'readers':>7} {'machines':>8}  link", markup=False)
        for row in r.links:
            out.print(f"{row.human_clicks:>7} {row.human_readers:>7} {row.machine_clicks:>8}  {row.url}", markup=False)
        if not r.tracking or "clicks" not in r.tracking:
            out.print("clicks were not tracked for this campaign", markup=False)
        return
    t = Table(title=f"campaign {r.campaign_id}: {r.subject}", show_header=True)
    t.add_column("")
    t.add_column("people", justify="right")
    t.add_column("apple-mpp", justify="right")
    t.add_column("proxy", justify="right")
    t.add_column("scanner", justify="right")
    for label, c in (("opens (readers)", r.opens), ("clicks (readers)", r.clicks)):
        t.add_row(label, *(str(c.readers[a]) for a in ("human", "apple-mpp", "proxy", "scanner")))
    out.print(t)
    tracked = ", ".join(r.tracking) if r.tracking else "off"
    out.print(f"delivered {r.delivered}, failed {r.failed}; tracking {tracked}", markup=False)
    out.print(f"human open rate {_pct(r.human_open_rate)}, human click rate {_pct(r.human_click_rate)}, "
              f"click-to-open {_pct(r.click_to_open)}", markup=False)
    out.print(f"unsubscribed {r.unsubscribes}; bounced hard {r.bounces.get('hard', 0)}, soft {r.bounces.get('soft', 0)}; "
              f"complaints {r.complaints}", markup=False)
    if r.ab:
        from .abtests import ab_lines

        for line in ab_lines(r.ab):
            out.print(line, markup=False)


@tracking_app.command("purge")
def purge_command(ctx: typer.Context) -> None:
    """Delete open and click events older than tracking_retention_days (default 395)."""
    from ..engagement.report import purge

    config, engine = _engine(ctx)
    n = purge(engine, config)
    typer.echo(f"deleted {n} event(s) older than {config.tracking_retention_days} days")


events_app = typer.Typer(help="Outgoing event webhooks (config event_webhooks): deliver now, see the queue.",
                         no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("deliver")
def events_deliver(ctx: typer.Context) -> None:
    """Read new events and POST what is due to the event_webhooks URLs once (the worker does this every event_webhook_interval)."""
    from ..engagement.outbound import collect, deliver

    config, engine = _engine(ctx)
    if not config.event_webhooks:
        from ..errors import ConfigError

        raise ConfigError("event_webhooks is not set: no URL to deliver events to")
    queued = collect(engine, config)
    r = deliver(engine, config)
    typer.echo(f"queued {queued}; delivered {r.delivered}, to retry {r.retrying}, given up {r.given_up}")


@events_app.command("status")
def events_status(ctx: typer.Context, fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json.")) -> None:
    """How many event deliveries are pending, delivered and given up."""
    from ..engagement.outbound import pending

    _, engine = _engine(ctx)
    counts = pending(engine)
    if fmt == Fmt.json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()))
