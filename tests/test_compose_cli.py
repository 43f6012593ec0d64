"""`newsletter compose` as a user runs it: the real console entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import lxml.html
import pytest

from conftest import REPO
from doc_checks import option_cells, options_missing_from_table

BAD = REPO / "tests/fixtures/compose/bad"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "newsletter", "compose", *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_sample_articles_compose_into_every_file(tmp_path):
    out = tmp_path / "out"
    r = run(REPO / "articles", "--since", "2026-11-17", "--limit", "10", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "Found 8 articles, selected 5, skipped 3." in r.stdout
    assert "skipped 3: older than --since (2026-11-17 00:00 UTC)" in r.stdout
    assert "of 102 KB (within budget)" in r.stdout
    assert f"{out}/digest.html" in r.stdout
    for name in ("digest.html", "digest.txt", "digest.eml", "digest.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "digest.json").read_text())
    assert len(meta["article_keys"]) == 5
    root = lxml.html.parse(str(out / "digest.html")).getroot()
    for img in root.xpath("//img"):
        src = img.get("src")
        assert img.get("alt", "").strip(), src
        if not src.startswith("http"):
            assert (out / src).is_file(), src
    assert root.xpath('//div[@dir="rtl"][@lang="ar"]')


def test_every_option_together(tmp_path):
    out = tmp_path / "o"
    r = run(REPO / "articles", "--category", "current event", "--tag", "harbour", "--tag", "film", "--subject", "Cranes!",
            "--embed-images", "--strict", "--out", out, "--template", REPO / "templates")
    assert r.returncode == 0, r.stderr
    assert "selected 1," in r.stdout
    assert json.loads((out / "digest.json").read_text())["subject"] == "Cranes!"
    assert b"Content-ID: <harbour-cranes-" in (out / "digest.eml").read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        ([BAD / "malformed-front-matter.md"], "malformed-front-matter.md: malformed front matter"),
        ([BAD / "bad-date.md"], "bad-date.md: front matter 'date': cannot parse date"),
        ([BAD / "no-title.md"], "no-title.md: missing title"),
        ([BAD / "not-a-feed.xml"], "not-a-feed.xml: "),
        ([REPO / "articles", "--since", "2030-01-01"], "no article left to compose: all 8 skipped"),
        ([REPO / "articles", "--since", "soon"], "--since 'soon'"),
        ([REPO / "articles", "--template", BAD], "missing digest.mjml, digest.txt"),
        ([REPO / "articles", "--subject", "a\nb"], "--subject: line breaks are not allowed"),
        ([REPO / "tests/fixtures/compose/good", BAD / "no-title.md", "--strict"], "no-title.md: missing title"),
    ],
    ids=["front-matter", "date", "title", "not-a-feed", "empty-selection", "since", "template", "subject", "strict"],
)
def test_bad_input_is_one_line_error_and_non_zero_exit(tmp_path, args, message):
    r = run(*args, "--out", tmp_path / "out")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "out" / "digest.html").exists()


def test_unknown_option_gets_typers_message(tmp_path):
    r = run(REPO / "articles", "--colour", "red")
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


def test_every_compose_option_is_documented_in_the_manual():
    import typer.main

    from newsletter.cli import app

    section = (REPO / "docs" / "composing.md").read_text()
    command = typer.main.get_command(app).commands["compose"]
    options = [opt for p in command.params for opt in p.opts if opt.startswith("--") and opt != "--help"]
    assert "--since" in options and "--embed-images" in options
    assert option_cells(section, "newsletter compose"), "docs/composing.md has no options table for the command"
    missing = options_missing_from_table(section, "newsletter compose", options)
    assert not missing, f"not in the options table of docs/composing.md: {missing}"


def test_without_sources_the_configured_ones_are_used(tmp_path):
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text(f'sources = ["{REPO / "tests/fixtures/compose/good"}"]\nnewsletter_name = "Harbour Notes"\n')
    r = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(cfg), "compose", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Found 2 articles, selected 2" in r.stdout
    assert "Harbour Notes" in (tmp_path / "o/digest.txt").read_text()


def test_no_sources_at_all_is_a_one_line_error(tmp_path):
    r = run("--out", tmp_path / "o", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "error: no sources: pass files, folders or URLs (or set `sources` in the config)"


def test_feed_url_that_does_not_answer_is_a_one_line_error(tmp_path):
    import os
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/feed.xml"
    try:
        r = subprocess.run([sys.executable, "-m", "newsletter", "compose", url, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "NEWSLETTER_FETCH_TIMEOUT": "0.5",
                                                                             "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true"})
    finally:
        silent.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {url}") and "timed out" in lines[0], lines


def test_source_files_skipped_with_warnings_are_counted_in_the_summary(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in (REPO / "tests/fixtures/compose/good").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "bad.md").write_text("---\ntitle: Bad\ndate: someday\n---\nBroken.")
    (src / "README.txt").write_text("Notes for whoever edits this folder.\n")
    r = run(src, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "Found 2 articles, selected 2, skipped 0." in r.stdout
    assert "2 sources skipped" in r.stdout
    assert f"  {src / 'bad.md'}: front matter 'date': cannot parse date 'someday'" in r.stdout
    assert f"  {src / 'README.txt'}: not a recognised source" in r.stdout
    meta = json.loads((tmp_path / "o/digest.json").read_text())
    assert {s["what"] for s in meta["sources_skipped"]} == {str(src / "bad.md"), str(src / "README.txt")}


def test_help_says_what_embed_images_changes_and_which_sources_are_accepted():
    from typer.testing import CliRunner

    from newsletter.cli import app

    r = CliRunner().invoke(app, ["compose", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert r.exit_code == 0
    text = " ".join(r.output.replace("│", " ").split())
    assert "cid: references for local images in digest.html too" in text
    assert "digest.eml always embeds local images" in text
    assert "text files listing URLs" in text and "URLs of feeds and pages" in text


@pytest.mark.parametrize("site_url", ["notaurl", ""])
def test_a_bad_site_url_is_a_one_line_config_error(tmp_path, site_url):
    import os

    for source in (REPO / "tests/fixtures/compose/good", REPO / "tests/fixtures/compose/feed.xml"):
        r = subprocess.run([sys.executable, "-m", "newsletter", "compose", str(source), "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "NEWSLETTER_SITE_URL": site_url})
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: site_url: "), r.stderr
        assert not (tmp_path / "o" / "digest.html").exists()
