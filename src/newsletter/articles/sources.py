"""Source arguments (directories, files, URLs) → articles, with the kind detected from content.

Kinds: a Markdown file (front matter or ``.md``), an RSS/Atom/RDF feed (root element) or a
JSON Feed, an HTML page (handed to ``pages.parse_page``), and a text file listing URLs one a
line (``#`` comments). The file extension is only a tie-breaker: a feed saved as ``.txt`` or a
page served as ``text/plain`` is still recognised.
"""

from __future__ import annotations

import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ..config import Config
from ..errors import NewsletterError, SourceError
from . import fetch as fetching
from . import budget, feeds, json_feed, markdown
from .localfiles import confine_images
from .model import Article
from .text import skip_prolog, slugify

MARKDOWN, FEED, HTML, URL_LIST = "markdown", "feed", "html", "url-list"
# Files in a source directory that are assets, not articles: skipped silently.
_ASSET_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".svg", ".bmp", ".ico", ".tif", ".tiff",
    ".css", ".js", ".pdf", ".mp3", ".mp4", ".webm", ".mov", ".zip", ".gz", ".toml", ".yaml", ".yml",
}
_FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_ROOT = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_URL_LINE = re.compile(r"^https?://\S+$", re.IGNORECASE)
FETCH_WORKERS = 4
_NOT_A_SOURCE = "not a recognised source"

class IgnoredFile(SourceError):
    """A file beside the articles that is not one (a README, a binary, a FIFO): noted and skipped,
    even with ``--strict``, since it is not a bad article."""

    ignored = True


# Called with a plain string for a note (a recovered feed) or with the SourceError of an item
# that is being skipped (which ``--strict`` turns into a failure).
Warn = Callable[["str | SourceError"], None]


def detect_kind(content: bytes, name: str = "", content_type: str | None = None) -> str | None:
    """Which parser fits: MARKDOWN, FEED, HTML, URL_LIST, or None when nothing does."""
    head = content[:4096]
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if head.startswith(bom):
            if bom != b"\xef\xbb\xbf":
                head = content[:8192].decode("utf-16", errors="ignore").encode("utf-8")
            else:
                head = head[len(bom):]
            break
    suffix = Path(name.split("?")[0]).suffix.lower()
    ctype = (content_type or "").lower()
    if b"\x00" in head[:1024]:
        return None
    if json_feed.is_json_feed(head):
        return FEED
    stripped = head.lstrip()
    if re.match(rb"---[ \t]*\r?\n", stripped):
        return MARKDOWN
    if stripped.startswith(b"<"):
        rest = stripped[skip_prolog(stripped):]
        m = _ROOT.match(rest)
        root = m.group(1).decode("ascii", "ignore").lower() if m else ""
        local = root.split(":")[-1]
        if local in {"rss", "feed", "rdf", "channel"}:
            return FEED
        if local in {"html", "head", "body", "meta", "title", "div", "article", "p", "link", "script", "main"}:
            return HTML
        if re.search(rb"<!DOCTYPE\s+html", head, re.IGNORECASE):
            return HTML
        if "xml" in ctype or suffix in _FEED_SUFFIXES or rest.startswith(b"<") and b"<?xml" in head[:100]:
            return FEED  # an XML document: let the feed parser say whether it is one
        if "html" in ctype or suffix in _HTML_SUFFIXES:
            return HTML
    if suffix in markdown.MARKDOWN_SUFFIXES or "markdown" in ctype:
        return MARKDOWN
    try:
        text = content[:65536].decode("utf-8-sig")
    except UnicodeDecodeError:
        text = ""
    lines = [l.split(" #", 1)[0].strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    if lines and all(_URL_LINE.match(l) for l in lines):
        return URL_LIST
    if "html" in ctype or suffix in _HTML_SUFFIXES:
        return HTML
    if "rss" in ctype or "atom" in ctype or suffix in _FEED_SUFFIXES:
        return FEED
    if text and re.match(r"\s*#\s+\S", text) and not _url_list_bad_line(content):
        # A Markdown file without front matter, starting with a heading (not a URL list's "# comment").
        return MARKDOWN
    return None


def load_source(source: str, config: Config, warn: Warn, *, nested: bool = False) -> list[Article]:
    """All articles from one source argument; a source that fails outright raises SourceError.

    Per-item problems inside the source (one bad file in a directory, one bad entry in a
    feed, one dead URL in a list) are passed to ``warn`` as SourceErrors, so the caller
    decides whether to skip or stop (``--strict``); notes are passed as plain strings.
    """
    source = source.strip() if isinstance(source, str) else str(source)
    if fetching.is_url(source):
        got = fetching.fetch(
            source,
            timeout=config.fetch_timeout,
            max_bytes=config.fetch_max_bytes,
            user_agent_string=fetching.user_agent(config.site_url),
            accept="application/rss+xml, application/atom+xml, application/xml;q=0.9, text/html;q=0.9, */*;q=0.5",
            policy=fetching.FetchPolicy.from_config(config),
        )
        articles = parse_content(got.content, source, config, warn, base_url=got.final_url,
                                 content_type=got.content_type, charset=got.charset, nested=nested)
        return confine_images(articles, None, config.local_image_dirs, warn)  # remote: never a local file
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", source):
        raise SourceError(source, "only http:// and https:// URLs are supported")
    path = Path(source).expanduser()
    if path.is_dir():
        return confine_images(_load_directory(path, config, warn), path, config.local_image_dirs, warn)
    if not path.exists():
        if re.match(r"^(?:www\.)?[\w-]+(?:\.[\w-]+)+(?:/|$)", source) and not source.endswith((".md", ".xml", ".txt", ".html")):
            raise SourceError(source, "no such file or directory (for a web address, start it with https://)")
        raise SourceError(source, "no such file or directory")
    # Local images stay inside the folder of the file given (or local_image_dirs).
    return confine_images(_load_file(path, config, warn, nested=nested), path.parent, config.local_image_dirs, warn)


def _special_kind(path: Path) -> str | None:
    """What a non-regular file is ("a named pipe", "a socket", ...), or None for a regular file.
    Only regular files are opened: reading a FIFO or a device would block forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # let the read report it
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def _read(path: Path, config: Config) -> bytes:
    special = _special_kind(path)
    if special:
        raise SourceError(str(path), f"not a regular file ({special}); only regular files are read")
    try:
        size = path.stat().st_size
        if size > config.fetch_max_bytes:
            raise SourceError(str(path), f"too large: {size} bytes (limit {config.fetch_max_bytes})")
        return path.read_bytes()
    except SourceError:
        raise
    except OSError as e:
        raise SourceError(str(path), f"cannot read: {e.strerror or e}") from None


def _load_file(path: Path, config: Config, warn: Warn, *, nested: bool = False) -> list[Article]:
    content = _read(path, config)
    if not content.strip():
        raise SourceError(str(path), "empty file")
    return parse_content(content, str(path), config, warn, nested=nested, path=path)


def parse_content(
    content: bytes,
    source: str,
    config: Config,
    warn: Warn,
    *,
    base_url: str | None = None,
    content_type: str | None = None,
    charset: str | None = None,
    nested: bool = False,
    path: Path | None = None,
) -> list[Article]:
    """Detect what ``content`` is and parse it. ``source`` names it in errors and in ``Article.source``.

    Whatever a parser raises on hostile input (a ValueError deep in a library) becomes a
    SourceError naming the source, so one bad file is skipped like any other bad article."""
    try:
        with budget.reading(source, getattr(config, "source_time_budget", None)):
            return _parse_content(content, source, config, warn, base_url=base_url, content_type=content_type,
                                  charset=charset, nested=nested, path=path)
    except (NewsletterError, MemoryError):  # SourceError, and ConfigError (a bad site_url) stays one
        raise
    except Exception as e:  # noqa: BLE001 - untrusted input must never abort the whole load
        raise SourceError(source, f"unexpected failure while reading it ({type(e).__name__}: {e})") from e


def _parse_content(content, source, config, warn, *, base_url, content_type, charset, nested, path) -> list[Article]:
    if not content.strip():
        raise SourceError(source, "empty document")
    kind = detect_kind(content, source, content_type)
    if kind == MARKDOWN:
        text = markdown.decode_text(content, source)
        if path is not None:
            return [markdown.parse_markdown(text, path, config, warn)]
        return [markdown.parse_markdown(text, Path(source), config, warn, base_url=base_url or source)]
    if kind == FEED and json_feed.is_json_feed(content):
        return json_feed.parse_json_feed(content, source, config, base_url=base_url, warn=warn)
    if kind == FEED:
        return feeds.parse_feed(content, source, config, base_url=base_url, charset=charset, content_type=content_type, warn=warn)
    if kind == HTML:
        return [_parse_page(content, source, base_url or source, charset, config, warn, path)]
    if kind == URL_LIST:
        if nested:
            raise SourceError(source, "a list of URLs cannot itself come from a list of URLs")
        return _load_url_list(content, source, config, warn)
    if b"\x00" in content[:1024]:
        raise SourceError(source, f"{_NOT_A_SOURCE}: a binary file")
    bad_line = _url_list_bad_line(content)
    if bad_line:
        raise SourceError(source, bad_line)
    raise SourceError(source, f"{_NOT_A_SOURCE} (expected Markdown, an RSS/Atom/RDF/JSON feed, an HTML page or a list of URLs)")


def _url_list_bad_line(content: bytes) -> str | None:
    """For a text that is mostly a list of URLs (at least half of its lines) but not only: which
    line is wrong, so the user can fix it, instead of "not a recognised source"."""
    try:
        text = content[:65536].decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = [(n, l.split(" #", 1)[0].strip()) for n, l in enumerate(text.splitlines(), start=1)]
    lines = [(n, l) for n, l in lines if l and not l.startswith("#")]
    bad = [(n, l) for n, l in lines if not _URL_LINE.match(l)]
    if not bad or len(bad) * 2 > len(lines):
        return None
    n, line = bad[0]
    more = f" (and {len(bad) - 1} more line(s))" if len(bad) > 1 else ""
    return (f"{_NOT_A_SOURCE}: a list of URLs, but line {n} ({line[:60]!r}) is not an http(s) URL{more}; "
            "write one URL a line, # starts a comment")


def _parse_page(content: bytes, source: str, url: str, charset: str | None, config: Config, warn: Warn,
                path: Path | None) -> Article:
    try:
        from . import pages
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("articles.pages"):
            raise SourceError(source, "HTML pages are not supported yet") from None
        raise
    article = pages.parse_page(content, url, charset=charset, warn=warn)
    if not article.source:
        article.source = source
    if not fetching.is_url(article.url or ""):
        if path is None:
            raise SourceError(source, "no canonical URL; add <link rel=canonical> or serve it")
        # A local page that names no public address of its own is the publisher's, like a Markdown
        # file without `url:`: it links to site_url + its slug, and the user is told so.
        slug = slugify(path.stem) or slugify(article.title)
        article.url = f"{markdown.site_base_url(config)}/{slug}"
        warn(f"{source}: no canonical URL (<link rel=canonical> or og:url); linking to {article.url} "
             "(site_url + file name)")
    return article


def _load_directory(path: Path, config: Config, warn: Warn) -> list[Article]:
    """Every article file under ``path`` (recursively, hidden entries and assets skipped); a bad file is
    reported through ``warn`` and skipped; a directory with no article at all is an error."""
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for n in sorted(names):
            p = Path(root) / n
            if n.startswith(".") or p.suffix.lower() in _ASSET_SUFFIXES:
                continue
            special = _special_kind(p)
            if special:
                warn(IgnoredFile(str(p), f"not a regular file ({special})"))
                continue
            if p.suffix.lower() == ".json" and not _is_json_feed_file(p):
                continue  # data files beside the articles; only JSON Feeds are sources
            files.append(p)
    articles: list[Article] = []
    failures: list[SourceError] = []
    for p in files:
        try:
            articles.extend(_load_file(p, config, warn, nested=False))
        except SourceError as e:
            if e.problem.startswith(_NOT_A_SOURCE):
                # A stray README, notes file or binary beside the articles: say so, but it is not a bad article.
                warn(IgnoredFile(e.source, e.problem))
                continue
            failures.append(e)
            warn(e)
    if not articles:
        if failures:
            raise SourceError(str(path), f"no article could be read ({len(failures)} file(s) failed; first: {failures[0]})")
        raise SourceError(str(path), "no article files in this directory")
    return articles


def _is_json_feed_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return json_feed.is_json_feed(f.read(4096))
    except OSError:
        return True  # let the normal read report the problem


def _load_url_list(content: bytes, source: str, config: Config, warn: Warn) -> list[Article]:
    """Fetch every URL a list names (a few at a time); a dead URL is warned about and skipped."""
    text = content.decode("utf-8-sig", errors="replace")
    urls: list[str] = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and line not in urls:
            urls.append(line)
    if not urls:
        raise SourceError(source, "the list of URLs is empty")
    notes: list[list[str | SourceError]] = [[] for _ in urls]

    def one(i: int) -> list[Article] | SourceError:
        try:
            return load_source(urls[i], config, notes[i].append, nested=True)
        except SourceError as e:
            return e

    with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(urls))) as pool:
        results = list(pool.map(one, range(len(urls))))
    articles: list[Article] = []
    failures: list[SourceError] = []
    for i, r in enumerate(results):
        for n in notes[i]:
            warn(n)
        if isinstance(r, SourceError):
            failures.append(r)
            warn(SourceError(source, str(r)))
        else:
            articles.extend(r)
    if not articles and failures:
        raise SourceError(source, f"none of its {len(urls)} URL(s) could be read; first: {failures[0]}")
    return articles
