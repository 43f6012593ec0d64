"""The whole pipeline on the sample content, as the README's first command runs it.

Composes the sample digest, imports the sample subscribers into a SQLite database of its
own, freezes a campaign and sends it through the delivery ledger to an outbox folder of
``.eml`` files — nothing leaves the machine. The CLI prints what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:
    from .dispatch.sender import SendSummary
    from .store.importer import ImportReport


@dataclass
class DemoResult:
    """What the demo produced and where it is."""

    workdir: Path
    digest_dir: Path
    database: Path
    outbox: Path
    articles_found: int
    articles_selected: int
    html_size: int
    import_report: ImportReport
    campaign_id: int
    send_summary: SendSummary
    warnings: list[str] = field(default_factory=list)


def run_demo(config: Config, *, articles: str, subscribers: str, workdir: str, list_slug: str = "weekly") -> DemoResult:
    """Compose → import → campaign → send to outbox, all under ``workdir``; returns the figures."""
    from .compose import ComposeOptions, compose, embed_relative_assets, write_digest
    from .dispatch.campaigns import create_campaign
    from .dispatch.sender import send_campaign
    from .errors import NotFound
    from .store.db import get_engine, upgrade
    from .store.importer import ImportOptions, import_file
    from .store.lists import create_list, get_list

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "newsletter.db"
    config = config.replace(database_url=f"sqlite:///{db_path}", outbox=str(work / "outbox"))

    digest = compose([articles], config, ComposeOptions(limit=10))
    digest_dir = work / "out"
    write_digest(digest, digest_dir)

    upgrade(config.database_url)
    engine = get_engine(config.database_url)
    try:
        get_list(engine, list_slug)
    except NotFound:
        create_list(engine, list_slug, name="Weekly digest", opt_in="single")
    report = import_file(engine, subscribers, ImportOptions(list_slug=list_slug, source="demo import",
                                                            rejects_path=work / "sample.rejects.csv"))
    # Thumbnails are local files: the campaign carries them as CID parts, not broken relative links.
    campaign = create_campaign(engine, embed_relative_assets(digest), [list_slug], config)
    assert campaign.id is not None  # read back after the insert: it has its id
    outbox = work / "outbox" / f"campaign-{campaign.id}"
    summary = send_campaign(engine, campaign.id, config, outbox=str(outbox))
    return DemoResult(
        workdir=work, digest_dir=digest_dir, database=db_path, outbox=outbox,
        articles_found=digest.found, articles_selected=len(digest.articles), html_size=digest.html_size,
        import_report=report, campaign_id=campaign.id, send_summary=summary, warnings=list(digest.warnings),
    )
