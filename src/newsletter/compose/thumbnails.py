"""Card images: local images are cropped to the card's 16:9 at 2x and re-encoded compactly;
remote images keep their URL and are sized by HTML attributes.

A missing or broken image never fails a digest: the card goes without it and a warning says why.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..articles.model import Article, Image
from .model import Asset, InlineImage

CARD_WIDTH = 576  # CSS pixels: 600px email minus the 12px card margins; images run edge to edge
CARD_HEIGHT = 324  # 16:9
SCALE = 2  # retina
JPEG_QUALITY = 78
MAX_PIXELS = 80_000_000  # refuse decompression bombs before decoding


@dataclass
class ImageRef:
    """An <img> the template can place: where it is, what it shows, how big it is drawn."""

    src: str
    alt: str
    width: int = CARD_WIDTH
    height: int | None = None


@dataclass
class Thumbnail:
    """A resized local image, ready to be written as an asset or embedded as a CID part."""

    filename: str
    content_type: str
    data: bytes
    width: int
    height: int


class ThumbnailCache:
    """Recently made thumbnails by (path, mtime, size), the least recently used dropped beyond
    ``max_entries``: a long-running worker or web preview re-renders the same images. One is shared
    by default (``THUMBNAIL_CACHE``); ``make_thumbnail(..., cache=...)`` takes another."""

    def __init__(self, max_entries: int = 256):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Thumbnail] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Thumbnail | None:
        """The thumbnail stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple, thumb: Thumbnail) -> None:
        """Store ``thumb`` under ``key``, dropping the least recently used beyond ``max_entries``."""
        with self._lock:
            self._entries[key] = thumb
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


THUMBNAIL_CACHE = ThumbnailCache()


def is_remote(url: str) -> bool:
    """True for an http(s) URL (the image stays on the web; the article came from the web)."""
    try:
        return urlparse(url).scheme.lower() in {"http", "https"}
    except ValueError:
        return False


def local_path(url: str, article: Article) -> Path:
    """The file an image URL names: ``file://`` URLs, absolute paths, or paths relative to the
    article's source file (a Markdown file's folder) or, failing that, the current directory."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    p = Path(url)
    if p.is_absolute():
        return p
    if article.source:
        src = Path(article.source)
        base = src if src.is_dir() else src.parent
        candidate = base / p
        if candidate.exists():
            return candidate
    return p


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:40].strip("-") or "image"


# Source formats that are usually drawings or screenshots (PNG is tried besides JPEG), and the
# formats every mail client shows, which are kept as they are when already the card's size.
_LOSSLESS_FORMATS = {"PNG", "GIF", "BMP", "TIFF"}
_KEEPABLE = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "GIF": ("gif", "image/gif")}


def _encode(im, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        im.save(buf, "PNG", optimize=True)
    else:
        im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return buf.getvalue()


def make_thumbnail(path: Path, *, cache: ThumbnailCache | None = None) -> Thumbnail:
    """Crop ``path`` to 16:9 (centred), scale it down to at most 1152x648 and re-encode it:
    JPEG for photographs, PNG when the image has transparency, and for PNG/GIF sources whichever
    of PNG and JPEG is smaller; a source already the card's size and shape keeps its own bytes when
    they are smaller. Raises OSError/ValueError when
    the file is missing or not an image. Results are cached by (path, mtime, size) in ``cache``
    (default: the shared ``THUMBNAIL_CACHE``)."""
    from PIL import Image as PILImage, ImageOps

    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    cache = THUMBNAIL_CACHE if cache is None else cache
    hit = cache.get(key)
    if hit is not None:
        return hit

    target_w, target_h = CARD_WIDTH * SCALE, CARD_HEIGHT * SCALE
    with PILImage.open(path) as opened:
        im: PILImage.Image = opened  # exif_transpose below gives a plain Image, not the opened file
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} pixels is too large for a card image")
        original_size = im.size  # before draft() decodes a JPEG at a reduced scale
        if im.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the card.
            im.draft("RGB", (target_w, target_h))
        im.load()
        source_format = im.format
        if im.getexif().get(0x0112, 1) != 1:
            im = ImageOps.exif_transpose(im)
            source_format = None  # rotated: the original bytes would show the wrong way up
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        # Never upscale: a small source is only cropped to the card's aspect.
        scale = min(1.0, max(target_w / im.width, target_h / im.height))
        out_w = max(1, min(target_w, round(im.width * scale)))
        out_h = max(1, round(out_w * CARD_HEIGHT / CARD_WIDTH))
        if out_h > im.height * scale:
            out_h = max(1, round(im.height * scale))
            out_w = max(1, round(out_h * CARD_WIDTH / CARD_HEIGHT))
        unchanged = (out_w, out_h) == im.size == original_size
        fitted = ImageOps.fit(im.convert("RGBA" if has_alpha else "RGB"), (out_w, out_h), PILImage.Resampling.LANCZOS)
        candidates: list[tuple[bytes, str, str]] = []
        if has_alpha or source_format in _LOSSLESS_FORMATS:
            # Drawings, charts and screenshots compress better losslessly: try PNG for them too.
            candidates.append((_encode(fitted, "PNG"), "png", "image/png"))
        if not has_alpha:
            candidates.append((_encode(fitted, "JPEG"), "jpg", "image/jpeg"))
        if unchanged and source_format in _KEEPABLE:
            # Already the card's size and shape: the author's own encoding wins when it is smaller.
            candidates.append((path.read_bytes(), *_KEEPABLE[source_format]))
        data, ext, ctype = min(candidates, key=lambda c: len(c[0]))
    digest = hashlib.sha256(data).hexdigest()[:12]
    thumb = Thumbnail(f"{_slug(path.stem)}-{digest}.{ext}", ctype, data, out_w, out_h)
    cache.put(key, thumb)
    return thumb


def asset_url(filename: str, asset_base_url: str | None) -> str:
    """Where the HTML finds an asset: under ``asset_base_url`` when configured, else ``assets/NAME``
    relative to digest.html."""
    if asset_base_url:
        return asset_base_url.rstrip("/") + "/" + filename
    return "assets/" + filename


def card_image(
    article: Article,
    image: Image,
    *,
    alt: str,
    embed: bool,
    asset_base_url: str | None,
) -> tuple[ImageRef | None, Asset | InlineImage | None, str | None]:
    """Place one image: (what the template draws, the file to ship with it, a warning)."""
    url = (image.url or "").strip()
    if not url:
        return None, None, None
    if is_remote(url):
        height = None
        if image.width and image.height:
            height = round(CARD_WIDTH * image.height / image.width)
        return ImageRef(url, alt, CARD_WIDTH, height), None, None
    scheme = urlparse(url).scheme.lower()
    # "x:/..." is a Windows drive only on Windows; elsewhere it is an unknown scheme, never a path.
    if scheme not in {"", "file"} and not (os.name == "nt" and re.match(r"^[a-zA-Z]:[\\/]", url)):
        return None, None, f"{article.source or article.url}: image {url[:80]!r} is not a local file or http(s) URL; card shown without it"
    if is_remote(article.source or ""):
        # An article fetched over http(s) never names a local file (docs/fetching.md).
        return None, None, f"{article.source}: image {url[:80]!r} is a local path in a remote article; card shown without it"
    try:
        path = local_path(url, article)
        if path.exists() and not path.is_file():  # a FIFO or device would block Pillow forever
            return None, None, f"{article.source or article.url}: image {url} is not a regular file; card shown without it"
    except (ValueError, OSError) as e:  # a NUL byte in the path, a name too long...
        return None, None, f"{article.source or article.url}: image {url[:80]!r} is not a usable path ({e}); card shown without it"
    try:
        thumb = make_thumbnail(path)
    except FileNotFoundError:
        return None, None, f"{article.source or article.url}: image {url} not found; card shown without it"
    except Exception as e:  # Pillow raises many types for broken files
        return None, None, f"{article.source or article.url}: image {url} cannot be read ({type(e).__name__}: {e}); card shown without it"
    height = round(CARD_WIDTH * thumb.height / thumb.width)
    if embed:
        cid = f"{thumb.filename}@newsletter"
        part = InlineImage(cid=cid, filename=thumb.filename, content_type=thumb.content_type, data=thumb.data)
        return ImageRef("cid:" + cid, alt, CARD_WIDTH, height), part, None
    href = asset_url(thumb.filename, asset_base_url)
    asset = Asset(filename=thumb.filename, content_type=thumb.content_type, data=thumb.data, url=href)
    return ImageRef(href, alt, CARD_WIDTH, height), asset, None
