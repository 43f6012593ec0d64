"""YouTube and Vimeo links → ``Video`` entries (id, canonical URL, thumbnail).

Email clients cannot play video, so a video becomes a card: a thumbnail with a play
affordance linking to the canonical watch URL. YouTube thumbnails come from
``i.ytimg.com``; Vimeo has no thumbnail URL derivable from the id, so ``parse_video_url``
leaves it None and ``add_vimeo_thumbnails`` (run once by ``load_sources`` after parsing)
asks Vimeo's oEmbed endpoint for the videos no source gave a picture for.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import OrderedDict

from .model import Video

_YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YT_HOSTS = {"youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com", "gaming.youtube.com"}
_VIMEO_HOSTS = {"vimeo.com", "player.vimeo.com"}
# Bare URLs in text (stops at whitespace, quotes and angle brackets).
_PROVIDER_HINT = re.compile(r"youtu|vimeo", re.IGNORECASE)  # cheap pre-check before scanning every URL
URL_RE = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)


def youtube_thumbnail(video_id: str) -> str:
    """YouTube's 480×360 thumbnail, which exists for every public video."""
    return f"https://i.ytimg.com/vi/{video_id}/hqdefault.jpg"


def parse_video_url(url: str, title: str | None = None) -> Video | None:
    """A ``Video`` when ``url`` is a YouTube (watch, youtu.be, embed, shorts, live, v) or Vimeo
    link, else None. Query parameters other than the id are dropped from the canonical URL,
    except a start time ``t``."""
    if not url:
        return None
    url = url.strip().rstrip(".,;")
    if url.startswith("//"):
        url = "https:" + url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"}:
        return None
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    query = urllib.parse.parse_qs(parts.query)
    segments = [s for s in parts.path.split("/") if s]

    if host in _YT_HOSTS or host == "youtu.be":
        vid = None
        if host == "youtu.be":
            vid = segments[0] if segments else None
        elif segments[:1] == ["watch"] or not segments:
            vid = next(iter(query.get("v") or []), None)
        elif len(segments) >= 2 and segments[0] in {"embed", "shorts", "v", "live", "e"}:
            vid = segments[1]
        if not vid or not _YT_ID.match(vid):
            return None
        canonical = f"https://www.youtube.com/watch?v={vid}"
        start = next(iter(query.get("t") or query.get("start") or []), None)
        if start and re.fullmatch(r"\d+s?|(\d+h)?(\d+m)?(\d+s)?", start):
            canonical += f"&t={start}"
        return Video(url=canonical, provider="youtube", id=vid, thumbnail_url=youtube_thumbnail(vid), title=title)

    if host in _VIMEO_HOSTS:
        vid = None
        if host == "player.vimeo.com" and len(segments) >= 2 and segments[0] == "video":
            vid = segments[1]
        elif segments:
            # vimeo.com/123, vimeo.com/channels/x/123, vimeo.com/groups/x/videos/123, vimeo.com/123/abcdef (unlisted hash)
            numeric = [s for s in segments if s.isdigit()]
            vid = numeric[0] if numeric else None
        if not vid or not vid.isdigit():
            return None
        return Video(url=f"https://vimeo.com/{vid}", provider="vimeo", id=vid, thumbnail_url=None, title=title)
    return None


def find_videos(html_or_text: str | None) -> list[Video]:
    """Every distinct YouTube/Vimeo video linked or embedded in ``html_or_text`` (href, src, bare URLs),
    in order of first appearance."""
    if not html_or_text or not _PROVIDER_HINT.search(html_or_text):
        return []
    found: list[Video] = []
    seen: set[tuple[str, str]] = set()
    candidates = re.findall(r"""(?:href|src|data-src)\s*=\s*["']?([^"'\s>]+)""", html_or_text, re.IGNORECASE)
    candidates += URL_RE.findall(html_or_text)
    # Keep document order: sort candidate URLs by their first position in the text.
    candidates.sort(key=lambda u: html_or_text.find(u))
    for url in candidates:
        video = parse_video_url(url.replace("&amp;", "&"))
        if video and (video.provider, video.id) not in seen:
            seen.add((video.provider, video.id))
            found.append(video)
    return found


def add_video(videos: list[Video], video: Video) -> None:
    """Append ``video`` unless the same provider/id is already there (then fill in a missing title/thumbnail)."""
    for v in videos:
        if (v.provider, v.id) == (video.provider, video.id):
            v.title = v.title or video.title
            v.thumbnail_url = v.thumbnail_url or video.thumbnail_url
            return
    videos.append(video)


_LEAD_IN = re.compile(r"\b(video|watch|clip)\b", re.IGNORECASE)


def split_trailing_video(paragraphs: list[str]) -> tuple[list[str], Video | None]:
    """Recognise a trailing "watch this video" block in plain-text paragraphs and lift it out.

    The shape (as in many CMS exports): an optional short lead-in mentioning a video
    ("BELOW IS A VIDEO FROM SKY NEWS"), an optional short title line, then the video URL
    alone as the last paragraph. Returns the remaining paragraphs and the Video (with the
    title line as its title), or the paragraphs unchanged and None.
    """
    paras = list(paragraphs)
    while paras and not paras[-1].strip():
        paras.pop()
    if not paras:
        return paragraphs, None
    last = paras[-1].strip()
    if not re.fullmatch(URL_RE.pattern, last, re.IGNORECASE):
        return paragraphs, None
    video = parse_video_url(last)
    if video is None:
        return paragraphs, None
    paras.pop()
    title = None

    def lead_in(text: str) -> bool:
        return _is_short_line(text) and bool(_LEAD_IN.search(text))

    if paras and lead_in(paras[-1]):
        lead = paras.pop().strip()
        title = None if lead.isupper() else lead.rstrip(":")
    elif len(paras) >= 2 and _is_short_line(paras[-1]) and lead_in(paras[-2]):
        title = paras.pop().strip()
        paras.pop()
    elif paras and _is_short_line(paras[-1]) and len(paras[-1].strip()) <= 120 and not paras[-1].strip().endswith((".", "!", "?", ":")):
        title = paras.pop().strip()
    video.title = title
    return paras, video


def _is_short_line(text: str) -> bool:
    text = text.strip()
    return 0 < len(text) <= 160 and "\n" not in text


OEMBED_WORKERS = 4  # lookups in flight at once: a few, to be polite and bound a load full of videos
OEMBED_TTL = 24 * 3600  # seconds a successful lookup is reused by this process (worker, web preview)
_OEMBED_CACHE_MAX = 1024
# (endpoint, video URL) → (when looked up, thumbnail URL, title); failures are not kept.
_oembed_cache: OrderedDict[tuple[str, str], tuple[float, str, str | None]] = OrderedDict()
_oembed_lock = threading.Lock()


def add_vimeo_thumbnails(articles: list, config) -> list[str]:
    """Fill ``thumbnail_url`` (and a missing title) of every Vimeo video without one from
    ``config.vimeo_oembed_url``; returns one warning line per video whose lookup failed.

    Each video URL is asked about once, however many articles link it, with the usual fetch
    limits (timeout, size cap, User-Agent), a few at a time. A failure never fails the load:
    the video keeps no thumbnail and its card is drawn without a picture. An empty
    ``vimeo_oembed_url`` turns the lookup off (no network calls). A successful answer is
    reused by this process for ``OEMBED_TTL`` (a day), so a long-running worker or web preview
    does not ask again on every compose.
    """
    endpoint = (getattr(config, "vimeo_oembed_url", "") or "").strip()
    if not endpoint:
        return []
    wanted: dict[str, list[Video]] = {}
    for article in articles:
        for v in article.videos:
            if v.provider == "vimeo" and not v.thumbnail_url and v.url:
                wanted.setdefault(v.url, []).append(v)
    if not wanted:
        return []

    from concurrent.futures import ThreadPoolExecutor

    def look_up(video_url: str) -> tuple[str | None, str | None, str | None]:
        key = (endpoint, video_url)
        with _oembed_lock:
            hit = _oembed_cache.get(key)
        if hit and time.monotonic() - hit[0] < OEMBED_TTL:
            return hit[1], hit[2], None
        try:
            thumb, title = _vimeo_oembed(endpoint, video_url, config)
        except _LookupFailed as e:
            return None, None, str(e)
        with _oembed_lock:
            _oembed_cache[key] = (time.monotonic(), thumb, title)
            _oembed_cache.move_to_end(key)
            while len(_oembed_cache) > _OEMBED_CACHE_MAX:
                _oembed_cache.popitem(last=False)
        return thumb, title, None

    urls = list(wanted)
    with ThreadPoolExecutor(max_workers=min(OEMBED_WORKERS, len(urls))) as pool:
        answers = list(pool.map(look_up, urls))
    warnings: list[str] = []
    for video_url, (thumb, title, problem) in zip(urls, answers):
        if problem:
            warnings.append(f"{video_url}: no Vimeo thumbnail ({problem}); the video card has no picture")
            continue
        for v in wanted[video_url]:
            v.thumbnail_url = thumb
            if not v.title and title:
                v.title = title
    return warnings


class _LookupFailed(Exception):
    """Why one oEmbed lookup gave no thumbnail (becomes a warning, never an error)."""


def _vimeo_oembed(endpoint: str, video_url: str, config) -> tuple[str, str | None]:
    """(thumbnail URL, title) from the oEmbed endpoint for ``video_url``; raises _LookupFailed."""
    import json

    from ..errors import SourceError
    from . import fetch as fetching

    sep = "&" if "?" in endpoint else "?"
    url = f"{endpoint}{sep}{urllib.parse.urlencode({'url': video_url})}"
    try:
        got = fetching.fetch(
            url,
            timeout=config.fetch_timeout,
            max_bytes=min(config.fetch_max_bytes, 1024 * 1024),  # an oEmbed answer is a few hundred bytes
            user_agent_string=fetching.user_agent(config.site_url),
            accept="application/json",
            policy=fetching.FetchPolicy.from_config(config),
        )
    except SourceError as e:
        raise _LookupFailed(f"oEmbed {e.problem}") from None
    try:
        data = json.loads(got.content.decode(got.charset or "utf-8"))
    except (UnicodeDecodeError, LookupError, ValueError):
        raise _LookupFailed("oEmbed answer is not JSON") from None
    if not isinstance(data, dict):
        raise _LookupFailed("oEmbed answer is not a JSON object")
    thumb = data.get("thumbnail_url")
    if not isinstance(thumb, str) or not thumb.strip():
        raise _LookupFailed("oEmbed answer has no thumbnail_url")
    thumb = thumb.strip()
    try:
        parts = urllib.parse.urlsplit(thumb)
        ok = parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c in thumb for c in "\r\n\t "):
        raise _LookupFailed(f"oEmbed thumbnail_url {thumb[:80]!r} is not an http(s) URL")
    title = data.get("title")
    title = " ".join(title.split())[:300] if isinstance(title, str) and title.strip() else None
    return thumb, title
