"""Where a digest starts when nobody says: after the last campaign that reached the list (when its
content was composed), else config ``default_since``; ``--since`` and ``--since all`` still win;
articles the list's readers already received are named (CLI warnings, a notice on the admin form)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli_runner import run_main

from newsletter.compose import ComposeOptions, compose
from newsletter.config import Config, load_config
from newsletter.dispatch import drafts
from newsletter.dispatch.campaigns import cancel_campaign, create_campaign
from newsletter.dispatch.previous import already_received, default_since
from newsletter.errors import ConfigError
from newsletter.store import lists, subscribers
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

NOW = datetime.now(timezone.utc).replace(microsecond=0)  # articles are days apart: no race with the clock
COMPOSED = NOW - timedelta(days=3)  # when the first campaign's content was composed
ARTICLES = {  # slug: (title, age)
    "old-pier": ("The Old Pier", timedelta(days=20)),
    "ferry-times": ("New Ferry Times", timedelta(days=5)),
    "night-swim": ("Night Swim", timedelta(hours=1)),
}


def write(folder: Path, slugs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for slug in slugs:
        title, age = ARTICLES[slug]
        # The campaign's copy of the first article carried tracking parameters: still the same article.
        url = f"https://example.org/{slug}" + ("?utm_source=mail" if slug == "old-pier" and folder.name == "before" else "")
        (folder / f"{slug}.md").write_text(f"---\ntitle: {title}\ndate: {(NOW - age).isoformat()}\nurl: {url}\n---\n\n"
                                           f"About {title}.\n", encoding="utf-8")
    return folder


@pytest.fixture
def setup(tmp_path, db_url):
    """Lists weekly and monthly, one reader each; campaign 1 to weekly (composed 3 days ago from the
    two older articles) started sending; ``all/`` holds the three articles."""
    upgrade(db_url)
    engine = get_engine(db_url)
    for slug in ("weekly", "monthly"):
        lists.create_list(engine, slug, slug.title(), opt_in="single")
        subscribers.add_subscriber(engine, f"{slug}@example.com", list_slug=slug)
    config = Config(database_url=db_url, timezone="UTC", base_url="https://news.example.org")
    before = compose([str(write(tmp_path / "before", ["old-pier", "ferry-times"]))], config, ComposeOptions(now=COMPOSED))
    first = create_campaign(engine, before, ["weekly"], config, subject="Harbour news")
    drafts.send_now(engine, first.id)
    yield engine, config, first.id, write(tmp_path / "all", list(ARTICLES))
    engine.dispose()


def cli(monkeypatch, capsys, db_url, *args):
    return run_main(monkeypatch, capsys, ["--db", db_url, *map(str, args)])


# --- the library --------------------------------------------------------------------------------


def test_the_default_start_is_when_the_last_sent_campaign_to_the_list_was_composed(setup):
    engine, config, first, folder = setup
    choice = default_since(engine, config, ["weekly"], now=NOW)
    assert choice.since == COMPOSED and choice.campaign_id == first
    assert choice.reason == f"the last campaign to weekly, #{first}"
    assert choice.line("UTC") == f"articles since {COMPOSED:%Y-%m-%d %H:%M} UTC (the last campaign to weekly, #{first})"

    # A newer draft, and a newer campaign that was cancelled before any copy went out, do not count.
    later = compose([str(folder)], config, ComposeOptions(now=NOW - timedelta(hours=2)))
    create_campaign(engine, later, ["weekly"], config, subject="Still a draft")
    cancelled = create_campaign(engine, later, ["weekly"], config, subject="Cancelled")
    drafts.send_now(engine, cancelled.id)
    cancel_campaign(engine, cancelled.id)
    assert default_since(engine, config, ["weekly"], now=NOW).since == COMPOSED
    assert already_received(engine, ["weekly"], [("https://example.org/night-swim", "Night Swim")]) == []


def test_without_an_earlier_campaign_the_list_takes_default_since(setup):
    engine, config, _, _ = setup
    choice = default_since(engine, config, ["monthly"], now=NOW)
    assert choice.since == NOW - timedelta(days=7) and choice.campaign_id is None
    assert choice.reason == "no earlier campaign to monthly; default_since 7d"
    assert default_since(engine, config.replace(default_since="all"), ["monthly"], now=NOW).since is None


def test_with_several_lists_the_latest_last_campaign_is_the_start(setup):
    engine, config, first, folder = setup
    newer = compose([str(folder)], config, ComposeOptions(now=NOW - timedelta(days=1)))
    second = create_campaign(engine, newer, ["monthly"], config, subject="Monthly")
    drafts.send_now(engine, second.id)
    choice = default_since(engine, config, ["weekly", "monthly"], now=NOW)
    assert choice.since == NOW - timedelta(days=1) and choice.campaign_id == second.id
    assert choice.reason == f"the last campaign to monthly, #{second.id}; the latest of weekly, monthly"
    assert default_since(engine, config, ["weekly"], now=NOW).campaign_id == first  # each list keeps its own


def test_default_since_comes_from_the_file_then_the_environment(tmp_path):
    toml = tmp_path / "newsletter.toml"
    toml.write_text('default_since = "2w"\n')
    assert load_config(toml, environ={}).default_since == "2w"
    assert load_config(toml, environ={"NEWSLETTER_DEFAULT_SINCE": "3d"}).default_since == "3d"
    assert load_config(None, environ={}).default_since == "7d"
    toml.write_text('default_since = "2026-11-01"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(toml))}: default_since: '2026-11-01' is not a span"):
        load_config(toml, environ={})
    with pytest.raises(ConfigError, match=r"^environment NEWSLETTER_DEFAULT_SINCE: default_since: 'soon' is not a span"):
        load_config(None, environ={"NEWSLETTER_DEFAULT_SINCE": "soon"})


# --- the commands -------------------------------------------------------------------------------


def test_compose_for_a_list_starts_after_its_last_campaign_and_says_so(setup, monkeypatch, capsys, tmp_path, db_url):
    engine, config, first, folder = setup
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "weekly", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert f"Articles since {COMPOSED:%Y-%m-%d %H:%M} UTC (the last campaign to weekly, #{first})." in r.stdout.splitlines()
    assert "Found 3 articles, selected 1, skipped 2." in r.stdout  # only the article newer than campaign 1
    assert "already sent" not in r.stderr


def test_compose_without_a_list_takes_default_since_from_config_or_environment(setup, monkeypatch, capsys, tmp_path, db_url):
    _, _, _, folder = setup
    monkeypatch.delenv("NEWSLETTER_DEFAULT_SINCE")  # the suite's "all" (conftest): the shipped default, 7d
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith("UTC (default_since 7d).")
    assert "selected 2, skipped 1." in r.stdout

    toml = tmp_path / "newsletter.toml"
    toml.write_text('default_since = "30d"\n')
    r = cli(monkeypatch, capsys, db_url, "--config", toml, "compose", folder, "--out", tmp_path / "o")
    assert "(default_since 30d)." in r.stdout and "selected 3," in r.stdout
    monkeypatch.setenv("NEWSLETTER_DEFAULT_SINCE", "2d")  # the environment over the file
    r = cli(monkeypatch, capsys, db_url, "--config", toml, "compose", folder, "--out", tmp_path / "o")
    assert "(default_since 2d)." in r.stdout and "selected 1," in r.stdout
    monkeypatch.setenv("NEWSLETTER_DEFAULT_SINCE", "1h")  # the newest article is (a little more than) an hour old
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--out", tmp_path / "empty")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and not (tmp_path / "empty").exists()
    assert r.stderr.startswith("error: no article left to compose: all 3 skipped")
    assert r.stderr.rstrip().endswith("the start was a default (default_since 1h): pass --since 2w, a date or all")


@pytest.mark.parametrize("value", ["2026-11-01", "soon", "0d"])
def test_an_invalid_default_since_is_a_one_line_error_naming_the_key(setup, monkeypatch, capsys, tmp_path, db_url, value):
    _, _, _, folder = setup
    monkeypatch.setenv("NEWSLETTER_DEFAULT_SINCE", value)
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--out", tmp_path / "o")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: environment NEWSLETTER_DEFAULT_SINCE: default_since: {value!r} is not a span "
                             "like 7d, 24h or 2w (or all, for the whole archive)")
    assert not (tmp_path / "o").exists()


def test_an_explicit_since_wins_and_since_all_takes_the_whole_archive(setup, monkeypatch, capsys, tmp_path, db_url):
    _, _, _, folder = setup
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "weekly", "--since", "10d", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "(--since 10d)." in r.stdout.splitlines()[0] and "selected 2, skipped 1." in r.stdout
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "weekly", "--since", "all", "--out", tmp_path / "o")
    assert r.stdout.splitlines()[0] == "All articles (--since all)." and "selected 3, skipped 0." in r.stdout


def test_articles_the_list_already_received_are_named_and_skip_sent_drops_them(setup, monkeypatch, capsys, tmp_path, db_url):
    _, _, first, folder = setup
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "weekly", "--since", "all", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    warned = sorted(line for line in r.stderr.splitlines() if "already sent" in line)
    assert warned == [f"warning: 'New Ferry Times' was already sent to weekly in campaign #{first} ('Harbour news')",
                      f"warning: 'The Old Pier' was already sent to weekly in campaign #{first} ('Harbour news')"]

    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "monthly", "--since", "all", "--out", tmp_path / "o")
    assert r.returncode == 0 and "already sent" not in r.stderr  # monthly's readers never got them

    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "weekly", "--since", "all", "--skip-sent",
            "--out", tmp_path / "o")
    assert "selected 1, skipped 2." in r.stdout and "skipped 2: already sent in an earlier digest" in r.stdout
    assert "already sent to weekly" not in r.stderr

    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--skip-sent", "--out", tmp_path / "o2")
    assert r.returncode == 1 and r.stderr.startswith("error: --skip-sent needs --list SLUG") and not (tmp_path / "o2").exists()
    r = cli(monkeypatch, capsys, db_url, "compose", folder, "--list", "nope", "--out", tmp_path / "o3")
    assert r.returncode == 1 and "list 'nope' does not exist" in r.stderr and not (tmp_path / "o3").exists()


def test_campaigns_create_compose_uses_the_default_start_and_warns(setup, monkeypatch, capsys, tmp_path, db_url):
    _, _, first, folder = setup
    r = cli(monkeypatch, capsys, db_url, "campaigns", "create", "--list", "weekly", "--compose", folder)
    assert r.returncode == 0, r.stderr
    assert f"Articles since {COMPOSED:%Y-%m-%d %H:%M} UTC (the last campaign to weekly, #{first})." in r.stderr
    assert r.stdout.strip().isdigit()  # the id alone on stdout

    r = cli(monkeypatch, capsys, db_url, "campaigns", "create", "--list", "weekly", "--compose", folder, "--since", "all")
    assert r.returncode == 0, r.stderr
    assert f"warning: 'The Old Pier' was already sent to weekly in campaign #{first} ('Harbour news')" in r.stderr

    # A digest composed earlier (--from) is checked too, against the lists it is snapshotted for.
    assert cli(monkeypatch, capsys, db_url, "compose", folder, "--since", "all", "--out", tmp_path / "o").returncode == 0
    r = cli(monkeypatch, capsys, db_url, "campaigns", "create", "--list", "weekly", "--from", tmp_path / "o")
    assert r.returncode == 0 and f"warning: 'New Ferry Times' was already sent to weekly in campaign #{first}" in r.stderr
    r = cli(monkeypatch, capsys, db_url, "campaigns", "create", "--list", "monthly", "--from", tmp_path / "o")
    assert r.returncode == 0 and "already sent" not in r.stderr


# --- the admin form -----------------------------------------------------------------------------


def test_the_new_campaign_form_fills_in_the_start_and_names_what_readers_already_received(setup):
    engine, config, first, folder = setup
    lists.delete_list(engine, "monthly")  # one list: the form chooses it
    config = config.replace(secret_key="test-secret-key-0123456789", sources=[str(folder)],
                            base_url="http://127.0.0.1:8000", allow_local_links=True)
    c = TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000))
    page = c.get("/admin/campaigns/new")
    assert page.status_code == 200
    assert f'id="since" name="since" type="datetime-local" value="{COMPOSED:%Y-%m-%dT%H:%M}"' in page.text
    why = re.search(r'<p class="hint" id="since-why">([^<]*)</p>', page.text).group(1)
    assert why == f"Filled in: {COMPOSED:%Y-%m-%d %H:%M} — the last campaign to weekly, #{first}."
    assert 'id="already-received"' not in page.text  # only the new article is in it

    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"sources": str(folder), "since": (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"), "until": "",
            "limit": "10", "lists": "weekly", "do": "preview", "csrf_token": token}
    page = c.post("/admin/campaigns/new", data=form)
    assert page.status_code == 200
    notice = re.search(r'id="already-received">(.*?)</div>', page.text, re.S).group(1)
    assert notice.count("<li>") == 2 and f"campaign #{first}" in notice
    assert "The Old Pier" in notice and "New Ferry Times" in notice and "Night Swim" not in notice
    assert f"Suggested: {COMPOSED:%Y-%m-%d %H:%M}" in page.text  # the field no longer holds the suggestion
