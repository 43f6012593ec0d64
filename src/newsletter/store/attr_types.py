"""Typed attributes on import: a column declared (or recognised) as a number, a date or a boolean
is stored as that JSON value, so that a segment's ``gt``/``lt``/``before``/``within`` compare
numbers numerically and dates chronologically on both databases (see segment_filter.py).

Types: ``text`` (as written, the default), ``number`` (JSON number), ``date`` (an ISO date
``YYYY-MM-DD``, or a date-time normalised to UTC ``YYYY-MM-DDTHH:MM:SSZ``; JSON has no date type
and the segment compiler reads a string starting with YYYY-MM-DD as a date), ``bool`` (JSON
true/false) and ``auto`` (each cell recognised: a plain number, true/false or an ISO date, else
text). A cell that does not parse as its declared type is a reason to reject the row.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any

from ..errors import InvalidInput

ATTR_TYPES = ("text", "number", "date", "bool", "auto")
EVERY = "*"  # --attr-type '*=auto': every attribute not named otherwise
TRUE_CELLS = ("true", "yes", "y", "t", "1", "on")
FALSE_CELLS = ("false", "no", "n", "f", "0", "off")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")
# What ``auto`` takes for a number: no leading zero (a zip code or an id like 007 stays text),
# no exponent, at most 15 digits (exact as a double).
_PLAIN_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?")


def check_types(types: dict[str, str]) -> dict[str, str]:
    """``types`` (attribute name -> type) when every type is known; InvalidInput naming the first
    that is not."""
    out = {}
    for name, kind in types.items():
        k = kind.strip().lower()
        if k == "boolean":
            k = "bool"
        if k not in ATTR_TYPES:
            raise InvalidInput(f"--attr-type {name}={kind}: the type must be one of {', '.join(ATTR_TYPES)}")
        if not name.strip():
            raise InvalidInput(f"--attr-type ={kind}: name the attribute (or * for every attribute)")
        out[name.strip()] = k
    return out


def _number(text: str) -> int | float:
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        raise ValueError("is not a number")
    if _INTEGER.fullmatch(t):
        return int(t)
    f = float(t)
    if not math.isfinite(f):
        raise ValueError("is not a finite number")
    return int(f) if f.is_integer() and abs(f) < 1e15 else f


def _date(text: str) -> str:
    t = text.strip()
    if _ISO_DATE.fullmatch(t):
        try:
            return date.fromisoformat(t).isoformat()
        except ValueError:
            raise ValueError("is not a valid date") from None
    if _ISO_DATETIME.fullmatch(t):
        try:
            moment = datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
        except ValueError:
            raise ValueError("is not a valid date and time") from None
        if moment.tzinfo is None:
            return moment.replace(microsecond=0).isoformat()
        return moment.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    raise ValueError("is not a date (write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in TRUE_CELLS:
        return True
    if t in FALSE_CELLS:
        return False
    raise ValueError("is not a boolean (true/false, yes/no, 1/0)")


def _auto(text: str) -> Any:
    t = text.strip()
    if _PLAIN_NUMBER.fullmatch(t):
        return _number(t)
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if _ISO_DATE.fullmatch(t) or _ISO_DATETIME.fullmatch(t):
        try:
            return _date(t)
        except ValueError:
            return text
    return text


def typed_value(kind: str, value: Any) -> Any:
    """``value`` (a cell's text, or a JSON value from a JSON Lines file) as ``kind``; ValueError
    saying what is wrong when it does not parse. A value already of the type is kept."""
    if kind == "text":
        return value
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _number(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _bool(value)
    elif kind == "date":
        if isinstance(value, str):
            return _date(value)
    elif kind == "auto":
        return _auto(value) if isinstance(value, str) else value
    else:
        raise ValueError(f"has an unknown type {kind!r}")
    raise ValueError(f"is not a {kind}")


def apply_types(attrs: dict[str, Any], types: dict[str, str]) -> str | None:
    """Convert ``attrs`` in place to their declared types; the reason (naming the attribute and
    the value) for the first that does not parse, else None."""
    every = types.get(EVERY)
    for name, value in attrs.items():
        kind = types.get(name, every)
        if kind is None or kind == "text":
            continue
        try:
            attrs[name] = typed_value(kind, value)
        except ValueError as e:
            shown = value if isinstance(value, str) else repr(value)
            return f"attribute {name!r}: {shown[:64]!r} {e}"
    return None
