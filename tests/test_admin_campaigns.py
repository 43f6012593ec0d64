"""Campaigns made and moved from the admin, without a browser: drafts composed from a date range
with an editor's note, edits, duplicates, send now; worker heartbeats; the reason a worker could
not send (a base_url readers cannot open) in the database, on the page, in `campaigns show` and in
the API; copies in flight labelled "sending" or "ambiguous" by whether their sender lives; admin
errors that keep the navigation and the values entered."""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import astuple
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cli_runner import Result, run_main
from smtp_server import SMTPTestServer

from newsletter.config import Config, SMTPServer
from newsletter.dispatch import drafts
from newsletter.dispatch.campaigns import campaign_info, get_campaign
from newsletter.dispatch.standing import campaign_standing
from newsletter.errors import InvalidInput, StateError
from newsletter.schedule.worker import run_worker
from newsletter.store import lists, subscribers, workers
from newsletter.store import queries as q
from newsletter.store.db import get_engine, transaction, upgrade
from newsletter.web import create_app

ARTICLES = Path(__file__).parent / "fixtures" / "web" / "articles"  # dated 16, 18 and 20 November 2026
SECRET = "test-secret-key-0123456789"
UTC = timezone.utc


@pytest.fixture
def store(tmp_path, db_url):
    upgrade(db_url)
    engine = get_engine(db_url)
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    for i in range(3):
        subscribers.add_subscriber(engine, f"reader{i}@example.com", list_slug="weekly", name=f"Reader {i}")
    yield engine
    engine.dispose()


def make_config(engine, tmp_path, **kw) -> Config:
    base = dict(database_url=str(engine.url.render_as_string(hide_password=False)), secret_key=SECRET,
                base_url="https://news.example.org", from_address="The Weekly <news@example.org>",
                sources=[str(ARTICLES)], timezone="Europe/Paris", outbox=str(tmp_path / "outbox"))
    return Config(**{**base, **kw})


def request(**kw) -> drafts.DraftRequest:
    base = dict(sources=[str(ARTICLES)], since="2026-11-01", until="2026-11-30", limit=10,
                intro="A note from the editor.\n\nSecond paragraph.", subject="Hello *|FNAME|*", lists=["weekly"])
    return drafts.DraftRequest(**{**base, **kw})


def client(config, engine) -> TestClient:
    """The app on plain http (as `serve` on 127.0.0.1 runs it: the session cookie is not Secure)."""
    if config.base_url.startswith("https://"):
        config = config.replace(base_url="http://127.0.0.1:8000", allow_local_links=True)
    return TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000))


def csrf(c: TestClient) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/campaigns/new").text).group(1)


def count_campaigns(engine) -> int:
    with transaction(engine) as conn:
        return conn.execute(select(func.count()).select_from(q.campaigns)).scalar_one()


# --- drafts ---------------------------------------------------------------------------------------


def test_a_draft_takes_its_date_range_and_note_and_can_be_edited_duplicated_and_started(store, tmp_path):
    config = make_config(store, tmp_path)
    c = drafts.create_draft(store, config, request(until="2026-11-18"))  # the 20 November article is out
    assert c.status == "draft" and c.subject == "Hello *|FNAME|*"
    assert "A note from the editor." in c.html and "Second paragraph." in c.text
    assert len(c.meta["article_keys"]) == 2
    assert c.meta["compose"]["intro"].startswith("A note")

    edited = drafts.update_draft(store, config, c.id, request(intro="Another note", subject="Weekly", limit=1))
    assert edited.id == c.id and edited.subject == "Weekly" and "Another note" in edited.html
    assert "A note from the editor" not in edited.html and len(edited.meta["article_keys"]) == 1

    copy = drafts.duplicate_campaign(store, c.id)
    assert copy.id != c.id and copy.status == "draft" and copy.html == edited.html
    assert campaign_info(store, copy.id).lists == ["weekly"]

    started = drafts.send_now(store, c.id)
    assert started.status == "running"
    with pytest.raises(StateError, match="only a draft can be edited"):
        drafts.update_draft(store, config, c.id, request())
    assert get_campaign(store, c.id).subject == "Weekly"  # nothing changed


@pytest.mark.parametrize("change, words", [
    ({"lists": []}, "choose at least one list"),
    ({"sources": []}, "choose at least one source"),
    ({"since": ""}, "first day of the date range"),
    ({"limit": 0}, "between 1 and 200"),
    ({"since": "2026-11-20", "until": "2026-11-10"}, "ends"),
    ({"subject": "Hi *|NICKNAME|*"}, "unknown merge tag"),
])
def test_a_draft_that_cannot_be_made_stores_nothing(store, tmp_path, change, words):
    config = make_config(store, tmp_path)
    with pytest.raises((InvalidInput, Exception), match=words):
        drafts.create_draft(store, config, request(**change))
    assert count_campaigns(store) == 0


# --- heartbeats and stalls ------------------------------------------------------------------------


def test_heartbeat_says_whether_a_worker_runs(store, tmp_path):
    config = make_config(store, tmp_path)
    assert workers.live_workers(store) == []
    stop = threading.Event()
    beats = threading.Event()
    thread = threading.Thread(target=run_worker, args=(store, config),
                              kwargs={"poll_interval": 1.0, "stop_event": stop,
                                      "on_event": lambda line: beats.set() if "started" in line else None})
    thread.start()
    try:
        assert beats.wait(30), "the worker did not start"
        live = workers.live_workers(store)
        assert len(live) == 1 and live[0].pid == os.getpid() and live[0].host == socket.gethostname()
    finally:
        stop.set()
        thread.join(30)
    assert workers.live_workers(store) == []  # it said it stopped
    seen = workers.workers(store)
    assert len(seen) == 1 and not seen[0].alive

    # A worker that stopped beating (killed) counts as gone once it missed its beats.
    then = datetime.now(UTC) - timedelta(minutes=5)
    workers.beat(store, "elsewhere:1:dead", 5.0, now=then)
    assert workers.live_workers(store) == []
    assert len(workers.live_workers(store, now=then + timedelta(seconds=10))) == 1


def test_a_worker_refusing_a_campaign_says_why_everywhere(store, tmp_path, monkeypatch, capsys):
    with SMTPTestServer() as smtp:
        # Over SMTP with a base_url readers cannot open: the worker refuses (dispatch.preflight).
        config = make_config(store, tmp_path, base_url="http://127.0.0.1:8000",
                             smtp={"main": SMTPServer(name="main", url=smtp.url)})
        c = drafts.create_draft(store, config, request())
        page = client(config, store).get(f"/admin/campaigns/{c.id}").text  # said before it is started
        assert "Workers will refuse to send it as the server is configured: base_url is http://127.0.0.1:8000" in page
        drafts.send_now(store, c.id)
        run_worker(store, config, once=True, on_event=lambda line: None)
        stall = workers.campaign_stall(store, c.id)
        assert stall is not None and "base_url" in stall.reason and smtp.received() == []
        s = campaign_standing(store, campaign_info(store, c.id), config.timezone)
        assert s.stall == stall.reason and s.note.startswith("Not sending: base_url is http://127.0.0.1:8000")

        page = client(config, store).get(f"/admin/campaigns/{c.id}").text
        assert "Not sending: base_url is http://127.0.0.1:8000" in page
        api = client(config, store).get(f"/api/campaigns/{c.id}").json()
        assert "base_url" in api["standing"]["stall"] and api["status"] == "running"
        shown = cli(monkeypatch, capsys, tmp_path, store, "campaigns", "show", str(c.id))
        assert shown.returncode == 0 and "Not sending: base_url is http://127.0.0.1:8000" in shown.stdout

        # Once the links are allowed, the next pass sends it, the stall is gone, and the page says
        # when it was sent and how long it took.
        config = config.replace(allow_local_links=True)
        run_worker(store, config, once=True, on_event=lambda line: None)
        assert smtp.wait_for(3, timeout=15)
        assert workers.campaign_stall(store, c.id) is None
        info = campaign_info(store, c.id)
        s = campaign_standing(store, info, config.timezone)
        assert info.status == "finished" and s.duration_seconds is not None and s.duration_seconds >= 0
        assert s.note.startswith("Sent ") and " in " in s.note
        page = client(config, store).get(f"/admin/campaigns/{c.id}").text
        assert 'id="took"' in page and "Not sending" not in page


def test_resume_says_what_happens_next(store, tmp_path):
    from newsletter.dispatch.campaigns import pause_campaign

    config = make_config(store, tmp_path)
    c = drafts.create_draft(store, config, request())
    drafts.send_now(store, c.id)
    pause_campaign(store, c.id)
    s = campaign_standing(store, campaign_info(store, c.id), config.timezone)
    assert s.resume == "Resume sends the 3 copies left; nothing goes out until a worker runs: start one with `newsletter worker`."
    workers.beat(store, "here:1:live", 5.0)
    s = campaign_standing(store, campaign_info(store, c.id), config.timezone)
    assert s.resume == "Resume sends the 3 copies left; a running worker picks it up within seconds."


def cli(monkeypatch, capsys, tmp_path, engine, *args) -> Result:
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    for k, v in {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_TIMEZONE": "Europe/Paris",
                 "NEWSLETTER_OUTBOX": str(tmp_path / "outbox")}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return Result(*astuple(run_main(monkeypatch, capsys, ["--db", engine.url.render_as_string(hide_password=False), *args])))


def test_campaigns_show_tells_copies_in_flight_from_ambiguous_ones(store, tmp_path, monkeypatch, capsys):
    from newsletter.dispatch.sender import send_campaign

    config = make_config(store, tmp_path)
    c = drafts.create_draft(store, config, request())
    send_campaign(store, c.id, config)  # outbox: the ledger exists, every copy sent
    live = f"{socket.gethostname()}:{os.getpid()}:live01"
    dead = f"{socket.gethostname()}:{2**22 + 12345}:dead01"  # above Linux's pid_max: no such process
    with transaction(store) as conn:
        ids = [r.id for r in q.delivery_rows(conn, c.id)]
        conn.execute(update(q.deliveries).where(q.deliveries.c.id == ids[0]).values(state="sending", worker_id=live))
        conn.execute(update(q.deliveries).where(q.deliveries.c.id == ids[1]).values(state="sending", worker_id=dead))
        if store.dialect.name == "sqlite":  # the live sender holds the campaign lock, with a fresh heartbeat
            conn.execute(update(q.campaigns).where(q.campaigns.c.id == c.id)
                         .values(lock_owner=live, lock_heartbeat_at=datetime.now(UTC)))
    if store.dialect.name == "postgresql":
        from sqlalchemy import text

        from newsletter.dispatch.liveness import _advisory_key

        holder = store.connect()
        holder.execute(text("select pg_advisory_lock(:k)"), {"k": _advisory_key(live)})
    try:
        shown = cli(monkeypatch, capsys, tmp_path, store, "campaigns", "show", str(c.id))
    finally:
        if store.dialect.name == "postgresql":
            holder.close()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(re.match(r"\s+sending\s+reader\d@example.com", line) for line in lines), shown.stdout
    ambiguous = [line for line in lines if re.match(r"\s+ambiguous\s+reader\d@example.com", line)]
    assert len(ambiguous) == 1 and "its sender died" in ambiguous[0]
    assert "sending 1" in shown.stdout and "ambiguous 1" in shown.stdout


# --- the admin pages (no browser) -----------------------------------------------------------------


def test_a_refused_form_comes_back_with_its_values_and_the_admin(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    form = {"csrf_token": token, "sources": str(ARTICLES), "since": "2026-11-01", "until": "2026-11-30", "limit": "5",
            "intro": "My carefully written note", "subject": "Week 48", "do": "create"}
    r = c.post("/admin/campaigns/new", data=form)
    assert r.status_code == 400
    assert "Choose at least one list to send to" in r.text and 'aria-label="Admin"' in r.text
    assert "My carefully written note</textarea>" in r.text and 'value="Week 48"' in r.text
    assert count_campaigns(store) == 0
    r = c.post("/admin/campaigns/new", data={**form, "csrf_token": "forged", "lists": "weekly"})
    assert r.status_code == 403 and count_campaigns(store) == 0

    r = c.post("/admin/campaigns/new", data={**form, "lists": "weekly"}, follow_redirects=False)
    assert r.status_code == 303
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    # A time in the past: the page again, with the value entered and the reason without CLI flags.
    r = c.post(f"/admin/campaigns/{cid}/schedule", data={"csrf_token": token, "when": "2020-01-01T10:00"})
    assert r.status_code == 400 and 'value="2020-01-01T10:00"' in r.text
    assert "The time 2020-01-01 10:00 CET is in the past" in r.text and "--at" not in r.text
    assert get_campaign(store, cid).status == "draft"
    # An error page of the admin keeps its navigation.
    r = c.get("/admin/campaigns/987654")
    assert r.status_code == 404 and 'aria-label="Admin"' in r.text


def test_the_pages_say_when_no_worker_runs(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    draft = drafts.create_draft(store, config, request())
    when = (datetime.now(UTC) + timedelta(days=1)).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    r = c.post(f"/admin/campaigns/{draft.id}/schedule", data={"csrf_token": token, "when": when.strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 200
    assert f"Scheduled for {when:%Y-%m-%d %H:%M} Europe/Paris — no worker is running, start one with <code>newsletter worker</code>" in r.text
    assert "No worker is running" in c.get("/admin/campaigns").text
    assert "No worker is running" in c.get("/admin/").text  # the overview lists the scheduled campaign
    progress = c.get(f"/admin/campaigns/{draft.id}/progress").json()
    assert progress["needs_worker"] is True and progress["status"] == "scheduled"
    workers.beat(store, "somewhere:1:abc", 5.0)
    assert "the running worker starts it then" in c.get(f"/admin/campaigns/{draft.id}").text
    assert "1 worker running" in c.get("/admin/campaigns").text


# --- recurring digests ----------------------------------------------------------------------------


def test_recurring_digests_are_made_edited_and_run_from_the_admin(store, tmp_path):
    from newsletter.schedule.digests import show_digest

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    stamp = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (fresh / "today.md").write_text(f"---\ntitle: Fresh today\ndate: {stamp}\nsummary: New.\n---\n\nBody.\n")
    config = make_config(store, tmp_path, sources=[str(fresh)])
    c = client(config, store)
    token = csrf(c)
    form = {"csrf_token": token, "name": "weekly", "schedule": "weekly someday 08:00", "timezone": "Europe/Paris",
            "sources": str(fresh), "lists": "weekly", "subject": "Weekly — {{ date }}", "max_articles": "5",
            "min_articles": "1"}
    r = c.post("/admin/digests/new", data=form)
    assert r.status_code == 400 and 'value="weekly someday 08:00"' in r.text and 'aria-label="Admin"' in r.text
    assert 'value="Weekly — {{ date }}"' in r.text
    r = c.post("/admin/digests/new", data={**form, "sources": "/etc", "schedule": "weekly mon 08:00"})
    assert r.status_code == 400 and "Choose at least one source" in r.text  # only configured sources count
    r = c.post("/admin/digests/new", data={**form, "max_articles": "0", "schedule": "weekly mon 08:00"})
    assert r.status_code == 400 and "At most 0 articles: must be at least 1" in r.text and "--max" not in r.text
    r = c.post("/admin/digests/new", data={**form, "schedule": "weekly mon 08:00"}, follow_redirects=False)
    assert r.status_code == 303
    info = show_digest(store, "weekly")
    assert info.next_run_local.strftime("%a %H:%M") == "Mon 08:00" and info.digest.max_articles == 5

    page = c.get("/admin/digests/weekly/edit").text
    assert 'value="weekly mon 08:00"' in page and "no worker" in page.lower()
    r = c.post("/admin/digests/weekly/edit", data={**form, "schedule": "daily 07:30", "max_articles": "3"},
               follow_redirects=False)
    assert r.status_code == 303
    info = show_digest(store, "weekly")
    assert info.digest.schedule == "daily 07:30" and info.digest.max_articles == 3
    assert info.next_run_local.strftime("%H:%M") == "07:30"
    assert (info.digest.category, list(info.digest.tags), info.digest.catch_up) == (None, [], "latest")

    # Category, tags and what to do after downtime, as `digests add` has them; a bad choice is refused in the form.
    more = {**form, "schedule": "daily 07:30", "max_articles": "3", "category": "Science", "tags": "soil, rain ,",
            "catch_up": "all"}
    assert c.post("/admin/digests/weekly/edit", data=more, follow_redirects=False).status_code == 303
    info = show_digest(store, "weekly")
    assert (info.digest.category, list(info.digest.tags), info.digest.catch_up) == ("Science", ["soil", "rain"], "all")
    page = c.get("/admin/digests/weekly/edit").text
    assert 'value="Science"' in page and 'value="soil, rain"' in page and '<option value="all" selected>' in page
    r = c.post("/admin/digests/weekly/edit", data={**more, "catch_up": "sometimes"})
    assert r.status_code == 400 and 'value="Science"' in r.text and "sometimes" in r.text
    assert show_digest(store, "weekly").digest.catch_up == "all"  # nothing stored
    assert c.post("/admin/digests/weekly/edit", data={**more, "category": "", "tags": ""},
                  follow_redirects=False).status_code == 303  # emptied: every article again
    assert (show_digest(store, "weekly").digest.category, list(show_digest(store, "weekly").digest.tags)) == (None, [])

    # Run now: an occurrence outside the schedule, whose campaign a worker sends.
    r = c.post("/admin/digests/weekly/run", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/campaigns/")
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    page = c.get(f"/admin/campaigns/{cid}").text
    assert "no worker is running" in page.lower()
    assert show_digest(store, "weekly").digest.schedule == "daily 07:30"  # the schedule is unchanged
    listing = c.get("/admin/campaigns").text
    assert "/admin/digests/weekly/edit" in listing and "Run now" in listing
    assert "No worker is running" in c.get("/admin/preview?digest=weekly").text


def test_a_template_that_does_not_show_the_note_is_warned_about(tmp_path):
    from newsletter.compose import ComposeOptions, compose

    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "digest.mjml").write_text('<mjml><mj-body><mj-section><mj-column><mj-text>{% for card in articles %}'
                                        '{{ card.title }} {% endfor %}<a href="{{ unsubscribe_url }}">Leave</a>'
                                        '</mj-text></mj-column></mj-section></mj-body></mjml>')
    (folder / "digest.txt").write_text("{% for card in articles %}{{ card.title }}\n{% endfor %}{{ unsubscribe_url }}\n")
    config = Config(secret_key=SECRET, sources=[str(ARTICLES)])
    shown = compose([str(ARTICLES)], config, ComposeOptions(intro="Hello readers"))
    assert not [w for w in shown.warnings if "editor's note" in w] and "Hello readers" in shown.text
    hidden = compose([str(ARTICLES)], config, ComposeOptions(intro="Hello readers", template_dir=str(folder)))
    assert [w for w in hidden.warnings if "does not show the editor's note" in w]
    assert "Hello readers" not in hidden.html
