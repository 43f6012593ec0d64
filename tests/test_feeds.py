"""RSS 0.9x/1.0/2.0, RDF and Atom feeds → Articles (feedparser plus our own rules)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.articles import load_sources
from newsletter.articles.feeds import parse_feed
from newsletter.config import Config
from newsletter.errors import SourceError

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
CONFIG = Config()


def load(name: str):
    return load_sources([str(FEEDS / name)], CONFIG)


def parse(xml: str | bytes, warnings: list | None = None, **kw):
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    return parse_feed(data, "test.xml", CONFIG, warn=(warnings.append if warnings is not None else None), **kw)


def rss_item(inner: str, channel: str = "") -> str:
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>T</title><link>https://site.example.com/</link>{channel}<item>{inner}</item></channel></rss>"
    )


# --- RSS 2.0 ---------------------------------------------------------------------------------------

def test_rss2_item_fields():
    result = load("rss2.xml")
    a = result.articles[0]
    assert a.title == "Cranes & Containers: A Busy Week"  # double-escaped entity and HTML tags in the title resolved
    assert a.url == "https://gazette.example.com/2026/11/cranes"  # relative link resolved against the channel link
    assert a.guid == "gazette-cranes-2026"
    assert a.published == datetime(2026, 11, 16, 8, 0, tzinfo=timezone.utc)
    assert a.authors == ["Mara Lind"]  # dc:creator
    assert (a.category, a.tags) == ("Port", ["Port", "Shipping"])
    assert a.site_name == "Harbour Gazette" and a.lang == "en-GB"
    assert a.summary == "A short description: the summary, while the full content becomes the body."
    assert "three ships arrived at once" in a.body  # content:encoded preferred for the body


def test_media_group_gives_the_largest_image_never_the_tracking_pixel():
    a = load("rss2.xml").articles[0]
    assert a.image.url == "https://cdn.example.com/cranes-large.jpg"
    assert (a.image.width, a.image.height) == (1600, 900)
    assert a.image.alt == a.title


def test_tracking_pixels_are_dropped_from_the_body_and_never_become_the_image():
    arts = load("rss2.xml").articles
    assert "pixel.gif" not in arts[0].body
    pixel_only = next(a for a in arts if a.title == "Only a tracking pixel here")
    assert pixel_only.image is None
    assert "t.gif" not in pixel_only.body


def test_relative_urls_in_content_are_resolved_and_body_is_sanitized():
    a = load("rss2.xml").articles[0]
    assert 'src="https://gazette.example.com/images/cranes-inline.jpg"' in a.body
    assert 'href="https://gazette.example.com/more"' in a.body
    assert "<script" not in a.body and "onclick" not in a.body and "<iframe" not in a.body


def test_embedded_youtube_iframe_becomes_a_video_entry():
    a = load("rss2.xml").articles[0]
    assert [(v.provider, v.id) for v in a.videos] == [("youtube", "aqz-KE-bpKQ")]


def test_enclosure_image_and_author_email_form():
    a = next(a for a in load("rss2.xml").articles if a.title == "Ferry timetable changes")
    assert a.image.url == "https://cdn.example.com/ferry.jpg"
    assert a.authors == ["Tomas Veer"]  # "editor@example.com (Tomas Veer)"
    assert a.summary == "From Monday the early ferry leaves ten minutes later."  # escaped HTML description decoded


def test_an_entry_without_a_link_is_skipped_with_a_warning_naming_it():
    result = load("rss2.xml")
    assert len(result.articles) == 3
    assert result.warnings == [f"skipped {FEEDS / 'rss2.xml'}: entry 4 ('No link at all'): has no link"]
    with pytest.raises(SourceError, match="entry 4 .* has no link"):
        load_sources([str(FEEDS / "rss2.xml")], CONFIG, strict=True)


def test_untitled_rss_items_take_the_start_of_their_text_as_title():
    a = parse(rss_item("<link>https://site.example.com/1</link><description>Just a short note posted without a title.</description>"))[0]
    assert a.title == "Just a short note posted without a title."


def test_media_content_without_sizes_prefers_the_largest_file():
    xml = rss_item(
        "<title>x</title><link>https://site.example.com/x</link>"
        '<media:content url="https://i.example.com/a.jpg" medium="image" fileSize="1000"/>'
        '<media:content url="https://i.example.com/b.jpg" medium="image" fileSize="9000"/>'
    )
    assert parse(xml)[0].image.url == "https://i.example.com/b.jpg"


def test_first_content_image_is_used_when_nothing_is_declared_and_icons_are_skipped():
    xml = rss_item(
        "<title>x</title><link>https://site.example.com/x</link>"
        '<content:encoded><![CDATA[<p><img src="/static/twitter_icon_large.png"><img src="https://secure.gravatar.com/avatar/abc">'
        '<img src="photos/harbour.jpg" alt="The harbour at dawn"></p>]]></content:encoded>'
    )
    img = parse(xml)[0].image
    assert img.url == "https://site.example.com/photos/harbour.jpg"
    assert img.alt == "The harbour at dawn"


def test_an_image_every_entry_shares_is_a_logo_and_is_dropped():
    items = "".join(
        f"<item><title>t{i}</title><link>https://site.example.com/{i}</link>"
        '<enclosure url="https://site.example.com/img/site.png" type="image/png" length="1"/></item>'
        for i in range(4)
    )
    xml = f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://site.example.com/</link>{items}</channel></rss>'
    assert all(a.image is None for a in parse(xml))


def test_non_standard_item_image_element_is_used():
    xml = rss_item("<title>x</title><link>https://site.example.com/x</link><image><link>https://cdn.example.com/item.jpg</link></image>")
    assert parse(xml)[0].image.url == "https://cdn.example.com/item.jpg"


def test_itunes_image_for_podcast_episodes():
    a = load("itunes.xml").articles[0]
    assert a.image.url == "https://talk.example.com/ep7.jpg"
    assert a.authors == ["Jonas Berg"]


def test_localised_weekday_in_a_date_is_still_understood():
    a = parse(rss_item("<title>x</title><link>https://site.example.com/x</link><pubDate>Sex, 03 Jan 2025 23:47:02 -0300</pubDate>"))[0]
    assert a.published == datetime(2025, 1, 4, 2, 47, 2, tzinfo=timezone.utc)


def test_unparseable_entry_date_leaves_it_undated_with_a_note():
    notes: list = []
    a = parse(rss_item("<title>x</title><link>https://site.example.com/x</link><pubDate>sometime soon</pubDate>"), notes)[0]
    assert a.published is None
    assert any("cannot parse date 'sometime soon'" in str(n) for n in notes)


# --- RSS 0.9x ------------------------------------------------------------------------------------

def test_rss091_items_title_link_and_description_as_summary():
    result = load("rss091.xml")  # Netscape RSS 0.91, with its DOCTYPE, in ISO-8859-1
    assert result.warnings == []
    a, b = result.articles
    assert (a.title, a.url) == ("The lamp gets a new lens", "https://example.org/log/new-lens")
    assert a.summary.startswith("After forty years the old Fresnel lens goes to the museum")
    assert "lighter one takes its place" in a.body
    assert (b.title, b.url) == ("Fog & foghorns", "https://example.org/log/fog")
    assert (a.site_name, a.lang) == ("Lighthouse Log", "en-US")
    # 0.91 items carry no date (pubDate arrived in items with 0.92/2.0); the channel's pubDate is
    # the feed's, not the item's, so the items are undated.
    assert a.published is None and b.published is None
    assert a.image is None  # the channel's required <image> is the site's logo, not the article's picture
    # UserLand's 0.91 (no DOCTYPE) reads the same way.
    [u] = parse('<rss version="0.91"><channel><title>Log</title><link>https://example.org/</link>'
                "<description>d</description><language>en</language><item><title>Lens</title>"
                "<link>https://example.org/lens</link><description>A new lens.</description></item></channel></rss>")
    assert (u.title, u.url, u.summary, u.published) == ("Lens", "https://example.org/lens", "A new lens.", None)


# --- RSS 1.0 / RDF ----------------------------------------------------------------------------------

def test_rss1_rdf_feed():
    a = load("rss1-rdf.xml").articles[0]
    assert a.title == "Distro Weekly, Issue 12"
    assert a.url == "https://weekly.example.org/issue-12"
    assert a.authors == ["Ines Okafor"]
    assert a.category == "Reviews"  # dc:subject
    assert a.published == datetime(2026, 11, 10, 6, 0, tzinfo=timezone.utc)


# --- Atom --------------------------------------------------------------------------------------------

def test_atom_html_titles_entities_xml_base_and_several_authors():
    arts = load("atom.xml").articles
    a = arts[0]
    assert a.title == "Bugs & Bounties in 2026"
    assert a.site_name == "Attack & Defense"
    assert a.url == "https://blog.example.org/posts/bugs-and-bounties"  # relative to xml:base
    assert a.authors == ["Frida Berg", "Chen Wei"]
    assert a.category == "Security"  # the category's label
    assert a.published == datetime(2026, 11, 12, 8, 0, tzinfo=timezone.utc)  # published, not updated
    assert a.image.url == "https://blog.example.org/images/bounty.png"
    assert a.image.alt == "A bug under a magnifying glass"
    assert a.summary == "The bounty programme grows up."


def test_atom_xhtml_content_and_media_thumbnail():
    a = load("atom.xml").articles[1]
    assert a.body == "<p>Some words in XHTML.</p>"
    assert a.image.url == "https://blog.example.org/thumbs/plain.jpg"
    assert (a.image.width, a.image.height) == (640, 360)


def test_youtube_atom_feed_entries_are_video_cards():
    a = load("youtube.xml").articles[0]
    assert a.title == "The night ferry, in four minutes"
    assert len(a.videos) == 1
    v = a.videos[0]
    assert (v.provider, v.id, v.title) == ("youtube", "aqz-KE-bpKQ", "The night ferry, in four minutes")
    assert v.thumbnail_url == "https://i1.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg"
    assert a.summary.startswith("A crossing filmed from the bridge")  # media:description


# --- Character sets -----------------------------------------------------------------------------------

def test_koi8_r_feed_is_decoded_from_its_xml_declaration():
    a = load("koi8r.xml").articles[0]
    assert a.title == "Паром приходит раньше"
    assert a.site_name == "Новости гавани"


def test_iso_8859_7_greek_feed():
    a = load("greek-iso8859-7.xml").articles[0]
    assert a.title == "Το πλοίο φτάνει νωρίτερα"


def test_http_charset_is_passed_to_feedparser():
    xml = '<rss version="2.0"><channel><title>T</title><item><title>Café déjà vu</title><link>https://e.example.com/1</link></item></channel></rss>'
    a = parse(xml.encode("iso-8859-1"), charset="iso-8859-1", content_type="application/rss+xml")[0]
    assert a.title == "Café déjà vu"


@pytest.mark.parametrize("bom, encoding", [(b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_a_byte_order_mark_beats_the_http_charset(bom, encoding):
    # A server's default "charset=iso-8859-1" must not turn a UTF-16 (or UTF-8) feed into mojibake.
    xml = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Søk</title><link>https://example.org/</link>'
           "<item><title>Smørrebrød på Nørrebro</title><link>https://example.org/smorrebrod</link></item></channel></rss>")
    warnings: list = []
    a = parse(bom + xml.encode(encoding), warnings, charset="iso-8859-1", content_type="application/rss+xml")[0]
    assert (a.title, a.site_name, warnings) == ("Smørrebrød på Nørrebro", "Søk", [])


# --- Malformed and not-a-feed ----------------------------------------------------------------------

def test_recoverable_malformed_xml_is_recovered_with_a_warning():
    result = load("malformed.xml")
    assert [a.title for a in result.articles] == ["Fish & chips on the quay"]
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f"{FEEDS / 'malformed.xml'}: malformed feed recovered: ")


def test_xml_that_is_not_a_feed_is_an_error():
    with pytest.raises(SourceError, match=r"not-a-feed.xml: not an RSS, Atom or RDF feed$"):
        load("not-a-feed.xml")


def test_prose_text_file_is_not_a_source():
    with pytest.raises(SourceError, match="notes.txt: not a recognised source"):
        load("notes.txt")


def test_html_fed_to_the_feed_parser_is_not_a_feed():
    with pytest.raises(SourceError, match="not an RSS, Atom or RDF feed"):
        parse("<html><body><p>hello</p></body></html>")


def test_feed_with_entries_but_none_usable_is_an_error():
    xml = '<rss version="2.0"><channel><title>T</title><item><description>no link</description></item></channel></rss>'
    with pytest.raises(SourceError, match="none of the feed's 1 entries has a title and a link"):
        parse(xml)


def test_empty_feed_gives_no_articles_and_a_note():
    notes: list = []
    assert parse('<rss version="2.0"><channel><title>Quiet</title></channel></rss>', notes) == []
    assert notes == ["test.xml: feed has no entries"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: rss_item(f"<title>{t}</title><link>https://e.example.com/</link><description>{t}</description>"))))
def test_fuzz_the_feed_parser_returns_articles_or_raises_source_error(data):
    payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        articles = parse_feed(payload, "fuzz.xml", CONFIG)
    except SourceError as e:
        assert "\n" not in str(e)
        return
    for a in articles:
        assert a.title and a.url.startswith(("http://", "https://"))
        assert "<script" not in a.body.lower()


# --- JSON Feed ------------------------------------------------------------------------------------

def test_json_feed_items_become_articles():
    result = load("jsonfeed.json")
    first, second = result.articles
    assert first.title == "Tide tables & the new pontoon"
    assert first.url == "https://micro.example.net/2026/11/13/tide"
    assert first.published == datetime(2026, 11, 13, 8, 0, tzinfo=timezone.utc)
    assert first.authors == ["Ana Souza"] and first.tags == ["harbour", "tides"] and first.category == "harbour"
    assert first.image.url == "https://micro.example.net/img/pontoon.jpg" and first.image.alt == "The pontoon"
    assert "<script" not in first.body and first.site_name == "Harbour Micro" and first.lang == "en"
    assert second.title == "A short note without a title, as microblogs post them."
    assert second.authors == ["Harbour Desk"]  # the feed's authors when the item names none
    assert second.image.url == "https://micro.example.net/img/note.jpg"
    assert result.warnings == [f"skipped {FEEDS / 'jsonfeed.json'}: item 3 ('No link'): has no link"]


def test_broken_json_feed_is_a_one_line_error(tmp_path):
    p = tmp_path / "feed.json"
    p.write_text('{"version": "https://jsonfeed.org/version/1.1", "items": [')
    with pytest.raises(SourceError, match=r"feed.json: invalid JSON Feed: "):
        load_sources([str(p)], CONFIG)


def test_a_vimeo_entry_uses_its_own_thumbnail_for_the_video_card():
    xml = rss_item(
        "<title>Harbour at dusk</title><link>https://vimeo.com/76979871</link>"
        '<media:thumbnail url="https://i.vimeocdn.com/video/452001751_640.jpg" width="640" height="360"/>'
    )
    v = parse(xml)[0].videos[0]
    assert (v.provider, v.id, v.title) == ("vimeo", "76979871", "Harbour at dusk")
    assert v.thumbnail_url == "https://i.vimeocdn.com/video/452001751_640.jpg"


def test_strict_makes_an_unparseable_entry_date_an_error_and_without_it_a_warning(tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_text(rss_item("<title>x</title><link>https://site.example.com/x</link><pubDate>sometime soon</pubDate>"))
    result = load_sources([str(feed)], CONFIG)
    assert result.articles[0].published is None
    assert result.warnings == [f"{feed}: entry 1 ('x'): cannot parse date 'sometime soon'; left undated"]
    with pytest.raises(SourceError, match="entry 1 \\('x'\\): cannot parse date 'sometime soon'$"):
        load_sources([str(feed)], CONFIG, strict=True)


def test_json_feed_unparseable_date_is_a_warning_and_strict_error(tmp_path):
    feed = tmp_path / "feed.json"
    feed.write_text('{"version": "https://jsonfeed.org/version/1.1", "title": "S", "items": ['
                    '{"id": "1", "url": "https://site.example.com/1", "title": "One", "date_published": "whenever"}]}')
    result = load_sources([str(feed)], CONFIG)
    assert result.articles[0].published is None
    assert any("cannot parse date 'whenever'; left undated" in w for w in result.warnings)
    with pytest.raises(SourceError, match="cannot parse date 'whenever'"):
        load_sources([str(feed)], CONFIG, strict=True)
