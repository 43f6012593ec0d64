"""Who made a hit on a tracking URL: a person, Apple Mail Privacy Protection, a mail provider's
image proxy, or a link scanner — decided from the request and the copy's recent history.

Rules, first match wins (``why`` names the rule, stored with the event):

1. ``canary`` — a click on the hidden canary link (no person can see it), and any other click
   of the same copy within :data:`CANARY_WINDOW` of one: a machine following every link.
2. ``user-agent`` — a client that says it is a program or a security product (curl, python,
   Go, Java, "bot", "scan", headless browsers, Barracuda, Proofpoint, Mimecast, Microsoft's
   link preview, ...), or none at all: ``scanner``.
3. ``image-proxy`` — Gmail's ``GoogleImageProxy`` / Yahoo's ``YahooMailProxy`` fetching the
   pixel: ``proxy`` (usually a person opening the email, but the client is the provider).
4. ``apple-mpp`` — an open whose client is exactly ``Mozilla/5.0`` (Mail Privacy Protection's
   pre-fetch) or comes from Apple's 17.0.0.0/8: ``apple-mpp``; such "opens" say nothing.
5. ``too-soon`` — a click within ``scanner_seconds`` (default 10) of the copy being accepted:
   faster than a person reads.
6. ``burst`` — the copy's clicks reaching :data:`BURST_LINKS` distinct links within
   :data:`BURST_WINDOW`: every click in the burst is a scanner's.
7. otherwise ``human``.

Limits: a scanner that waits, runs a real browser with a person-like client string, clicks one
link and comes from a residential address is counted as a person; a person who opens in Gmail
is counted as ``proxy``; Apple's relays change over time (the client-string rule catches most).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Agent(StrEnum):
    """Who made a hit."""

    HUMAN = "human"
    APPLE_MPP = "apple-mpp"
    PROXY = "proxy"
    SCANNER = "scanner"


CANARY_WINDOW = timedelta(seconds=30)
BURST_WINDOW = timedelta(seconds=3)
BURST_LINKS = 3

_SCANNER_UA = re.compile(
    r"bot\b|bot/|crawl|spider|scan|slurp|preview|curl/|wget/|python|go-http-client|java/|okhttp|libwww|"
    r"httpclient|http_request|axios/|node-fetch|headless|phantomjs|electron/|barracuda|proofpoint|mimecast|"
    r"symantec|messagelabs|trend ?micro|forcepoint|fortiguard|ironport|cisco|sophos|zscaler|paloalto|"
    r"microsoft office|ms-office|msoffice|skypeuripreview|outlook-ios|safelinks|appengine-google",
    re.IGNORECASE)
_PROXY_UA = re.compile(r"googleimageproxy|ggpht\.com|yahoomailproxy|yahoo mail proxy", re.IGNORECASE)
_APPLE_NET = ipaddress.ip_network("17.0.0.0/8")
_GOOGLE_NETS = tuple(ipaddress.ip_network(n) for n in ("66.249.64.0/19", "64.233.160.0/19", "74.125.0.0/16"))


@dataclass(frozen=True)
class Hit:
    """One request for a tracking URL, as the web app saw it."""

    kind: str  # "open" | "click"
    campaign_id: int
    subscriber_id: int
    link: int | None  # clicks: the link index (0 = the canary)
    at: datetime
    user_agent: str = ""
    ip: str = ""


def ip_class(ip: str) -> str:
    """A coarse label kept instead of the address: loopback, private, apple, google, ipv4, ipv6."""
    try:
        addr = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return ""
    if addr.is_loopback:
        return "loopback"
    if addr.is_private or addr.is_link_local:
        return "private"
    if addr.version == 4 and addr in _APPLE_NET:
        return "apple"
    if addr.version == 4 and any(addr in n for n in _GOOGLE_NETS):
        return "google"
    return f"ipv{addr.version}"


def by_request(hit: Hit) -> tuple[Agent, str] | None:
    """Rules 1-4 (what the request alone tells), or None when it looks like a person's."""
    if hit.kind == "click" and hit.link == 0:
        return Agent.SCANNER, "canary"
    ua = (hit.user_agent or "").strip()
    if hit.kind == "open" and _PROXY_UA.search(ua):
        return Agent.PROXY, "image-proxy"
    if not ua or _SCANNER_UA.search(ua):
        return Agent.SCANNER, "user-agent"
    if hit.kind == "open" and (ua == "Mozilla/5.0" or ip_class(hit.ip) == "apple"):
        return Agent.APPLE_MPP, "apple-mpp"
    return None


def classify(hit: Hit, *, sent_at: datetime | None, scanner_seconds: float,
             recent: list[tuple[datetime, str, int | None]]) -> tuple[Agent, str]:
    """The agent of ``hit`` and the rule that decided. ``recent`` holds the same copy's earlier
    hits as (time, kind, link) — a canary or a burst among them marks this click a scanner's."""
    decided = by_request(hit)
    if decided is not None:
        return decided
    if hit.kind != "click":
        return Agent.HUMAN, ""
    if any(k == "click" and link == 0 and abs(hit.at - t) <= CANARY_WINDOW for t, k, link in recent):
        return Agent.SCANNER, "canary"
    if sent_at is not None and timedelta(0) <= hit.at - sent_at <= timedelta(seconds=scanner_seconds):
        return Agent.SCANNER, "too-soon"
    links = {link for t, k, link in recent if k == "click" and hit.at - t <= BURST_WINDOW}
    links.add(hit.link)
    if len(links) >= BURST_LINKS:
        return Agent.SCANNER, "burst"
    return Agent.HUMAN, ""
