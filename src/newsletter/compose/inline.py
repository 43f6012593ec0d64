"""The premailer stage: CSS inlined into the HTML, with the rules that cannot be inlined kept."""

from __future__ import annotations

import logging
import re


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
