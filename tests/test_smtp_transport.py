"""SMTP URL parsing, reply classification and the connection reuse of one session."""

from __future__ import annotations

import pytest

from newsletter.config import Config, SMTPServer
from newsletter.dispatch.personalize import Built
from newsletter.dispatch.smtp import SMTPSession, classify_reply, parse_smtp_url, settings_for
from newsletter.errors import ConfigError


def test_parse_urls():
    s = parse_smtp_url("smtp://ana@mail.example.org:2525")
    assert (s.host, s.port, s.user, s.tls) == ("mail.example.org", 2525, "ana", "auto")
    assert parse_smtp_url("smtps://mail.example.org").port == 465 and parse_smtp_url("smtps://mail.example.org").tls == "tls"
    assert parse_smtp_url("smtp://ana@mail.example.org").port == 587
    assert parse_smtp_url("smtp://mail.example.org").port == 25
    for bad in ["mail.example.org", "http://x", "smtp://", "smtp://h:99999", "smtp://h:port"]:
        with pytest.raises(ConfigError):
            parse_smtp_url(bad)
    with pytest.raises(ConfigError) as e:
        parse_smtp_url("smtp://ana:hunter2@mail.example.org")
    assert "hunter2" not in str(e.value)


def test_settings_for_names_and_passwords():
    cfg = Config(smtp={"a": SMTPServer(name="a", url="smtp://u@a.example.org", rate="5/s", max_connections=2),
                       "b": SMTPServer(name="b", url="smtps://b.example.org")})
    env = {"NEWSLETTER_SMTP_A_PASSWORD": "pa", "NEWSLETTER_SMTP_PASSWORD": "generic"}
    a, b = settings_for(cfg, "a,b", environ=env)
    assert (a.password, a.rate, a.max_connections, b.tls) == ("pa", "5/s", 2, "tls")
    assert "pa" not in repr(a)
    with pytest.raises(ConfigError):
        settings_for(cfg, None, environ=env)  # two servers and no default
    with pytest.raises(ConfigError):
        settings_for(cfg, "c", environ=env)
    assert settings_for(Config(), None) == []  # nothing configured: the caller uses the outbox
    assert settings_for(Config(), "smtp://h:1", environ=env)[0].password == "generic"


@pytest.mark.parametrize("code,msg,at,state,suppress", [
    (250, b"ok", "DATA", "sent", False),
    (451, b"4.7.1 greylisted", "RCPT", "deferred", False),
    (421, b"too busy", "DATA", "deferred", False),
    (550, b"5.1.1 <x@example.com>: user unknown", "RCPT", "failed", True),
    (550, b"5.1.1 user unknown", "DATA", "failed", False),
    (554, b"5.7.1 spam", "DATA", "failed", False),
    # with an enhanced status code, the code alone decides whether the mailbox does not exist
    (550, b"5.7.1 <x@example.com>: Requested action not taken: mailbox unavailable", "RCPT", "failed", False),
    (550, b"5.7.1 Service unavailable; client host blocked: unknown user agent", "RCPT", "failed", False),
    (550, b"5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "RCPT", "failed", True),
    (550, b"5.1.2 <x@nowhere.invalid>: Recipient address rejected: Domain not found", "RCPT", "failed", False),
    (553, b"5.1.1 mailbox unavailable", "RCPT", "failed", True),
    (550, b"5.1.11 whatever", "RCPT", "failed", False),
    # without one, only explicit wording counts ("mailbox unavailable" is RFC 5321's text for any 550)
    (550, b"Requested action not taken: mailbox unavailable", "RCPT", "failed", False),
    (550, b"No such user here", "RCPT", "failed", True),
    (550, b"<x@example.com>: Recipient address rejected: User unknown in local recipient table", "RCPT", "failed", True),
    (550, b"Recipient rejected (5.1.1)", "RCPT", "failed", True),
])
def test_classify(code, msg, at, state, suppress):
    out = classify_reply(code, msg, at=at)
    assert (out.state, out.suppress) == (state, suppress) and out.reply.startswith(str(code))


def test_one_session_reuses_its_connection_and_resets_after_refusal(smtp_server):
    smtp_server.behaviour.reject = {"ghost@example.com"}
    s = SMTPSession(parse_smtp_url(smtp_server.url))
    msg = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: x\r\n\r\n.leading dot\r\nbody\r\n"
    outs = [s.send(Built("a@example.org", rcpt, msg, "<m@x>"))
            for rcpt in ["b@example.com", "ghost@example.com", "c@example.com"]]
    s.close()
    assert [o.state for o in outs] == ["sent", "failed", "sent"]
    assert smtp_server.stats.connections == 1 and smtp_server.stats.rsets >= 1
    got = smtp_server.received()
    assert [m.rcpt_tos for m in got] == [["b@example.com"], ["c@example.com"]]
    assert b"\r\n.leading dot\r\n" in got[0].data  # dot-stuffing undone by the server: content intact
