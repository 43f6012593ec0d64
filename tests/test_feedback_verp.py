"""VERP addresses and Feedback-ID: signed, short, case-proof, and never fooled by junk."""

from __future__ import annotations

import pytest

from newsletter.feedback.verp import MAX_LOCAL_PART, feedback_id, find_verp, read_verp_address, verp_address
from newsletter.store import tokens

SECRET = b"verp-test-secret-0123456789abcdef"


def test_round_trip_and_shape():
    addr = verp_address("bounces@example.org", SECRET, 42, 1001)
    local, _, domain = addr.partition("@")
    assert domain == "example.org"
    assert local.startswith("bounces+")
    token = local[len("bounces+"):]
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert read_verp_address(addr, SECRET) == (42, 1001)
    assert read_verp_address(addr, SECRET.decode()) == (42, 1001)


def test_survives_case_changes_and_dsn_wrapping():
    addr = verp_address("Bounces@Example.org", SECRET, 7, 8)
    assert read_verp_address(addr.upper(), SECRET) == (7, 8)
    assert read_verp_address(f"rfc822; <{addr}>", SECRET) == (7, 8)
    assert read_verp_address(f'"Mail Delivery" <{addr}>', SECRET) == (7, 8)
    assert find_verp(f"for <{addr}>; Thu, 3 Dec 2026 10:00:00 +0000", SECRET) == (7, 8)


@pytest.mark.parametrize("sep", ["+", "-", "="])
def test_separators(sep):
    addr = verp_address("news-bounces@example.org", SECRET, 1, 2, separator=sep)
    assert read_verp_address(addr, SECRET) == (1, 2)


def test_local_part_stays_within_64_octets_even_for_huge_ids():
    addr = verp_address("newsletter-bounces@example.org", SECRET, 2**40, 2**45)
    assert len(addr.partition("@")[0].encode()) <= MAX_LOCAL_PART
    assert read_verp_address(addr, SECRET) == (2**40, 2**45)
    with pytest.raises(ValueError, match="too long"):
        verp_address("x" * 40 + "@example.org", SECRET, 2**40, 2**45)
    with pytest.raises(ValueError):
        verp_address("not an address", SECRET, 1, 2)


def test_forged_other_key_and_other_kind_are_refused():
    addr = verp_address("bounces@example.org", SECRET, 42, 1001)
    assert read_verp_address(addr, b"another-secret-key-000000000000000") is None
    local, _, domain = addr.partition("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    assert read_verp_address(f"{flipped}@{domain}", SECRET) is None
    # A token of another purpose, re-encoded in base32, must not pass as a bounce token.
    import base64
    raw = base64.urlsafe_b64decode(tokens.unsubscribe_token(SECRET, 42, 1001) + "==")
    other = base64.b32encode(raw).rstrip(b"=").decode().lower()
    assert read_verp_address(f"bounces+{other}@example.org", SECRET) is None


@pytest.mark.parametrize("junk", ["", "bounces@example.org", "bounces+@example.org", "@@@", "\x00\xff",
                                  "bounces+" + "a" * 80 + "@example.org", "a" * 5000, "bounces+zzzzzzzzzzzzzzzzzzzzzz@x",
                                  None, 12])
def test_junk_returns_none(junk):
    assert read_verp_address(junk, SECRET) is None
    assert read_verp_address("bounces+abc@example.org", b"") is None


def test_bounce_token_direct():
    tok = tokens.bounce_token(SECRET, 3, 4)
    assert tokens.verify_bounce_token(SECRET, tok.upper()) == (3, 4)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_bounce_token(SECRET, tok + "a")


def test_feedback_id_is_sanitised():
    assert feedback_id(12, "weekly", "acme") == "12:weekly:newsletter:acme"
    value = feedback_id(5, "weekly news:\r\nBcc: evil@example.org", "ACME sender" * 10)
    assert "\r" not in value and "\n" not in value and " " not in value
    parts = value.split(":")
    assert len(parts) == 4 and all(0 < len(p) <= 32 for p in parts)
    assert feedback_id(1, "", ":::") == "1:none:newsletter:none"
