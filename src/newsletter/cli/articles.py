"""``newsletter articles``: show what the sources hold, as a table or as JSON Lines."""

from __future__ import annotations

import enum
import json
from typing import List, Optional

import typer

from . import app, get_config


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


@app.command("articles")
def articles_command(
    ctx: typer.Context,
    sources: List[str] = typer.Argument(
        ...,
        metavar="SOURCE",
        help="Markdown files or folders, RSS/Atom/RDF feeds, HTML pages, text files listing URLs, or http(s) URLs of any of these.",
    ),
    since: Optional[str] = typer.Option(None, "--since", help="Only articles published since: 7d, 12h, 2w, 2026-11-01 or an ISO date-time (default: all)."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", "-f", case_sensitive=False, help="table (readable) or json (one JSON object per article and line)."
    ),
    strict: bool = typer.Option(False, "--strict", help="A bad article, entry or URL is an error instead of a skipped-with-warning."),
) -> None:
    """List the articles SOURCES hold, newest first (duplicates merged). Warnings go to stderr."""
    from ..articles import load_sources
    from ..articles.dates import parse_since, zone
    from ..errors import ConfigError, SelectionError

    config = get_config(ctx)
    try:
        zone(config.timezone)
    except ValueError as e:
        raise ConfigError(f"timezone: {e}") from None
    cutoff = None
    if since is not None:
        try:
            cutoff = parse_since(since, tz=config.timezone)
        except ValueError as e:
            raise SelectionError(str(e)) from None  # one line, exit 1: the same as `compose --since`

    result = load_sources(list(sources), config, strict=strict)
    for w in result.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    articles = result.articles
    if cutoff is not None:
        articles = [a for a in articles if a.published is not None and a.published >= cutoff]

    if output_format is OutputFormat.json:
        for a in articles:
            typer.echo(json.dumps(a.to_json_dict(), ensure_ascii=False))
        return
    _print_table(articles, config.timezone)


def _print_table(articles, tz_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..articles.dates import zone

    try:
        tz = zone(tz_name)
    except ValueError:
        tz = None
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("Date", no_wrap=True)
    table.add_column("Title", ratio=3, overflow="fold")
    table.add_column("Authors", ratio=1)
    table.add_column("Category", ratio=1)
    table.add_column("Read", justify="right", no_wrap=True)
    table.add_column("Image", justify="center", no_wrap=True)
    table.add_column("Videos", justify="right", no_wrap=True)
    for a in articles:
        date = a.published.astimezone(tz).strftime("%Y-%m-%d") if a.published else "—"
        title = a.title if not a.url else f"[link={a.url}]{_escape(a.title)}[/link]"
        table.add_row(
            date,
            title,
            _escape(", ".join(a.authors)) or "—",
            _escape(a.category or "—"),
            f"{a.read_time_minutes} min",
            "yes" if a.image else "—",
            str(len(a.videos)) if a.videos else "—",
        )
    console = Console()
    console.print(table)
    console.print(f"{len(articles)} article{'s' * (len(articles) != 1)}", style="dim")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
