"""Reading time: about 230 words a minute, never less than one minute."""

from __future__ import annotations

import math
import re

WORDS_PER_MINUTE = 230
# Scripts written without spaces between words: count characters, ~2 per "word".
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD = re.compile(r"\w+", re.UNICODE)


def word_count(text: str) -> int:
    """Words in ``text``; CJK characters count as half a word each."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(_CJK.sub(" ", text)))
    return words + math.ceil(cjk / 2)


def read_time_minutes(text: str, words_per_minute: int = WORDS_PER_MINUTE) -> int:
    """Minutes to read ``text`` (rounded, at least 1)."""
    return max(1, round(word_count(text) / words_per_minute))


def parse_read_time(value: object) -> int | None:
    """A source-given reading time ("5", 5, "5 min", "5 min read") as minutes, or None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        # YAML's .inf and .nan are floats too: no reading time (round(inf) would raise).
        return max(1, round(value)) if math.isfinite(value) and 0 < value < 10_000 else None
    if isinstance(value, str):
        m = re.match(r"^\s*(\d+)\s*(m|min|mins|minutes?)?(\s+read)?\s*$", value, re.IGNORECASE)
        if m and 0 < int(m.group(1)) < 10_000:
            return int(m.group(1))
    return None
