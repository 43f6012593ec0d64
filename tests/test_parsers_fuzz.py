"""Property tests: the page and feed parsers never fail with anything but the project's own error.

Whatever bytes arrive (random noise, random HTML with metadata in odd shapes, random XML
that looks like a feed), ``parse_page`` returns an ``Article`` and ``parse_feed`` a list of
them, or they raise ``NewsletterError`` — never a stray exception that would become a
traceback in the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.articles.model import Article
from newsletter.articles.pages import INTERNAL_ERROR, parse_page
from newsletter.config import Config
from newsletter.errors import NewsletterError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL = "https://fuzz.example.org/page"

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
attr_value = st.one_of(
    text,
    st.sampled_from(["", " ", "&amp;amp;", "&#x0;", "&#xFFFFFFFF;", "javascript:alert(1)", "//x", "http://",
                     "2024-13-45", "yesterday", "0000-00-00T00:00:00Z", "9999-12-31", "rtl", "ar", "@id"]),
)
meta_name = st.sampled_from([
    "og:title", "og:description", "og:image", "og:image:width", "og:site_name", "og:url", "og:locale", "og:video",
    "article:published_time", "article:author", "article:tag", "article:section", "twitter:title",
    "twitter:image", "DC.title", "DC.creator", "DC.date", "parsely-author", "parsely-pub-date", "sailthru.date",
    "sailthru.tags", "author", "description", "keywords", "x:title dc:title",
])
tag = st.sampled_from(["p", "div", "span", "article", "main", "h1", "h2", "a", "time", "img", "iframe", "nav",
                       "section", "table", "td", "br", "script", "style", "title", "base", "svg", "math", "video"])
html_attr = st.sampled_from(["href", "src", "rel", "dir", "lang", "class", "itemprop", "datetime", "hidden",
                             "aria-hidden", "style", "content", "charset", "alt", "width"])

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), text)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["@type", "@id", "@graph", "headline", "name", "author", "datePublished",
                                         "image", "publisher", "keywords", "articleSection", "url", "description",
                                         "mainEntity", "video", "embedUrl", "inLanguage"]), children, max_size=6),
    ),
    max_leaves=20,
)


@st.composite
def element(draw, depth=0):
    name = draw(tag)
    attrs = draw(st.lists(st.tuples(html_attr, attr_value), max_size=3))
    attr_html = "".join(f' {k}="{v.replace(chr(34), "&quot;")}"' for k, v in attrs)
    children = ""
    if depth < 3:
        children = "".join(draw(st.lists(element(depth=depth + 1), max_size=3)))
    return f"<{name}{attr_html}>{draw(text)}{children}</{name}>{draw(text)}"


@st.composite
def html_page(draw):
    metas = draw(st.lists(st.tuples(meta_name, attr_value), max_size=6))
    head = "".join(f'<meta property="{k}" content="{v.replace(chr(34), "&quot;")}">' for k, v in metas)
    for _ in range(draw(st.integers(0, 2))):
        data = draw(st.one_of(json_value.map(json.dumps), text))
        head += f'<script type="application/ld+json">{data}</script>'
    if draw(st.booleans()):
        head += f"<title>{draw(text)}</title>"
    body = "".join(draw(st.lists(element(), max_size=4)))
    html_attrs = draw(st.sampled_from(["", ' lang="he"', ' dir="rtl"', ' lang="&amp;"', ' lang="en" dir="x"']))
    doc = f"<!DOCTYPE html><html{html_attrs}><head>{head}</head><body>{body}</body></html>"
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "cp1252", "cp1251", "shift_jis"]))
    return doc.encode(encoding, errors="replace")


def check_page(content: bytes, charset: str | None = None) -> None:
    try:
        article = parse_page(content, URL, charset=charset)
    except NewsletterError as e:
        assert "\n" not in str(e)
        assert INTERNAL_ERROR not in str(e), f"a bug caught by the safety net: {e}"
        return
    assert isinstance(article, Article)
    assert article.title
    assert article.dir in ("ltr", "rtl")
    assert article.published is None or (isinstance(article.published, datetime) and article.published.tzinfo)
    assert "<script" not in article.body.lower()


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([None, "utf-8", "utf-16", "latin-1", "bogus"]))
def test_page_parser_survives_random_bytes(content, charset):
    check_page(content, charset)


@FUZZ
@given(html_page())
def test_page_parser_survives_random_html(content):
    check_page(content)


@FUZZ
@given(st.binary(max_size=300), html_page())
def test_page_parser_survives_html_spliced_with_garbage(garbage, content):
    cut = len(content) // 2
    check_page(content[:cut] + garbage + content[cut:])


# -- feeds ----------------------------------------------------------------------------------

feed_item = st.builds(
    lambda title, link, date, body, img: (
        f"<item><title>{title}</title><link>{link}</link><pubDate>{date}</pubDate>"
        f"<description><![CDATA[{body}]]></description>"
        f'<media:content url="{img}" medium="image" width="{len(title)}"/></item>'
    ),
    text, attr_value, attr_value, text, attr_value,
)


@st.composite
def feed_doc(draw):
    kind = draw(st.sampled_from(["rss", "atom", "rdf"]))
    items = draw(st.lists(feed_item, max_size=4))
    if kind == "rss":
        doc = ('<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
               f"<title>{draw(text)}</title><link>{draw(attr_value)}</link>{''.join(items)}</channel></rss>")
    elif kind == "atom":
        entries = "".join(f"<entry><title type=\"html\">{draw(text)}</title><link href=\"{draw(attr_value)}\"/>"
                          f"<updated>{draw(attr_value)}</updated><content type=\"html\">{draw(text)}</content></entry>"
                          for _ in items)
        doc = f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{draw(text)}</title>{entries}</feed>'
    else:
        doc = ('<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
               f'xmlns="http://purl.org/rss/1.0/"><channel><title>{draw(text)}</title></channel>{"".join(items)}</rdf:RDF>')
    data = doc.encode("utf-8", errors="replace")
    if draw(st.booleans()):  # truncate or corrupt: feedparser's bozo recovery path
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=20))
    return data


def check_feed(content: bytes) -> None:
    from newsletter.articles.feeds import parse_feed

    try:
        articles = parse_feed(content, "fuzz.xml", Config(), base_url=URL, warn=lambda _w: None)
    except NewsletterError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(articles, list)
    assert all(isinstance(a, Article) for a in articles)


@FUZZ
@given(st.binary(max_size=2000))
def test_feed_parser_survives_random_bytes(content):
    check_feed(content)


@FUZZ
@given(feed_doc())
def test_feed_parser_survives_random_feeds(content):
    check_feed(content)


# -- real-shaped pages, damaged ---------------------------------------------------------------

FIXTURE_PAGES = sorted((Path(__file__).parent / "fixtures" / "pages").glob("*.html"))


@st.composite
def damaged_page(draw):
    data = bytearray(draw(st.sampled_from(FIXTURE_PAGES)).read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at: at + draw(st.integers(1, 200))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        else:
            data = data[:at]
    return bytes(data)


@FUZZ
@given(damaged_page(), st.sampled_from([None, "utf-8", "windows-1251"]))
def test_page_parser_survives_damaged_real_pages(content, charset):
    check_page(content, charset)
