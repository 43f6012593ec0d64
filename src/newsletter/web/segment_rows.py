"""The segment builder's rows (field / operator / value, joined by all or any) and the JSON filter
they stand for, both ways. The filter language and its checks are store/segment_filter.py's: a
row is turned into a condition as written and the store says what is wrong with it.

An operator starting with ``!`` is the negation of the plain one (``{"not": ...}``). A value is
typed the way a person means it: ``true``/``false`` a boolean, a plain number a number (both
also match the same text stored as a string), anything else text; ``is one of`` takes a comma
separated list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

MAX_ROWS = 50
FIELDS = [("attr", "Attribute"), ("subscribed", "Signed up"), ("status", "Status on the list"),
          ("domain", "Email domain"), ("opened", "Opened a campaign"), ("clicked", "Clicked in a campaign"),
          ("bounced", "Bounced")]
FIELD_NAMES = [f for f, _ in FIELDS]
ENGAGEMENT = ("opened", "clicked", "bounced")
# operator -> (label, the fields it applies to)
OPERATORS = {
    "eq": ("is", ("attr", "status", "domain")),
    "ne": ("is not", ("attr", "status", "domain")),
    "in": ("is one of (a, b, c)", ("attr", "status", "domain")),
    "contains": ("contains", ("attr",)),
    "!contains": ("does not contain", ("attr",)),
    "exists": ("is set", ("attr",)),
    "!exists": ("is not set", ("attr",)),
    "gt": ("is greater / after", ("attr", "subscribed")),
    "lt": ("is less / before date", ("attr", "subscribed")),
    "within": ("within the last (30d, 12h, 2w)", ("attr", "subscribed", "opened", "clicked", "bounced")),
    "!within": ("not within the last", ("attr", "subscribed", "opened", "clicked", "bounced")),
    "before": ("before (a date, or 30d ago)", ("attr", "subscribed")),
}
NO_VALUE = ("exists", "!exists")
_PLAIN_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]+)?")


@dataclass
class Row:
    """One line of the builder, as typed (strings), kept as is when the form comes back with an error."""

    field: str = "attr"
    attr: str = ""
    op: str = "eq"
    value: str = ""

    def blank(self) -> bool:
        return self.field == "attr" and not self.attr.strip() and not self.value.strip()


def _scalar(text: str) -> Any:
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    if _PLAIN_NUMBER.fullmatch(t):
        return float(t) if "." in t else int(t)
    return t


def _value(field: str, op: str, text: str) -> Any:
    base = op.lstrip("!")
    if base == "exists":
        return not op.startswith("!")
    if base == "in":
        items = [x.strip() for x in text.split(",") if x.strip()]
        if field != "attr":
            return items
        typed = [_scalar(x) for x in items]
        if all(isinstance(x, bool) for x in typed) or all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in typed):
            return typed
        return items
    if field == "attr" and base in ("eq", "ne", "gt", "lt"):
        return _scalar(text)
    return text.strip()


def row_condition(number: int, row: Row) -> dict:
    """The filter condition one row stands for; InvalidInput naming the row for an impossible one."""
    if row.field not in FIELD_NAMES:
        raise InvalidInput(f"condition {number}: unknown field {row.field!r}")
    if row.op not in OPERATORS or row.field not in OPERATORS[row.op][1]:
        raise InvalidInput(f"condition {number}: {OPERATORS.get(row.op, (row.op,))[0]!r} does not apply to "
                           f"{dict(FIELDS)[row.field].lower()}")
    if row.field == "attr" and not row.attr.strip():
        raise InvalidInput(f"condition {number}: name the attribute")
    if row.op not in NO_VALUE and not row.value.strip():
        raise InvalidInput(f"condition {number}: give a value")
    value = _value(row.field, row.op, row.value)
    base = row.op.lstrip("!")
    if row.field == "attr":
        cond: dict = {"attr": row.attr.strip(), "exists" if base == "exists" else base: True if base == "exists" else value}
        if row.op == "!exists":
            return cond | {"exists": False}
    else:
        cond = {row.field: {base: value}}
    return {"not": cond} if row.op.startswith("!") and base != "exists" else cond


def rows_filter(rows: list[Row], match: str) -> dict:
    """The filter for the builder's rows (blank rows left out): one condition alone, else all/any."""
    used = [(i, r) for i, r in enumerate(rows, 1) if not r.blank()]
    conds = [row_condition(i, r) for i, r in used]
    if not conds:
        return {}
    if len(conds) == 1:
        return conds[0]
    return {"any" if match == "any" else "all": conds}


def _shown(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_shown(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else json.dumps(v)


def _row_of(cond: Any) -> Row | None:
    if not isinstance(cond, dict):
        return None
    neg = False
    if set(cond) == {"not"}:
        neg, cond = True, cond["not"]
        if not isinstance(cond, dict):
            return None
    if "attr" in cond and len(cond) == 2:
        (op, v), = ((k, x) for k, x in cond.items() if k != "attr")
        if op == "exists":
            op = "exists" if (v is True) != neg else "!exists"
            return Row("attr", str(cond["attr"]), op, "")
        return Row("attr", str(cond["attr"]), ("!" if neg else "") + op, _shown(v))
    if len(cond) == 1:
        (field, inner), = cond.items()
        if field in FIELD_NAMES and isinstance(inner, dict) and len(inner) == 1:
            (op, v), = inner.items()
            return Row(field, "", ("!" if neg else "") + op, _shown(v))
    return None


def filter_rows(data: Any) -> tuple[list[Row], str] | None:
    """The rows and all/any for a filter, or None when rows cannot say it exactly (nested groups,
    a value rows would type differently): then the builder shows the JSON only."""
    if not isinstance(data, dict) or not data:
        return ([], "all") if data == {} else None
    match = "all"
    if set(data) in ({"all"}, {"any"}) and isinstance(next(iter(data.values())), list):
        match = next(iter(data))
        conds = data[match]
    else:
        conds = [data]
    rows = [_row_of(c) for c in conds]
    if any(r is None for r in rows):
        return None
    done = [r for r in rows if r is not None]
    try:
        again = rows_filter(done, match)
    except InvalidInput:
        return None
    if again != data and not (len(done) == 1 and again == conds[0]):
        return None
    return done, match
