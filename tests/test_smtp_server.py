"""The test SMTP server itself behaves as documented (other tests rely on it)."""

from __future__ import annotations

import smtplib

import pytest

from smtp_server import SMTPTestServer

MSG = b"From: a@example.org\r\nTo: b@example.com\r\nMessage-ID: <m1@example.org>\r\nSubject: hi\r\n\r\nbody\r\n"


def test_accepts_and_records(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as c:
        c.sendmail("a@example.org", ["b@example.com", "c@example.com"], MSG)
        c.rset()
        c.sendmail("a@example.org", ["d@example.com"], MSG)
    assert smtp_server.wait_for(2)
    first = smtp_server.received()[0]
    assert first.mail_from == "a@example.org"
    assert first.rcpt_tos == ["b@example.com", "c@example.com"]
    assert first.headers["Subject"] == "hi"
    assert first.message_id == "<m1@example.org>"
    assert b"body" in first.data
    assert smtp_server.recipient_counts()["d@example.com"] == 1
    assert smtp_server.stats.connections == 1 and smtp_server.stats.rsets >= 1


def test_tempfail_first_n_per_recipient(smtp_server_factory):
    srv = smtp_server_factory(tempfail_first=2)
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                c.sendmail("a@example.org", ["b@example.com"], MSG)
            assert e.value.recipients["b@example.com"][0] == 451
        c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert srv.recipient_counts() == {"b@example.com": 1}


def test_tempfail_first_n_per_message(smtp_server_factory):
    srv = smtp_server_factory(tempfail_first=1, tempfail_per="message")
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("a@example.org", ["b@example.com"], MSG)
        assert e.value.smtp_code == 451
        c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert len(srv.received()) == 1


def test_tempfail_until_a_time(smtp_server_factory):
    import time

    srv = smtp_server_factory(tempfail_until=time.time() + 3600)
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("a@example.org", ["b@example.com"], MSG)
        assert e.value.recipients["b@example.com"][0] == 451
        srv.behaviour.tempfail_until = time.time() - 1  # the time has come (moved, not slept for)
        c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert srv.recipient_counts() == {"b@example.com": 1} and srv.stats.tempfailed == 1


def test_reject_unknown_user_leaves_other_recipients(smtp_server_factory):
    srv = smtp_server_factory(reject={"Ghost@example.com"})
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        refused = c.sendmail("a@example.org", ["ghost@example.com", "b@example.com"], MSG)
    assert refused["ghost@example.com"][0] == 550
    assert b"5.1.1" in refused["ghost@example.com"][1]
    assert srv.recipients() == ["b@example.com"]


def test_drop_mid_data(smtp_server_factory):
    srv = smtp_server_factory(drop_data=1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
            c.sendmail("a@example.org", ["b@example.com"], MSG)
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert srv.stats.dropped == 1 and len(srv.received()) == 1


def test_slow_answer_trips_client_timeout(smtp_server_factory):
    srv = smtp_server_factory(delay=5.0)  # far beyond the 0.3 s timeout, even on a busy machine
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        with smtplib.SMTP(srv.host, srv.port, timeout=0.3) as c:
            c.sendmail("a@example.org", ["b@example.com"], MSG)


def test_auth_required(smtp_server_factory):
    srv = smtp_server_factory(auth=("ana", "s3cret"))
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("ana", "wrong")
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        with pytest.raises(smtplib.SMTPSenderRefused):
            c.sendmail("a@example.org", ["b@example.com"], MSG)
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
        c.login("ana", "s3cret")
        c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert len(srv.received()) == 1 and srv.url.startswith("smtp://ana@127.0.0.1:")


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_modes(smtp_server_factory, mode):
    srv = smtp_server_factory(tls=mode)
    ctx = srv.client_context()
    if mode == "starttls":
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as c:
            c.starttls(context=ctx)
            c.sendmail("a@example.org", ["b@example.com"], MSG)
    else:
        with smtplib.SMTP_SSL(srv.host, srv.port, timeout=5, context=ctx) as c:
            c.sendmail("a@example.org", ["b@example.com"], MSG)
    assert len(srv.received()) == 1


def test_context_manager_frees_the_port():
    with SMTPTestServer() as srv:
        port = srv.port
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
