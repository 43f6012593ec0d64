"""A/B subject tests: the split, held rows, the worker's decision on human clicks recorded through
the real tracking path, and the rest sent the winner exactly once — on SQLite and PostgreSQL,
through a real SMTP server on 127.0.0.1 and the real web app; the worker's clock is injected."""

from __future__ import annotations

import json
import re
from dataclasses import astuple
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cli_runner import Result, run_main
from dispatch_helpers import SECRET, FakeDigest, add_people, make_config, setup_db
from smtp_server import SMTPTestServer

from newsletter.dispatch.abtest import ab_spec, ab_status, create_ab_campaign, parse_share, parse_wait, variant_of
from newsletter.dispatch.campaigns import cancel_campaign, get_campaign, schedule_campaign
from newsletter.dispatch.sender import send_campaign
from newsletter.engagement.report import campaign_report
from newsletter.errors import InvalidInput
from newsletter.schedule.worker import run_worker
from newsletter.store import queries as q
from newsletter.store.campaign_models import Delivery
from newsletter.web import create_app

UTC = timezone.utc
BASE = "http://127.0.0.1:8000"
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/156.0.0.0 Safari/537.36")
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def _config(url, tmp_path, **kw):
    return make_config(url, tmp_path, base_url=BASE, allow_local_links=True, scanner_seconds=0, **kw)


def _digest():
    d = FakeDigest()
    d.html = d.html.replace("<html><body>", "<html><head><title>x</title></head><body>").replace(
        "</body></html>", '<p><a href="https://example.org/story">Story</a></p></body></html>')
    return d


def _subject(msg) -> str:
    return str(make_header(decode_header(msg["Subject"])))


def _rows(engine, cid) -> dict[str, tuple]:
    """{email: (state, variant, in_test)} of the campaign's ledger."""
    d = Delivery.__table__.c
    with engine.begin() as conn:
        return {e: (s, v, t) for e, s, v, t in conn.execute(
            select(d.email, d.state, d.variant, d.in_test).where(d.campaign_id == cid))}


# --- input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("share, bp", [("20%", 2000), ("20", 2000), ("12.5%", 1250), (" 1 % ", 100), ("99.99%", 9999)])
def test_a_test_share_parses_to_basis_points(share, bp):
    assert parse_share(share) == bp


@pytest.mark.parametrize("wait, seconds", [("4h", 14400), ("90m", 5400), ("1d", 86400), ("1h30m", 5400), ("45min", 2700)])
def test_a_test_wait_parses(wait, seconds):
    assert parse_wait(wait) == seconds


@pytest.mark.parametrize("kw, needle", [
    (dict(others=["B"], test_share="0%"), "--test-share '0%': must be more than 0% and less than 100%"),
    (dict(others=["B"], test_share="100%"), "--test-share '100%': must be more than 0%"),
    (dict(others=["B"], test_share="half"), "--test-share 'half': expected a percentage"),
    (dict(others=[], test_share="20%"), "A/B test with one variant: give --subject-b"),
    (dict(others=["B"], winner_by="likes"), "--winner-by 'likes': expected clicks or opens"),
    (dict(others=["B"], test_wait="4 hours"), "--test-wait '4 hours': expected a duration"),
    (dict(others=["B"], test_wait="0h"), "--test-wait '0h': must be more than 0"),
    (dict(others=["A"]), "--subject-b 'A': the same subject as --subject"),
    (dict(others=[None, "C"]), "--subject-c without --subject-b"),
])
def test_bad_test_settings_are_refused_naming_the_flag(kw, needle):
    others = kw.pop("others")
    with pytest.raises(InvalidInput) as e:
        ab_spec("A", others + [None] * (3 - len(others)), **kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_no_test_flags_means_no_test():
    assert ab_spec("A", [None, None, None]) is None


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    """``newsletter …`` in this process against a SQLite database with 20 readers on weekly."""
    from newsletter.compose import write_digest

    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    add_people(engine, "weekly", 20)
    digest_dir = tmp_path / "digest"

    class D(FakeDigest):
        pass

    def invoke(*args) -> Result:
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        for k, v in {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": BASE,
                     "NEWSLETTER_ALLOW_LOCAL_LINKS": "true", "NEWSLETTER_OUTBOX": str(tmp_path / "outbox")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        return Result(*astuple(run_main(monkeypatch, capsys, ["--db", url, *args])))

    from newsletter.compose import compose
    from newsletter.config import Config
    from pathlib import Path

    write_digest(compose([str(Path(__file__).resolve().parent.parent / "articles")], Config(secret_key=SECRET)),
                 digest_dir)
    yield invoke, engine, digest_dir
    engine.dispose()


@pytest.mark.parametrize("flags, needle", [
    (["--subject-b", "B", "--test-share", "0%"], "--test-share '0%'"),
    (["--subject-b", "B", "--test-share", "100%"], "--test-share '100%'"),
    (["--test-share", "20%"], "A/B test with one variant"),
    (["--subject-b", "B", "--winner-by", "likes"], "--winner-by 'likes'"),
    (["--subject-b", "B", "--test-wait", "soon"], "--test-wait 'soon'"),
    (["--subject-b", "B", "--track", "opens"], "--winner-by clicks: the campaign does not track clicks"),
    (["--subject-b", "B\r\nBcc: x@example.org"], "--subject-b"),
])
def test_bad_ab_flags_are_one_line_errors_and_store_nothing(cli, flags, needle):
    invoke, engine, digest_dir = cli
    r = invoke("campaigns", "create", "--list", "weekly", "--from", str(digest_dir), "--subject", "A",
               "--track", "clicks", *flags)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    with engine.begin() as conn:
        assert conn.exec_driver_sql("select count(*) from campaigns").scalar() == 0
        assert conn.exec_driver_sql("select count(*) from ab_tests").scalar() == 0


def test_cli_creates_an_ab_campaign_and_shows_and_reports_it_per_variant(cli):
    invoke, engine, digest_dir = cli
    r = invoke("campaigns", "create", "--list", "weekly", "--from", str(digest_dir), "--subject", "Soil news",
               "--subject-b", "What the rain did", "--subject-c", "Small farms", "--test-share", "60%",
               "--test-wait", "2h", "--winner-by", "opens", "--track", "opens,clicks")
    assert r.returncode == 0, r.stderr
    assert "A/B test: 3 subjects to 60% of readers" in r.stderr and "warning: --winner-by opens: Apple Mail" in r.stderr
    cid = r.stdout.split()[-1]
    r = invoke("send", cid)
    assert r.returncode == 4 and "the rest waits for the A/B test's winner" in r.stdout + r.stderr
    shown = json.loads(invoke("campaigns", "show", cid, "--format", "json").stdout)
    ab = shown["ab"]
    assert ab["phase"] == "testing" and ab["winner_by"] == "opens" and ab["test_share"] == 60.0
    assert [v["subject"] for v in ab["variants"]] == ["Soil news", "What the rain did", "Small farms"]
    assert sum(v["test_delivered"] for v in ab["variants"]) + ab["held"] == 20
    text = invoke("campaigns", "show", cid).stdout
    assert "A/B test" in text and "What the rain did" in text
    rep = json.loads(invoke("campaigns", "report", cid, "--format", "json").stdout)
    assert [v["letter"] for v in rep["ab"]["variants"]] == ["A", "B", "C"]
    table = invoke("campaigns", "report", cid).stdout
    assert "Small farms" in table and "variant" in table


def test_an_ab_campaign_cannot_be_sent_at_each_readers_local_time(cli):
    invoke, engine, digest_dir = cli
    r = invoke("campaigns", "create", "--list", "weekly", "--from", str(digest_dir), "--subject", "A",
               "--subject-b", "B", "--track", "clicks")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.split()[-1]
    r = invoke("campaigns", "schedule", cid, "--local-time", "08:00", "--date", "2099-01-01")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "an A/B test cannot go out at each reader's local time" in lines[0]
    with engine.begin() as conn:
        assert conn.exec_driver_sql("select status, scheduled_at from campaigns").one() == ("draft", None)


# --- the split --------------------------------------------------------------------------------------

def test_the_split_is_a_stable_hash_near_the_share_and_even_between_variants():
    picks = [variant_of(7, sid, 2000, 2) for sid in range(1, 20001)]
    assert picks == [variant_of(7, sid, 2000, 2) for sid in range(1, 20001)]  # the same every time
    tested = [p for p in picks if p is not None]
    assert 3700 < len(tested) < 4300  # 20 % of 20 000
    assert 1800 < tested.count(0) < 2200 and 1800 < tested.count(1) < 2200
    assert [variant_of(8, sid, 2000, 2) for sid in range(1, 200)] != picks[:199]  # another campaign, another split


def test_an_interrupted_test_resumes_with_every_reader_in_their_variant(db_url, tmp_path):
    import threading

    engine = setup_db(db_url)
    config = _config(db_url, tmp_path)
    add_people(engine, "weekly", 60)
    spec = ab_spec("Subject A", ["Subject B", None, None], test_share="50%")
    c = create_ab_campaign(engine, _digest(), ["weekly"], config, spec, track="clicks")
    stop = threading.Event()
    sent: list[str] = []

    def stop_after_a_few(p):
        if p.sent_now >= 5:
            stop.set()

    first = send_campaign(engine, c.id, config, stop_event=stop, progress_callback=stop_after_a_few, concurrency=1,
                          batch_size=5)
    assert first.stopped  # a partial run
    before = _rows(engine, c.id)
    send_campaign(engine, c.id, config)
    after = _rows(engine, c.id)
    with engine.begin() as conn:
        ids = dict(conn.exec_driver_sql("select email, id from subscribers").all())
    for e, (state, variant, in_test) in after.items():
        assert variant == before[e][1] == variant_of(c.id, ids[e], 5000, 2)
        assert state == ("held" if variant is None else "sent")
    import email as email_mod
    from pathlib import Path

    for p in Path(config.outbox).glob("*.eml"):
        msg = email_mod.message_from_bytes(p.read_bytes())
        to = str(msg["To"]).split("<")[-1].rstrip(">")
        want = ["Subject A", "Subject B"][after[to][1]]
        assert _subject(msg) == want and f"<title>{want}</title>" in msg.as_string().replace("=\n", "")
        sent.append(to)
    assert len(sent) == len(set(sent)) == sum(1 for s in after.values() if s[0] == "sent")
    assert get_campaign(engine, c.id).status == "running"


def test_cancelling_a_test_skips_the_held_rest(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = _config(sqlite_url, tmp_path)
    add_people(engine, "weekly", 30)
    c = create_ab_campaign(engine, _digest(), ["weekly"], config,
                           ab_spec("A", ["B", None, None], test_share="30%"), track="clicks")
    send_campaign(engine, c.id, config)
    cancel_campaign(engine, c.id)
    with engine.begin() as conn:
        counts = q.counts_by_state(conn, c.id)
    assert "held" not in counts and counts["skipped"] > 0


# --- the worker's decision ---------------------------------------------------------------------------

def _click(client, html: str, ua: str = CHROME) -> None:
    link = re.findall(rf'href="{re.escape(BASE)}(/r/[\w-]+)"', html)[1]  # [0] is the hidden canary
    r = client.get(link, headers={"user-agent": ua}, follow_redirects=False)
    assert r.status_code == 303


def test_the_worker_sends_the_winner_by_human_clicks_to_the_rest_exactly_once(db_url, tmp_path):
    engine = setup_db(db_url)
    config = _config(db_url, tmp_path)
    everyone = add_people(engine, "weekly", 120)
    spec = ab_spec("Subject A", ["Subject B", None, None], test_share="50%", test_wait="4h", min_sample=10)
    c = create_ab_campaign(engine, _digest(), ["weekly"], config, spec, track="opens,clicks")
    schedule_campaign(engine, c.id, T0)
    with SMTPTestServer() as srv:
        run_worker(engine, config, once=True, now=T0 + timedelta(seconds=1), smtp=srv.url)
        test_copies = {m.rcpt_tos[0].lower(): m.message() for m in srv.received()}
        rows = _rows(engine, c.id)
        assert set(test_copies) == {e for e, r in rows.items() if r[2]}  # the test share, nobody else
        by_variant: dict[str, list] = {"Subject A": [], "Subject B": []}
        for e, msg in test_copies.items():
            assert _subject(msg) == ["Subject A", "Subject B"][rows[e][1]]
            by_variant[_subject(msg)].append(msg.get_body(("html",)).get_content())
        assert len(by_variant["Subject A"]) >= 10 and len(by_variant["Subject B"]) >= 10
        with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
            for html in by_variant["Subject B"][:4]:  # four people click in B
                _click(client, html)
            _click(client, by_variant["Subject A"][0])  # one in A...
            for html in by_variant["Subject A"][1:9]:  # ...and a link scanner in eight more A copies
                _click(client, html, ua="python-requests/2.32")
            client.app.state.hits.flush()
        status = ab_status(engine, c.id)
        assert [(v.letter, v.test_clickers) for v in status.variants] == [("A", 1), ("B", 4)]
        # The next pass sees every test copy handed over: the wait starts; nothing else goes out.
        run_worker(engine, config, once=True, now=T0 + timedelta(hours=1), smtp=srv.url)
        assert ab_status(engine, c.id).phase == "waiting" and len(srv.received()) == len(test_copies)
        run_worker(engine, config, once=True, now=T0 + timedelta(hours=5) - timedelta(seconds=1), smtp=srv.url)
        assert ab_status(engine, c.id).phase == "waiting" and len(srv.received()) == len(test_copies)
        decided = run_worker(engine, config, once=True, now=T0 + timedelta(hours=5, seconds=1), smtp=srv.url)
        assert len(srv.received()) == 120 and not decided.errors  # decided, and the rest sent, in that pass
        again = run_worker(engine, config, once=True, now=T0 + timedelta(hours=6), smtp=srv.url)
        received = srv.received()
    assert not again.errors
    # Every reader exactly once, by the SMTP sink and by the ledger; the rest got B.
    rcpts = [m.rcpt_tos[0].lower() for m in received]
    assert sorted(rcpts) == sorted(everyone) and len(set(rcpts)) == 120
    rows = _rows(engine, c.id)
    assert all(s == "sent" for s, _, _ in rows.values())
    for m in received:
        e = m.rcpt_tos[0].lower()
        if not rows[e][2]:
            assert rows[e][1] == 1 and _subject(m.message()) == "Subject B"
    status = ab_status(engine, c.id)
    assert status.phase == "decided" and status.winner_letter == "B" and status.decision["on_data"] is True
    numbers = {n["variant"]: n for n in status.decision["numbers"]}
    assert numbers["A"]["clickers"] == 1 and numbers["B"]["clickers"] == 4
    assert get_campaign(engine, c.id).status == "finished"
    report = campaign_report(engine, c.id)
    assert report.ab is not None and report.ab["winner_letter"] == "B"
    # The same numbers in the API's report and on the admin page.
    with TestClient(create_app(config, engine), base_url=BASE, client=("127.0.0.1", 5000)) as client:
        api = client.get(f"/api/campaigns/{c.id}/report")
        assert api.status_code == 200, api.text
        ab = api.json()["ab"]
        assert ab["winner_letter"] == "B" and ab["phase"] == "decided"
        assert [(v["letter"], v["test_clickers"]) for v in ab["variants"]] == [("A", 1), ("B", 4)]
        assert ab["variants"][1]["rest_copies"] == sum(1 for r in rows.values() if not r[2])
        page = client.get(f"/admin/campaigns/{c.id}").text
    assert 'id="ab-table"' in page and 'data-variant="B" class="winner"' in page and "Subject B" in page
    assert "B has the most human clicks" in page


def test_too_small_a_sample_sends_a_and_says_why(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = _config(sqlite_url, tmp_path)
    add_people(engine, "weekly", 20)
    c = create_ab_campaign(engine, _digest(), ["weekly"], config,
                           ab_spec("Subject A", ["Subject B", None, None], test_share="50%", test_wait="1h"),
                           track="clicks")
    schedule_campaign(engine, c.id, T0)
    with SMTPTestServer() as srv:
        for h in (0, 1, 3):
            run_worker(engine, config, once=True, now=T0 + timedelta(hours=h, seconds=1), smtp=srv.url)
        assert len(srv.recipients()) == len(set(srv.recipients())) == 20
    status = ab_status(engine, c.id)
    assert status.winner == 0 and status.decision["on_data"] is False
    assert "too few delivered copies" in status.decision["reason"] and "at least 50 each" in status.decision["reason"]


def _result(i, delivered, clickers=0, openers=0):
    from newsletter.dispatch.abtest import LETTERS, VariantResult

    return VariantResult(i, LETTERS[i], f"S{i}", test_copies=delivered, test_delivered=delivered,
                         test_clickers=clickers, test_openers=openers)


@pytest.mark.parametrize("results, by, expected", [
    ([_result(0, 100, 5), _result(1, 100, 9)], "clicks", (1, "B has the most human clicks: 9.0%", True)),
    ([_result(0, 100, 5), _result(1, 50, 5), _result(2, 100, 6)], "clicks", (1, "B has the most human clicks: 10.0%", True)),
    ([_result(0, 100, 0, 40), _result(1, 100, 9, 30)], "opens", (0, "A has the most people's opens: 40.0%", True)),
    ([_result(0, 100, 5), _result(1, 100, 5)], "clicks", (0, "a tie on human clicks (A, B at 5.0%): A is sent", False)),
    ([_result(0, 100), _result(1, 100)], "clicks", (0, "no human clicks in the test: A is sent", False)),
    ([_result(0, 100, 5), _result(1, 49, 30)], "clicks", (0, "too few delivered copies for a decision on human clicks (B 49", False)),
])
def test_the_winner_is_the_best_rate_with_enough_copies_else_a(results, by, expected):
    from newsletter.dispatch.abtest import choose

    winner, why, on_data = choose(results, by, 50)
    assert (winner, on_data) == (expected[0], expected[2]) and why.startswith(expected[1]), why


def test_only_one_decision_is_ever_recorded(db_url, tmp_path):
    """Two workers reaching the decision at once: the compare-and-set lets one record it and
    release the rest; the other changes nothing."""
    from newsletter.dispatch.abtest import decide_due
    from newsletter.store import abtests
    from newsletter.store.db import transaction

    engine = setup_db(db_url)
    config = _config(db_url, tmp_path)
    add_people(engine, "weekly", 30)
    c = create_ab_campaign(engine, _digest(), ["weekly"], config,
                           ab_spec("A", ["B", None, None], test_share="40%", test_wait="1h"), track="clicks")
    send_campaign(engine, c.id, config)
    assert decide_due(engine, T0) == []  # the wait starts
    with transaction(engine) as conn:
        held = q.counts_by_state(conn, c.id)["held"]
        assert not abtests.record_decision(conn, c.id + 1, 0, {}, T0)  # no such test
    late = T0 + timedelta(hours=1)
    with transaction(engine) as conn:  # another worker decides first (in its own transaction)...
        assert abtests.record_decision(conn, c.id, 1, {"winner": "B"}, late)
        q.release_held(conn, c.id, 1, late)
    assert decide_due(engine, late) == []  # ...so this one finds nothing left to decide
    with transaction(engine) as conn:
        assert not abtests.record_decision(conn, c.id, 0, {}, late)
        counts = q.counts_by_state(conn, c.id)
    assert "held" not in counts and counts["pending"] == held
    assert ab_status(engine, c.id).winner_letter == "B"
