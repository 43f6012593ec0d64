"""CLI commands for segments: `segments create|list|show|count|delete`.

A thin shell over ``newsletter.store.segments``: parse flags, call one library function, print.
"""

from __future__ import annotations

import json
from enum import Enum

import typer

from . import app, get_config

segments_app = typer.Typer(help="Segments: named filters that narrow one list (see docs/segments.md).",
                           no_args_is_help=True)
app.add_typer(segments_app, name="segments")


class Fmt(str, Enum):
    table = "table"
    json = "json"


def _engine(ctx: typer.Context, *, readonly: bool = False):
    from ..store.db import get_engine, require_current_schema

    engine = get_engine(get_config(ctx).database_url, create=False, readonly=readonly)
    require_current_schema(engine)
    return engine


def _out():
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


@segments_app.command("create")
def create_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The segment's name (lowercase letters, digits, '-' or '_')."),
    list_slug: str = typer.Option(..., "--list", "-l", help="The list this segment narrows."),
    where: str = typer.Option("", "--where", help="The filter as JSON, e.g. '{\"attr\": \"city\", \"eq\": \"Lisbon\"}'."),
    match_all: bool = typer.Option(False, "--all", help="The whole list, on purpose (instead of --where)."),
) -> None:
    """Store a segment of a list; prints its live count."""
    from ..store.segments import create_segment, get_segment

    engine = _engine(ctx)
    create_segment(engine, name, list_slug, where, match_all=match_all)
    info = get_segment(engine, name)
    typer.echo(f"created segment {name!r} of list {info.list!r}: {info.mailable} active subscriber(s) match "
               f"({info.matching} subscription(s) in any status)")


@segments_app.command("count")
def count_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The segment to count."),
) -> None:
    """Print how many active, unsuppressed subscribers the segment matches now (a campaign's audience)."""
    from ..store.segments import get_segment

    info = get_segment(_engine(ctx, readonly=True), name)
    typer.echo(str(info.mailable))


@segments_app.command("list")
def list_command(
    ctx: typer.Context,
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
) -> None:
    """Every segment with its list, filter and live counts."""
    from ..store.segments import list_segments

    items = list_segments(_engine(ctx, readonly=True))
    if fmt is Fmt.json:
        typer.echo(json.dumps([i.as_dict() for i in items], indent=2, ensure_ascii=False))
        return
    if not items:
        typer.echo("no segments yet: create one with `newsletter segments create NAME --list SLUG --where JSON`")
        return
    from rich.table import Table

    t = Table("name", "list", "active", "matching", "filter")
    for i in items:
        t.add_row(i.name, i.list, str(i.mailable), str(i.matching), "(whole list)" if i.match_all else i.filter)
    _out().print(t)


@segments_app.command("show")
def show_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The segment to show."),
    members: int = typer.Option(0, "--members", min=0, help="Also list the first N matching subscriptions."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
) -> None:
    """A segment's list, filter, live counts and (with --members N) its first members."""
    from ..store.segments import get_segment, segment_members

    engine = _engine(ctx, readonly=True)
    info = get_segment(engine, name)
    rows = segment_members(engine, name, members) if members else []
    if fmt is Fmt.json:
        typer.echo(json.dumps({**info.as_dict(), "members": rows}, indent=2, ensure_ascii=False))
        return
    out = _out()
    out.print(f"segment {info.name} of list {info.list}", markup=False)
    out.print(f"filter: {'(whole list: --all)' if info.match_all else info.filter}", markup=False)
    out.print(f"active, not suppressed: {info.mailable}; matching in any status: {info.matching}", markup=False)
    if members:
        from rich.table import Table

        t = Table("email", "name", "status")
        for r in rows:
            t.add_row(r["email"], r["name"], r["status"])
        out.print(t)


@segments_app.command("delete")
def delete_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The segment to delete (campaigns made with it keep their recorded filter)."),
) -> None:
    """Delete a segment; subscribers, lists and campaigns are untouched."""
    from ..store.segments import delete_segment

    delete_segment(_engine(ctx), name)
    typer.echo(f"deleted segment {name!r}")
