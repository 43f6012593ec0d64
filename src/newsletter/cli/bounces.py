"""CLI commands for the feedback loop: ``bounces parse`` (no database); ``list`` and ``process`` join later.

A thin shell over ``newsletter.feedback``: read files, call ``parse_message``, format the records.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import app, get_config

bounces_app = typer.Typer(help="Bounces and complaints: parse reports, process the bounce mailbox, list events.",
                          no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")


class Fmt(str, Enum):
    table = "table"
    json = "json"


def _err(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)


def _verp_secret(ctx: typer.Context) -> bytes | None:
    """The signing key if one exists (env or development key file); never creates one."""
    from ..errors import NewsletterError
    from ..store.secret import existing_secret_key

    try:
        return existing_secret_key(get_config(ctx))
    except NewsletterError as e:
        _err(f"warning: {e}; reading without VERP attribution")
        return None


@bounces_app.command("parse")
def parse_command(
    ctx: typer.Context,
    files: List[Path] = typer.Argument(..., help="Raw messages (.eml) to read; nothing is stored."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, or json (one JSON object a line)."),
) -> None:
    """Print what each message reports: one line per bounced recipient (kind, status, reason, campaign)."""
    from ..feedback.parse import MAX_PARSE_BYTES, parse_message

    secret = _verp_secret(ctx)
    if secret is None:
        _err("note: no secret key (NEWSLETTER_SECRET_KEY or a development key file): VERP addresses are not read")
    rows, failed = [], 0
    for path in files:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PARSE_BYTES + 1)
        except OSError as e:
            _err(f"error: {path}: cannot read: {e.strerror or type(e).__name__}")
            failed += 1
            continue
        for bounce in parse_message(raw, secret=secret):
            rows.append({"file": str(path), **bounce.as_json()})
        if not any(r["file"] == str(path) for r in rows) and fmt is Fmt.table:
            _err(f"{path}: not a bounce, complaint or auto-reply")
    if fmt is Fmt.json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    else:
        _table(rows)
    if failed:
        raise typer.Exit(1)


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for col in ("file", "recipient", "kind", "status", "campaign", "subscriber", "source", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:  # Text(): report text is shown as is, never read as rich markup
        table.add_row(*(Text(v) for v in (
            r["file"], r["recipient"] or "", r["kind"], r["status"] or "",
            "" if r["campaign_id"] is None else str(r["campaign_id"]),
            "" if r["subscriber_id"] is None else str(r["subscriber_id"]), r["source"], r["reason"])))
    Console(soft_wrap=True, highlight=False).print(table)


# ---------------------------------------------------------------- bounces list (stored events)


class Kind(str, Enum):
    hard = "hard"
    soft = "soft"
    complaint = "complaint"
    auto_reply = "auto-reply"
    delivered = "delivered"
    unknown = "unknown"


@bounces_app.command("list")
def list_command(
    ctx: typer.Context,
    campaign: Optional[int] = typer.Option(None, "--campaign", help="Only events tied to this campaign id."),
    kind: Optional[Kind] = typer.Option(None, "--kind", help="Only this kind of event."),
    subscriber: Optional[str] = typer.Option(None, "--subscriber", help="Only this subscriber's history (address)."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many events, newest first."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, or json (one JSON object a line)."),
) -> None:
    """Stored bounce events (mailbox, webhooks, SMTP replies), newest first, with what each one did."""
    from ..feedback.record import list_bounces
    from ..store.db import get_engine

    config = get_config(ctx)
    rows = list_bounces(get_engine(config.database_url, readonly=True), campaign_id=campaign,
                        kind=kind.value if kind else None, email=subscriber, limit=limit)
    if fmt is Fmt.json:
        for r in rows:
            typer.echo(json.dumps(r.as_json(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("when", "recipient", "kind", "status", "campaign", "source", "outcome", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(f"{r.occurred_at:%Y-%m-%d %H:%M}", r.recipient or "-", r.kind, r.status or "",
                      "" if r.campaign_id is None else str(r.campaign_id), r.source + (f"/{r.provider}" if r.provider else ""),
                      r.outcome, r.reason)
    Console(soft_wrap=True, highlight=False).print(table)
    if not rows:
        _err("no bounce events match")


# --- the mailboxes: `bounces process`, `bounces requests` (i13-mailbox) ---


def _mailbox_engine(ctx: typer.Context):
    from ..store.db import get_engine, require_current_schema

    config = get_config(ctx)
    engine = get_engine(config.database_url)
    require_current_schema(engine)
    return config, engine


@bounces_app.command("process")
def process_command(
    ctx: typer.Context,
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table (a summary), or json (one object)."),
) -> None:
    """Read the bounce and unsubscribe mailboxes once and act on each message.

    Records bounces and complaints, honours mailto unsubscribes, moves processed messages away;
    exits 1 if a mailbox could not be read."""
    from ..feedback.poll import summary_line
    from ..feedback.process import process_mailboxes

    config, engine = _mailbox_engine(ctx)
    try:
        result = process_mailboxes(engine, config, on_event=lambda line: _err(line) if line.startswith("warning: ")
                                   else typer.echo(line, err=True))
    finally:
        engine.dispose()
    if fmt is Fmt.json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        typer.echo(f"{', '.join(result.mailboxes)}: {summary_line(result)}")
    for line in result.errors:
        _err(f"error: {line}")
    if result.errors:
        raise typer.Exit(1)


@bounces_app.command("requests")
def requests_command(
    ctx: typer.Context,
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many, newest first."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, or json (one JSON object a line)."),
) -> None:
    """Unsubscribe emails that carried no valid token, for you to check.

    They are never acted on (a From address can be forged): check each one and unsubscribe the
    person yourself if it is genuine."""
    from rich.console import Console
    from rich.table import Table

    from ..feedback.process import list_requests

    _, engine = _mailbox_engine(ctx)
    try:
        rows = list_requests(engine, limit=limit)
    finally:
        engine.dispose()
    if fmt is Fmt.json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(box=None, pad_edge=False)
    for col in ("received", "from", "subject", "message-id"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["sent_at"] or r["processed_at"], r["from"] or "", r["subject"], r["message_id"] or "")
    Console(soft_wrap=True, highlight=False).print(table)
    if not rows:
        _err("no unsubscribe requests without a token")
