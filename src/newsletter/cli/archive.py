"""``campaigns update ID --archive/--no-archive/--archive-default``: change whether a campaign is in
the public archive after it was created (the rule: dispatch/archive.py)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .dispatch import Fmt, _engine, campaigns_app


@campaigns_app.command("update")
def update_command(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign id."),
    archive: Optional[bool] = typer.Option(None, "--archive/--no-archive", help="Show it in the public archive once a copy was delivered, or never."),
    archive_default: bool = typer.Option(False, "--archive-default", help="Go back to what its lists say (lists update --archive/--no-archive)."),
    fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json."),
) -> None:
    """Change a campaign's archive choice, in any status; prints whether it is published and why not."""
    from ..dispatch.archive import set_archive
    from ..dispatch.campaigns import resolve_campaign_id
    from ..errors import InvalidInput

    cid = resolve_campaign_id(campaign)
    if archive is not None and archive_default:
        raise InvalidInput("give one of --archive, --no-archive or --archive-default, not both")
    if archive is None and not archive_default:
        raise InvalidInput("nothing to change: give --archive, --no-archive or --archive-default")
    _, engine = _engine(ctx)
    status = set_archive(engine, cid, archive)
    if fmt is Fmt.json:
        typer.echo(json.dumps({"id": cid, **status.as_dict()}, indent=2))
        return
    typer.echo(f"campaign {cid}: {status.reason}")
