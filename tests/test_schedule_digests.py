"""Recurring digests on a real database (SQLite and PostgreSQL), with the clock passed in."""

from __future__ import annotations

import http.server
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from newsletter.config import Config
from newsletter.errors import InvalidInput, NotFound, RenderError, ScheduleError
from newsletter.schedule import digests as dg
from newsletter.schedule import occurrences as occ
from newsletter.store.db import get_engine, upgrade
from newsletter.store.digest_models import DigestRun, RecurringDigest
from newsletter.store.lists import create_list

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
FIXTURES = Path(__file__).parent / "fixtures" / "schedule"


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def write_article(folder: Path, slug: str, published: datetime, title: str | None = None) -> None:
    """A Markdown article with front matter, as a publisher would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{slug}.md").write_text(
        f"---\ntitle: {title or slug.replace('-', ' ').title()}\ndate: {published.isoformat()}\n"
        f"url: https://example.org/{slug}\n---\n\nA short piece about {slug.replace('-', ' ')}.\n",
        encoding="utf-8",
    )


@pytest.fixture
def engine(url):
    upgrade(url)
    eng = get_engine(url)
    create_list(eng, "weekly", "The Weekly")
    yield eng
    eng.dispose()


@pytest.fixture
def config(url, tmp_path) -> Config:
    return Config(database_url=url, timezone="Europe/Paris", outbox=str(tmp_path / "outbox"), allow_private_fetch=True)


both_databases = pytest.mark.parametrize("url", [
    pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
], indirect=True)


@pytest.fixture
def url(request, tmp_path):
    """SQLite by default; tests marked ``both_databases`` run on PostgreSQL too."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def articles(tmp_path) -> Path:
    """A publisher's folder, holding one article from long ago."""
    folder = tmp_path / "articles"
    write_article(folder, "old-news", paris(2026, 1, 5, 9))
    return folder


def spec(articles: Path, **kw) -> dg.DigestSpec:
    base = dict(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris", sources=[str(articles)],
                lists=["weekly"], subject="Weekly digest — {{ date }}")
    return dg.DigestSpec(**{**base, **kw})


def runs(engine) -> list[DigestRun]:
    with Session(engine) as s:
        return list(s.exec(select(DigestRun).order_by(DigestRun.scheduled_for)).all())


def digest_count(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(RecurringDigest)).all())


CREATED = paris(2026, 11, 24, 12, 0)  # a Tuesday; the first occurrence is Monday 30 November 08:00


# --- defining ------------------------------------------------------------------------------

def test_a_new_digest_knows_its_next_run_in_its_zone_and_in_utc(engine, config, articles):
    info = dg.add_digest(engine, config, spec(articles), now=CREATED)
    assert info.next_run_local.isoformat() == "2026-11-30T08:00:00+01:00"
    assert info.next_run == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert info.list_slugs == ["weekly"] and info.last_run is None
    listed = dg.list_digests(engine)
    assert [i.digest.name for i in listed] == ["weekly"]
    assert listed[0].as_dict()["next_run_local"] == "2026-11-30T08:00:00+01:00"


@pytest.mark.parametrize("change, error, words", [
    (dict(schedule="0 8 * * FUNDAY"), ScheduleError, "FUNDAY"),
    (dict(schedule="0 8 * *"), ScheduleError, "5 fields"),
    (dict(timezone="Europe/Atlantis"), ScheduleError, "Europe/Atlantis"),
    (dict(lists=["nobody"]), NotFound, "list 'nobody'"),
    (dict(lists=[]), InvalidInput, "--list"),
    (dict(template_dir=str(FIXTURES / "template_without_text")), RenderError, "digest.txt"),
    (dict(subject="Digest {{ date "), InvalidInput, "--subject"),
    (dict(catch_up="sometimes"), ScheduleError, "catch-up"),
    (dict(min_articles=5, max_articles=3), InvalidInput, "--min-articles"),
    (dict(sources=[]), InvalidInput, "--source"),
    (dict(sources=["/nonexistent/articles"]), InvalidInput, "--source /nonexistent/articles: no such file or folder"),
])
def test_bad_definitions_are_refused_and_nothing_is_stored(engine, config, articles, change, error, words):
    with pytest.raises(error) as e:
        dg.add_digest(engine, config, spec(articles, **change), now=CREATED)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert digest_count(engine) == 0


def test_a_digest_name_is_unique_and_the_first_one_is_kept(engine, config, articles):
    dg.add_digest(engine, config, spec(articles), now=CREATED)
    with pytest.raises(InvalidInput, match="already exists"):
        dg.add_digest(engine, config, spec(articles, schedule="daily 07:30"), now=CREATED)
    assert dg.show_digest(engine, "weekly").digest.schedule == "weekly mon 08:00"


def test_unknown_digest_names_are_not_found(engine):
    for fn in (dg.show_digest, dg.pause_digest, dg.resume_digest, dg.remove_digest):
        with pytest.raises(NotFound, match="digest 'ghost'"):
            fn(engine, "ghost")


def test_remove_deletes_the_digest_and_its_history(engine, config, articles):
    dg.add_digest(engine, config, spec(articles), now=CREATED)
    occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 5))
    assert len(runs(engine)) == 1
    dg.remove_digest(engine, "weekly")
    assert digest_count(engine) == 0 and runs(engine) == []


# --- occurrences that send nothing (no dispatcher involved) -----------------------------------

@both_databases
def test_an_occurrence_with_nothing_new_is_recorded_as_skipped(engine, config, articles):
    dg.add_digest(engine, config, spec(articles), now=CREATED)
    assert occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 7, 59, 59)) == []
    [result] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 3))
    assert result.status == "skipped" and "nothing new" in result.reason and result.campaign_id is None
    [run] = runs(engine)
    assert run.status == "skipped" and run.scheduled_for == paris(2026, 11, 30, 8, 0)
    # Another pass a few seconds later (or a second worker) finds nothing due.
    assert occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 9)) == []
    info = dg.show_digest(engine, "weekly")
    assert info.next_run_local.isoformat() == "2026-12-07T08:00:00+01:00" and info.digest.articles_sent == 0


def test_fewer_new_articles_than_min_articles_skips(engine, config, articles):
    write_article(articles, "lonely-story", paris(2026, 11, 27, 9))
    dg.add_digest(engine, config, spec(articles, min_articles=2), now=CREATED)
    [result] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 1))
    assert result.status == "skipped" and "fewer than min_articles 2" in result.reason


@both_databases
@pytest.mark.parametrize("policy, expected", [
    ("latest", ["2026-12-21"]),
    ("all", ["2026-11-30", "2026-12-07", "2026-12-14", "2026-12-21"]),
    ("none", []),
])
def test_catch_up_after_downtime(engine, config, articles, policy, expected):
    dg.add_digest(engine, config, spec(articles, catch_up=policy), now=CREATED)
    back = paris(2026, 12, 21, 10, 30)  # the worker was down for four Mondays
    done = occ.run_due_digests(engine, config, now=back)
    assert [r.scheduled_for.astimezone(PARIS).date().isoformat() for r in done] == expected
    assert [r.scheduled_for.astimezone(PARIS).date().isoformat() for r in runs(engine)] == expected
    # Whatever the policy, the schedule moves on to the next Monday and nothing more is due now.
    assert dg.show_digest(engine, "weekly").next_run_local.date().isoformat() == "2026-12-28"
    assert occ.run_due_digests(engine, config, now=back + timedelta(minutes=1)) == []


def test_the_workers_catch_up_flag_overrides_the_digests_policy(engine, config, articles):
    dg.add_digest(engine, config, spec(articles, catch_up="all"), now=CREATED)
    done = occ.run_due_digests(engine, config, now=paris(2026, 12, 21, 10, 30), catch_up="none")
    assert done == []


def test_paused_digests_do_not_run_and_resume_passes_over_the_paused_weeks(engine, config, articles):
    dg.add_digest(engine, config, spec(articles), now=CREATED)
    info = dg.pause_digest(engine, "weekly", now=paris(2026, 11, 25))
    assert info.digest.paused and info.next_run is None
    with pytest.raises(InvalidInput, match="already paused"):
        dg.pause_digest(engine, "weekly")
    assert occ.run_due_digests(engine, config, now=paris(2026, 12, 8, 9)) == []
    info = dg.resume_digest(engine, "weekly", now=paris(2026, 12, 8, 9))
    assert info.next_run_local.isoformat() == "2026-12-14T08:00:00+01:00"
    assert occ.run_due_digests(engine, config, now=paris(2026, 12, 8, 9, 1)) == []
    assert len(occ.run_due_digests(engine, config, now=paris(2026, 12, 14, 8, 0, 2))) == 1


def test_a_spring_forward_0230_digest_runs_once_at_0300(engine, config, articles):
    dg.add_digest(engine, config, spec(articles, schedule="30 2 * * SUN"), now=paris(2026, 3, 25, 12))
    assert occ.run_due_digests(engine, config, now=paris(2026, 3, 29, 1, 59)) == []
    [r] = occ.run_due_digests(engine, config, now=datetime(2026, 3, 29, 1, 0, 1, tzinfo=UTC))  # 03:00:01+02:00
    assert r.scheduled_for.astimezone(PARIS).isoformat() == "2026-03-29T03:00:00+02:00"
    assert occ.run_due_digests(engine, config, now=paris(2026, 3, 29, 3, 45)) == []


@both_databases
def test_a_fall_back_0230_digest_runs_once(engine, config, articles):
    dg.add_digest(engine, config, spec(articles, schedule="30 2 * * SUN"), now=paris(2026, 10, 20, 12))
    first = datetime(2026, 10, 25, 0, 30, 1, tzinfo=UTC)  # 02:30:01+02:00
    second = datetime(2026, 10, 25, 1, 30, 1, tzinfo=UTC)  # 02:30:01+01:00, the repeated hour
    assert len(occ.run_due_digests(engine, config, now=first)) == 1
    assert occ.run_due_digests(engine, config, now=second) == []
    assert len(runs(engine)) == 1


# --- sources that fail at run time ------------------------------------------------------------

class FlakyFeed(http.server.BaseHTTPRequestHandler):
    """Serves the fixture feed, but answers 503 to the first ``fail_first`` requests."""

    fail_first = 0
    calls = 0

    def do_GET(self):  # noqa: N802
        type(self).calls += 1
        if type(self).calls <= type(self).fail_first:
            self.send_response(503)
            self.end_headers()
            return
        body = (FIXTURES / "feed.xml").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_feed():
    handler = type("Handler", (FlakyFeed,), {"calls": 0, "fail_first": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    server.shutdown()
    server.server_close()


def test_a_source_that_fails_is_retried_within_the_occurrence(config, flaky_feed):
    handler, url = flaky_feed
    handler.fail_first = 2
    slept = []
    loaded = occ.load_with_retries([url], config, delays=(0.5, 2.0), sleep=slept.append)
    assert handler.calls == 3 and slept == [0.5, 2.0]
    assert [a.title for a in loaded.articles] == ["Tide tables now printed on the pier gates"] and loaded.failed == []


def test_a_source_still_failing_is_reported_and_the_others_are_used(config, flaky_feed, articles):
    handler, url = flaky_feed
    handler.fail_first = 99
    write_article(articles, "quay-lights", paris(2026, 12, 3, 9))
    loaded = occ.load_with_retries([url, str(articles)], config, delays=(0, 0), sleep=lambda s: None)
    assert handler.calls == 3 and loaded.failed == [url]
    assert sorted(a.title for a in loaded.articles) == ["Old News", "Quay Lights"]
    assert any("failed after 3 attempt(s)" in w and url in w for w in loaded.warnings)


def test_an_occurrence_whose_every_source_fails_is_recorded_as_failed(engine, config, flaky_feed):
    handler, url = flaky_feed
    handler.fail_first = 99
    dg.add_digest(engine, config, spec(Path("unused"), sources=[url]), now=CREATED)
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(0,))
    assert r.status == "failed" and "every source failed" in r.reason and handler.calls == 2
    assert runs(engine)[0].status == "failed"


def test_under_min_articles_because_a_source_failed_is_skipped_and_says_so(engine, config, flaky_feed, articles):
    handler, url = flaky_feed
    handler.fail_first = 99
    write_article(articles, "quay-lights", paris(2026, 11, 27, 9))
    dg.add_digest(engine, config, spec(articles, sources=[url, str(articles)], min_articles=2), now=CREATED)
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(0,))
    assert r.status == "skipped" and "1 source(s) failed" in r.reason
    assert any(url in w for w in r.warnings)


def test_subjects_are_jinja_with_the_local_date(config):
    when = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)  # already Monday 7 December in Paris
    assert dg.render_subject("Weekly digest — {{ date }}", when=when, tz="Europe/Paris", name="weekly",
                             newsletter_name="N") == "Weekly digest — 7 December 2026"
    with pytest.raises(InvalidInput):
        dg.render_subject("{{ nope }}", when=when, tz="UTC", name="w", newsletter_name="N")


def test_a_stop_request_while_retrying_a_source_leaves_the_occurrence_for_the_next_pass(engine, config, flaky_feed):
    handler, url = flaky_feed
    handler.fail_first = 99
    dg.add_digest(engine, config, spec(Path("unused"), sources=[url]), now=CREATED)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()  # SIGTERM arrives while the occurrence waits to retry
    events: list[str] = []
    done = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(60, 60),
                              stop_event=stop, on_event=events.append)
    assert done == [] and runs(engine) == [] and "left for the next pass" in events[-1]
    assert dg.show_digest(engine, "weekly").next_run_local.isoformat() == "2026-11-30T08:00:00+01:00"


def test_a_template_that_fails_to_render_records_a_failed_occurrence_and_moves_on(engine, config, articles, tmp_path):
    template = tmp_path / "broken-template"
    template.mkdir()
    (template / "digest.mjml").write_text("<mjml><mj-body>{{ no_such_variable.title }}</mj-body></mjml>\n")
    (template / "digest.txt").write_text("{{ no_such_variable }}\n")
    write_article(articles, "quay-lights", paris(2026, 11, 27, 9))
    dg.add_digest(engine, config, spec(articles, template_dir=str(template)), now=CREATED)
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4))
    assert r.status == "failed" and r.reason.startswith("rendering failed") and "no_such_variable" in r.reason
    assert dg.show_digest(engine, "weekly").next_run_local.isoformat() == "2026-12-07T08:00:00+01:00"


def closed_port_url() -> str:
    """A feed URL on 127.0.0.1 where nothing listens: every fetch is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/feed.xml"


def test_a_failed_source_is_in_the_workers_log_line(engine, config, articles):
    down = closed_port_url()
    write_article(articles, "quay-lights", paris(2026, 11, 27, 9))
    dg.add_digest(engine, config, spec(articles, sources=[down, str(articles)]), now=CREATED)
    lines: list[str] = []
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(0,), on_event=lines.append)
    assert r.status == "created"
    [line] = [x for x in lines if x.startswith("digest 'weekly'")]
    assert "campaign" in line and "warning: source failed after 2 attempt(s)" in line and down in line
    # A skipped occurrence names the failed source too, not only how many failed.
    write_article(articles, "harbour-ferry", paris(2026, 12, 2, 9))
    dg.remove_digest(engine, "weekly")
    dg.add_digest(engine, config, spec(articles, sources=[down, str(articles)], min_articles=5), now=CREATED)
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(0,))
    assert r.status == "skipped" and down in r.line() and "1 source(s) failed" in r.line()
    # Every source down: the reason already lists them; the line says each once.
    dg.remove_digest(engine, "weekly")
    dg.add_digest(engine, config, spec(articles, sources=[down]), now=CREATED)
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 4), retry_delays=(0,))
    assert r.status == "failed" and r.line().count(down) == 1
