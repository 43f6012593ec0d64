"""What the preview page shows: a digest (composed from the configured sources, or a campaign's
snapshot) prepared for display in frames, and the checks a publisher wants before sending.

Composing is the library's job (``newsletter.compose.compose``); this module only caches the
result between requests, fills the merge tags with sample values, points ``cid:`` images at a
preview URL and forces the email's dark-mode styles on for the dark tab.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

HTML_BUDGET_BYTES = 102 * 1024

class MergeValues(TypedDict, total=False):
    """The reader-specific values :func:`fill_merge_tags` takes as keywords."""

    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str
    web_version_url: str


SAMPLE: MergeValues = {"email": "reader@example.com", "name": "Sam Reader", "unsubscribe_url": "#unsubscribe", "preferences_url": "#preferences",
                      "web_version_url": "#web-version"}


def fill_merge_tags(text: str, *, html: bool, email: str = "", name: str = "", unsubscribe_url: str = "",
                    web_version_url: str = "", attributes: dict | None = None, preferences_url: str = "") -> str:
    """Fill the merge tags for display with the dispatcher's own substitution (for previews, the
    archive and test sends): the sample reader, or neutral values with no personal data."""
    from ..dispatch.personalize import Recipient, render_preview

    r = Recipient(subscriber_id=0, list_id=0, email=email, name=name, attributes=attributes or {})
    return render_preview(text, r, unsubscribe_url=unsubscribe_url, web_version_url=web_version_url, html=html,
                          preferences_url=preferences_url)


def sample(text: str, *, html: bool) -> str:
    """``text`` as the sample reader of the preview sees it."""
    return fill_merge_tags(text, html=html, **SAMPLE)


@dataclass
class PreviewDoc:
    """One digest as the preview shows it."""

    label: str
    subject: str
    preheader: str
    html: str  # still holding merge tags
    text: str
    from_address: str = ""
    html_size: int = 0
    warnings: list[str] = field(default_factory=list)
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # cid -> (content type, data)
    assets: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # url -> (content type, data)
    campaign_id: Any = None
    error: str | None = None
    digest: Any = None  # the composed Digest (for the test send), when composed from sources
    # What the template uses that some major clients show more plainly (caniemail); the features
    # that can break the layout are among the warnings already.
    client_notes: list[str] = field(default_factory=list)


def from_digest(digest, label: str, campaign_id: Any = None, template_dir: Any = None) -> PreviewDoc:
    size = digest.html_size or len(digest.html.encode("utf-8"))
    doc = PreviewDoc(
        label=label,
        subject=digest.subject,
        preheader=digest.preheader or "",
        html=digest.html,
        text=digest.text,
        from_address=getattr(digest, "from_address", "") or "",
        html_size=size,
        warnings=list(getattr(digest, "warnings", []) or []),
        images={i.cid: (i.content_type, i.data) for i in getattr(digest, "images", []) or []},
        assets={a.url: (a.content_type, a.data) for a in getattr(digest, "assets", []) or []},
        campaign_id=campaign_id,
        digest=digest,
    )
    doc.warnings = _dedupe(doc.warnings + check_html(doc))
    if template_dir is not None:
        from ..compose.compat import check_templates

        doc.client_notes = [i.message() for i in check_templates(template_dir) if not i.layout]
    return doc


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _ImgScan(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")


def check_html(doc: PreviewDoc) -> list[str]:
    """Warnings a publisher should see before sending: images without alt text, no unsubscribe
    link, images that cannot load (unknown cid:, missing local file, empty src), size over budget."""
    scan = _ImgScan()
    scan.feed(doc.html)
    warnings = []
    for img in scan.images:
        src = (img.get("src") or "").strip()
        name = src.rsplit("/", 1)[-1][:60] or "(no src)"
        if img.get("alt") is None:
            warnings.append(f"image {name} has no alt text")
        if not src:
            warnings.append("an image has an empty src")
        elif src.startswith("cid:") and src[4:] not in doc.images:
            warnings.append(f"image {name} refers to a missing inline part")
        elif not re.match(r"^(https?:|data:|cid:)", src) and src not in doc.assets:
            warnings.append(f"image {name} is a relative path that will not load in an email client")
    if "*|UNSUBSCRIBE_URL|*" not in doc.html:
        warnings.append("no unsubscribe link (*|UNSUBSCRIBE_URL|*) in the HTML")
    if doc.text and "*|UNSUBSCRIBE_URL|*" not in doc.text:
        warnings.append("no unsubscribe link (*|UNSUBSCRIBE_URL|*) in the plain-text part")
    if doc.html_size > HTML_BUDGET_BYTES:
        warnings.append(f"HTML is {doc.html_size / 1024:.0f} KB: Gmail clips messages over 102 KB")
    from ..dispatch.personalize import unknown_tags

    for tag in unknown_tags(doc.subject, doc.html, doc.text or ""):
        warnings.append(f"unknown merge tag {tag}: a campaign with it is refused (it would be sent as written)")
    return warnings


_DARK_QUERY = re.compile(r"prefers-color-scheme\s*:\s*dark", re.I)
_LIGHT_QUERY = re.compile(r"prefers-color-scheme\s*:\s*light", re.I)


def for_frame(doc: PreviewDoc, variant: str, prefix: str) -> str:
    """The HTML to put in a preview frame: sample merge values, inline images served by
    ``prefix``/cid/…, and for ``variant == "dark"`` the email's dark-mode rules switched on."""
    out = sample(doc.html, html=True)
    out = re.sub(r"""(src=["'])cid:([^"']+)""", lambda m: f"{m.group(1)}{prefix}/cid/{m.group(2)}", out)
    if variant == "dark":
        # Frames cannot be told prefers-color-scheme: dark on their own, so turn the email's
        # own dark-mode media queries on (always true) and its light-only ones off.
        out = _DARK_QUERY.sub("min-width: 0px", out)
        out = _LIGHT_QUERY.sub("max-width: 0px", out)
        inject = '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark}</style>'
        out = re.sub(r"(<head[^>]*>)", r"\1" + inject, out, count=1, flags=re.I) if re.search(r"<head", out, re.I) else inject + out
    return out


def has_dark_styles(html_text: str) -> bool:
    return bool(_DARK_QUERY.search(html_text))


def fingerprint(paths: list[Path | str]) -> str:
    """A cheap hash of the files under ``paths`` (names, sizes, mtimes): changes when any changes."""
    h = hashlib.sha1()
    for p in paths:
        p = Path(p)
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
        else:
            h.update(f"{p}:missing".encode())
            continue
        for f in files:
            try:
                s = f.stat()
            except OSError:
                continue
            h.update(f"{f}:{s.st_size}:{s.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class PreviewCache:
    """Composes the configured sources at most once per change of the watched files (feeds and
    pages fetched over HTTP are only fetched again on ``refresh``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key: str | None = None
        self._doc: PreviewDoc | None = None

    def get(self, config, watched: list[Path], *, refresh: bool = False) -> PreviewDoc:
        paths = list(watched) + [s for s in config.sources if not re.match(r"^https?://", s)]
        if config.template_dir:
            paths.append(config.template_dir)
        key = fingerprint(paths)
        with self._lock:
            if refresh or self._doc is None or key != self._key:
                self._doc = compose_sources(config)
                self._key = key
            return self._doc


def compose_sources(config) -> PreviewDoc:
    """Compose the configured sources (library call); library errors become an error doc."""
    from ..compose import ComposeOptions, compose
    from ..errors import NewsletterError

    if not config.sources:
        return PreviewDoc(label="configured sources", subject="", preheader="", html="", text="",
                          error="no sources are configured: set sources in newsletter.toml or NEWSLETTER_SOURCES")
    try:
        digest = compose(config.sources, config, ComposeOptions(template_dir=config.template_dir))
    except NewsletterError as e:
        return PreviewDoc(label="configured sources", subject="", preheader="", html="", text="", error=str(e))
    from ..compose.templates import resolve_template_dir

    return from_digest(digest, "configured sources", template_dir=resolve_template_dir(config.template_dir))
