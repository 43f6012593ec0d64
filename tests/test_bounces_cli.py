"""`newsletter bounces parse` as a user runs it: JSON Lines, VERP only with a key, one-line errors."""

from __future__ import annotations

from dataclasses import astuple

from cli_runner import Result, run_main
from doc_checks import undocumented_options, usage_lines

import json
from pathlib import Path

import pytest

from newsletter.feedback.verp import verp_address

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
KEY = "cli-bounce-secret-key-0123456789"



@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    """Run the real ``newsletter`` entry point in this process, in ``tmp_path``."""

    def invoke(*args, key: str | None = KEY):
        monkeypatch.chdir(tmp_path)
        if key:
            monkeypatch.setenv("NEWSLETTER_SECRET_KEY", key)
        else:
            monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        code, out, err = astuple(run_main(monkeypatch, capsys, [*args]))
        return Result(code, out, err)

    return invoke


def fixture(tmp_path: Path, name: str, campaign=12, subscriber=34) -> Path:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    text = text.replace("{VERP}", verp_address("bounces@example.org", KEY, campaign, subscriber))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_lines_one_object_per_recipient(run, tmp_path):
    dsn = fixture(tmp_path, "dsn_postfix.eml")
    arf = fixture(tmp_path, "arf_complaint.eml")
    r = run("bounces", "parse", str(dsn), str(arf), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["file"], x["recipient"], x["kind"], x["status"], x["source"], x["campaign_id"], x["subscriber_id"])
            for x in rows] == [
        (str(dsn), "Gone@example.net", "hard", "5.1.1", "dsn", 12, 34),
        (str(dsn), "busy@example.net", "soft", "4.4.1", "dsn", 12, 34),
        (str(arf), "angry@example-provider.com", "complaint", None, "arf", 12, 34),
    ]
    assert set(rows[0]) == {"file", "recipient", "kind", "status", "reason", "campaign_id", "subscriber_id", "source"}
    assert "no secret key" not in r.stderr


def test_without_a_key_no_verp_and_a_note(run, tmp_path):
    dsn = fixture(tmp_path, "exim.eml")
    r = run("bounces", "parse", str(dsn), "--format", "json", key=None)
    assert r.returncode == 0
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["recipient"] == "nobody-here@example.de" and row["campaign_id"] is None
    assert "no secret key" in r.stderr
    assert not list(tmp_path.glob("*.secret-key")), "parse must not create a development key"


def test_unreadable_file_is_named_and_others_still_parsed(run, tmp_path):
    good = fixture(tmp_path, "gmail.eml")
    r = run("bounces", "parse", str(tmp_path / "missing.eml"), str(good), "--format", "json")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.eml" in errors[0]
    assert [json.loads(line)["recipient"] for line in r.stdout.splitlines()] == ["no.such.person.ever@gmail.com"]


def test_table_format(run, tmp_path):
    path = fixture(tmp_path, "qmail.eml")
    plain = fixture(tmp_path, "not_a_bounce.eml")
    r = run("bounces", "parse", str(path), str(plain))
    assert r.returncode == 0
    assert "stuffed@example.com" in r.stdout and "soft" in r.stdout and "5.2.2" in r.stdout
    assert "not_a_bounce.eml: not a bounce" in r.stderr


def test_docs_describe_every_bounces_command_and_option():
    import typer

    from newsletter.cli import app

    docs = (Path(__file__).parent.parent / "docs" / "bounces-parsing.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app).commands["bounces"]
    parse = group.commands["parse"]
    options = [o for p in parse.params for o in p.opts if o.startswith("--") and o != "--help"]
    assert options and usage_lines(docs, "newsletter bounces parse")
    assert undocumented_options(docs, "newsletter bounces parse", options) == []
