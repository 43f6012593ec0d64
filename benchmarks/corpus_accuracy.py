"""Per-field accuracy of the HTML page parser on a corpus of real pages, beside trafilatura's.

Usage:  python benchmarks/corpus_accuracy.py PATH [--split all|tune|measure] [--distractors] [--misses FIELD ...]
        python benchmarks/corpus_accuracy.py PATH --main-text

PATH holds one folder per page, ``NAME/source.html`` with ``NAME/expected-metadata.json``
(the layout of Mozilla Readability's test pages). For every page the script runs
``newsletter.articles.pages.parse_page`` and trafilatura's own ``extract_metadata`` and
compares both with the expected values, field by field, under the SAME rules:

  Which pages count
    - a field is scored only on pages whose expected-metadata.json has that key;
    - publishedTime is scored only on pages whose expected value is non-empty.
  Normalisation: Unicode NFC, runs of whitespace collapsed to one space, ends stripped.
  Empty values: null, missing and "" are all "empty". Two empty values match; an empty
    value never matches a non-empty one (so saying nothing where the page has nothing is
    right, and inventing a value where the reference has none is wrong).
  Field rules
    title          exact after normalisation
    byline         expected contained in ours, or ours in expected, case-insensitive
                   (ours is the authors list joined with ", ")
    publishedTime  same calendar date (the YYYY-MM-DD written in the expected value; ours
                   in the offset the page gave)
    excerpt        the first 60 characters match after normalisation
    siteName       equal after normalisation, case-insensitive
    lang           equal, case-insensitive ("en-US" == "en-us")
    dir            equal, where an empty direction counts as "ltr" (the HTML default) on
                   both sides; trafilatura has no direction, so it always says "ltr"
  A page our parser refuses (SourceError) counts as all-empty for our column.

Tune and measure parts (``--split``): a page belongs to the *measure* part when the SHA-256
of its folder name, read as a big-endian integer, is divisible by 3, else to the *tune* part
(86 pages: 55 tune, 31 measure). The split depends on the name only, so it is the same on
every machine and does not move when pages are added. Heuristics are adjusted while looking
at the tune part only; the measure part is run to report, never to find what to fix.

The run also reports the mean time per page of each side (parse_page includes the main
text extraction by trafilatura; extract_metadata is metadata only). The machine is
shared, so timings wander; compare the two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
import unicodedata
from datetime import datetime
from pathlib import Path

FIELDS = ("title", "byline", "publishedTime", "excerpt", "siteName", "lang", "dir")


def norm(value) -> str:
    if value is None:
        return ""
    return unicodedata.normalize("NFC", re.sub(r"\s+", " ", str(value))).strip()


def _empty_rule(exp: str, got: str) -> bool | None:
    """True/False when one side is empty (two empties match), None when both have a value."""
    if not exp or not got:
        return not exp and not got
    return None


def match(field: str, expected, got) -> bool:
    exp, ours = norm(expected), norm(got)
    if field == "dir":
        return (exp.lower() or "ltr") == (ours.lower() or "ltr")
    if field == "publishedTime":
        return bool(ours) and ours[:10] == exp[:10]
    empty = _empty_rule(exp, ours)
    if empty is not None:
        return empty
    if field == "title":
        return exp == ours
    if field == "byline":
        e, o = exp.casefold(), ours.casefold()
        return e in o or o in e
    if field == "excerpt":
        return exp[:60] == ours[:60]
    if field in ("siteName", "lang"):
        return exp.casefold() == ours.casefold()
    raise ValueError(field)


SPLITS = ("all", "tune", "measure")

# --distractors: names that are not the author, put where real pages put them — a share bar and a
# related-stories teaser at the top of <body>, a comment thread at its end. A byline (or its
# absence) must come out the same as without them.
_TOP = ('<div class="share-bar"><a rel="author" href="https://social.example/@qmarsh">Quentin Marsh</a> '
        '<span class="author">Shared by Quentin Marsh</span></div>'
        '<aside class="related-stories"><div class="byline">By Harriet Vane</div></aside>')
_END = ('<section id="comments"><div class="comment"><div class="comment-author vcard"><cite class="fn">Harriet Vane'
        '</cite></div><p>Lovely piece.</p></div><div itemprop="comment" itemscope itemtype="https://schema.org/Comment">'
        '<span itemprop="author" itemscope itemtype="https://schema.org/Person"><span itemprop="name">Quentin Marsh'
        '</span></span></div></section>')


def with_distractors(source: bytes) -> bytes:
    """The page with the share bar, teaser and comments above inserted inside its <body>."""
    m = re.search(rb"<body\b[^>]*>", source, re.I)
    at = m.end() if m else 0
    source = source[:at] + _TOP.encode() + source[at:]
    end = source.lower().rfind(b"</body>")
    end = end if end >= 0 else len(source)
    return source[:end] + _END.encode() + source[end:]


def part_of(name: str) -> str:
    """"measure" for one page name in three (by a hash of the name, stable everywhere), else "tune"."""
    return "measure" if int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest(), "big") % 3 == 0 else "tune"


def ours(source: bytes, url: str) -> dict:
    from newsletter.articles.pages import parse_page
    from newsletter.errors import SourceError

    try:
        a = parse_page(source, url)
    except SourceError:
        return {}
    published = None
    if a.published:
        published = a.published.date().isoformat()
    return {
        "title": a.title, "byline": ", ".join(a.authors), "publishedTime": published, "excerpt": a.summary,
        "siteName": a.site_name, "lang": a.lang, "dir": a.dir,
    }


def theirs(source: bytes, url: str) -> dict:
    import trafilatura
    from trafilatura.metadata import extract_metadata

    tree = trafilatura.load_html(source)
    if tree is None:
        return {}
    m = extract_metadata(tree, default_url=url)
    return {
        "title": m.title, "byline": m.author, "publishedTime": m.date, "excerpt": m.description,
        "siteName": m.sitename, "lang": m.language, "dir": None,
    }


def main_text_modes(pages: list[Path]) -> int:
    """How trafilatura's modes compare on main text: time per page, and on how many pages the
    extracted text contains the reference excerpt's first 40 characters (pages whose excerpt
    is at least 30 characters long, i.e. a real opening sentence rather than a label)."""
    import trafilatura

    data = []
    for page in pages:
        expected = json.loads((page / "expected-metadata.json").read_text(encoding="utf-8"))
        data.append(((page / "source.html").read_bytes(), norm(expected.get("excerpt"))[:40]))
    trafilatura.extract(data[0][0])  # warm-up
    print(f"{len(pages)} pages — {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    for mode in ({}, {"fast": True}, {"favor_precision": True}):
        found = counted = 0
        t0 = time.perf_counter()
        for source, opening in data:
            text = norm(trafilatura.extract(source, output_format="txt", include_comments=False, **mode))
            if len(opening) >= 30:
                counted += 1
                found += opening in text
        ms = 1000 * (time.perf_counter() - t0) / len(data)
        label = ", ".join(f"{k}={v}" for k, v in mode.items()) or "default"
        print(f"{label:<22} {ms:6.1f} ms/page   opening found in {found}/{counted} pages")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="folder of NAME/source.html + NAME/expected-metadata.json")
    ap.add_argument("--misses", nargs="*", default=[], metavar="FIELD",
                    help="also list the pages each named field misses (ours), with both values")
    ap.add_argument("--split", choices=SPLITS, default="all",
                    help="score only the tune part, only the held-out measure part, or all pages (default)")
    ap.add_argument("--distractors", action="store_true",
                    help="insert a share bar, a related-stories teaser and a comment thread naming other people "
                         "into every page first (a robustness probe for bylines)")
    ap.add_argument("--main-text", action="store_true",
                    help="instead, compare trafilatura's main-text modes (default, fast, favor_precision)")
    args = ap.parse_args(argv)
    if not args.path.is_dir():
        print(f"{args.path}: not a directory", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    pages = sorted(p for p in args.path.iterdir() if (p / "source.html").is_file() and (p / "expected-metadata.json").is_file())
    if args.split != "all":
        pages = [p for p in pages if part_of(p.name) == args.split]
    if not pages:
        print(f"{args.path}: no NAME/source.html with NAME/expected-metadata.json inside", file=sys.stderr)
        return 2
    if args.main_text:
        return main_text_modes(pages)
    scored = {f: 0 for f in FIELDS}
    hits = {side: {f: 0 for f in FIELDS} for side in ("ours", "trafilatura")}
    misses: dict[str, list[str]] = {f: [] for f in FIELDS}
    times = {"ours": 0.0, "trafilatura": 0.0}
    # warm-up: imports and lazy initialisation are not per-page costs
    first = (pages[0] / "source.html").read_bytes()
    ours(first, "https://example.org/warmup/")
    theirs(first, "https://example.org/warmup/")
    for page in pages:
        source = (page / "source.html").read_bytes()
        if args.distractors:
            source = with_distractors(source)
        expected = json.loads((page / "expected-metadata.json").read_text(encoding="utf-8"))
        url = f"https://example.org/{page.name}/"
        t0 = time.perf_counter()
        got = {"ours": ours(source, url)}
        t1 = time.perf_counter()
        got["trafilatura"] = theirs(source, url)
        t2 = time.perf_counter()
        times["ours"] += t1 - t0
        times["trafilatura"] += t2 - t1
        for f in FIELDS:
            if f not in expected:
                continue
            if f == "publishedTime" and not norm(expected[f]):
                continue
            scored[f] += 1
            for side in hits:
                ok = match(f, expected[f], got[side].get(f))
                hits[side][f] += ok
                if side == "ours" and not ok:
                    misses[f].append(f"  {page.name}: expected {norm(expected[f])[:70]!r}, ours {norm(got[side].get(f))[:70]!r}")

    n = len(pages)
    print(f"{n} pages ({args.split}{', with distractors' if args.distractors else ''}) in {args.path} — {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
          f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}")
    print(f"{'field':<14} {'pages':>5}  {'ours':>7}  {'trafilatura':>11}")
    for f in FIELDS:
        s = scored[f] or 1
        print(f"{f:<14} {scored[f]:>5}  {100 * hits['ours'][f] / s:>6.1f}%  {100 * hits['trafilatura'][f] / s:>10.1f}%")
    print(f"mean time per page: parse_page {1000 * times['ours'] / n:.1f} ms (metadata + trafilatura main text), "
          f"trafilatura extract_metadata {1000 * times['trafilatura'] / n:.1f} ms")
    for f in args.misses:
        if f not in misses:
            print(f"unknown field {f!r} (one of {', '.join(FIELDS)})", file=sys.stderr)
            return 2
        print(f"\nmisses on {f} ({len(misses[f])}):")
        print("\n".join(misses[f]) or "  none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
