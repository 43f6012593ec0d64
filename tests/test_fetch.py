"""fetch() and URL sources against a real HTTP server on 127.0.0.1 (no mocks, nothing leaves the machine)."""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsletter import __version__
from newsletter.articles import load_sources
from newsletter.articles.fetch import fetch as _fetch, user_agent
from newsletter.articles.netpolicy import FetchPolicy
from newsletter.config import Config
from newsletter.errors import SourceError

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
RSS = (FEEDS / "rss2.xml").read_bytes()


class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        type(self).seen.append((self.path, dict(self.headers)))
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, headers, body = route(self) if callable(route) else route
        self.send_response(status)
        for k, v in headers.items():
            if v is not None:  # None: leave the header out (e.g. no Content-Length, body ends at close)
                self.send_header(k, v)
        if body is not None and "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass


@pytest.fixture
def server():
    """A threaded HTTP server on a free loopback port; ``server.routes[path] = (status, headers, body)``."""

    class H(Handler):
        routes = {}
        seen = []

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.routes = H.routes
    httpd.seen = H.seen
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


# The test server is on 127.0.0.1, which fetches refuse by default: these tests turn the switch on.
LOOPBACK_OK = FetchPolicy(allow_private=True)


def fetch(url, **kw):
    return _fetch(url, policy=LOOPBACK_OK, **kw)


def cfg(**kw) -> Config:
    return Config(site_url="https://news.example.org", allow_private_fetch=True, **kw)


def cli_env() -> dict:
    import os

    return {**os.environ, "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true"}


def test_fetch_returns_body_type_charset_and_sends_a_clear_user_agent(server):
    server.routes["/feed"] = (200, {"Content-Type": "application/rss+xml; charset=UTF-8"}, RSS)
    got = fetch(server.url + "/feed", timeout=5, max_bytes=1_000_000, user_agent_string=user_agent("https://news.example.org"))
    assert got.content == RSS
    assert (got.content_type, got.charset) == ("application/rss+xml", "utf-8")
    assert got.final_url == server.url + "/feed"
    assert server.seen[-1][1]["User-Agent"] == f"newsletter/{__version__} (+https://news.example.org)"


def test_a_feed_loads_by_url_and_relative_links_resolve_against_the_feed_url(server):
    server.routes["/news/feed"] = (200, {"Content-Type": "application/rss+xml"}, RSS)
    result = load_sources([server.url + "/news/feed"], cfg())
    assert [a.title for a in result.articles] == ["Cranes & Containers: A Busy Week", "Ferry timetable changes", "Only a tracking pixel here"]
    first = result.articles[0]
    assert first.source == server.url + "/news/feed"
    assert first.url == server.url + "/2026/11/cranes"  # "/2026/11/cranes" in the feed, resolved against where it came from
    assert f'src="{server.url}/images/cranes-inline.jpg"' in first.body
    assert result.articles[1].url == "https://gazette.example.com/2026/11/ferry"  # absolute links untouched


def test_redirects_are_followed_and_final_url_reported(server):
    server.routes["/old"] = (301, {"Location": "/middle"}, b"")
    server.routes["/middle"] = (302, {"Location": server.url + "/feed"}, b"")
    server.routes["/feed"] = (200, {"Content-Type": "application/xml"}, RSS)
    got = fetch(server.url + "/old", timeout=5, max_bytes=1_000_000)
    assert got.final_url == server.url + "/feed" and got.content == RSS


def test_redirect_loop_is_an_error_naming_the_url(server):
    server.routes["/a"] = (302, {"Location": "/b"}, b"")
    server.routes["/b"] = (302, {"Location": "/a"}, b"")
    with pytest.raises(SourceError, match=r"/a: redirect loop"):
        fetch(server.url + "/a", timeout=5, max_bytes=1000)


def test_too_many_redirects_is_an_error(server):
    for i in range(10):
        server.routes[f"/r{i}"] = (302, {"Location": f"/r{i + 1}"}, b"")
    with pytest.raises(SourceError, match=r"/r0: too many redirects \(more than 3\)"):
        fetch(server.url + "/r0", timeout=5, max_bytes=1000, max_redirects=3)


def test_http_404_is_an_error_naming_the_url(server):
    with pytest.raises(SourceError) as e:
        load_sources([server.url + "/missing.xml"], cfg())
    assert str(e.value) == f"{server.url}/missing.xml: HTTP 404 Not Found"


def test_timeout_is_an_error(server):
    release = threading.Event()

    def slow(handler):
        release.wait(10)  # far longer than the 0.3 s timeout; set when the test ends
        return 200, {"Content-Type": "application/xml"}, RSS

    server.routes["/slow"] = slow
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"/slow: timed out after 0.3 s"):
            load_sources([server.url + "/slow"], cfg(fetch_timeout=0.3))
        assert time.monotonic() - started < 8  # gave up long before the server (10 s) answered
    finally:
        release.set()


def test_size_cap_by_content_length_and_by_streamed_bytes(server):
    server.routes["/big"] = (200, {"Content-Type": "application/xml"}, b"x" * 5000)

    server.routes["/stream"] = (200, {"Content-Type": "application/xml", "Content-Length": None}, b"y" * 5000)
    with pytest.raises(SourceError, match=r"/big: too large: 5000 bytes \(limit 1000\)"):
        fetch(server.url + "/big", timeout=5, max_bytes=1000)
    with pytest.raises(SourceError, match=r"/stream: too large: more than 1000 bytes"):
        fetch(server.url + "/stream", timeout=5, max_bytes=1000)
    with pytest.raises(SourceError, match=r"/big: too large"):
        load_sources([server.url + "/big"], cfg(fetch_max_bytes=1000))


def test_size_cap_applies_to_decompressed_gzip_bodies(server):
    bomb = gzip.compress(b"<rss>" + b" " * 200_000)
    server.routes["/gz"] = (200, {"Content-Type": "application/xml", "Content-Encoding": "gzip"}, bomb)
    with pytest.raises(SourceError, match=r"/gz: too large: more than 10000 bytes"):
        fetch(server.url + "/gz", timeout=5, max_bytes=10_000)
    server.routes["/ok.gz"] = (200, {"Content-Type": "application/xml", "Content-Encoding": "gzip"}, gzip.compress(RSS))
    assert fetch(server.url + "/ok.gz", timeout=5, max_bytes=1_000_000).content == RSS


def test_non_feed_content_is_an_error_naming_the_url(server):
    server.routes["/notes"] = (200, {"Content-Type": "text/plain"}, b"Just some words, no feed here.\n")
    server.routes["/blob"] = (200, {"Content-Type": "application/octet-stream"}, bytes(range(256)))
    server.routes["/sitemap"] = (200, {"Content-Type": "application/xml"}, (FEEDS / "not-a-feed.xml").read_bytes())
    with pytest.raises(SourceError, match=r"/notes: not a recognised source"):
        load_sources([server.url + "/notes"], cfg())
    with pytest.raises(SourceError, match=r"/blob: not a recognised source: a binary file"):
        load_sources([server.url + "/blob"], cfg())
    with pytest.raises(SourceError, match=r"/sitemap: not an RSS, Atom or RDF feed"):
        load_sources([server.url + "/sitemap"], cfg())


def test_charset_from_the_http_header_decodes_the_feed(server):
    body = '<rss version="2.0"><channel><title>T</title><item><title>Паром</title><link>https://ru.example.com/p</link></item></channel></rss>'
    server.routes["/ru"] = (200, {"Content-Type": "application/rss+xml; charset=windows-1251"}, body.encode("cp1251"))
    assert load_sources([server.url + "/ru"], cfg()).articles[0].title == "Паром"


def test_refused_connection_and_unsupported_schemes_are_errors():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match=rf"127.0.0.1:{port}/feed: connection refused"):
        fetch(f"http://127.0.0.1:{port}/feed", timeout=2, max_bytes=1000)
    for bad in ("file:///etc/passwd", "ftp://example.com/x"):
        with pytest.raises(SourceError, match="only http:// and https:// URLs"):
            fetch(bad, timeout=1, max_bytes=10)


def test_redirect_to_a_non_http_scheme_is_refused(server):
    server.routes["/sneaky"] = (302, {"Location": "file:///etc/passwd"}, b"")
    with pytest.raises(SourceError, match=r"/sneaky: redirected to a non-HTTP URL"):
        fetch(server.url + "/sneaky", timeout=5, max_bytes=1000)


def test_a_list_of_urls_fetches_each_and_skips_a_dead_one_with_a_warning(server, tmp_path):
    server.routes["/rss"] = (200, {"Content-Type": "application/rdf+xml"}, (FEEDS / "rss1-rdf.xml").read_bytes())
    server.routes["/atom"] = (200, {"Content-Type": "application/atom+xml"}, (FEEDS / "atom.xml").read_bytes())
    listing = tmp_path / "feeds.txt"
    listing.write_text(f"# our feeds\n{server.url}/rss\n\n{server.url}/atom   # the blog\n{server.url}/gone\n")
    result = load_sources([str(listing)], cfg())
    titles = {a.title for a in result.articles}
    assert titles == {"Distro Weekly, Issue 12", "Bugs & Bounties in 2026", "Plain text title"}
    assert any(f"{server.url}/gone: HTTP 404" in w and str(listing) in w for w in result.warnings)
    with pytest.raises(SourceError, match="/gone: HTTP 404"):
        load_sources([str(listing)], cfg(), strict=True)


def test_a_list_of_urls_where_every_url_fails_is_an_error(server, tmp_path):
    listing = tmp_path / "dead.txt"
    listing.write_text(f"{server.url}/x\n{server.url}/y\n")
    with pytest.raises(SourceError, match=r"dead.txt: none of its 2 URL\(s\) could be read"):
        load_sources([str(listing)], cfg())


def test_cli_reads_a_feed_by_url(server):
    server.routes["/feed"] = (200, {"Content-Type": "application/rss+xml"}, RSS)
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "articles", server.url + "/feed", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=cli_env(),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["title"] == "Cranes & Containers: A Busy Week"
    assert "skipped" in r.stderr and "No link at all" in r.stderr


def test_cli_unreachable_url_is_a_one_line_error(server):
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "articles", server.url + "/nothing"],
        capture_output=True, text=True, timeout=60, env=cli_env(),
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {server.url}/nothing: HTTP 404 Not Found"


def test_markdown_by_url_resolves_its_image_against_the_url(server):
    server.routes["/posts/2026-11-01-quay.md"] = (200, {"Content-Type": "text/markdown"}, b"---\ntitle: Quay\nimage: img/quay.jpg\n---\nWords on the quay.")
    a = load_sources([server.url + "/posts/2026-11-01-quay.md"], cfg()).articles[0]
    assert a.title == "Quay" and a.image.url == server.url + "/posts/img/quay.jpg"
    assert a.url == "https://news.example.org/quay"
    assert a.source == server.url + "/posts/2026-11-01-quay.md"


PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Night cranes | Harbour Gazette</title>"
    "<meta property='og:site_name' content='Harbour Gazette'><link rel='canonical' href='/2026/11/night-cranes'></head>"
    "<body><article><h1>Night cranes</h1><p>" + "The cranes worked until dawn while three ships waited in the roads. " * 20 + "</p></article></body></html>"
).encode()


def test_an_html_page_by_url_and_in_a_url_list_goes_to_the_page_parser(server, tmp_path):
    server.routes["/page"] = (200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)
    server.routes["/rss"] = (200, {"Content-Type": "application/rss+xml"}, (FEEDS / "rss1-rdf.xml").read_bytes())
    a = load_sources([server.url + "/page"], cfg()).articles[0]
    assert a.title == "Night cranes"
    listing = tmp_path / "mixed.txt"
    listing.write_text(f"{server.url}/page\n{server.url}/rss\n")
    titles = [a.title for a in load_sources([str(listing)], cfg()).articles]
    assert sorted(titles) == ["Distro Weekly, Issue 12", "Night cranes"]
