"""Public and private lists: the preference centre offers every *public* list to join; a private
list (staff, press, an imported segment) has no signup page (the same 404 as no list at all) and
shows on the preference centre only to its own readers, who can leave it there. Set from the CLI
(`lists create --private`, `lists update --public`). Real SQLite and PostgreSQL, the real web app
and CLI; no mocks."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from dispatch_helpers import make_config, setup_db
from newsletter.errors import NotFound
from newsletter.store import lists, preferences as prefs, subscribers
from newsletter.store.secret import secret_key
from newsletter.web import create_app

BASE = "https://news.example.org"


@pytest.fixture
def site(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    lists.create_list(engine, "weekly", "The Weekly")
    lists.create_list(engine, "staff", "Staff notes", public=False)
    yield engine, config
    engine.dispose()


def test_a_private_list_has_no_signup_page_and_is_offered_to_nobody_else(site):
    engine, config = site
    staff = lists.get_list(engine, "staff")
    assert staff.public is False and lists.get_list(engine, "weekly").public is True
    subscribers.add_subscriber(engine, "ana@example.org", list_slug="weekly")
    path = prefs.link_for(engine, config, "ana@example.org").removeprefix(BASE)
    token = path.rsplit("/", 1)[1]
    with TestClient(create_app(config, engine), base_url=BASE) as c:
        private, unknown = c.get("/subscribe/staff"), c.get("/subscribe/nothing")
        assert private.status_code == unknown.status_code == 404
        assert private.text.replace("staff", "nothing") == unknown.text.replace("staff", "nothing")  # nothing tells them apart
        page = c.get(path).text
        assert "The Weekly" in page and "Staff notes" not in page and f'name="list" value="{staff.id}"' not in page
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = c.post(path, data={"action": "join", "list": str(staff.id), "csrf_token": csrf})
        assert r.status_code == 400 and f"there is no list #{staff.id}" in r.text
    with pytest.raises(NotFound):
        prefs.join(engine, secret_key(config), token, staff.id)
    assert subscribers.get_subscriber(engine, "ana@example.org").lists == {"weekly": "active"}


def test_its_own_readers_see_it_leave_it_and_may_come_back(site):
    engine, config = site
    secret = secret_key(config)
    staff = lists.get_list(engine, "staff")
    subscribers.add_subscriber(engine, "bo@example.org", list_slug="staff")
    token = prefs.link_for(engine, config, "bo@example.org").rsplit("/", 1)[1]
    shown = {x.slug: x.status for x in prefs.show(engine, secret, token).lists}
    assert shown == {"weekly": None, "staff": "active"}
    assert prefs.leave(engine, secret, token, [staff.id]) == ["Staff notes"]
    assert {x.slug: x.status for x in prefs.show(engine, secret, token).lists} == {"weekly": None, "staff": "unsubscribed"}
    assert prefs.join(engine, secret, token, staff.id).status == "active"
    lists.update_list(engine, "staff", public=True)
    assert lists.get_list(engine, "staff").public is True


def test_the_cli_sets_and_shows_it(site, monkeypatch, capsys):
    from cli_runner import run_main

    engine, config = site
    db = ["--db", config.database_url]
    r = run_main(monkeypatch, capsys, [*db, "lists", "create", "press", "--private"])
    assert r.returncode == 0 and "private" in r.stdout
    r = run_main(monkeypatch, capsys, [*db, "lists", "list", "--format", "json"])
    rows = {x["slug"]: x["public"] for x in json.loads(r.stdout)}
    assert rows == {"weekly": True, "staff": False, "press": False}
    r = run_main(monkeypatch, capsys, [*db, "lists", "update", "press", "--public"])
    assert r.returncode == 0 and "private" not in r.stdout and lists.get_list(engine, "press").public is True
