"""The scheduling commands as a user runs them: documented, one-line errors, nothing changed on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cli_runner import run_main
from newsletter.store.db import get_engine, upgrade
from newsletter.store.lists import create_list

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "schedule"


def commands():
    from newsletter.cli import app

    root = typer.main.get_command(app)
    digests = root.commands["digests"]
    yield from ((f"digests {name}", cmd) for name, cmd in digests.commands.items())
    yield "campaigns schedule", root.commands["campaigns"].commands["schedule"]
    yield "worker", root.commands["worker"]


def test_manual_documents_every_scheduling_command_and_option():
    section = (REPO / "docs" / "scheduling.md").read_text()
    for name, cmd in commands():
        assert f"newsletter {name}" in section or f"`{name.split()[-1]} NAME`" in section, name
        options = [o for p in cmd.params for o in p.opts if o.startswith("--") and o != "--help"]
        missing = [o for o in options if f"`{o}`" not in section]
        assert not missing, f"{name}: undocumented options {missing}"


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'nl.db'}"
    upgrade(url)
    engine = get_engine(url)
    create_list(engine, "weekly", "The Weekly")
    engine.dispose()
    (tmp_path / "articles").mkdir()
    return url


@pytest.fixture
def run(monkeypatch, capsys):
    """Run the real entry point (``newsletter.cli.main``) in this process: same parsing, same
    error printing and exit codes as the console script, without a Python start-up per call."""
    def invoke(*args, url: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        for k in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
        r = run_main(monkeypatch, capsys, list(args))
        return subprocess.CompletedProcess(args, r.returncode, r.stdout, r.stderr)

    return invoke


def test_the_console_script_reports_a_bad_schedule_on_one_line(db, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=db, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "newsletter", "digests", "add", "w", "--cron", "0 8 * *",
                        "--source", "articles", "--list", "weekly"], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "error: cron '0 8 * *': expected 5 fields (minute hour day month weekday), got 4\n"


def test_bad_digest_definitions_are_one_line_errors_and_store_nothing(db, tmp_path, run):
    base = ["digests", "add", "weekly", "--tz", "Europe/Paris", "--source", "articles", "--list", "weekly"]
    r = run(*base, "--cron", "0 8 * * MON", url=db, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "next run" in r.stdout and "UTC" in r.stdout
    cases = [
        (base + ["--every", "weekly mon 08:00"], "digest 'weekly' already exists"),
        (["digests", "add", "other", "--cron", "0 8 * * MOONDAY", "--source", "articles", "--list", "weekly"], "MOONDAY"),
        (["digests", "add", "other", "--every", "weekly mon 08:00", "--tz", "Europe/Nowhere", "--source", "articles",
          "--list", "weekly"], "Europe/Nowhere"),
        (["digests", "add", "other", "--every", "daily 07:30", "--source", "articles", "--list", "nobody"], "list 'nobody'"),
        (["digests", "add", "other", "--every", "daily 07:30", "--source", "articles", "--list", "weekly",
          "--template", str(FIXTURES / "template_without_text")], "missing digest.txt"),
        (["digests", "add", "other", "--cron", "0 8 * * 1", "--every", "daily 07:30", "--source", "articles",
          "--list", "weekly"], "exactly one of --cron or --every"),
    ]
    for args, words in cases:
        r = run(*args, url=db, cwd=tmp_path)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
        [line] = r.stderr.strip().splitlines()
        assert words in line, (words, line)
    r = run("digests", "list", "--format", "json", url=db, cwd=tmp_path)
    [only] = json.loads(r.stdout)
    assert only["name"] == "weekly" and only["schedule"] == "0 8 * * MON" and only["timezone"] == "Europe/Paris"
    assert only["next_run_local"].endswith("08:00:00+01:00") or only["next_run_local"].endswith("08:00:00+02:00")


def test_pause_resume_remove_and_unknown_names(db, tmp_path, run):
    assert run("digests", "add", "weekly", "--every", "weekly mon 08:00", "--source", "articles", "--list", "weekly",
               url=db, cwd=tmp_path).returncode == 0
    r = run("digests", "pause", "weekly", url=db, cwd=tmp_path)
    assert r.returncode == 0 and "paused" in r.stdout
    r = run("digests", "list", url=db, cwd=tmp_path)
    assert "paused" in r.stdout and "weekly mon 08:00" in r.stdout
    r = run("digests", "show", "ghost", url=db, cwd=tmp_path)
    assert r.returncode != 0 and r.stderr.strip() == "error: digest 'ghost' does not exist (see `newsletter digests list`)"
    r = run("digests", "remove", "weekly", url=db, cwd=tmp_path)
    assert r.returncode == 0
    r = run("digests", "list", url=db, cwd=tmp_path)
    assert "no digests" in r.stdout


def test_the_unknown_list_hint_names_a_command_that_exists(db, tmp_path, run):
    import re

    from newsletter.cli import app

    r = run("digests", "add", "other", "--every", "daily 07:30", "--source", "articles", "--list", "nobody",
            url=db, cwd=tmp_path)
    assert r.returncode != 0
    hint = re.search(r"`newsletter ([a-z-]+) ([a-z-]+)`", r.stderr)
    assert hint, r.stderr
    group, command = hint.groups()
    root = typer.main.get_command(app)
    assert command in root.commands[group].commands, f"`newsletter {group} {command}` is not a command"


def test_digests_show_text_lists_each_runs_failed_sources(db, tmp_path, run):
    import socket
    from datetime import datetime, timezone

    from newsletter.config import Config
    from newsletter.schedule import digests as dg
    from newsletter.schedule import occurrences as occ

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/feed.xml"  # nothing listens there
    articles = tmp_path / "articles"
    (articles / "quay.md").write_text("---\ntitle: Quay lights\ndate: 2026-11-27T09:00:00+01:00\n"
                                      "url: https://example.org/quay\n---\n\nLights on the quay.\n", encoding="utf-8")
    engine = get_engine(db)
    config = Config(database_url=db, outbox=str(tmp_path / "outbox"), allow_private_fetch=True)
    dg.add_digest(engine, config, dg.DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris",
                                                sources=[down, str(articles)], lists=["weekly"]),
                  now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc))
    [r] = occ.run_due_digests(engine, config, now=datetime(2026, 11, 30, 7, 0, 5, tzinfo=timezone.utc), retry_delays=(0,))
    engine.dispose()
    assert r.status == "created"
    out = run("digests", "show", "weekly", url=db, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "created" in line and "campaign" in line)
    assert lines[at + 1].strip().startswith("warning: source failed after 2 attempt(s)") and down in lines[at + 1]
