"""The feedback mailboxes: mailbox URLs, Maildir/mbox/IMAP/POP3 access against a real Dovecot,
unsubscribe by email (issue 20 part 2), and the bad inputs — login refused, a connection dropped
mid-fetch, a 50 MB message, a message that is not ours, the same message twice, a crash between
the commit and the move. Bounce reports end to end are in test_mailbox_bounces.py."""

from __future__ import annotations

import dataclasses
import mailbox as stdlib_mailbox
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import select

from dispatch_helpers import SECRET, add_people, make_campaign, make_config, setup_db
from dovecot import DroppingProxy, dovecot, dovecot_factory  # noqa: F401  (fixtures)
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import ConfigError
from newsletter.feedback.mailbox import parse_mailbox_url
from newsletter.feedback.process import list_requests, process_mailboxes
from newsletter.store.mailbox_models import MailboxMessage
from newsletter.store.subscribers import get_subscriber
from newsletter.store.tokens import unsubscribe_token


# --- mailbox URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("url,scheme,port,tls,folder", [
    ("imaps://bounces@mail.example.org/INBOX", "imaps", 993, "tls", "INBOX"),
    ("imap://bounces@mail.example.org:1143/Bounces", "imap", 1143, "starttls", "Bounces"),
    ("imap://u@127.0.0.1:1143/INBOX?tls=none", "imap", 1143, "none", "INBOX"),
    ("pop3s://bounces@mail.example.org", "pop3s", 995, "tls", "INBOX"),
    ("pop3://bounces@mail.example.org", "pop3", 110, "starttls", "INBOX"),
])
def test_mailbox_urls_are_read_with_safe_defaults(url, scheme, port, tls, folder):
    spec = parse_mailbox_url(url, password="pw")
    assert (spec.scheme, spec.port, spec.tls, spec.folder) == (scheme, port, tls, folder)
    assert "pw" not in spec.name and "pw" not in repr(spec)


@pytest.mark.parametrize("url,problem", [
    ("imaps://bounces:hunter2@mail.example.org/INBOX", "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD"),
    ("imap://bounces@mail.example.org/INBOX?tls=none", "only allowed on a loopback address"),
    ("imaps://bounces@mail.example.org/INBOX?tls=starttls", "does not fit"),
    ("pop3s://bounces@mail.example.org/INBOX", "POP3 has no folders"),
    ("ftp://mail.example.org/", "scheme must be one of"),
    ("maildir://mail.example.org/var/mail", "local path"),
    ("imaps:///INBOX", "names no server"),
])
def test_bad_mailbox_urls_are_one_line_config_errors(url, problem):
    with pytest.raises(ConfigError, match=problem) as e:
        parse_mailbox_url(url)
    assert "hunter2" not in str(e.value) and "\n" not in str(e.value)


def test_the_mailbox_password_comes_from_the_environment_only(tmp_path, monkeypatch):
    from newsletter.config import load_config

    toml = tmp_path / "n.toml"
    toml.write_text('bounce_mailbox_password = "x"\n')
    with pytest.raises(ConfigError, match="NEWSLETTER_BOUNCE_MAILBOX_PASSWORD"):
        load_config(toml, environ={})
    cfg = load_config(None, environ={"NEWSLETTER_BOUNCE_MAILBOX": "imaps://b@mail.example.org/INBOX",
                                     "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD": "from-env"})
    assert cfg.bounce_mailbox_password == "from-env" and "from-env" not in repr(cfg)


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def env(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    yield engine, make_config(sqlite_url, tmp_path)
    engine.dispose()


@pytest.fixture
def env_any(db_url, tmp_path):
    engine = setup_db(db_url)
    yield engine, make_config(db_url, tmp_path)
    engine.dispose()


def make_maildir(path):
    for d in ("cur", "new", "tmp"):
        (path / d).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir, raw: bytes, name: str) -> None:
    (maildir / "tmp" / name).write_bytes(raw)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


def mail(subject: str, body: str = "", sender: str = "reader1@example.com", to: str = "news@example.org", **headers) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = sender, to, subject, make_msgid(domain="client.example")
    m["Date"] = "Thu, 03 Dec 2026 09:00:00 +0000"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body or "sent from my phone\n")
    return m.as_bytes()


def token_for(engine, email: str, slug: str = "weekly") -> str:
    s = get_subscriber(engine, email)
    from newsletter.store.lists import get_list

    return unsubscribe_token(SECRET.encode(), s.id, get_list(engine, slug).id)


def status(engine, email, slug="weekly"):
    return get_subscriber(engine, email).lists[slug]


def rows(engine, kind=None):
    t = MailboxMessage.__table__
    with engine.begin() as conn:
        q = select(t).order_by(t.c.id)
        if kind:
            q = q.where(t.c.kind == kind)
        return conn.execute(q).mappings().all()


# --- unsubscribe by email, local Maildir ---------------------------------------------------------


def test_mailto_unsubscribe_in_a_maildir_unsubscribes_that_list_once_and_moves_the_message(env_any, tmp_path):
    engine, config = env_any
    add_people(engine, "weekly", 3)
    from newsletter.store.lists import create_list
    from newsletter.store.subscribers import add_subscriber

    create_list(engine, "monthly", "Monthly")
    add_subscriber(engine, "reader1@example.com", list_slug="monthly")  # on both lists: only weekly is left
    md = make_maildir(tmp_path / "Maildir")
    tok = token_for(engine, "reader1@example.com")
    deliver(md, mail(f"unsubscribe {tok}"), "1.a.host")
    deliver(md, mail(f"unsubscribe {tok}"), "2.b.host")  # the reader pressed the button twice: a new message
    config = dataclasses.replace(config, unsubscribe_mailbox=f"maildir://{md}")
    r = process_mailboxes(engine, config)
    assert (r.read, r.unsubscribed, r.already_unsubscribed, r.errors) == (2, 1, 1, [])
    assert status(engine, "reader1@example.com") == "unsubscribed"
    assert status(engine, "reader1@example.com", "monthly") == "active"
    assert status(engine, "reader2@example.com") == "active"
    assert not list((md / "new").iterdir()) and len(list((md / ".newsletter-processed" / "cur").iterdir())) == 2
    evidence = rows(engine, "unsubscribe")
    assert [e["from_address"] for e in evidence] == ["reader1@example.com"] * 2
    assert "unsubscribed reader1@example.com from weekly by email" in evidence[0]["detail"]
    assert evidence[0]["message_id"].endswith("@client.example>") and evidence[0]["sent_at"] is not None
    again = process_mailboxes(engine, config)
    assert (again.read, again.unsubscribed, again.already) == (0, 0, 0)
    assert len(rows(engine)) == 2


def test_token_in_the_body_after_the_word_unsubscribe_counts_but_a_quoted_link_does_not(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 4)
    md = make_maildir(tmp_path / "Maildir")
    t1, t2, t3 = (token_for(engine, f"reader{i}@example.com") for i in (1, 2, 3))
    deliver(md, mail("please", f"Hello,\nunsubscribe {t1}\nthanks"), "1.x")
    # a reply that quotes the newsletter (the link carries reader2's token): must not unsubscribe
    deliver(md, mail("Re: The Weekly", f"Great issue!\n\n> Unsubscribe: https://news.example.org/unsubscribe/{t2}\n",
                     sender="reader2@example.com"), "2.x")
    # an out-of-office reply quoting the subject line: never an unsubscribe request
    deliver(md, mail(f"Auto: unsubscribe {t3}", "I am away", sender="reader3@example.com", Auto_Submitted="auto-replied"), "3.x")
    config = dataclasses.replace(config, unsubscribe_mailbox=f"maildir://{md}")
    r = process_mailboxes(engine, config, on_event=lambda line: None)
    assert r.unsubscribed == 1
    assert [status(engine, f"reader{i}@example.com") for i in (1, 2, 3)] == ["unsubscribed", "active", "active"]


def test_no_token_or_a_forged_one_is_listed_for_the_operator_never_acted_on(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 3)
    md = make_maildir(tmp_path / "Maildir")
    good = token_for(engine, "reader2@example.com")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    deliver(md, mail("unsubscribe me please", "take me off this list", sender="Reader One <READER1@example.com>"), "1.x")
    deliver(md, mail(f"unsubscribe {forged}", sender="reader2@example.com"), "2.x")
    deliver(md, mail("unsubscribe", sender="stranger@elsewhere.example"), "3.x")  # not a subscriber: not ours
    events: list[str] = []
    config = dataclasses.replace(config, unsubscribe_mailbox=f"maildir://{md}")
    r = process_mailboxes(engine, config, on_event=events.append)
    assert (r.unsubscribed, r.requests, r.left) == (0, 2, 1)
    assert status(engine, "reader1@example.com") == status(engine, "reader2@example.com") == "active"
    listed = list_requests(engine)
    assert sorted(x["from"] for x in listed) == ["reader1@example.com", "reader2@example.com"]
    assert any("bad signature" in e for e in events) and not any(good in e for e in events)
    assert len(list((md / "new").iterdir())) == 1  # the stranger's message stays for a person to read
    assert (process_mailboxes(engine, config).requests, len(list_requests(engine))) == (0, 2)


def test_a_crash_between_the_commit_and_the_move_counts_nothing_twice(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 2)
    md = make_maildir(tmp_path / "Maildir")
    deliver(md, mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"), "1.x")
    (md / ".newsletter-processed").write_text("not a folder")  # the move will fail after the commit
    config = dataclasses.replace(config, bounce_mailbox=f"maildir://{md}")
    r = process_mailboxes(engine, config, on_event=lambda line: None)
    assert r.unsubscribed == 1 and len(r.errors) == 1 and "cannot move message 1.x" in r.errors[0]
    assert str(md) in r.errors[0] and len(list((md / "new").iterdir())) == 1
    (md / ".newsletter-processed").unlink()
    r2 = process_mailboxes(engine, config)
    assert (r2.read, r2.unsubscribed, r2.already, r2.errors) == (0, 0, 1, [])
    assert not list((md / "new").iterdir()) and len(rows(engine)) == 1


def test_an_mbox_is_never_rewritten_and_processed_messages_are_remembered(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 2)
    path = tmp_path / "bounces.mbox"
    box = stdlib_mailbox.mbox(str(path))
    box.add(mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"))
    box.add(mail("hello there", sender="someone@elsewhere.example"))
    box.close()
    before = path.read_bytes()
    config = dataclasses.replace(config, bounce_mailbox=f"mbox://{path}", unsubscribe_mailbox=f"mbox://{path}")
    r = process_mailboxes(engine, config, on_event=lambda line: None)
    assert (r.mailboxes, r.read, r.unsubscribed, r.left) == ([f"mbox://{path}"], 2, 1, 1)
    r2 = process_mailboxes(engine, config, on_event=lambda line: None)
    assert (r2.read, r2.unsubscribed, r2.already, r2.left) == (0, 0, 1, 1)
    assert path.read_bytes() == before


def test_a_missing_maildir_or_password_is_one_line_naming_the_mailbox(env, tmp_path):
    engine, config = env
    r = process_mailboxes(engine, dataclasses.replace(config, bounce_mailbox=f"maildir://{tmp_path}/nope"))
    assert r.errors == [f"maildir://{tmp_path}/nope: not a Maildir (no cur/ directory)"]
    with pytest.raises(ConfigError, match="NEWSLETTER_BOUNCE_MAILBOX_PASSWORD"):
        process_mailboxes(engine, dataclasses.replace(config, bounce_mailbox="imaps://b@127.0.0.1:1/INBOX"))
    with pytest.raises(ConfigError, match="no mailbox configured"):
        process_mailboxes(engine, config)


# --- a real Dovecot ------------------------------------------------------------------------------


def send_one(engine, config, smtp_server, slug="weekly"):
    c = make_campaign(engine, config, slugs=(slug,))
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    return c


def answer_mailto(received) -> bytes:
    """What a mail client sends when the reader uses the List-Unsubscribe mailto of ``received``."""
    target = [p.strip(" <>") for p in received.message()["List-Unsubscribe"].split(",") if "mailto:" in p][0]
    parts = urlsplit(target)
    subject = unquote(parts.query.split("subject=", 1)[1])
    return mail(subject, "", sender=received.rcpt_tos[0], to=parts.path)


def dovecot_config(config, server, scheme="imaps", **kw):
    return dataclasses.replace(config, unsubscribe_mailbox=server.url(scheme), unsubscribe_mailbox_password=server.password,
                               **kw)


def test_mailto_unsubscribe_through_dovecot_imap_end_to_end(env_any, dovecot, smtp_server, monkeypatch):
    engine, config = env_any
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # the server's self-signed certificate is trusted
    add_people(engine, "weekly", 3)
    send_one(engine, config, smtp_server)
    copy = smtp_server.by_recipient("reader1@example.com")[0]
    dovecot.append(answer_mailto(copy))
    cfg = dovecot_config(config, dovecot)
    r = process_mailboxes(engine, cfg)
    assert (r.read, r.unsubscribed, r.errors) == (1, 1, [])
    assert (dovecot.folder_count("INBOX"), dovecot.folder_count("newsletter-processed")) == (0, 1)
    smtp_server.clear()
    send_one(engine, config, smtp_server)
    assert sorted(smtp_server.recipient_counts()) == ["reader0@example.com", "reader2@example.com"]
    assert process_mailboxes(engine, cfg).read == 0


@pytest.mark.parametrize("scheme", ["imap", "pop3s", "pop3"])
def test_starttls_and_pop3_read_the_same_way(env, dovecot, scheme):
    engine, config = env
    add_people(engine, "weekly", 2)
    dovecot.append(mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"), mail("hi", sender="x@elsewhere.example"))
    import ssl

    ctx = ssl.create_default_context(cafile=str(dovecot.cert))
    cfg = dovecot_config(config, dovecot, scheme)
    r = process_mailboxes(engine, cfg, ssl_context=ctx, on_event=lambda line: None)
    assert (r.read, r.unsubscribed, r.left, r.errors) == (2, 1, 1, [])
    r2 = process_mailboxes(engine, cfg, ssl_context=ctx, on_event=lambda line: None)
    assert (r2.read, r2.unsubscribed) == (0, 0)
    if scheme.startswith("pop3"):
        assert dovecot.folder_count("INBOX") == 2  # POP3 never deletes unless told to
        cfg = dataclasses.replace(cfg, bounce_pop3_delete=True)
        r3 = process_mailboxes(engine, cfg, ssl_context=ctx, on_event=lambda line: None)
        assert (r3.read, r3.already, r3.left) == (0, 1, 1)
        assert dovecot.folder_count("INBOX") == 1  # only the processed one went; the stranger's stays
    else:
        assert (dovecot.folder_count("INBOX"), dovecot.folder_count("newsletter-processed")) == (1, 1)


def test_a_refused_login_is_one_line_naming_the_mailbox_without_the_password(env, dovecot):
    engine, config = env
    import ssl

    cfg = dataclasses.replace(config, bounce_mailbox=dovecot.url("imaps"), bounce_mailbox_password="wrong-Passw0rd")
    r = process_mailboxes(engine, cfg, ssl_context=ssl.create_default_context(cafile=str(dovecot.cert)), on_event=lambda l: None)
    assert len(r.errors) == 1 and r.errors[0].startswith(f"{dovecot.url('imaps')}: login refused for 'bounces'")
    assert "wrong-Passw0rd" not in r.errors[0] and "\n" not in r.errors[0]
    # an untrusted certificate is refused too (no SSL_CERT_FILE, no context)
    r = process_mailboxes(engine, dataclasses.replace(cfg, bounce_mailbox_password=dovecot.password), on_event=lambda l: None)
    assert "TLS certificate not trusted" in r.errors[0]


def test_a_connection_dropped_mid_fetch_loses_nothing_and_counts_nothing_twice(env, dovecot):
    engine, config = env
    people = add_people(engine, "weekly", 6)
    pad = "x" * 60 + "\n"
    for i, who in enumerate(people):
        dovecot.append(mail(f"unsubscribe {token_for(engine, who)}", pad * 300, sender=who))  # ~18 KB each
    with DroppingProxy(dovecot.ports["imap"], limit=60_000) as proxy:  # dies inside the third or fourth message
        cfg = dataclasses.replace(config, unsubscribe_mailbox=f"imap://bounces@127.0.0.1:{proxy.port}/INBOX?tls=none",
                                  unsubscribe_mailbox_password=dovecot.password)
        r = process_mailboxes(engine, cfg, on_event=lambda l: None)
    assert proxy.dropped.is_set() and len(r.errors) == 1 and "connection lost" in r.errors[0]
    assert f"127.0.0.1:{proxy.port}" in r.errors[0] and dovecot.password not in r.errors[0]
    assert 0 < r.unsubscribed < 6
    first = r.unsubscribed
    r2 = process_mailboxes(engine, dataclasses.replace(cfg, unsubscribe_mailbox=dovecot.url("imap", tls="none")),
                           on_event=lambda l: None)
    assert r2.errors == [] and first + r2.unsubscribed + r2.already_unsubscribed == 6
    assert all(status(engine, who) == "unsubscribed" for who in people)
    assert len(rows(engine, "unsubscribe")) == 6 and dovecot.folder_count("INBOX") == 0


def test_a_50_mb_message_is_left_in_place_unread_and_the_rest_is_processed(env, dovecot):
    engine, config = env
    add_people(engine, "weekly", 2)
    big = mail("a very large message", "y" * 76 + "\n")
    big = big + (b"z" * 76 + b"\n") * (50 * 1024 * 1024 // 77)
    dovecot.deliver(big)
    dovecot.append(mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"))
    events: list[str] = []
    cfg = dovecot_config(config, dovecot, "imap")
    cfg = dataclasses.replace(cfg, unsubscribe_mailbox=dovecot.url("imap", tls="none"))
    r = process_mailboxes(engine, cfg, on_event=events.append)
    assert (r.read, r.unreadable, r.unsubscribed, r.errors) == (1, 1, 1, [])
    assert any("over bounce_max_message_bytes" in e and "left in place" in e for e in events)
    assert dovecot.folder_count("INBOX") == 1
    assert process_mailboxes(engine, cfg, on_event=events.append).unreadable == 1  # still there, still counted


def test_the_same_message_twice_counts_once_and_a_message_not_ours_stays(env, dovecot):
    engine, config = env
    add_people(engine, "weekly", 2)
    raw = mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}")
    dovecot.append(raw, raw, mail("Lunch on Friday?", sender="friend@elsewhere.example"))
    cfg = dataclasses.replace(dovecot_config(config, dovecot), unsubscribe_mailbox=dovecot.url("imap", tls="none"))
    r = process_mailboxes(engine, cfg, on_event=lambda l: None)
    assert (r.read, r.unsubscribed, r.duplicates, r.left) == (3, 1, 1, 1)
    assert (dovecot.folder_count("INBOX"), dovecot.folder_count("newsletter-processed")) == (1, 2)
    r2 = process_mailboxes(engine, cfg, on_event=lambda l: None)
    assert (r2.read, r2.left) == (0, 1)  # not fetched again


def test_erasing_a_person_removes_their_emails_traces_but_not_the_message_keys(env, tmp_path):
    from newsletter.store.leaving import erase_subscriber

    engine, config = env
    add_people(engine, "weekly", 2)
    md = make_maildir(tmp_path / "Maildir")
    deliver(md, mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"), "1.x")
    deliver(md, mail("unsubscribe me", sender="reader0@example.com"), "2.x")
    config = dataclasses.replace(config, unsubscribe_mailbox=f"maildir://{md}")
    process_mailboxes(engine, config, on_event=lambda line: None)
    erase_subscriber(engine, "reader1@example.com")
    erase_subscriber(engine, "reader0@example.com")
    kept = rows(engine)
    assert len(kept) == 2 and all(r["from_address"] is None and r["subject"] == "" and r["message_id"] is None for r in kept)
    assert list_requests(engine)[0]["from"] is None
    for f in (md / ".newsletter-processed" / "cur").iterdir():  # the same messages met again: not read again
        f.rename(md / "new" / f.name.split(":")[0])
    again = process_mailboxes(engine, config, on_event=lambda line: None)
    assert (again.read, again.already, again.requests) == (0, 2, 0)


def test_without_move_only_our_uid_is_expunged_never_another_clients_deleted_mail(env, dovecot_factory):
    server = dovecot_factory("imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS")
    engine, config = env
    add_people(engine, "weekly", 2)
    server.append(mail("a note someone else flagged for deletion", sender="x@elsewhere.example"),
                  mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"))
    c = server.imap()
    try:
        c.select("INBOX")
        c.store("1", "+FLAGS", r"(\Deleted)")  # another client's pending deletion: not ours to expunge
    finally:
        c.logout()
    cfg = dataclasses.replace(config, unsubscribe_mailbox=server.url("imap", tls="none"), unsubscribe_mailbox_password=server.password)
    r = process_mailboxes(engine, cfg, on_event=lambda l: None)
    assert (r.unsubscribed, r.left, r.errors) == (1, 1, [])
    assert (server.folder_count("INBOX"), server.folder_count("newsletter-processed")) == (1, 1)


def test_a_stop_request_ends_the_run_between_messages_and_the_next_run_carries_on(env, tmp_path):
    import threading

    engine, config = env
    people = add_people(engine, "weekly", 3)
    md = make_maildir(tmp_path / "Maildir")
    for i, who in enumerate(people):
        deliver(md, mail(f"unsubscribe {token_for(engine, who)}", sender=who), f"{i}.x")
    config = dataclasses.replace(config, unsubscribe_mailbox=f"maildir://{md}")
    stop = threading.Event()
    r = process_mailboxes(engine, config, stop_event=stop, on_event=lambda line: stop.set())  # stop after the first
    assert (r.read, r.unsubscribed) == (1, 1)
    assert len(list((md / "new").iterdir())) == 2 and len(list((md / ".newsletter-processed" / "cur").iterdir())) == 1
    r2 = process_mailboxes(engine, config, on_event=lambda line: None)
    assert (r2.read, r2.unsubscribed, r2.already) == (2, 2, 0)
