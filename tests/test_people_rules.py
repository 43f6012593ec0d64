"""The rules behind the admin's people pages, on SQLite and PostgreSQL: other tools' export
formats recognised and mapped (store/import_formats.py) through the real import, first/last
name, opt-out flag columns, "subscribed" rows kept confirmed or asked again on a double-opt-in
list; bulk actions (store/bulk.py) under the consent rule; a person's profile and edit; where
each config value came from."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cli_runner import run_main
from newsletter.errors import InvalidInput, StateError
from newsletter.store import lists, subscribers, suppressions
from newsletter.store.bulk import Selection, run_bulk, send_confirmations_to
from newsletter.store.db import get_engine, transaction, upgrade
from newsletter.store.import_formats import LISTMONK, MAILCHIMP, SUBSTACK, detect_format, suggested_mapping
from newsletter.store.import_reading import EXPORT_COLUMNS, ImportOptions
from newsletter.store.importer import import_file
from newsletter.store.lookups import subs_t

MAILCHIMP_HEAD = ("Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,"
                  "CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS")
MAILCHIMP_UNSUB_HEAD = MAILCHIMP_HEAD + ",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER"
LISTMONK_HEAD = "uuid,email,name,attributes,status,created_at,updated_at"
SUBSTACK_HEAD = "email,active_subscription,expiry,plan,email_disabled,created_at"


def test_formats_are_recognised_by_their_header():
    assert detect_format(MAILCHIMP_HEAD.split(",")) is MAILCHIMP
    assert detect_format(MAILCHIMP_UNSUB_HEAD.split(",")) is MAILCHIMP
    assert detect_format(LISTMONK_HEAD.split(",")) is LISTMONK
    assert detect_format(["email", "name", "attributes"]) is LISTMONK  # listmonk's import template
    assert detect_format(SUBSTACK_HEAD.split(",")) is SUBSTACK
    for plain in (["email", "name", "city"], ["Email Address", "Name"], ["email", "status", "created_at"]):
        assert detect_format(plain) is None, plain
    fmt, targets = suggested_mapping(MAILCHIMP_UNSUB_HEAD.split(","), EXPORT_COLUMNS)
    mapped = dict(zip(MAILCHIMP_UNSUB_HEAD.split(","), targets))
    assert fmt is MAILCHIMP
    assert (mapped["Email Address"], mapped["First Name"], mapped["Last Name"]) == ("email", "first_name", "last_name")
    assert mapped["UNSUB_TIME"] == "unsubscribed-if-set" and mapped["OPTIN_IP"] == "-" and mapped["LEID"] == "-"
    assert mapped["Address"] == "attr:Address" and mapped["TAGS"] == "attr:tags"
    # A plain file: the aliases, a second "name" column kept as an attribute, our export's columns ignored.
    fmt, targets = suggested_mapping(["E-mail", "Name", "full name", "Surname", "created_at", "City"], EXPORT_COLUMNS)
    assert fmt is None and targets == ["email", "name", "attr:full name", "last_name", "-", "attr:City"]


@pytest.fixture
def engine(db_url):
    upgrade(db_url)
    engine = get_engine(db_url)
    lists.create_list(engine, "news", "News", opt_in="double")
    lists.create_list(engine, "open", "Open", opt_in="single")
    yield engine
    engine.dispose()


def _import(engine, tmp_path, text: str, list_slug="news", name="people.csv", **kw):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return import_file(engine, path, ImportOptions(list_slug=list_slug, **kw), reader_process=False)


def _sub(engine, email: str, slug: str):
    sid = subscribers.get_subscriber(engine, email).id
    lid = lists.get_list(engine, slug).id
    with transaction(engine) as conn:
        return conn.execute(select(subs_t).where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lid)).mappings().one()


def test_a_mailchimp_export_imports_with_names_joined_and_opt_outs_kept(engine, tmp_path):
    blank = "," * (MAILCHIMP_HEAD.count(","))
    row = lambda email, first, last, rating="2", tags='"a,b"': (  # noqa: E731
        f'{email},{first},{last},"1 Main St",,{rating},2024-01-02 10:00:00,203.0.113.9,2024-01-02 10:05:00,203.0.113.9,'
        f"48.1,11.5,1,2,Europe/Berlin,DE,BY,2024-03-01,123,abc,,{tags}")
    assert blank  # the header has every Mailchimp column
    report = _import(engine, tmp_path, MAILCHIMP_HEAD + "\n" + row("ana@example.com", "Ana", "Silva") + "\n"
                     + row("bo@example.com", "", "Berg") + "\n")
    assert (report.added, report.unconfirmed, report.invalid) == (2, 2, 0)
    ana = subscribers.get_subscriber(engine, "ana@example.com")
    assert ana.name == "Ana Silva" and subscribers.get_subscriber(engine, "bo@example.com").name == "Berg"
    assert ana.attributes == {"Address": "1 Main St", "optin_time": "2024-01-02 10:00:00",
                              "confirm_time": "2024-01-02 10:05:00", "timezone": "Europe/Berlin", "tags": "a,b"}
    assert "203.0.113.9" not in repr(ana)  # the sign-up IP is not kept
    # The unsubscribed audience: its people are recorded as having left, the active one too.
    unsub = MAILCHIMP_UNSUB_HEAD + "\n" + row("ana@example.com", "Ana", "Silva") + ",2024-05-01 09:00:00,Weekly,7,,\n" \
        + row("cy@example.com", "Cy", "") + ",2024-05-02 09:00:00,Weekly,7,,\n"
    report = _import(engine, tmp_path, unsub, name="unsubscribed.csv")
    assert report.recorded_unsubscribed == 2 and report.added == 0
    assert subscribers.get_subscriber(engine, "ana@example.com").lists == {"news": "unsubscribed"}
    assert subscribers.get_subscriber(engine, "cy@example.com").lists == {"news": "unsubscribed"}


def test_listmonk_and_substack_exports(engine, tmp_path):
    listmonk = (LISTMONK_HEAD + "\n"
                '5c1e,ana@example.com,Ana,"{""city"": ""Porto"", ""plan"": {""tier"": 2}}",enabled,2024-01-01,2024-01-02\n'
                "6d2f,bo@example.com,Bo,{},blocklisted,2024-01-01,2024-01-02\n"
                "7e3a,cy@example.com,Cy,not json,disabled,2024-01-01,2024-01-02\n")
    report = _import(engine, tmp_path, listmonk, list_slug="open", name="listmonk.csv")
    assert (report.added, report.recorded_unsubscribed, report.invalid) == (1, 2, 0)
    ana = subscribers.get_subscriber(engine, "ana@example.com")
    assert ana.attributes == {"city": "Porto", "plan": {"tier": 2}} and ana.lists == {"open": "active"}
    assert subscribers.get_subscriber(engine, "bo@example.com").lists == {"open": "unsubscribed"}
    assert subscribers.get_subscriber(engine, "cy@example.com").attributes == {"attributes": "not json"}

    substack = (SUBSTACK_HEAD + "\n" "di@example.com,true,2025-01-01,paid,false,2023-05-01\n"
                "ed@example.com,false,,free,true,2023-05-02\n")
    report = _import(engine, tmp_path, substack, list_slug="open", name="substack.csv")
    assert (report.added, report.recorded_unsubscribed) == (1, 1)
    assert subscribers.get_subscriber(engine, "di@example.com").attributes == {
        "active_subscription": "true", "expiry": "2025-01-01", "plan": "paid"}
    assert subscribers.get_subscriber(engine, "ed@example.com").lists == {"open": "unsubscribed"}


def test_subscribed_rows_on_a_double_opt_in_list_kept_confirmed_or_asked_again(engine, tmp_path):
    text = "email,status\nana@example.com,subscribed\nbo@example.com,\ncy@example.com,unsubscribed\n"
    report = _import(engine, tmp_path, text, keep_confirmed=True, source="import:people.csv sha256:abc (confirmed in the file)")
    assert (report.added, report.unconfirmed, report.recorded_unsubscribed) == (2, 1, 1)
    ana = _sub(engine, "ana@example.com", "news")
    assert ana["status"] == "active" and ana["confirmed_at"] is not None and ana["source"].endswith("(confirmed in the file)")
    assert _sub(engine, "bo@example.com", "news")["status"] == "unconfirmed"  # no status: asked as usual
    # Asked again (the default): the same file leaves everyone unconfirmed on a fresh list.
    lists.create_list(engine, "other", "Other", opt_in="double")
    report = _import(engine, tmp_path, text, list_slug="other")
    assert (report.added, report.unconfirmed) == (2, 2)
    assert _sub(engine, "ana@example.com", "other")["status"] == "unconfirmed"
    # A file's "subscribed" is no fresh consent: someone who left is not put back.
    report = _import(engine, tmp_path, "email,status\ncy@example.com,subscribed\n", keep_confirmed=True)
    assert report.skipped_unsubscribed == 1 and _sub(engine, "cy@example.com", "news")["status"] == "unsubscribed"


def test_an_explicit_mapping_beats_the_detected_one_and_bad_targets_are_one_line(engine, tmp_path):
    text = "Correo,Nombre,Apellido\nana@example.com,Ana,Silva\n"
    report = _import(engine, tmp_path, text, list_slug="open",
                     mapping={"Correo": "email", "Nombre": "first_name", "Apellido": "last_name"})
    assert report.added == 1 and subscribers.get_subscriber(engine, "ana@example.com").name == "Ana Silva"
    with pytest.raises(InvalidInput, match=r"--map Nombre=nickname: the field must be"):
        _import(engine, tmp_path, text, list_slug="open", mapping={"Correo": "email", "Nombre": "nickname"})
    with pytest.raises(InvalidInput, match="two columns map to 'email'"):
        _import(engine, tmp_path, text, list_slug="open", mapping={"Correo": "email", "Nombre": "email"})


def test_the_cli_import_maps_a_mailchimp_export_by_default(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    engine = get_engine(url)
    lists.create_list(engine, "news", "News", opt_in="single")
    path = tmp_path / "members.csv"
    path.write_text("Email Address,First Name,Last Name,MEMBER_RATING,LEID\nana@example.com,Ana,Silva,3,99\n", encoding="utf-8")
    r = run_main(monkeypatch, capsys, ["--db", url, "subscribers", "import", str(path), "--list", "news"])
    assert r.returncode == 0, r.stderr
    ana = subscribers.get_subscriber(engine, "ana@example.com")
    assert ana.name == "Ana Silva" and ana.attributes == {}


# --- bulk actions ----------------------------------------------------------------------------------


def test_bulk_add_remove_unsubscribe_follow_the_consent_rule(engine):
    for e in ("a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@other.org"):
        subscribers.add_subscriber(engine, e, list_slug="open")
    subscribers.add_subscriber(engine, "b@example.com", list_slug="news")
    from newsletter.store.leaving import unsubscribe

    unsubscribe(engine, "c@example.com", "open")
    subscribers.add_subscriber(engine, "c@example.com", list_slug="news")
    unsubscribe(engine, "c@example.com", "news")  # c left news: a bulk add does not put them back
    suppressions.suppress(engine, "other.org")
    everyone = Selection(list_slug="open")
    r = run_bulk(engine, "add", everyone, list_slug="news")
    assert (r.selected, r.changed, r.unchanged, r.skipped_left, r.skipped_suppressed) == (5, 2, 1, 1, 1)
    assert subscribers.get_subscriber(engine, "a@example.com").lists == {"news": "unconfirmed", "open": "active"}
    assert subscribers.get_subscriber(engine, "c@example.com").lists == {"news": "unsubscribed", "open": "unsubscribed"}
    assert "news" not in subscribers.get_subscriber(engine, "e@other.org").lists

    # Remove: as if never added; whoever left stays recorded as having left.
    ids = [subscribers.get_subscriber(engine, e).id for e in ("a@example.com", "c@example.com")]
    r = run_bulk(engine, "remove", Selection(ids=ids), list_slug="news")
    assert (r.changed, r.unchanged) == (1, 1)
    assert subscribers.get_subscriber(engine, "a@example.com").lists == {"open": "active"}
    assert subscribers.get_subscriber(engine, "c@example.com").lists["news"] == "unsubscribed"

    # Unsubscribe everyone matching a search, from every list.
    r = run_bulk(engine, "unsubscribe", Selection(search="example.com", status="active"))
    assert (r.selected, r.changed) == (3, 3)  # a, b, d (c is out everywhere)
    assert subscribers.get_subscriber(engine, "b@example.com").lists == {"news": "unsubscribed", "open": "unsubscribed"}
    assert subscribers.get_subscriber(engine, "e@other.org").lists == {"open": "active"}

    with pytest.raises(InvalidInput, match="choose the list"):
        run_bulk(engine, "add", everyone)
    with pytest.raises(InvalidInput, match="unknown bulk action"):
        run_bulk(engine, "delete", everyone)


def test_bulk_confirmations_mail_once_and_skip_suppressed(engine):
    from newsletter.config import Config

    for e in ("a@example.com", "b@example.com", "c@example.com"):
        subscribers.add_subscriber(engine, e, list_slug="news")
    subscribers.add_subscriber(engine, "d@example.com", list_slug="open")
    suppressions.suppress(engine, "c@example.com")
    sent: list[str] = []

    def send(to, subject, html, text):
        assert "/confirm/" in text
        sent.append(to)

    config = Config(database_url="sqlite://", secret_key="test-secret-key-0123456789", base_url="https://news.example.org")
    everyone = Selection(search="example.com")
    r = send_confirmations_to(engine, config, everyone, send)
    assert sorted(sent) == ["a@example.com", "b@example.com"] and (r.changed, r.skipped_suppressed) == (2, 1)
    r = send_confirmations_to(engine, config, everyone, send, list_slug="news")
    assert len(sent) == 2 and r.unchanged == 2  # already mailed: the CLI's --remind is for reminders
    assert _sub(engine, "a@example.com", "news")["confirmation_sent_at"] is not None
    with pytest.raises(StateError, match="single opt-in"):
        send_confirmations_to(engine, config, everyone, send, list_slug="open")


# --- one person ------------------------------------------------------------------------------------


def test_profile_gathers_the_consent_trail_and_edit_replaces_attributes(engine):
    from newsletter.store.profile import edit_subscriber, format_attributes, parse_attributes, profile

    subscribers.add_subscriber(engine, "Ana@Example.com", list_slug="news", name="Ana", attributes={"city": "Porto", "n": 3},
                               source="signup")
    p = profile(engine, "ana@example.com")
    assert p.email == "Ana@example.com" and p.consent_source == "signup" and p.consent_at is not None
    (s,) = p.subscriptions
    assert (s.slug, s.status, s.opt_in, s.confirmed_at, s.confirmation_sent_at) == ("news", "unconfirmed", "double", None, None)
    assert p.received == [] and p.received_total == 0 and p.suppressed is None and p.pause_until is None
    text = format_attributes({"city": "Porto", "n": 3, "code": "007", "flag": True, "tags": ["a", "b"], "note": "two\nlines"})
    assert parse_attributes(text) == {"city": "Porto", "n": 3, "code": "007", "flag": True, "tags": ["a", "b"], "note": "two\nlines"}
    assert edit_subscriber(engine, "ana@example.com", name="Ana Silva", attributes=parse_attributes("city = Lisboa\n\n"))
    row = subscribers.get_subscriber(engine, "ana@example.com")
    assert (row.name, row.attributes) == ("Ana Silva", {"city": "Lisboa"})
    assert not edit_subscriber(engine, "ana@example.com", name="Ana Silva", attributes={"city": "Lisboa"})
    with pytest.raises(InvalidInput, match="attributes, line 2: write name = value"):
        parse_attributes("city = Porto\nno equals sign")
    with pytest.raises(InvalidInput, match="the name"):
        edit_subscriber(engine, "ana@example.com", name="Ana\x07", attributes={})
    assert subscribers.get_subscriber(engine, "ana@example.com").name == "Ana Silva"
    suppressions.suppress(engine, "example.com", reason="asked")
    assert profile(engine, "ana@example.com").suppressed == "domain example.com: asked"


def test_config_records_where_each_value_came_from(tmp_path):
    from newsletter.config import load_config

    toml = tmp_path / "n.toml"
    toml.write_text('newsletter_name = "From the file"\nbase_url = "https://file.example"\n[smtp.main]\nurl = "smtp://127.0.0.1:2525"\n')
    cfg = load_config(toml, {"timezone": "Europe/Paris", "rate": None},
                      environ={"NEWSLETTER_BASE_URL": "https://env.example", "NEWSLETTER_SECRET_KEY": "k" * 32})
    assert cfg.origins == {"newsletter_name": "file", "base_url": "env NEWSLETTER_BASE_URL", "smtp.main": "file",
                           "secret_key": "env NEWSLETTER_SECRET_KEY", "timezone": "flag"}
    assert cfg.base_url == "https://env.example" and " origins=" not in repr(cfg)
