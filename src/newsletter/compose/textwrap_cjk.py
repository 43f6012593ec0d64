"""Wrapping plain text by display width, so Chinese, Japanese and Korean lines (no spaces,
two columns per character) wrap too, without breaking URLs or putting 。 at a line start."""

from __future__ import annotations

import textwrap
import unicodedata

# Characters a CJK line must not start with (a small kinsoku set).
_NO_LINE_START = set("、。，．・：；？！ー）」』】〕〉》,.!?:;)]}")


def _cols(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(_cols(ch) for ch in text)


def wrap(text: str, width: int = 72) -> str:
    """``text`` wrapped at ``width`` columns: between words, and between wide characters when a
    line has no spaces to break at. Long words (URLs) are never broken."""
    out: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        lines = textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""]
        for line in lines:
            if display_width(line) <= width:
                out.append(line)
                continue
            current, cols = "", 0
            for ch in line:
                w = _cols(ch)
                breakable = current and (w == 2 or _cols(current[-1]) == 2) and ch not in _NO_LINE_START
                if cols + w > width and breakable:
                    out.append(current.rstrip())
                    current, cols = ch.lstrip(), display_width(ch.lstrip())
                else:
                    current += ch
                    cols += w
            out.append(current)
    return "\n".join(out)
