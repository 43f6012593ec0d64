"""The segment filter language: parse a JSON filter, compile it to SQLAlchemy Core, or evaluate it
in Python (the reference the property test holds the SQL to).

A filter is a tree of ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}`` and leaves:
``{"attr": "city", "eq": "Lisbon"}`` (a subscriber attribute), ``{"subscribed": {"within": "365d"}}``
(the subscription's created_at on the segment's list), ``{"status": {"in": ["active"]}}`` (the
subscription's status), ``{"domain": {"eq": "example.com"}}`` (the address's domain) and the
engagement fields ``{"opened": {"within": "30d"}}`` (a person opened any campaign: a human open or
one through a provider's image proxy, never Apple's pre-fetch or a scanner), ``{"clicked": ...}``
(a human click) and ``{"bounced": ...}`` (a hard or soft bounce). The kind of
comparison is decided by the operand's JSON type (a number compares numbers, ``"2024-01-31"``
compares dates, ``true`` booleans, any other string compares text exactly); see docs/segments.md.

Every leaf compiles to ``CASE WHEN <value has the right type> THEN <comparison> ELSE false END``:
it is never NULL (so ``not`` means what it says on both databases) and a cast is only evaluated on
values that can be cast. Values only ever reach the SQL as bound parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import and_, case, false, func, literal, not_, or_
from sqlalchemy.dialects.postgresql import ARRAY

from ..errors import InvalidInput
from .db import table_of
from .bounce_models import BounceEvent
from .engagement_models import EngagementEvent
from .models import SUBSCRIPTION_STATUSES, Subscriber, Subscription

subscribers = table_of(Subscriber)
subscriptions = table_of(Subscription)
engagement_events = table_of(EngagementEvent)
bounce_events = table_of(BounceEvent)

ATTR_OPS = ("eq", "ne", "in", "contains", "exists", "gt", "lt", "within", "before")
DATE_OPS = ("within", "before", "gt", "lt")
CHOICE_OPS = ("eq", "ne", "in")
# Engagement within a window: an EXISTS over the events of the subscriber (any campaign).
ENGAGEMENT_FIELDS = ("opened", "clicked", "bounced")
OPEN_AGENTS = ("human", "proxy")  # people; Apple's pre-fetches and scanners are machines
MAX_DEPTH = 20
MAX_NODES = 200

_DURATION = re.compile(r"([0-9]{1,6})([hdw])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?")
_NUMERIC_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")
_ATTR_NAME = re.compile(r"[^\"\\\x00-\x1f]{1,100}")
TRUE_TEXT = ("true", "True", "TRUE")
FALSE_TEXT = ("false", "False", "FALSE")


@dataclass(frozen=True)
class Leaf:
    """One condition: ``field`` is attr/subscribed/status/domain; ``kind`` the comparison type
    (text, number, bool, date, datetime, presence); ``value`` already normalised."""

    field: str
    op: str
    value: Any
    kind: str
    attr: str | None = None


@dataclass(frozen=True)
class Node:
    """``all`` / ``any`` over ``children``, or ``not`` over one child."""

    op: str
    children: tuple


class MatchAll:
    """The explicit "everyone on the list" filter (``{}`` with ``--all``)."""


def _bad(msg: str) -> InvalidInput:
    return InvalidInput(f"segment filter: {msg}")


def parse_duration(text: Any) -> timedelta:
    """``30d``, ``12h``, ``2w`` → timedelta; InvalidInput otherwise."""
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise _bad(f"duration {text!r} is invalid: use a number and h, d or w (e.g. 365d)")
    n, unit = int(m.group(1)), m.group(2)
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def _scalar_kind(op: str, v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        if v != v or v in (float("inf"), float("-inf")):
            raise _bad(f"{op}: {v!r} is not a finite number")
        return "number"
    if isinstance(v, str):
        return "text"
    raise _bad(f"{op}: {json.dumps(v)} is not a string, number or boolean")


def _parse_attr(d: dict) -> Leaf:
    name = d["attr"]
    if not isinstance(name, str) or not _ATTR_NAME.fullmatch(name):
        raise _bad(f"attribute name {name!r} is invalid (1-100 characters, no quotes, backslashes or control characters)")
    ops = [k for k in d if k != "attr"]
    unknown = [k for k in ops if k not in ATTR_OPS]
    if unknown:
        raise _bad(f"unknown operator {unknown[0]!r} on attribute {name!r} (known: {', '.join(ATTR_OPS)})")
    if len(ops) != 1:
        raise _bad(f"attribute {name!r} needs exactly one operator, got {len(ops)}")
    op = ops[0]
    v = d[op]
    if op in ("eq", "ne"):
        return Leaf("attr", op, v, _scalar_kind(op, v), name)
    if op == "in":
        if not isinstance(v, list) or not v:
            raise _bad(f"'in' on attribute {name!r} needs a non-empty list")
        kinds = {_scalar_kind("in", x) for x in v}
        if len(kinds) != 1:
            raise _bad(f"'in' on attribute {name!r} mixes value types ({', '.join(sorted(kinds))})")
        return Leaf("attr", op, tuple(v), kinds.pop(), name)
    if op == "contains":
        if not isinstance(v, str) or not v:
            raise _bad(f"'contains' on attribute {name!r} needs a non-empty string")
        return Leaf("attr", op, v, "text", name)
    if op == "exists":
        if not isinstance(v, bool):
            raise _bad(f"'exists' on attribute {name!r} needs true or false")
        return Leaf("attr", op, v, "presence", name)
    if op in ("gt", "lt"):
        if not isinstance(v, bool) and isinstance(v, (int, float)):
            return Leaf("attr", op, v, _scalar_kind(op, v), name)
        if isinstance(v, str) and _DATE.fullmatch(v):
            return Leaf("attr", op, _check_date(v), "date", name)
        raise _bad(f"{op!r} on attribute {name!r} needs a number or a date YYYY-MM-DD, got {json.dumps(v)}")
    if op == "within":
        return Leaf("attr", op, parse_duration(v), "date", name)
    # before: a date or a duration ("before": "30d" = earlier than 30 days ago)
    if isinstance(v, str) and _DATE.fullmatch(v):
        return Leaf("attr", op, _check_date(v), "date", name)
    return Leaf("attr", op, parse_duration(v), "date", name)


def _check_date(v: str) -> str:
    try:
        date.fromisoformat(v)
    except ValueError:
        raise _bad(f"{v!r} is not a valid date") from None
    return v


def _parse_moment(op: str, v: Any) -> Any:
    """A datetime (UTC) for gt/lt/before, a timedelta for within (and for before with a duration)."""
    if op == "within":
        return parse_duration(v)
    if isinstance(v, str) and _DATETIME.fullmatch(v):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(f"{v!r} is not a valid date or time") from None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    if op == "before":
        return parse_duration(v)
    raise _bad(f"{op!r} on the signup date needs a date (YYYY-MM-DD or an ISO time), got {json.dumps(v)}")


def _one_op(name: str, d: Any, allowed: tuple) -> tuple[str, Any]:
    if not isinstance(d, dict) or len(d) != 1:
        raise _bad(f"{name!r} needs an object with one operator ({', '.join(allowed)})")
    (op, v), = d.items()
    if op not in allowed:
        raise _bad(f"unknown operator {op!r} on {name!r} (known: {', '.join(allowed)})")
    return op, v


def _parse_choice(name: str, d: Any, check: Callable[[Any], str]) -> Leaf:
    op, v = _one_op(name, d, CHOICE_OPS)
    if op == "in":
        if not isinstance(v, list) or not v:
            raise _bad(f"'in' on {name!r} needs a non-empty list")
        return Leaf(name, op, tuple(check(x) for x in v), "text")
    return Leaf(name, op, check(v), "text")


def _status(v: Any) -> str:
    if v not in SUBSCRIPTION_STATUSES:
        raise _bad(f"status {v!r} is unknown (known: {', '.join(SUBSCRIPTION_STATUSES)})")
    return v


def _domain(v: Any) -> str:
    if not isinstance(v, str) or not _DOMAIN.fullmatch(v.lower()):
        raise _bad(f"domain {v!r} is invalid (e.g. example.com)")
    return v.lower()


def _parse_node(d: Any, depth: int, count: list) -> Any:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise _bad(f"too deep or too large (at most {MAX_DEPTH} levels and {MAX_NODES} conditions)")
    if not isinstance(d, dict):
        raise _bad(f"expected an object, got {json.dumps(d)[:60]}")
    if not d:
        raise _bad("an empty condition {} would match everyone: give --all to mean the whole list")
    if "attr" in d:
        return _parse_attr(d)
    if len(d) != 1:
        raise _bad(f"one key per condition, got {', '.join(map(repr, d))}")
    (key, v), = d.items()
    if key in ("all", "any"):
        if not isinstance(v, list) or not v:
            raise _bad(f"{key!r} needs a non-empty list of conditions")
        return Node(key, tuple(_parse_node(c, depth + 1, count) for c in v))
    if key == "not":
        return Node("not", (_parse_node(v, depth + 1, count),))
    if key == "subscribed":
        op, val = _one_op(key, v, DATE_OPS)
        m = _parse_moment(op, val)
        return Leaf(key, op, m, "datetime")
    if key == "status":
        return _parse_choice(key, v, _status)
    if key == "domain":
        return _parse_choice(key, v, _domain)
    if key in ENGAGEMENT_FIELDS:
        op, val = _one_op(key, v, ("within",))
        return Leaf(key, op, parse_duration(val), "datetime")
    raise _bad(f"unknown field {key!r} (known: all, any, not, attr, subscribed, status, domain, "
               "opened, clicked, bounced)")


def parse(text: str | dict, *, match_all: bool = False) -> Any:
    """Parse and check a filter (JSON text or an already-decoded object). ``{}``/empty text means
    "everyone on the list" and is refused unless ``match_all``; a non-empty filter with
    ``match_all`` is refused too (which one did you mean?)."""
    if isinstance(text, str):
        if not text.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise _bad(f"malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    else:
        data = text
    if data == {}:
        if not match_all:
            raise _bad("{} would match everyone on the list: give --all to mean that")
        return MatchAll()
    if match_all:
        raise _bad("--all means the whole list: give either --all or a filter, not both")
    return _parse_node(data, 0, [0])


def canonical(text: str | dict, *, match_all: bool = False) -> str:
    """The filter as compact JSON (what is stored and recorded on a campaign); checked first."""
    parse(text, match_all=match_all)
    data = json.loads(text) if isinstance(text, str) and text.strip() else (text if not isinstance(text, str) else {})
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# --- SQL -----------------------------------------------------------------------------------------


class _Json:
    """Dialect-specific access to one attribute of ``subscribers.attributes``."""

    def __init__(self, dialect: str, name: str):
        a = subscribers.c.attributes
        self.pg = dialect == "postgresql"
        self.name = name
        self.text: sa.ColumnElement[Any]
        if self.pg:
            key = literal(name, sa.Text())
            self.type = func.coalesce(func.json_typeof(a.op("->")(key)), "")
            self.text = a.op("->>", return_type=sa.Text())(key)
        else:
            path = literal('$."' + name + '"', sa.Text())
            self.type = func.coalesce(func.json_type(a, path), "")
            self.text = func.json_extract(a, path)

    def is_string(self):
        return self.type == ("string" if self.pg else "text")

    def is_number(self):
        return self.type == "number" if self.pg else self.type.in_(("integer", "real"))

    def is_bool(self, v: bool):
        if self.pg:
            return and_(self.type == "boolean", self.text == ("true" if v else "false"))
        return self.type == ("true" if v else "false")

    def numeric_text(self):
        if self.pg:
            return self.text.op("~")(literal(r"^-?[0-9]+(\.[0-9]+)?$"))
        # SQLite has no regex: GLOB checks spell out -?[0-9]+(\.[0-9]+)?
        t = case((func.substr(self.text, 1, 1) == "-", func.substr(self.text, 2)), else_=self.text)
        return and_(t.op("GLOB")("[0-9]*"), not_(t.op("GLOB")("*[^0-9.]*")),
                    not_(t.op("GLOB")("*.*.*")), not_(t.op("GLOB")("*.")))

    def number(self):
        return sa.cast(self.text, sa.Float(precision=53))

    def date_text(self):
        if self.pg:
            return self.text.op("~")(literal("^[0-9]{4}-[0-9]{2}-[0-9]{2}"))
        return self.text.op("GLOB")("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*")

    def date(self):
        d = func.substr(self.text, 1, 10)
        return sa.collate(d, "C") if self.pg else d

    def array_has(self, v: str):
        a = subscribers.c.attributes
        if self.pg:
            el = func.json_array_elements(a.op("->")(literal(self.name, sa.Text()))).table_valued("value").alias("el")
            return sa.exists(sa.select(literal(1)).select_from(el).where(
                func.json_typeof(el.c.value) == "string",
                el.c.value.op("#>>", return_type=sa.Text())(sa.cast(literal("{}"), ARRAY(sa.Text()))) == v))
        el = func.json_each(a, literal('$."' + self.name + '"', sa.Text())).table_valued("type", "value").alias("el")
        return sa.exists(sa.select(literal(1)).select_from(el).where(el.c.type == "text", el.c.value == v))


def _guarded(guard, comparison):
    return case((guard, comparison), else_=false())


def _attr_sql(leaf: Leaf, dialect: str, now: datetime):
    if leaf.attr is None:
        raise ValueError(f"an attribute condition without an attribute name: {leaf!r}")
    j = _Json(dialect, leaf.attr)
    op, v, kind = leaf.op, leaf.value, leaf.kind
    if op == "exists":
        present = and_(j.type != "", j.type != "null")
        return present if v else not_(present)
    if op == "ne":
        return not_(_attr_sql(Leaf("attr", "eq", v, kind, leaf.attr), dialect, now))
    if op == "in":
        return or_(*[_attr_sql(Leaf("attr", "eq", x, kind, leaf.attr), dialect, now) for x in v])
    if op == "contains":
        find = func.strpos(j.text, v) if j.pg else func.instr(j.text, v)
        return or_(_guarded(j.is_string(), find > 0), _guarded(j.type == "array", j.array_has(v)))
    if kind == "text":  # eq: the cheap comparison first (PostgreSQL then rarely needs the type)
        return func.coalesce(and_(j.text == v, j.is_string()), false())
    if kind == "bool":  # eq
        return or_(j.is_bool(v), _guarded(j.is_string(), j.text.in_(TRUE_TEXT if v else FALSE_TEXT)))
    if kind == "number":
        n = j.number()
        cmp = {"eq": n == float(v), "gt": n > float(v), "lt": n < float(v)}[op]
        if j.pg:  # ->> text of a plain decimal is a number or a numeric string: no type lookup needed
            return case((j.numeric_text(), cmp), (j.is_number(), cmp), else_=false())
        return _guarded(or_(j.is_number(), and_(j.is_string(), j.numeric_text())), cmp)
    # date: gt / lt / before / within on an attribute whose text starts with YYYY-MM-DD
    bound = _date_bound(v, now)
    d = j.date()
    cmp = d > bound if op == "gt" else (d >= bound if op == "within" else d < bound)
    # only a string's text can start with YYYY-MM-DD on PostgreSQL (->> of a number cannot)
    return _guarded(j.date_text() if j.pg else and_(j.is_string(), j.date_text()), cmp)


def _date_bound(v: Any, now: datetime) -> str:
    return (now - v).date().isoformat() if isinstance(v, timedelta) else v


def _moment(v: Any, now: datetime) -> datetime:
    return now - v if isinstance(v, timedelta) else v


def _leaf_sql(leaf: Leaf, dialect: str, now: datetime):
    if leaf.field == "attr":
        return _attr_sql(leaf, dialect, now)
    if leaf.field == "subscribed":
        col = subscriptions.c.created_at
        t = _moment(leaf.value, now)
        return {"gt": col > t, "lt": col < t, "before": col < t, "within": col >= t}[leaf.op]
    if leaf.field in ENGAGEMENT_FIELDS:
        t = now - leaf.value
        if leaf.field == "bounced":
            b = bounce_events.c
            return sa.exists().where(b.subscriber_id == subscribers.c.id, b.kind.in_(("hard", "soft")), b.occurred_at >= t)
        e = engagement_events.c
        kind, agents = ("open", OPEN_AGENTS) if leaf.field == "opened" else ("click", ("human",))
        return sa.exists().where(e.subscriber_id == subscribers.c.id, e.kind == kind, e.agent.in_(agents),
                                 e.occurred_at >= t)
    if leaf.field == "status":
        col = subscriptions.c.status
        return {"eq": lambda: col == leaf.value, "ne": lambda: col != leaf.value,
                "in": lambda: col.in_(leaf.value)}[leaf.op]()
    # domain: the address's domain; only [a-z0-9.-] reach here, so LIKE has no wildcard to abuse
    key = subscribers.c.email_key
    values = leaf.value if leaf.op == "in" else (leaf.value,)
    hit = or_(*[key.like(literal("%@") + literal(x)) for x in values])
    return not_(hit) if leaf.op == "ne" else hit


def to_sql(tree: Any, dialect: str, now: datetime):
    """The SQLAlchemy condition (over ``subscribers`` and ``subscriptions``) for a parsed filter;
    None for MatchAll. ``now`` fixes what "within 30d" means."""
    if isinstance(tree, MatchAll):
        return None
    if isinstance(tree, Leaf):
        return _leaf_sql(tree, dialect, now)
    parts = [to_sql(c, dialect, now) for c in tree.children]
    if tree.op == "all":
        return and_(*parts)
    if tree.op == "any":
        return or_(*parts)
    return not_(parts[0])


# --- Python (the reference semantics) -------------------------------------------------------------


def _py_attr(leaf: Leaf, attrs: dict, now: datetime) -> bool:
    op, v, kind = leaf.op, leaf.value, leaf.kind
    present = leaf.attr in attrs
    x = attrs.get(leaf.attr)
    if op == "exists":
        return (present and x is not None) == v
    if op == "ne":
        return not _py_attr(Leaf("attr", "eq", v, kind, leaf.attr), attrs, now)
    if op == "in":
        return any(_py_attr(Leaf("attr", "eq", e, kind, leaf.attr), attrs, now) for e in v)
    if op == "contains":
        if isinstance(x, str):
            return v in x
        return isinstance(x, list) and any(isinstance(e, str) and e == v for e in x)
    if kind == "text":
        return isinstance(x, str) and x == v
    if kind == "bool":
        return (isinstance(x, bool) and x is v) or (isinstance(x, str) and x in (TRUE_TEXT if v else FALSE_TEXT))
    if kind == "number":
        if isinstance(x, bool):
            return False
        if isinstance(x, (int, float)):
            n = float(x)
        elif isinstance(x, str) and _NUMERIC_TEXT.fullmatch(x):
            n = float(x)
        else:
            return False
        return {"eq": n == float(v), "gt": n > float(v), "lt": n < float(v)}[op]
    if not (isinstance(x, str) and _DATE_PREFIX.match(x)):
        return False
    d, bound = x[:10], _date_bound(v, now)
    return d > bound if op == "gt" else (d >= bound if op == "within" else d < bound)


def evaluate(tree: Any, *, attributes: dict, subscribed_at: datetime, status: str, email_key: str,
             now: datetime, events: dict | None = None) -> bool:
    """Whether one subscription matches: the pure-Python meaning of the filter, which the SQL
    must agree with (tests/test_segments_property.py holds it to that). ``events`` maps
    ``opened``/``clicked``/``bounced`` to when the person did so (people only, as the SQL counts)."""
    if isinstance(tree, MatchAll):
        return True
    if isinstance(tree, Node):
        rs = (evaluate(c, attributes=attributes, subscribed_at=subscribed_at, status=status,
                       email_key=email_key, now=now, events=events) for c in tree.children)
        if tree.op == "all":
            return all(rs)
        if tree.op == "any":
            return any(rs)
        return not next(rs)
    if tree.field == "attr":
        return _py_attr(tree, attributes or {}, now)
    if tree.field == "subscribed":
        t = _moment(tree.value, now)
        return {"gt": subscribed_at > t, "lt": subscribed_at < t, "before": subscribed_at < t,
                "within": subscribed_at >= t}[tree.op]
    if tree.field in ENGAGEMENT_FIELDS:
        return any(t >= now - tree.value for t in (events or {}).get(tree.field, ()))
    if tree.field == "status":
        return {"eq": status == tree.value, "ne": status != tree.value, "in": status in tree.value}[tree.op]
    values = tree.value if tree.op == "in" else (tree.value,)
    hit = any(email_key.endswith("@" + x) for x in values)
    return not hit if tree.op == "ne" else hit
