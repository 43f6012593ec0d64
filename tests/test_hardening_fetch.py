"""Issue 11, items 5 and 6: what a fetch may connect to, and how long it may take.

Real servers on loopback (127.0.0.1 and 127.0.0.2; Linux answers on all of 127/8). Since
fetches refuse loopback by default, a server a test *wants* reached is allowed explicitly
through ``fetch_allow_networks`` or ``allow_private_fetch``.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsletter.articles import load_sources
from newsletter.articles.fetch import fetch
from newsletter.articles.netpolicy import FetchPolicy, address_kind
from newsletter.config import Config, load_config
from newsletter.errors import ConfigError, SourceError

RSS = (Path(__file__).parent / "fixtures" / "feeds" / "rss2.xml").read_bytes()


def _serve(host: str, routes: dict):
    """A threaded HTTP server on ``host``; ``routes[path] = (status, headers, body)``; records paths seen."""
    seen: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.path)
            status, headers, body = routes.get(self.path, (404, {}, b"not here"))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer((host, 0), H)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    httpd.url = f"http://{host}:{httpd.server_port}"
    httpd.seen = seen
    return httpd


@pytest.fixture
def inner():
    """The 'internal' server an attacker wants reached: 127.0.0.1, serving a feed."""
    s = _serve("127.0.0.1", {"/feed": (200, {"Content-Type": "application/rss+xml"}, RSS)})
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def outer():
    """The 'public' server (127.0.0.2, allowed by fetch_allow_networks in the tests that use it)."""
    try:
        s = _serve("127.0.0.2", {})
    except OSError:
        pytest.skip("127.0.0.2 is not usable on this machine")
    yield s
    s.shutdown()
    s.server_close()


OUTER_ONLY = ["127.0.0.2/32"]


# -- the address classification ------------------------------------------------------------------

@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("192.0.2.1", "private"), ("198.51.100.7", "private"), ("2001:db8::1", "private"),
    # IPv4 inside IPv6: mapped, NAT64, 6to4
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::7f00:1", "loopback"), ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private"),
])
def test_non_public_addresses_are_named(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"])
def test_public_addresses_pass(address):
    assert address_kind(ipaddress.ip_address(address)) is None
    assert FetchPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allow_networks_let_only_the_named_networks_through():
    policy = FetchPolicy.from_config(Config(fetch_allow_networks=["10.1.0.0/16", "fd00::/8"]))
    assert policy.refusal(ipaddress.ip_address("10.1.9.9")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.1.9.9")) is None  # the same host, written in IPv6
    assert policy.refusal(ipaddress.ip_address("fd00::5")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert FetchPolicy(allow_private=True).refusal(ipaddress.ip_address("127.0.0.1")) is None


def test_the_switches_come_from_the_config_file_and_the_environment(tmp_path):
    toml = tmp_path / "n.toml"
    toml.write_text('allow_private_fetch = true\nfetch_allow_networks = ["10.1.0.0/16"]\n')
    cfg = load_config(toml, environ={})
    assert cfg.allow_private_fetch is True and cfg.fetch_allow_networks == ["10.1.0.0/16"]
    env = load_config(environ={"NEWSLETTER_ALLOW_PRIVATE_FETCH": "1", "NEWSLETTER_FETCH_ALLOW_NETWORKS": "10.0.0.0/8, fd00::/8"})
    assert env.allow_private_fetch is True and env.fetch_allow_networks == ["10.0.0.0/8", "fd00::/8"]
    assert Config().allow_private_fetch is False and Config().fetch_allow_networks == []
    with pytest.raises(ConfigError, match=r"fetch_allow_networks: '10\.1\.0\.0/33' is not a network"):
        load_config(environ={"NEWSLETTER_FETCH_ALLOW_NETWORKS": "10.1.0.0/33"})


# -- refusals, on the first connection and on every redirect ------------------------------------

def test_a_feed_on_loopback_is_refused_by_default(inner):
    with pytest.raises(SourceError, match=r"refused to connect to 127\.0\.0\.1: a loopback address.*allow_private_fetch"):
        fetch(inner.url + "/feed", timeout=5)
    with pytest.raises(SourceError, match="loopback"):
        load_sources([inner.url + "/feed"], Config())
    assert inner.seen == []  # not one request reached it


def test_a_host_name_is_checked_after_resolution(inner):
    # "localhost" is a name, not an address: the check is on what it resolves to.
    with pytest.raises(SourceError, match=r"refused to connect to localhost \((127\.0\.0\.1|::1)\): a loopback address"):
        fetch(f"http://localhost:{inner.server_port}/feed", timeout=5)
    assert inner.seen == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/feed", "http://0.0.0.0:{port}/feed",
                                    "http://[::ffff:127.0.0.1]:{port}/feed", "http://localhost:{port}/feed"])
def test_a_redirect_to_an_internal_address_is_refused(inner, outer, target):
    outer_routes = {"/feed": (302, {"Location": target.format(port=inner.server_port)}, b"")}
    s = _serve("127.0.0.2", outer_routes)
    try:
        policy = FetchPolicy.from_config(Config(fetch_allow_networks=OUTER_ONLY))
        with pytest.raises(SourceError, match=r"refused to connect to .*: a (loopback|unspecified) address"):
            fetch(s.url + "/feed", timeout=5, policy=policy)
        assert s.seen == ["/feed"] and inner.seen == []  # the first hop was fetched, the internal one never
    finally:
        s.shutdown()
        s.server_close()


def test_a_redirect_between_allowed_hosts_is_followed(inner, outer):
    s = _serve("127.0.0.2", {"/feed": (301, {"Location": inner.url + "/feed"}, b"")})
    try:
        both = FetchPolicy.from_config(Config(fetch_allow_networks=["127.0.0.0/8"]))
        got = fetch(s.url + "/feed", timeout=5, policy=both)
        assert got.content == RSS and got.final_url == inner.url + "/feed"
    finally:
        s.shutdown()
        s.server_close()


def test_a_list_of_urls_naming_internal_addresses_skips_them(inner, outer, tmp_path):
    outer_feed = _serve("127.0.0.2", {"/feed": (200, {"Content-Type": "application/rss+xml"}, RSS)})
    try:
        listing = tmp_path / "urls.txt"
        listing.write_text(f"{outer_feed.url}/feed\n{inner.url}/feed\nhttp://169.254.169.254/latest/meta-data/\n")
        result = load_sources([str(listing)], Config(fetch_allow_networks=OUTER_ONLY))
        assert result.articles  # the allowed feed was read
        refused = [w for w in result.warnings if "refused to connect" in w]
        assert len(refused) == 2 and any("loopback" in w for w in refused) and any("link-local" in w for w in refused)
        assert inner.seen == []
    finally:
        outer_feed.shutdown()
        outer_feed.server_close()


def test_the_switch_lets_loopback_through(inner):
    result = load_sources([inner.url + "/feed"], Config(allow_private_fetch=True))
    assert result.articles and inner.seen == ["/feed"]


def test_the_vimeo_lookup_obeys_the_policy(inner, tmp_path):
    from newsletter.articles.video import add_vimeo_thumbnails
    from newsletter.articles.model import Article, Video

    a = Article(title="t", url="https://example.org/t", videos=[Video(url="https://vimeo.com/76979871", provider="vimeo", id="76979871")])
    warnings = add_vimeo_thumbnails([a], Config(vimeo_oembed_url=inner.url + "/oembed"))
    assert len(warnings) == 1 and "refused to connect to 127.0.0.1" in warnings[0]
    assert inner.seen == [] and a.videos[0].thumbnail_url is None


def test_the_cli_refuses_a_loopback_source_in_one_line(inner):
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_ALLOW_PRIVATE_FETCH"}
    r = subprocess.run([sys.executable, "-m", "newsletter", "articles", inner.url + "/feed"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused to connect to 127.0.0.1" in lines[0]
    ok = subprocess.run([sys.executable, "-m", "newsletter", "articles", inner.url + "/feed"],
                        capture_output=True, text=True, timeout=60, env={**env, "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true"})
    assert ok.returncode == 0, ok.stderr


# -- the total deadline ----------------------------------------------------------------------------

class Trickler:
    """A raw TCP server on 127.0.0.1 that answers every connection with a status line and then one
    byte every ``every`` seconds, forever — until the client goes away or ``stop`` is set.
    It never needs to be killed: each connection's loop ends when its send fails."""

    def __init__(self, *, headers_done: bool = False, every: float = 0.2):
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.sent = 0
        self.headers_done = headers_done
        self.every = every
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = None
        while not self.stop.is_set() and conn is None:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
        if conn is None:
            return
        self.connected.set()
        head = b"HTTP/1.1 200 OK\r\n" + (b"Content-Type: text/html\r\n\r\n<html>" if self.headers_done else b"")
        try:
            conn.recv(65536)
            conn.sendall(head)
            # One byte of a header (or of the body) per tick, until the client hangs up.
            while not self.stop.wait(self.every):
                conn.sendall(b"X" if not self.headers_done else b"<p>")
                self.sent += 1
        except OSError:
            pass
        finally:
            conn.close()
            self.ended.set()

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize("headers_done", [False, True], ids=["trickled-headers", "trickled-body"])
def test_a_server_that_trickles_cannot_hold_a_fetch_past_its_timeout(headers_done):
    server = Trickler(headers_done=headers_done)
    try:
        start = time.monotonic()
        with pytest.raises(SourceError, match=r"timed out after 1 s"):
            fetch(server.url, timeout=1, policy=FetchPolicy(allow_private=True))
        elapsed = time.monotonic() - start
        assert server.connected.is_set()
        # The server kept sending (each byte within the old per-read timeout), yet the fetch ended.
        assert elapsed < 15, elapsed
        # Our side hung up: the server's next send fails and its loop ends by itself.
        assert server.ended.wait(15)
    finally:
        server.close()


def test_a_trickling_source_is_a_one_line_error_from_the_cli():
    server = Trickler()
    try:
        env = {**os.environ, "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true", "NEWSLETTER_FETCH_TIMEOUT": "1"}
        r = subprocess.run([sys.executable, "-m", "newsletter", "articles", server.url],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip() == f"error: {server.url}: timed out after 1 s"
    finally:
        server.close()


def test_the_connection_goes_to_an_address_that_passed_the_check(inner):
    """A name is resolved once and the socket is opened to a checked address (not to the name
    again, which a DNS answer changing in between could point elsewhere). "localhost" may resolve
    to ::1 and 127.0.0.1: with only 127.0.0.1 allowed, that is where the socket goes."""
    from newsletter.articles.netpolicy import Deadline, parse_networks

    only_v4 = FetchPolicy(allow_networks=parse_networks(["127.0.0.1/32"]))
    with Deadline("http://localhost/", 5, only_v4) as d:
        sock = d.connect(("localhost", inner.server_port))
        try:
            assert sock.getpeername()[0] == "127.0.0.1"
        finally:
            sock.close()
    with Deadline("http://localhost/", 5, FetchPolicy(allow_networks=parse_networks(["10.0.0.0/8"]))) as d:
        with pytest.raises(SourceError, match="refused to connect to localhost"):
            d.connect(("localhost", inner.server_port))
