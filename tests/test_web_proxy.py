"""Behind a reverse proxy: the app runs under a real uvicorn on 127.0.0.1 and the requests carry the
headers nginx, Apache, Caddy or a load balancer add. With no auth configured such a request is not
local (behind nginx the peer is 127.0.0.1 and the Host 127.0.0.1:8000 for every visitor); rate limits
take the client address from X-Forwarded-For only when the peer is a configured trusted proxy."""

from __future__ import annotations

import httpx
import pytest

from fixtures.web.harness import LiveServer
from newsletter.config import Config
from newsletter.errors import ConfigError
from newsletter.store import lists as store_lists
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app
from newsletter.web.app import Limits

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def config(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(database_url=url, secret_key=SECRET)


@pytest.fixture
def engine(config):
    engine = get_engine(config.database_url)
    store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    yield engine
    engine.dispose()


def serve(config, engine, **limits):
    return LiveServer(create_app(config, engine, limits=Limits(**limits) if limits else None))


@pytest.mark.parametrize("header", [
    {"X-Forwarded-For": "203.0.113.7"},
    {"Forwarded": "for=203.0.113.7;proto=https;host=news.example.org"},
    {"X-Real-IP": "203.0.113.7"},
    {"X-Forwarded-Host": "news.example.org"},
    {"X-Forwarded-Proto": "https"},
    {"Via": "1.1 proxy.example.net"},
    {"X-Forwarded-For": "127.0.0.1"},  # a proxy on this machine forwarding a local browser is still a proxy
], ids=["x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-proto", "via", "xff-loopback"])
def test_without_auth_a_proxied_request_is_refused_by_admin_and_api(config, engine, header):
    with serve(config, engine) as live:
        # The same request without the proxy's header: this machine, allowed.
        assert httpx.get(f"{live.url}/admin/lists", timeout=10).status_code == 200
        admin = httpx.get(f"{live.url}/admin/lists", headers=header, timeout=10)
        api = httpx.get(f"{live.url}/api/stats", headers=header, timeout=10)
        change = httpx.post(f"{live.url}/api/lists", json={"slug": "sneaky", "name": "Sneaky"}, headers=header, timeout=10)
        public = httpx.get(f"{live.url}/subscribe/weekly", headers=header, timeout=10)
    assert admin.status_code == 403 and "proxy" in admin.text and "NEWSLETTER_ADMIN_PASSWORD" in admin.text
    assert api.status_code == 403 and api.json()["status"] == 403
    assert change.status_code == 403
    assert [s.slug for s in store_lists.list_lists(engine)] == ["weekly"]
    assert public.status_code == 200  # the public pages do not care


def test_with_auth_a_proxied_request_logs_in_as_usual(config, engine):
    cfg = config.replace(admin_token="proxy-test-token-0123456789")
    with serve(cfg, engine) as live:
        r = httpx.get(f"{live.url}/api/stats", timeout=10,
                      headers={"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer proxy-test-token-0123456789"})
    assert r.status_code == 200


def hits(live, forwarded_for: str | None, n: int) -> list[int]:
    """``n`` link checks (rate limited per client address) with this X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return [httpx.get(f"{live.url}/confirm/not-a-token", headers=headers, timeout=10).status_code for _ in range(n)]


def test_rate_limits_key_on_the_forwarded_client_behind_a_trusted_proxy(config, engine):
    cfg = config.replace(trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    with serve(cfg, engine, token_per_ip=(2, 600)) as live:
        assert hits(live, "203.0.113.5", 3) == [400, 400, 429]
        # Another reader behind the same proxy has a budget of their own.
        assert hits(live, "203.0.113.6", 2) == [400, 400]
        # A client cannot escape its bucket by writing addresses in front of its own: the proxy
        # appends the real one, and the right-most entry that is not a trusted proxy counts.
        assert hits(live, "198.51.100.1, 203.0.113.5", 1) == [429]
        # Through a second trusted proxy (10.1.2.3 appended by the inner one): still the reader.
        assert hits(live, "203.0.113.6, 10.1.2.3", 1) == [429]
        assert hits(live, "198.51.100.77, 10.1.2.3", 2) == [400, 400]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(config, engine):
    with serve(config, engine, token_per_ip=(2, 600)) as live:
        assert hits(live, "203.0.113.5", 2) == [400, 400]
        # Every "client" is really the peer 127.0.0.1: one shared budget, whatever the header says.
        assert hits(live, "203.0.113.6", 1) == [429]
        assert hits(live, None, 1) == [429]


def test_a_peer_that_is_not_a_trusted_proxy_cannot_pick_its_address(config, engine):
    cfg = config.replace(trusted_proxies=["10.0.0.1"])  # the proxy lives elsewhere; this peer is 127.0.0.1
    with serve(cfg, engine, token_per_ip=(2, 600)) as live:
        assert hits(live, "203.0.113.5", 2) == [400, 400]
        assert hits(live, "203.0.113.6", 1) == [429]


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start(config, engine):
    for bad in ("nginx", "10.0.0.0/33", "127.0.0.1:80"):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            create_app(config.replace(trusted_proxies=[bad]), engine)
