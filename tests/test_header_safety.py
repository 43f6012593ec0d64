"""Issue 11, items 9 and 10: no header injection through any message builder, decoded values too.

``=?utf-8?q?x=0D=0ABcc:_all@evil.example?=`` is plain ASCII, yet ``EmailMessage`` decodes it when
a header is set and writes a real ``Bcc:`` line. Every builder is tried with it (and its B-encoded,
U+2028, NEL, VT and FS relatives): compose's digest.eml, campaign copies (MessageFactory), one-off
sends (confirmations), the admin's "Send a test". Untrusted text (an article title, a reader's
name) must come out as harmless text; values the publisher wrote are refused with one line.
Item 10: ``unsubscribe_mailto`` and ``--header`` are refused at config load / option parsing.
"""

from __future__ import annotations

from dataclasses import astuple

from cli_runner import run_main

import email
import email.policy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select

from dispatch_helpers import SECRET, add_people, make_campaign, make_config, setup_db
from newsletter.compose import ComposeOptions, compose, write_digest
from newsletter.config import Config, SMTPServer
from newsletter.dispatch.campaigns import create_campaign
from newsletter.dispatch.oneoff import send_one, send_test
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import InvalidInput
from newsletter.store import queries as q
from newsletter.store.models import Subscriber, Subscription, utcnow

ATTACK = "=?utf-8?q?x=0D=0ABcc:_all@evil.example?="
ATTACKS = [
    ATTACK,
    "=?UTF-8?B?eA0KQmNjOiBhbGxAZXZpbC5leGFtcGxl?=",  # the same, base64
    "=?utf-8?q?x=E2=80=A8Bcc:_all@evil.example?=",  # U+2028 LINE SEPARATOR
    "=?iso-8859-1?q?x=85Bcc:_all@evil.example?=",  # NEL
    "=?utf-8?q?x=0BBcc:_all@evil.example?=",  # VT
    "=?utf-8?q?x=1CBcc:_all@evil.example?=",  # FS
    "=?utf-8*en?Q?x=0ABcc:_all@evil.example?=",  # RFC 2231 language suffix
]
# The same attack with only atext characters, as a reader's name can hold it unquoted.
ATEXT_ATTACK = "=?utf-8?q?x=0D=0ABcc=3A_all=40evil.example?="
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title><link>https://feed.example/</link>
<description>d</description>
<item><title>{title}</title><link>https://feed.example/a</link><dc:creator>{title}</dc:creator>
<pubDate>Mon, 23 Nov 2026 08:00:00 +0000</pubDate><description>Body</description></item>
</channel></rss>
"""


def assert_no_injection(data: bytes, expected_rcpt: str | None = None) -> email.message.EmailMessage:
    """No Bcc (or any header) smuggled in, in the raw bytes or once every header is decoded."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    names = [ln.split(b":", 1)[0].strip().lower() for ln in re.split(rb"\r?\n", head) if ln and ln[:1] not in b" \t"]
    assert b"bcc" not in names and names.count(b"to") <= 1 and names.count(b"subject") == 1, head
    m = email.message_from_bytes(data, policy=email.policy.default)
    assert m.get_all("Bcc") is None
    for part in m.walk():
        for k, v in part.items():
            assert not UNSAFE.search(str(v)), f"{k}: {str(v)!r}"
    if expected_rcpt:
        assert [a.addr_spec for a in m["To"].addresses] == [expected_rcpt]
    return m


def shown(value: str) -> str:
    return value.replace("\u2060", "")


@pytest.fixture
def env(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    yield engine, config
    engine.dispose()


def hostile_feed(tmp_path: Path, title: str) -> Path:
    p = tmp_path / "feed.xml"
    p.write_text(FEED.format(title=title), encoding="utf-8")
    return p


def add_named(engine, slug: str, email_addr: str, name: str) -> None:
    """One active subscriber with this (hostile) name on list ``slug``."""
    from newsletter.errors import NotFound
    from newsletter.store.lists import create_list, get_list

    try:
        lid = get_list(engine, slug).id
    except NotFound:
        lid = create_list(engine, slug, slug.title()).id
    now = utcnow()
    with engine.begin() as conn:
        sid = conn.execute(insert(Subscriber.__table__).values(email=email_addr, email_key=email_addr, name=name,
                                                               attributes={}, created_at=now, updated_at=now)).inserted_primary_key[0]
        conn.execute(insert(Subscription.__table__).values(subscriber_id=sid, list_id=lid,
                                                           status="active", created_at=now, updated_at=now))


# --- compose: digest.eml -----------------------------------------------------------------------
@pytest.mark.parametrize("attack", ATTACKS)
def test_digest_eml_from_a_hostile_article_title_has_no_injected_header(tmp_path, attack):
    digest = compose([str(hostile_feed(tmp_path, attack))], Config())
    write_digest(digest, tmp_path / "out")
    m = assert_no_injection((tmp_path / "out" / "digest.eml").read_bytes())
    assert attack in shown(m["Subject"]), "the title is shown as written, not decoded"


@pytest.mark.parametrize("attack", ATTACKS)
def test_compose_refuses_publisher_values_hiding_a_line_break(tmp_path, attack):
    feed = hostile_feed(tmp_path, "A plain title")
    with pytest.raises(InvalidInput, match="--subject"):
        compose([str(feed)], Config(), ComposeOptions(subject="Issue " + attack))
    with pytest.raises(InvalidInput, match="from_address"):
        compose([str(feed)], Config(from_address=f"{attack} <news@example.org>"))
    digest = compose([str(feed)], Config())
    digest.subject = "Issue " + attack  # e.g. a digest.json edited by hand
    with pytest.raises(InvalidInput, match="Subject"):
        write_digest(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- campaigns: MessageFactory -----------------------------------------------------------------
def test_campaign_copies_from_a_hostile_title_and_reader_names_have_no_injected_header(env, tmp_path, smtp_server):
    engine, config = env
    add_named(engine, "weekly", "quoted@example.com", ATTACK)
    add_named(engine, "weekly", "atext@example.com", ATEXT_ATTACK)
    add_named(engine, "weekly", "b64@example.com", ATTACKS[1] + " Smith")
    add_named(engine, "weekly", "ctl@example.com", "Ana\x1cBcc: x@evil.example\u2028")
    digest = compose([str(hostile_feed(tmp_path, ATTACK))], config)
    for subject in (None, "For *|NAME|*"):  # from the article title; with the reader's name in it
        c = create_campaign(engine, digest, ["weekly"], config, subject=subject)
        send_campaign(engine, c.id, config, smtp=smtp_server.url)
    got = smtp_server.received()
    assert sorted(r for x in got for r in x.rcpt_tos) == sorted(
        ["atext@example.com", "b64@example.com", "ctl@example.com", "quoted@example.com"] * 2)
    for x in got:
        m = assert_no_injection(x.data, x.rcpt_tos[0])
        assert ATTACK in shown(m["Subject"]) or m["Subject"].startswith("For ")
        assert "evil.example" not in str(m["To"].addresses[0].addr_spec)


@pytest.mark.parametrize("attack", ATTACKS)
def test_campaign_refuses_publisher_values_hiding_a_line_break(env, attack):
    engine, config = env
    add_people(engine, "weekly", 1)
    for kw, what in (({"subject": "Hi " + attack}, "Subject"), ({"reply_to": f"{attack} <r@example.org>"}, "Reply-To"),
                     ({"from_address": f"{attack} <n@example.org>"}, "From"), ({"headers": {"X-Tag": attack}}, "X-Tag")):
        with pytest.raises(InvalidInput, match=what):
            make_campaign(engine, config, **kw)
    with engine.begin() as conn:
        assert conn.execute(select(q.campaigns.c.id)).first() is None


# --- one-off sends: confirmations, test sends -------------------------------------------------
@pytest.mark.parametrize("attack", ATTACKS)
def test_one_off_sends_refuse_hidden_line_breaks(env, smtp_server, attack):
    _, config = env
    for kw, what in (({"subject": "Hi " + attack}, "Subject"), ({"to": f"{attack} <a@example.com>"}, "To"),
                     ({"headers": {"X-A": attack}}, "X-A"), ({"from_address": f"{attack} <n@example.org>"}, "From"),
                     ({"reply_to": f"{attack} <n@example.org>"}, "Reply-To")):
        args = {"to": "a@example.com", "subject": "Hello", **kw}
        with pytest.raises(InvalidInput, match=what):
            send_one(config, args.pop("to"), args.pop("subject"), None, "text", smtp=smtp_server.url, **args)
    assert smtp_server.received() == []


def test_confirmation_mail_to_a_hostile_name_is_safe(env, smtp_server):
    from newsletter.store.optin import confirmation_message

    _, config = env
    msg = confirmation_message(config, email="new@example.com", list_name="Weekly", confirm_url="https://news.example.org/c/t",
                               name=ATTACK)
    send_one(config, "new@example.com", msg.subject, msg.html, msg.text, smtp=smtp_server.url,
             headers={"Auto-Submitted": "auto-generated"})
    assert_no_injection(smtp_server.received()[0].data, "new@example.com")
    with pytest.raises(InvalidInput, match="Subject"):
        bad = confirmation_message(config, email="new@example.com", list_name=ATTACK, confirm_url="https://x.example/c")
        send_one(config, "new@example.com", bad.subject, bad.html, bad.text, smtp=smtp_server.url)


def test_admin_send_a_test_is_safe_for_campaigns_and_composed_digests(env, tmp_path, smtp_server):
    from newsletter.web import library
    from newsletter.web import preview as pv

    engine, config = env
    add_named(engine, "weekly", "tester@example.com", ATEXT_ATTACK)
    digest = compose([str(hostile_feed(tmp_path, ATTACK))], config)
    c = create_campaign(engine, digest, ["weekly"], config)
    send_test(engine, c.id, config, "tester@example.com", smtp=smtp_server.url)
    st = SimpleNamespace(config=config.replace(smtp={"t": SMTPServer(name="t", url=smtp_server.url)}), engine=engine)
    library.test_send(st, pv.from_digest(digest, "sources"), "tester@example.com", None)
    got = smtp_server.received()
    assert len(got) == 2
    for x in got:
        m = assert_no_injection(x.data, "tester@example.com")
        assert m["Subject"].startswith("[TEST] ") and ATTACK in shown(m["Subject"])


# --- item 10: settings and options, through the CLI -------------------------------------------
BAD_CHARS = ["\r\nBcc: x@evil.example", "\nBcc: x@evil.example", "\u2028Bcc: x@evil.example", "\u2029x", "\x85x",
             "\x0bx", "\x0cx", "\x1cx", "\x1dx", "\x1ex"]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``newsletter.cli.main`` in this process, as the console script runs it."""

    def invoke(*args, env=None):
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        for k, v in {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"), **(env or {})}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        code, out, err = astuple(run_main(monkeypatch, capsys, [*args]))
        for k in (env or {}):
            monkeypatch.delenv(k)
        return code, out, err

    return invoke


def one_line_error(result, *needles) -> str:
    code, out, err = result
    assert code != 0, out
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("bad", BAD_CHARS + ["News <unsub@example.org>", "unsub@example.org>, <https://evil.example/",
                                             "unsub@example.org?subject=x", "not an address", ATTACK + "@example.org"])
def test_unsubscribe_mailto_is_refused_at_config_load(cli, sqlite_url, tmp_path, bad):
    value = bad if "@" in bad else "unsub@example.org" + bad
    setup_db(sqlite_url).dispose()
    line = one_line_error(cli("--db", sqlite_url, "campaigns", "list", env={"NEWSLETTER_UNSUBSCRIBE_MAILTO": value}),
                          "unsubscribe_mailto", "NEWSLETTER_UNSUBSCRIBE_MAILTO")
    assert "\u2028" not in line and "\x85" not in line
    toml = tmp_path / "n.toml"
    toml.write_text(f"unsubscribe_mailto = {json.dumps(value)}\n", encoding="utf-8")
    one_line_error(cli("--config", str(toml), "--db", sqlite_url, "campaigns", "list"), "unsubscribe_mailto", "n.toml")


def test_a_plain_unsubscribe_mailto_is_used(env, smtp_server):
    from newsletter.config import load_config

    engine, config = env
    assert load_config(None, environ={"NEWSLETTER_UNSUBSCRIBE_MAILTO": "leave@example.org"}).unsubscribe_mailto == "leave@example.org"
    add_people(engine, "weekly", 1)
    config = config.replace(unsubscribe_mailto="leave@example.org")
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert "<mailto:leave@example.org?subject=" in smtp_server.received()[0].headers["List-Unsubscribe"]


@pytest.mark.parametrize("header", [f"X-Tag: a{b}" for b in BAD_CHARS] + [
    f"X-Tag{b}: a" for b in ("\x0b", "\x0c", "\x1c", "\u2028", "\x85", "\x00")] + [
    "X Tag: a", "Bcc: all@evil.example", "To: x@evil.example", "Content-Type: text/plain", "X-Tag: " + ATTACK, "Tag\u00e9: x", ": x",
])
def test_header_options_are_refused_with_one_line_before_anything_is_written(cli, sqlite_url, tmp_path, header):
    engine = setup_db(sqlite_url)
    add_people(engine, "weekly", 1)
    d = tmp_path / "digest"
    write_digest(compose([str(hostile_feed(tmp_path, "Plain"))], Config()), d)
    one_line_error(cli("--db", sqlite_url, "campaigns", "create", "--list", "weekly", "--from", str(d), "--header", header), "--header")
    with engine.begin() as conn:
        assert conn.execute(select(q.campaigns.c.id)).first() is None
    engine.dispose()


def test_a_good_header_option_reaches_the_message(cli, sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    add_people(engine, "weekly", 1)
    d = tmp_path / "digest"
    write_digest(compose([str(hostile_feed(tmp_path, "Plain"))], Config()), d)
    code, out, err = cli("--db", sqlite_url, "campaigns", "create", "--list", "weekly", "--from", str(d), "--header", "X-Campaign:  autumn 1 ")
    assert code == 0, err
    with engine.begin() as conn:
        assert conn.execute(select(q.campaigns.c.headers)).scalar_one() == {"X-Campaign": "autumn 1"}
    engine.dispose()


@pytest.mark.parametrize("key,env_name,value", [
    ("from_address", "NEWSLETTER_FROM", f"{ATTACK} <news@example.org>"),
    ("from_address", "NEWSLETTER_FROM", "News\u2028Bcc: x@evil.example <news@example.org>"),
    ("reply_to", "NEWSLETTER_REPLY_TO", "replies@example.org\x0bBcc: x@evil.example"),
    ("newsletter_name", "NEWSLETTER_NEWSLETTER_NAME", "Weekly\x85Bcc: x@evil.example"),
    ("newsletter_name", "NEWSLETTER_NEWSLETTER_NAME", "Weekly " + ATTACKS[1]),
    ("bounce_address", "NEWSLETTER_BOUNCE_ADDRESS", "bounces@example.org\x1c"),
])
def test_settings_written_into_headers_are_refused_at_config_load(cli, sqlite_url, tmp_path, key, env_name, value):
    setup_db(sqlite_url).dispose()
    one_line_error(cli("--db", sqlite_url, "campaigns", "list", env={env_name: value}), key, env_name)
    toml = tmp_path / "n.toml"
    toml.write_text(f"{key} = {json.dumps(value)}\n", encoding="utf-8")
    one_line_error(cli("--config", str(toml), "--db", sqlite_url, "campaigns", "list"), key, "n.toml")


def test_a_recipient_address_holding_a_line_break_fails_its_copy_and_nothing_is_sent_to_it(env, smtp_server):
    """Addresses are checked where they are stored; a bad one already in the ledger still cannot inject."""
    engine, config = env
    add_named(engine, "weekly", "ok@example.com", "Ok")
    add_named(engine, "weekly", "bad@example.com\u2028Bcc: all@evil.example", "Bad")
    add_named(engine, "weekly", "vt@example.com\x0bBcc: all@evil.example", "Vt")
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert s.counts == {"sent": 1, "failed": 2}
    assert [r for x in smtp_server.received() for r in x.rcpt_tos] == ["ok@example.com"]
    assert_no_injection(smtp_server.received()[0].data, "ok@example.com")
