"""Which article a link names: the canonical form of a URL, shared by dedupe, ``Article.key``
and the "already sent" check, so a link with tracking parameters is the same article as without."""

from __future__ import annotations

import urllib.parse

_TRACKING = frozenset({"fbclid", "gclid", "mc_cid", "mc_eid"})


def canonical_url(url: str) -> str:
    """The form of a URL used to spot duplicates: lower-case scheme and host without ``www.``,
    no fragment, no tracking parameters (utm_*, fbclid, gclid, mc_cid, mc_eid), no trailing slash."""
    try:
        p = urllib.parse.urlsplit(url.strip())
        port = p.port
    except ValueError:  # unreadable (an out-of-range port, a broken IPv6 literal): compared as written
        return url
    host = (p.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if port and not ((p.scheme == "http" and port == 80) or (p.scheme == "https" and port == 443)):
        host += f":{port}"
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(p.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in _TRACKING
    ]
    path = p.path.rstrip("/") or "/"
    scheme = "https" if p.scheme.lower() in {"http", "https"} else p.scheme.lower()
    return urllib.parse.urlunsplit((scheme, host, path, urllib.parse.urlencode(query), ""))


def comparable_key(key: str) -> str:
    """An article key as the "already sent" check compares it: an http(s) URL in canonical form,
    anything else (a feed's guid) as it is.

    Keys stored before ``Article.key`` was canonical hold raw URLs (``…?utm_source=x``); putting
    both the stored key and the new one through this makes them meet."""
    if key.strip().lower().startswith(("http://", "https://")):
        return canonical_url(key)
    return key
