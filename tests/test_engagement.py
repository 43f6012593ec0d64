"""Open and click tracking: the rewrite, signed redirects, people told apart from machines, the
report — on SQLite and PostgreSQL, through the real web app and a real outbox send."""

from __future__ import annotations

import email
import re
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dispatch_helpers import FakeDigest, add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.sender import send_campaign
from newsletter.engagement.classify import Agent, Hit, classify
from newsletter.engagement.links import Track, parse_track, rewrite
from newsletter.engagement.report import campaign_report
from newsletter.errors import ConfigError, InvalidInput, InvalidToken
from newsletter.store.engagement_models import EngagementEvent
from newsletter.store.tokens import click_key, click_token, verify_click_token
from newsletter.web import create_app

UTC = timezone.utc
BASE = "http://127.0.0.1:8000"
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/156.0.0.0 Safari/537.36")
HTML = (
    '<html><head><title>t</title></head><body><p>Hello</p>'
    '<a href="https://example.org/story?a=1&amp;b=2">Story</a>'
    '<a href="https://example.org/other">Other</a>'
    '<a href="https://example.org/story?a=1&amp;b=2">Story again</a>'
    '<a href="mailto:editor@example.org">Write</a>'
    '<a href="ftp://example.org/file">FTP</a>'
    '<a data-notrack href="https://example.org/private">Not this</a>'
    f'<a href="{BASE}/preferences/abc">Prefs</a>'
    '<a href="*|WEB_VERSION_URL|*">web</a> <a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a>'
    '</body></html>')


# --- the rewrite ----------------------------------------------------------------------------------

def test_links_become_numbered_click_tags_and_reader_links_stay():
    rw = rewrite(HTML, base_url=BASE, track=frozenset({Track.OPENS, Track.CLICKS}), privacy_url=BASE + "/privacy")
    assert rw.links == [BASE + "/", "https://example.org/story?a=1&b=2", "https://example.org/other"]
    assert rw.html.count("*|CLICK:1|*") == 2 and rw.html.count("*|CLICK:2|*") == 1
    for kept in ("mailto:editor@example.org", "ftp://example.org/file", "https://example.org/private",
                 f"{BASE}/preferences/abc", "*|WEB_VERSION_URL|*", "*|UNSUBSCRIBE_URL|*", BASE + "/privacy"):
        assert kept in rw.html
    assert '<a href="*|CLICK:0|*" aria-hidden="true"' in rw.html  # the canary, hidden
    assert '<img src="*|OPEN|*"' in rw.html and "counts opens and clicks" in rw.html
    assert rewrite(HTML, base_url=BASE, track=frozenset({Track.OPENS, Track.CLICKS}), privacy_url="x").links == rw.links
    off = rewrite(HTML, base_url=BASE, track=frozenset(), privacy_url="x")
    assert off.html == HTML
    opens_only = rewrite(HTML, base_url=BASE, track=frozenset({Track.OPENS}), privacy_url="x").html
    assert "CLICK" not in opens_only and "*|OPEN|*" in opens_only


@pytest.mark.parametrize("value, expected", [
    ("opens,clicks", {Track.OPENS, Track.CLICKS}), ("clicks", {Track.CLICKS}), ("off", set()), (None, set()),
    (["opens"], {Track.OPENS}), ("on", {Track.OPENS, Track.CLICKS})])
def test_the_tracking_choice_parses(value, expected):
    assert parse_track(value) == expected


def test_a_bad_tracking_choice_is_one_line_naming_it():
    with pytest.raises(InvalidInput, match=r"^--track 'views': expected opens, clicks"):
        parse_track("opens,views")


def test_a_click_token_is_signed_over_campaign_reader_and_link():
    secret = b"k" * 32
    t = click_token(click_key(secret), 7, 42, 3)
    assert verify_click_token(secret, t) == (7, 42, 3)
    raw = bytearray(t.encode())
    for i in range(len(raw)):  # every single-character change is refused
        bad = raw.copy()
        bad[i] = ord("A") if raw[i] != ord("A") else ord("B")
        with pytest.raises(InvalidToken):
            verify_click_token(secret, bad.decode())
    with pytest.raises(InvalidToken):
        verify_click_token(b"x" * 32, t)


# --- people and machines --------------------------------------------------------------------------

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _hit(kind="click", link=1, at=T0 + timedelta(minutes=5), ua=CHROME, ip="203.0.113.9"):
    return Hit(kind, 1, 1, link if kind == "click" else None, at, ua, ip)


@pytest.mark.parametrize("hit, recent, expected", [
    (_hit(), [], (Agent.HUMAN, "")),
    (_hit("open"), [], (Agent.HUMAN, "")),
    (_hit("open", ua="Mozilla/5.0"), [], (Agent.APPLE_MPP, "apple-mpp")),
    (_hit("open", ip="17.58.1.2"), [], (Agent.APPLE_MPP, "apple-mpp")),
    (_hit("open", ua="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"), [],
     (Agent.PROXY, "image-proxy")),
    (_hit(ua="python-requests/2.32"), [], (Agent.SCANNER, "user-agent")),
    (_hit(ua=""), [], (Agent.SCANNER, "user-agent")),
    (_hit(ua="Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0"), [], (Agent.SCANNER, "user-agent")),
    (_hit(link=0), [], (Agent.SCANNER, "canary")),
    (_hit(at=T0 + timedelta(seconds=4)), [], (Agent.SCANNER, "too-soon")),
    (_hit(link=3), [(T0 + timedelta(minutes=5) - timedelta(seconds=1), "click", 1),
                    (T0 + timedelta(minutes=5) - timedelta(seconds=1), "click", 2)], (Agent.SCANNER, "burst")),
    (_hit(link=3), [(T0 + timedelta(minutes=1), "click", 1), (T0 + timedelta(minutes=2), "click", 2)], (Agent.HUMAN, "")),
    (_hit(link=2), [(T0 + timedelta(minutes=5) - timedelta(seconds=10), "click", 0)], (Agent.SCANNER, "canary")),
])
def test_each_hit_is_put_in_its_class(hit, recent, expected):
    assert classify(hit, sent_at=T0, scanner_seconds=10, recent=recent) == expected


# --- a tracked campaign, sent and clicked -----------------------------------------------------------

def _config(url, tmp_path, **kw):
    return make_config(url, tmp_path, base_url=BASE, allow_local_links=True, **kw)


def _digest():
    d = FakeDigest()
    d.html = d.html.replace("</body></html>", '<p><a href="https://example.org/story">Story</a> '
                            '<a href="https://example.org/two">Two</a> <a href="https://example.org/three">Three</a>'
                            '</p></body></html>')
    return d


def _copies(outbox: Path) -> dict[str, str]:
    """{recipient: HTML part} of the .eml files a send wrote."""
    out = {}
    for p in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
        out[str(msg["To"]).split("<")[-1].rstrip(">")] = msg.get_body(("html",)).get_content()
    return out


def _path(url: str) -> str:
    return url[len(BASE):]


@pytest.fixture
def tracked(db_url, tmp_path):
    engine = setup_db(db_url)
    config = _config(db_url, tmp_path, scanner_seconds=0)
    add_people(engine, "weekly", 3)
    c = make_campaign(engine, config, digest=_digest(), track="opens,clicks")
    send_campaign(engine, c.id, config)
    return engine, config, c, _copies(Path(config.outbox))


def test_every_copy_gets_its_own_signed_links_pixel_and_a_note(tracked):
    engine, config, c, copies = tracked
    assert c.meta["track"] == ["clicks", "opens"] and len(copies) == 3
    seen = set()
    for html in copies.values():
        redirects = re.findall(rf'href="{re.escape(BASE)}/r/([\w-]+)"', html)
        assert len(redirects) == 4  # three story links and the canary
        assert re.search(rf'src="{re.escape(BASE)}/o/[\w-]+\.gif"', html)
        assert "/unsubscribe/" in html and "https://example.org/story" not in html and "How and why" in html
        seen.update(redirects)
    assert len(seen) == 12  # no two readers share a token


def test_clicks_redirect_to_the_campaigns_own_url_and_are_counted_apart(tracked):
    engine, config, c, copies = tracked
    (a, html_a), (b, html_b), (_, html_c) = sorted(copies.items())
    links_a = re.findall(rf'href="({re.escape(BASE)}/r/[\w-]+)"', html_a)
    pixel_a = re.search(rf'src="({re.escape(BASE)}/o/[\w-]+\.gif)"', html_a).group(1)
    with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
        r = client.get(_path(links_a[1]), headers={"user-agent": CHROME}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "https://example.org/story"
        assert "no-store" in r.headers["cache-control"]
        p = client.get(_path(pixel_a), headers={"user-agent": CHROME})
        assert p.status_code == 200 and p.headers["content-type"] == "image/gif" and "no-store" in p.headers["cache-control"]
        client.get(_path(pixel_a), headers={"user-agent": "Mozilla/5.0"})  # Apple's pre-fetch
        # A scanner follows everything in b's copy at once, canary included.
        for link in re.findall(rf'href="({re.escape(BASE)}/r/[\w-]+)"', html_b):
            client.get(_path(link), headers={"user-agent": CHROME}, follow_redirects=False)
        # Tampered, unknown, oversized: 404, nothing recorded.
        token = links_a[1].rsplit("/", 1)[1]
        forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert client.get("/r/" + forged, follow_redirects=False).status_code == 404
        assert client.get("/r/" + "A" * 5000, follow_redirects=False).status_code == 404
        assert client.get("/o/nothing.gif").status_code == 404
        assert client.get(_path(links_a[1]) + "?x=" + "y" * 4000, follow_redirects=False).headers["location"] == \
            "https://example.org/story"  # a query string changes nothing
        client.app.state.hits.flush()
    r = campaign_report(engine, c.id)
    assert (r.delivered, r.opens.readers["human"], r.opens.readers["apple-mpp"]) == (3, 1, 1)
    # a's click, and a's same link again from another client (the query string one): 2 events, 1 reader
    assert r.clicks.readers["human"] == 1 and r.clicks.events["human"] == 2
    assert r.clicks.readers["scanner"] == 1 and r.clicks.events["scanner"] == 4
    assert r.click_to_open == 1.0
    top = r.links[0]
    assert (top.url, top.human_readers) == ("https://example.org/story", 1)


def test_a_replayed_hit_counts_once_and_an_erased_readers_hits_are_not_kept(tracked):
    from newsletter.store.leaving import erase_subscriber

    engine, config, c, copies = tracked
    (a, html_a), (b, html_b), _ = sorted(copies.items())
    link_a = re.findall(rf'href="({re.escape(BASE)}/r/[\w-]+)"', html_a)[1]
    link_b = re.findall(rf'href="({re.escape(BASE)}/r/[\w-]+)"', html_b)[1]
    with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
        for _ in range(3):
            client.get(_path(link_a), headers={"user-agent": CHROME}, follow_redirects=False)
        erase_subscriber(engine, b)
        r = client.get(_path(link_b), headers={"user-agent": CHROME}, follow_redirects=False)
        assert r.status_code == 303  # the reader still gets to the story
        client.app.state.hits.flush()
    with engine.begin() as conn:
        rows = conn.execute(select(EngagementEvent.subscriber_id, func.count()).group_by(EngagementEvent.subscriber_id)).all()
    assert len(rows) == 1 and rows[0][1] == 1


def test_a_reader_who_turned_tracking_off_gets_plain_links_and_no_pixel(db_url, tmp_path):
    from sqlalchemy import update

    from newsletter.store.models import Subscriber

    engine = setup_db(db_url)
    config = _config(db_url, tmp_path)
    emails = add_people(engine, "weekly", 2)
    with engine.begin() as conn:
        conn.execute(update(Subscriber.__table__).where(Subscriber.__table__.c.email == emails[0]).values(
            attributes={"no_tracking": True}))
    c = make_campaign(engine, config, digest=_digest(), track="opens,clicks")
    send_campaign(engine, c.id, config)
    copies = _copies(Path(config.outbox))
    plain, tracked_html = copies[emails[0]], copies[emails[1]]
    assert "/r/" not in plain and "/o/" not in plain and 'href="https://example.org/story"' in plain
    assert "/r/" in tracked_html and "/o/" in tracked_html


def test_tracking_is_off_by_default_and_refused_without_https(db_url, tmp_path):
    engine = setup_db(db_url)
    add_people(engine, "weekly", 1)
    quiet = make_campaign(engine, _config(db_url, tmp_path), digest=_digest())
    assert "track" not in quiet.meta
    plain_http = make_config(db_url, tmp_path, base_url="http://news.example.org")
    with pytest.raises(ConfigError, match=r"^base_url http://news.example.org is not https: tracking links"):
        make_campaign(engine, plain_http, digest=_digest(), track="clicks")
    per_list = _config(db_url, tmp_path, track_lists={"weekly": "opens"})
    assert make_campaign(engine, per_list, digest=_digest()).meta["track"] == ["opens"]
    assert "track" not in make_campaign(engine, per_list, digest=_digest(), track="off").meta


def test_bad_tracking_settings_are_one_line_errors(tmp_path):
    from newsletter.config import load_config

    for toml, problem in (('track = "views"', "track 'views': expected"),
                          ('track_lists = {"weekly" = "all of it"}', "track_lists weekly 'all of it'"),
                          ("tracking_retention_days = 0", "tracking_retention_days: must be at least 1")):
        f = tmp_path / "n.toml"
        f.write_text(toml)
        with pytest.raises(ConfigError, match=re.escape(problem)):
            load_config(f, environ={})


def test_the_report_in_the_cli_and_the_api(tracked, monkeypatch, capsys):
    from cli_runner import run_main

    def run_cli(argv, capsys):
        r = run_main(monkeypatch, capsys, argv)
        return r.returncode, r.stdout, r.stderr

    engine, config, c, copies = tracked
    html = sorted(copies.items())[0][1]
    link = re.findall(rf'href="({re.escape(BASE)}/r/[\w-]+)"', html)[1]
    with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
        client.get(_path(link), headers={"user-agent": CHROME}, follow_redirects=False)
        client.app.state.hits.flush()
        resp = client.get(f"/api/campaigns/{c.id}/report")
        assert resp.status_code == 200, resp.text
        api = resp.json()
    assert api["delivered"] == 3 and api["clicks"]["readers"]["human"] == 1 and api["links"][0]["human_readers"] == 1
    assert api["opens"]["readers"]["apple-mpp"] == 0
    code, out, err = run_cli(["--db", config.database_url, "campaigns", "report", str(c.id), "--format", "json"], capsys)
    assert code == 0 and '"human_click_rate": 0.3333' in out
    code, out, err = run_cli(["--db", config.database_url, "campaigns", "report", str(c.id), "--links"], capsys)
    assert code == 0 and "https://example.org/story" in out
    code, out, err = run_cli(["--db", config.database_url, "campaigns", "report", "999"], capsys)
    assert code != 0 and "999" in err and "Traceback" not in err


def test_purge_keeps_recent_events(tracked):
    from newsletter.engagement.report import purge

    engine, config, c, copies = tracked
    html = sorted(copies.items())[0][1]
    pixel = re.search(rf'src="({re.escape(BASE)}/o/[\w-]+\.gif)"', html).group(1)
    with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
        client.get(_path(pixel), headers={"user-agent": CHROME})
        client.app.state.hits.flush()
    assert purge(engine, config) == 0
    assert purge(engine, config, now=datetime.now(UTC) + timedelta(days=config.tracking_retention_days + 1)) == 1
