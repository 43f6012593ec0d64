"""Which HTML and CSS in a template the major email clients do not support (caniemail data).

Templates are checked as written (the MJML and raw HTML a publisher edits), not the rendered
email: MJML's own output already carries the fallbacks each client needs. Each finding names the
feature, the clients that do not support it and the template line, and says whether it can break
the layout (a flex row that Outlook stacks) or only looks plainer somewhere (rounded corners
that Outlook squares). The data is a snapshot shipped with the package (``caniemail.json``,
refreshed by ``scripts/refresh_caniemail.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("caniemail.json")

# The clients we report on and the platforms of each that count (the data knows more).
PLATFORMS = {
    "gmail": ("desktop-webmail", "ios", "android"),
    "outlook": ("windows", "macos", "outlook-com"),
    "apple-mail": ("macos", "ios"),
    "yahoo": ("desktop-webmail", "ios", "android"),
}

# Features whose absence rearranges the email rather than plainer styling.
LAYOUT = {
    "css-display-flex", "css-display-grid", "css-flex-direction", "css-flex-wrap", "css-grid-template",
    "css-gap", "css-align-items", "css-justify-content", "css-position", "css-float", "css-clear",
    "css-inset", "css-left-right-top-bottom", "css-column-count", "css-column-layout-properties",
    "css-transform", "css-z-index", "css-variables", "css-unit-calc", "css-unit-vw", "css-unit-vh",
    "css-unit-vmin", "css-unit-vmax", "css-function-clamp", "css-function-min", "css-function-max",
    "css-at-import", "css-aspect-ratio", "css-object-fit", "html-svg", "image-svg", "image-webp",
    "image-avif", "html-video", "html-audio", "html-form", "html-input-text", "html-input-checkbox",
    "html-input-radio", "html-input-submit", "html-select", "html-textarea", "html-button-submit",
    "html-picture", "html-object",
}

# Declarations whose feature is named after the value, or not after the property.
_DISPLAY = {"flex": "css-display-flex", "inline-flex": "css-display-flex", "grid": "css-display-grid",
            "inline-grid": "css-display-grid", "none": "css-display-none"}
_ALIASES = {
    **{p: "css-left-right-top-bottom" for p in ("left", "right", "top", "bottom")},
    **{p: "css-margin-block-start-end" for p in ("margin-block-start", "margin-block-end")},
    **{p: "css-margin-inline-start-end" for p in ("margin-inline-start", "margin-inline-end")},
    **{p: "css-padding-block-start-end" for p in ("padding-block-start", "padding-block-end")},
    **{p: "css-padding-inline-start-end" for p in ("padding-inline-start", "padding-inline-end")},
    **{p: "css-border-radius" for p in ("border-top-left-radius", "border-top-right-radius",
                                         "border-bottom-left-radius", "border-bottom-right-radius")},
    "grid-template-columns": "css-grid-template", "grid-template-rows": "css-grid-template",
    "grid-template-areas": "css-grid-template", "column-gap": "css-gap", "row-gap": "css-gap",
    "columns": "css-column-layout-properties", "column-width": "css-column-layout-properties",
    "text-decoration-line": "css-text-decoration-line",
}
_VALUE_FEATURES = [
    (re.compile(r"\bvar\("), "css-variables"), (re.compile(r"\bcalc\("), "css-unit-calc"),
    (re.compile(r"\bclamp\("), "css-function-clamp"), (re.compile(r"\bmin\("), "css-function-min"),
    (re.compile(r"\bmax\("), "css-function-max"), (re.compile(r"\blinear-gradient\("), "css-linear-gradient"),
    (re.compile(r"\bradial-gradient\("), "css-radial-gradient"), (re.compile(r"\d(vw)\b"), "css-unit-vw"),
    (re.compile(r"\d(vh)\b"), "css-unit-vh"), (re.compile(r"!\s*important"), "css-important"),
    (re.compile(r"\blight-dark\("), "css-function-light-dark"),
]
_PSEUDO = re.compile(r":(hover|active|focus|focus-visible|focus-within|visited|checked|target|has|not|"
                     r"first-child|last-child|nth-child|nth-of-type|only-child)\b")
_TAGS = {"video", "audio", "svg", "form", "select", "textarea", "picture", "object", "dialog", "marquee",
         "progress", "meter", "details", "base"}
_STYLE_ATTR = re.compile(r'\bstyle="([^"]*)"', re.I)
_MJ_TAG = re.compile(r"<mj-[\w-]+((?:\s+[\w-]+=\"[^\"]*\")*)\s*/?>")
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_DECL = re.compile(r"(?<![\w-])([a-z-]{2,40})\s*:\s*([^;{}]+)")
_HTML_TAG = re.compile(r"<([a-z][a-z0-9]*)\b([^>]*)>", re.I)
_IMG_SRC = re.compile(r'\bsrc="[^"]*\.(webp|avif|svg|bmp|tiff?|heic|heif)(?:\?[^"]*)?"', re.I)
_STYLE_OPEN = re.compile(r"<(mj-style|style)\b[^>]*>", re.I)
_STYLE_CLOSE = re.compile(r"</(mj-style|style)>", re.I)
# MJML attributes that are not CSS even though a CSS property has the same name.
_NOT_CSS = {"width", "height", "align", "href", "src", "alt", "title", "name", "target", "rel"}


@dataclass(frozen=True)
class CompatIssue:
    """One feature on one template line that some major clients do not support."""

    slug: str
    title: str
    template: str  # file name within the template folder
    line: int
    clients: tuple[str, ...]  # e.g. ("Outlook (Windows)", "Gmail (Android)")
    layout: bool  # True when its absence can rearrange the email, not only plainer styling
    url: str

    def message(self) -> str:
        """One line: the feature, the template line, the clients, and what it means."""
        effect = "the layout may break" if self.layout else "it looks plainer there"
        return (f"{self.template}:{self.line}: {self.title} is not supported in {', '.join(self.clients)} "
                f"({effect}; {self.url})")


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def data_date() -> str:
    """When the shipped caniemail snapshot was last updated (``YYYY-MM-DD``)."""
    return _data()["last_update_date"][:10]


def _unsupported(slug: str) -> tuple[str, ...]:
    data = _data()
    feature = data["features"].get(slug)
    if feature is None:
        return ()
    out = []
    for family, platforms in PLATFORMS.items():
        support = feature["support"].get(family, {})
        for p in platforms:
            if support.get(p) == "n":
                out.append(f"{data['platforms'][family]} ({data['platform_names'].get(p, p)})")
    return tuple(out)


def _declaration_features(prop: str, value: str) -> list[str]:
    prop, value = prop.strip().lower(), value.strip().lower()
    found = []
    if prop == "display":
        found.append(_DISPLAY.get(value.split()[0] if value else "", "css-display"))
    elif prop in _ALIASES:
        found.append(_ALIASES[prop])
    else:
        found.append(f"css-{prop}")
    found += [slug for rx, slug in _VALUE_FEATURES if rx.search(value)]
    return found


def _line_features(line: str, in_style: bool) -> list[str]:
    found: list[str] = []
    if in_style:
        if "@media" in line:
            found.append("css-at-media-prefers-color-scheme" if "prefers-color-scheme" in line else "css-at-media")
        for m in ("@import", "@font-face", "@supports", "@keyframes"):
            if m in line:
                found.append("css-at-" + m[1:])
        found += [f"css-pseudo-class-{p}" for p in _PSEUDO.findall(line.split("{")[0])]
        body = line.split("{", 1)[1] if "{" in line else line
        for prop, value in _DECL.findall(body):
            if not prop.startswith("-"):
                found += _declaration_features(prop, value)
        return found
    for style in _STYLE_ATTR.findall(line):
        for decl in style.split(";"):
            if ":" in decl:
                prop, value = decl.split(":", 1)
                found += _declaration_features(prop, value)
    for attrs in _MJ_TAG.findall(line):
        for name, value in _ATTR.findall(attrs):
            if name not in _NOT_CSS and f"css-{name}" in _data()["features"]:
                found += _declaration_features(name, value)
    for tag, rest in _HTML_TAG.findall(line):
        tag = tag.lower()
        if tag in _TAGS:
            found.append(f"html-{tag}")
        elif tag == "input":
            kind = re.search(r'type="?(\w+)', rest)
            found.append(f"html-input-{(kind.group(1) if kind else 'text').lower()}")
        elif tag == "button":
            found.append("html-button-submit")
    found += [f"image-{ext.lower().replace('tif', 'tiff').replace('tifff', 'tiff')}" for ext in _IMG_SRC.findall(line)]
    return found


def check_text(text: str, name: str) -> list[CompatIssue]:
    """The unsupported features of one template's source, one issue per feature and line."""
    features = _data()["features"]
    issues: list[CompatIssue] = []
    in_style = False
    for number, line in enumerate(text.splitlines(), 1):
        opened = _STYLE_OPEN.search(line)
        if opened:
            in_style = True
            line = line[opened.end():]
        closes = bool(_STYLE_CLOSE.search(line))
        seen = set()
        for slug in _line_features(line, in_style):
            if slug in seen or slug not in features:
                continue
            seen.add(slug)
            clients = _unsupported(slug)
            if clients:
                f = features[slug]
                issues.append(CompatIssue(slug, f["title"], name, number, clients, slug in LAYOUT, f["url"]))
        if closes:
            in_style = False
    return issues


def check_templates(folder: str | Path) -> list[CompatIssue]:
    """Every unsupported feature in a template folder's MJML and HTML files, file by file."""
    folder = Path(folder)
    issues: list[CompatIssue] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".mjml", ".html", ".htm"} and path.is_file():
            issues += check_text(path.read_text(encoding="utf-8", errors="replace"), path.name)
    return issues


def layout_warnings(folder: str | Path) -> list[str]:
    """Warning lines for the features in a template folder that can break the layout in a major
    client (what ``compose`` prints); the preview shows the plainer-styling ones too."""
    folder = Path(folder)
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file())
    return list(_layout_warnings(str(folder), stamp))


@lru_cache(maxsize=16)
def _layout_warnings(folder: str, stamp: tuple) -> tuple[str, ...]:
    # ``stamp`` (names and modification times) keys the cache: an edited template is checked again.
    return tuple(f"email clients: {i.message()}" for i in check_templates(folder) if i.layout)
