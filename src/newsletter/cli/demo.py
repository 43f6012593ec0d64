"""`newsletter demo`: the whole job on the sample content (the README Quickstart's first command)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app, get_config


@app.command("demo")
def demo(
    ctx: typer.Context,
    articles: Path = typer.Option(Path("articles"), "--articles", help="Folder of sample articles to compose."),
    subscribers: Path = typer.Option(Path("subscribers/sample.csv"), "--subscribers", help="Sample subscriber CSV to import."),
    workdir: Path = typer.Option(Path("demo"), "--dir", help="Where the demo writes its database, digest and outbox."),
) -> None:
    """Compose the sample digest, import the sample list into SQLite, and send a campaign to an outbox of .eml files."""
    from ..demo import run_demo
    from ..errors import SourceError

    for what, p in (("articles folder", articles), ("subscriber file", subscribers)):
        if not p.exists():
            raise SourceError(str(p), f"{what} not found (run the demo from the repository root, or pass --articles/--subscribers)")
    r = run_demo(get_config(ctx), articles=str(articles), subscribers=str(subscribers), workdir=str(workdir))
    rep, s = r.import_report, r.send_summary
    out = typer.echo
    for w in r.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    out(f"1. Composed {r.articles_selected} of {r.articles_found} articles: {r.html_size / 1024:.1f} KB of HTML (Gmail clips at 102 KB)")
    out(f"   {r.digest_dir}/digest.html  digest.txt  digest.eml")
    out(f"2. Imported {rep.read} rows into {r.database}: {rep.added} added, {rep.already_present} already present, "
        f"{rep.duplicates_in_file} duplicates merged, {rep.invalid} invalid, "
        f"{rep.skipped_unsubscribed + rep.recorded_unsubscribed} unsubscribed, {rep.skipped_suppressed} suppressed")
    if rep.invalid and rep.rejects_path:
        out(f"   rejected rows and reasons: {rep.rejects_path}")
    out(f"3. Campaign {r.campaign_id} sent through the ledger: {s.counts.get('sent', 0)} sent, "
        f"{s.counts.get('failed', 0)} failed, {s.counts.get('deferred', 0)} deferred in {s.elapsed:.2f} s")
    out(f"   one .eml per recipient in {r.outbox}/")
    out(f"Next: `newsletter --db sqlite:///{r.database} serve` and open "
        f"http://127.0.0.1:8000/admin/preview?campaign={r.campaign_id}, or open {r.digest_dir}/digest.html in a browser.")
