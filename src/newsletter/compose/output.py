"""Writing a digest to a folder (digest.html/.txt/.eml/.json + assets/) and reading it back."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from ..articles.model import Article, Image, Video
from ..errors import NotFound, RenderError
from .message import build_message
from .model import Asset, Digest, InlineImage


_UMASK: int | None = None


def _file_mode() -> int:
    """0644 under the usual umask: digest files and assets are meant to be served (asset_base_url),
    not private like mkstemp's 0600. The umask is read once (setting it is process-wide)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _write_atomic(path: Path, data: bytes) -> None:
    # Write to a temporary file then rename, so a reader never sees half a digest.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), _file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def digest_json(digest: Digest) -> dict:
    """The machine-readable description written as digest.json."""
    return {
        "subject": digest.subject,
        "preheader": digest.preheader,
        "newsletter_name": digest.newsletter_name,
        "from_address": digest.from_address,
        "reply_to": digest.reply_to,
        "date": digest.date.isoformat() if digest.date else None,
        "html_size": digest.html_size,
        "found": digest.found,
        "article_keys": digest.article_keys,
        "articles": [a.to_json_dict() | {"key": a.key, "guid": a.guid} for a in digest.articles],
        "skipped": [{"what": w, "reason": r} for w, r in digest.skipped],
        "sources_skipped": [{"what": w, "reason": r} for w, r in digest.sources_skipped],
        "warnings": list(digest.warnings),
        "images": [{"cid": i.cid, "filename": i.filename, "content_type": i.content_type, "file": f"assets/{i.filename}"} for i in digest.images],
        "assets": [{"filename": a.filename, "content_type": a.content_type, "url": a.url, "file": f"assets/{a.filename}"} for a in digest.assets],
    }


def write_digest(digest: Digest, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write digest.html, digest.txt, digest.eml, digest.json and assets/ under ``out_dir``;
    returns the paths by kind (html, text, eml, json, assets). Older assets are left in place:
    a digest already sent may still point at them."""
    out = Path(out_dir)
    eml = build_message(digest).as_bytes()  # first: a bad header value stops us before any write
    if out.exists() and not out.is_dir():
        raise RenderError(f"{out}: not a directory (--out needs a folder for digest.html, .txt, .eml, .json and assets/)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        assets_dir = out / "assets"
        if digest.assets or digest.images:
            assets_dir.mkdir(exist_ok=True)
        files: list[Asset | InlineImage] = [*digest.assets, *digest.images]
        for f in files:
            target = assets_dir / f.filename
            if not target.exists():  # content-hashed names: same name, same bytes
                _write_atomic(target, f.data)
        paths = {
            "html": out / "digest.html",
            "text": out / "digest.txt",
            "eml": out / "digest.eml",
            "json": out / "digest.json",
            "assets": assets_dir,
        }
        _write_atomic(paths["eml"], eml)
        _write_atomic(paths["html"], digest.html.encode("utf-8"))
        _write_atomic(paths["text"], digest.text.encode("utf-8"))
        _write_atomic(paths["json"], json.dumps(digest_json(digest), ensure_ascii=False, indent=2).encode("utf-8"))
    except OSError as e:
        raise RenderError(f"{out}: cannot write the digest: {e.strerror or e}") from None
    return paths


def _article(d: dict) -> Article:
    d = dict(d)
    d.pop("key", None)
    image = d.pop("image", None)
    videos = d.pop("videos", None) or []
    published = d.pop("published", None)
    known = set(Article.__dataclass_fields__)
    a = Article(**{k: v for k, v in d.items() if k in known})
    a.image = Image(**image) if image else None
    a.videos = [Video(**v) for v in videos]
    a.published = datetime.fromisoformat(published) if published else None
    return a


def load_digest(out_dir: str | os.PathLike) -> Digest:
    """Read back a digest written by :func:`write_digest` (for dispatch, schedules, the web preview).
    Raises NotFound when digest.html is missing and RenderError when digest.json is unreadable."""
    out = Path(out_dir)
    html_path = out / "digest.html"
    if not html_path.is_file():
        raise NotFound(f"{html_path}: no composed digest here (run `newsletter compose ... --out {out}` first)")
    try:
        html = html_path.read_text(encoding="utf-8")
        text_path = out / "digest.txt"
        text = text_path.read_text(encoding="utf-8") if text_path.is_file() else ""
        json_path = out / "digest.json"
        meta = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
        images = [
            InlineImage(i["cid"], i["filename"], i["content_type"], (out / i["file"]).read_bytes()) for i in meta.get("images", [])
        ]
        assets = [
            Asset(a["filename"], a["content_type"], (out / a["file"]).read_bytes(), a["url"]) for a in meta.get("assets", [])
        ]
        articles = [_article(a) for a in meta.get("articles", [])]
    except (OSError, UnicodeDecodeError) as e:
        raise RenderError(f"{out}: cannot read the digest: {getattr(e, 'strerror', None) or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise RenderError(f"{out / 'digest.json'}: malformed ({type(e).__name__}: {e})") from None
    subject = meta.get("subject")
    if not subject:
        import re

        m = re.search(r"<title>(.*?)</title>", html, re.S | re.I)
        subject = " ".join(m.group(1).split()) if m else out.name
    return Digest(
        subject=subject,
        preheader=meta.get("preheader", ""),
        html=html,
        text=text,
        articles=articles,
        images=images,
        assets=assets,
        warnings=meta.get("warnings", []),
        found=meta.get("found", len(articles)),
        skipped=[(s["what"], s["reason"]) for s in meta.get("skipped", [])],
        sources_skipped=[(s["what"], s["reason"]) for s in meta.get("sources_skipped", [])],
        html_size=len(html.encode("utf-8")),
        from_address=meta.get("from_address", ""),
        reply_to=meta.get("reply_to"),
        date=datetime.fromisoformat(meta["date"]) if meta.get("date") else None,
        newsletter_name=meta.get("newsletter_name", ""),
    )
