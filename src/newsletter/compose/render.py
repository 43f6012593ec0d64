"""Rendering: articles → Jinja2 → MJML → HTML (mjml-python) → inlined CSS (premailer), plus the
plain-text part from its own template. Never string-concatenated HTML: every article value goes
through Jinja2 autoescaping, every link through :func:`safe_url`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..articles.model import Article
from ..config import Config
from ..errors import RenderError
from .cards import Card, day_text, make_card, one_line, safe_url, shorten, zone
from .headers import check_header, header_text
from .inline import inline_css
from .mergesafe import WORD_JOINER
from .model import HTML_BUDGET_BYTES, Asset, ComposeOptions, Digest, InlineImage
from .plaintext import render_text
from .templates import environment, resolve_template_dir
from .compat import layout_warnings

# Merge tags the dispatcher fills per recipient; templates get them as variables.
PLACEHOLDERS = {
    "unsubscribe_url": "*|UNSUBSCRIBE_URL|*",
    "web_version_url": "*|WEB_VERSION_URL|*",
    "email": "*|EMAIL|*",
    "name": "*|NAME|*",
}


def default_subject(config: Config, cards: list[Card], lang: str = "en") -> str:
    """The newsletter's name and the top story ("and 3 more" in ``lang``)."""
    from ..i18n import translations

    first = shorten(cards[0].title, 60)
    if len(cards) > 1:
        n = len(cards) - 1
        first = translations(lang).ngettext("%(first)s and %(num)d more", "%(first)s and %(num)d more", n) % {"first": first, "num": n}
    return one_line(f"{config.newsletter_name}: {first}")


def default_preheader(cards: list[Card], lang: str = "en") -> str:
    """The preview text: the only story's summary, or the count and the first titles (in ``lang``)."""
    from ..i18n import translations

    if len(cards) == 1:
        return shorten(cards[0].summary or cards[0].title, 140)
    t = translations(lang)
    titles = ", ".join(c.title for c in cards[:3])
    if len(cards) > 3:
        n = len(cards) - 3
        titles = t.ngettext("%(first)s and %(num)d more", "%(first)s and %(num)d more", n) % {"first": titles, "num": n}
    n = len(cards)
    return shorten(t.ngettext("%(num)d story: %(titles)s", "%(num)d stories: %(titles)s", n) % {"titles": titles, "num": n}, 140)


def build_context(articles: list[Article], config: Config, options: ComposeOptions) -> tuple[dict[str, Any], list, list[str]]:
    """The template variables, the image files to ship (assets or CID parts) and warnings."""
    from ..articles.markdown import site_base_url

    site_base_url(config)  # the footer links to it: ConfigError naming site_url when it is not an http(s) URL
    tz = zone(config)
    now = options.now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    files: list[Asset | InlineImage] = []
    warnings: list[str] = []
    cards = [make_card(a, config, options, tz, files, warnings) for a in articles]
    from ..i18n import direction, format_day, normalize

    lang = normalize(options.language or config.language) or "en"
    subject = check_header("--subject", options.subject) if options.subject else None
    if subject:
        subject = one_line(subject)
    else:  # made from article titles: untrusted text, made fit for a header rather than refused
        subject = header_text(default_subject(config, cards, lang) if cards else config.newsletter_name)
    preheader = one_line(options.preheader) if options.preheader else default_preheader(cards, lang) if cards else ""
    context = {
        "lang": lang,
        "dir": direction(lang),
        "newsletter_name": one_line(config.newsletter_name),
        "site_url": safe_url(config.site_url),
        "subject": subject,
        "preheader": preheader,
        "issue_date": now.astimezone(tz),
        "issue_date_text": day_text(now, tz) if lang == "en" else format_day(now.astimezone(tz), lang),
        "articles": cards,
        "article_count": len(cards),
        "intro": intro_paragraphs(options.intro),
        **PLACEHOLDERS,
    }
    return context, files, warnings


def intro_paragraphs(note: str | None) -> list[str]:
    """The editor's note as paragraphs (split on blank lines, each on one line): plain text, which the
    templates escape like every other value."""
    if not note or not note.strip():
        return []
    import re

    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", note.replace("\r\n", "\n").strip()) if p.strip()]


def render_mjml(template_dir: Path, context: dict[str, Any]) -> str:
    """Jinja2 stage: the MJML document for this digest."""
    import jinja2

    try:
        return environment(template_dir).get_template("digest.mjml").render(context)
    except jinja2.TemplateError as e:
        where = f"{getattr(e, 'filename', None) or template_dir / 'digest.mjml'}"
        lineno = getattr(e, "lineno", None)  # TemplateSyntaxError and some runtime errors carry one
        line = f":{lineno}" if lineno else ""
        raise RenderError(f"{where}{line}: {e.message or type(e).__name__}") from None


_IMG_HEIGHT_AUTO = re.compile(r"(<img\b[^>]*?)\s+height=\"auto\"", re.IGNORECASE)


# Uninstalling the pure-Python "mjml" deletes the mjml/__init__.py both packages install, and a
# plain "pip install mjml-python" then says "already satisfied": hence --force-reinstall.
MJML_FIX = "pip uninstall mjml; pip install --force-reinstall mjml-python"
_mjml_checked = False


def _installed(distribution: str) -> bool:
    """Whether a distribution of this name is installed (its metadata, not the import)."""
    from importlib.metadata import PackageNotFoundError, distribution as lookup

    try:
        lookup(distribution)
        return True
    except PackageNotFoundError:
        return False


def check_mjml() -> None:
    """RenderError unless the ``mjml`` module comes from mjml-python: the PyPI package ``mjml``
    (a pure-Python port) installs the same import name and breaks it. Checked once per process."""
    global _mjml_checked
    if _mjml_checked:
        return
    if _installed("mjml"):
        raise RenderError(f"the PyPI package 'mjml' is installed and shadows mjml-python (both are imported as 'mjml'): {MJML_FIX}")
    if not _installed("mjml-python"):
        raise RenderError("mjml-python is not installed: pip install mjml-python")
    _mjml_checked = True


def forget_mjml_check() -> None:
    """Make the next render check the installed mjml packages again (``check_mjml`` remembers a
    passed check for the life of the process): after installing or removing packages, or in tests."""
    global _mjml_checked
    _mjml_checked = False


def mjml_to_html(mjml_source: str, name: str = "digest.mjml") -> str:
    """MJML stage (mjml-python, the Rust MRML engine); ``name`` labels errors."""
    check_mjml()
    try:
        from mjml import mjml2html
    except ImportError as e:  # files of mjml-python deleted, e.g. by uninstalling the other 'mjml'
        raise RenderError(f"mjml-python is installed but cannot be imported ({e}): {MJML_FIX}") from None

    try:
        # fonts={}: no <link> to Google Fonts for names like "Roboto" in a font stack — the
        # digest makes no third-party requests; templates that want a web font use <mj-font>.
        html = mjml2html(mjml_source, disable_comments=True, fonts={})
    except Exception as e:  # MRML raises plain exceptions with its parser message
        raise RenderError(f"{name}: not valid MJML once rendered: {e}") from None
    # MRML writes height="auto" on every <mj-image>: not valid HTML (the attribute takes pixels);
    # the inline style already says height:auto.
    html = _IMG_HEIGHT_AUTO.sub(r"\1", html)
    # MRML writes the title into aria-label with Rust escapes: keep the joiner that makes a tag
    # inert (compose/mergesafe.py) a character there too, not the text "\u{2060}".
    return html.replace("\\u{2060}", WORD_JOINER)


def size_warning(size: int) -> str | None:
    if size <= HTML_BUDGET_BYTES:
        return None
    return (
        f"digest.html is {size / 1024:.1f} KB, over the {HTML_BUDGET_BYTES // 1024} KB Gmail clips at: "
        "select fewer articles (--limit) or shorten the summaries"
    )


def placeholder_warnings(template_dir: Path, html: str, text: str) -> list[str]:
    """A template whose output has no unsubscribe link composes, but dispatch refuses to send it: say so now."""
    tag = PLACEHOLDERS["unsubscribe_url"]
    missing = [name for name, body in (("digest.mjml", html), ("digest.txt", text)) if tag not in body]
    return [
        f"{template_dir / name}: the output has no {tag} (use {{{{ unsubscribe_url }}}}); dispatch will refuse to send it"
        for name in missing
    ]


def render(articles: list[Article], config: Config, options: ComposeOptions | None = None) -> Digest:
    """Render already-selected ``articles`` into a Digest (final HTML, text, images, warnings)."""
    options = options or ComposeOptions()
    template_dir = resolve_template_dir(options.template_dir or config.template_dir)
    context, files, warnings = build_context(list(articles), config, options)
    html = inline_css(mjml_to_html(render_mjml(template_dir, context), str(template_dir / "digest.mjml")))
    text = render_text(template_dir, context)
    size = len(html.encode("utf-8"))
    warning = size_warning(size)
    if warning:
        warnings.append(warning)
    warnings.extend(placeholder_warnings(template_dir, html, text))
    warnings.extend(layout_warnings(template_dir))
    if context["intro"] and context["intro"][0][:40] not in text:
        warnings.append(f"the template in {template_dir} does not show the editor's note (it has no {{{{ intro }}}} block)")
    from_address = check_header("from_address", config.from_address or "")
    reply_to = check_header("reply_to", config.reply_to) if config.reply_to else None
    # Several cards may share one image: ship each file once.
    assets = list({f.filename: f for f in files if isinstance(f, Asset)}.values())
    images = list({f.cid: f for f in files if isinstance(f, InlineImage)}.values())
    return Digest(
        subject=context["subject"],
        preheader=context["preheader"],
        html=html,
        text=text,
        articles=list(articles),
        images=images,
        assets=assets,
        warnings=warnings,
        found=len(articles),
        skipped=[],
        html_size=size,
        from_address=from_address,
        reply_to=reply_to,
        date=context["issue_date"],
        newsletter_name=context["newsletter_name"],
    )
