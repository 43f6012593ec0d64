"""Signed links: unsubscribe tokens never expire and cannot be forged or moved to another
address; confirm tokens expire; the secret key comes from the environment or a 0600 dev file."""

from __future__ import annotations

import logging
import stat
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from newsletter.config import Config
from newsletter.errors import ConfigError, InvalidToken
from newsletter.store import tokens
from newsletter.store.secret import secret_key

SECRET = b"test-secret-key-0123456789abcdef"


def test_unsubscribe_token_round_trip_and_is_compact():
    t = tokens.unsubscribe_token(SECRET, 123456, 7)
    assert tokens.verify_unsubscribe_token(SECRET, t) == (123456, 7)
    assert len(t) <= 32 and t.replace("-", "").replace("_", "").isalnum()


def test_tokens_differ_per_subscriber_and_list():
    assert len({tokens.unsubscribe_token(SECRET, s, l) for s in (1, 2) for l in (1, 2)}) == 4


def test_token_for_one_subscriber_does_not_name_another():
    t = tokens.unsubscribe_token(SECRET, 1, 1)
    assert tokens.verify_unsubscribe_token(SECRET, t) != (2, 1)


def test_another_secret_means_forged():
    t = tokens.unsubscribe_token(SECRET, 1, 1)
    with pytest.raises(InvalidToken) as e:
        tokens.verify_unsubscribe_token(b"another-secret-key-000000000000", t)
    assert e.value.reason == "forged"


@given(st.integers(0, 10**9), st.integers(0, 10**6), st.data())
@settings(max_examples=60, deadline=None)
def test_any_changed_character_is_rejected(sid, lid, data):
    t = tokens.unsubscribe_token(SECRET, sid, lid)
    i = data.draw(st.integers(0, len(t) - 1))
    c = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_").filter(lambda c: c != t[i]))
    with pytest.raises(InvalidToken) as e:
        tokens.verify_unsubscribe_token(SECRET, t[:i] + c + t[i + 1:])
    assert e.value.reason in {"forged", "malformed"}


@pytest.mark.parametrize("bad", ["", "!!!", "a" * 500, "AQ", "x y"])
def test_malformed_tokens(bad):
    with pytest.raises(InvalidToken) as e:
        tokens.verify_unsubscribe_token(SECRET, bad)
    assert e.value.reason == "malformed"


def test_a_confirm_token_is_not_an_unsubscribe_token():
    c = tokens.confirm_token(SECRET, 1, 1)
    with pytest.raises(InvalidToken):
        tokens.verify_unsubscribe_token(SECRET, c)
    u = tokens.unsubscribe_token(SECRET, 1, 1)
    with pytest.raises(InvalidToken):
        tokens.verify_confirm_token(SECRET, u)


def test_confirm_token_expires_after_seven_days_by_default():
    issued = datetime(2026, 1, 1, tzinfo=timezone.utc)
    c = tokens.confirm_token(SECRET, 5, 9, now=issued)
    assert tokens.verify_confirm_token(SECRET, c, now=issued + timedelta(days=6, hours=23)) == (5, 9)
    with pytest.raises(InvalidToken) as e:
        tokens.verify_confirm_token(SECRET, c, now=issued + timedelta(days=7, minutes=1))
    assert e.value.reason == "expired"


def test_unsubscribe_tokens_do_not_expire():
    t = tokens.unsubscribe_token(SECRET, 5, 9)
    assert tokens.verify_unsubscribe_token(SECRET, t) == (5, 9)  # no time in it at all


def test_secret_from_environment(tmp_path):
    cfg = Config(database_url=f"sqlite:///{tmp_path / 'n.db'}", secret_key="s" * 32)
    assert secret_key(cfg) == b"s" * 32
    assert not list(tmp_path.iterdir())


def test_short_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="too short"):
        secret_key(Config(database_url=f"sqlite:///{tmp_path / 'n.db'}", secret_key="short"))


def test_dev_key_is_generated_once_beside_the_database_0600_and_never_logged(tmp_path, caplog):
    cfg = Config(database_url=f"sqlite:///{tmp_path / 'n.db'}")
    with caplog.at_level(logging.WARNING):
        first = secret_key(cfg)
    again = secret_key(cfg)
    assert first == again and len(first) >= 32
    path = tmp_path / "n.db.secret-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "NEWSLETTER_SECRET_KEY" in caplog.text
    assert first.decode() not in caplog.text


def test_dev_key_for_postgres_lives_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = secret_key(Config(database_url="postgresql://postgres@127.0.0.1:5432/x"))
    assert (tmp_path / "newsletter.secret-key").read_text().strip().encode() == key
