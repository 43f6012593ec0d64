"""Rendering: articles → Jinja2 → MJML → HTML (mjml-python) → inlined CSS (premailer), plus the
plain-text part from its own template. Never string-concatenated HTML: every article value goes
through Jinja2 autoescaping, every link through :func:`safe_url`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..articles.model import Article
from ..config import Config
from ..errors import InvalidInput, RenderError
from .model import HTML_BUDGET_BYTES, Asset, ComposeOptions, Digest, InlineImage
from .templates import environment, resolve_template_dir
from .thumbnails import CARD_HEIGHT, CARD_WIDTH, ImageRef, card_image

# Merge tags the dispatcher fills per recipient; templates get them as variables.
PLACEHOLDERS = {
    "unsubscribe_url": "*|UNSUBSCRIBE_URL|*",
    "web_version_url": "*|WEB_VERSION_URL|*",
    "email": "*|EMAIL|*",
    "name": "*|NAME|*",
}
PROVIDER_NAMES = {"youtube": "YouTube", "vimeo": "Vimeo"}
SUMMARY_MAX = 320
_SAFE_SCHEMES = {"http", "https", "mailto"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class VideoCard:
    url: str
    provider: str
    provider_name: str
    title: str
    thumbnail: ImageRef | None


@dataclass
class Card:
    """One article as the templates see it: display-ready text, safe links, placed images."""

    key: str
    title: str
    url: str
    authors: list[str]
    authors_text: str
    category: str
    tags: list[str]
    summary: str
    published: datetime | None
    date_text: str
    date_iso: str
    read_time_minutes: int
    read_time_text: str
    lang: str
    dir: str
    align: str
    site_name: str
    image: ImageRef | None
    videos: list[VideoCard] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        """A card led by a video (no image of its own): it opens with the video's thumbnail
        (when the provider gives one) and a play bar linking to the video."""
        return self.image is None and bool(self.videos)


def safe_url(url: str | None) -> str:
    """``url`` when it is an absolute http(s)/mailto link, else "" (no ``javascript:``, ``data:``...)."""
    if not url:
        return ""
    url = _CONTROL.sub("", str(url)).strip()
    if any(c in url for c in "\r\n\t"):
        return ""
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in _SAFE_SCHEMES else ""


def one_line(text: str | None) -> str:
    """Collapse whitespace and control characters: titles and names are shown on one line."""
    return " ".join(_CONTROL.sub(" ", text or "").split())


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` at a word boundary before ``limit`` characters, with an ellipsis."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-–—") + "…"


def join_names(names: list[str]) -> str:
    names = [one_line(n) for n in names if one_line(n)]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def day_text(dt: datetime, tz) -> str:
    local = dt.astimezone(tz)
    return f"{local.day} {local:%B %Y}"


def _tz(config: Config):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(config.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _card(a: Article, config: Config, options: ComposeOptions, tz, files: list, warnings: list[str]) -> Card:
    title = one_line(a.title) or one_line(a.url)
    image = None
    if a.image is not None and a.image.url:
        alt = one_line(a.image.alt) or title
        image, part, warning = card_image(a, a.image, alt=alt, embed=options.embed_images, asset_base_url=config.asset_base_url)
        if part is not None:
            files.append(part)
        if warning:
            warnings.append(warning)
    videos = []
    for v in a.videos:
        vurl = safe_url(v.url)
        if not vurl:
            continue
        vtitle = one_line(v.title) or title
        provider_name = PROVIDER_NAMES.get((v.provider or "").lower(), (v.provider or "video").title())
        thumb = None
        turl = safe_url(v.thumbnail_url)
        if turl.startswith(("http://", "https://")):
            thumb = ImageRef(turl, f"Play video on {provider_name}: {vtitle}", CARD_WIDTH, None)
        videos.append(VideoCard(vurl, (v.provider or "").lower(), provider_name, vtitle, thumb))
    direction = "rtl" if (a.dir or "").lower() == "rtl" else "ltr"
    minutes = max(1, int(a.read_time_minutes or 1))
    return Card(
        key=a.key,
        title=title,
        url=safe_url(a.url),
        authors=[one_line(x) for x in a.authors if one_line(x)],
        authors_text=join_names(a.authors),
        category=one_line(a.category),
        tags=[one_line(t) for t in a.tags if one_line(t)],
        summary=shorten(a.summary or "", SUMMARY_MAX),
        published=a.published,
        date_text=day_text(a.published, tz) if a.published else "",
        date_iso=a.published.isoformat() if a.published else "",
        read_time_minutes=minutes,
        read_time_text=f"{minutes} min read",
        lang=re.sub(r"[^A-Za-z0-9-]", "", a.lang or "")[:35],
        dir=direction,
        align="right" if direction == "rtl" else "left",
        site_name=one_line(a.site_name),
        image=image,
        videos=videos,
    )


def check_header(name: str, value: str) -> str:
    """Refuse CR/LF (header injection) in a value meant for a mail header."""
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"{name}: line breaks are not allowed in a mail header")
    return value


def default_subject(config: Config, cards: list[Card]) -> str:
    first = shorten(cards[0].title, 60)
    more = f" and {len(cards) - 1} more" if len(cards) > 1 else ""
    return one_line(f"{config.newsletter_name}: {first}{more}")


def default_preheader(cards: list[Card]) -> str:
    if len(cards) == 1:
        return shorten(cards[0].summary or cards[0].title, 140)
    titles = ", ".join(c.title for c in cards[:3])
    more = f" and {len(cards) - 3} more" if len(cards) > 3 else ""
    return shorten(f"{len(cards)} stories: {titles}{more}", 140)


def build_context(articles: list[Article], config: Config, options: ComposeOptions) -> tuple[dict[str, Any], list, list[str]]:
    """The template variables, the image files to ship (assets or CID parts) and warnings."""
    tz = _tz(config)
    now = options.now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    files: list[Asset | InlineImage] = []
    warnings: list[str] = []
    cards = [_card(a, config, options, tz, files, warnings) for a in articles]
    subject = check_header("--subject", options.subject) if options.subject else None
    subject = one_line(subject) if subject else default_subject(config, cards) if cards else one_line(config.newsletter_name)
    preheader = one_line(options.preheader) if options.preheader else default_preheader(cards) if cards else ""
    context = {
        "newsletter_name": one_line(config.newsletter_name),
        "site_url": safe_url(config.site_url),
        "subject": subject,
        "preheader": preheader,
        "issue_date": now.astimezone(tz),
        "issue_date_text": day_text(now, tz),
        "articles": cards,
        "article_count": len(cards),
        **PLACEHOLDERS,
    }
    return context, files, warnings


def render_mjml(template_dir: Path, context: dict[str, Any]) -> str:
    """Jinja2 stage: the MJML document for this digest."""
    import jinja2

    try:
        return environment(template_dir).get_template("digest.mjml").render(context)
    except jinja2.TemplateError as e:
        where = f"{getattr(e, 'filename', None) or template_dir / 'digest.mjml'}"
        line = f":{e.lineno}" if getattr(e, "lineno", None) else ""
        raise RenderError(f"{where}{line}: {e.message or type(e).__name__}") from None


def render_text(template_dir: Path, context: dict[str, Any]) -> str:
    """Jinja2 stage for the plain-text part, from the same context as the HTML."""
    import jinja2

    try:
        text = environment(template_dir).get_template("digest.txt").render(context)
    except jinja2.TemplateError as e:
        line = f":{e.lineno}" if getattr(e, "lineno", None) else ""
        raise RenderError(f"{template_dir / 'digest.txt'}{line}: {e.message or type(e).__name__}") from None
    # Tidy template whitespace: no trailing spaces, at most one blank line in a row.
    lines = [ln.rstrip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def mjml_to_html(mjml_source: str, name: str = "digest.mjml") -> str:
    """MJML stage (mjml-python, the Rust MRML engine); ``name`` labels errors."""
    from mjml import mjml2html

    try:
        # fonts={}: no <link> to Google Fonts for names like "Roboto" in a font stack — the
        # digest makes no third-party requests; templates that want a web font use <mj-font>.
        return mjml2html(mjml_source, disable_comments=True, fonts={})
    except Exception as e:  # MRML raises plain exceptions with its parser message
        raise RenderError(f"{name}: not valid MJML once rendered: {e}") from None


_STYLE_BLOCK = re.compile(r"<style([^>]*)>(.*?)</style>", re.S | re.I)


def _without_media_blocks(css: str) -> str:
    """``css`` with every ``@media ... { ... }`` block removed (braces matched)."""
    out, i = [], 0
    while True:
        j = css.find("@media", i)
        if j < 0:
            out.append(css[i:])
            return "".join(out)
        out.append(css[i:j])
        k = css.find("{", j)
        if k < 0:
            return "".join(out)
        depth, k = 1, k + 1
        while k < len(css) and depth:
            depth += {"{": 1, "}": -1}.get(css[k], 0)
            k += 1
        i = k


def _mark_untouchable_styles(html: str) -> str:
    """Tell premailer to skip <style> blocks it has nothing to inline from: blocks of only
    ``@media`` rules (kept as they are, ``!important`` and all) and MRML's client reset
    (``#outlook a``, ``table, td``...), which MJML itself leaves in <head>. premailer then parses
    and applies only the template's own plain rules (mj-style inline="inline"): faster, and the
    HTML stays small because the reset is not repeated on every <td>."""

    def mark(m: re.Match) -> str:
        attrs, body = m.group(1), m.group(2)
        if "data-premailer" in attrs or "media=" in attrs:
            return m.group(0)
        if body.lstrip().startswith("#outlook a") or not _without_media_blocks(body).strip():
            return f'<style{attrs} data-premailer="ignore">{body}</style>'
        return m.group(0)

    return _STYLE_BLOCK.sub(mark, html)


def inline_css(html: str) -> str:
    """premailer stage: inline the CSS so clients that drop <style> still look right.

    ``@media`` rules (responsive columns, dark mode) cannot be inlined and stay in <style>, with
    their ``!important`` kept (strip_important=False), or they could not beat the inline styles.
    width/height attributes are left as MRML wrote them (pixel values Outlook needs).
    """
    from premailer import Premailer

    out = Premailer(
        _mark_untouchable_styles(html),
        strip_important=False,
        keep_style_tags=False,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        disable_basic_attributes=["width", "height"],
        remove_classes=False,
        cache_css_parsing=True,
        align_floating_images=False,  # parses every <img> style with cssutils, uncached: slow, and we float nothing
    ).transform()
    if not out.lstrip()[:9].lower().startswith("<!doctype"):
        out = "<!doctype html>\n" + out
    return out


def size_warning(size: int) -> str | None:
    if size <= HTML_BUDGET_BYTES:
        return None
    return (
        f"digest.html is {size / 1024:.1f} KB, over the {HTML_BUDGET_BYTES // 1024} KB Gmail clips at: "
        "select fewer articles (--limit) or shorten the summaries"
    )


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
