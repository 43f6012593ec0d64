"""Who may use the admin pages and the JSON API (local-only without auth; password, sessions,
CSRF and tokens with it), the `serve` command's refusal to expose them, and Schemathesis
against the OpenAPI schema."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient

from newsletter.config import Config
from newsletter.store import lists as store_lists
from newsletter.store import subscribers as subs
from newsletter.store import suppressions as supp
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app
from newsletter.web.app import Limits

SECRET = "test-secret-key-0123456789"
LOCAL = ("127.0.0.1", 5000)
REMOTE = ("203.0.113.5", 1234)


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    engine = get_engine(url)
    store_lists.create_list(engine, "weekly", "The Weekly")
    yield url, engine
    engine.dispose()


def make_app(db, **auth):
    url, engine = db
    return create_app(Config(database_url=url, secret_key=SECRET, **auth), engine, limits=Limits(login_per_ip=(3, 60)))


def asgi_get(app, path, client, headers=None):
    async def go():
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            return await c.get(path, headers=headers or {})

    return asyncio.run(go())


# --- no auth configured: this machine only --------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/preview", "/admin/subscribers", "/api/stats", "/api/subscribers"])
def test_without_auth_non_local_requests_are_refused(db, path):
    app = make_app(db)
    r = asgi_get(app, path, REMOTE)
    assert r.status_code == 403
    assert "NEWSLETTER_ADMIN_PASSWORD" in r.text and "Traceback" not in r.text
    # A forwarded-for header is not trusted: anyone can send one.
    assert asgi_get(app, path, REMOTE, {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}).status_code == 403


def test_without_auth_local_requests_work_and_public_pages_are_open(db):
    app = make_app(db)
    assert asgi_get(app, "/api/stats", LOCAL).json()["lists"] == 1
    assert asgi_get(app, "/subscribe/weekly", REMOTE).status_code == 200
    assert asgi_get(app, "/archive/", REMOTE).status_code == 200


def test_dns_rebinding_host_is_refused(db):
    app = make_app(db)
    r = asgi_get(app, "/api/stats", LOCAL, {"Host": "attacker.example.net"})
    assert r.status_code == 403


def test_api_refuses_cross_site_posts_without_csrf_header(db):
    app = make_app(db)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=LOCAL) as c:
        r = c.post("/api/lists", json={"slug": "evil"}, headers={"Origin": "https://attacker.example.net"})
        assert r.status_code == 403
        r = c.post("/api/lists", json={"slug": "fine", "opt_in": "single"})  # curl on this machine: no Origin
        assert r.status_code == 201 and r.json()["slug"] == "fine"


# --- password and token -----------------------------------------------------------------------------


def login_token(c):
    r = c.get("/admin/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def test_password_login_session_and_csrf(db):
    app = make_app(db, admin_password="correct horse battery staple")
    with TestClient(app, base_url="https://news.example.org", client=REMOTE, follow_redirects=False) as c:
        r = c.get("/admin/subscribers")
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
        assert c.get("/api/stats").status_code == 401
        token = login_token(c)
        assert c.post("/admin/login", data={"password": "wrong", "csrf_token": token}).status_code == 403
        assert c.post("/admin/login", data={"password": "correct horse battery staple"}).status_code == 403  # no CSRF
        r = c.post("/admin/login", data={"password": "correct horse battery staple", "csrf_token": token, "next": "//evil.example.net/"})
        assert r.status_code == 303 and r.headers["location"] == "/admin/"  # no open redirect
        assert c.get("/admin/subscribers").status_code == 200
        assert c.get("/api/stats").status_code == 200
        # With a session cookie, API changes need the CSRF header (a cross-site form cannot send one).
        assert c.post("/api/lists", json={"slug": "x1"}).status_code == 403
        page = c.get("/admin/lists").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert c.post("/api/lists", json={"slug": "x1"}, headers={"X-CSRF-Token": csrf}).status_code == 201
        assert c.post("/admin/lists", data={"slug": "x2"}).status_code == 403
        assert c.post("/admin/lists", data={"slug": "x2", "csrf_token": csrf}).status_code == 303
    assert [l.slug for l in store_lists.list_lists(db[1])] == ["weekly", "x1", "x2"]
    assert app.state.web.config.admin_password is None  # only a hash is kept
    assert "correct horse" not in repr(app.state.web.__dict__)


def test_login_attempts_are_rate_limited(db):
    app = make_app(db, admin_password="pw-0123456789")
    with TestClient(app, base_url="http://127.0.0.1:8000", client=REMOTE) as c:
        token = login_token(c)
        codes = [c.post("/admin/login", data={"password": "nope", "csrf_token": token}).status_code for _ in range(4)]
    assert codes == [403, 403, 403, 429]


def test_bearer_token(db):
    app = make_app(db, admin_token="tok-0123456789abcdef")
    assert asgi_get(app, "/api/stats", REMOTE).status_code == 401
    assert asgi_get(app, "/api/stats", REMOTE, {"Authorization": "Bearer wrong"}).status_code == 401
    assert asgi_get(app, "/api/stats", REMOTE, {"Authorization": "Bearer tok-0123456789abcdef"}).status_code == 200
    # Auth configured: a local request needs it too.
    assert asgi_get(app, "/api/stats", LOCAL).status_code == 401


# --- API behaviour and errors --------------------------------------------------------------------------


def test_api_subscribers_round_trip_and_errors(db):
    app = make_app(db)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=LOCAL) as c:
        r = c.post("/api/subscribers", json={"email": "ana@example.com", "name": "Ana", "list": "weekly", "attributes": {"city": "Porto"}})
        assert r.status_code == 201 and r.json()["status"] == "active"
        assert c.get("/api/subscribers", params={"q": "ana"}).json()["total"] == 1
        assert c.get("/api/subscribers/ana@example.com").json()["attributes"] == {"city": "Porto"}
        assert c.post("/api/subscribers/ana@example.com/unsubscribe").json()["lists"] == ["weekly"]
        bad = c.post("/api/subscribers", json={"email": "nope"})
        assert bad.status_code == 400 and bad.json()["status"] == 400 and "nope" in bad.json()["error"]
        assert c.post("/api/subscribers", json={"email": "b@example.com", "list": "missing"}).status_code == 404
        assert c.get("/api/subscribers/ghost@example.com").status_code == 404
        assert c.post("/api/subscribers", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        assert c.post("/api/subscribers", content=b"x" * 300_000, headers={"content-type": "application/json"}).status_code == 413
        assert c.delete("/api/subscribers/ana@example.com", params={"suppress": "true"}).status_code == 200
    assert supp.find_suppression(db[1], "ana@example.com") is not None


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(db):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    from fixtures.web.harness import ARTICLES
    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign

    url, engine = db
    subs.add_subscriber(engine, "someone@example.com", list_slug="weekly")
    config = Config(database_url=url, secret_key=SECRET)
    create_campaign(engine, compose([str(ARTICLES)], config, ComposeOptions()), ["weekly"], config)  # id 1: real paths too
    app = make_app(db, admin_token="tok-0123456789abcdef")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 8
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        def no_500(case):
            r = case.call(headers={"Authorization": "Bearer tok-0123456789abcdef"})
            assert r.status_code < 500, f"{case.method} {case.formatted_path} {case.query} {case.body!r} -> {r.status_code} {r.text[:200]}"

        no_500()


# --- serve -------------------------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_auth(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    r = subprocess.run([sys.executable, "-m", "newsletter", "serve", "--host", "0.0.0.0"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "NEWSLETTER_ADMIN_PASSWORD" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def run_serve(tmp_path, monkeypatch, *args):
    """`newsletter serve ARGS` in-process (Typer's runner): the library error it stops with."""
    from typer.testing import CliRunner

    from newsletter.cli import app as cli_app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    result = CliRunner().invoke(cli_app, ["serve", *args])
    assert result.exit_code != 0
    return result.exception


@pytest.mark.parametrize("args, says", [
    (["--watch", "/no/such/folder"], "--watch /no/such/folder: no such file or folder"),
    (["--port", "99999"], "--port 99999: a TCP port is 0-65535"),
])
def test_serve_bad_options_are_one_line_errors(tmp_path, monkeypatch, args, says):
    from newsletter.errors import ConfigError

    err = run_serve(tmp_path, monkeypatch, *args)
    assert isinstance(err, ConfigError) and str(err) == says


def test_serve_on_a_busy_port_is_a_one_line_error(tmp_path, monkeypatch):
    import socket

    from newsletter.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = run_serve(tmp_path, monkeypatch, "--port", str(port))
    assert isinstance(err, ConfigError) and f"cannot listen on 127.0.0.1:{port}" in str(err) and "\n" not in str(err)


@pytest.mark.slow
def test_serve_prints_its_address_and_answers(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NEWSLETTER_DATABASE_URL": url, "NEWSLETTER_SECRET_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        r = httpx.get(f"http://127.0.0.1:{m.group(1)}/api/stats", timeout=10)
        assert r.status_code == 200 and r.json()["subscribers"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)

