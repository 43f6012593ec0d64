"""HTML article pages → Article: every metadata signal, its rank, charsets, and bad input.

The pages are small ones written for these tests (tests/fixtures/pages/); each exercises
one kind of signal a real publisher's page carries.
"""

from __future__ import annotations

import codecs
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.articles.pages import decode_html, parse_page
from newsletter.errors import SourceError

PAGES = Path(__file__).parent / "fixtures" / "pages"


def page(name: str, url: str | None = None, **kw):
    return parse_page((PAGES / name).read_bytes(), url or f"https://site.example.com/{name[:-5]}", **kw)


def html(head: str = "", body: str = "", *, attrs: str = "") -> str:
    return f"<!DOCTYPE html><html{attrs}><head>{head}</head><body>{body}</body></html>"


# -- JSON-LD --------------------------------------------------------------------------------


def test_json_ld_article_outranks_opengraph_and_meta():
    a = page("jsonld_article.html")
    assert a.title == "Harbour lights return after twenty years"  # not og:title, not <title>
    assert a.authors == ["Maren Holt", "Idris Okafor"]  # not <meta name=author>
    assert a.published == datetime(2026, 3, 14, 8, 30, tzinfo=timezone(timedelta(hours=1)))
    assert a.summary == "The old lighthouse keepers' cottages glow again, thanks to a village fund."
    assert a.site_name == "Tidewater Gazette"
    assert a.category == "Local"
    assert a.tags == ["harbour", "lighthouse", "village fund"]
    assert a.image is not None
    assert (a.image.url, a.image.alt, a.image.width, a.image.height) == (
        "https://news.example.com/img/lights.jpg", "Lamps lit along the harbour wall", 1200, 675)
    assert a.url == "https://news.example.com/2026/harbour-lights"  # rel=canonical
    assert a.lang == "en" and a.dir == "ltr"


def test_json_ld_graph_with_id_references():
    a = page("jsonld_graph.html")
    assert a.title == "Sourdough at altitude"
    assert a.authors == ["Ottilie Brandt"]  # author given as {"@id": ...} pointing at a Person in the graph
    assert a.published == datetime(2025, 9, 2, 6, 0, tzinfo=timezone.utc)
    assert a.category == "Baking"  # first of an articleSection array
    assert a.site_name == "Crumb Notes"  # the graph's WebSite
    assert a.lang == "en-GB"


def test_json_ld_top_level_array_and_broken_block_ignored():
    a = page("jsonld_array.html")
    assert a.title == "Sharpening a card scraper"  # BlogPosting "name" when there is no headline
    assert a.authors == ["Felix Aro"]
    assert a.published is not None and a.published.date().isoformat() == "2024-11-30"
    assert a.published.tzinfo is not None
    assert a.tags == ["tools", "woodwork"]
    assert a.site_name == "Workshop Weekly"


def test_json_ld_name_preferred_over_a_tagline_headline_when_the_title_agrees():
    ld = ('{"@context":"https://schema.org","@type":"Article","name":"Quince",'
          '"headline":"fruit tree of the rose family"}')
    doc = html(f'<title>Quince - Plant Wiki</title><script type="application/ld+json">{ld}</script>',
               "<p>The quince is a small tree whose fruit is too hard to eat raw.</p>")
    assert parse_page(doc.encode(), "https://wiki.example.org/Quince").title == "Quince"


# -- OpenGraph, Twitter, Dublin Core, Parse.ly, Sailthru -----------------------------------


def test_opengraph_and_article_meta():
    a = page("opengraph.html")
    # og:title is kept as the publisher declared it; the digest card drops the site tail (test_render)
    assert a.title == "Ten quiet trails near the coast | Pathfinder Journal"
    assert a.site_name == "Pathfinder Journal"
    assert a.summary.startswith("Where to walk when the beaches are full")
    assert a.published == datetime(2026, 6, 1, 9, 15, tzinfo=timezone(timedelta(hours=-4)))
    assert a.authors == ["Ada Lindqvist"]  # article:author is a profile URL, not a name
    assert a.category == "Outdoors"
    assert a.tags == ["walking", "coast"]
    assert a.image is not None
    assert a.image.url == "https://site.example.com/images/trail.jpg"  # relative og:image resolved
    assert (a.image.alt, a.image.width, a.image.height) == ("A sandy path between dunes", 1600, 900)
    assert a.url == "https://pathfinder.example.net/trails/quiet-coast"  # og:url
    assert a.lang == "en-US"


def test_twitter_card():
    a = page("twitter.html")
    assert a.title == "The accidental typeface"
    assert a.summary.startswith("How a sign painter's shortcut")
    assert a.image is not None and a.image.url == "https://type.example.org/img/bus-stop.png"
    assert a.image.alt == "Hand-painted letters on a bus shelter"
    assert a.authors == []  # a twitter handle is not a byline


def test_dublin_core():
    a = page("dublin_core.html")
    assert a.title == "Soil moisture in upland meadows"
    assert a.authors == ["Priya Raman"]
    assert a.published is not None and a.published.date().isoformat() == "2023-05-17"
    assert a.summary == "Three summers of readings from twelve meadow plots."
    assert a.lang == "en"  # DC.language, the page has no <html lang>
    assert a.site_name == "Upland Research Trust"


def test_parsely_meta():
    a = page("parsely.html")
    assert a.title == "Night trains are back"
    assert a.authors == ["Tomasz Wren"]
    assert a.published == datetime(2025, 12, 5, 21, 0, tzinfo=timezone.utc)
    assert a.category == "Travel"
    assert a.tags == ["rail", "europe", "sleeper"]
    assert a.image is not None and a.image.url == "https://rail.example.com/sleeper.jpg"


def test_sailthru_meta():
    a = page("sailthru.html")
    assert a.title == "A cheaper way to heat the greenhouse"
    assert a.authors == ["Beatrix Collins"]
    assert a.published == datetime(2024, 2, 11, 7, 45, tzinfo=timezone.utc)  # no zone given: UTC
    assert a.tags == ["gardening", "winter"]
    assert a.summary == "Compost releases heat as it works. Put it to use."
    assert a.image is not None and a.image.url == "https://garden.example.com/compost.jpg"


# -- the visible page: <time>, rel=author, bylines, <title> ---------------------------------


def test_time_datetime_and_rel_author_inside_the_article():
    a = page("time_rel_author.html")
    assert a.title == "Mending a dry-stone wall"  # "– Field Craft" is the site's part of <title>
    assert a.authors == ["Gwen Pritchard"]  # not the navigation's rel=author "About the site"
    assert a.published == datetime(2025, 4, 19, 10, 0, tzinfo=timezone(timedelta(hours=1)))


def test_visible_byline_without_prefix_or_date():
    a = page("byline_text.html")
    assert a.authors == ["Rosalind Achebe"]
    # the summary is the first paragraph of prose, not the repeated byline
    assert a.summary.startswith("Every evening at dusk, Harold walks")


def test_page_without_metadata_uses_title_tag_and_first_paragraph():
    a = page("no_meta.html")
    assert a.title == "A walk along the canal"
    assert a.summary.startswith("The towpath runs for eleven miles")
    assert a.authors == [] and a.published is None and a.image is None and a.site_name is None
    assert a.url == "https://site.example.com/no_meta"


def test_title_tail_kept_when_it_is_not_the_site_name():
    doc = html('<meta property="og:site_name" content="Lakeside Courier">'
               '<meta property="og:title" content="Budget 2026 | What changes for renters">',
               "<p>Rents, deposits and the new notice periods, explained line by line for tenants.</p>")
    assert parse_page(doc.encode(), "https://courier.example.com/b").title == "Budget 2026 | What changes for renters"


def test_site_name_head_dropped_from_a_title_tag():
    doc = html('<meta property="og:site_name" content="Lakeside Courier">'
               '<title>Lakeside Courier — Ferry timetable changes</title>',
               "<p>The winter timetable starts on Monday with two fewer crossings each day.</p>")
    assert parse_page(doc.encode(), "https://courier.example.com/f").title == "Ferry timetable changes"


def test_site_tail_dropped_from_a_title_tag_but_kept_in_a_declared_title():
    body = "<p>The winter timetable starts on Monday with two fewer crossings each day.</p>"
    tab = html('<meta property="og:site_name" content="Lakeside Courier">'
               '<title>Ferry timetable changes | Lakeside Courier</title>', body)
    declared = html('<meta property="og:site_name" content="Lakeside Courier">'
                    '<meta property="og:title" content="Ferry timetable changes | Lakeside Courier">', body)
    assert parse_page(tab.encode(), "https://courier.example.com/f").title == "Ferry timetable changes"
    assert parse_page(declared.encode(), "https://courier.example.com/f").title == "Ferry timetable changes | Lakeside Courier"


def test_entities_decoded_and_whitespace_normalised():
    a = page("entities.html")
    assert a.title == "Café & Boulangerie – le guide"  # double-escaped entities, newlines collapsed
    assert a.summary == "L'adresse où l’on reste longtemps."
    assert a.authors == ["Chérie Dupont"]
    assert a.lang == "fr"


# -- language and direction ------------------------------------------------------------------


def test_rtl_from_html_dir():
    a = page("rtl_arabic.html")
    assert (a.lang, a.dir) == ("ar", "rtl")
    assert a.title == "حديقة على السطح"


def test_rtl_from_language_when_no_dir_is_given():
    a = page("rtl_lang_only.html")
    assert (a.lang, a.dir) == ("he", "rtl")


def test_dir_of_the_article_element_wins_over_the_body():
    a = page("rtl_article_dir.html")
    assert a.dir == "rtl"
    assert "\u200c" in a.summary  # the zero-width non-joiner of Persian spelling survives
    assert "Home" not in a.body  # navigation is not article text


def test_ltr_is_the_default():
    doc = html("<title>Plain page</title>", "<p>Nothing here says which way the text runs.</p>")
    a = parse_page(doc.encode(), "https://example.org/p")
    assert (a.lang, a.dir) == (None, "ltr")


# -- URLs, body, videos, read time -----------------------------------------------------------


def test_base_href_resolves_relative_urls():
    a = page("base_href.html", "https://www.example.com/some/page.html")
    assert a.url == "https://cdn.example.net/blog/posts/relative-links"
    assert a.image is not None and a.image.url == "https://cdn.example.net/blog/img/cover.jpg"
    assert 'href="https://cdn.example.net/blog/other-post"' in a.body
    assert 'src="https://cdn.example.net/blog/img/inline.png"' in a.body


def test_body_is_sanitized_and_hidden_text_left_out():
    a = page("no_meta.html")
    assert "Herons stand on the lock gates" in a.body
    for bad in ("<script", "onclick", "javascript:", "tracking", "hidden from readers"):
        assert bad not in a.body


def test_videos_embedded_and_linked_are_found_once_each():
    a = page("videos.html")
    assert [(v.provider, v.id) for v in a.videos] == [
        ("youtube", "dQw4w9WgXcQ"), ("youtube", "M7lc1UVf-VE"), ("vimeo", "76979871")]
    assert a.videos[0].thumbnail_url == "https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg"


def test_read_time_from_main_text():
    words = " ".join(["gravel"] * 1150)
    doc = html("<title>A long read about gravel</title>",
               f"<nav>{'menu ' * 3000}</nav><article><h1>A long read about gravel</h1><p>{words}</p></article>")
    a = parse_page(doc.encode(), "https://example.org/gravel")
    assert a.read_time_minutes == 5  # 1150 words at 230 a minute; the menu does not count


def test_long_first_paragraph_summary_is_cut_at_a_word():
    text = "Tides " + "rise and fall twice a day along this shore " * 20
    a = parse_page(html("<title>Tides</title>", f"<article><p>{text}</p></article>").encode(), "https://example.org/t")
    assert len(a.summary) <= 301 and a.summary.endswith("…")
    assert a.summary[:-1] == a.summary[:-1].rstrip() and text.startswith(a.summary[:-1])


def test_local_file_path_as_url(tmp_path):
    f = tmp_path / "story.html"
    f.write_bytes((PAGES / "opengraph.html").read_bytes())
    a = parse_page(f.read_bytes(), str(f))
    assert a.title == "Ten quiet trails near the coast | Pathfinder Journal"
    assert a.source == str(f)


# -- character sets --------------------------------------------------------------------------

RUSSIAN = html('<meta charset="windows-1251"><title>Борщ без суеты</title>',
               "<article><p>Это небольшая статья о том, как варить борщ без лишней суеты и с хорошим настроением.</p></article>")


def test_charset_from_meta():
    a = parse_page(RUSSIAN.encode("cp1251"), "https://example.org/ru")
    assert a.title == "Борщ без суеты"


def test_charset_from_http_header_wins_over_meta():
    doc = html('<meta charset="utf-8"><title>Crème brûlée</title>', "<p>Une crème brûlée réussie demande de la patience.</p>")
    a = parse_page(doc.encode("latin-1"), "https://example.org/fr", charset="ISO-8859-1")
    assert a.title == "Crème brûlée"


def test_charset_from_bom():
    doc = html("<title>Ελληνικά νέα</title>", "<p>Ένα μικρό άρθρο για το πώς φτιάχνουμε καλό καφέ στο σπίτι.</p>")
    assert parse_page(codecs.BOM_UTF16_LE + doc.encode("utf-16-le"), "https://example.org/el").title == "Ελληνικά νέα"
    assert parse_page(codecs.BOM_UTF8 + doc.encode("utf-8"), "https://example.org/el").title == "Ελληνικά νέα"


def test_a_byte_order_mark_beats_the_http_header_as_in_browsers():
    # Servers often add a default "charset=iso-8859-1" to every text/html answer; the bytes' own
    # BOM is the stronger claim (HTML standard, encoding sniffing: BOM first).
    doc = html("<title>Crème brûlée à Zürich</title>", "<p>Une crème brûlée réussie demande de la patience.</p>")
    a = parse_page(codecs.BOM_UTF8 + doc.encode("utf-8"), "https://example.org/fr", charset="iso-8859-1")
    assert a.title == "Crème brûlée à Zürich"
    assert decode_html(codecs.BOM_UTF8 + doc.encode("utf-8"), "iso-8859-1") == (doc, "utf-8")
    assert decode_html(codecs.BOM_UTF16_LE + doc.encode("utf-16-le"), "utf-8") == (doc, "utf-16-le")


def test_charset_sniffed_when_undeclared():
    doc = ("<html><head><title>Crème brûlée à la française</title></head><body><p>Une crème brûlée réussie "
           "demande de la patience, du sucre et un chalumeau bien réglé, voilà tout.</p></body></html>")
    assert parse_page(doc.encode("cp1252"), "https://example.org/fr").title == "Crème brûlée à la française"
    assert parse_page(RUSSIAN.replace('<meta charset="windows-1251">', "").encode("cp1251"),
                      "https://example.org/ru").title == "Борщ без суеты"


def test_unknown_charset_label_and_broken_bytes_do_not_crash():
    doc = html('<meta charset="x-no-such-charset"><title>Broken \xff\xfe bytes</title>', "<p>Some text.</p>")
    a = parse_page(doc.encode("latin-1"), "https://example.org/x", charset="also-not-a-charset")
    assert a.title.startswith("Broken")
    bad_utf8 = html('<meta charset="utf-8"><title>Caf\udcff</title>', "<p>text</p>").encode("utf-8", "surrogateescape")
    assert parse_page(bad_utf8, "https://example.org/y").title == "Caf\ufffd"


def test_decode_html_reports_the_codec_used():
    assert decode_html("<p>é</p>".encode())[1] == "utf-8"
    assert decode_html(RUSSIAN.encode("cp1251"))[1] == "cp1251"
    assert decode_html(b"<p>plain</p>", "latin-1")[1] == "cp1252"  # the web's meaning of latin-1


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty page"),
        (b"   \n\t ", "empty page"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF document"),
        (b"\x00\x01\x02\x03binary\x00stuff" * 10, "binary data"),
        (b"Just a plain text note, with no markup at all.\nSecond line.", "no HTML markup"),
        (b'{"title": "JSON is not a page"}', "no HTML markup"),
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>', "feed"),
        ((PAGES / "no_title.html").read_bytes(), "no title"),
    ],
)
def test_bad_input_is_a_one_line_source_error_naming_the_url(content, problem):
    url = "https://example.org/bad-page"
    with pytest.raises(SourceError) as info:
        parse_page(content, url)
    message = str(info.value)
    assert message.startswith(url + ": ")
    assert problem in message
    assert "\n" not in message


# -- what is not a signal ----------------------------------------------------------------------


def test_logo_is_not_the_hero_image_and_markup_leaves_alt_text():
    doc = html('<meta property="og:image" content="https://example.org/static/site-logo.png">'
               '<meta name="twitter:image" content="https://example.org/photos/pier.jpg">'
               '<meta name="twitter:image:alt" content="&lt;span style=&quot;x&quot;&gt;The pier at dawn&lt;/span&gt;">'
               "<title>Pier</title>", "<p>The pier reopened this morning after a winter of repairs.</p>")
    a = parse_page(doc.encode(), "https://example.org/pier")
    assert a.image is not None and a.image.url == "https://example.org/photos/pier.jpg"
    assert a.image.alt == "The pier at dawn"


def test_placeholder_values_and_datelines_are_ignored():
    doc = html('<meta property="article:section" content="nil"><meta name="author" content="undefined">'
               "<title>Tide tables</title>",
               '<article><div class="byline">Last Updated: January 7, 2025</div>'
               "<p>High water is at six, low water just after noon, for the rest of the week.</p></article>")
    a = parse_page(doc.encode(), "https://example.org/tides")
    assert a.category is None
    assert a.authors == []


def test_saved_page_resolves_relative_urls_against_its_canonical_address(tmp_path):
    f = tmp_path / "saved.html"
    f.write_bytes((PAGES / "opengraph.html").read_bytes())
    a = parse_page(f.read_bytes(), str(f))
    assert a.image is not None and a.image.url == "https://pathfinder.example.net/images/trail.jpg"
    assert a.url == "https://pathfinder.example.net/trails/quiet-coast"


def test_body_does_not_repeat_the_headline():
    a = page("opengraph.html")
    assert not a.body.lstrip().startswith("<h1")
    assert "Summer weekends fill every car park" in a.body


def test_pages_too_big_for_trafilatura_fall_back_to_plain_paragraphs(monkeypatch):
    from newsletter.articles import pages

    monkeypatch.setattr(pages, "MAX_EXTRACTION_ELEMENTS", 10)
    a = page("no_meta.html")
    assert "The towpath runs for eleven miles" in a.body
    assert "tracking" not in a.body and "hidden from readers" not in a.body
    assert a.summary.startswith("The towpath runs for eleven miles")


# -- end to end: a page served over HTTP, through the real command --------------------------


@pytest.fixture
def page_server():
    """Serves a few pages on 127.0.0.1; ``/ru`` declares its charset only in the HTTP header."""
    import http.server
    import threading

    pages = {
        "/story": ((PAGES / "opengraph.html").read_bytes(), "text/html; charset=utf-8"),
        "/ru": (RUSSIAN.replace('<meta charset="windows-1251">', "").encode("cp1251"), "text/html; charset=windows-1251"),
        "/image.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/html"),
        "/bom": (codecs.BOM_UTF8 + html("<title>Smørrebrød på Nørrebro</title>", "<p>Rugbrød, smør og tid.</p>").encode(),
                 "text/html; charset=iso-8859-1"),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, ctype = pages.get(self.path, (b"", ""))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", ctype or "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _articles(*args: str):
    import json
    import subprocess
    import sys

    import os

    # The page server is on 127.0.0.1, which fetches refuse unless allowed.
    run = subprocess.run([sys.executable, "-m", "newsletter", "articles", *args, "--format", "json"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true"})
    return run, [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_served_pages_through_newsletter_articles(page_server):
    run, items = _articles(f"{page_server}/story", f"{page_server}/ru")
    assert run.returncode == 0, run.stderr
    by_title = {i["title"]: i for i in items}
    story = by_title["Ten quiet trails near the coast | Pathfinder Journal"]
    assert story["image"]["url"] == f"{page_server}/images/trail.jpg"  # relative og:image, against the fetched URL
    assert story["published"] == "2026-06-01T09:15:00-04:00"
    assert "Борщ без суеты" in by_title  # charset from the Content-Type header


def test_a_served_utf8_page_with_a_bom_and_a_latin1_header_reads_as_utf8(page_server):
    from newsletter.articles import load_sources
    from newsletter.config import Config

    [a] = load_sources([f"{page_server}/bom"], Config(allow_private_fetch=True)).articles
    assert a.title == "Smørrebrød på Nørrebro"


def test_served_binary_is_a_one_line_error(page_server):
    run, items = _articles(f"{page_server}/image.png")
    assert run.returncode == 1 and items == []
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{page_server}/image.png" in lines[0]
    assert "binary" in lines[0] or "PNG" in lines[0]


def test_truncated_json_ld_headline_gives_way_to_the_full_title():
    ld = '{"@type":"NewsArticle","headline":"Council approves the new cycle lanes on Market Street after a long…"}'
    doc = html(f'<meta property="og:title" content="Council approves the new cycle lanes on Market Street after a long debate">'
               f'<script type="application/ld+json">{ld}</script>', "<p>The vote was nine to four.</p>")
    a = parse_page(doc.encode(), "https://example.org/lanes")
    assert a.title == "Council approves the new cycle lanes on Market Street after a long debate"


def test_video_titles_from_iframe_title_and_link_text():
    doc = html("<title>Willow</title>",
               '<article><p>Weaving willow, shown in full.</p>'
               '<iframe src="https://www.youtube.com/embed/M7lc1UVf-VE" title="Weaving a willow basket"></iframe>'
               '<p><a href="https://vimeo.com/76979871">https://vimeo.com/76979871</a></p></article>')
    a = parse_page(doc.encode(), "https://example.org/willow")
    assert [(v.id, v.title) for v in a.videos] == [("M7lc1UVf-VE", "Weaving a willow basket"), ("76979871", None)]


def test_language_of_the_article_element_wins_over_the_page():
    doc = html("<title>Gazpacho</title>",
               '<article lang="es"><p>El gazpacho se sirve frío, con pan del día anterior y buen aceite.</p></article>',
               attrs=' lang="en"')
    assert parse_page(doc.encode(), "https://example.org/g").lang == "es"


def test_words_about_html_survive_in_the_summary():
    doc = html("<title>Semantic markup</title>",
               "<article><p>Use the &lt;article&gt; element, not a &lt;div class=&quot;post&quot;&gt;, for a story.</p></article>")
    a = parse_page(doc.encode(), "https://example.org/m")
    assert a.summary == 'Use the <article> element, not a <div class="post">, for a story.'
    assert "&lt;article&gt;" in a.body


def test_http_equiv_charset_and_xhtml_with_xml_declaration():
    doc = ('<?xml version="1.0" encoding="windows-1252"?>\n'
           '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
           '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="fr" lang="fr"><head>'
           '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252" />'
           "<title>La pâte feuilletée – Les Carnets</title></head>"
           "<body><div><p>Une pâte feuilletée demande du beurre froid et de la patience, rien d’autre.</p></div></body></html>")
    a = parse_page(doc.encode("cp1252"), "https://example.org/patisserie")
    assert a.title == "La pâte feuilletée"
    assert a.lang == "fr"
    assert a.summary == "Une pâte feuilletée demande du beurre froid et de la patience, rien d’autre."


def test_page_mislabelled_as_utf8_is_read_in_its_real_charset():
    body = "<p>Une crème brûlée réussie demande de la patience, du sucre et un chalumeau bien réglé.</p>"
    labelled = html('<meta charset="windows-1252"><title>Crème brûlée</title>', body).encode("cp1252")
    assert parse_page(labelled, "https://example.org/a", charset="utf-8").title == "Crème brûlée"  # meta wins
    unlabelled = html("<title>Crème brûlée à la française</title>", body).encode("cp1252")
    assert parse_page(unlabelled, "https://example.org/b", charset="utf-8").title == "Crème brûlée à la française"
    # a real UTF-8 page with one damaged byte stays UTF-8
    damaged = html("<title>Crème brûlée</title>", body).encode("utf-8") + b"<p>\xff</p>"
    assert parse_page(damaged, "https://example.org/c", charset="utf-8").title == "Crème brûlée"


def test_dates_without_a_year_are_not_dates():
    doc = html('<meta name="date" content="5"><meta property="article:published_time" content="yesterday">'
               "<title>Swifts return</title>",
               '<article><time datetime="2025-05-02T07:00:00+02:00">2 May</time>'
               "<p>The swifts came back to the church tower on the second of May, a week late.</p></article>")
    a = parse_page(doc.encode(), "https://example.org/swifts")
    assert a.published == datetime(2025, 5, 2, 7, 0, tzinfo=timezone(timedelta(hours=2)))


def test_related_articles_in_json_ld_are_not_the_page():
    related = ('{"@context":"https://schema.org","@type":"ItemList","itemListElement":['
               '{"@type":"NewsArticle","headline":"Some other story","author":"Someone Else"}]}')
    page_ld = ('{"@context":"https://schema.org","@type":"WebPage","mainEntity":'
               '{"@type":"NewsArticle","headline":"The bridge reopens","author":{"@type":"Person","name":"Nadia Park"}}}')
    doc = html(f'<script type="application/ld+json">{related}</script>'
               f'<script type="application/ld+json">{page_ld}</script><title>x</title>',
               "<p>Traffic crossed the river again this morning after eight months of repairs.</p>")
    a = parse_page(doc.encode(), "https://example.org/bridge")
    assert (a.title, a.authors) == ("The bridge reopens", ["Nadia Park"])


def test_a_local_page_without_a_canonical_url_links_to_site_url_and_slug_like_markdown(tmp_path):
    from newsletter.articles import load_sources
    from newsletter.config import Config

    (tmp_path / "post.md").write_text("---\ntitle: Post\n---\nWords.")
    bare = tmp_path / "Canal Walk.html"
    bare.write_bytes((PAGES / "no_meta.html").read_bytes())
    with_canonical = tmp_path / "story.html"
    with_canonical.write_bytes((PAGES / "opengraph.html").read_bytes())
    result = load_sources([str(tmp_path)], Config(site_url="https://news.example.org/"))
    urls = sorted(a.url for a in result.articles)
    assert urls == ["https://news.example.org/canal-walk", "https://news.example.org/post",
                    "https://pathfinder.example.net/trails/quiet-coast"]
    assert result.warnings == [f"{bare}: no canonical URL (<link rel=canonical> or og:url); "
                               "linking to https://news.example.org/canal-walk (site_url + file name)"]


def test_a_served_page_without_a_canonical_url_keeps_its_own_address():
    doc = (PAGES / "no_meta.html").read_bytes()
    assert parse_page(doc, "https://site.example.com/walks/canal").url == "https://site.example.com/walks/canal"
