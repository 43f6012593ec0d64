"""The whole compose pipeline: sources → articles → selection → rendered Digest."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from ..config import Config
from .model import ComposeOptions, Digest
from .render import render
from .select import select
from .since import parse_since
from .templates import resolve_template_dir


def until_of(value: str, now, tz) -> datetime:
    """The end of a date range: a bare date (``2026-11-30``) includes that whole day, so the range
    ends at the next midnight in ``tz``; anything else as ``parse_since`` reads it."""
    import re

    end = parse_since(value, now, tz)
    return end + timedelta(days=1) if re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value) else end


def compose(sources: list[str], config: Config, options: ComposeOptions | None = None) -> Digest:
    """Load ``sources`` (files, folders, feed URLs), select and render a digest.

    Source warnings (a bad article skipped) and render warnings (a broken image, over the size
    budget) are collected in ``Digest.warnings``; ``found`` and ``skipped`` tell what selection did.
    """
    from ..articles import load_sources

    options = options or ComposeOptions()
    # Check the cheap things first: a typo in --template or --since should not wait for feeds.
    resolve_template_dir(options.template_dir or config.template_dir)
    if isinstance(options.since, str):
        # Resolve --since up front: a bare date means midnight in the configured time zone.
        options = dataclasses.replace(options, since=parse_since(options.since, options.now, config.timezone))
    if isinstance(options.until, str):
        options = dataclasses.replace(options, until=until_of(options.until, options.now, config.timezone))
    loaded = load_sources(list(sources), config, strict=options.strict)
    selection = select(loaded.articles, options)
    digest = render(selection.selected, config, options)
    digest.warnings = [*loaded.warnings, *digest.warnings]
    digest.found = len(loaded.articles)
    digest.skipped = selection.skipped
    digest.sources_skipped = list(loaded.skipped)
    return digest
