"""Markdown files with YAML front matter → ``Article``.

Front matter fields: title, date, authors (or author; a list or "A, B"), category, tags,
image (path or URL, or a mapping with url/alt), image_alt, summary (or description/excerpt),
video (one URL or a list), url, slug, lang, dir, site_name, read_time, id/guid.
Without ``url`` the link is ``config.site_url`` + the slug (front matter ``slug``, else the
file name without a leading ``YYYY-MM-DD-``). A local image path is resolved against the
file's folder and kept as an absolute local path, for compose to turn into a thumbnail.

Text fields (title, authors, category, tags, summary, image_alt, site_name) are plain text:
HTML tags are stripped and entities decoded, as for feeds. A field of the wrong shape (a list
where text is expected, ``dir: sideways``, ``read_time: lots``) is an error naming the file and
the field. A YAML number as ``date`` is never a Unix timestamp: exactly eight digits
(``20261122``) are read as YYYYMMDD, any other number is an error.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Callable

import frontmatter
import yaml
from markdown_it import MarkdownIt

from ..config import Config
from ..errors import ConfigError, SourceError
from . import budget, dates, readtime, sanitize, text, video
from .model import Article, Image, Video

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_FENCE = re.compile(r"\A(?:\ufeff)?---[ \t]*\r?\n")
_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})[-_ ]")
_H1 = re.compile(r"\A\s*#\s+(.+?)\s*#*\s*(?:\n|\Z)")
# [^\[\]]: a scan for the closing bracket stops at the next "[", so "![![![..." is linear.
_IMG_MD = re.compile(r"!\[([^\[\]]{0,1000})\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]{0,1000}\")?\s*\)")

# libyaml's safe loader when PyYAML was built with it (front matter parsing is the slow part), else the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable(["table", "strikethrough"])


# markdown-it's link-label scan is quadratic in the brackets of one paragraph ("![" x 20,000:
# 3 s, x 50,000: 20 s). No real paragraph holds this many; in one that does they are escaped.
MAX_BRACKETS_PER_BLOCK = 1000


def render_markdown(body: str) -> str:
    """Markdown → HTML (CommonMark plus tables and strikethrough; raw HTML is sanitized later)."""
    if body.count("[") > MAX_BRACKETS_PER_BLOCK:
        blocks = re.split(r"(\n[ \t]*\n)", body)
        body = "".join(b.replace("[", "\\[") if b.count("[") > MAX_BRACKETS_PER_BLOCK else b for b in blocks)
    return _md.render(body)


def site_base_url(config: Config) -> str:
    """``config.site_url`` without a trailing slash, checked: article links are built on it, so it
    must be an absolute http(s) URL (ConfigError naming ``site_url`` otherwise)."""
    raw = config.site_url or ""
    value = raw.strip()
    try:
        parts = urllib.parse.urlsplit(value)
        ok = parts.scheme.lower() in {"http", "https"} and bool(parts.hostname) and not any(c.isspace() for c in value)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"site_url: {raw!r} is not an absolute http(s) URL (set it to your site, e.g. https://news.example.org; "
            "Markdown articles without 'url:' link to site_url + slug)"
        )
    return value.rstrip("/")


def parse_markdown(
    content: str,
    path: str | Path,
    config: Config,
    warn: Callable[[str], None] | None = None,
    *,
    base_url: str | None = None,
) -> Article:
    """Build an Article from Markdown text read from ``path`` (used to name errors, resolve images and slug).

    ``base_url`` is set when the file was fetched over HTTP: relative image paths then resolve
    against it instead of the local file system."""
    name = str(base_url or path)
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(base_url).path.rsplit("/", 1)[-1] or "index")) if base_url else Path(path)
    meta, body = _split_front_matter(content, name)

    title = _text_field(meta, name, "title")
    if not title:
        m = _H1.match(body)
        if m:
            title = sanitize.clean_text(_md.renderInline(m.group(1)))  # "# Hello *world*" → "Hello world"
            body = body[m.end():]
    if not title:
        raise SourceError(name, "missing title (add 'title:' to the front matter or start with a '# Heading')")

    published = None
    date_key, raw_date = _first(meta, "date", "published")
    if raw_date is not None:
        published = _front_matter_date(raw_date, date_key, name, config)
    else:
        m = _DATE_PREFIX.match(path.stem)
        if m:
            try:
                published = dates.parse_date(m.group(1), config.timezone)
            except ValueError:
                published = None

    # A trailing "watch this video" block becomes a video card rather than body text.
    body, trailing_video = _lift_trailing_video(body)

    budget.check()
    html = render_markdown(body)
    budget.check()
    slug = meta.get("slug")
    slug = text.slugify(str(slug)) if slug else text.slugify(_DATE_PREFIX.sub("", path.stem)) or text.slugify(title)
    url = meta.get("url") or meta.get("link")
    if url is not None:
        url = str(url).strip()
        if urllib.parse.urlsplit(url).scheme.lower() not in {"http", "https"}:
            raise SourceError(name, f"front matter 'url' must be an http(s) URL, got {url!r}")
    else:
        url = site_base_url(config) + "/" + text.url_slug(slug)
    body_html = sanitize.sanitize_html(html, base_url=url)
    paragraphs = sanitize.html_paragraphs(_without_headings(html))

    summary = _text_field(meta, name, "summary", "description", "excerpt")
    summary = text.truncate_words(summary) if summary else text.truncate_words(text.first_paragraph(paragraphs))

    image = _image(meta, body, path, title, name, base_url)

    videos: list[Video] = []
    raw_videos = meta.get("video", meta.get("videos"))
    for item in raw_videos if isinstance(raw_videos, list) else ([raw_videos] if raw_videos else []):
        vurl, vtitle = (item.get("url"), item.get("title")) if isinstance(item, dict) else (item, None)
        v = video.parse_video_url(str(vurl or ""), vtitle)
        if v is None:
            raise SourceError(name, f"front matter 'video': {vurl!r} is not a YouTube or Vimeo link")
        video.add_video(videos, v)
    for v in video.find_videos(html):
        video.add_video(videos, v)
    if trailing_video:
        video.add_video(videos, trailing_video)

    lang = text.normalize_lang(_text_field(meta, name, "lang", "language") or None)
    direction = _text_field(meta, name, "dir").lower()
    if direction not in {"", "auto", "ltr", "rtl"}:
        raise SourceError(name, f"front matter 'dir' must be ltr, rtl or auto, got {meta['dir']!r}")
    if direction not in {"ltr", "rtl"}:
        direction = text.text_direction(lang, title + " " + " ".join(paragraphs[:3]))

    rt_key, raw_read_time = _first(meta, "read_time", "reading_time")
    read_time = readtime.parse_read_time(raw_read_time)
    if raw_read_time is not None and read_time is None:
        raise SourceError(name, f"front matter '{rt_key}' must be a number of minutes (5, \"5 min\"), got {raw_read_time!r}")
    if read_time is None:
        read_time = readtime.read_time_minutes(title + " " + " ".join(paragraphs))

    categories = _list_field(meta, name, "category", "categories")
    category = categories[0] if categories else None
    guid = _text_field(meta, name, "guid", "id")
    authors: list[str] = []
    for author in _list_field(meta, name, "authors", "author", names=True):
        for n in text.split_names(author):
            if n not in authors:
                authors.append(n)

    merge_tags = _merge_tags(meta, name, base_url, warn)
    return Article(
        title=title,
        url=url,
        authors=authors,
        published=published,
        category=category,
        tags=text.split_tags(_list_field(meta, name, "tags", "tag", comma_list=True)),
        summary=summary,
        body=body_html,
        image=image,
        videos=videos,
        read_time_minutes=read_time,
        lang=lang,
        dir=direction,
        site_name=_text_field(meta, name, "site_name") or None,
        source=name,
        guid=guid or None,
        merge_tags=merge_tags,
    )


def _merge_tags(meta: dict, name: str, base_url: str | None, warn: Callable[[str], None] | None) -> bool:
    """Front matter ``merge_tags: true`` lets a publisher's own local file use *|NAME|* & co;
    a file fetched over HTTP never may (its tags stay text), and says so in a warning."""
    value = meta.get("merge_tags")
    if value is None or value is False:
        return False
    if not isinstance(value, bool):
        raise SourceError(name, f"front matter 'merge_tags' must be true or false, got {_kind(value)}")
    if base_url is not None:
        if warn:
            warn(f"{name}: front matter 'merge_tags' is ignored: only local Markdown files may use merge tags")
        return False
    return True


def _first(meta: dict, *keys: str) -> tuple[str, object]:
    """(the first of ``keys`` present in the front matter, its value); (keys[0], None) when none is."""
    for k in keys:
        if meta.get(k) is not None:
            return k, meta[k]
    return keys[0], None


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", bool: "true/false"}.get(type(value), type(value).__name__)


def _plain(value: object) -> str:
    """Front matter text is plain text: tags stripped (``<b>x</b>`` → ``x``; write ``&lt;`` for a literal
    angle bracket pair), entities decoded, whitespace folded — the same as feed titles."""
    return sanitize.clean_text(str(value))


def _text_field(meta: dict, name: str, *keys: str) -> str:
    """A one-line plain-text field ("" when absent); a list, mapping, date or true/false is an error naming it."""
    key, value = _first(meta, *keys)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SourceError(name, f"front matter '{key}' must be text, got {_kind(value)} (quote the value)")
    return _plain(value)


def _list_field(meta: dict, name: str, *keys: str, names: bool = False, comma_list: bool = False) -> list[str]:
    """A field that takes one value or a list of them (tags, authors, category) as plain text;
    a mapping (or a list holding lists) is an error naming the field. With ``names``, list items
    may be ``{name: ...}`` mappings (authors)."""
    key, value = _first(meta, *keys)
    if value is None:
        return []
    items = value if isinstance(value, list) else (value.split(",") if comma_list and isinstance(value, str) else [value])
    out: list[str] = []
    for item in items:
        if names and isinstance(item, dict) and isinstance(item.get("name"), str):
            item = item["name"]
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            want = "a name or a list of names" if names else "text or a list of text"
            raise SourceError(name, f"front matter '{key}' must be {want}, got {_kind(value if not isinstance(value, list) else item)}")
        text_ = _plain(item)
        if text_:
            out.append(text_)
    return out


def _front_matter_date(value: object, key: str, name: str, config: Config):
    """The article date from front matter. A YAML number is never a Unix timestamp: exactly eight
    digits (``20261122``) read as YYYYMMDD, any other number is an error naming the field."""
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise SourceError(name, f"front matter '{key}' must be a date like 2026-11-01, got {_kind(value)}")
    if isinstance(value, (int, float)):
        if isinstance(value, int) and 10_000_000 <= value <= 99_999_999:
            value = str(value)  # YYYYMMDD, parsed with the string formats below
        else:
            raise SourceError(name, f"front matter '{key}': {value!r} is a number, not a date (write 2026-11-01)")
    try:
        return dates.parse_date(value, config.timezone)
    except ValueError as e:
        raise SourceError(name, f"front matter '{key}': {e}") from None


def _split_front_matter(content: str, name: str) -> tuple[dict, str]:
    """(metadata, body); a block that opens with --- must close and hold a YAML mapping."""
    fence = _FENCE.match(content)
    if not fence:
        return {}, content.lstrip("\ufeff")
    rest = content[fence.end():]
    if not _CLOSE.search(rest):
        raise SourceError(name, "front matter starts with '---' but has no closing '---' line")
    raw = ""
    try:
        raw, rest = frontmatter.YAMLHandler().split(content.lstrip("\ufeff"))
        data = yaml.load(raw, Loader=_YAML_LOADER) if raw.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        body = content.lstrip("\ufeff")
        first = body.count("\n", 0, body.find(raw)) if raw and body.find(raw) >= 0 else 1
        where = f" (line {first + mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SourceError(name, f"malformed front matter{where}: {problem}") from None
    except ValueError as e:
        raise SourceError(name, f"malformed front matter: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceError(name, f"front matter must be a mapping of 'key: value' lines, not a {type(data).__name__}")
    return {str(k).lower(): v for k, v in data.items()}, rest


def _lift_trailing_video(body: str) -> tuple[str, Video | None]:
    # Blocks with their start offsets, so the body can be cut exactly where the video block begins.
    blocks = [(m.start(), m.group(0)) for m in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", body)]
    if not blocks:
        return body, None
    link_text = _link_text(blocks[-1][1])
    if link_text:
        # "[Watch the interview](https://youtu.be/...)" as the last paragraph: the link text is the title.
        v = video.parse_video_url(_plain_block(blocks[-1][1]), link_text)
        if v is None:
            return body, None
        return body[: blocks[-1][0]].rstrip() + "\n", v
    plain = [_plain_block(b) for _, b in blocks]
    remaining, v = video.split_trailing_video(plain)
    if v is None:
        return body, None
    return body[: blocks[len(remaining)][0]].rstrip() + "\n", v


# Link texts that say "here is a video" rather than what the video is: not a title.
_GENERIC_VIDEO_TEXT = re.compile(
    r"^(?:(?:click\s+(?:here\s+)?(?:to\s+)?)?(?:watch|play|view|see)(?:\s+(?:it|this|the|now|here))*)?\s*"
    r"(?:(?:the|this)\s+)?(?:video|clip|film)?\s*(?:(?:on|at)\s+(?:youtube|vimeo))?\s*(?:here)?[\s.!:»→>-]*$",
    re.IGNORECASE,
)


def _link_text(block: str) -> str | None:
    """The text of a block that is one Markdown link, as a video title; None when it is not a link or
    its text is generic ("Watch on YouTube", "video", the URL itself): then it is read like a bare URL."""
    m = re.fullmatch(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", block.strip())
    if not m:
        return None
    label = " ".join(m.group(1).split())
    # Generic texts are short; the length check also keeps the regex off long labels.
    if re.match(r"https?://", label) or (len(label) <= 100 and _GENERIC_VIDEO_TEXT.match(label.strip("*_ "))):
        return None
    return label


def _plain_block(block: str) -> str:
    """A Markdown block as a plain line: headings' #, emphasis and link syntax around a lone URL removed."""
    b = block.strip()
    m = re.fullmatch(r"<(https?://[^>\s]+)>", b) or re.fullmatch(r"\[[^\]]*\]\((https?://[^)\s]+)\)", b)
    if m:
        return m.group(1)
    if "```" in b or "~~~" in b or block.startswith(("    ", "\t")) or b.startswith(("|", ">", "- ", "* ", "1. ")):
        return "```\n(code, table, quote or list)\n```"  # never a title line
    b = re.sub(r"^#{1,6}\s+", "", b)
    b = re.sub(r"(\*\*|__|\*|_)(.+?)\1", r"\2", b)
    return " ".join(b.split())


_HEADING_TAG = re.compile(r"<(/?)h[1-6]\b[^<>]*>", re.IGNORECASE)


def _without_headings(html: str) -> str:
    """The HTML without its headings (<h1>...</h1> to <h6>), in one pass over the tags: a regex
    with ``.*?`` between them rescans the rest of the text for every unclosed heading."""
    out: list[str] = []
    pos = 0
    opened: int | None = None
    for m in _HEADING_TAG.finditer(html):
        if not m.group(1) and opened is None:
            out.append(html[pos:m.start()])
            opened = m.start()
        elif m.group(1) and opened is not None:
            pos = m.end()
            opened = None
    out.append(html[pos:] if opened is None else html[opened:])  # an unclosed heading stays
    return "".join(out)


def _resolve_image_path(ref: str, path: Path, name: str, base_url: str | None = None) -> str:
    ref = ref.strip()
    scheme = urllib.parse.urlsplit(ref).scheme.lower()
    if scheme in {"http", "https"}:
        return ref
    if ref.startswith("//"):
        return "https:" + ref
    if base_url:
        # Fetched over http(s): the image is on the web or nowhere. "x:/../../etc/passwd" (a
        # one-letter scheme that looks like a Windows drive) must never become a local path.
        joined = urllib.parse.urljoin(base_url, ref) if not scheme else ref
        if urllib.parse.urlsplit(joined).scheme.lower() not in {"http", "https"}:
            raise SourceError(name, f"image {ref[:40]!r} must be an http(s) URL (a remote Markdown file cannot name a local file)")
        return joined
    if scheme and len(scheme) > 1:  # data:, javascript:, ftp: ... (a Windows drive letter has length 1)
        raise SourceError(name, f"image {ref[:40]!r} must be a local path or an http(s) URL")
    if re.search(r"[\x00-\x1f\x7f]", urllib.parse.unquote(ref)):  # photo%00.png: no file has that name
        raise SourceError(name, f"image {ref[:40]!r} holds a control character (NUL, newline...)")
    try:
        local = Path(urllib.parse.unquote(ref)).expanduser()
        if not local.is_absolute():
            local = path.parent / local
        return str(local.resolve())
    except (OSError, RuntimeError) as e:  # "~nobody/x.png" (no such user), a symlink loop
        raise SourceError(name, f"image {ref[:40]!r} cannot be resolved ({e})") from None


def _image(meta: dict, body: str, path: Path, title: str, name: str, base_url: str | None = None) -> Image | None:
    key, raw = _first(meta, "image", "cover_image", "hero")
    alt = _text_field(meta, name, "image_alt")
    width = height = None
    if isinstance(raw, dict):
        alt = alt or _text_field(raw, name, "alt")
        width, height = raw.get("width"), raw.get("height")
        raw = raw.get("url") or raw.get("src") or raw.get("path")
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, str)):
        raise SourceError(name, f"front matter '{key}' must be a path or URL (or a mapping with url and alt), got {_kind(raw)}")
    if raw:
        ref = str(raw)
    else:
        m = _IMG_MD.search(body)
        if not m:
            return None
        ref, alt = m.group(2), alt or m.group(1)
    url = _resolve_image_path(ref, path, name, base_url)
    return Image(
        url=url,
        alt=alt or title,
        width=width if isinstance(width, int) else None,
        height=height if isinstance(height, int) else None,
    )


def read_markdown_file(path: str | Path, config: Config, warn: Callable[[str], None] | None = None) -> Article:
    """Read and parse one Markdown file; unreadable or non-UTF-8 files raise SourceError naming it."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SourceError(str(p), f"cannot read: {e.strerror or e}") from None
    return parse_markdown(decode_text(data, str(p)), p, config, warn)


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is allowed); anything else is a SourceError naming the file."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SourceError(name, f"not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None
