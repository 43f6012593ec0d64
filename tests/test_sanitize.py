"""Untrusted article HTML → safe HTML (nh3), and HTML → plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.articles.sanitize import clean_text, html_paragraphs, html_to_text, sanitize_html

BASE = "https://blog.example.org/posts/one"


def test_scripts_styles_iframes_forms_objects_and_embeds_go_with_their_content():
    html = (
        "<p>keep</p><script>alert(1)</script><style>p{color:red}</style>"
        '<iframe src="https://evil.example.com">frame text</iframe><object data="x.swf">obj</object>'
        '<embed src="x.swf"><form action="/steal"><input name="q"><button>Go</button>form text</form>'
        "<noscript>ns</noscript><svg><script>alert(2)</script></svg>"
    )
    out = sanitize_html(html)
    for bad in ("<script", "<style", "<iframe", "<object", "<embed", "<form", "<input", "<button", "<svg", "alert", "color:red", "frame text", "obj", "Go"):
        assert bad not in out, bad
    assert "<p>keep</p>" in out and "form text" in out  # a form's own text survives, its controls do not


def test_event_handlers_and_style_attributes_are_removed():
    out = sanitize_html('<p onclick="x()" style="color:red" class="c" id="i" onmouseover=y()>Hi</p><img src="https://a.example.com/i.png" onerror="z()">')
    assert out == '<p>Hi</p><img src="https://a.example.com/i.png">'


def test_dangerous_url_schemes_are_removed_including_data_urls():
    out = sanitize_html(
        '<a href="javascript:alert(1)">a</a><a href=" JaVaScRiPt:alert(1)">b</a><a href="vbscript:x">c</a>'
        '<img src="data:image/png;base64,iVBORw0KGgo="><a href="data:text/html,<script>x</script>">d</a>'
        '<a href="mailto:desk@example.org">mail</a>'
    )
    assert "javascript" not in out.lower() and "vbscript" not in out and "data:" not in out
    assert 'href="mailto:desk@example.org"' in out


def test_links_get_rel_noopener_and_relative_urls_are_resolved():
    out = sanitize_html('<a href="../two">next</a> <img src="/img/a.jpg" alt="A"> <a href="//cdn.example.com/x">x</a>', base_url=BASE)
    assert '<a href="https://blog.example.org/two" rel="noopener noreferrer">next</a>' in out
    assert 'src="https://blog.example.org/img/a.jpg"' in out
    assert 'href="https://cdn.example.com/x"' in out


def test_without_a_base_relative_urls_stay_relative():
    assert sanitize_html('<a href="/x">x</a>') == '<a href="/x" rel="noopener noreferrer">x</a>'


def test_formatting_survives():
    html = "<h2>T</h2><p><strong>b</strong> <em>i</em> <code>c</code></p><ul><li>x</li></ul><blockquote>q</blockquote><table><tr><td colspan=\"2\">t</td></tr></table>"
    out = sanitize_html(html)
    for tag in ("<h2>", "<strong>", "<em>", "<code>", "<ul>", "<li>", "<blockquote>", 'colspan="2"'):
        assert tag in out


def test_lang_and_dir_attributes_are_kept_for_right_to_left_text():
    assert sanitize_html('<p dir="rtl" lang="ar">مرحبا</p>') == '<p dir="rtl" lang="ar">مرحبا</p>'


def test_html_to_text_keeps_block_breaks_and_decodes_entities():
    assert html_to_text("<h2>Title</h2><p>One &amp; two</p>three<br>four<script>x()</script>") == "Title\nOne & two\nthree\nfour"
    assert html_paragraphs("plain\n\ntext &lt;b&gt;") == ["plain", "text <b>"]


def test_clean_text_for_titles():
    assert clean_text("Bugs &amp; <code>Bounties</code>\n in 2026") == "Bugs & Bounties in 2026"
    assert clean_text("&lt;b&gt;literal&lt;/b&gt;") == "<b>literal</b>"  # escaped markup is text, shown as such
    assert clean_text(None) == ""


_FRAGMENTS = st.sampled_from([
    "<script>alert(1)</script>", "<SCRIPT SRC=//x.js></SCRIPT>", '<img src=x onerror="alert(1)">', "<svg/onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>', '<a href="JAVASCRIPT:alert(1)">x</a>', '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>', '<iframe src="javascript:alert(1)"></iframe>', "<style>@import 'x'</style>",
    '<div style="background:url(javascript:alert(1))">x</div>', '<form action="javascript:x"><input onfocus=alert(1) autofocus>',
    "<p>", "</p>", "<b>", "<!--", "-->", "<", ">", '"', "'", "=", "on", "script", "javascript:", "<object data=x>", "<embed src=x>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>', "<body onload=alert(1)>", '<a href="data:text/html;base64,PHNjcmlwdD4=">d</a>',
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=25).map("".join))
def test_property_sanitized_html_never_contains_script_event_handlers_or_javascript_urls(html):
    out = sanitize_html(html, base_url=BASE)
    low = out.lower()
    assert "<script" not in low and "<style" not in low and "<iframe" not in low
    assert "<object" not in low and "<embed" not in low and "<form" not in low and "<svg" not in low
    # No on* attribute on any element, no script-capable URL in any attribute (text may mention them).
    for tag, name, value in _attributes(out):
        assert not name.startswith("on"), (tag, name)
        v = re.sub(r"[\x00-\x20]", "", (value or "").lower())
        assert not v.startswith(("javascript:", "vbscript:", "data:")), (tag, name, value)


def _attributes(html: str):
    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend((tag, n, v) for n, v in attrs)

        handle_startendtag = handle_starttag

    P().feed(html)
    return found


def test_an_unusable_base_url_is_treated_as_no_base():
    for base in ("HTTP:", "http://", "http://exa mple.com/", "https://[::1", "ftp://example.com/"):
        assert sanitize_html('<p><a href="/x">x</a></p>', base_url=base) == '<p><a href="/x" rel="noopener noreferrer">x</a></p>'


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_property_any_base_url_never_raises(base):
    assert isinstance(sanitize_html('<a href="x">y</a><img src="z">', base_url=base), str)


def test_lazy_loaded_images_get_their_real_source():
    out = sanitize_html('<img src="data:image/gif;base64,R0lGOD" data-src="/img/real.jpg" alt="Real">', base_url=BASE)
    assert out == '<img src="https://blog.example.org/img/real.jpg" alt="Real">'
    out = sanitize_html('<img data-lazy-src="https://cdn.example.com/a.jpg">')
    assert out == '<img src="https://cdn.example.com/a.jpg">'
    keep = sanitize_html('<img src="https://cdn.example.com/shown.jpg" data-src="https://cdn.example.com/other.jpg">')
    assert keep == '<img src="https://cdn.example.com/shown.jpg">'
    assert "javascript" not in sanitize_html('<img data-src="javascript:alert(1)">')


def test_a_newline_inside_a_paragraph_is_a_space_not_a_block_break():
    assert html_paragraphs("<p>Small post, because I\nfelt I should write.</p><p>Second</p>") == ["Small post, because I felt I should write.", "Second"]
