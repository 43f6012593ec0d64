"""``newsletter compose``: sources → digest.html/.txt/.eml/.json + assets/ in an output folder."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app, get_config


@app.command("compose")
def compose_command(
    ctx: typer.Context,
    sources: Optional[List[str]] = typer.Argument(None, help="Markdown files or folders, RSS/Atom/RDF/JSON feeds, HTML article pages, text files listing URLs, or http(s) URLs of feeds and pages (default: `sources` from the config)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only articles published since: 7d, 24h, 2w, 2026-11-01, an ISO date-time, or all (default: since the last campaign to --list, else config default_since)."),
    lists: Optional[List[str]] = typer.Option(None, "--list", "-l", help="Compose for this list (repeatable): start after its last campaign and warn about articles its readers already received."),
    skip_sent: bool = typer.Option(False, "--skip-sent", help="With --list: leave out articles an earlier campaign to the list already carried."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many articles (newest first)."),
    category: Optional[str] = typer.Option(None, "--category", help="Only articles in this category (case-insensitive)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", help="Only articles with this tag; repeat for several (any of them matches)."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Folder for digest.html, .txt, .eml, .json and assets/."),
    template: Optional[Path] = typer.Option(None, "--template", help="Your own template folder (needs digest.mjml and digest.txt)."),
    subject: Optional[str] = typer.Option(None, "--subject", help="Subject line (default: newsletter name and the top story)."),
    preheader: Optional[str] = typer.Option(None, "--preheader", help="Preview text shown after the subject (default: the story titles)."),
    embed_images: bool = typer.Option(False, "--embed-images", help="Use cid: references for local images in digest.html too, instead of assets/ or --asset-base-url links (digest.eml always embeds local images as CID parts)."),
    strict: bool = typer.Option(False, "--strict", help="A bad article is an error instead of a skipped-with-warning."),
    asset_base_url: Optional[str] = typer.Option(None, "--asset-base-url", help="Public URL where out/assets/ will be served (default: relative assets/)."),
    language: Optional[str] = typer.Option(None, "--language", help="Language of the digest's own words (Read more, the footer): en, fr, de, es, pt, ar (default: config language)."),
) -> None:
    """Compose a digest from SOURCES and write it to --out (default out/)."""
    from ..compose import HTML_BUDGET_BYTES, ComposeOptions, compose, write_digest
    from ..errors import InvalidInput, SelectionError
    from ..i18n import check_language

    config = get_config(ctx, template_dir=str(template) if template else None, asset_base_url=asset_base_url)
    sources = list(sources or config.sources)
    if not sources:
        raise InvalidInput("no sources: pass files, folders or URLs (or set `sources` in the config)")
    if skip_sent and not lists:
        raise InvalidInput("--skip-sent needs --list SLUG: it leaves out what earlier campaigns to that list carried")
    from ..dispatch.previous import already_received, choose_since, sent_keys

    engine = None
    if lists:
        from ..store.db import get_engine, require_current_schema

        engine = get_engine(config.database_url)
        require_current_schema(engine)
        from ..store.lists import get_list

        for slug in lists:  # an unknown list is refused before anything is composed or written
            get_list(engine, slug)
    choice = choose_since(engine, config, since, list(lists or []))
    options = ComposeOptions(
        since=choice.since,
        exclude_keys=sent_keys(engine, list(lists or [])) if engine is not None and skip_sent else (),
        limit=limit,
        category=category,
        tags=list(tag or []),
        template_dir=config.template_dir,
        embed_images=embed_images,
        subject=subject,
        preheader=preheader,
        strict=strict,
        language=check_language(language) if language else None,
    )
    say = typer.echo
    say(choice.sentence(config.timezone))
    try:
        digest = compose(sources, config, options)
    except SelectionError as e:
        raise choice.explain(e) from None
    paths = write_digest(digest, out)

    received = already_received(engine, list(lists or []), digest.articles) if engine is not None else []
    for w in [*digest.warnings, *(r.warning() for r in received)]:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    n = len(digest.articles)
    say(f"Found {digest.found} article{'s' * (digest.found != 1)}, selected {n}, skipped {len(digest.skipped)}.")
    reasons: dict[str, int] = {}
    for _, reason in digest.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        say(f"  skipped {count}: {reason}")
    if digest.sources_skipped:
        k = len(digest.sources_skipped)
        say(f"{k} source{'s' * (k != 1)} skipped (bad or non-article files, entries or URLs; not counted above):")
        for what, reason in digest.sources_skipped[:20]:
            say(f"  {what}: {reason}")
        if k > 20:
            say(f"  ... and {k - 20} more (see the warnings)")
    kb, budget = digest.html_size / 1024, HTML_BUDGET_BYTES // 1024
    status = "over budget, Gmail will clip it" if digest.over_budget else "within budget"
    images = f"{len(digest.images)} image(s) embedded in the .eml" if digest.images else f"{len(digest.assets)} image file(s) in assets/"
    say(f"HTML {kb:.1f} KB of {budget} KB ({status}); {images}.")
    say(f"Subject: {digest.subject}")
    say(f"Wrote {paths['html']}, {paths['text']}, {paths['eml']}, {paths['json']}" + (f" and {paths['assets']}/" if digest.assets or digest.images else ""))
