"""A web version per reader: each copy's "view in browser" link is a signed /view/TOKEN that shows
that reader's copy (their name, not another's; no tracking; the archive's CSP), while the public
archive keeps the anonymous copy. Forged tokens and erased readers get a 404. Real campaign sent
to a real SMTP server (aiosmtpd), the real web app, SQLite and PostgreSQL; no mocks."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from fastapi.testclient import TestClient

from dispatch_helpers import FakeDigest, add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.personalize import CampaignContent, MessageFactory, Recipient
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import InvalidToken
from newsletter.store import leaving, tokens
from newsletter.store.secret import secret_key
from newsletter.web import create_app
from smtp_server import SMTPTestServer

BASE = "https://news.example.org"
_VIEW = re.compile(r"https://news\.example\.org/view/([A-Za-z0-9_-]+)")


@pytest.fixture
def sent(db_url, tmp_path):
    """A campaign sent to two readers of 'weekly' through a real SMTP server: their view links."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path, track="opens,clicks")
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config, digest=FakeDigest(html=FakeDigest().html.replace(
        "<p>Hello", "<p>City: *|ATTR:city|*, mail *|EMAIL|*</p><p>Hello")))
    with SMTPTestServer() as srv:
        send_campaign(engine, c.id, config, smtp=srv.url)
        msgs = [email.message_from_bytes(m.data, policy=policy.default) for m in srv.received()]
    links = {}
    for m in msgs:
        html = m.get_body(("html",)).get_content()
        text = m.get_body(("plain",)).get_content()
        (token,) = set(_VIEW.findall(html))
        links[m["To"].addresses[0].addr_spec] = token
        assert "/archive/" not in html and "/archive/" not in text
        assert "/o/" in html  # the email is tracked...
    yield engine, config, c, links
    engine.dispose()


def test_each_reader_s_view_link_shows_their_own_copy(sent):
    engine, config, c, links = sent
    assert set(links) == {"reader0@example.com", "reader1@example.com"} and len(set(links.values())) == 2
    with TestClient(create_app(config, engine), base_url=BASE) as client:
        page = client.get(f"/view/{links['reader0@example.com']}")
        archive = client.get(f"/archive/{c.id}/issue")
    assert page.status_code == 200
    assert "Hello Reader 0," in page.text and "Reader 1" not in page.text
    assert "reader0@example.com" in page.text and "reader1@example.com" not in page.text and "City: Lyon" in page.text
    assert "*|" not in page.text
    assert "/unsubscribe/" in page.text  # their own signed link: the page is theirs
    assert "/o/" not in page.text and "/r/" not in page.text  # ...its web version is not
    assert page.headers["content-security-policy"].startswith(archive.headers["content-security-policy"].split(" frame-ancestors")[0])
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "private, no-store"
    # the public archive keeps the anonymous copy
    assert archive.status_code == 200 and "Reader 0" not in archive.text and "reader0@example.com" not in archive.text


def test_forged_tokens_and_erased_readers_get_a_404(sent):
    engine, config, c, links = sent
    good = links["reader1@example.com"]
    secret = secret_key(config)
    # the token's fields name this campaign and reader
    assert tokens.verify_view_token(secret, good)[0] == c.id
    other = tokens.view_token(tokens.view_key(b"another-secret-0123456789abcdef"), c.id, 1)
    another_kind = tokens.open_token(secret, c.id, 1)
    flipped = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    with TestClient(create_app(config, engine), base_url=BASE) as client:
        for bad in (other, another_kind, flipped, "x", "A" * 300):
            r = client.get(f"/view/{bad}")
            assert r.status_code == 404, bad
            assert "Reader" not in r.text
        assert client.get(f"/view/{good}").status_code == 200
        leaving.erase_subscriber(engine, "reader1@example.com")
        gone = client.get(f"/view/{good}")
    assert gone.status_code == 404 and "Reader 1" not in gone.text


def test_a_view_token_costs_one_hmac_and_the_factory_uses_it_only_for_stored_readers():
    key = tokens.view_key(b"k" * 32)
    t = tokens.view_token(key, 7, 42)
    assert tokens.verify_view_token(b"k" * 32, t) == (7, 42)
    with pytest.raises(InvalidToken):
        tokens.verify_view_token(b"j" * 32, t)
    content = CampaignContent(campaign_id=7, subject="S", from_address="n@example.org",
                              html='<a href="*|WEB_VERSION_URL|*">web</a>', text="web: *|WEB_VERSION_URL|*")
    calls: list[int] = []

    def view(sid: int) -> str:
        calls.append(sid)
        return tokens.view_token(key, 7, sid)

    f = MessageFactory(content, base_url=BASE, unsubscribe_token=lambda s, lid: "u", view_token=view)
    data = f.build(Recipient(42, 1, "a@example.org")).data.decode()
    assert f"{BASE}/view/{t}" in data.replace("=\r\n", "")
    assert calls == [42]  # one HMAC per copy (text and HTML share it; the key is derived once per campaign)
    anon = f.build(Recipient(0, 1, "test@example.org")).data.decode().replace("=\r\n", "")
    # a test send to no stored reader: the anonymous copy, signed (the campaign may never be published)
    assert f"{BASE}/view/{tokens.view_token(key, 7, 0)}" in anon and "/archive/" not in anon
