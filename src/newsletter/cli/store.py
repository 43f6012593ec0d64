"""CLI commands for `store`: `db` and `lists` (registered on the root app on import), and the
helpers every store command shares (the database, consoles, output formats).

A thin shell: each command opens the database, checks the schema is current (except
`db upgrade`), calls one library function and formats what it returns. The `subscribers` and
`suppress` commands are in cli/subscribers.py.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import List, Optional

import typer

from . import app, get_config

db_app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)
lists_app = typer.Typer(help="Mailing lists: create, list with counts, change, delete, set the welcome email.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(lists_app, name="lists")


class Fmt(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"



def _engine(ctx: typer.Context, *, check_schema: bool = True, readonly: bool = False):
    """The database for a command other than `db upgrade`: a SQLite file that does not exist is
    not created; ``readonly`` commands open it read-only, so they work on a read-only file."""
    from ..store.db import get_engine, require_current_schema

    config = get_config(ctx)
    engine = get_engine(config.database_url, create=False, readonly=readonly)
    if check_schema:
        require_current_schema(engine)
    return engine


def _out():
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


def _err():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def _pairs(values: List[str], what: str) -> dict[str, str]:
    from ..errors import InvalidInput

    out = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{what} {v!r} must look like NAME=VALUE")
        out[key.strip()] = val
    return out


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else ""


# ---------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Option("head", help="Target migration (default: the newest).")) -> None:
    """Create the database, or migrate it to the newest schema (safe to run again)."""
    from ..store.db import mask_url, upgrade

    config = get_config(ctx)
    before, after = upgrade(config.database_url, revision)
    url = mask_url(config.database_url)
    if before == after:
        typer.echo(f"{url}: schema already at {after}")
    else:
        typer.echo(f"{url}: schema upgraded {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the newest one this version knows."""
    from ..store.db import current_revision, head_revision

    engine = _engine(ctx, check_schema=False, readonly=True)
    current, head = current_revision(engine), head_revision()
    typer.echo(f"database at {current or 'empty'}; newest {head}" + ("" if current == head else " (run `newsletter db upgrade`)"))


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Exit 0 when the schema is current, else print why and exit 1 (for scripts and health checks)."""
    _engine(ctx, readonly=True)
    typer.echo("schema is current")


# ---------------------------------------------------------------- lists


@lists_app.command("create")
def lists_create(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Short name used in commands and URLs: lowercase letters, digits, '-', '_'."),
    name: Optional[str] = typer.Option(None, "--name", help="Display name (default: the slug)."),
    description: str = typer.Option("", "--description", help="What readers get."),
    double_opt_in: bool = typer.Option(
        False, "--double-opt-in/--single-opt-in",
        help="Double: new subscribers must click a confirmation link before they get mail. Single (default): subscribed at once.",
    ),
    language: Optional[str] = typer.Option(
        None, "--language", help="Language of its public pages, confirmation email and digest words: en, fr, de, es, pt, ar (default: config language).",
    ),
    timezone: Optional[str] = typer.Option(
        None, "--timezone", help="IANA time zone of readers who gave none, for local-time campaigns (default: config timezone).",
    ),
    public: bool = typer.Option(
        True, "--public/--private",
        help="Public (default): a signup page, and offered on every reader's preference centre. Private: neither; only its own readers see it there.",
    ),
    quiet_hours: Optional[str] = typer.Option(
        None, "--quiet-hours", help="HH:MM-HH:MM, e.g. 22:00-07:00: local-time campaigns send its readers nothing then (in each reader's zone); a copy due then waits for the end.",
    ),
    archive: Optional[bool] = typer.Option(
        None, "--archive/--no-archive", help="Its campaigns go in the public archive once delivered, unless a campaign says otherwise (default: yes for a public list, no for a private one).",
    ),
) -> None:
    """Create a mailing list."""
    from ..store.lists import create_list

    ml = create_list(_engine(ctx), slug, name, description, "double" if double_opt_in else "single", language, timezone,
                     public=public, quiet_hours=quiet_hours, archive=archive)
    typer.echo(f"created list {ml.slug!r} ({ml.name}, {ml.opt_in} opt-in{_language_note(ml.language, ml.timezone)}"
               f"{_private_note(ml.public, ml.archive)}{_quiet_note(ml.quiet_hours)})")


def _language_note(language: str | None, timezone: str | None = None) -> str:
    return (f", language {language}" if language else "") + (f", time zone {timezone}" if timezone else "")


def _private_note(public: bool, archive: bool = True) -> str:
    return ("" if public else ", private") + ("" if archive else ", not in the archive")


def _quiet_note(quiet_hours: str | None) -> str:
    return f", quiet hours {quiet_hours}" if quiet_hours else ""


@lists_app.command("list")
def lists_list(ctx: typer.Context, fmt: Fmt = typer.Option(Fmt.table, "--format", help="table, csv or json.")) -> None:
    """Show every list with its subscription counts by status."""
    from ..store.lists import list_lists
    from ..store.models import SUBSCRIPTION_STATUSES

    rows = list_lists(_engine(ctx, readonly=True))
    if fmt is Fmt.json:
        typer.echo(json.dumps([
            {"slug": r.slug, "name": r.name, "description": r.description, "opt_in": r.opt_in, "language": r.language,
             "timezone": r.timezone,
             "public": r.public, "quiet_hours": r.quiet_hours, "archive": r.archive,
             "created_at": r.created_at.isoformat(), "counts": r.counts, "total": r.total} for r in rows
        ], indent=2, ensure_ascii=False))
        return
    if fmt is Fmt.csv:
        import csv

        from ..store.export import safe_cell

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["slug", "name", "opt_in", *SUBSCRIPTION_STATUSES, "total"])
        for r in rows:
            w.writerow([safe_cell(r.slug), safe_cell(r.name), r.opt_in, *(r.counts[s] for s in SUBSCRIPTION_STATUSES), r.total])
        return
    if not rows:
        typer.echo("no lists yet: create one with `newsletter lists create SLUG --name NAME`")
        return
    from rich.table import Table

    t = Table("slug", "name", "opt-in", *SUBSCRIPTION_STATUSES, "total")
    for r in rows:
        t.add_row(r.slug, r.name, r.opt_in, *(str(r.counts[s]) for s in SUBSCRIPTION_STATUSES), str(r.total))
    _out().print(t)


@lists_app.command("update")
def lists_update(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The list to change."),
    name: Optional[str] = typer.Option(None, "--name", help="New display name."),
    description: Optional[str] = typer.Option(None, "--description", help="New description."),
    double_opt_in: Optional[bool] = typer.Option(None, "--double-opt-in/--single-opt-in", help="Change the opt-in mode for new subscribers."),
    language: Optional[str] = typer.Option(
        None, "--language", help="New language of its pages, emails and digest words (en, fr, de, es, pt, ar; 'default': config language).",
    ),
    timezone: Optional[str] = typer.Option(
        None, "--timezone", help="New IANA time zone of readers who gave none, for local-time campaigns ('default': config timezone).",
    ),
    public: Optional[bool] = typer.Option(
        None, "--public/--private", help="Give it a signup page and offer it on every preference centre, or neither.",
    ),
    quiet_hours: Optional[str] = typer.Option(
        None, "--quiet-hours", help="New quiet hours, HH:MM-HH:MM in each reader's zone, for local-time campaigns ('none' removes them).",
    ),
    archive: Optional[bool] = typer.Option(
        None, "--archive/--no-archive", help="Whether its campaigns go in the public archive by default (a campaign's own choice wins).",
    ),
) -> None:
    """Change a list's name, description, opt-in mode (existing subscriptions keep their status), language, time zone,
    visibility or quiet hours."""
    from ..store.lists import update_list

    opt_in = None if double_opt_in is None else ("double" if double_opt_in else "single")
    ml = update_list(_engine(ctx), slug, name=name, description=description, opt_in=opt_in, language=language,
                     timezone=timezone, public=public, quiet_hours=quiet_hours, archive=archive)
    typer.echo(f"updated list {ml.slug!r} ({ml.name}, {ml.opt_in} opt-in{_language_note(ml.language, ml.timezone)}"
               f"{_private_note(ml.public, ml.archive)}{_quiet_note(ml.quiet_hours)})")


@lists_app.command("delete")
def lists_delete(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The list to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Really delete: the list and all its subscriptions go (subscribers stay)."),
) -> None:
    """Delete a list and its subscriptions; subscribers and their other lists stay."""
    from ..errors import InvalidInput
    from ..store.lists import delete_list

    if not yes:
        raise InvalidInput(f"deleting list {slug!r} removes all its subscriptions: pass --yes to confirm")
    n = delete_list(_engine(ctx), slug)
    typer.echo(f"deleted list {slug!r} and {n} subscription(s)")


@lists_app.command("welcome")
def lists_welcome(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="The list whose welcome email to set."),
    template: Optional[str] = typer.Option(
        None, "--template",
        help="An MJML file (one welcome, its plain text in a .txt beside it if present) or a folder "
             "(step-N.mjml and optional step-N.txt per step, or welcome.mjml).",
    ),
    series: Optional[str] = typer.Option(None, "--series", help="Days after joining to send each step, e.g. 0,3,7 (default: 0)."),
    default: bool = typer.Option(
        False, "--default",
        help="The default welcome: welcome.mjml (and welcome.txt) of config template_dir, else the shipped one.",
    ),
    off: bool = typer.Option(False, "--off", help="Send no welcome to readers who join from now on."),
    status: bool = typer.Option(False, "--status", help="Show the setting and how many welcome steps were sent."),
) -> None:
    """Set the welcome email (or a short series) new readers of a list get after they confirm or sign up."""
    from ..errors import InvalidInput
    from ..store import welcome as store

    engine = _engine(ctx)
    if status:
        if template is not None or off or default or series is not None:
            raise InvalidInput("--status shows the setting: give it alone")
        from ..store.lists import get_list

        setting = get_list(engine, slug).welcome
        counts = store.welcome_counts(engine, slug)
        if not setting:
            typer.echo(f"list {slug!r}: no welcome")
        else:
            source = ("the default welcome (welcome.mjml of template_dir, else the shipped one)"
                      if setting["template"] == store.DEFAULT_TEMPLATE else setting["template"])
            typer.echo(f"list {slug!r}: welcome from {source}, steps {', '.join(map(str, setting['steps']))} "
                       f"(days after joining), for readers who joined since {setting['since']}")
        typer.echo(f"sent {counts.get('sent', 0)}, failed {counts.get('failed', 0)}, "
                   f"interrupted {counts.get('sending', 0)} (never resent)")
        return
    if off and series is not None:
        raise InvalidInput("--off and --series exclude each other")
    steps = store.parse_series(series) if series is not None else None
    if default and template is not None:
        raise InvalidInput("--default and --template exclude each other")
    if template is not None or default:  # render every step once now: a broken template is reported here, not by the worker
        from ..dispatch.welcome import render_step

        config = get_config(ctx)
        name = store.list_name(engine, slug)
        chosen = template if template is not None else store.DEFAULT_TEMPLATE
        for step, (mjml, txt) in store.step_files(chosen, steps or [store.SINGLE_FILE_STEP], config.template_dir).items():
            render_step(mjml, txt, config, list_name=name, step=step)
    setting = store.set_welcome(engine, slug, template=template, steps=steps, off=off, default=default)
    if setting is None:
        typer.echo(f"list {slug!r}: welcome off")
    else:
        typer.echo(f"list {slug!r}: welcome on, steps {', '.join(map(str, setting['steps']))} (days after joining), "
                   "for readers who join from now on")
