"""CLI commands for subscribers: `subscribers` (import, add, confirmations, list, show, export,
remove, unsubscribe, preferences-link) and `suppress` (registered on the root app on import).

A thin shell like cli/store.py, whose helpers it shares: each command calls one library
function and formats what it returns.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import app, get_config
from .store import Fmt, _engine, _err, _out, _pairs, _when

subs_app = typer.Typer(help="Subscribers: import, add, list, export, unsubscribe, erase.", no_args_is_help=True)
supp_app = typer.Typer(help="Global suppression list: addresses or domains never mailed or re-added.", no_args_is_help=True)
app.add_typer(subs_app, name="subscribers")
app.add_typer(supp_app, name="suppress")


class ImportFmt(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class Status(str, Enum):
    unconfirmed = "unconfirmed"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"


@subs_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a header row (email, name, status, any other column → attribute), or JSON Lines."),
    list_slug: str = typer.Option(..., "--list", "-l", help="The list to subscribe people to."),
    mapping: List[str] = typer.Option(
        [], "--map", help="COLUMN=FIELD, FIELD one of email, name, first_name, last_name, status, attributes, attr:NAME, unsubscribed-if-set, bounced-if-set, or - to ignore the column. Repeatable; Mailchimp, listmonk and Substack exports are mapped by default."
    ),
    fmt: Optional[ImportFmt] = typer.Option(None, "--format", help="csv or jsonl (default: from the extension; .jsonl/.ndjson → jsonl)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of the file (default: UTF-8, with or without BOM)."),
    delimiter: str = typer.Option(",", "--delimiter", help="CSV field separator (one character, e.g. ';' or '\\t')."),
    resubscribe: bool = typer.Option(
        False, "--resubscribe",
        help="Re-subscribe people who unsubscribed, bounced or complained. ONLY use this when everyone in the file gave fresh consent; suppressed addresses are still skipped.",
    ),
    batch_size: int = typer.Option(5000, "--batch-size", help="Rows per transaction."),
    attr_type: List[str] = typer.Option(
        [], "--attr-type", help="NAME=TYPE: store attribute NAME as a number, date (ISO), bool or auto (each cell "
        "recognised: plain numbers, true/false, ISO dates), so segments compare it as such; text (as written) by "
        "default; NAME * means every attribute. A cell that does not parse goes to the rejects file. Repeatable."
    ),
) -> None:
    """Import subscribers into a list: validated, de-duplicated, resumable; prints a report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..store.importer import ImportOptions, import_file

    if delimiter == "\\t":
        delimiter = "\t"
    opts = ImportOptions(
        list_slug=list_slug, format=fmt.value if fmt else None, encoding=encoding, mapping=_pairs(mapping, "--map"),
        delimiter=delimiter, resubscribe=resubscribe, batch_size=batch_size, attr_types=_pairs(attr_type, "--attr-type"),
    )
    engine = _engine(ctx)
    err = _err()
    with Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("import", total=None)
        done_rows = [0]

        def on_batch(done: int, total: int) -> None:
            done_rows[0] = done
            progress.update(task, completed=done, total=total)

        try:
            report = import_file(engine, file, opts, progress=on_batch)
        except KeyboardInterrupt:
            progress.stop()
            typer.secho(f"interrupted: the batches written so far are kept (the first {done_rows[0]} rows); "
                        "run the same import again to finish it", fg=typer.colors.RED, err=True)
            raise typer.Exit(130) from None
    lines = [
        f"imported {report.path} into {report.list_slug!r}:",
        f"  read                     {report.read}",
        f"  added                    {report.added}" + (f" ({report.unconfirmed} awaiting confirmation)" if report.unconfirmed else ""),
        f"  updated                  {report.updated}",
        f"  already present          {report.already_present}",
        f"  duplicates in file       {report.duplicates_in_file} (merged)",
        f"  recorded as unsubscribed {report.recorded_unsubscribed}",
        f"  skipped: unsubscribed    {report.skipped_unsubscribed}" + ("" if resubscribe else " (never re-added; see --resubscribe)"),
        f"  skipped: suppressed      {report.skipped_suppressed}",
        f"  skipped: invalid         {report.invalid}",
    ]
    if resubscribe:
        lines.insert(4, f"  resubscribed             {report.resubscribed}")
    for r in report.rejects[:20]:
        lines.append(f"    line {r.line}: {r.email!r}: {r.reason}")
    if report.invalid > 20:
        lines.append(f"    ... and {report.invalid - 20} more")
    if report.rejects_path:
        lines.append(f"  rejected rows written to {report.rejects_path}")
    if report.unconfirmed:
        lines.append(f"  {report.unconfirmed} subscription(s) await confirmation: mail the links with "
                     f"`newsletter subscribers send-confirmations --list {report.list_slug}`")
    typer.echo("\n".join(lines))


@subs_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The address."),
    name: Optional[str] = typer.Option(None, "--name", help="The person's name."),
    list_slug: Optional[str] = typer.Option(None, "--list", "-l", help="Subscribe to this list."),
    attrs: List[str] = typer.Option([], "--attr", help="KEY=VALUE attribute (repeatable), usable as *|ATTR:key|* in mail."),
    resubscribe: bool = typer.Option(
        False, "--resubscribe", help="Re-subscribe someone who left the list: ONLY with their fresh consent."
    ),
    resend_confirmation: bool = typer.Option(
        False, "--resend-confirmation", help="Send the confirmation email again to someone still unconfirmed."
    ),
    template: Optional[Path] = typer.Option(
        None, "--template", help="A template folder whose confirm.mjml / confirm.txt replace the shipped confirmation email (default: config template_dir)."
    ),
) -> None:
    """Add (or update) a subscriber; with --list, subscribe them. On a double-opt-in list they stay
    unconfirmed and get a confirmation email (through SMTP, or the outbox folder when no SMTP is configured)."""
    from ..store.subscribers import add_subscriber

    engine = _engine(ctx)
    config = get_config(ctx, **_template_override(template))
    if list_slug:  # a broken confirmation template is refused before anything is stored
        from ..store.lists import get_list
        from ..store.optin import check_confirmation_template

        lst = get_list(engine, list_slug)
        if lst.opt_in == "double":
            check_confirmation_template(config, lst.language)
    res = add_subscriber(engine, email, list_slug=list_slug, name=name, attributes=_pairs(attrs, "--attr"), source="cli", resubscribe=resubscribe)
    where = f" on {res.list_slug!r} ({res.status})" if res.list_slug else ""
    verb = {"added": "added", "created": "added", "updated": "updated", "already": "already present", "resubscribed": "resubscribed"}[res.outcome]
    typer.echo(f"{verb}: {res.email}{where}")
    if res.needs_confirmation and (res.outcome in ("added", "resubscribed") or resend_confirmation):
        typer.echo(_send_confirmation(config, engine, res))


def _template_override(template: Optional[Path]) -> dict:
    """The config override of a command's ``--template`` (none without it)."""
    return {"template_dir": str(template)} if template is not None else {}


def _send_confirmation(config, engine, res) -> str:
    """Mail the double-opt-in link with dispatch's send_one (SMTP, or the outbox when none is configured)."""
    from ..dispatch.oneoff import send_one
    from ..errors import DispatchError
    from ..store.optin import invitation_for, mail_confirmation

    invitation = invitation_for(engine, res.subscriber_id, res.list_id)
    try:
        sent = mail_confirmation(engine, config, lambda to, subject, html, text: send_one(config, to, subject, html, text), invitation)
    except DispatchError as e:
        raise DispatchError(f"{invitation.email} was added as unconfirmed, but the confirmation email was not sent: {e}") from None
    return f"confirmation email sent to {invitation.email} via {sent.transport}"


@subs_app.command("send-confirmations")
def subscribers_send_confirmations(
    ctx: typer.Context,
    list_slug: str = typer.Option(..., "--list", "-l", help="The double-opt-in list."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Send at most this many (run again to continue)."),
    remind: bool = typer.Option(
        False, "--remind", help="Also mail again those mailed before and still unconfirmed, once their last email is --older-than."
    ),
    older_than: Optional[str] = typer.Option(
        None, "--older-than", help="With --remind: the minimum age of the last email, like 12h, 3d or 2w (default 1d)."
    ),
    template: Optional[Path] = typer.Option(
        None, "--template", help="A template folder whose confirm.mjml / confirm.txt replace the shipped confirmation email (default: config template_dir)."
    ),
    allow_local_links: bool = typer.Option(
        False, "--allow-local-links", help="As for `send`: allow a non-https or loopback base_url over SMTP (a local test)."
    ),
) -> None:
    """Mail the confirmation link to everyone unconfirmed on a list who was never sent one (e.g. after
    an import); with --remind, also remind those mailed before. Each send is recorded at once, so
    running it again (or after a crash) mails only those not mailed yet."""
    from ..dispatch.oneoff import send_one
    from ..errors import DispatchError
    from ..store.optin import send_confirmations

    remind_after = _remind_age(remind, older_than)
    config = get_config(ctx, **_template_override(template), **({"allow_local_links": True} if allow_local_links else {}))
    from ..dispatch.preflight import check_public_links, make_transports

    check_public_links(config, make_transports(config), links="confirmation links")  # as `send`: confirm links must work for readers
    run = send_confirmations(
        _engine(ctx), config, list_slug, lambda to, subject, html, text: send_one(config, to, subject, html, text),
        limit=limit, remind_after=remind_after,
    )
    if remind_after is None:
        mailed = f"{run.skipped_mailed} already mailed" + (" (see --remind)" if run.skipped_mailed else "")
    else:
        mailed = f"{run.skipped_mailed} mailed less than {older_than.strip() if older_than else '1d'} ago"
    typer.echo(f"confirmation emails sent: {run.sent}; failed: {run.failed}; skipped: {mailed}, {run.skipped_suppressed} suppressed")
    if run.stopped_at_limit:
        typer.echo(f"stopped at --limit {limit}: run again to mail the rest")
    for address, reason in run.failures[:20]:
        typer.echo(f"  {address}: {reason}")
    if run.failed:
        raise DispatchError(f"{run.failed} confirmation email(s) were not sent")


def _remind_age(remind: bool, older_than: Optional[str]):
    """The reminder age for send-confirmations: None without --remind; a bad --older-than is one line."""
    from ..errors import InvalidInput
    from ..store.optin import DEFAULT_REMIND_AFTER, parse_age

    if not remind:
        if older_than is not None:
            raise InvalidInput("--older-than only applies with --remind")
        return None
    if older_than is None:
        return DEFAULT_REMIND_AFTER
    try:
        return parse_age(older_than)
    except InvalidInput as e:
        raise InvalidInput(f"--older-than: {e}") from None


@subs_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    list_slug: Optional[str] = typer.Option(None, "--list", "-l", help="Only this list (and show the status on it)."),
    status: Optional[Status] = typer.Option(None, "--status", help="Only this status (on --list, or on any list)."),
    search: Optional[str] = typer.Option(None, "--search", "-s", help="Text to find in the address or name."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, csv or json."),
    limit: int = typer.Option(100, "--limit", help="At most this many rows."),
    offset: int = typer.Option(0, "--offset", help="Skip this many rows first."),
) -> None:
    """List subscribers, oldest first, with filters and paging."""
    from ..store.export import safe_cell
    from ..store.subscribers import list_subscribers

    page = list_subscribers(_engine(ctx, readonly=True), list_slug=list_slug, status=status.value if status else None, search=search, offset=offset, limit=limit)
    def where(r):
        return r.status if list_slug else " ".join(f"{k}:{v}" for k, v in r.lists.items())
    if fmt is Fmt.json:
        typer.echo(json.dumps({"total": page.total, "offset": page.offset, "items": [
            {"email": r.email, "name": r.name, "attributes": r.attributes, "lists": r.lists, "status": r.status,
             "consent_source": r.consent_source, "created_at": r.created_at.isoformat()} for r in page.items
        ]}, indent=2, ensure_ascii=False))
        return
    if fmt is Fmt.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["email", "name", "status" if list_slug else "lists", "created_at"])
        for r in page.items:
            w.writerow([safe_cell(r.email), safe_cell(r.name), where(r), r.created_at.isoformat(timespec="seconds")])
        return
    from rich.table import Table

    t = Table("email", "name", "status" if list_slug else "lists", "attributes", "added")
    for r in page.items:
        t.add_row(r.email, r.name, where(r), ", ".join(f"{k}={v}" for k, v in r.attributes.items()), _when(r.created_at))
    con = _out()
    con.print(t)
    shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
    con.print(f"showing {shown} of {page.total}" + (" (use --offset/--limit for more)" if offset + len(page.items) < page.total else ""))


@subs_app.command("show")
def subscribers_show(ctx: typer.Context, email: str = typer.Argument(..., help="The address (any case).")) -> None:
    """Show one subscriber: data, consent, and status on each list."""
    from ..store.subscribers import get_subscriber

    r = get_subscriber(_engine(ctx, readonly=True), email)
    typer.echo(f"email:      {r.email}\nname:       {r.name}\nadded:      {_when(r.created_at)} UTC\nconsent:    {r.consent_source or ''}")
    for k, v in r.attributes.items():
        typer.echo(f"attribute:  {k}={v}")
    for slug, st in r.lists.items():
        typer.echo(f"list:       {slug} ({st})")


@subs_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    list_slug: Optional[str] = typer.Option(None, "--list", "-l", help="Only this list (default: every subscriber)."),
    status: Optional[Status] = typer.Option(None, "--status", help="Only this status."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
) -> None:
    """Export subscribers as CSV (spreadsheet-safe: formula-like cells are prefixed with ')."""
    from ..store.export import export_csv

    engine = _engine(ctx, readonly=True)
    if output is None:
        n = export_csv(engine, sys.stdout, list_slug=list_slug, status=status.value if status else None)
    else:
        from ..errors import InvalidInput

        tmp = output.with_name(output.name + ".part")
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                n = export_csv(engine, f, list_slug=list_slug, status=status.value if status else None)
            tmp.replace(output)
        except OSError as e:
            raise InvalidInput(f"{output}: cannot write: {e.strerror}") from None
    _err().print(f"exported {n} subscriber(s)")


@subs_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The address (any case)."),
    suppress: bool = typer.Option(False, "--suppress", help="Also keep the address on the suppression list so no later import re-adds it."),
) -> None:
    """Erase a person: delete their data and every subscription (right to erasure)."""
    from ..store.leaving import erase_subscriber

    row = erase_subscriber(_engine(ctx), email, suppress_address=suppress)
    lists = ", ".join(f"{k} ({v})" for k, v in row.lists.items()) or "no lists"
    typer.echo(f"erased {row.email} (was on {lists})" + ("; address suppressed" if suppress else ""))


@subs_app.command("preferences-link")
def subscribers_preferences_link(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The address (any case)."),
    rotate: bool = typer.Option(False, "--rotate", help="Revoke every earlier preferences link of this person first."),
) -> None:
    """Print someone's signed preference-centre link; --rotate makes their older links stop working."""
    from ..store.preferences import link_for

    typer.echo(link_for(_engine(ctx), get_config(ctx), email, rotate=rotate))


@subs_app.command("unsubscribe")
def subscribers_unsubscribe(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The address (any case)."),
    list_slug: Optional[str] = typer.Option(None, "--list", "-l", help="Only this list (default: every list)."),
) -> None:
    """Unsubscribe someone from one list or all lists (kept as 'unsubscribed' so imports never re-add them)."""
    from ..store.leaving import unsubscribe
    from ..store.subscribers import get_subscriber

    engine = _engine(ctx)
    changed = unsubscribe(engine, email, list_slug)
    address = get_subscriber(engine, email).email
    if changed:
        typer.echo(f"unsubscribed {address} from {', '.join(changed)}")
    else:
        typer.echo(f"{address} was not subscribed" + (f" to {list_slug!r}" if list_slug else " to any list") + ": nothing changed")


# ---------------------------------------------------------------- suppression


@supp_app.command("add")
def suppress_add(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="An address (ana@example.com) or a domain (example.net)."),
    reason: str = typer.Option("", "--reason", help="Why (shown in `suppress list`)."),
) -> None:
    """Never mail this address or domain, on any list, and never let an import or add re-subscribe it."""
    from ..store.suppressions import suppress

    entry, created = suppress(_engine(ctx), value, reason=reason)
    typer.echo(("suppressed" if created else "already suppressed") + f" {entry.kind} {entry.value}")


@supp_app.command("list")
def suppress_list(ctx: typer.Context, fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, csv or json.")) -> None:
    """Show the suppression list, newest first."""
    from ..store.export import safe_cell
    from ..store.suppressions import list_suppressions

    rows = list_suppressions(_engine(ctx, readonly=True))
    if fmt is Fmt.json:
        typer.echo(json.dumps([{"kind": r.kind, "value": r.value, "reason": r.reason, "created_at": r.created_at.isoformat()} for r in rows], indent=2, ensure_ascii=False))
    elif fmt is Fmt.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["kind", "value", "reason", "created_at"])
        for r in rows:
            w.writerow([r.kind, safe_cell(r.value), safe_cell(r.reason), r.created_at.isoformat(timespec="seconds")])
    else:
        from rich.table import Table

        t = Table("kind", "value", "reason", "since")
        for r in rows:
            t.add_row(r.kind, r.value, r.reason, _when(r.created_at))
        _out().print(t)


@supp_app.command("remove")
def suppress_remove(ctx: typer.Context, value: str = typer.Argument(..., help="The address or domain to lift.")) -> None:
    """Lift a suppression (it does not re-subscribe anyone)."""
    from ..errors import NotFound
    from ..store.suppressions import unsuppress

    if not unsuppress(_engine(ctx), value):
        raise NotFound(f"{value.strip()!r} is not on the suppression list")
    typer.echo(f"no longer suppressed: {value.strip()}")
