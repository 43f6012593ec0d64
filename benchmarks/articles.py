"""How long reading sources takes (run by hand, not in tests).

    .venv/bin/python benchmarks/articles.py [--rounds 20] [--feeds ../shared/corpus/feeds]

Times ``load_sources`` over the sample Markdown articles in articles/, over the project's own
feed fixtures, and (when the folder exists) over every feed in a corpus folder, one
``load_sources`` call per file as ``newsletter articles FILE`` would make. Each figure is the
median of ``--rounds`` runs after a warm-up; the corpus line also prints the articles found.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from newsletter.articles import load_sources  # noqa: E402
from newsletter.config import Config  # noqa: E402

CONFIG = Config()


def median_ms(fn, rounds: int) -> tuple[float, float]:
    fn()  # warm-up: imports, compiled regexes, markdown-it rules
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), min(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--feeds", type=Path, default=REPO.parent / "shared" / "corpus" / "feeds")
    args = ap.parse_args()

    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {args.rounds} rounds")
    rows = []

    md_files = sorted((REPO / "articles").glob("*.md"))
    n = len(load_sources([str(REPO / "articles")], CONFIG).articles)
    med, low = median_ms(lambda: load_sources([str(REPO / "articles")], CONFIG), args.rounds)
    rows.append((f"articles/ ({len(md_files)} Markdown files, {n} articles)", med, low))

    fixtures = sorted((REPO / "tests" / "fixtures" / "feeds").glob("*.xml"))
    good = [f for f in fixtures if f.name != "not-a-feed.xml"]

    def load_each(files):
        count = 0
        for f in files:
            count += len(load_sources([str(f)], CONFIG).articles)
        return count

    n = load_each(good)
    med, low = median_ms(lambda: load_each(good), args.rounds)
    rows.append((f"tests/fixtures/feeds ({len(good)} feeds, {n} articles)", med, low))

    if args.feeds.is_dir():
        corpus = sorted(p for p in args.feeds.iterdir() if p.is_file())
        n = load_each(corpus)
        med, low = median_ms(lambda: load_each(corpus), max(3, args.rounds // 4))
        size = sum(p.stat().st_size for p in corpus) / 1024
        rows.append((f"{args.feeds.name}/ corpus ({len(corpus)} feeds, {size:.0f} KB, {n} articles)", med, low))

    width = max(len(r[0]) for r in rows)
    print(f"{'source':<{width}}  {'median':>10}  {'min':>10}")
    for name, med, low in rows:
        print(f"{name:<{width}}  {med:>8.1f} ms  {low:>8.1f} ms")


if __name__ == "__main__":
    main()
