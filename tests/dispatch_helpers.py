"""Shared set-up for the dispatch tests: a migrated database, lists, subscribers, a digest, a campaign."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert

from newsletter.config import Config
from newsletter.store import db
from newsletter.store.lists import create_list
from newsletter.store.models import Subscriber, Subscription, utcnow

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "dispatch"
SECRET = "test-secret-key-0123456789abcdef"


@dataclass
class FakeDigest:
    """What create_campaign reads from a composed Digest (the real one comes from compose)."""

    subject: str = "The Weekly — issue 1"
    preheader: str = "Three stories"
    html: str = (
        "<html><body><p>Hello *|NAME:reader|*,</p>"
        + "<p style=\"font-family:Arial\">A story about soil, weather and small farms.</p>" * 20
        + '<p><a href="*|WEB_VERSION_URL|*">web</a> · <a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a></p></body></html>'
    )
    text: str = "Hello *|NAME:reader|*,\n\nA story.\n\nUnsubscribe: *|UNSUBSCRIBE_URL|*\n"
    images: list = field(default_factory=list)
    from_address: str = ""
    reply_to: str | None = None
    article_keys: list = field(default_factory=list)


def make_config(url: str, tmp_path: Path, **kw) -> Config:
    base = dict(database_url=url, secret_key=SECRET, base_url="https://news.example.org",
                from_address="The Weekly <news@example.org>", outbox=str(tmp_path / "outbox"),
                retry_base=0.05, retry_max_delay=0.2, max_attempts=5, smtp_timeout=5.0, concurrency=4)
    base.update(kw)
    return Config(**base)


def setup_db(url: str):
    db.upgrade(url)
    return db.get_engine(url)


def add_people(engine, slug: str, n: int, *, status: str = "active", start: int = 0, domain: str = "example.com") -> list[str]:
    """Create list ``slug`` if needed and ``n`` subscribers on it in one go; returns their addresses."""
    from newsletter.store.lists import get_list
    from newsletter.errors import NotFound

    try:
        lst = get_list(engine, slug)
        lid = lst.id
    except NotFound:
        lid = create_list(engine, slug, slug.title()).id
    now = utcnow()
    emails = [f"reader{i}@{domain}" for i in range(start, start + n)]
    with engine.begin() as conn:
        res = []
        for e in emails:
            r = conn.execute(insert(Subscriber.__table__).values(
                email=e, email_key=e, name=f"Reader {e.split('@')[0][6:]}", attributes={"city": "Lyon"},
                created_at=now, updated_at=now))
            res.append(r.inserted_primary_key[0])
        conn.execute(insert(Subscription.__table__), [
            {"subscriber_id": sid, "list_id": lid, "status": status, "created_at": now, "updated_at": now} for sid in res])
    return emails


def make_campaign(engine, config, slugs=("weekly",), **kw):
    from newsletter.dispatch.campaigns import create_campaign

    digest = kw.pop("digest", None) or FakeDigest()
    return create_campaign(engine, digest, list(slugs), config, **kw)
