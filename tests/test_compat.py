"""Email-client support of a template's HTML and CSS, from the shipped caniemail snapshot."""

from __future__ import annotations

import shutil

from conftest import REPO

from newsletter.compose import compat


def test_the_snapshot_is_dated_and_knows_the_four_clients():
    assert compat.data_date() >= "2026-01-01"
    assert set(compat._data()["platforms"]) == {"gmail", "outlook", "apple-mail", "yahoo"}


def test_a_flex_layout_is_named_with_its_clients_and_line():
    text = '<mjml>\n<mj-body>\n<mj-raw><div style="display: flex; gap: 8px">x</div></mj-raw>\n</mj-body>\n</mjml>\n'
    issues = compat.check_text(text, "digest.mjml")
    flex = [i for i in issues if i.slug == "css-display-flex"]
    assert len(flex) == 1 and flex[0].line == 3 and flex[0].layout
    assert "Outlook (Windows)" in flex[0].clients
    assert flex[0].message().startswith("digest.mjml:3: display:flex is not supported in ")
    assert "the layout may break" in flex[0].message()


def test_css_in_a_style_block_and_mjml_attributes_are_read():
    text = ("<mj-style>\n  .a:hover { color: red; }\n  @media (prefers-color-scheme: dark) {\n"
            "  .b { position: absolute; }\n  }\n</mj-style>\n"
            '<mj-section border-radius="8px"><mj-column></mj-column></mj-section>\n<mj-raw><video src="a.mp4"></video></mj-raw>\n')
    found = {(i.slug, i.line) for i in compat.check_text(text, "t.mjml")}
    assert ("css-at-media-prefers-color-scheme", 3) in found
    assert ("css-position", 4) in found
    assert ("css-border-radius", 7) in found
    assert ("html-video", 8) in found
    # a supported property is not reported
    assert not any(slug == "css-color" for slug, _ in found)


def test_the_shipped_templates_use_nothing_that_breaks_the_layout():
    issues = compat.check_templates(REPO / "templates")
    assert issues, "the sample uses rounded corners, which Outlook for Windows squares: reported as plainer"
    assert [i.message() for i in issues if i.layout] == []
    assert compat.layout_warnings(REPO / "templates") == []


def test_compose_warns_about_a_custom_template_that_breaks_the_layout(tmp_path):
    from newsletter.compose.model import ComposeOptions
    from newsletter.compose.render import render
    from newsletter.config import Config
    from test_render import make_article  # the render tests' article factory

    folder = tmp_path / "tpl"
    shutil.copytree(REPO / "templates", folder)
    main = folder / "digest.mjml"
    lines = main.read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if "</mj-body>" in line)
    lines.insert(at, '    <mj-raw><div style="display:grid">two columns</div></mj-raw>')
    main.write_text("\n".join(lines) + "\n")
    digest = render([make_article(0)], Config(), ComposeOptions(template_dir=str(folder)))
    grid = [w for w in digest.warnings if "display:grid" in w]
    assert len(grid) == 1 and grid[0].startswith(f"email clients: digest.mjml:{at + 1}: ") and "Outlook (Windows)" in grid[0]


def test_the_preview_lists_what_clients_show_more_plainly(tmp_path):
    from newsletter.config import Config
    from newsletter.web import preview as pv

    doc = pv.compose_sources(Config(sources=[str(REPO / "articles")], vimeo_oembed_url=""))
    assert doc.error is None
    assert any("border-radius is not supported in Outlook (Windows)" in n for n in doc.client_notes)
    assert not any(w.startswith("email clients:") for w in doc.warnings)
