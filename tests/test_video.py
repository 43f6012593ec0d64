"""YouTube and Vimeo links in every form → Video(id, canonical URL, provider thumbnail)."""

from __future__ import annotations

import pytest

from newsletter.articles.video import find_videos, parse_video_url, split_trailing_video

ID = "r4ZMTqwdr9U"


@pytest.mark.parametrize(
    "url",
    [
        f"https://www.youtube.com/watch?v={ID}",
        f"https://youtube.com/watch?feature=share&v={ID}&list=PL123",
        f"http://m.youtube.com/watch?v={ID}",
        f"https://music.youtube.com/watch?v={ID}",
        f"https://youtu.be/{ID}",
        f"https://youtu.be/{ID}?si=abcdef",
        f"https://www.youtube.com/embed/{ID}?rel=0&autoplay=1",
        f"https://www.youtube-nocookie.com/embed/{ID}",
        f"https://www.youtube.com/shorts/{ID}",
        f"https://www.youtube.com/live/{ID}?feature=shared",
        f"https://www.youtube.com/v/{ID}?version=3",
        f"//www.youtube.com/embed/{ID}",
    ],
)
def test_every_youtube_url_form_gives_the_id_canonical_url_and_thumbnail(url):
    v = parse_video_url(url)
    assert (v.provider, v.id) == ("youtube", ID)
    assert v.url == f"https://www.youtube.com/watch?v={ID}"
    assert v.thumbnail_url == f"https://i.ytimg.com/vi/{ID}/hqdefault.jpg"


def test_youtube_start_time_is_kept():
    assert parse_video_url(f"https://youtu.be/{ID}?t=42").url == f"https://www.youtube.com/watch?v={ID}&t=42"
    assert parse_video_url(f"https://www.youtube.com/watch?v={ID}&t=1m30s").url.endswith("&t=1m30s")


@pytest.mark.parametrize(
    "url, vid",
    [
        ("https://vimeo.com/76979871", "76979871"),
        ("https://vimeo.com/channels/staff/76979871", "76979871"),
        ("https://vimeo.com/groups/shortfilms/videos/76979871", "76979871"),
        ("https://player.vimeo.com/video/76979871?h=abc&badge=0", "76979871"),
        ("https://vimeo.com/76979871/1a2b3c4d5e", "76979871"),
    ],
)
def test_vimeo_url_forms(url, vid):
    v = parse_video_url(url)
    assert (v.provider, v.id, v.url) == ("vimeo", vid, f"https://vimeo.com/{vid}")
    assert v.thumbnail_url is None  # Vimeo has no thumbnail URL derivable without its API


@pytest.mark.parametrize(
    "url",
    [
        "https://www.youtube.com/watch?v=short",
        "https://www.youtube.com/channel/UC123",
        "https://www.youtube.com/",
        "https://example.com/watch?v=r4ZMTqwdr9U",
        "https://notyoutube.com/watch?v=r4ZMTqwdr9U",
        "https://vimeo.com/about",
        "javascript:alert(1)",
        "",
        "not a url",
    ],
)
def test_other_links_are_not_videos(url):
    assert parse_video_url(url) is None


def test_find_videos_in_links_embeds_and_bare_urls_in_order_without_duplicates():
    html = (
        f'<p>Watch <a href="https://youtu.be/{ID}">this</a> or https://vimeo.com/123456.</p>'
        '<iframe src="https://www.youtube.com/embed/abcdefghijk"></iframe>'
        f'<p>Again: https://www.youtube.com/watch?v={ID}&amp;feature=x</p>'
    )
    assert [(v.provider, v.id) for v in find_videos(html)] == [("youtube", ID), ("vimeo", "123456"), ("youtube", "abcdefghijk")]


def test_seed_style_trailing_block_becomes_a_video_with_its_title():
    paragraphs = [
        "The involvement of these forces is more than a military action.",
        "BELOW IS A VIDEO FROM SKY NEWS",
        "NATO confirms North Korean troops are being sent to Russia to fight Ukraine",
        f"https://www.youtube.com/watch?v={ID}",
    ]
    rest, v = split_trailing_video(paragraphs)
    assert rest == paragraphs[:1]
    assert (v.id, v.title) == (ID, "NATO confirms North Korean troops are being sent to Russia to fight Ukraine")


def test_trailing_url_with_only_a_lead_in_uses_the_lead_in_as_title_unless_shouted():
    rest, v = split_trailing_video(["Body.", "Watch the interview:", f"https://youtu.be/{ID}"])
    assert rest == ["Body."] and v.title == "Watch the interview"
    rest, v = split_trailing_video(["Body.", "BELOW IS A VIDEO", f"https://youtu.be/{ID}"])
    assert rest == ["Body."] and v.title is None


def test_a_bare_trailing_video_url_after_a_sentence_keeps_the_sentence():
    rest, v = split_trailing_video(["The report ends here.", f"https://youtu.be/{ID}"])
    assert rest == ["The report ends here."] and v.id == ID and v.title is None


def test_no_trailing_video_leaves_paragraphs_alone():
    paragraphs = ["One.", "https://example.com/not-a-video"]
    assert split_trailing_video(paragraphs) == (paragraphs, None)
    assert split_trailing_video(["Text with https://youtu.be/r4ZMTqwdr9U inside."])[1] is None


# --- Vimeo thumbnails from oEmbed, looked up once per load against a real server on 127.0.0.1 ---

import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import lxml.html  # noqa: E402

from newsletter.articles import load_sources  # noqa: E402
from newsletter.compose import ComposeOptions, compose  # noqa: E402
from newsletter.config import Config, load_config  # noqa: E402
from test_fetch import server  # noqa: E402,F401  (the loopback HTTP server fixture)

VIMEO = "https://vimeo.com/76979871"
THUMB = "https://i.vimeocdn.com/video/452001751-8216e1a5_640.jpg"
OEMBED = json.dumps({"type": "video", "title": "The Night Ferry", "thumbnail_url": THUMB, "width": 640}).encode()


@pytest.fixture(autouse=True)
def _fresh_oembed_cache():
    """Each test starts with no remembered lookups (a later test's server may get a port an
    earlier one had, which would make the cache key the same)."""
    from newsletter.articles import video

    video._oembed_cache.clear()
    yield
    video._oembed_cache.clear()


def _article(folder, name, body, date="2026-11-20"):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"---\ntitle: {name[:-3].title()}\ndate: {date}\n---\n\n{body}\n", encoding="utf-8")


def _oembed_requests(server):
    return [urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)["url"] for p, _ in server.seen if p.startswith("/oembed")]


def _cfg(server, **kw):
    return Config(site_url="https://news.example.org", vimeo_oembed_url=server.url + "/oembed", allow_private_fetch=True, **kw)


def test_a_vimeo_video_gets_its_thumbnail_and_title_from_oembed_and_the_card_shows_it(server, tmp_path):
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    _article(tmp_path / "a", "ferry.md", f"Our film about the last crossing.\n\n{VIMEO}")
    result = load_sources([str(tmp_path / "a")], _cfg(server))
    [video] = result.articles[0].videos
    assert (video.provider, video.thumbnail_url, video.title) == ("vimeo", THUMB, "The Night Ferry")
    assert result.warnings == []
    [(path, headers)] = server.seen
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(path).query) == {"url": [VIMEO]}
    assert headers["User-Agent"].startswith("newsletter/") and "news.example.org" in headers["User-Agent"]

    digest = compose([str(tmp_path / "a")], _cfg(server), ComposeOptions(now=datetime(2026, 11, 21, tzinfo=timezone.utc)))
    imgs = lxml.html.fromstring(digest.html).xpath(f'//img[@src="{THUMB}"]')
    assert imgs and imgs[0].get("alt") == "Play video on Vimeo: The Night Ferry"
    assert imgs[0].xpath(f'ancestor::a[@href="{VIMEO}"]')  # the picture links to the video


def test_one_lookup_per_video_per_load_however_many_articles_link_it(server, tmp_path):
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    _article(tmp_path / "a", "one.md", f"See {VIMEO} and https://player.vimeo.com/video/76979871?h=x.", "2026-11-20")
    _article(tmp_path / "a", "two.md", "Again: https://vimeo.com/channels/staff/76979871 and https://vimeo.com/1234567", "2026-11-19")
    result = load_sources([str(tmp_path / "a")], _cfg(server))
    assert sorted(_oembed_requests(server)) == [["https://vimeo.com/1234567"], [VIMEO]]
    ferry = [v for a in result.articles for v in a.videos if v.url == VIMEO]
    assert len(ferry) == 2 and all(v.thumbnail_url == THUMB for v in ferry)


def test_a_title_given_by_the_source_is_kept(server, tmp_path):
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    (tmp_path / "f.md").write_text(f"---\ntitle: Film\nvideo:\n  url: {VIMEO}\n  title: Our own title\n---\n\nBody.\n")
    [article] = load_sources([str(tmp_path / "f.md")], _cfg(server)).articles
    assert (article.videos[0].title, article.videos[0].thumbnail_url) == ("Our own title", THUMB)


def test_pages_get_the_same_lookup(server, fixtures_dir):
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    server.routes["/weaving"] = (200, {"Content-Type": "text/html; charset=utf-8"}, (fixtures_dir / "pages" / "videos.html").read_bytes())
    [article] = load_sources([server.url + "/weaving"], _cfg(server)).articles
    vimeo = [v for v in article.videos if v.provider == "vimeo"]
    assert vimeo and vimeo[0].thumbnail_url == THUMB
    assert _oembed_requests(server) == [[VIMEO]]


def test_a_feed_entry_with_its_own_vimeo_thumbnail_is_not_looked_up(server, tmp_path):
    rss = (
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>T</title>'
        "<link>https://example.org/</link><item><title>Harbour at dusk</title><link>https://vimeo.com/76979871</link>"
        '<media:thumbnail url="https://i.vimeocdn.com/video/own_640.jpg"/></item></channel></rss>'
    )
    (tmp_path / "feed.xml").write_text(rss)
    [article] = load_sources([str(tmp_path / "feed.xml")], _cfg(server)).articles
    assert article.videos[0].thumbnail_url == "https://i.vimeocdn.com/video/own_640.jpg"
    assert server.seen == []


_RELEASE = threading.Event()  # set at the end of each test: the slow handler then returns at once


def _slow(handler):
    _RELEASE.wait(10)  # far longer than the 0.3 s timeout
    return 200, {"Content-Type": "application/json"}, OEMBED


@pytest.mark.parametrize(
    "route, problem",
    [
        ((404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"), "oEmbed HTTP 404"),
        ((200, {"Content-Type": "application/json"}, b"<html>not json"), "oEmbed answer is not JSON"),
        ((200, {"Content-Type": "application/json"}, b"[1, 2]"), "oEmbed answer is not a JSON object"),
        ((200, {"Content-Type": "application/json"}, b'{"title": "No picture"}'), "oEmbed answer has no thumbnail_url"),
        ((200, {"Content-Type": "application/json"}, b'{"thumbnail_url": "javascript:alert(1)"}'), "is not an http(s) URL"),
        ((200, {"Content-Type": "application/json"}, b'{"thumbnail_url": 42}'), "oEmbed answer has no thumbnail_url"),
        (_slow, "oEmbed timed out after 0.3 s"),
    ],
    ids=["404", "garbage", "not-an-object", "no-thumbnail", "javascript-thumbnail", "number-thumbnail", "slow"],
)
def test_a_failed_lookup_is_one_warning_and_the_load_succeeds(server, tmp_path, route, problem):
    server.routes["/oembed"] = route
    _article(tmp_path / "a", "ferry.md", f"Film: {VIMEO}")
    _RELEASE.clear()
    started = time.monotonic()
    try:
        result = load_sources([str(tmp_path / "a")], _cfg(server, fetch_timeout=0.3), strict=True)
        assert time.monotonic() - started < 8  # the slow server (10 s) was not waited for
    finally:
        _RELEASE.set()
    [article] = result.articles
    assert article.videos[0].thumbnail_url is None
    [warning] = result.warnings
    assert warning.startswith(f"{VIMEO}: no Vimeo thumbnail (") and problem in warning and "\n" not in warning


def test_the_card_without_a_looked_up_thumbnail_still_links_the_video(server, tmp_path):
    _article(tmp_path / "a", "ferry.md", f"Film: {VIMEO}")  # no /oembed route: 404
    digest = compose([str(tmp_path / "a")], _cfg(server), ComposeOptions(now=datetime(2026, 11, 21, tzinfo=timezone.utc)))
    root = lxml.html.fromstring(digest.html)
    assert root.xpath(f'//a[@href="{VIMEO}"]') and not root.xpath('//img[contains(@src, "vimeocdn")]')
    assert any(w.startswith(f"{VIMEO}: no Vimeo thumbnail (oEmbed HTTP 404") for w in digest.warnings)


def test_a_successful_lookup_is_reused_for_a_day_by_the_same_process(server, tmp_path, monkeypatch):
    from newsletter.articles import video

    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    _article(tmp_path / "a", "ferry.md", f"Film: {VIMEO}")
    for _ in range(3):  # e.g. a worker or the web preview composing again and again
        [article] = load_sources([str(tmp_path / "a")], _cfg(server)).articles
        assert (article.videos[0].thumbnail_url, article.videos[0].title) == (THUMB, "The Night Ferry")
    assert _oembed_requests(server) == [[VIMEO]]

    monkeypatch.setattr(video, "OEMBED_TTL", -1)  # as if a day had passed: every entry is stale
    load_sources([str(tmp_path / "a")], _cfg(server))
    assert _oembed_requests(server) == [[VIMEO], [VIMEO]]


def test_a_failed_lookup_is_not_remembered(server, tmp_path):
    _article(tmp_path / "a", "ferry.md", f"Film: {VIMEO}")  # no /oembed route yet: 404
    assert load_sources([str(tmp_path / "a")], _cfg(server)).articles[0].videos[0].thumbnail_url is None
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    result = load_sources([str(tmp_path / "a")], _cfg(server))
    assert result.articles[0].videos[0].thumbnail_url == THUMB and result.warnings == []
    assert len(_oembed_requests(server)) == 2


def test_an_empty_vimeo_oembed_url_makes_no_request(server, tmp_path):
    server.routes["/oembed"] = (200, {"Content-Type": "application/json"}, OEMBED)
    _article(tmp_path / "a", "ferry.md", f"Film: {VIMEO}")
    result = load_sources([str(tmp_path / "a")], Config(vimeo_oembed_url=""))
    assert result.articles[0].videos[0].thumbnail_url is None and result.warnings == []
    assert load_config(environ={"NEWSLETTER_VIMEO_OEMBED_URL": ""}).vimeo_oembed_url == ""
    toml = tmp_path / "newsletter.toml"
    toml.write_text('vimeo_oembed_url = ""\n')
    cfg = load_config(toml, environ={})
    assert cfg.vimeo_oembed_url == ""
    load_sources([str(tmp_path / "a")], cfg)
    assert server.seen == []


def test_the_default_endpoint_is_vimeos():
    assert Config().vimeo_oembed_url == "https://vimeo.com/api/oembed.json"
