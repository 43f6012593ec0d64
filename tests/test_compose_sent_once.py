"""'Never send an article twice' through the real recurring-digest run: the keys a run records
and the selection of the next run agree on links that differ only by tracking parameters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from newsletter.config import Config
from newsletter.schedule import digests as dg
from newsletter.schedule import occurrences as occ
from newsletter.store.db import get_engine, upgrade
from newsletter.store.digest_models import DigestRun, DigestSentArticle, RecurringDigest
from newsletter.store.lists import create_list

PARIS = ZoneInfo("Europe/Paris")
CREATED = datetime(2026, 11, 24, 12, 0, tzinfo=PARIS)  # the first occurrence is Monday 30 November 08:00
FIRST = datetime(2026, 11, 30, 8, 0, 5, tzinfo=PARIS)
SECOND = datetime(2026, 12, 7, 8, 0, 5, tzinfo=PARIS)


def write_article(folder: Path, slug: str, published: datetime, url: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{slug}.md").write_text(
        f"---\ntitle: {slug.replace('-', ' ').title()}\ndate: {published.isoformat()}\nurl: {url}\n---\n\nAbout {slug}.\n",
        encoding="utf-8",
    )


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    upgrade(url)
    eng = get_engine(url)
    create_list(eng, "weekly", "The Weekly")
    yield eng
    eng.dispose()


@pytest.fixture
def config(engine, tmp_path) -> Config:
    return Config(database_url=str(engine.url), timezone="Europe/Paris", outbox=str(tmp_path / "outbox"))


def add_weekly(engine, config, folder: Path) -> None:
    dg.add_digest(engine, config, dg.DigestSpec(
        name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris", sources=[str(folder)],
        lists=["weekly"], subject="Weekly digest — {{ date }}"), now=CREATED)


def sent_keys(engine) -> list[str]:
    with Session(engine) as s:
        return sorted(s.exec(select(DigestSentArticle.article_key)).all())


def test_an_article_sent_with_tracking_parameters_is_not_sent_again_without_them(engine, config, tmp_path):
    folder = tmp_path / "articles"
    write_article(folder, "tram-line", datetime(2026, 11, 27, 9, tzinfo=PARIS),
                  "https://www.example.org/tram-line/?utm_source=rss&utm_medium=feed&fbclid=x#top")
    add_weekly(engine, config, folder)
    [first] = occ.run_due_digests(engine, config, now=FIRST)
    assert first.status == "created" and first.article_count == 1
    assert sent_keys(engine) == ["https://example.org/tram-line"]

    # The same article comes back re-dated with a clean link, beside one really new article.
    (folder / "tram-line.md").unlink()
    write_article(folder, "tram-line-again", datetime(2026, 12, 2, 9, tzinfo=PARIS), "https://example.org/tram-line")
    write_article(folder, "ferry", datetime(2026, 12, 3, 9, tzinfo=PARIS), "https://example.org/ferry?gclid=1")
    [second] = occ.run_due_digests(engine, config, now=SECOND)
    assert second.status == "created" and second.article_count == 1
    assert sent_keys(engine) == ["https://example.org/ferry", "https://example.org/tram-line"]


def test_keys_recorded_as_raw_urls_before_keys_were_canonical_still_count(engine, config, tmp_path):
    folder = tmp_path / "articles"
    write_article(folder, "tram-line", datetime(2026, 11, 27, 9, tzinfo=PARIS), "https://example.org/tram-line")
    add_weekly(engine, config, folder)
    with Session(engine) as s:
        digest = s.exec(select(RecurringDigest)).one()
        s.add(DigestSentArticle(digest_id=digest.id, article_key="https://example.org/tram-line/?utm_source=newsletter"))
        s.commit()
    [result] = occ.run_due_digests(engine, config, now=FIRST)
    assert result.status == "skipped" and "already sent in an earlier digest" in result.reason
    with Session(engine) as s:
        assert [r.status for r in s.exec(select(DigestRun)).all()] == ["skipped"]
