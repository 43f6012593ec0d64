"""The admin's people pages over HTTP (local client, no auth): a person's page and its edit,
list and unsubscribe forms (each behind a confirm step where it matters), export with the
filters, bulk actions, the import's mapping step and rejects file, sending confirmations (with
the CLI's base_url check), list edit, suppressions, settings with provenance, and errors that
stay inside the admin with what was typed."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient

from newsletter.config import Config, SMTPServer, load_config
from newsletter.store import lists as store_lists
from newsletter.store import subscribers as subs
from newsletter.store import suppressions as supp
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def config(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(database_url=url, secret_key=SECRET, outbox=str(tmp_path / "outbox"))


@pytest.fixture
def engine(config):
    engine = get_engine(config.database_url)
    store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    store_lists.create_list(engine, "news", "News", opt_in="double")
    yield engine
    engine.dispose()


def client_for(config, engine):
    return TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000),
                      follow_redirects=False)


@pytest.fixture
def client(config, engine):
    with client_for(config, engine) as c:
        yield c


def token(client, url="/admin/subscribers"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def flash_after(client, response) -> str:
    assert response.status_code == 303, response.text
    text = client.get(response.headers["location"]).text
    m = re.search(r'<div class="flash (\w+)"[^>]*>([^<]*)</div>', text)
    return f"{m.group(1)}: {m.group(2)}" if m else ""


def test_a_persons_page_edit_lists_and_unsubscribe_with_confirm(client, engine):
    subs.add_subscriber(engine, "ana@example.com", list_slug="weekly", name="Ana", attributes={"city": "Porto"}, source="signup")
    page = client.get("/admin/subscribers/person", params={"email": "ANA@example.com"}).text
    assert "signup" in page and 'id="subscriptions"' in page and "confirmed 20" in page and "city = Porto" in page
    assert "Campaigns received" in page and "danger-zone" in page and "Unsubscribe from every list" in page
    t = token(client, "/admin/subscribers/person?email=ana@example.com")

    # A bad edit: the form comes back with what was typed and the reason, nothing stored.
    r = client.post("/admin/subscribers/person/edit", data={"email": "ana@example.com", "name": "Ana Silva",
                                                            "attributes": "city = Lisboa\nbroken line", "csrf_token": t})
    assert r.status_code == 400 and "Not saved: attributes, line 2" in r.text and "broken line" in r.text
    assert 'value="Ana Silva"' in r.text and 'aria-label="Admin"' in r.text
    assert subs.get_subscriber(engine, "ana@example.com").attributes == {"city": "Porto"}
    r = client.post("/admin/subscribers/person/edit", data={"email": "ana@example.com", "name": "Ana Silva",
                                                            "attributes": "city = Lisboa\nvip = true", "csrf_token": t})
    assert flash_after(client, r) == "ok: Saved."
    assert subs.get_subscriber(engine, "ana@example.com").attributes == {"city": "Lisboa", "vip": True}

    r = client.post("/admin/subscribers/person/lists", data={"email": "ana@example.com", "action": "add", "list": "news", "csrf_token": t})
    assert "is on news (unconfirmed)" in flash_after(client, r)
    assert "Send confirmation" in client.get("/admin/subscribers/person", params={"email": "ana@example.com"}).text
    r = client.post("/admin/subscribers/person/lists", data={"email": "ana@example.com", "action": "remove", "list": "news", "csrf_token": t})
    assert "removed from news" in flash_after(client, r)
    assert subs.get_subscriber(engine, "ana@example.com").lists == {"weekly": "active"}

    ask = client.get("/admin/subscribers/unsubscribe", params={"email": "ana@example.com", "list": "weekly"})
    assert ask.status_code == 200 and "Unsubscribe ana@example.com from weekly?" in ask.text
    assert subs.get_subscriber(engine, "ana@example.com").lists == {"weekly": "active"}  # asking changes nothing
    r = client.post("/admin/subscribers/unsubscribe", data={"email": "ana@example.com", "list": "weekly", "back": "person", "csrf_token": t})
    assert r.headers["location"].startswith("/admin/subscribers/person?")
    assert subs.get_subscriber(engine, "ana@example.com").lists == {"weekly": "unsubscribed"}
    # Someone who left comes back only with fresh consent: the page says so, inside the admin.
    r = client.post("/admin/subscribers/person/lists", data={"email": "ana@example.com", "action": "add", "list": "weekly", "csrf_token": t})
    assert r.status_code == 409 and "Lists not changed" in r.text and "fresh consent" in r.text and 'aria-label="Admin"' in r.text

    missing = client.get("/admin/subscribers/person", params={"email": "nobody@example.com"})
    assert missing.status_code == 404 and 'aria-label="Admin"' in missing.text and "/admin/" in missing.text


def test_export_follows_the_filters(client, engine):
    subs.add_subscriber(engine, "ana@example.com", list_slug="weekly", name="=SUM(A1)")
    subs.add_subscriber(engine, "bo@example.com", list_slug="weekly")
    subs.add_subscriber(engine, "cy@example.org", list_slug="news")
    r = client.get("/admin/subscribers/export", params={"list": "weekly", "q": "ana"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="subscribers-weekly.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [row[0] for row in rows[1:]] == ["ana@example.com"] and rows[1][1] == "'=SUM(A1)"  # guarded cell
    everyone = list(csv.reader(io.StringIO(client.get("/admin/subscribers/export").text)))
    assert len(everyone) == 4
    assert 'href="/admin/subscribers/export?q=ana&amp;list=weekly"' in client.get("/admin/subscribers", params={"q": "ana", "list": "weekly"}).text


def test_bulk_actions_ask_first_then_apply_the_rules(client, engine):
    ids = [subs.add_subscriber(engine, f"r{i}@example.com", list_slug="weekly").subscriber_id for i in range(4)]
    t = token(client)
    r = client.post("/admin/subscribers/bulk", data={"csrf_token": t, "action": "add", "target": "news", "scope": "selected",
                                                     "id": [str(i) for i in ids[:2]]})
    assert r.status_code == 200 and "This concerns <strong>2</strong>" in r.text
    assert subs.get_subscriber(engine, "r0@example.com").lists == {"weekly": "active"}  # not yet
    r = client.post("/admin/subscribers/bulk", data={"csrf_token": t, "action": "add", "target": "news", "scope": "selected",
                                                     "id": [str(i) for i in ids[:2]], "confirm": "1"})
    assert flash_after(client, r) == "ok: 2 of 2 added to news."
    assert subs.get_subscriber(engine, "r1@example.com").lists == {"news": "unconfirmed", "weekly": "active"}
    # Everyone matching the filter.
    data = {"csrf_token": t, "action": "unsubscribe", "target": "weekly", "scope": "filter", "q": "r", "list": "weekly", "status": "active"}
    assert "This concerns <strong>4</strong>" in client.post("/admin/subscribers/bulk", data=data).text
    r = client.post("/admin/subscribers/bulk", data={**data, "confirm": "1"})
    assert "4 of 4 unsubscribed from weekly" in flash_after(client, r)
    assert subs.get_subscriber(engine, "r3@example.com").lists == {"weekly": "unsubscribed"}
    # Nothing ticked, or no list: the listing with the reason.
    r = client.post("/admin/subscribers/bulk", data={"csrf_token": t, "action": "add", "target": "news", "scope": "selected"})
    assert r.status_code == 400 and "Nothing changed: tick at least one person" in r.text
    r = client.post("/admin/subscribers/bulk", data={"csrf_token": t, "action": "remove", "scope": "filter"})
    assert r.status_code == 400 and "choose the list to remove them from" in r.text
    assert client.post("/admin/subscribers/bulk", data={"action": "add", "scope": "filter", "target": "news", "confirm": "1"}).status_code == 403


def test_import_with_mapping_rejects_file_and_confirmations(tmp_path, engine):
    """A Mailchimp export into a double-opt-in list: mapped by default, kept confirmed where the
    file says subscribed... then confirmations, refused over SMTP with a local base_url as the
    CLI refuses them, sent once the check passes (outbox)."""
    url = engine.url.render_as_string(hide_password=False)
    smtp_config = Config(database_url=url, secret_key=SECRET, base_url="http://127.0.0.1:8000",
                         smtp={"main": SMTPServer(name="main", url="smtp://127.0.0.1:9")})
    mailchimp = ("Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_IP,LEID\n"
                 "ana@example.com,Ana,Silva,2,203.0.113.9,1\nnot-an-address,X,Y,1,,2\nbo@example.com,Bo,,1,,3\n")
    with client_for(smtp_config, engine) as client:
        t = token(client, "/admin/subscribers/import")
        r = client.post("/admin/subscribers/import", data={"list": "news", "csrf_token": t},
                        files={"file": ("members.csv", mailchimp.encode(), "text/csv")})
        key_url = r.headers["location"]
        page = client.get(key_url).text
        assert 'id="detected">Mailchimp audience export' in page
        selected = dict(re.findall(r'<select id="(map_\d+)" name="map_\d+">.*?<option value="([^"]+)" selected', page, re.S))
        assert selected == {"map_0": "email", "map_1": "first_name", "map_2": "last_name", "map_3": "-", "map_4": "-", "map_5": "-"}
        # Mapping two columns to the email address: the mapping comes back with the choices made.
        r = client.post(key_url, data={"csrf_token": t, **selected, "map_1": "email", "list": "news", "confirmed": "keep"})
        assert r.status_code == 400 and "Nothing was imported" in r.text and 'value="keep" checked' in r.text
        assert subs.list_subscribers(engine).total == 0
        r = client.post(key_url, data={"csrf_token": t, **selected, "list": "news", "confirmed": "ask"})
        result = client.get(r.headers["location"]).text
        assert re.search(r"added</th><td>2 \(2 awaiting confirmation\)", result) and "Send confirmations" in result
        assert "import:members.csv sha256:" in result
        assert subs.get_subscriber(engine, "ana@example.com").name == "Ana Silva"
        rejects = client.get(key_url + "/rejects.csv")
        assert rejects.status_code == 200 and "not-an-address" in rejects.text and "members.rejects.csv" in rejects.headers["content-disposition"]
        assert client.post(key_url, data={"csrf_token": t, **selected, "list": "news"}).status_code == 303  # done: no second import

        r = client.post("/admin/subscribers/send-confirmations", data={"list": "news", "csrf_token": t})
        message = flash_after(client, r)
        assert message.startswith("error: No confirmation email sent: base_url is http://127.0.0.1:8000")
    outbox = tmp_path / "outbox"
    local = Config(database_url=url, secret_key=SECRET, base_url="http://127.0.0.1:8000", outbox=str(outbox))
    with client_for(local, engine) as client:  # no SMTP server: the outbox, which the check lets through
        t = token(client)
        r = client.post("/admin/subscribers/send-confirmations", data={"list": "news", "csrf_token": t})
        assert flash_after(client, r) == "ok: Confirmation emails for news: 2 sent, 0 failed, 0 already mailed, 0 suppressed."
    assert len(list(outbox.glob("*.eml"))) == 2


def test_import_keeps_confirmed_rows_on_request(client, engine):
    t = token(client, "/admin/subscribers/import")
    r = client.post("/admin/subscribers/import", data={"list": "news", "csrf_token": t},
                    files={"file": ("old.csv", b"email,status\nana@example.com,subscribed\n", "text/csv")})
    r = client.post(r.headers["location"], data={"csrf_token": t, "map_0": "email", "map_1": "status", "list": "news", "confirmed": "keep"})
    page = client.get(r.headers["location"]).text
    assert "Send confirmations" not in page and "(confirmed in the file)" in page
    assert subs.get_subscriber(engine, "ana@example.com").lists == {"news": "active"}
    assert client.get("/admin/subscribers/import/not-a-key").status_code == 404


def test_lists_suppressions_and_settings(tmp_path, engine):
    toml = tmp_path / "n.toml"
    toml.write_text(f'database_url = "{engine.url.render_as_string(hide_password=False)}"\nnewsletter_name = "Filed"\n'
                    '[smtp.main]\nurl = "smtp://127.0.0.1:2525"\n')
    config = load_config(toml, {"timezone": "Europe/Paris"},
                         environ={"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_ADMIN_TOKEN": "tok-123456789",
                                  "NEWSLETTER_BASE_URL": "https://news.example.org",
                                  "NEWSLETTER_EVENT_WEBHOOKS": "https://hooks.example.org/in?key=sekrit",
                                  "NEWSLETTER_EVENT_WEBHOOK_SECRET": "whsec-0123456789abcdef"})
    with client_for(config, engine) as client:
        headers = {"Authorization": "Bearer tok-123456789"}
        page = client.get("/admin/settings", headers=headers).text
        row = lambda key: re.search(rf"<code>{key}</code></th><td>(.*?)</td>\s*<td>(.*?)</td>", page, re.S).groups()  # noqa: E731
        assert row("newsletter_name") == ("Filed", "TOML file")
        assert row("base_url") == ("https://news.example.org", "environment NEWSLETTER_BASE_URL")
        assert row("timezone") == ("Europe/Paris", "command-line flag")
        assert row("concurrency") == ("4", '<span class="muted">default</span>')
        assert "set" in row("secret_key")[0] and "not set" in row("admin_password")[0] and ">set<" in row("admin_token")[0]
        assert SECRET not in page and "tok-123456789" not in page and "sekrit" not in page and "whsec" not in page
        assert "smtp://127.0.0.1:2525" in row("smtp.main")[0]

    with client_for(Config(database_url=config.database_url, secret_key=SECRET), engine) as client:
        t = token(client, "/admin/lists")
        r = client.post("/admin/lists", data={"slug": "Bad Slug", "name": "Typed name", "csrf_token": t})
        assert r.status_code == 400 and "List not created" in r.text and 'value="Typed name"' in r.text
        r = client.post("/admin/lists/news", data={"name": "News (weekly)", "description": "Every Friday", "opt_in": "single",
                                                   "language": "fr", "csrf_token": t})
        assert flash_after(client, r) == "ok: List news saved."
        lst = store_lists.get_list(engine, "news")
        assert (lst.name, lst.description, lst.opt_in, lst.language) == ("News (weekly)", "Every Friday", "single", "fr")
        r = client.post("/admin/lists/news", data={"name": "x", "language": "xx", "opt_in": "single", "csrf_token": t})
        assert r.status_code == 400 and "Not saved" in r.text and 'value="xx"' in r.text
        assert client.get("/admin/lists/nope").status_code == 404

        r = client.post("/admin/suppressions", data={"value": "spam@example.com", "reason": "asked by phone", "csrf_token": t})
        assert "spam@example.com is suppressed" in flash_after(client, r)
        r = client.post("/admin/suppressions", data={"value": "not a domain!", "reason": "x", "csrf_token": t})
        assert r.status_code == 400 and "Not added" in r.text and 'value="not a domain!"' in r.text
        ask = client.get("/admin/suppressions/remove", params={"value": "spam@example.com"})
        assert ask.status_code == 200 and "asked by phone" in ask.text
        assert supp.find_suppression(engine, "spam@example.com") is not None  # asking changes nothing
        r = client.post("/admin/suppressions/remove", data={"value": "spam@example.com", "csrf_token": t})
        assert "no longer suppressed" in flash_after(client, r)
        assert supp.find_suppression(engine, "spam@example.com") is None
