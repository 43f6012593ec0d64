"""Which local files an article may name as its image.

Compose reads a local image (to make the card's thumbnail, or a CID part) whenever an
article's ``image.url`` is a path, so a path in article data is a file read. The rules,
applied once per source when it is loaded:

- an article from a remote source (fetched over http(s), or named by a list of URLs) never
  names a local file: its image must be an http(s) URL, or it has none;
- an article from a local source may name files inside that source's folder tree (the
  directory given, or the folder of the file given), resolved with symlinks followed, or
  inside a folder listed in ``local_image_dirs``;
- a path holding a NUL byte or other control character makes the article bad (skipped with
  a warning, an error with ``--strict``); any other refused image only leaves the card
  without a picture, with a warning.

What is kept is the absolute, resolved path, so compose does not resolve it again.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Callable

from ..errors import SourceError
from .model import Article

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")


def is_web_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def allowed_roots(root: Path | None, extra_dirs: list[str] | None) -> list[Path]:
    """The folders local images may come from: the source's tree and ``local_image_dirs``."""
    roots = [root.resolve()] if root is not None else []
    for d in extra_dirs or []:
        if d.strip():
            roots.append(Path(d.strip()).expanduser().resolve())
    return roots


def local_image_path(url: str, article_source: str, roots: list[Path]) -> Path:
    """The resolved local file ``url`` names for an article read from ``article_source``;
    raises ValueError saying why it is refused (a remote source, outside every allowed root,
    not a path)."""
    if _CONTROL.search(url):
        raise ValueError("a control character (NUL, newline...) in the path")
    if is_web_url(article_source) or not roots:
        raise ValueError("an article from a remote source cannot name a local file")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise ValueError(f"not a path or URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("a file:// URL on another host")
        raw = urllib.parse.unquote(parts.path)
    elif scheme and not (os.name == "nt" and _WINDOWS_DRIVE.match(url)):
        raise ValueError(f"a {scheme}: URL is neither a local path nor http(s)")
    else:
        raw = url
    if "\x00" in raw:
        raise ValueError("a NUL byte in the path")
    try:
        p = Path(raw).expanduser()
        if not p.is_absolute():
            src = Path(article_source)
            base = src if src.is_dir() else src.parent
            p = base / p
        resolved = p.resolve()
    except (OSError, RuntimeError) as e:  # "~nobody/x.png", a symlink loop
        raise ValueError(f"cannot be resolved ({e})") from None
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise ValueError("outside the source's folder (list its folder in local_image_dirs to allow it)")
    return resolved


def confine_images(
    articles: list[Article],
    root: Path | None,
    extra_dirs: list[str] | None,
    warn: Callable,
) -> list[Article]:
    """Apply the rules above to every article of one source (``root`` None: a remote source).
    Returns the articles kept; a bad one is passed to ``warn`` as a SourceError."""
    roots = allowed_roots(root, extra_dirs)
    kept: list[Article] = []
    for a in articles:
        image = a.image
        url = (image.url or "").strip() if image is not None else ""
        if image is None or not url or is_web_url(url):
            kept.append(a)
            continue
        name = a.source or a.url
        try:
            image.url = str(local_image_path(url, a.source or "", roots if root is not None else []))
        except ValueError as e:
            if "control character" in str(e) or "NUL" in str(e):
                warn(SourceError(name, f"image {url[:80]!r}: {e}"))
                continue
            warn(f"{name}: image {url[:80]!r} not used: {e}; card shown without it")
            a.image = None
        kept.append(a)
    return kept
