"""Selection: which articles go into a digest, and why the others do not."""

from __future__ import annotations

from datetime import datetime, timezone

from ..articles.identity import comparable_key
from ..articles.model import Article
from ..errors import SelectionError
from .model import ComposeOptions, Selection
from .since import parse_since


def _label(a: Article) -> str:
    return a.title or a.url


def _newest_first(articles: list[Article]) -> list[Article]:
    # Stable: undated articles keep their source order, after the dated ones.
    floor = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(articles, key=lambda a: a.published or floor, reverse=True)


def select(articles: list[Article], options: ComposeOptions) -> Selection:
    """Apply ``--since``, ``--category``, ``--tag``, already-sent keys and ``--limit`` (in that order),
    newest first. Raises SelectionError when nothing is left, saying what filtered everything out."""
    if options.limit is not None and options.limit < 1:
        raise SelectionError(f"--limit {options.limit}: must be at least 1")
    since = parse_since(options.since, options.now) if options.since else None
    until = parse_since(options.until, options.now) if options.until else None
    if since is not None and until is not None and until <= since:
        raise SelectionError(f"the date range ends ({until:%Y-%m-%d %H:%M} UTC) before it starts ({since:%Y-%m-%d %H:%M} UTC)")
    category = (options.category or "").strip().casefold() or None
    tags = {t.strip().casefold() for t in options.tags if t and t.strip()}
    # Both sides compared canonically: keys stored before Article.key was canonical are raw URLs.
    excluded = {comparable_key(k) for k in options.exclude_keys or ()}

    selected: list[Article] = []
    skipped: list[tuple[str, str]] = []
    for a in _newest_first(list(articles)):
        if since is not None:
            if a.published is None:
                skipped.append((_label(a), "has no date, so --since cannot place it"))
                continue
            if a.published < since:
                skipped.append((_label(a), f"older than --since ({since:%Y-%m-%d %H:%M} UTC)"))
                continue
        if until is not None and (a.published is None or a.published >= until):
            skipped.append((_label(a), "has no date, so the date range cannot place it" if a.published is None
                            else f"newer than the end of the date range ({until:%Y-%m-%d %H:%M} UTC)"))
            continue
        if category is not None and (a.category or "").strip().casefold() != category:
            skipped.append((_label(a), f"not in category {options.category!r}"))
            continue
        if tags and not tags & {t.casefold() for t in a.tags}:
            skipped.append((_label(a), f"has none of the tags {', '.join(sorted(tags))}"))
            continue
        if comparable_key(a.key) in excluded:
            skipped.append((_label(a), "already sent in an earlier digest"))
            continue
        selected.append(a)

    if options.limit is not None and len(selected) > options.limit:
        for a in selected[options.limit:]:
            skipped.append((_label(a), f"over --limit {options.limit}"))
        selected = selected[: options.limit]

    if not selected:
        if not articles:
            raise SelectionError("no articles found in the sources: nothing to compose")
        reasons = sorted({r for _, r in skipped})
        raise SelectionError(
            f"no article left to compose: all {len(articles)} skipped ({'; '.join(reasons)})"
        )
    return Selection(selected=selected, skipped=skipped)
