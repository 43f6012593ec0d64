"""Rendering a digest: Jinja2 → MJML → premailer output, as a reader's mail client sees it."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.articles.model import Article, Image, Video
from newsletter.compose import HTML_BUDGET_BYTES, ComposeOptions, render
from newsletter.config import Config
from newsletter.errors import InvalidInput, RenderError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
OPTS = ComposeOptions(now=NOW)


def make_article(i: int = 0, **kw) -> Article:
    defaults = dict(
        title=f"Story {i}: the tide comes in",
        url=f"https://example.org/story-{i}",
        authors=["Ada Brook", "Cyril Stone"],
        published=NOW - timedelta(days=i),
        category="Current Event",
        tags=["coast"],
        summary=f"Summary of story {i}, two sentences long. It says what happened.",
        image=Image(url=f"https://example.org/img/{i}.jpg", alt=f"Picture for story {i}", width=1200, height=675),
        read_time_minutes=3,
    )
    defaults.update(kw)
    return Article(**defaults)


def doc(digest):
    return lxml.html.fromstring(digest.html)


def styles(digest) -> str:
    return "\n".join(s.text_content() for s in doc(digest).iter("style"))


def custom_template(tmp_path, fixtures_dir, mjml: str) -> str:
    """A template folder like the custom fixture, with ``mjml`` as its digest.mjml."""
    tdir = tmp_path / "t"
    shutil.copytree(fixtures_dir / "compose/templates/custom", tdir)
    (tdir / "digest.mjml").write_text(mjml)
    return str(tdir)


@pytest.fixture(scope="module")
def ten():
    return render([make_article(i) for i in range(10)], Config(), OPTS)


def test_html_is_a_full_document_with_header_cards_and_footer(ten):
    assert ten.html.lower().startswith("<!doctype html>")
    root = doc(ten)
    text = root.text_content()
    assert "The Weekly Dispatch" in text
    assert "24 November 2026" in text
    for i in range(10):
        links = root.xpath(f'//a[@href="https://example.org/story-{i}"]')
        # title link, image link and the Read more button
        assert len(links) >= 3, i
        assert f"Story {i}: the tide comes in" in text
    assert text.count("Read more") == 10
    assert "Ada Brook and Cyril Stone" in text
    assert "3 min read" in text
    category = root.xpath('//td[contains(@class,"nl-category")]/div')[0]
    assert category.text_content().strip() == "Current Event"  # shown in capitals by CSS
    assert "text-transform:uppercase" in category.get("style").replace(" ", "")


def test_css_is_inlined_and_no_plain_rules_are_left_in_style_blocks(ten):
    root = doc(ten)
    title_links = [a for a in root.xpath('//td[contains(@class,"nl-title")]//a')]
    assert title_links and all("color:#14213d" in a.get("style", "").replace(" ", "") for a in title_links)
    # Whatever is left in <style> is @media, the MJML Firefox media-attribute block, or MRML's
    # client reset (#outlook a, table/td...), which MJML keeps in <head> rather than on every cell.
    for s in root.iter("style"):
        body = s.text_content().strip()
        assert body.startswith(("@media", "#outlook a")) or s.get("media") or not body, body[:80]
        assert s.get("data-premailer") is None
    assert "mso-table-lspace" not in "".join(td.get("style", "") for td in root.iter("td"))


def test_responsive_media_queries_survive_with_important(ten):
    css = styles(ten)
    assert re.search(r"@media only screen and \(min-width:\s*480px\)", css)
    assert re.search(r"\.mj-column-per-100\s*{[^}]*width:\s*100%\s*!important", css)
    assert re.search(r"@media only screen and \(max-width:\s*480px\)", css)
    assert "font-size: 20px !important" in css


def test_dark_mode_rules_are_kept(ten):
    css = styles(ten)
    assert "prefers-color-scheme: dark" in css
    assert re.search(r"\.nl-card[^{]*{[^}]*background:\s*#1b1e24\s*!important", css)
    assert doc(ten).xpath('//meta[@name="color-scheme"]')


def test_merge_tags_survive_mjml_and_premailer_untouched(ten):
    root = doc(ten)
    assert root.xpath('//a[@href="*|UNSUBSCRIBE_URL|*"]')
    assert root.xpath('//a[@href="*|WEB_VERSION_URL|*"]')
    assert "*|UNSUBSCRIBE_URL|*" in ten.text and "*|WEB_VERSION_URL|*" in ten.text


def test_every_image_has_meaningful_alt_text():
    articles = [
        make_article(0),
        make_article(1, image=Image(url="https://example.org/no-alt.jpg", alt="")),
        make_article(2, image=None, videos=[Video("https://www.youtube.com/watch?v=aqz-KE-bpKQ", "youtube", "aqz-KE-bpKQ", "https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg", "Harbour tour")]),
    ]
    d = render(articles, Config(), OPTS)
    imgs = doc(d).xpath("//img")
    assert len(imgs) == 3
    alts = [img.get("alt") for img in imgs]
    assert all(a and a.strip() for a in alts), alts
    assert alts[0] == "Picture for story 0"
    assert alts[1] == "Story 1: the tide comes in"  # falls back to the title
    assert alts[2] == "Play video on YouTube: Harbour tour"


def test_remote_images_keep_their_url_and_get_size_attributes(ten):
    img = doc(ten).xpath('//img[@src="https://example.org/img/0.jpg"]')[0]
    assert img.get("width") == "576"
    # height follows the width (no squashing on a narrow phone screen)
    # no height="auto" attribute (invalid HTML: it takes pixels); the inline style keeps the ratio
    assert img.get("height") is None and "height:auto" in img.get("style").replace(" ", "")


def test_video_card_has_thumbnail_and_visible_play_link():
    v = Video("https://vimeo.com/76979871", "vimeo", "76979871", None, "The night ferry")
    d = render([make_article(0, image=None, videos=[v])], Config(), OPTS)
    root = doc(d)
    play = [a for a in root.xpath('//a[@href="https://vimeo.com/76979871"]') if "Play video" in a.text_content()]
    assert play and "▶" in play[0].text_content() and "Vimeo" in play[0].text_content()
    assert "Video on Vimeo: The night ferry\nhttps://vimeo.com/76979871" in d.text


def test_article_with_image_and_video_gets_a_video_card_inside_the_article_card():
    v = Video("https://www.youtube.com/watch?v=aqz-KE-bpKQ", "youtube", "aqz-KE-bpKQ", "https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg", "Crane film")
    d = render([make_article(0, videos=[v])], Config(), OPTS)
    root = doc(d)
    assert root.xpath('//img[@src="https://example.org/img/0.jpg"]')
    thumb = root.xpath('//a[@href="https://www.youtube.com/watch?v=aqz-KE-bpKQ"]/img')
    assert thumb and thumb[0].get("src") == "https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg"
    assert thumb[0].get("alt") == "Play video on YouTube: Crane film"
    play = [a for a in root.xpath('//a[@href="https://www.youtube.com/watch?v=aqz-KE-bpKQ"]') if "Play video" in a.text_content()]
    assert play and play[0].text_content().strip().startswith("▶")
    assert "Play video on YouTube: Crane film" in play[0].text_content()


@pytest.mark.parametrize("hero", [None, Image(url="https://example.org/img/0.jpg", alt="Cranes at dusk")], ids=["leading", "after-summary"])
def test_an_untitled_video_thumbnail_is_described_by_the_article_title(hero):
    v = Video("https://www.youtube.com/watch?v=aqz-KE-bpKQ", "youtube", "aqz-KE-bpKQ", "https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg", None)
    a = make_article(0, title="Harbour cranes | Port Weekly", site_name="Port Weekly", image=hero, videos=[v])
    root = doc(render([a], Config(), OPTS))
    [thumb] = root.xpath('//img[@src="https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg"]')
    assert thumb.get("alt") == "Play video on YouTube: Harbour cranes"  # the card's title, site tail dropped


def test_video_without_thumbnail_in_an_article_with_image_is_a_watch_link():
    v = Video("https://vimeo.com/76979871", "vimeo", "76979871", None, "Ferry")
    root = doc(render([make_article(0, videos=[v])], Config(), OPTS))
    link = root.xpath('//a[@href="https://vimeo.com/76979871"]')
    assert len(link) == 1 and "Watch on Vimeo: Ferry" in link[0].text_content()


def test_greek_category_is_capitalised_without_accents_in_text():
    d = render([make_article(0, category="Πολιτισμός", lang="el")], Config(), OPTS)
    assert "ΠΟΛΙΤΙΣΜΟΣ" in d.text


def test_rtl_and_non_latin_articles_carry_dir_and_lang():
    ar = make_article(0, title="مكتبات الصحراء المتنقلة", summary="انطلقت القافلة هذا الشهر.", lang="ar", dir="rtl", category="ثقافة")
    ja = make_article(1, title="紅葉の季節、ローカル線がにぎわう", lang="ja", summary="観光客が戻ってきた。")
    d = render([ar, ja], Config(), OPTS)
    root = doc(d)
    title_ar = root.xpath('//div[@dir="rtl"][@lang="ar"]//a[@href="https://example.org/story-0"]')
    assert title_ar and title_ar[0].text_content() == "مكتبات الصحراء المتنقلة"
    rtl_cells = root.xpath('//td[contains(@class,"nl-title")][.//div[@dir="rtl"]]')
    assert rtl_cells and all(td.get("align") == "right" for td in rtl_cells)
    assert root.xpath('//div[@dir="ltr"][@lang="ja"]//a[text()="紅葉の季節、ローカル線がにぎわう"]')
    # in the RTL meta line the English date is isolated, so its words keep their order
    meta = root.xpath('//td[contains(@class,"nl-meta")]/div/div[@dir="rtl"]')[0]
    assert [(s.get("dir"), s.text) for s in meta.iter("span")] == [
        ("rtl", "Ada Brook and Cyril Stone"), ("ltr", "24 November 2026"), ("ltr", "3 min read")]
    assert "紅葉の季節、ローカル線がにぎわう" in d.text and "مكتبات الصحراء المتنقلة" in d.text


def test_plain_text_lists_titles_urls_summaries_and_is_not_html(ten):
    t = ten.text
    assert "<" not in t.replace("<sea>", "")
    assert t.startswith("The Weekly Dispatch\n24 November 2026 · 10 stories")
    for i in range(10):
        assert f"Story {i}: the tide comes in" in t
        assert f"Read more: https://example.org/story-{i}" in t
    assert "Summary of story 3, two sentences long. It says what happened." in t
    assert max(len(line) for line in t.splitlines()) <= 80


def test_card_title_drops_a_tail_that_repeats_the_site_name():
    a = Article(title="Ten quiet trails near the coast | Pathfinder Journal", url="https://example.net/trails",
                published=datetime(2026, 11, 20, tzinfo=timezone.utc), site_name="Pathfinder Journal",
                summary="Where to walk when the beaches are full.")
    b = Article(title="Budget 2026 | What changes for renters", url="https://example.net/budget",
                published=datetime(2026, 11, 19, tzinfo=timezone.utc), site_name="Lakeside Courier",
                summary="Rents, deposits and notice periods.")
    d = render([a, b], Config(), OPTS)
    assert "Pathfinder Journal" not in doc(d).text_content().split("Where to walk")[0].split("Ten quiet trails")[1]
    assert "Ten quiet trails near the coast\n" in d.text and "| Pathfinder Journal" not in d.text
    assert "Budget 2026 | What changes for renters" in d.text  # not the site's name: kept


def test_ten_article_digest_is_under_the_size_budget_without_warning(ten):
    assert ten.html_size == len(ten.html.encode())
    assert ten.html_size < HTML_BUDGET_BYTES
    assert not ten.warnings


def test_over_budget_digest_warns():
    many = [make_article(i, summary="word " * 60) for i in range(25)]
    d = render(many, Config(), OPTS)
    assert d.over_budget
    assert any("over the 102 KB Gmail clips at" in w for w in d.warnings)


def test_subject_and_preheader_defaults_and_overrides(ten):
    assert ten.subject == "The Weekly Dispatch: Story 0: the tide comes in and 9 more"
    assert ten.preheader.startswith("10 stories: Story 0")
    root = doc(ten)
    assert root.findtext(".//title") == ten.subject
    [hidden_div] = root.xpath('//div[contains(@style,"display:none")]')
    hidden = hidden_div.text_content()
    assert "color" not in hidden_div.get("style")  # hidden by size, not by a colour like the background's
    assert hidden.startswith(ten.preheader) and hidden[len(ten.preheader):].strip("\u034f\u200c\xa0 ") == ""
    d = render([make_article(0)], Config(newsletter_name="Harbour Notes"), ComposeOptions(now=NOW, subject="Our week", preheader="Cranes!"))
    assert d.subject == "Our week" and d.preheader == "Cranes!"
    assert "Cranes!" in doc(d).text_content()
    assert "Harbour Notes" in d.text


def test_subject_with_line_break_is_refused():
    with pytest.raises(InvalidInput, match="line breaks"):
        render([make_article(0)], Config(), ComposeOptions(now=NOW, subject="Hi\r\nBcc: victim@example.com"))


def test_unsafe_links_are_dropped():
    a = make_article(0, url="javascript:alert(1)", image=Image(url="https://example.org/i.jpg", alt="x"),
                     videos=[Video("javascript:alert(2)", "youtube", "x", "javascript:alert(3)", "t")])
    d = render([a], Config(), OPTS)
    assert "javascript:" not in d.html.lower()
    assert "Read more" not in doc(d).text_content()  # no link to read more at


def test_custom_template_dir_is_used_and_may_include_default_partials(fixtures_dir):
    d = render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=str(fixtures_dir / "compose/templates/custom")))
    assert "Custom: The Weekly Dispatch" in doc(d).text_content()
    assert doc(d).xpath('//a[@href="https://example.org/story-0"]')  # from the default card partial
    assert d.text.startswith("CUSTOM The Weekly Dispatch")


def test_template_dir_missing_a_file_is_a_one_line_render_error(fixtures_dir):
    with pytest.raises(RenderError, match=r"missing digest\.txt") as e:
        render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=str(fixtures_dir / "compose/templates/partial")))
    assert "\n" not in str(e.value)
    with pytest.raises(RenderError, match="not a directory"):
        render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=str(fixtures_dir / "nope")))


def _installed_distributions(monkeypatch, names: set[str]) -> None:
    """Pretend only ``names`` are installed, as far as importlib.metadata can tell, and forget
    that this process already checked its mjml."""
    import importlib.metadata

    from newsletter.compose.render import forget_mjml_check

    real = importlib.metadata.distribution

    def distribution(name):
        if name.lower().replace("_", "-") not in names:
            raise importlib.metadata.PackageNotFoundError(name)
        return real("mjml-python")  # any real distribution object will do

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    forget_mjml_check()


@pytest.mark.parametrize("installed", [{"mjml"}, {"mjml", "mjml-python"}])
def test_the_pure_python_mjml_package_is_a_one_line_render_error_naming_the_fix(monkeypatch, installed):
    # PyPI's "mjml" (pure Python) installs the same import name as mjml-python and shadows it.
    _installed_distributions(monkeypatch, installed)
    with pytest.raises(RenderError) as e:
        render([make_article(0)], Config(), ComposeOptions(now=NOW))
    message = str(e.value)
    assert "\n" not in message
    assert "'mjml'" in message and "mjml-python" in message
    assert message.endswith("pip uninstall mjml; pip install --force-reinstall mjml-python")


def test_a_missing_mjml_python_is_a_one_line_render_error(monkeypatch):
    _installed_distributions(monkeypatch, set())
    with pytest.raises(RenderError, match=r"^mjml-python is not installed: pip install mjml-python$"):
        render([make_article(0)], Config(), ComposeOptions(now=NOW))


def test_mjml_python_alone_renders(monkeypatch):
    _installed_distributions(monkeypatch, {"mjml-python"})
    assert "<html" in render([make_article(0)], Config(), ComposeOptions(now=NOW)).html


def test_template_syntax_error_names_the_file_and_line(tmp_path, fixtures_dir):
    tdir = custom_template(tmp_path, fixtures_dir, "<mjml><mj-body>\n{% for x in %}\n</mj-body></mjml>")
    with pytest.raises(RenderError, match=r"digest\.mjml:2"):
        render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=tdir))


def test_template_that_renders_invalid_mjml_is_a_render_error(tmp_path, fixtures_dir):
    tdir = custom_template(tmp_path, fixtures_dir, "<mjml><mj-body><mj-text>{{ subject }}</mj-body></mjml>")
    with pytest.raises(RenderError, match=r"digest\.mjml: not valid MJML once rendered"):
        render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=tdir))


# --- untrusted article content never becomes live HTML -------------------------------------

_nasty = st.sampled_from([
    "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)", "<a href='javascript:x'>y</a>",
    "' onmouseover='x", "</mj-text><mj-raw><script>x</script></mj-raw>", "{{ 7*7 }}", "{% raw %}", "<style>*{}</style>",
    "<svg onload=alert(1)>", "&lt;script&gt;", "<!--", "]]>", "\u202e", "*|UNSUBSCRIBE_URL|*",
])
_text = st.lists(st.one_of(_nasty, st.text(max_size=30)), max_size=4).map("".join)


def _assert_no_active_content(html: str):
    root = lxml.html.fromstring(html)
    assert not root.xpath("//script | //iframe | //object | //embed | //form | //svg")
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), (el.tag, name, value)
            if name.lower() in {"href", "src", "action", "background"}:
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:")), value
    assert "<script" not in html.lower()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=_text, summary=_text, author=_text, category=_text, alt=_text, url=st.one_of(_nasty, st.just("https://example.org/ok")))
def test_arbitrary_article_text_never_yields_active_html(title, summary, author, category, alt, url):
    a = make_article(0, title=title or "t", summary=summary, authors=[author], category=category, url=url,
                     image=Image(url="https://example.org/i.jpg", alt=alt),
                     videos=[Video(url, "youtube", "x", url, title)])
    d = render([a], Config(newsletter_name="N"), OPTS)
    _assert_no_active_content(d.html)


_markdown_bits = st.sampled_from([
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))", "<a href=\"javascript:x\">y</a>",
    "![pic](javascript:alert(1))", "<iframe src=https://example.org></iframe>", "<div onclick=x>hi</div>", "<svg onload=x>",
    "https://www.youtube.com/watch?v=aqz-KE-bpKQ", "<style>body{}</style>", "<form><input></form>", "\n\n", "# ", "**bold**",
])
_markdown = st.lists(st.one_of(_markdown_bits, st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)), max_size=6).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(title=_markdown, body=_markdown)
def test_arbitrary_markdown_source_never_yields_active_html_in_the_digest(tmp_path, title, body):
    from newsletter.articles import load_sources
    from newsletter.errors import SourceError

    src = tmp_path / "2026-11-20-any.md"
    src.write_text(f"# {' '.join(title.split()) or 'Untitled'}\n\n{body}\n", encoding="utf-8")
    try:
        articles = load_sources([str(src)], Config()).articles
    except SourceError:
        return  # refused outright is fine: nothing reaches the digest
    d = render(articles, Config(), OPTS)
    _assert_no_active_content(d.html)


def test_default_templates_come_from_package_data_when_installed(tmp_path, monkeypatch):
    from newsletter.compose import templates

    pkg = tmp_path / "newsletter"
    shutil.copytree(templates.default_template_dir(), pkg / "_templates")
    monkeypatch.setattr(templates.resources, "files", lambda name: pkg)
    assert templates.default_template_dir() == pkg / "_templates"


def test_pyproject_ships_the_templates_as_package_data():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]["templates"] == "newsletter/_templates"


def test_digest_makes_no_third_party_requests(ten):
    root = doc(ten)
    assert not root.xpath("//link")  # e.g. no Google Fonts stylesheet for "Roboto" in the font stack
    external = {img.get("src").split("/")[2] for img in root.xpath("//img") if img.get("src", "").startswith("http")}
    assert external == {"example.org"}  # only the articles' own images


def test_mixed_style_block_is_inlined_and_its_media_rules_keep_important(tmp_path, fixtures_dir):
    tdir = custom_template(
        tmp_path, fixtures_dir,
        "<mjml><mj-head><mj-style>.x a { color: #123456; } "
        "@media only screen and (max-width: 480px) { .x a { color: #654321 !important; } }</mj-style></mj-head>"
        "<mj-body><mj-section><mj-column><mj-text css-class=\"x\"><a href=\"https://example.org/\">{{ subject }}</a></mj-text>"
        "<mj-text><a href=\"{{ unsubscribe_url }}\">u</a></mj-text></mj-column></mj-section></mj-body></mjml>",
    )
    d = render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=tdir))
    link = doc(d).xpath('//td[contains(@class,"x")]//a')[0]
    assert "color:#123456" in link.get("style").replace(" ", "")
    assert re.search(r"\.x a\s*{\s*color:\s*#654321\s*!important", styles(d))


MERGE_TAGS = ["*|UNSUBSCRIBE_URL|*", "*|WEB_VERSION_URL|*", "*|EMAIL|*", "*|NAME|*", "*|NAME:fallback|*",
              "*|ATTR:key|*", "*|ATTR:key:fallback|*"]


def test_every_merge_tag_survives_in_text_and_links_of_a_custom_template(tmp_path, fixtures_dir):
    body = "".join(f'<mj-text><p>Hi {tag}</p><a href="https://example.org/?v={tag}">l</a></mj-text>' for tag in MERGE_TAGS)
    tdir = custom_template(tmp_path, fixtures_dir, f"<mjml><mj-body><mj-section><mj-column>{body}</mj-column></mj-section></mj-body></mjml>")
    d = render([make_article(0)], Config(), ComposeOptions(now=NOW, template_dir=tdir))
    root = doc(d)
    for tag in MERGE_TAGS:
        assert f"Hi {tag}" in root.text_content(), tag
        assert root.xpath(f'//a[@href="https://example.org/?v={tag}"]'), tag
        assert d.html.count(tag) >= 2, tag


def test_plain_text_wraps_cjk_by_display_width_and_never_breaks_urls():
    from newsletter.compose.textwrap_cjk import display_width

    summary = "紅葉シーズンを迎え、山あいを走る小さなローカル線に観光客が戻ってきた。" * 4
    long_url = "https://example.org/" + "x" * 90
    d = render([make_article(0, title="紅葉の季節", summary=summary, lang="ja", url=long_url)], Config(),
               ComposeOptions(now=NOW, preheader="Autumn"))
    lines = d.text.splitlines()
    body = [ln for ln in lines if ln and ln in summary]
    assert len(body) >= 4 and "".join(body) == summary
    assert all(display_width(ln) <= 74 for ln in lines if not ln.startswith("Read more:"))
    assert not any(ln.startswith(("、", "。")) for ln in lines)
    assert f"Read more: {long_url}" in lines
