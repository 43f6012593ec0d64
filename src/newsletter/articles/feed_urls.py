"""Links as feeds write them (relative, protocol-relative, sometimes broken), made absolute and
checked, for every feed format: an entry's link, its images, a JSON Feed's home page."""

from __future__ import annotations

import urllib.parse
from typing import Any, TypeGuard


def absolute_url(url: Any, base: str | None) -> str | None:
    """``url`` resolved against ``base`` (``//host`` taken as https); None for a missing or unparsable URL."""
    if not url or not isinstance(url, str):
        return None
    url = url.strip()
    if url.startswith("//"):
        return "https:" + url
    try:
        if base and not urllib.parse.urlsplit(url).scheme:
            return urllib.parse.urljoin(base, url)
    except ValueError:  # "http://[" and similar: not a usable URL
        return None
    return url


def is_http_url(url: str | None) -> TypeGuard[str]:
    """True for an http(s) URL with a host: the only links an article or its picture may have."""
    if not url:
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        return False
