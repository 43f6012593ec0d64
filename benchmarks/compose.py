"""How long composing a 10-article digest takes, stage by stage (run by hand, not in tests).

    .venv/bin/python benchmarks/compose.py [--rounds 50]

Sources: the 8 sample articles in articles/ plus the 2 in tests/fixtures/compose/good (10 in
all, 6 with local hero images). Each stage is timed after a warm-up; medians are reported.
"Thumbnails" is the first (uncached) resize of the local images; later renders reuse the cache.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from newsletter.articles import load_sources  # noqa: E402
from newsletter.compose import ComposeOptions, render, select  # noqa: E402
from newsletter.compose import thumbnails  # noqa: E402
from newsletter.compose.render import build_context, inline_css, mjml_to_html, render_mjml, render_text  # noqa: E402
from newsletter.compose.templates import resolve_template_dir  # noqa: E402
from newsletter.config import Config  # noqa: E402

SOURCES = [str(REPO / "articles"), str(REPO / "tests/fixtures/compose/good")]
NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


def timed(fn, rounds):
    fn()  # warm-up
    fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), min(samples)


def naive_premailer(html: str) -> str:
    """premailer as usually called (every <style> block parsed and inlined, float-image pass on):
    what ``inline_css`` avoids; kept here so the gain is measured in the same run."""
    import logging

    from premailer import Premailer

    return Premailer(html, strip_important=False, disable_validation=True, allow_network=False,
                     cssutils_logging_level=logging.CRITICAL).transform()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    config = Config()
    options = ComposeOptions(now=NOW, limit=10)
    tdir = resolve_template_dir(None)

    articles = load_sources(SOURCES, config).articles
    selected = select(articles, options).selected
    assert len(selected) == 10, len(selected)

    # Thumbnails: cold (cache cleared each time) — the cost paid once per image.
    def cold_thumbs():
        thumbnails._cache.clear()
        build_context(selected, config, options)

    context, _, _ = build_context(selected, config, options)
    mjml = render_mjml(tdir, context)
    html = mjml_to_html(mjml)
    final = inline_css(html)

    stages = {
        "source parsing (10 Markdown files)": timed(lambda: load_sources(SOURCES, config), args.rounds),
        "selection": timed(lambda: select(articles, options), args.rounds),
        "context (cached thumbnails)": timed(lambda: build_context(selected, config, options), args.rounds),
        "Jinja2 (MJML + text)": timed(lambda: (render_mjml(tdir, context), render_text(tdir, context)), args.rounds),
        "MJML (mjml-python)": timed(lambda: mjml_to_html(mjml), args.rounds),
        "premailer": timed(lambda: inline_css(html), args.rounds),
        "premailer, naive (for comparison)": timed(lambda: naive_premailer(html), args.rounds),
        "thumbnails (cold, 6 images)": timed(cold_thumbs, max(3, args.rounds // 10)),
    }
    total_render = timed(lambda: render(selected, config, options), args.rounds)
    end_to_end = tuple(a + b for a, b in zip(stages["source parsing (10 Markdown files)"], total_render))

    print(f"compose benchmark — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, {args.rounds} rounds")
    print(f"  {'stage':<38} {'median':>8}    {'min':>8}")
    for name, (med, low) in stages.items():
        print(f"  {name:<38} {med:8.2f} ms {low:8.2f} ms")
    print(f"  {'render() total (warm thumbnails)':<38} {total_render[0]:8.2f} ms {total_render[1]:8.2f} ms")
    print(f"  {'sources + render, excl. thumbnails':<38} {end_to_end[0]:8.2f} ms {end_to_end[1]:8.2f} ms   (target < 40 ms)")
    print(f"  HTML size: {len(final.encode()) / 1024:.1f} KB (MJML output {len(html.encode()) / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
