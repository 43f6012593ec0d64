"""One rule for control characters in every text we store, and the caps on subscriber attributes.

The rule, applied where text enters (import, ``subscribers add``, the web and API forms, list
names): a one-line text (address, name, attribute name, list name, consent source) may hold no
control character — Unicode category Cc (C0 including NUL, TAB, CR and LF; DEL; C1), nor
U+2028/U+2029 (line and paragraph separators); attribute *values* may hold TAB, LF and CR, but
no other control character. Lone surrogates (which no UTF-8 database can store) are refused
everywhere. Such text is refused with a reason naming the field and the character — never
silently changed. The caps keep one hostile row from creating a subscriber with a million
attributes (and every later export with a million columns).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidInput

MAX_COLUMNS = 200  # columns in an import file's header
MAX_ATTRIBUTES = 100  # attributes on one subscriber (per row imported, and after merging)
MAX_ATTRIBUTE_NAME = 100  # characters in an attribute name
MAX_ATTRIBUTE_VALUE = 10_000  # characters in one attribute value (as JSON text)
MAX_ATTRIBUTE_DEPTH = 8  # nesting of lists/objects inside one attribute value
MAX_ATTRIBUTE_NAMES_PER_FILE = 1000  # different attribute names in one import file

_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MULTI_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def control_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` breaks the control-character rule ("contains a control character (U+0000)"), or None."""
    m = (_MULTI_LINE if multiline else _ONE_LINE).search(text)
    if m is None:
        return None
    ch = m.group()
    kind = "a lone surrogate" if "\ud800" <= ch <= "\udfff" else "a control character"
    return f"contains {kind} (U+{ord(ch):04X})"


def check_text(what: str, text: str, *, multiline: bool = False) -> str:
    """``text`` unchanged when it follows the rule; InvalidInput naming ``what`` otherwise."""
    problem = control_problem(text, multiline=multiline)
    if problem:
        raise InvalidInput(f"{what} {problem}")
    return text


def check_reader_name(name: str) -> str:
    """A reader's name as typed in a public form (signup, preference centre), unchanged when it
    follows the rule; else InvalidInput in words the reader's page can translate."""
    from ..i18n import N_

    m = _ONE_LINE.search(name)
    if m is not None:
        raise InvalidInput(N_("the name contains a control character (U+%(code)s)", code=f"{ord(m.group()):04X}"))
    return name


def _value_problem(value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        return control_problem(value, multiline=True)
    if isinstance(value, (list, tuple)) or isinstance(value, dict):
        if depth >= MAX_ATTRIBUTE_DEPTH:
            return f"is nested deeper than {MAX_ATTRIBUTE_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for k, v in items:
            if k is not None:
                problem = control_problem(str(k))
                if problem:
                    return f"has a key that {problem}"
            problem = _value_problem(v, depth + 1)
            if problem:
                return problem
    return None


def attributes_problem(attrs: dict[str, Any], known_names: set[str] | frozenset[str] = frozenset()) -> str | None:
    """Why this attributes dict is refused (count, name, value size, depth, control characters), or
    None. ``known_names`` were checked before (an import's earlier rows): text values under them
    take a fast path, one regex over all of them."""
    if len(attrs) > MAX_ATTRIBUTES:
        return f"{len(attrs)} attributes: at most {MAX_ATTRIBUTES}"
    if known_names.issuperset(attrs):
        try:
            joined = "".join(attrs.values())
        except TypeError:  # not all text (JSON Lines): the full check below
            joined = None
        if joined is not None and len(joined) <= MAX_ATTRIBUTE_VALUE and _MULTI_LINE.search(joined) is None:
            return None
    for key, value in attrs.items():
        key = str(key)
        shown = key if len(key) <= 40 else key[:37] + "..."
        if len(key) > MAX_ATTRIBUTE_NAME:
            return f"attribute name {shown!r} is longer than {MAX_ATTRIBUTE_NAME} characters"
        problem = control_problem(key)
        if problem:
            return f"attribute name {ascii(shown)} {problem}"
        problem = _value_problem(value, 0)
        if problem:
            return f"attribute {shown!r} {problem}"
        size = len(value) if isinstance(value, str) else len(json.dumps(value, ensure_ascii=False)) if isinstance(value, (list, dict)) else 0
        if size > MAX_ATTRIBUTE_VALUE:
            return f"attribute {shown!r} is {size} characters: at most {MAX_ATTRIBUTE_VALUE}"
    return None


def check_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` unchanged when within the caps and the rule; InvalidInput otherwise."""
    problem = attributes_problem(attrs)
    if problem:
        raise InvalidInput(problem)
    return attrs
