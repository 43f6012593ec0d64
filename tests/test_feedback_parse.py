"""The bounce parser on hand-written reports of each format, attribution, and bad input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from newsletter.feedback.classify import classify_smtp_reply
from newsletter.feedback.model import BounceKind, BounceSource
from newsletter.feedback.parse import MAX_PARSE_BYTES, parse_message
from newsletter.feedback.verp import verp_address
from newsletter.store.tokens import bounce_token

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
SECRET = b"parse-test-secret-0123456789abcdef"
CAMPAIGN, SUBSCRIBER = 31, 4077


def load(name: str, campaign: int = CAMPAIGN, subscriber: int = SUBSCRIBER) -> bytes:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    text = text.replace("{VERP}", verp_address("news-bounces@example.org", SECRET, campaign, subscriber))
    text = text.replace("{REF}", bounce_token(SECRET, campaign, subscriber))
    return text.replace("\n", "\r\n").encode("utf-8")


def summary(bounces):
    return [(b.kind.value, b.recipient, b.status, b.source.value) for b in bounces]


# file -> expected (kind, recipient, status, source) per recipient, and how it is attributed
CASES = {
    "dsn_postfix.eml": ([("hard", "Gone@example.net", "5.1.1", "dsn"), ("soft", "busy@example.net", "4.4.1", "dsn")], "verp"),
    "dsn_delivered.eml": ([("delivered", "reader@example.net", "2.0.0", "dsn")], "verp"),
    "dsn_mailbox_full.eml": ([("soft", "full@example.com", "5.2.2", "dsn")], "quoted"),
    "arf_complaint.eml": ([("complaint", "angry@example-provider.com", None, "arf")], "verp"),
    "arf_redacted.eml": ([("complaint", "redacted@hotmail.example", None, "arf")], "quoted"),
    "autoreply.eml": ([("auto-reply", "dana@example.net", None, "heuristic")], "verp"),
    "autoreply_exchange.eml": ([("auto-reply", "sam@example.com", None, "heuristic")], None),
    "exim.eml": ([("hard", "nobody-here@example.de", "5.1.1", "heuristic")], "verp"),
    "qmail.eml": ([("soft", "stuffed@example.com", "5.2.2", "heuristic")], "verp"),
    "exchange.eml": ([("hard", "left.company@contoso.example", "5.1.10", "heuristic")], "verp"),
    "gmail.eml": ([("hard", "no.such.person.ever@gmail.com", "5.1.1", "heuristic")], "verp"),
    "sendmail_warning.eml": ([("soft", "slow@old.example.edu", None, "heuristic")], "verp"),
    "domino.eml": ([("hard", "jdoe@lotus.example.com", None, "heuristic")], "verp"),
    "ses.eml": ([("hard", "missing@example.io", None, "heuristic")], "verp"),
    "forwarded_dsn.eml": ([("hard", "left@corp.example", "5.1.1", "dsn")], "verp"),
    "postfix_plain.eml": ([("hard", "first@example.com", "5.1.1", "heuristic"),
                           ("soft", "second@example.com", "4.2.2", "heuristic")], "verp"),
    "yahoo.eml": ([("hard", "longgone@yahoo.com", None, "heuristic")], "verp"),
    "o365_dsn.eml": ([("soft", "blocked@outlook.example", "5.7.1", "dsn")], "verp"),  # a block list, not the address
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_formats(name):
    expected, attribution = CASES[name]
    bounces = parse_message(load(name), secret=SECRET)
    assert summary(bounces) == expected
    for b in bounces:
        assert b.report_id and b.reason
        assert b.attribution == attribution
        if attribution:
            assert (b.campaign_id, b.subscriber_id) == (CAMPAIGN, SUBSCRIBER)
        else:
            assert b.campaign_id is None and b.subscriber_id is None


def test_without_secret_nothing_is_attributed_but_everything_is_read():
    for name, (expected, _) in CASES.items():
        bounces = parse_message(load(name), secret=None)
        assert summary(bounces) == expected, name
        assert all(b.campaign_id is None and b.attribution is None for b in bounces)


def test_forged_or_foreign_token_is_not_attributed():
    raw = load("exim.eml")
    bounces = parse_message(raw, secret=b"some-other-secret-key-000000000000")
    assert summary(bounces) == CASES["exim.eml"][0]
    assert bounces[0].campaign_id is None
    text = raw.decode()
    token = bounce_token(SECRET, CAMPAIGN, SUBSCRIBER)
    forged = text.replace(token, token[:-2] + ("aa" if not token.endswith("aa") else "bb"))
    assert parse_message(forged.encode(), secret=SECRET)[0].campaign_id is None


def test_dsn_reason_is_the_diagnostic_on_one_line():
    hard = parse_message(load("dsn_postfix.eml"), secret=SECRET)[0]
    assert hard.reason.startswith("550 5.1.1 <gone@example.net>: Recipient address rejected")
    assert "\n" not in hard.reason
    assert hard.report_id == "<20261203091201.4F2A1C0@mx.example.net>"


def test_report_id_falls_back_to_a_hash_and_is_stable():
    raw = load("ses.eml").replace(b"Message-ID: <ses-1@email.amazonses.com>\r\n", b"")
    a = parse_message(raw)[0].report_id
    assert a.startswith("sha256:") and a == parse_message(raw)[0].report_id
    assert a != parse_message(raw + b"\r\nmore")[0].report_id


def test_not_a_bounce():
    assert parse_message(load("not_a_bounce.eml"), secret=SECRET) == []
    # The same message sent to our VERP address is kept as UNKNOWN, tied to the copy, never acted on.
    raw = load("not_a_bounce.eml").replace(b"To: news@example.org", b"To: " + verp_address(
        "news-bounces@example.org", SECRET, 5, 6).encode())
    [b] = parse_message(raw, secret=SECRET)
    assert (b.kind, b.source, b.campaign_id, b.subscriber_id) == (BounceKind.UNKNOWN, BounceSource.VERP, 5, 6)


def test_truncated_dsn_keeps_what_it_can():
    [b] = parse_message(load("dsn_truncated.eml"), secret=SECRET)
    assert b.recipient == "cut@example.net"
    assert b.kind in (BounceKind.HARD, BounceKind.UNKNOWN)
    assert b.campaign_id == CAMPAIGN
    for cut in range(0, len(load("dsn_postfix.eml")), 97):  # every prefix of a real report
        parse_message(load("dsn_postfix.eml")[:cut], secret=SECRET)


def test_huge_message_is_capped():
    raw = load("dsn_postfix.eml")
    head, sep, tail = raw.partition(b"--4F2A1C0.1764753121/mx.example.net--")
    big = head + b"X" * (50 * 1024 * 1024) + b"\r\n" + sep + tail
    bounces = parse_message(big, secret=SECRET)
    assert [b.recipient for b in bounces] == ["Gone@example.net", "busy@example.net"]
    assert all("message cut" in b.reason for b in bounces)
    assert len(big) > MAX_PARSE_BYTES


def test_garbage_never_raises():
    rng = random.Random(13)
    samples = [b"", b"\x00" * 100, b"\xff\xfe" * 1000, b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
               b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\n" + b"<" * 100000,
               b"Content-Type: message/delivery-status\r\n\r\n" + b"Final-Recipient: ;;;\r\n" * 5000,
               b"Subject: Undeliverable\r\n\r\n" + b"a@" * 100000,
               "Subject: =?utf-8?B?////?=\r\n\r\n\u00e9".encode()]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(50)]
    base = load("dsn_postfix.eml")
    samples += [bytes(b if rng.random() > 0.02 else rng.randrange(256) for b in base) for _ in range(30)]
    for raw in samples:
        result = parse_message(raw, secret=SECRET)
        assert isinstance(result, list)
    assert parse_message("not bytes", secret=SECRET) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("code,enhanced,text,kind", [
    (550, "5.1.1", "User unknown", BounceKind.HARD),
    (550, None, "No such user here", BounceKind.HARD),
    (552, "5.2.2", "Mailbox full", BounceKind.SOFT),
    (550, None, "mailbox is full", BounceKind.SOFT),
    (554, "5.7.1", "Message rejected as spam by content filter", BounceKind.SOFT),
    (550, "5.7.1", "Service unavailable; client host blocked using Spamhaus", BounceKind.SOFT),
    (550, "5.7.1", "Recipient address rejected: user unknown", BounceKind.HARD),
    (550, "5.4.1", "Recipient address rejected: Access denied", BounceKind.HARD),
    (451, "4.7.1", "Greylisted, try again later", BounceKind.SOFT),
    (421, None, "Too many connections", BounceKind.SOFT),
    (450, "4.2.1", "User unknown (temporarily)", BounceKind.SOFT),
    (553, None, "sorry, that domain isn't in my list of allowed rcpthosts", BounceKind.HARD),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound", BounceKind.HARD),
    (250, "2.0.0", "OK", BounceKind.DELIVERED),
    (None, None, "", BounceKind.UNKNOWN),
    (None, None, "mailbox unavailable, user does not exist", BounceKind.HARD),
    ("garbage", "x.y.z", "??", BounceKind.UNKNOWN),
])
def test_classify_smtp_reply(code, enhanced, text, kind):
    assert classify_smtp_reply(code, enhanced, text) is kind


def test_many_parts_or_deep_nesting_are_cut_before_parsing():
    raw = load("dsn_postfix.eml")
    head, sep, tail = raw.partition(b"--4F2A1C0.1764753121/mx.example.net--")
    many = head + b"".join(b"--4F2A1C0.1764753121/mx.example.net\r\nContent-Type: text/plain\r\n\r\nx\r\n"
                           for _ in range(5000)) + sep + tail
    bounces = parse_message(many, secret=SECRET)
    assert [b.recipient for b in bounces] == ["Gone@example.net", "busy@example.net"]
    assert all("message cut" in b.reason for b in bounces)
    nested = b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n" + b"".join(
        b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1) for i in range(20000))
    assert parse_message(nested, secret=SECRET) == []


def test_attribution_from_received_line_and_envid():
    addr = verp_address("bounces@example.org", SECRET, 8, 9)
    raw = load("ses.eml").replace(b"To: " + verp_address("news-bounces@example.org", SECRET, CAMPAIGN, SUBSCRIBER).encode(),
                                  b"To: bounces@example.org")
    assert parse_message(raw, secret=SECRET)[0].campaign_id is None
    received = b"Received: from mx by mail.example.org for <" + addr.encode() + b">; Thu, 3 Dec 2026\r\n"
    [b] = parse_message(received + raw, secret=SECRET)
    assert (b.campaign_id, b.subscriber_id, b.attribution) == (8, 9, "verp")
    dsn = load("dsn_delivered.eml").replace(
        b"To: " + verp_address("news-bounces@example.org", SECRET, CAMPAIGN, SUBSCRIBER).encode(), b"To: bounces@example.org")
    dsn = dsn.replace(b"Reporting-MTA: dns; relay.example.net",
                      b"Reporting-MTA: dns; relay.example.net\r\nOriginal-Envelope-Id: " + bounce_token(SECRET, 8, 9).encode())
    [b] = parse_message(dsn, secret=SECRET)
    assert (b.kind, b.campaign_id, b.subscriber_id, b.attribution) == (BounceKind.DELIVERED, 8, 9, "envid")


@pytest.mark.parametrize("ftype,kind", [("abuse", BounceKind.COMPLAINT), ("fraud", BounceKind.COMPLAINT),
                                        ("not-spam", BounceKind.UNKNOWN), ("auth-failure", BounceKind.UNKNOWN)])
def test_arf_feedback_types(ftype, kind):
    raw = load("arf_complaint.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: " + ftype.encode())
    [b] = parse_message(raw, secret=SECRET)
    assert b.kind is kind and b.source is BounceSource.ARF and ftype in b.reason


def test_report_text_cannot_smuggle_control_characters_and_utf8_addresses_are_read():
    raw = load("dsn_postfix.eml").decode()
    raw = raw.replace("Recipient address\r\n    rejected: User unknown", "\x1b[2J[bold]rejected\u202e: User\x00 unknown")
    raw = raw.replace("Original-Recipient: rfc822;Gone@example.net", "Original-Recipient: utf-8;José.Müller@exämple.de")
    hard = parse_message(raw.encode("utf-8"), secret=SECRET)[0]
    assert hard.recipient == "José.Müller@exämple.de"
    assert not any(ord(c) < 32 or c == "\u202e" for c in hard.reason)
    assert "[bold]rejected" in hard.reason and hard.kind is BounceKind.HARD


def test_a_person_writing_about_a_failed_delivery_is_not_a_bounce():
    raw = (b"From: Alex Reader <alex@example.net>\r\nTo: news@example.org\r\nSubject: Re: This week\r\n"
           b"Message-ID: <human-2@example.net>\r\n\r\n"
           b"Hi, my copy to bob@example.com could not be delivered last week. User unknown, it said.\r\n")
    assert parse_message(raw, secret=SECRET) == []


def test_arf_envelope_field_ranks_before_quoted_headers():
    # The report goes to a fixed feedback address; Original-Mail-From names one copy, the quoted
    # original's Return-Path another (a forwarded copy): the report's own field wins.
    raw = load("arf_complaint.eml").decode()
    ours = verp_address("news-bounces@example.org", SECRET, CAMPAIGN, SUBSCRIBER)
    raw = raw.replace("To: " + ours, "To: fbl@example.org")
    raw = raw.replace("Return-Path: <" + ours + ">", "Return-Path: <" + verp_address("news-bounces@example.org", SECRET, 1, 2) + ">")
    [b] = parse_message(raw.encode(), secret=SECRET)
    assert (b.campaign_id, b.subscriber_id, b.attribution) == (CAMPAIGN, SUBSCRIBER, "verp")
