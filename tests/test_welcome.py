"""Welcome emails: a list's welcome (one MJML template, or a day 0/3/7 series) reaches each reader
who confirms or signs up once — through repeated worker passes, a refused send and a crash between
the ledger row and the send — stops when they leave and goes with them when they are erased. Real
SQLite and PostgreSQL, a real SMTP server (aiosmtpd), the real worker and CLI; no mocks."""

from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cli_runner import run_main
from dispatch_helpers import make_config, setup_db
from newsletter.dispatch.welcome import send_due_welcomes
from newsletter.errors import InvalidInput
from newsletter.schedule.worker import run_worker
from newsletter.store import leaving, signup, subscribers as subs, welcome as store
from newsletter.store.lists import create_list, get_list
from newsletter.store.secret import secret_key
from newsletter.store.welcome_models import WelcomeSend
from smtp_server import SMTPTestServer, free_port

UTC = timezone.utc
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

WELCOME = """<mjml>
  <mj-head><mj-title>Welcome to {{ list_name }}, {{ name }}</mj-title></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello *|NAME:friend|*, this is step {{ step }} of {{ list_name }} from {{ newsletter_name }}.
        <a href="{{ unsubscribe_url }}">Unsubscribe</a> · <a href="{{ preferences_url }}">Preferences</a></mj-text>
    </mj-column></mj-section>
    {% include "footer.mjml" %}
  </mj-body>
</mjml>
"""


def _series(folder: Path, steps=(0, 3, 7)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        (folder / f"step-{step}.mjml").write_text(WELCOME.replace("step {{ step }}", f"day-{step} note {{{{ step }}}}"))
    (folder / "step-0.txt").write_text("Hello {{ name }}, welcome to {{ list_name }}.\nLeave: {{ unsubscribe_url }}\n")
    return folder


@pytest.fixture
def world(db_url, tmp_path):
    """A migrated database with 'weekly' (single opt-in, welcome on) and 'deep' (double opt-in)."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    create_list(engine, "weekly", "The Weekly")
    create_list(engine, "deep", "Deep dives", opt_in="double")
    (tmp_path / "welcome.mjml").write_text(WELCOME)
    store.set_welcome(engine, "weekly", template=str(tmp_path / "welcome.mjml"), now=T0 - timedelta(days=1))
    yield engine, config, tmp_path
    engine.dispose()


def _rows(engine) -> list[tuple]:
    t = WelcomeSend.__table__
    with engine.begin() as conn:
        return [tuple(r) for r in conn.execute(select(t.c.subscriber_id, t.c.list_id, t.c.step, t.c.status)
                                               .order_by(t.c.subscriber_id, t.c.step))]


def _bodies(srv: SMTPTestServer, rcpt: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=policy.default) for m in srv.received() if rcpt in m.rcpt_tos]


class PowerCut(Exception):
    """What a worker dying in the middle of a send looks like from the inside."""


class CrashingTransport:
    """A transport whose session dies while handing over the message (nothing is sent)."""

    def describe(self) -> str:
        return "crashing"

    def session(self):
        return self

    def connect(self) -> None:
        return None

    def send(self, built):
        raise PowerCut("the worker died while sending")

    def close(self) -> None:
        return None


# --- once per reader -------------------------------------------------------------------------------


def test_a_signup_gets_the_welcome_once_however_many_passes(world):
    engine, config, _ = world
    signup.request_signup(engine, "weekly", "ana@example.com", "Ana", now=T0)
    subs.add_subscriber(engine, "bob@example.com", list_slug="weekly", name="Bob", now=T0)  # added by hand: no welcome
    signup.request_signup(engine, "weekly", "old@example.com", "Old", now=T0 - timedelta(days=2))  # before the welcome
    with SMTPTestServer() as srv:
        for _ in range(3):
            send_due_welcomes(engine, config, now=T0 + timedelta(minutes=5), smtp=srv.url)
        assert srv.recipient_counts() == {"ana@example.com": 1}
        (msg,) = _bodies(srv, "ana@example.com")
    assert msg["Subject"] == "Welcome to The Weekly, Ana"
    assert msg["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    assert "weekly." in msg["List-Id"]
    html = msg.get_body(("html",)).get_content()
    assert "Hello Ana, this is step 0 of The Weekly" in html and "*|" not in html
    assert "/preferences/" in html
    assert 'href="https://news.example.org/archive/"' in html  # the digest's footer, included: no issue, the archive
    text = msg.get_body(("plain",)).get_content()
    assert "Hello Ana" in text and "https://news.example.org/unsubscribe/" in text  # links keep their address
    assert [r[2:] for r in _rows(engine)] == [(0, "sent")]


def test_only_readers_who_joined_by_themselves_are_welcomed(world):
    engine, config, tmp_path = world
    from newsletter.store import preferences as prefs
    from newsletter.store.optin import invitation_for, mail_confirmation

    store.set_welcome(engine, "deep", template=str(tmp_path / "welcome.mjml"), now=T0 - timedelta(days=1))
    secret = secret_key(config)
    # imported straight in as active on the double opt-in list: no confirmation, no welcome
    subs.add_subscriber(engine, "imported@example.com", name="Imp", now=T0)
    with engine.begin() as conn:
        from newsletter.store.lookups import subs_t

        conn.execute(subs_t.insert().values(subscriber_id=subs.get_subscriber(engine, "imported@example.com").id,
                                            list_id=get_list(engine, "deep").id, status="active", source="import",
                                            created_at=T0, updated_at=T0, confirmed_at=T0))
    # added by hand, mailed the confirmation link, confirmed: welcomed
    subs.add_subscriber(engine, "mailed@example.com", list_slug="deep", name="Mai", now=T0)
    sid, lid = subs.get_subscriber(engine, "mailed@example.com").id, get_list(engine, "deep").id
    kept: list = []
    mail_confirmation(engine, config, lambda *a: kept.append(a), invitation_for(engine, sid, lid), secret=secret)
    token = kept[0][3].split("/confirm/", 1)[1].split()[0]
    signup.confirm_link(engine, secret, token, now=T0 + timedelta(minutes=1))
    # joined 'weekly' (single opt-in) from the preference centre: welcomed
    url = prefs.link_for(engine, config, "imported@example.com")
    prefs.join(engine, secret, url.rsplit("/", 1)[1], get_list(engine, "weekly").id, now=T0 + timedelta(minutes=1))
    with SMTPTestServer() as srv:
        send_due_welcomes(engine, config, now=T0 + timedelta(minutes=5), smtp=srv.url)
        assert srv.recipient_counts() == {"mailed@example.com": 1, "imported@example.com": 1}
        subjects = {m.headers["Subject"] for m in srv.received()}
    assert subjects == {"Welcome to Deep dives, Mai", "Welcome to The Weekly, Imp"}


def test_confirming_a_double_opt_in_list_brings_the_welcome_through_the_worker(world):
    engine, config, tmp_path = world
    store.set_welcome(engine, "deep", template=str(tmp_path / "welcome.mjml"), now=T0 - timedelta(days=1))
    plan = signup.request_signup(engine, "deep", "cleo@example.com", "Cléo", now=T0)
    with SMTPTestServer() as srv:
        run_worker(engine, config, once=True, now=T0 + timedelta(minutes=1), smtp=srv.url)
        assert srv.recipient_counts() == {}  # not confirmed yet: nothing
        token = signup.signup_url(config, plan, secret=secret_key(config), now=T0).rsplit("/", 1)[1]
        signup.confirm_link(engine, secret_key(config), token, now=T0 + timedelta(minutes=2))
        for _ in range(2):
            run_worker(engine, config, once=True, now=T0 + timedelta(minutes=3), smtp=srv.url)
        assert srv.recipient_counts() == {"cleo@example.com": 1}
        (msg,) = _bodies(srv, "cleo@example.com")
    assert msg["Subject"] == "Welcome to Deep dives, Cléo"


def test_a_refused_welcome_is_tried_again_and_a_crash_never_sends_twice(world):
    engine, config, _ = world
    signup.request_signup(engine, "weekly", "ana@example.com", "Ana", now=T0)
    signup.request_signup(engine, "weekly", "eve@example.com", "Eve", now=T0 + timedelta(minutes=1))
    at = T0 + timedelta(minutes=10)
    # No server listening: the message plainly did not go; both rows are 'failed', tried again later.
    dead = send_due_welcomes(engine, config, now=at, smtp=f"smtp://127.0.0.1:{free_port()}")
    assert dead.sent == 0 and dead.failed == 2
    assert [r[3] for r in _rows(engine)] == ["failed", "failed"]
    with SMTPTestServer() as srv:
        send_due_welcomes(engine, config, now=at + timedelta(minutes=1), smtp=srv.url)
        assert srv.recipient_counts() == {}  # not before its pause (15 minutes) is over
    # The worker dies while handing Ana's message over: her row stays 'sending' (recorded before the send).
    with pytest.raises(PowerCut):
        send_due_welcomes(engine, config, now=at + timedelta(minutes=16), transport=CrashingTransport())
    assert [r[3] for r in _rows(engine)] == ["sending", "failed"]
    with SMTPTestServer() as srv:
        for _ in range(2):  # the restarted worker
            run_worker(engine, config, once=True, now=at + timedelta(minutes=17), smtp=srv.url)
        assert srv.recipient_counts() == {"eve@example.com": 1}  # Ana's interrupted welcome is never resent
    assert [r[3] for r in _rows(engine)] == ["sending", "sent"]
    assert store.welcome_counts(engine, "weekly") == {"sending": 1, "sent": 1}


# --- a series ---------------------------------------------------------------------------------------


def test_a_series_goes_out_day_by_day_and_stops_when_the_reader_leaves(world):
    engine, config, tmp_path = world
    store.set_welcome(engine, "weekly", template=str(_series(tmp_path / "series")), steps=[0, 3, 7])
    signup.request_signup(engine, "weekly", "ana@example.com", "Ana", now=T0)
    signup.request_signup(engine, "weekly", "dan@example.com", "Dan", now=T0)
    with SMTPTestServer() as srv:
        def day(days: float, hours: int = 1) -> None:
            run_worker(engine, config, once=True, now=T0 + timedelta(days=days, hours=hours), smtp=srv.url)

        day(0)
        assert srv.recipient_counts() == {"ana@example.com": 1, "dan@example.com": 1}
        text = _bodies(srv, "ana@example.com")[0].get_body(("plain",)).get_content()
        assert text.startswith("Hello Ana, welcome to The Weekly.")  # step-0.txt
        day(2)
        assert len(srv.received()) == 2  # day 3 is not due yet
        day(3)
        assert srv.recipient_counts() == {"ana@example.com": 2, "dan@example.com": 2}
        assert "day-3 note 3" in _bodies(srv, "dan@example.com")[1].get_body(("html",)).get_content()
        leaving.unsubscribe(engine, "dan@example.com", "weekly", now=T0 + timedelta(days=4))
        day(7)
        day(8)
        assert srv.recipient_counts() == {"ana@example.com": 3, "dan@example.com": 2}
        assert "day-7 note 7" in _bodies(srv, "ana@example.com")[2].get_body(("html",)).get_content()
    steps = {(r[2], r[3]) for r in _rows(engine)}
    assert steps == {(0, "sent"), (3, "sent"), (7, "sent")}


def test_erasure_removes_the_welcome_state_and_off_stops_new_welcomes(world):
    engine, config, _ = world
    signup.request_signup(engine, "weekly", "ana@example.com", "Ana", now=T0)
    with SMTPTestServer() as srv:
        send_due_welcomes(engine, config, now=T0 + timedelta(hours=1), smtp=srv.url)
        assert len(_rows(engine)) == 1
        leaving.erase_subscriber(engine, "ana@example.com")
        assert _rows(engine) == []
        store.set_welcome(engine, "weekly", off=True)
        assert get_list(engine, "weekly").welcome is None
        signup.request_signup(engine, "weekly", "bea@example.com", "Bea", now=T0 + timedelta(hours=2))
        send_due_welcomes(engine, config, now=T0 + timedelta(hours=3), smtp=srv.url)
        assert srv.recipient_counts() == {"ana@example.com": 1}
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(WelcomeSend.__table__)).scalar_one() == 0


# --- the setting ------------------------------------------------------------------------------------


def test_the_setting_is_checked(world, tmp_path):
    engine, _, _ = world
    assert store.parse_series("7, 0,3") == [0, 3, 7]
    for bad in ("", "0,x", "-1", "0,400", ",".join(map(str, range(12)))):
        with pytest.raises(InvalidInput):
            store.parse_series(bad)
    with pytest.raises(InvalidInput, match="missing step-3.mjml"):
        store.set_welcome(engine, "weekly", template=str(_series(tmp_path / "short", steps=(0,))), steps=[0, 3])
    with pytest.raises(InvalidInput, match="a series needs a folder"):
        store.set_welcome(engine, "weekly", template=str(tmp_path / "welcome.mjml"), steps=[0, 3])
    with pytest.raises(InvalidInput):
        store.set_welcome(engine, "weekly", template=str(tmp_path / "nowhere"))
    before = get_list(engine, "weekly").welcome
    again = store.set_welcome(engine, "weekly", template=str(_series(tmp_path / "s2")), steps=[0, 3, 7])
    assert again is not None and before is not None and again["since"] == before["since"]  # a new template keeps the date


def test_the_cli_sets_shows_and_refuses_in_one_line(sqlite_url, tmp_path, monkeypatch, capsys):
    setup_db(sqlite_url).dispose()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-secret-key-0123456789")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)

    def cli(*args: str):
        return run_main(monkeypatch, capsys, ["--db", sqlite_url, *args])

    assert cli("lists", "create", "weekly").returncode == 0
    folder = _series(tmp_path / "series")
    ok = cli("lists", "welcome", "weekly", "--template", str(folder), "--series", "0,3,7")
    assert ok.returncode == 0, ok.stderr
    assert "welcome on, steps 0, 3, 7" in ok.stdout
    shown = cli("lists", "welcome", "weekly", "--status")
    assert str(folder.resolve()) in shown.stdout and "sent 0" in shown.stdout
    (tmp_path / "broken.mjml").write_text("<mjml><mj-body>{% if %}</mj-body></mjml>")
    for args in (("--template", str(tmp_path / "missing")), ("--series", "0,x", "--template", str(folder)),
                 ("--template", str(tmp_path / "broken.mjml")), (), ("--off", "--status")):
        bad = cli("lists", "welcome", "weekly", *args)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr, args
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    off = cli("lists", "welcome", "weekly", "--off")
    assert off.returncode == 0 and "welcome off" in off.stdout
