"""Sources → Article: Markdown with front matter, source detection, load_sources, and `newsletter articles`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from doc_checks import option_cells, options_missing_from_table
from newsletter.articles import Article, canonical_url, dedupe, load_sources
from newsletter.articles.dates import parse_date, parse_since
from newsletter.articles.markdown import parse_markdown
from newsletter.articles.readtime import parse_read_time, read_time_minutes
from newsletter.articles.sources import FEED, HTML, MARKDOWN, URL_LIST, detect_kind
from newsletter.articles.text import split_names, truncate_words
from newsletter.config import Config
from newsletter.errors import SourceError

FIX = Path(__file__).parent / "fixtures" / "articles"
FEEDS = Path(__file__).parent / "fixtures" / "feeds"
GOOD = FIX / "good"
BAD = FIX / "bad"
CONFIG = Config(site_url="https://news.example.org/")


def md(text: str, name: str = "post.md", config: Config = CONFIG, where: Path | None = None) -> Article:
    return parse_markdown(text, (where or Path("/tmp/site")) / name, config)


def by_title(articles, start):
    return next(a for a in articles if a.title.startswith(start))


# --- Markdown: front matter fields -------------------------------------------------------------

def test_seed_shaped_article_has_every_field():
    a = load_sources([str(GOOD / "2026-11-02-lighthouse-keepers.md")], CONFIG).articles[0]
    assert a.title == "The Last Lighthouse Keepers & Their Logbooks"  # entity decoded, plain text
    assert a.authors == ["LTM", "Dreamer"]  # comma-separated string split
    assert a.category == "Current Event"
    assert a.tags == ["coast", "history"]
    assert a.published == datetime(2026, 11, 2, 7, 30, tzinfo=timezone.utc)
    assert a.published.utcoffset() == timedelta(hours=1)  # keeps the zone it was written in
    assert a.url == "https://news.example.org/lighthouse-keepers"  # site URL + slug without the date prefix
    assert a.image.url == str((GOOD / "images" / "lighthouse.jpg").resolve())  # absolute local path
    assert a.image.alt == "A white lighthouse on a rocky point at dusk"
    assert "<h2>A job that outlived its machines</h2>" in a.body
    assert a.source == str(GOOD / "2026-11-02-lighthouse-keepers.md")


def test_trailing_video_block_becomes_a_titled_video_card_and_leaves_the_body():
    a = load_sources([str(GOOD / "2026-11-02-lighthouse-keepers.md")], CONFIG).articles[0]
    assert len(a.videos) == 1
    v = a.videos[0]
    assert (v.provider, v.id) == ("youtube", "dQw4w9WgXcQ")
    assert v.title == "Keepers of the northern light, a short documentary"
    assert v.url == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert v.thumbnail_url == "https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg"
    assert "BELOW IS A VIDEO" not in a.body and "youtube.com" not in a.body
    assert a.body.rstrip().endswith("the odd shipwreck.</p>")


def test_summary_is_the_first_paragraph_not_a_heading():
    a = load_sources([str(GOOD / "2026-11-02-lighthouse-keepers.md")], CONFIG).articles[0]
    assert a.summary.startswith("For more than a century the keepers")
    assert "A job that outlived" not in a.summary


def test_long_first_paragraph_is_cut_at_a_word_with_an_ellipsis():
    words = "harbour " * 100
    a = md(f"---\ntitle: Long\n---\n\n{words}\n")
    assert a.summary.endswith("…")
    assert len(a.summary) <= 281
    assert a.summary[:-1].split(" ")[-1] == "harbour"  # whole word, no half word


def test_front_matter_summary_url_video_read_time_and_author_list():
    a = load_sources([str(GOOD / "harbour-notes.md")], CONFIG).articles[0]
    assert a.summary == "A short digest of what moved in the harbour this week."
    assert a.url == "https://news.example.com/harbour/notes-42"
    assert a.authors == ["Ana Souza", "Bram Visser"]
    assert a.tags == ["harbour", "weekly"]  # comma-separated tags
    assert a.read_time_minutes == 4  # "4 min" from the source wins over the computed one
    assert a.published == datetime(2026, 10, 20, tzinfo=timezone.utc)  # a bare date is midnight UTC
    providers = [(v.provider, v.id) for v in a.videos]
    assert providers == [("youtube", "aqz-KE-bpKQ"), ("vimeo", "76979871")]  # front matter first, then body links
    assert a.videos[0].url.endswith("&t=42")


def test_markdown_body_is_sanitized():
    a = load_sources([str(GOOD / "harbour-notes.md")], CONFIG).articles[0]
    assert "<script" not in a.body and "alert" not in a.body
    assert "onclick" not in a.body and "javascript:" not in a.body
    assert 'rel="noopener noreferrer"' in a.body


def test_file_without_front_matter_takes_its_title_from_the_first_heading():
    a = load_sources([str(GOOD / "no-front-matter.md")], CONFIG).articles[0]
    assert a.title == "A note without front matter"
    assert "<h1>" not in a.body
    assert a.url == "https://news.example.org/no-front-matter"
    assert a.published is None


def test_right_to_left_article_gets_lang_and_dir():
    a = load_sources([str(GOOD / "2026-09-01-desert-rain.md")], CONFIG).articles[0]
    assert (a.lang, a.dir) == ("ar", "rtl")
    assert a.authors == ["ليلى حداد"]


def test_rtl_direction_is_detected_from_the_script_when_no_lang_is_given():
    a = md("---\ntitle: עיתון הנמל\n---\n\nהספינות הגיעו הבוקר לנמל, והעגורנים עבדו כל הלילה.\n")
    assert a.dir == "rtl"


def test_slug_from_front_matter_and_non_latin_slugs_are_percent_encoded():
    assert md("---\ntitle: T\nslug: My Custom Slug\n---\nx").url == "https://news.example.org/my-custom-slug"
    a = md("---\ntitle: T\n---\nx", name="Über Straße.md")
    assert a.url == "https://news.example.org/%C3%BCber-stra%C3%9Fe"


def test_image_forms_url_mapping_and_first_body_image(tmp_path):
    a = md("---\ntitle: T\nimage: https://cdn.example.com/a.jpg\n---\nx")
    assert a.image.url == "https://cdn.example.com/a.jpg" and a.image.alt == "T"  # alt falls back to the title
    a = md("---\ntitle: T\nimage: {url: pics/b.png, alt: A boat}\n---\nx", where=tmp_path)
    assert a.image.url == str(tmp_path / "pics" / "b.png") and a.image.alt == "A boat"
    a = md("---\ntitle: T\n---\nText ![A crane](img/c.jpg) more", where=tmp_path)
    assert a.image.url == str(tmp_path / "img" / "c.jpg") and a.image.alt == "A crane"


def test_date_forms_are_all_timezone_aware():
    for value in ["2026-11-01", "2026-11-01 09:30", "2026-11-01T09:30:00Z", "Sun, 01 Nov 2026 09:30:00 +0000", "1 November 2026", "November 1, 2026"]:
        d = md(f"---\ntitle: T\ndate: {value}\n---\nx").published
        assert d.tzinfo is not None and d.date() == datetime(2026, 11, 1).date(), value


def test_naive_dates_are_taken_in_the_configured_time_zone():
    a = md("---\ntitle: T\ndate: 2026-11-01 09:00\n---\nx", config=Config(timezone="Europe/Paris"))
    assert a.published == datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)


def test_read_time_is_computed_at_about_230_words_a_minute_and_at_least_one():
    assert md("---\ntitle: T\n---\n" + "word " * 1150).read_time_minutes == 5
    assert md("---\ntitle: T\n---\nshort").read_time_minutes == 1
    assert read_time_minutes("") == 1
    assert parse_read_time("7 min read") == 7 and parse_read_time("soon") is None


def test_authors_split_on_commas_and_and():
    assert split_names("LTM, Dreamer") == ["LTM", "Dreamer"]
    assert split_names("Ana Souza and Bram Visser") == ["Ana Souza", "Bram Visser"]
    assert split_names(["A", {"name": "B"}, "A"]) == ["A", "B"]


def test_truncate_words_never_cuts_a_word():
    assert truncate_words("one two three", 100) == "one two three"
    assert truncate_words("alpha beta gamma delta", 12) == "alpha beta…"


# --- Markdown: bad input, each a one-line error naming the file -------------------------------

@pytest.mark.parametrize(
    "name, problem",
    [
        ("broken-yaml.md", "malformed front matter (line 3)"),
        ("bad-date.md", "front matter 'date': cannot parse date 'the day after tomorrow'"),
        ("no-title.md", "missing title"),
        ("unclosed.md", "has no closing '---' line"),
        ("list-front-matter.md", "front matter must be a mapping"),
    ],
)
def test_bad_markdown_is_a_one_line_error_naming_the_file(name, problem):
    with pytest.raises(SourceError) as e:
        load_sources([str(BAD / name)], CONFIG)
    message = str(e.value)
    assert message.startswith(str(BAD / name) + ": ")
    assert problem in message
    assert "\n" not in message


def test_front_matter_video_that_is_not_a_video_is_an_error():
    with pytest.raises(SourceError, match="'video'.*not a YouTube or Vimeo link"):
        md("---\ntitle: T\nvideo: https://example.com/clip.mp4\n---\nx")


def test_non_utf8_markdown_is_an_error(tmp_path):
    p = tmp_path / "latin1.md"
    p.write_bytes("---\ntitle: Café\n---\nx".encode("latin-1"))
    with pytest.raises(SourceError, match="latin1.md: not UTF-8"):
        load_sources([str(p)], CONFIG)


# --- Detection from content --------------------------------------------------------------------

def test_kind_is_detected_from_content_not_only_the_extension():
    assert detect_kind((FEEDS / "rss2.xml").read_bytes(), "x.md") == FEED
    assert detect_kind((FEEDS / "rss-saved-as.txt").read_bytes(), "rss-saved-as.txt") == FEED
    assert detect_kind(b"---\ntitle: x\n---\n", "notes.txt") == MARKDOWN
    assert detect_kind(b"<!doctype html><html><title>x</title></html>", "page.xml") == HTML
    assert detect_kind(b"# my list\nhttps://a.example.com/feed\n\nhttps://b.example.com/\n", "feeds.txt") == URL_LIST
    assert detect_kind(b"\x89PNG\r\n\x1a\n\x00\x00", "image.md") is None
    assert detect_kind(b"\xef\xbb\xbf<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'/>", "f") == FEED


def test_a_feed_saved_as_txt_still_loads():
    arts = load_sources([str(FEEDS / "rss-saved-as.txt")], CONFIG).articles
    assert arts[0].title == "Cranes & Containers: A Busy Week"


def test_html_page_goes_to_the_page_parser(tmp_path):
    p = tmp_path / "page.html"
    p.write_text("<!doctype html><html lang='en'><head><title>A page about cranes</title>"
                 "<link rel='canonical' href='https://example.org/cranes'></head>"
                 "<body><article><h1>A page about cranes</h1><p>" + "Cranes lift things. " * 30 + "</p></article></body></html>")
    try:
        import newsletter.articles.pages  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(SourceError, match="HTML pages are not supported yet"):
            load_sources([str(p)], CONFIG)
        return
    a = load_sources([str(p)], CONFIG).articles[0]
    assert "cranes" in a.title.lower()


# --- load_sources: several sources, bad items, dedupe, order -------------------------------------

def test_directory_loads_every_article_newest_first():
    arts = load_sources([str(GOOD)], CONFIG).articles
    assert [a.title for a in arts] == [
        "The Last Lighthouse Keepers & Their Logbooks",
        "Harbour notes",
        "المطر في الصحراء",
        "A note without front matter",  # undated: last
    ]


def test_one_bad_file_among_good_ones_is_skipped_with_a_warning_naming_it(tmp_path):
    (tmp_path / "good.md").write_text("---\ntitle: Good one\ndate: 2026-11-01\n---\nFine.")
    (tmp_path / "bad.md").write_text("---\ntitle: Bad one\ndate: someday\n---\nBroken.")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # assets are ignored silently
    result = load_sources([str(tmp_path)], CONFIG)
    assert [a.title for a in result.articles] == ["Good one"]
    assert len(result.warnings) == 1
    assert str(tmp_path / "bad.md") in result.warnings[0] and "someday" in result.warnings[0]


def test_stray_files_in_a_directory_are_ignored_with_a_note_even_when_strict(tmp_path):
    (tmp_path / "post.md").write_text("---\ntitle: Post\n---\nWords.")
    (tmp_path / "README.txt").write_text("This folder holds the articles for the newsletter.\n")
    (tmp_path / "data.json").write_text('{"not": "a feed"}')
    result = load_sources([str(tmp_path)], CONFIG, strict=True)
    assert [a.title for a in result.articles] == ["Post"]
    assert result.warnings == [f"ignored {tmp_path / 'README.txt'}: not a recognised source (expected Markdown, an RSS/Atom/RDF/JSON feed, an HTML page or a list of URLs)"]


def test_strict_makes_a_bad_file_an_error(tmp_path):
    (tmp_path / "good.md").write_text("---\ntitle: Good one\n---\nFine.")
    (tmp_path / "bad.md").write_text("---\ntitle: [\n---\n")
    with pytest.raises(SourceError, match="bad.md: malformed front matter"):
        load_sources([str(tmp_path)], CONFIG, strict=True)


def test_a_directory_with_only_bad_files_fails_outright():
    with pytest.raises(SourceError, match="no article could be read"):
        load_sources([str(BAD)], CONFIG)


def test_a_failing_source_among_good_ones_is_a_warning_unless_strict():
    result = load_sources([str(GOOD), "/nonexistent/feeds.xml"], CONFIG)
    assert len(result.articles) == 4
    assert result.warnings == ["skipped /nonexistent/feeds.xml: no such file or directory"]
    with pytest.raises(SourceError, match="/nonexistent/feeds.xml: no such file or directory"):
        load_sources([str(GOOD), "/nonexistent/feeds.xml"], CONFIG, strict=True)


def test_mixed_sources_markdown_and_feeds_in_one_call():
    arts = load_sources([str(GOOD / "harbour-notes.md"), str(FEEDS / "atom.xml"), str(FEEDS / "rss1-rdf.xml")], CONFIG).articles
    assert {a.title for a in arts} >= {"Harbour notes", "Bugs & Bounties in 2026", "Distro Weekly, Issue 12"}
    dated = [a.published for a in arts if a.published]
    assert dated == sorted(dated, reverse=True)


def test_duplicates_by_canonical_url_or_guid_keep_the_newest_most_complete_copy():
    day1, day2 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    old = Article(title="Old", url="https://www.example.com/a/?utm_source=x#top", published=day1, summary="s", category="c")
    bare = Article(title="Same day, less", url="http://example.com/a/", published=day2)
    full = Article(title="Same day, more", url="https://example.com/a", published=day2, summary="more complete")
    g1 = Article(title="G1", url="https://example.com/g1", guid="tag:1")
    g2 = Article(title="G2", url="https://example.com/g2", guid="tag:1", summary="has more")
    kept = dedupe([old, bare, full, g1, g2])
    assert [a.title for a in kept] == ["Same day, more", "G2"]  # newest wins over complete; then completeness
    assert canonical_url("HTTPS://WWW.Example.com/a/?b=1&utm_medium=m#x") == "https://example.com/a?b=1"


def test_no_sources_is_an_error():
    with pytest.raises(SourceError, match="no source given"):
        load_sources([], CONFIG)


def test_unsupported_url_scheme_and_missing_path():
    with pytest.raises(SourceError, match="ftp://example.com/feed: only http:// and https:// URLs"):
        load_sources(["ftp://example.com/feed"], CONFIG)
    with pytest.raises(SourceError, match="no such file or directory"):
        load_sources(["/no/such/dir"], CONFIG)


def test_empty_and_binary_files_are_errors(tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"  \n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with pytest.raises(SourceError, match="empty.xml: empty file"):
        load_sources([str(tmp_path / "empty.xml")], CONFIG)
    with pytest.raises(SourceError, match="blob.bin: not a recognised source: a binary file"):
        load_sources([str(tmp_path / "blob.bin")], CONFIG)


# --- --since parsing -----------------------------------------------------------------------------

def test_parse_since_durations_and_dates():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="expected a duration like 7d"):
        parse_since("last tuesday", now)
    with pytest.raises(ValueError):
        parse_date("not a date")


# --- The `newsletter articles` command -------------------------------------------------------------

def run_cli(*args, cwd=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "articles", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env={"PATH": "/usr/bin:/bin", "NEWSLETTER_SITE_URL": "https://news.example.org", "COLUMNS": "200"},
    )


def test_cli_json_prints_one_object_per_line_with_exactly_the_article_fields():
    r = run_cli(str(GOOD), str(FEEDS / "atom.xml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 6
    expected = set(Article(title="x", url="y").to_json_dict())
    assert all(set(row) == expected for row in rows)
    lighthouse = next(row for row in rows if row["title"].startswith("The Last Lighthouse"))
    assert lighthouse["authors"] == ["LTM", "Dreamer"]
    assert lighthouse["videos"][0]["title"] == "Keepers of the northern light, a short documentary"
    assert lighthouse["published"] == "2026-11-02T08:30:00+01:00"


def test_cli_since_filters_by_date_and_leaves_out_undated():
    r = run_cli(str(GOOD), "--format", "json", "--since", "2026-10-01")
    assert r.returncode == 0, r.stderr
    titles = [json.loads(line)["title"] for line in r.stdout.splitlines()]
    assert titles == ["The Last Lighthouse Keepers & Their Logbooks", "Harbour notes"]


def test_cli_table_is_the_default():
    r = run_cli(str(GOOD / "harbour-notes.md"))
    assert r.returncode == 0, r.stderr
    assert "Harbour notes" in r.stdout and "2026-10-20" in r.stdout and "4 min" in r.stdout
    assert "1 article" in r.stdout


def test_cli_warnings_go_to_stderr_and_strict_turns_them_into_errors(tmp_path):
    (tmp_path / "good.md").write_text("---\ntitle: Good one\n---\nFine.")
    (tmp_path / "bad.md").write_text("---\ntitle: Bad\ndate: someday\n---\n")
    r = run_cli(str(tmp_path), "--format", "json")
    assert r.returncode == 0
    assert "warning: skipped" in r.stderr and "bad.md" in r.stderr
    assert json.loads(r.stdout)["title"] == "Good one"
    r = run_cli(str(tmp_path), "--strict")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "bad.md" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, needle, code",
    [
        ([str(BAD / "bad-date.md")], "bad-date.md: front matter 'date'", 1),
        ([str(FEEDS / "not-a-feed.xml")], "not-a-feed.xml: not an RSS, Atom or RDF feed", 1),
        (["/no/such/file.md"], "/no/such/file.md: no such file or directory", 1),
        ([str(GOOD), "--since", "soonish"], "error: --since 'soonish': expected a duration like 7d", 1),
        ([str(GOOD), "--format", "xml"], "--format", 2),
    ],
)
def test_cli_bad_input_exits_non_zero_without_traceback(args, needle, code):
    r = run_cli(*args)
    assert r.returncode == code
    assert needle in r.stderr
    if code == 1:
        assert r.stderr.strip().count("\n") == 0, r.stderr  # one line, no Typer box
    assert "Traceback" not in r.stderr and r.stdout == ""


# --- Fuzz: any bytes in, an Article list or our own one-line error out ------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from newsletter.articles.sources import parse_content  # noqa: E402

_PREFIXES = st.sampled_from([b"", b"---\n", b"---\ntitle: x\n---\n", b"<?xml version='1.0'?>", b"<rss version='2.0'>", b"<feed>", b"<html>", b"# "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PREFIXES, st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_fuzz_any_content_gives_articles_or_a_source_error(prefix, data):
    try:
        # nested=True: a URL list is refused instead of fetched, so the fuzz never touches the network.
        articles = parse_content(prefix + data, "fuzz-input", CONFIG, lambda w: None, nested=True)
    except SourceError as e:
        assert "\n" not in str(e)
        return
    for a in articles:
        assert isinstance(a, Article) and a.title


def test_front_matter_text_is_plain_text_and_heading_titles_lose_their_markup():
    # Tags are stripped, as in feed titles; an escaped bracket pair is how to write one literally.
    assert md("---\ntitle: Why &lt;div&gt; soup is bad &amp; slow\n---\nx").title == "Why <div> soup is bad & slow"
    assert md("---\ntitle: Why <div> soup is bad\n---\nx").title == "Why soup is bad"
    assert md("# Hello *world* and `code`\n\nBody text.").title == "Hello world and code"


def test_docs_document_every_option_of_the_articles_command():
    import typer

    from newsletter.cli import app

    section = (Path(__file__).parent.parent / "docs" / "articles.md").read_text()
    command = typer.main.get_command(app).commands["articles"]
    options = [o for p in command.params for o in p.opts if o.startswith("--") and o != "--help"]
    assert {"--since", "--format", "--strict"} <= set(options)
    assert option_cells(section, "newsletter articles"), "docs/articles.md has no options table for the command"
    missing = options_missing_from_table(section, "newsletter articles", options)
    assert not missing, f"not in the options table of docs/articles.md: {missing}"


def test_cli_unknown_time_zone_is_a_config_error():
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "articles", str(GOOD)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "NEWSLETTER_TIMEZONE": "Mars/Base"},
    )
    assert r.returncode == 1
    assert r.stderr.strip() == "error: timezone: unknown time zone 'Mars/Base'"


def test_a_web_address_without_scheme_gets_a_hint():
    with pytest.raises(SourceError, match=r"^example.org/feed: no such file or directory \(for a web address, start it with https://\)$"):
        load_sources(["example.org/feed"], CONFIG)


def test_trailing_video_link_with_text_and_body_spacing_kept():
    body = "Intro paragraph long enough to be a summary of this small article.\n\n```\ncode\n\n\nmore code\n```\n\n[Watch the harbour at night](https://youtu.be/aqz-KE-bpKQ)\n"
    a = md("---\ntitle: T\n---\n" + body)
    assert [(v.id, v.title) for v in a.videos] == [("aqz-KE-bpKQ", "Watch the harbour at night")]
    assert "code\n\n\nmore code" in a.body  # the body before the video is untouched
    assert "youtu" not in a.body


# --- Only regular files are opened -------------------------------------------------------------

def test_a_fifo_in_a_folder_is_skipped_with_a_warning_and_a_fifo_given_directly_is_an_error(tmp_path):
    import os

    (tmp_path / "post.md").write_text("---\ntitle: Post\n---\nWords.")
    os.mkfifo(tmp_path / "pipe")
    os.mkfifo(tmp_path / "pipe.md")
    # A subprocess with a timeout: before the fix, opening the FIFO blocked forever.
    r = run_cli(str(tmp_path), "--format", "json", timeout=20)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["title"] == "Post"
    assert f"{tmp_path / 'pipe'}: not a regular file (a named pipe (FIFO))" in r.stderr
    r = run_cli(str(tmp_path / "pipe.md"), timeout=20)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "pipe.md: not a regular file" in r.stderr


@pytest.mark.parametrize("site_url", ["notaurl", "", "ftp://example.org", "https://"])
def test_a_bad_site_url_is_a_config_error_naming_it_when_markdown_links_are_built(tmp_path, site_url):
    from newsletter.errors import ConfigError

    (tmp_path / "post.md").write_text("---\ntitle: Post\n---\nWords.")
    with pytest.raises(ConfigError, match="^site_url: .* is not an absolute http\\(s\\) URL"):
        load_sources([str(tmp_path)], Config(site_url=site_url))
    # An article with its own url does not need site_url.
    (tmp_path / "post.md").write_text("---\ntitle: Post\nurl: https://example.org/post\n---\nWords.")
    assert load_sources([str(tmp_path)], Config(site_url=site_url)).articles[0].url == "https://example.org/post"


def test_cli_bad_site_url_is_a_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "articles", str(GOOD)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "NEWSLETTER_SITE_URL": "notaurl"},
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "site_url" in r.stderr and "Traceback" not in r.stderr


def test_front_matter_text_fields_lose_raw_html_everywhere():
    a = md(
        "---\ntitle: Evil <script>alert(1)</script>\nauthors: [\"<b>Ana</b>\", Bram <i>V</i>]\ncategory: <em>News</em>\n"
        "tags: [<u>coast</u>, sea]\nsummary: A <img src=x onerror=alert(1)>summary\nimage: pic.jpg\nimage_alt: <b>A</b> boat\n---\nBody."
    )
    assert a.title == "Evil"
    assert a.authors == ["Ana", "Bram V"]
    assert a.category == "News"
    assert a.tags == ["coast", "sea"]
    assert a.summary == "A summary"
    assert a.image.alt == "A boat"
    assert "<" not in json.dumps({k: v for k, v in a.to_json_dict().items() if k != "body"})


@pytest.mark.parametrize(
    "front, problem",
    [
        ("image: [a, b]", "front matter 'image' must be a path or URL"),
        ("summary: [a, b]", "front matter 'summary' must be text, got a list"),
        ("description: {a: 1}", "front matter 'description' must be text, got a mapping"),
        ("tags: {a: 1}", "front matter 'tags' must be text or a list of text, got a mapping"),
        ("dir: sideways", "front matter 'dir' must be ltr, rtl or auto, got 'sideways'"),
        ("read_time: lots", "front matter 'read_time' must be a number of minutes"),
        ("title: [a, b]", "front matter 'title' must be text, got a list"),
        ("date: 12345", "front matter 'date': 12345 is a number, not a date"),
        ("date: 20261399", "front matter 'date': cannot parse date '20261399'"),
        ("published: someday", "front matter 'published': cannot parse date 'someday'"),
        ("date: [2026]", "front matter 'date' must be a date like 2026-11-01, got a list"),
    ],
)
def test_front_matter_fields_of_the_wrong_type_are_one_line_errors_naming_file_and_field(front, problem):
    with pytest.raises(SourceError) as e:
        md(f"---\ntitle: T\n{front}\n---\nBody." if not front.startswith("title") else f"---\n{front}\n---\nBody.")
    assert str(e.value).startswith("/tmp/site/post.md: ")
    assert problem in str(e.value)
    assert "\n" not in str(e.value)


def test_an_eight_digit_yaml_integer_date_is_yyyymmdd_not_a_unix_timestamp():
    a = md("---\ntitle: T\ndate: 20261122\n---\nBody.")
    assert a.published == datetime(2026, 11, 22, tzinfo=timezone.utc)


@pytest.mark.parametrize("label", ["Watch on YouTube", "watch", "Video", "Watch the video", "https://youtu.be/dQw4w9WgXcQ"])
def test_a_trailing_video_link_with_generic_text_gives_no_video_title(label):
    a = md(f"---\ntitle: Cranes\n---\nSome text.\n\n[{label}](https://youtu.be/dQw4w9WgXcQ)\n")
    assert [(v.id, v.title) for v in a.videos] == [("dQw4w9WgXcQ", None)]
    assert "youtu" not in a.body


def test_a_url_list_with_one_bad_line_names_the_line(tmp_path):
    f = tmp_path / "reading.txt"
    f.write_text("# this week\nhttps://example.org/a\nexample.org/b\nhttps://example.org/c\n")
    with pytest.raises(SourceError) as e:
        load_sources([str(f)], CONFIG)
    assert "line 3 ('example.org/b') is not an http(s) URL" in str(e.value)
    assert str(e.value).startswith(f"{f}: not a recognised source")  # still ignored as a stray file inside a folder


def test_a_url_list_without_a_comment_header_and_one_bad_line_names_it_too(tmp_path):
    f = tmp_path / "reading.txt"
    f.write_text("https://example.org/a\nhttps://example.org/b\nnot a url\n")
    with pytest.raises(SourceError, match=r"line 3 \('not a url'\) is not an http\(s\) URL"):
        load_sources([str(f)], CONFIG)
