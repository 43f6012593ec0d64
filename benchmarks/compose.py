"""How long composing a 10-article digest takes, stage by stage (run by hand, not in tests).

    .venv/bin/python benchmarks/compose.py [--rounds 50]

Sources: the 8 sample articles in articles/ plus the 2 in tests/fixtures/compose/good (10 in
all, 6 with local hero images). Each stage is timed after a warm-up: wall-clock median and
minimum, and the median CPU time of the thread (steadier when other processes load the machine).
"Thumbnails" is the first (uncached) resize of the local images; later renders reuse the cache.
Stages are interleaved round by round, so load from other processes affects them alike.
The Vimeo oEmbed lookup is off (``vimeo_oembed_url=""``): with it on, "source parsing" would
include a request to vimeo.com for the Vimeo sample article, timing the network rather than the
code, and made on worker threads that the CPU column (``thread_time``) does not see.
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


def naive_premailer(html: str) -> str:
    """premailer as usually called (every <style> block parsed and inlined, float-image pass on):
    what ``inline_css`` avoids; kept here so the gain is measured in the same run."""
    import logging

    from premailer import Premailer

    return Premailer(html, strip_important=False, disable_validation=True, allow_network=False,
                     cssutils_logging_level=logging.CRITICAL).transform()


def bench_config() -> Config:
    """The benchmark's config: defaults, with the Vimeo oEmbed lookup off (no network calls)."""
    return Config(vimeo_oembed_url="")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    config = bench_config()
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

    # Interleaved: every round runs every stage once, so a burst of load from other processes
    # hits all stages alike and the ratios between them stay meaningful.
    stages = {
        "source parsing (10 Markdown files)": lambda: load_sources(SOURCES, config),
        "selection": lambda: select(articles, options),
        "context (cached thumbnails)": lambda: build_context(selected, config, options),
        "Jinja2 (MJML + text)": lambda: (render_mjml(tdir, context), render_text(tdir, context)),
        "MJML (mjml-python)": lambda: mjml_to_html(mjml),
        "premailer": lambda: inline_css(html),
        "premailer, naive (for comparison)": lambda: naive_premailer(html),
        "render() total (warm thumbnails)": lambda: render(selected, config, options),
    }
    # Wall time and this thread's CPU time: on a machine shared with other busy processes the
    # wall-clock median wanders with their load, the CPU time much less.
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in stages}
    for fn in stages.values():  # warm-up
        fn()
        fn()
    for _ in range(args.rounds):
        for name, fn in stages.items():
            c, t = time.thread_time(), time.perf_counter()
            fn()
            samples[name].append(((time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000))
    parse, total = samples["source parsing (10 Markdown files)"], samples["render() total (warm thumbnails)"]
    samples["sources + render, excl. thumbnails"] = [(a[0] + b[0], a[1] + b[1]) for a, b in zip(parse, total)]

    def summary(v):
        return statistics.median(w for w, _ in v), min(w for w, _ in v), statistics.median(c for _, c in v)

    def cold_sample():
        c, t = time.thread_time(), time.perf_counter()
        cold_thumbs()
        return (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000

    cold_thumbs()
    thumbs = [cold_sample() for _ in range(max(3, args.rounds // 10))]
    results = {name: summary(v) for name, v in samples.items() if not name.startswith("sources + render")}
    results["thumbnails (cold, 6 images)"] = summary(thumbs)
    results["sources + render, excl. thumbnails"] = summary(samples["sources + render, excl. thumbnails"])

    print(f"compose benchmark — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, {args.rounds} rounds")
    print(f"  {'stage':<38} {'wall median':>14} {'wall min':>11} {'CPU median':>13}")
    for name, (med, low, cpu) in results.items():
        target = "   (target < 40 ms)" if name.startswith("sources + render") else ""
        print(f"  {name:<38} {med:11.2f} ms {low:8.2f} ms {cpu:10.2f} ms{target}")
    print(f"  HTML size: {len(final.encode()) / 1024:.1f} KB (MJML output {len(html.encode()) / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
