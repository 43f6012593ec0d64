"""Sources → ``Article``: Markdown files and folders, RSS/Atom/RDF feeds, HTML pages and
lists of URLs, from paths or http(s) URLs, deduplicated and sorted newest first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import Config
from ..errors import SourceError
from .identity import canonical_url
from .model import Article, Image, Video

__all__ = ["Article", "Image", "Video", "LoadResult", "load_sources", "dedupe", "canonical_url"]


@dataclass
class LoadResult:
    """What ``load_sources`` found: the articles (deduplicated, newest first) and one-line warnings."""

    articles: list[Article] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Files, entries and sources left out, as (what, reason): bad articles and ignored non-article files.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_sources(sources: list[str], config: Config, *, strict: bool = False) -> LoadResult:
    """Read every source (directory, file or URL; kinds detected from content) into Articles.

    A bad item inside a source (one file, one feed entry, one URL of a list) is skipped
    with a warning naming it, or raises with ``strict``. A source that fails outright
    raises SourceError when it is the only one (or with ``strict``); among several good
    sources it becomes a warning. Duplicates (same guid or canonical URL) keep the newest,
    most complete copy; the result is sorted newest first, undated articles last.
    """
    from .sources import load_source  # keeps `import newsletter.articles` light

    if not sources:
        raise SourceError("sources", "no source given (pass a directory, file or URL)")
    result = LoadResult()

    def warn(item: str | SourceError) -> None:
        if isinstance(item, SourceError) and getattr(item, "ignored", False):
            result.warnings.append(f"ignored {item}")
            result.skipped.append((item.source, item.problem))
        elif isinstance(item, SourceError):
            if strict:
                raise item
            # Some problems keep the item (a feed entry whose date cannot be read is kept undated).
            kept = getattr(item, "kept", None)
            result.warnings.append(f"{item}; {kept}" if kept else f"skipped {item}")
            if not kept:
                result.skipped.append((item.source, item.problem))
        else:
            result.warnings.append(str(item))

    failures: list[SourceError] = []
    for source in sources:
        try:
            result.articles.extend(load_source(str(source), config, warn))
        except SourceError as e:
            if strict or len(sources) == 1:
                raise
            failures.append(e)
            result.warnings.append(f"skipped {e}")
            result.skipped.append((e.source, e.problem))
    if failures and len(failures) == len(sources):
        raise SourceError(
            failures[0].source,
            f"{failures[0].problem} (and {len(failures) - 1} other source(s) failed)" if len(failures) > 1 else failures[0].problem,
        )
    result.articles = dedupe(result.articles)
    # One enrichment step for every kind of source (after dedupe: no lookups for dropped copies).
    from .video import add_vimeo_thumbnails

    result.warnings.extend(add_vimeo_thumbnails(result.articles, config))
    return result


def _completeness(a: Article) -> int:
    return sum(
        bool(x) for x in (a.published, a.authors, a.category, a.tags, a.summary, a.image, a.videos, a.lang, a.site_name)
    ) * 1_000_000 + len(a.body)


_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def dedupe(articles: list[Article]) -> list[Article]:
    """One copy per article (same guid or same canonical URL): the newest, then the most complete.
    Returned newest first; undated articles keep their order at the end."""
    groups: list[list[Article]] = []
    by_key: dict[str, int] = {}
    for a in articles:
        keys = [f"url:{canonical_url(a.url)}"] + ([f"guid:{a.guid}"] if a.guid else [])
        index = next((by_key[k] for k in keys if k in by_key), None)
        if index is None:
            index = len(groups)
            groups.append([])
        groups[index].append(a)
        for k in keys:
            by_key.setdefault(k, index)
    kept = [max(g, key=lambda a: (a.published or _OLDEST, _completeness(a))) for g in groups]
    order = {id(a): i for i, a in enumerate(kept)}
    return sorted(kept, key=lambda a: (a.published is None, -(a.published or _OLDEST).timestamp(), order[id(a)]))
