"""Composing a digest: selection rules, the whole pipeline from sources, and the files it writes."""

from __future__ import annotations

import email
import json
from datetime import datetime, timedelta, timezone
from email import policy

import lxml.html
import pytest

from newsletter.articles.model import Article, Image
from newsletter.compose import (
    ComposeOptions,
    build_message,
    compose,
    embed_relative_assets,
    load_digest,
    parse_since,
    render,
    select,
    write_digest,
)
from newsletter.config import Config
from newsletter.errors import InvalidInput, NotFound, RenderError, SelectionError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def art(title: str, days_ago: float | None, **kw) -> Article:
    kw.setdefault("url", "https://example.org/" + title.lower().replace(" ", "-"))
    published = NOW - timedelta(days=days_ago) if days_ago is not None else None
    return Article(title=title, published=published, summary=f"About {title}.", **kw)


ARTICLES = [
    art("Old harbour", 30, category="City", tags=["harbour"]),
    art("New tram", 1, category="City", tags=["transport", "city"]),
    art("Garden", 3, category="Community", tags=["gardens"]),
    art("Undated", None, category="City"),
    art("Ferry film", 6, category="Film", tags=["harbour", "film"]),
]


def titles(selection):
    return [a.title for a in selection.selected]


# --- selection --------------------------------------------------------------------------------

def test_selection_is_newest_first_with_undated_last():
    assert titles(select(ARTICLES, ComposeOptions(now=NOW))) == ["New tram", "Garden", "Ferry film", "Old harbour", "Undated"]


def test_since_keeps_recent_articles_and_says_why_others_were_skipped():
    s = select(ARTICLES, ComposeOptions(since="7d", now=NOW))
    assert titles(s) == ["New tram", "Garden", "Ferry film"]
    assert ("Old harbour", "older than --since (2026-11-17 12:00 UTC)") in s.skipped
    assert ("Undated", "has no date, so --since cannot place it") in s.skipped


@pytest.mark.parametrize(
    "value, expected",
    [
        ("7d", datetime(2026, 11, 17, 12, tzinfo=timezone.utc)),
        ("24h", datetime(2026, 11, 23, 12, tzinfo=timezone.utc)),
        ("2w", datetime(2026, 11, 10, 12, tzinfo=timezone.utc)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
        ("2026-11-01T08:00:00+01:00", datetime(2026, 11, 1, 7, tzinfo=timezone.utc)),
    ],
)
def test_since_forms(value, expected):
    assert parse_since(value, NOW) == expected


def test_since_date_is_midnight_in_the_configured_zone():
    assert parse_since("2026-11-01", NOW, "Europe/Athens") == datetime(2026, 10, 31, 22, tzinfo=timezone.utc)


def test_unreadable_since_is_a_one_line_selection_error():
    with pytest.raises(SelectionError, match=r"--since 'last tuesday'"):
        select(ARTICLES, ComposeOptions(since="last tuesday", now=NOW))


def test_category_is_case_insensitive():
    assert titles(select(ARTICLES, ComposeOptions(category="city", now=NOW))) == ["New tram", "Old harbour", "Undated"]


def test_tags_match_any_given_tag():
    s = select(ARTICLES, ComposeOptions(tags=["Harbour", "gardens"], now=NOW))
    assert titles(s) == ["Garden", "Ferry film", "Old harbour"]
    assert ("New tram", "has none of the tags gardens, harbour") in s.skipped


def test_limit_keeps_the_newest_and_reports_the_rest():
    s = select(ARTICLES, ComposeOptions(limit=2, now=NOW))
    assert titles(s) == ["New tram", "Garden"]
    assert [w for w, r in s.skipped if r == "over --limit 2"] == ["Ferry film", "Old harbour", "Undated"]


def test_already_sent_keys_are_excluded():
    sent = {ARTICLES[1].key}
    s = select(ARTICLES, ComposeOptions(exclude_keys=sent, now=NOW))
    assert "New tram" not in titles(s)
    assert ("New tram", "already sent in an earlier digest") in s.skipped


TRACKED_VARIANTS = [
    "https://example.org/new-tram?utm_source=rss&utm_medium=feed",
    "https://example.org/new-tram?fbclid=abc",
    "https://example.org/new-tram?gclid=1&mc_cid=2&mc_eid=3",
    "https://example.org/new-tram#comments",
    "https://example.org/new-tram/",
    "http://WWW.Example.org/new-tram",
]


@pytest.mark.parametrize("link", TRACKED_VARIANTS)
def test_a_link_with_tracking_parameters_has_the_same_key_as_without(link):
    assert art("New tram", 1, url=link).key == art("New tram", 1).key == "https://example.org/new-tram"


def test_article_key_keeps_other_query_parameters_and_prefers_the_guid():
    assert art("Page", 1, url="https://example.org/p?id=7&utm_source=x").key == "https://example.org/p?id=7"
    assert art("Page", 1, url="https://example.org/p?id=7").key != art("Page", 1, url="https://example.org/p?id=8").key
    assert art("Page", 1, url="https://example.org/p?utm_source=x", guid="tag:example.org,2026:7").key == "tag:example.org,2026:7"


@pytest.mark.parametrize("link", TRACKED_VARIANTS)
def test_an_article_sent_with_a_tracking_link_is_not_sent_again_without_it_and_vice_versa(link):
    tracked = art("New tram", 1, url=link)
    again = select(ARTICLES, ComposeOptions(exclude_keys={tracked.key}, now=NOW))
    assert ("New tram", "already sent in an earlier digest") in again.skipped
    back = select([tracked, ARTICLES[2]], ComposeOptions(exclude_keys={ARTICLES[1].key}, now=NOW))
    assert titles(back) == ["Garden"]


@pytest.mark.parametrize("link", TRACKED_VARIANTS)
def test_keys_stored_as_raw_urls_still_count_as_sent(link):
    """Digests sent before the key was canonical stored the link as written; both sides are compared canonically."""
    s = select(ARTICLES, ComposeOptions(exclude_keys={link}, now=NOW))
    assert "New tram" not in titles(s)
    assert ("New tram", "already sent in an earlier digest") in s.skipped


def test_guids_that_are_not_urls_are_compared_as_they_are():
    a = art("Guid", 1, url="https://example.org/g", guid="Item-7/")
    with pytest.raises(SelectionError):
        select([a], ComposeOptions(exclude_keys={"Item-7/"}, now=NOW))
    assert titles(select([a], ComposeOptions(exclude_keys={"item-7", "Item-7"}, now=NOW))) == ["Guid"]


def test_empty_selection_is_an_error_that_says_why():
    with pytest.raises(SelectionError) as e:
        select(ARTICLES, ComposeOptions(since="1h", now=NOW))
    assert str(e.value).startswith("no article left to compose: all 5 skipped (")
    assert "\n" not in str(e.value)
    with pytest.raises(SelectionError, match="no articles found"):
        select([], ComposeOptions(now=NOW))


def test_limit_must_be_positive():
    with pytest.raises(SelectionError, match="--limit 0"):
        select(ARTICLES, ComposeOptions(limit=0, now=NOW))


# --- the pipeline from real sources ----------------------------------------------------------

def test_compose_from_markdown_sources(fixtures_dir):
    d = compose([str(fixtures_dir / "compose/good")], Config(), ComposeOptions(since="2026-11-15", now=NOW))
    assert d.found == 2
    assert [a.title for a in d.articles] == ["The Lighthouse Keeper's Last Winter"]
    assert d.skipped == [("The Winter Market Opens Early", "older than --since (2026-11-15 00:00 UTC)")]
    root = lxml.html.fromstring(d.html)
    img = root.xpath("//img[starts-with(@src, 'assets/')]")
    assert img and img[0].get("alt") == "A white lighthouse on a grey rock with waves breaking below"
    # the seed-shaped trailing "below is a video" link became a video entry
    assert root.xpath('//a[@href="https://www.youtube.com/watch?v=aqz-KE-bpKQ"]')
    assert len(d.assets) == 1


def test_one_bad_article_among_good_ones_is_a_warning(fixtures_dir):
    d = compose([str(fixtures_dir / "compose/good"), str(fixtures_dir / "compose/bad/no-title.md")], Config(), ComposeOptions(now=NOW))
    assert len(d.articles) == 2
    assert any("no-title.md" in w and "missing title" in w for w in d.warnings)


# --- files written and read back -------------------------------------------------------------

@pytest.fixture
def digest(fixtures_dir):
    return compose([str(fixtures_dir / "compose/good")], Config(), ComposeOptions(now=NOW))


def test_write_digest_writes_every_file(tmp_path, digest):
    paths = write_digest(digest, tmp_path / "out")
    assert paths["html"].read_text() == digest.html
    assert paths["text"].read_text() == digest.text
    meta = json.loads(paths["json"].read_text())
    assert meta["subject"] == digest.subject and meta["preheader"] == digest.preheader
    assert meta["article_keys"] == [a.key for a in digest.articles]
    assert meta["images"] == []
    asset = digest.assets[0]
    assert (paths["assets"] / asset.filename).read_bytes() == asset.data
    assert f'src="assets/{asset.filename}"' in digest.html


def test_load_digest_round_trips(tmp_path, digest):
    write_digest(digest, tmp_path)
    back = load_digest(tmp_path)
    assert (back.subject, back.preheader, back.html, back.text) == (digest.subject, digest.preheader, digest.html, digest.text)
    assert back.article_keys == digest.article_keys
    assert back.articles[0].published == digest.articles[0].published
    assert back.articles[0].videos == digest.articles[0].videos
    assert back.assets[0].data == digest.assets[0].data
    assert back.from_address == digest.from_address and back.date == digest.date


def test_load_digest_without_html_is_a_one_line_not_found(tmp_path):
    with pytest.raises(NotFound, match=r"digest\.html: no composed digest here"):
        load_digest(tmp_path)


def test_eml_is_a_complete_multipart_alternative_message(tmp_path):
    d = render([art("Tide", 1, image=Image(url="https://example.org/t.jpg", alt="tide"))], Config(), ComposeOptions(now=NOW))
    paths = write_digest(d, tmp_path)
    raw = paths["eml"].read_bytes()
    assert b"\r\n" in raw
    msg = email.message_from_bytes(raw, policy=policy.default)
    for header in ("Subject", "From", "Date", "Message-ID", "MIME-Version"):
        assert msg[header], header
    assert msg["Subject"] == d.subject
    assert msg["From"] == "The Weekly Dispatch <newsletter@example.org>"
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["Date"] == "Tue, 24 Nov 2026 12:00:00 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == d.text
    assert parts[1].get_content().replace("\r\n", "\n") == d.html.replace("\r\n", "\n")


def test_eml_embeds_images_that_digest_html_links_relatively(tmp_path, digest):
    asset = digest.assets[0]
    paths = write_digest(digest, tmp_path)
    assert f'src="assets/{asset.filename}"' in paths["html"].read_text()  # for the browser, next to assets/
    msg = email.message_from_bytes(paths["eml"].read_bytes(), policy=policy.default)
    text, related = msg.get_payload()
    assert related.get_content_type() == "multipart/related"
    html, image = related.get_payload()
    body = html.get_content()
    assert "assets/" not in body and f'src="cid:{asset.filename}@newsletter"' in body
    assert image["Content-ID"] == f"<{asset.filename}@newsletter>"
    assert image.get_payload(decode=True) == asset.data


def test_assets_under_a_public_base_url_stay_links_in_the_eml(tmp_path, fixtures_dir):
    d = compose([str(fixtures_dir / "compose/good")], Config(asset_base_url="https://cdn.example.net/nl"), ComposeOptions(now=NOW))
    assert embed_relative_assets(d) is d
    msg = email.message_from_bytes(write_digest(d, tmp_path)["eml"].read_bytes(), policy=policy.default)
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]
    assert f'src="https://cdn.example.net/nl/{d.assets[0].filename}"' in msg.get_payload()[1].get_content()


def test_embed_images_puts_them_in_multipart_related_as_cid(tmp_path, fixtures_dir):
    d = compose([str(fixtures_dir / "compose/good")], Config(), ComposeOptions(now=NOW, embed_images=True))
    assert not d.assets and len(d.images) == 1
    cid = d.images[0].cid
    assert f'src="cid:{cid}"' in d.html
    paths = write_digest(d, tmp_path)
    msg = email.message_from_bytes(paths["eml"].read_bytes(), policy=policy.default)
    text, related = msg.get_payload()
    assert related.get_content_type() == "multipart/related"
    html, image = related.get_payload()
    assert html.get_content_type() == "text/html"
    assert image.get_content_type() == "image/jpeg"
    assert image["Content-ID"] == f"<{cid}>"
    assert image.get_payload(decode=True) == d.images[0].data
    assert load_digest(tmp_path).images[0].data == d.images[0].data


def test_header_values_with_line_breaks_are_refused(digest):
    digest.subject = "Hello\nBcc: someone@example.com"
    with pytest.raises(InvalidInput, match="Subject: line breaks"):
        build_message(digest)


def test_from_address_with_line_break_is_refused():
    a = art("Tide", 1, image=Image(url="https://example.org/t.jpg", alt="tide"))
    with pytest.raises(InvalidInput, match="from_address: line breaks"):
        render([a], Config(from_address="x@example.org\r\nBcc: y@example.org"), ComposeOptions(now=NOW))


def test_writing_into_a_file_instead_of_a_folder_is_a_one_line_error(tmp_path, digest):
    target = tmp_path / "taken"
    target.write_text("keep me")
    with pytest.raises(RenderError, match="taken: not a directory"):
        write_digest(digest, target)
    assert target.read_text() == "keep me"


def test_compose_from_a_feed_served_over_http_on_loopback(fixtures_dir):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fixtures_dir / "compose"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
        d = compose([url], Config(allow_private_fetch=True), ComposeOptions(since="2026-11-22", now=NOW))
    finally:
        server.shutdown()
        server.server_close()
    assert [a.title for a in d.articles] == ["Tide tables for December"]
    assert d.skipped == [("Ferry timetable changes", "older than --since (2026-11-22 00:00 UTC)")]
    root = lxml.html.fromstring(d.html)
    img = root.xpath('//img[@src="https://example.net/img/tides.jpg"]')
    assert img and img[0].get("width") == "576"
    assert "Ruth Mill" in root.text_content() and "javascript:" not in d.html


def test_load_digest_with_a_damaged_json_is_a_one_line_error(tmp_path, digest):
    write_digest(digest, tmp_path)
    (tmp_path / "digest.json").write_text('{"subject": "x", "images": [{"cid": 1}]}')
    with pytest.raises(RenderError, match=r"digest\.json: malformed"):
        load_digest(tmp_path)
    (tmp_path / "digest.json").write_text("{not json")
    with pytest.raises(RenderError, match=r"digest\.json: malformed") as e:
        load_digest(tmp_path)
    assert "\n" not in str(e.value)


def test_bad_from_address_writes_nothing(tmp_path, fixtures_dir):
    d = compose([str(fixtures_dir / "compose/good")], Config(from_address="not an address"), ComposeOptions(now=NOW))
    with pytest.raises(InvalidInput, match="from_address 'not an address': not an email address"):
        write_digest(d, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_template_without_an_unsubscribe_link_composes_with_a_warning(tmp_path, fixtures_dir):
    import shutil

    custom = tmp_path / "tpl"
    shutil.copytree(fixtures_dir / "compose/templates/custom", custom)
    mjml = custom / "digest.mjml"
    mjml.write_text(mjml.read_text().replace('<a href="{{ unsubscribe_url }}">Leave</a>', ""))
    d = compose([str(fixtures_dir / "compose/good")], Config(), ComposeOptions(now=NOW, template_dir=str(custom)))
    assert "*|UNSUBSCRIBE_URL|*" not in d.html
    assert [w for w in d.warnings if "UNSUBSCRIBE_URL" in w] == [
        f"{mjml}: the output has no *|UNSUBSCRIBE_URL|* (use {{{{ unsubscribe_url }}}}); dispatch will refuse to send it"
    ]
    # The shipped templates have it: no such warning.
    assert not [w for w in compose([str(fixtures_dir / "compose/good")], Config(), ComposeOptions(now=NOW)).warnings if "UNSUBSCRIBE" in w]


def test_written_files_are_readable_by_the_web_server_not_0600(tmp_path, digest):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    paths = write_digest(digest, tmp_path / "out")
    files = [paths[k] for k in ("html", "text", "eml", "json")] + list(paths["assets"].iterdir())
    assert len(files) == 5
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
        if umask == 0o022:
            assert stat.S_IMODE(f.stat().st_mode) == 0o644


def test_card_dates_show_the_day_in_the_articles_own_offset():
    tokyo = timezone(timedelta(hours=9))
    written = Article(title="Kyoto trains", url="https://example.org/kyoto", published=datetime(2026, 11, 19, 6, 30, tzinfo=tokyo))
    utc_feed = Article(title="Feed item", url="https://example.org/feed-item", published=datetime(2026, 11, 18, 23, 30, tzinfo=timezone.utc))
    d = render([written, utc_feed], Config(timezone="Europe/Lisbon"), ComposeOptions(now=NOW))
    assert "19 November 2026" in d.text  # what the author wrote, though it is still the 18th in Lisbon
    assert "18 November 2026" in d.text  # a UTC date (feeds normalise to it) is shown in the configured zone
    d = render([utc_feed], Config(timezone="Asia/Tokyo"), ComposeOptions(now=NOW))
    assert "19 November 2026" in d.text and "18 November 2026" not in d.text


def test_a_feed_date_keeps_the_offset_it_was_written_with():
    from newsletter.articles.feeds import parse_feed

    xml = ('<?xml version="1.0"?><rss version="2.0"><channel><title>S</title><link>https://example.org/</link>'
           "<item><title>x</title><link>https://example.org/x</link><pubDate>Thu, 19 Nov 2026 06:30:00 +0900</pubDate></item>"
           "</channel></rss>").encode()
    a = parse_feed(xml, "feed.xml", Config())[0]
    assert a.published == datetime(2026, 11, 18, 21, 30, tzinfo=timezone.utc)
    assert a.published.utcoffset() == timedelta(hours=9)


def test_a_video_without_a_title_is_just_play_video_on_youtube_and_images_have_no_height_auto():
    from newsletter.articles.model import Video

    v = Video("https://www.youtube.com/watch?v=aqz-KE-bpKQ", "youtube", "aqz-KE-bpKQ", "https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg", None)
    a = Article(title="Cranes", url="https://example.org/cranes", published=NOW, videos=[v],
                image=Image(url="https://example.org/cranes.jpg", alt="Cranes at dusk"))
    d = render([a], Config(), ComposeOptions(now=NOW))
    root = lxml.html.fromstring(d.html)
    assert 'height="auto"' not in d.html
    links = [" ".join(x.text_content().split()) for x in root.xpath('//a[@href="https://www.youtube.com/watch?v=aqz-KE-bpKQ"]')]
    assert any(t.endswith("Play video on YouTube") for t in links), links
    assert not any("Play video on YouTube:" in t for t in links), links
    assert root.xpath('//img[@alt="Play video on YouTube: Cranes"]')  # the picture's alt names the article
    assert "Video on YouTube\nhttps://www.youtube.com/watch?v=aqz-KE-bpKQ" in d.text


def test_the_compose_benchmark_turns_the_vimeo_lookup_off():
    """benchmarks/compose.py times source parsing: a request to vimeo.com for the Vimeo sample
    article would time the network (on threads its CPU column does not see), not the code."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("compose_benchmark", REPO / "benchmarks" / "compose.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.bench_config().vimeo_oembed_url == ""
