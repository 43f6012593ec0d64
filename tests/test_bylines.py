"""Bylines beyond the happy path: credit blocks naming several roles ("Written by A / Edited by B"),
and names the page shows that are not the article's author — commenters, share widgets, user
handles, other stories' teasers, scripts inside a byline.

Small pages written for these tests (tests/fixtures/pages/ and inline); the corpus measurement
is benchmarks/corpus_accuracy.py --split (see docs/benchmarks-corpus.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.articles import credits
from newsletter.articles.pages import parse_page

PAGES = Path(__file__).parent / "fixtures" / "pages"
PROSE = "<p>The harbour wall was rebuilt over the winter, stone by stone, by a crew of five.</p>"


def authors(body: str, head: str = "") -> list[str]:
    doc = f"<!DOCTYPE html><html lang='en'><head><title>Harbour wall</title>{head}</head><body>{body}</body></html>"
    return parse_page(doc.encode(), "https://gazette.example.org/wall").authors


def test_a_page_full_of_other_names_credits_only_its_writer():
    a = parse_page((PAGES / "byline_widgets.html").read_bytes(), "https://gazette.example.org/ferry")
    # not the share bar's account, the related story's author, the editor, a commenter or a handle
    assert a.authors == ["Marisol Vega"]


@pytest.mark.parametrize("credit, expected", [
    ('<div class="byline">Written by Marisol Vega / Edited by Tobias Lindgren</div>', ["Marisol Vega"]),
    ('<div class="byline">Edited by Tobias Lindgren · Written by Marisol Vega</div>', ["Marisol Vega"]),
    ('<div class="byline">Marisol Vega / Edited by Tobias Lindgren</div>', ["Marisol Vega"]),
    ('<p class="byline">Reporting by Marisol Vega in Madrid; Editing by Tobias Lindgren</p>', ["Marisol Vega"]),
    ('<p class="byline">Words: Marisol Vega. Photos: Tobias Lindgren</p>', ["Marisol Vega"]),
    ('<p class="byline">By Marisol Vega | Photography by Tobias Lindgren</p>', ["Marisol Vega"]),
    ('<p class="byline">Illustrations by Tobias Lindgren, story by Marisol Vega</p>', ["Marisol Vega"]),
    ('<p class="byline">Medically reviewed by <a rel="author" href="/r/lo">Lena Osei, MD</a> — '
     'Written by <a rel="author" href="/a/mv">Marisol Vega</a></p>', ["Marisol Vega"]),
    ('<p>Story by <span itemprop="author">Marisol Vega</span>, photographs by '
     '<span itemprop="author">Tobias Lindgren</span></p>', ["Marisol Vega"]),
    ('<p>Written by <a rel="author" href="/a/mv">Marisol Vega</a> and <a rel="author" href="/a/id">Ines Duarte</a>; '
     'fact-checked by <a rel="author" href="/a/tl">Tobias Lindgren</a></p>', ["Marisol Vega", "Ines Duarte"]),
])
def test_a_credit_block_names_its_writer_not_the_other_roles(credit, expected):
    assert authors(f"<article><h1>Harbour wall</h1>{credit}{PROSE}</article>") == expected


@pytest.mark.parametrize("credit", [
    '<div class="byline">Edited by Tobias Lindgren</div>',
    '<div class="byline">Photos: Tobias Lindgren</div>',
    '<p>Translated by <a rel="author" href="/t/tl">Tobias Lindgren</a></p>',
])
def test_a_credit_naming_only_other_roles_names_no_author(credit):
    assert authors(f"<article><h1>Harbour wall</h1>{credit}{PROSE}</article>") == []


@pytest.mark.parametrize("widget", [
    '<ol class="comment-list"><li class="comment"><div class="comment-author vcard"><cite class="fn">Harriet Vane'
    '</cite></div><p>Lovely.</p></li></ol>',
    '<div id="disqus_thread"><div class="post"><span class="author"><a href="/u/1">Harriet Vane</a></span></div></div>',
    '<div itemprop="comment" itemscope itemtype="https://schema.org/Comment"><span itemprop="author">Harriet Vane</span></div>',
    '<div class="share-tools"><a rel="author" href="https://twitter.com/hvane">Harriet Vane</a></div>',
    '<blockquote class="instagram-media"><p class="author">Harriet Vane</p></blockquote>',
    '<aside class="related"><div class="byline">By Harriet Vane</div></aside>',
])
def test_names_in_comments_share_widgets_and_other_stories_are_not_the_author(widget):
    assert authors(f"<article><h1>Harbour wall</h1>{PROSE}{widget}</article>") == []
    # ... and when the article has a byline, that is the one found, wherever the widget is
    byline = '<p class="byline">By Marisol Vega</p>'
    assert authors(f"{widget}<article><h1>Harbour wall</h1>{byline}{PROSE}</article>") == ["Marisol Vega"]
    assert authors(f"<article><h1>Harbour wall</h1>{PROSE}{widget}{byline}</article>") == ["Marisol Vega"]


@pytest.mark.parametrize("wrapper, article", [
    ('<div class="page page-twitter-lite-launch">', '<article>'),
    ('<div id="social-media-week">', '<article class="post tag-comments category-social">'),
])
def test_widget_words_in_the_classes_around_the_article_do_not_hide_its_byline(wrapper, article):
    """Slugs, tags and categories end up in the class names of the article and its wrappers; a
    widget sits inside or beside the article, never around it."""
    body = (f'{wrapper}{article}<h1>Harbour wall</h1><p class="byline">By <a rel="author" href="/a/mv">Marisol Vega</a>'
            f'</p>{PROSE}<div class="comments"><span class="author">Harriet Vane</span></div></article></div>')
    assert authors(body) == ["Marisol Vega"]


@pytest.mark.parametrize("handle", ["@kestrel", "kestrel_news", "jdoe42", "lena.paints", "u/throwaway", "Otto_K"])
def test_a_user_handle_is_not_a_byline(handle):
    assert authors(f'<article><h1>Harbour wall</h1><span class="author">{handle}</span>{PROSE}</article>') == []
    assert credits.looks_like_handle(handle)


@pytest.mark.parametrize("name", ["Marisol Vega", "J.R.R. Tolkien", "Mary-Kate O'Neil", "史蒂文", "Lena Osei, MD", "Prince"])
def test_real_names_are_not_handles(name):
    assert not credits.looks_like_handle(name)
    assert authors(f'<article><h1>Harbour wall</h1><span class="author">{name}</span>{PROSE}</article>') == [name]


def test_a_script_or_follow_link_inside_the_byline_is_not_part_of_the_name():
    byline = ('<div class="byline">By <a href="/a/aw">Alissa Ward</a><span class="byline__twitter-handle">@award</span>'
              '<script>var kode="kode=\\"oked\\\\\\"=kode\\\\\\"\\\\\\\\k=do\\";x=\'\';for(i=0;i&lt;kode.length;i++)"'
              '</script> Updated Jul 24, 2018</div>')
    assert authors(f"<article><h1>Harbour wall</h1>{byline}{PROSE}</article>") == ["Alissa Ward"]


def test_author_parts_reads_roles():
    assert credits.author_parts("By Marisol Vega") is None  # a plain byline: read as before
    assert credits.author_parts("Written by A B / Edited by C D") == ["A B"]
    assert credits.author_parts("Edited by C D") == []
    assert credits.author_parts("Reporting by A B and E F in Oslo; Additional reporting by G H; Editing by C D") == ["A B and E F"]
