"""Import subscribers from CSV or JSON Lines into a list: streaming, in batches, resumable.

The file is read twice. The first pass only checks it (encoding, CSV structure, an email
column) so a malformed file changes nothing. The second pass — in a child process for large
files, so it runs on another core — validates each address and merges duplicates into batches;
each batch is written in one transaction (SQLite: bulk statements on a JSON array of keys;
PostgreSQL: one COPY into a temporary table, two batches at a time on two connections).
Memory stays constant whatever the file size; a killed import leaves whole batches, and
running it again finishes the job without duplicates. Nobody unsubscribed, bounced, complained
or suppressed is re-subscribed unless ``resubscribe`` (fresh consent) is given — and
suppression never yields.
"""

from __future__ import annotations

import codecs
import csv
import json
from json.encoder import encode_basestring as _quote
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from sqlalchemy.engine import Engine

from ..errors import InvalidInput, NewsletterError
from .addresses import AddressError, domain_of, normalize_email
from .db import transaction
from .models import OPTED_OUT_STATUSES, utcnow
from .subscribers import EXPORT_MARKER, _list_row, safe_cell, unguard_cell
from .textrules import (
    MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTE_NAMES_PER_FILE, MAX_COLUMNS, attributes_problem, check_text, control_problem,
)

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(attrs: dict[str, Any]) -> str:
    """Compact JSON for an attributes dict; CSV values are all strings, which take a faster path."""
    if all(type(v) is str for v in attrs.values()):
        return "{" + ",".join(_quote(k) + ":" + _quote(v) for k, v in attrs.items()) + "}"
    return _encode(attrs)


DEFAULT_BATCH_SIZE = 5000
MAX_REJECTS_KEPT = 1000  # in the report; the .rejects.csv file has them all
FIELDS = ("email", "name", "status")
# Header names understood without --map (compared lowercased, spaces and '-' folded to '_').
ALIASES = {"email": "email", "e_mail": "email", "email_address": "email", "mail": "email",
           "name": "name", "full_name": "name", "status": "status"}
# Columns our own export writes that are not attributes.
EXPORT_COLUMNS = {"lists", "consent_source", "created_at", EXPORT_MARKER}
STATUS_VALUES = {"": None, "active": None, "subscribed": None, "unconfirmed": None,
                 "unsubscribed": "unsubscribed", "bounced": "bounced", "complained": "complained"}


@dataclass
class ImportOptions:
    """How to read the file and what to do with people already known."""

    list_slug: str
    format: str | None = None  # "csv" | "jsonl" | None (from the file extension)
    encoding: str | None = None  # default: UTF-8 with or without BOM
    mapping: dict[str, str] = field(default_factory=dict)  # column -> email | name | status | attr:NAME | - (ignore)
    delimiter: str = ","
    resubscribe: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    source: str | None = None  # consent source recorded on new subscribers (default "import:<file name>")
    rejects_path: str | os.PathLike | None = None  # default: <input stem>.rejects.csv beside it (a.csv -> a.rejects.csv)


@dataclass
class Reject:
    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did; ``rejects`` keeps the first MAX_REJECTS_KEPT, the file has all."""

    path: str
    list_slug: str
    read: int = 0
    added: int = 0
    updated: int = 0
    already_present: int = 0
    invalid: int = 0
    duplicates_in_file: int = 0
    skipped_unsubscribed: int = 0
    skipped_suppressed: int = 0
    recorded_unsubscribed: int = 0
    resubscribed: int = 0
    unconfirmed: int = 0
    batches: int = 0
    rejects: list[Reject] = field(default_factory=list)
    rejects_path: str | None = None


# ---------------------------------------------------------------- reading


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise InvalidInput(f"import format {fmt!r} is invalid: use csv or jsonl")
        return fmt
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _codec(path: Path, encoding: str | None) -> str:
    enc = encoding or "utf-8-sig"
    try:
        info = codecs.lookup(enc)
    except LookupError:
        raise InvalidInput(f"{path}: unknown encoding {enc!r}") from None
    return "utf-8-sig" if info.name == "utf-8" else info.name


def _lines(path: Path, encoding: str | None) -> Iterator[str]:
    """Decoded lines (with their newline); a byte that does not decode is a one-line error with its line number."""
    enc = _codec(path, encoding)
    try:
        f = open(path, "r", encoding=enc, newline="", errors="strict")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror}") from None
    with f:
        try:
            yield from f
        except UnicodeDecodeError as e:
            raise InvalidInput(_decode_problem(path, enc, encoding, e)) from None


def _decode_problem(path: Path, enc: str, given: str | None, err: UnicodeDecodeError) -> str:
    """Say on which line the first undecodable byte is (found by a second, slower scan)."""
    hint = "" if given else "; the file is not UTF-8: pass --encoding (e.g. --encoding cp1252)"
    if not enc.startswith(("utf-16", "utf-32")):
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    raw.decode(enc)
                except UnicodeDecodeError as e:
                    if number == 1 and raw.startswith(codecs.BOM_UTF8):
                        continue
                    return f"{path}: line {number}: cannot decode byte 0x{raw[e.start]:02x} as {enc}{hint}"
    return f"{path}: cannot decode as {enc}: {err.reason}{hint}"


def _norm_header(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", "_").split())


def _our_export_plan(header: list[str]) -> list[tuple[str, str]] | None:
    """The columns of a file written by ``export_csv`` (its header ends with EXPORT_MARKER), taken
    by position: attribute names exactly as exported, no aliases; None for any other file."""
    if len(header) < 6 or header[-1] != EXPORT_MARKER or header[:2] != ["email", "name"] \
            or header[2] not in ("status", "lists") or header[3:5] != ["consent_source", "created_at"]:
        return None
    first = [("email", ""), ("name", ""), ("status" if header[2] == "status" else "skip", ""), ("skip", ""), ("skip", "")]
    return first + [("attr", h) if h else ("skip", "") for h in header[5:-1]] + [("skip", "")]


def _plan_columns(path: Path, header: list[str], mapping: dict[str, str], delimiter: str) -> list[tuple[str, str]]:
    """For each column: ("email"|"name"|"status"|"attr"|"skip", attribute name)."""
    if not header or all(not h.strip() for h in header):
        raise InvalidInput(f"{path}: the first line must be a header naming the columns (e.g. email,name)")
    if len(header) > MAX_COLUMNS:
        raise InvalidInput(f"{path}: the header has {len(header)} columns: at most {MAX_COLUMNS}")
    for number, h in enumerate(header, 1):
        problem = control_problem(h)
        if problem:
            raise InvalidInput(f"{path}: column {number}'s name {problem}")
        if len(h.strip()) > MAX_ATTRIBUTE_NAME:
            raise InvalidInput(f"{path}: column {number}'s name is longer than {MAX_ATTRIBUTE_NAME} characters")
    mapping_l = {k.strip().lower(): v for k, v in mapping.items()}
    known = {h.strip().lower() for h in header}
    for col in mapping_l:
        if col not in known:
            raise InvalidInput(f"{path}: --map names column {col!r}, which is not in the header ({', '.join(h.strip() for h in header)})")
    if not mapping:
        ours = _our_export_plan(header)
        if ours is not None:
            return ours
    plan, seen = [], set()
    for h in header:
        target = mapping_l.get(h.strip().lower())
        if target is None:
            field_ = ALIASES.get(_norm_header(h))
            if field_ is not None and field_ not in seen:
                plan.append((field_, ""))
                seen.add(field_)
            elif _norm_header(h) in EXPORT_COLUMNS or not h.strip():
                plan.append(("skip", ""))
            else:
                plan.append(("attr", h.strip()))
        elif target in ("-", "ignore", "skip"):
            plan.append(("skip", ""))
        elif target in FIELDS:
            if target in seen:
                raise InvalidInput(f"{path}: two columns map to {target!r}")
            plan.append((target, ""))
            seen.add(target)
        elif target.startswith("attr:") and target[5:].strip():
            plan.append(("attr", target[5:].strip()))
        else:
            raise InvalidInput(f"--map {h.strip()}={target}: the field must be email, name, status, attr:NAME or - (ignore)")
    if "email" not in seen:
        shown = delimiter.join(header)
        guess = next((d for d in (";", "\t", "|", ",") if d != delimiter and d in shown), None)
        hint = f"; the header contains {guess!r}: wrong delimiter? pass --delimiter {guess!r}" if guess else "; name it 'email' or pass --map COLUMN=email"
        raise InvalidInput(f"{path}: no email column in header {shown[:120]!r}{hint}")
    return plan


Row = tuple[int, str, str, str, "dict[str, Any] | None"]


def _csv_rows(path: Path, opts: ImportOptions, build: bool = True) -> Iterator[Row]:
    """(line number, email, name, status, attributes) for each data row; raises on structural problems.
    With ``build=False`` only the structure is checked (attributes is None)."""
    if len(opts.delimiter) != 1:
        raise InvalidInput(f"--delimiter must be one character, not {opts.delimiter!r}")
    reader = csv.reader(_lines(path, opts.encoding), delimiter=opts.delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInput(f"{path}: the file is empty (expected a header line such as email,name)")
        ours = bool(header) and header[-1] == EXPORT_MARKER  # our export: take off the CSV-injection guard
        if ours:
            header = [unguard_cell(h) for h in header[:-1]] + [EXPORT_MARKER]
        plan = _plan_columns(path, header, opts.mapping, opts.delimiter)
        fields = {kind: i for i, (kind, _) in enumerate(plan) if kind in FIELDS}
        email_i, name_i, status_i = fields["email"], fields.get("name"), fields.get("status")
        attr_cols = [(i, attr) for i, (kind, attr) in enumerate(plan) if kind == "attr"]
        width = len(header)
        start = reader.line_num
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                start = reader.line_num
                continue
            if len(row) != width:
                raise InvalidInput(
                    f"{path}: line {start + 1}: {len(row)} fields where the header has {width} "
                    "(unbalanced quote or wrong delimiter?)"
                )
            if ours:
                row = [unguard_cell(c) for c in row]
            if build:
                yield (
                    start + 1,
                    row[email_i],
                    row[name_i] if name_i is not None else "",
                    row[status_i] if status_i is not None else "",
                    {a: row[i] for i, a in attr_cols if row[i] != ""},
                )
            else:
                yield start + 1, "", "", "", None
            start = reader.line_num
    except csv.Error as e:
        raise InvalidInput(f"{path}: line {reader.line_num}: malformed CSV: {e} (unbalanced quote?)") from None


class BadLine(NamedTuple):
    """A JSON Lines line that is not a JSON object: rejected like an invalid address, not fatal."""

    line: int
    text: str  # the line as written (shortened), for the report and the rejects file
    reason: str


def _jsonl_rows(path: Path, opts: ImportOptions, build: bool = True) -> Iterator["Row | BadLine"]:
    """Rows of a JSON Lines file. A line that is not a JSON object comes out as a BadLine, except
    the first non-blank line: when that is not an object the file is refused as not JSON Lines."""
    mapping = {k.strip(): v for k, v in opts.mapping.items()}
    first = True
    for number, line in enumerate(_lines(path, opts.encoding), 1):
        if not line.strip():
            continue
        deep = False
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else f"not a JSON object (a JSON {_json_kind(obj)})"
        except json.JSONDecodeError as e:
            problem = f"invalid JSON: {e.msg} (column {e.colno})"
        except RecursionError:  # still a JSON Lines file: this one line is rejected
            problem, deep = "JSON nested too deeply", True
        if problem is not None:
            if first and not deep:
                raise InvalidInput(
                    f"{path}: line {number}: {problem}: not a JSON Lines file (one {{...}} object per line)"
                )
            text = line.strip()
            yield BadLine(number, text if len(text) <= 80 else text[:77] + "...", problem)
            continue
        first = False
        rec: dict[str, Any] = {"attrs": {}}
        for k, v in obj.items():
            target = mapping.get(k)
            if target is None:
                target = ALIASES.get(_norm_header(k))
                if target is None:
                    target = "-" if _norm_header(k) in EXPORT_COLUMNS else "attr:" + k
            if target in ("-", "ignore", "skip"):
                continue
            if target in FIELDS:
                rec[target] = "" if v is None else (v if isinstance(v, str) else str(v))
            elif target.startswith("attr:"):
                if k == "attributes" and isinstance(v, dict) and target == "attr:attributes":
                    rec["attrs"].update(v)
                elif v is not None and v != "":
                    rec["attrs"][target[5:]] = v
            else:
                raise InvalidInput(f"--map {k}={target}: the field must be email, name, status, attr:NAME or - (ignore)")
        yield number, rec.get("email", ""), rec.get("name", ""), rec.get("status", ""), rec["attrs"]


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _rows(path: Path, opts: ImportOptions, fmt: str, build: bool = True) -> Iterator[Row]:
    return _jsonl_rows(path, opts, build) if fmt == "jsonl" else _csv_rows(path, opts, build)


def check_file(path: str | os.PathLike, opts: ImportOptions) -> int:
    """Read the whole file once without touching the database; returns the number of data rows.

    Raises InvalidInput (one line, with the line number) for a bad encoding, malformed CSV,
    a JSON Lines file whose first line is not a JSON object, or a missing email column. Later
    JSON lines that are not objects are counted here and rejected one by one by the import."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInput(f"{p}: is a directory, not a file")
    n = 0
    for _ in _rows(p, opts, _detect_format(p, opts.format), build=False):
        n += 1
    return n


# ---------------------------------------------------------------- writing


IMPORT_SQLITE_CACHE_KIB = 32768  # 32 MiB


def _may_skip_fk_triggers(engine: Engine) -> bool:
    """PostgreSQL: may the insert of new people skip the per-row foreign-key triggers?

    Only when this role may ``SET session_replication_role`` (a superuser, or granted SET on it)
    and the two tables have no triggers or rules besides the foreign keys' own, so that nothing
    a DBA added (an audit trigger, say) is ever bypassed. Otherwise the triggers run."""
    from sqlalchemy import exc as sa_exc

    try:
        with engine.begin() as conn:
            extra = conn.exec_driver_sql(
                "select (select count(*) from pg_trigger where not tgisinternal and tgrelid in "
                "('subscribers'::regclass, 'subscriptions'::regclass)) + (select count(*) from pg_rules "
                "where schemaname = current_schema() and tablename in ('subscribers', 'subscriptions'))"
            ).scalar()
            if extra:
                return False
            conn.exec_driver_sql("set local session_replication_role = replica")
            return True
    except sa_exc.DBAPIError:  # not allowed: the normal path
        return False


class _SQL:
    """The handful of bulk statements an import batch runs, as raw driver SQL for speed.

    Going below SQLAlchemy's per-value type processing makes imports several times faster.
    SQLite gets a batch's keys as one JSON array (``json_each``) and rows through ``executemany``.
    PostgreSQL gets the whole batch in one COPY, formatted by the reader process, into a
    transaction-local temporary table that every statement reads; new people are inserted and
    subscribed in one statement (``RETURNING`` feeds the subscriptions insert)."""

    _TEMP = (
        "create temp table if not exists nl_imp_batch (e text, k text, n text, a text, st text) on commit delete rows;"
        "create temp table if not exists nl_imp_upd (i int, n text, a text) on commit delete rows;"
        "create temp table if not exists nl_imp_subs (s int, st text) on commit delete rows"
    )

    def __init__(self, engine: Engine):
        self.pg = engine.dialect.name == "postgresql"
        self.p = "%s" if self.pg else "?"
        self._keys_json = "[]"
        self.skip_fk_triggers = self.pg and _may_skip_fk_triggers(engine)

    def ts(self, now: datetime):
        # SQLite: the text format SQLAlchemy's DateTime reads back; PostgreSQL: timestamptz.
        return now if self.pg else now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def begin(self, conn, keys: list[str], copy: bytes | None) -> None:
        """Start a batch whose address keys are ``keys`` (PostgreSQL: whose rows are ``copy``)."""
        if self.pg:
            conn.exec_driver_sql(self._TEMP)
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cur, cur.copy("copy nl_imp_batch from stdin") as cp:
                cp.write(copy)
        else:
            # Only a bulk import wants a big page cache (the email index stays hot); other
            # connections keep SQLite's small default, so a sender's memory does not grow with the list.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_SQLITE_CACHE_KIB}")
            self._keys_json = json.dumps(keys)

    def drop_keys(self, conn, keys: set[str]) -> None:
        """Leave ``keys`` (suppressed) out of the rest of the batch."""
        if self.pg:
            conn.exec_driver_sql("delete from nl_imp_batch where k = any(%s)", (list(keys),))
        else:
            self._keys_json = json.dumps([k for k in json.loads(self._keys_json) if k not in keys])

    def _fill(self, conn, table: str, rows, analyze: bool = False) -> None:
        """PostgreSQL: replace the rows of a temp table with ``rows`` (tuples) through COPY."""
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(f"delete from {table}")
            with cur.copy(f"copy {table} from stdin") as cp:
                for row in rows:
                    cp.write_row(row)
            if analyze:  # temp tables have no statistics: without them an UPDATE ... FROM scans the whole table
                cur.execute(f"analyze {table}")

    def _batch_keys(self, column: str) -> tuple[str, tuple]:
        """SQL condition: ``column`` is one of this batch's keys; and its parameters."""
        if self.pg:
            return f"{column} in (select k from nl_imp_batch)", ()
        return f"{column} in (select value from json_each(?))", (self._keys_json,)

    def suppressed_addresses(self, conn) -> set[str]:
        if conn.exec_driver_sql("select 1 from suppressions where kind = 'address' limit 1").first() is None:
            return set()
        cond, params = self._batch_keys("value")
        return {r[0] for r in conn.exec_driver_sql(f"select value from suppressions where kind = 'address' and {cond}", params)}

    def suppressed_domains(self, conn) -> set[str]:
        return {r[0] for r in conn.exec_driver_sql("select value from suppressions where kind = 'domain'")}

    def existing(self, conn, list_id: int) -> dict[str, tuple]:
        """The batch's people already stored: key -> (id, name, attributes as JSON text, and their
        subscription to ``list_id``: id and status, or None, None), in one query."""
        cond, params = self._batch_keys("u.email_key")
        attrs = "u.attributes::text" if self.pg else "u.attributes"
        sql = (f"select u.id, u.email_key, u.name, {attrs}, s.id, s.status from subscribers u "
               f"left join subscriptions s on s.subscriber_id = u.id and s.list_id = {self.p} where {cond}")
        return {key: (sid, name, text or "{}", sub_id, status)
                for sid, key, name, text, sub_id, status in conn.exec_driver_sql(sql, (list_id, *params))}

    def ids(self, conn) -> dict[str, int]:
        cond, params = self._batch_keys("email_key")
        return dict(conn.exec_driver_sql(f"select email_key, id from subscribers where {cond}", params).all())

    _SUBSCRIBER_COLS = "(email, email_key, name, attributes, consent_source, consent_at, created_at, updated_at)"
    _SUBSCRIPTION_COLS = "(subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at)"

    def insert_subscribers(self, conn, rows: list[tuple], source: str, now) -> None:
        """Insert new people who come with a status of their own (rows: email, email_key, name,
        attributes_json; PostgreSQL takes them from the batch table, where they have a status)."""
        if self.pg:
            conn.exec_driver_sql(
                f"insert into subscribers {self._SUBSCRIBER_COLS} select e, k, n, a::json, %s, %s, %s, %s "
                "from nl_imp_batch where st is not null on conflict (email_key) do nothing",
                (source, now, now, now),
            )
        else:
            conn.exec_driver_sql(
                f"insert into subscribers {self._SUBSCRIBER_COLS} values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (email_key) do nothing",
                [(e, k, n, a, source, now, now, now) for e, k, n, a in rows],
            )

    def insert_and_subscribe(self, conn, rows: list[tuple], list_id: int, status: str, source: str, now,
                             stored: list[str]) -> None:
        """Insert the new people without a status of their own (rows: email, email_key, name,
        attributes_json) and subscribe them with ``status``; ``stored`` are the batch's other
        status-less keys, people already stored.

        PostgreSQL takes the rows from the batch table, leaving out ``stored``: no ON CONFLICT
        (speculative insertion costs ~35 % of a row's insert); a person stored meanwhile by a
        concurrent import raises _Retry instead. Where allowed (see ``_may_skip_fk_triggers``) the
        statement runs without the per-row foreign-key triggers, which cost 40 % of it: every
        subscription it writes points at a subscriber the same statement created, and at the list
        locked here just as the trigger would lock it, so each check could only pass."""
        from sqlalchemy import exc as sa_exc

        confirmed = now if status == "active" else None
        if self.pg:
            if self.skip_fk_triggers:
                conn.exec_driver_sql("select id from lists where id = %s for key share", (list_id,))
                conn.exec_driver_sql("set local session_replication_role = replica")
            leave_out = " and k <> all(%s)" if stored else ""
            try:
                conn.exec_driver_sql(
                    f"with ins as (insert into subscribers {self._SUBSCRIBER_COLS} "
                    f"select e, k, n, a::json, %s, %s, %s, %s from nl_imp_batch where st is null{leave_out} returning id) "
                    f"insert into subscriptions {self._SUBSCRIPTION_COLS} select id, %s, %s, %s, %s, %s, %s from ins",
                    (source, now, now, now, *([stored] if stored else []), list_id, status, source, now, now, confirmed),
                )
            except sa_exc.IntegrityError as e:
                if getattr(e.orig, "sqlstate", "") == "23505":  # unique_violation
                    raise _Retry() from None
                raise
            if self.skip_fk_triggers:
                conn.exec_driver_sql("set local session_replication_role = origin")
            return
        self.insert_subscribers(conn, rows, source, now)
        conn.exec_driver_sql(
            f"insert into subscriptions {self._SUBSCRIPTION_COLS} select id, ?, ?, ?, ?, ?, ? from subscribers "
            "where email_key in (select value from json_each(?)) on conflict (subscriber_id, list_id) do nothing",
            (list_id, status, source, now, now, confirmed, json.dumps([r[1] for r in rows])),
        )

    def update_subscribers(self, conn, rows: list[tuple], now) -> None:
        """rows: (id, name, attributes_json)."""
        if self.pg:
            self._fill(conn, "nl_imp_upd", rows, analyze=True)
            conn.exec_driver_sql(
                "update subscribers set name = v.n, attributes = v.a::json, updated_at = %s "
                "from nl_imp_upd as v where subscribers.id = v.i",
                (now,),
            )
        else:
            conn.exec_driver_sql(
                "update subscribers set name = ?, attributes = ?, updated_at = ? where id = ?",
                [(n, a, now, i) for i, n, a in rows],
            )

    _OPTED_OUT_SQL = "('unsubscribed', 'bounced', 'complained')"

    def insert_subscriptions(self, conn, list_id: int, source: str, now, rows: list[tuple]) -> None:
        """rows: (subscriber_id, status); confirmed_at/unsubscribed_at follow from the status."""
        cols = "(subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at, unsubscribed_at)"
        if self.pg:
            self._fill(conn, "nl_imp_subs", rows)
            conn.exec_driver_sql(
                f"insert into subscriptions {cols} select s, %s, st, %s, %s, %s, "
                f"case when st = 'active' then %s::timestamptz end, case when st in {self._OPTED_OUT_SQL} then %s::timestamptz end "
                "from nl_imp_subs on conflict (subscriber_id, list_id) do nothing",
                (list_id, source, now, now, now, now),
            )
        else:
            conn.exec_driver_sql(
                f"insert into subscriptions {cols} values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (subscriber_id, list_id) do nothing",
                [(sid, list_id, st, source, now, now, now if st == "active" else None,
                  now if st in OPTED_OUT_STATUSES else None) for sid, st in rows],
            )

    def update_subscriptions(self, conn, rows: list[tuple]) -> None:
        """rows: (subscription id, status, updated_at, confirmed_at, unsubscribed_at)."""
        p = self.p
        conn.exec_driver_sql(
            # A re-subscription awaiting confirmation gets a fresh confirmation email: forget the old one.
            f"update subscriptions set status = {p}, updated_at = {p}, confirmed_at = {p}, unsubscribed_at = {p}, "
            f"confirmation_sent_at = case when {p} = 'unconfirmed' then null else confirmation_sent_at end where id = {p}",
            [(st, up, cf, un, st, i) for i, st, up, cf, un in rows],
        )


class _Retry(Exception):
    """A batch met a person stored meanwhile by a concurrent import: roll it back and redo it."""


_COUNTERS = ("added", "updated", "already_present", "skipped_unsubscribed", "skipped_suppressed",
             "recorded_unsubscribed", "resubscribed", "unconfirmed", "batches")


class _Writer:
    """Writes batches; holds only per-import constants, never rows."""

    def __init__(self, engine: Engine, list_id: int, opt_in: str, opts: ImportOptions, source: str, report: ImportReport):
        self.engine = engine
        self.list_id = list_id
        self.fresh = "unconfirmed" if opt_in == "double" else "active"
        self.opts = opts
        self.source = source
        self.report = report
        self.sql = _SQL(engine)
        self.lock = threading.Lock()  # PostgreSQL writes two batches at once

    def write(self, rows: list[tuple], copy: bytes | None = None) -> None:
        """Write one batch of (email, key, name, attributes JSON, status) rows, already merged by
        key, in one transaction (``copy``: the same rows as COPY text, for PostgreSQL). When a
        concurrent import stored one of these people between our lookup and our insert, the
        batch is rolled back and done again, so it sees them as already stored."""
        if self.sql.pg and copy is None:
            copy = copy_text(rows)
        for attempt in range(1, 4):
            delta = ImportReport(path=self.report.path, list_slug=self.report.list_slug)
            try:
                self._write(rows, copy, delta)
            except _Retry:
                if attempt == 3:
                    raise InvalidInput(f"{self.report.path}: another import keeps storing the same people at the "
                                       "same time; run this import again when it has finished") from None
                continue
            with self.lock:
                for name in _COUNTERS:
                    setattr(self.report, name, getattr(self.report, name) + getattr(delta, name))
            return

    def _write(self, rows: list[tuple], copy: bytes | None, report: ImportReport) -> None:
        sql = self.sql
        merged = {r[1]: r for r in rows}
        keys = list(merged)
        now = sql.ts(utcnow())
        with transaction(self.engine) as conn:
            sql.begin(conn, keys, copy)
            suppressed = sql.suppressed_addresses(conn)
            domains = sql.suppressed_domains(conn)
            if domains:
                suppressed.update(k for k in keys if domain_of(k) in domains)
            if suppressed:
                report.skipped_suppressed += len(suppressed)
                for k in suppressed:
                    del merged[k]
                keys = list(merged)
                sql.drop_keys(conn, suppressed)
            if not keys:
                report.batches += 1
                return

            existing = {k: v for k, v in sql.existing(conn, self.list_id).items() if k in merged}
            ids = {key: v[0] for key, v in existing.items()}
            subs = {v[0]: (v[3], v[4]) for v in existing.values() if v[3] is not None}
            new = [merged[k] for k in keys if k not in existing]
            if new:
                plain = [r[:4] for r in new if r[4] is None]  # no status of their own: the list's fresh status
                special = [r[:4] for r in new if r[4] is not None]
                if plain:
                    stored = [k for k, v in existing.items() if merged[k][4] is None]
                    sql.insert_and_subscribe(conn, plain, self.list_id, self.fresh, self.source, now, stored)
                    report.added += len(plain)
                    if self.fresh == "unconfirmed":
                        report.unconfirmed += len(plain)
                    done = {r[1] for r in plain}
                    keys = [k for k in keys if k not in done]
                if special:
                    sql.insert_subscribers(conn, special, self.source, now)
                    wanted = {r[1] for r in special}
                    ids.update((k, i) for k, i in sql.ids(conn).items() if k in wanted)

            changed: dict[int, tuple] = {}
            for key, (sid, old_name, old_text, _, _) in existing.items():
                _, _, new_name, new_text, _ = merged[key]
                name = new_name or old_name
                text = old_text
                if new_text != "{}" and new_text != old_text:  # the same JSON text: nothing to merge
                    old_attrs = json.loads(old_text) or {}
                    attrs = {**old_attrs, **json.loads(new_text)}
                    if attrs != old_attrs:
                        text = _json(attrs)
                if name != old_name or text is not old_text:
                    changed[sid] = (sid, name, text)

            inserts, updates = [], []
            fresh_confirmed = now if self.fresh == "active" else None
            for key in keys:
                rec_status, sid = merged[key][4], ids[key]
                sub = subs.get(sid)
                if sub is None:
                    status = rec_status or self.fresh
                    opted_out = status in OPTED_OUT_STATUSES
                    inserts.append((sid, status))
                    if opted_out:
                        report.recorded_unsubscribed += 1
                    else:
                        report.added += 1
                        if status == "unconfirmed":
                            report.unconfirmed += 1
                    continue
                sub_id, sub_status = sub
                if rec_status in OPTED_OUT_STATUSES and sub_status not in OPTED_OUT_STATUSES:
                    # The file records an opt-out we did not know about: honour it.
                    updates.append((sub_id, rec_status, now, None, now))
                    report.recorded_unsubscribed += 1
                    continue
                if sub_status in OPTED_OUT_STATUSES:
                    if self.opts.resubscribe and rec_status is None:
                        updates.append((sub_id, self.fresh, now, fresh_confirmed, None))
                        report.resubscribed += 1
                        if self.fresh == "unconfirmed":
                            report.unconfirmed += 1
                    else:
                        report.skipped_unsubscribed += 1
                        changed.pop(sid, None)  # an import does not touch the data of someone who left
                    continue
                if sid in changed:
                    report.updated += 1
                else:
                    report.already_present += 1

            if changed:
                sql.update_subscribers(conn, list(changed.values()), now)
            if inserts:
                sql.insert_subscriptions(conn, self.list_id, self.source, now, inserts)
            if updates:
                sql.update_subscriptions(conn, updates)
        report.batches += 1


class _Batch(NamedTuple):
    """One batch from the reader: rows merged by address key, and the reader's counters so far."""

    rows: list[tuple]  # (email, key, name, attributes JSON, status or None)
    copy: bytes | None  # the same rows in PostgreSQL COPY text format, when the target is PostgreSQL
    overlaps: bool  # shares an address with the previous batch (which must then be written first)
    read: int
    invalid: int
    duplicates: int
    rejects: list[Reject]  # rejected since the previous batch (the first MAX_REJECTS_KEPT of the import)


class _Failed(NamedTuple):
    """The reader stopped on an error; ``user`` says it is a one-line InvalidInput for the user."""

    message: str
    user: bool


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(rows: list[tuple]) -> bytes:
    """(email, key, name, attributes JSON, status) rows as PostgreSQL COPY text: built by the
    reader, on its own core, so the writer just forwards the bytes."""
    null = "\\N"
    text = "".join(f"{e}\t{k}\t{n}\t{a}\t{st or null}\n" for e, k, n, a, st in rows)
    # Usually no value holds a tab, newline, CR or backslash: the counts prove it, and nothing needs escaping.
    if text.count("\t") != 4 * len(rows) or text.count("\n") != len(rows) or "\r" in text \
            or text.count("\\") != sum(1 for r in rows if not r[4]):  # one per \N, none in a value
        t = _COPY_ESCAPES
        text = "".join(f"{e.translate(t)}\t{k.translate(t)}\t{n.translate(t)}\t{a.translate(t)}\t{st or null}\n"
                       for e, k, n, a, st in rows)
    return text.encode("utf-8")


def _produce(path: Path, opts: ImportOptions, fmt: str, rejects_path: Path, put: Callable[[Any], bool],
             copy: bool = False) -> None:
    """Read, validate and merge rows into batches for ``put`` (which returns False to stop);
    ends with None, or a _Failed. Rejected rows go to ``rejects_path`` as they are met. With
    ``copy`` each batch also carries its rows as COPY text for PostgreSQL."""
    rejects_file = None
    try:
        size = max(1, opts.batch_size)
        read = invalid = duplicates = 0
        rejects: list[Reject] = []
        writer = None
        merged: dict[str, list] = {}

        def finish(item) -> None:
            """Close the rejects file, then hand over the last item: the importer may return (and its
            caller read the rejects file) as soon as it has it, and a reader process is gone by then."""
            nonlocal rejects_file
            if rejects_file is not None:
                rejects_file.close()
                rejects_file = None
            put(item)

        def reject(line: int, email: str, reason: str) -> None:
            nonlocal invalid, writer, rejects_file
            invalid += 1
            if invalid <= MAX_REJECTS_KEPT:
                rejects.append(Reject(line, email, reason))
            if writer is None:
                try:
                    rejects_file = open(rejects_path, "w", encoding="utf-8", newline="")
                except OSError as e:
                    raise InvalidInput(f"{rejects_path}: cannot write the rejects file: {e.strerror}") from None
                writer = csv.writer(rejects_file)
                writer.writerow(["line", "email", "reason"])
            writer.writerow([line, safe_cell(email), safe_cell(reason)])  # opened in spreadsheets too

        previous: set[str] = set()
        attr_names: set[str] = set()  # every attribute name met so far (capped per file)

        def emit(final: bool = False) -> bool:
            nonlocal rejects, previous
            carry = {}
            clash = previous.intersection(merged)
            if clash and copy and not final:
                # PostgreSQL writes two batches at once: a person also in the previous batch moves to
                # the next one, which starts only after the previous one is written (order kept).
                carry = {k: merged.pop(k) for k in clash}
            rows = [(e, k, n, _json(a) if a else "{}", st) for e, k, n, a, st in merged.values()]
            previous = set(merged)
            merged.clear()
            merged.update(carry)
            overlaps = bool(clash) and not carry
            batch = _Batch(rows, copy_text(rows) if copy else None, overlaps, read, invalid, duplicates, rejects)
            rejects = []
            return put(batch)

        for row in _rows(path, opts, fmt):
            read += 1
            if isinstance(row, BadLine):
                reject(row.line, row.text, row.reason)
                continue
            line, email, name, status_raw, attrs = row
            status_text = status_raw.strip().lower() if status_raw else ""
            if status_text not in STATUS_VALUES:
                reject(line, email, f"unknown status {status_text!r} (use active, unsubscribed, bounced or complained)")
                continue
            try:
                address, key = normalize_email(email)
            except AddressError as e:
                if isinstance(email, str) and control_problem(email):
                    reject(line, _shown(email), f"address {e.reason}")  # the reason names the character
                else:
                    reject(line, email, e.reason)
                continue
            status = STATUS_VALUES[status_text]
            name = name.strip() if name else ""
            problem = control_problem(name)
            if problem is None and attrs:
                problem = attributes_problem(attrs, attr_names)
                if problem is None and not attr_names.issuperset(attrs):  # usually a superset: the fast path
                    new_names = set(attrs).difference(attr_names)
                    if len(attr_names) + len(new_names) > MAX_ATTRIBUTE_NAMES_PER_FILE:
                        problem = f"more than {MAX_ATTRIBUTE_NAMES_PER_FILE} different attribute names in this file"
                    else:
                        attr_names.update(new_names)
            elif problem:
                problem = f"name {problem}"
            if problem:
                reject(line, address, problem)
                continue
            prev = merged.get(key)
            if prev is None:
                merged[key] = [address, key, name, attrs, status]
                if len(merged) >= size and not emit():
                    return
                continue
            # The same person twice in one batch: one row, the later values winning, an opt-out kept.
            duplicates += 1
            prev[2] = name or prev[2]
            if attrs:
                prev[3] = {**prev[3], **attrs} if prev[3] else attrs
            if status in OPTED_OUT_STATUSES or prev[4] is None:
                prev[4] = status or prev[4]
        if (merged or rejects or read) and not emit():
            return
        if merged and not emit(final=True):  # people carried over from the last batch
            return
        finish(None)
    except BaseException as e:  # handed to the writing side, which raises it
        finish(_Failed(str(e) or type(e).__name__, isinstance(e, InvalidInput)))
    finally:
        if rejects_file is not None:
            rejects_file.close()


def _shown(text: str) -> str:
    """Text for the report and rejects file with its control characters written as escapes."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def reader_child_main() -> None:
    """Entry point of the reader process (``python -m newsletter.store.import_reader``): reads its
    job, pickled, from stdin and writes pickled batches to stdout. A parent that stopped reading
    (killed, interrupted) ends it through a broken pipe; Ctrl-C is the parent's to handle."""
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, opts, fmt, rejects_path, copy = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer

    def put(item) -> bool:
        try:
            pickle.dump(item, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    _produce(path, opts, fmt, rejects_path, put, copy)


class _ThreadReader:
    """The reader in a thread of this process: for small files, where starting a process costs more than it saves."""

    def __init__(self, path: Path, opts: ImportOptions, fmt: str, rejects_path: Path):
        self.queue: queue.Queue = queue.Queue(maxsize=2)  # bounded: memory stays constant
        self.stop = threading.Event()
        self.thread = threading.Thread(target=_produce, args=(path, opts, fmt, rejects_path, self._put),
                                       name="newsletter-import-reader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self):
        return self.queue.get()

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)


def _reader_command() -> list[str]:
    """The reader process's command line: this interpreter, and this package's own copy of the module."""
    import sys

    return [sys.executable, str(Path(__file__).with_name("import_reader.py"))]


class _ProcessReader:
    """The reader in a child process, so parsing and validating (pure Python, GIL-bound) run on
    another core while this process writes. The pipe is the bounded queue: a reader that gets
    ahead blocks on it, so memory stays constant. A plain subprocess rather than multiprocessing,
    which would re-run the caller's ``__main__`` (spawn) or fork a process holding threads."""

    def __init__(self, path: Path, opts: ImportOptions, fmt: str, rejects_path: Path, copy: bool = False):
        import pickle
        import subprocess
        import tempfile

        self.finished = False  # the child sent its end marker (None or _Failed)
        self.stderr = tempfile.TemporaryFile()
        self.child = subprocess.Popen(_reader_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        pickle.dump((path, opts, fmt, rejects_path, copy), self.child.stdin)
        self.child.stdin.close()

    def get(self):
        import pickle

        try:
            item = pickle.load(self.child.stdout)
            self.finished = item is None or isinstance(item, _Failed)
            return item
        except (EOFError, pickle.UnpicklingError, OSError):
            code = self.child.wait(10)
            self.stderr.seek(0)
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
            why = f": {lines[-1]}" if lines else ""
            return _Failed(f"the reader process ended unexpectedly (exit code {code}){why}", False)

    def close(self) -> None:
        import subprocess

        if self.finished:
            try:  # it sent its last item after closing the rejects file: let it exit on its own
                self.child.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.child.poll() is None:
            self.child.kill()  # stopped early: it only reads the input and writes the rejects file
        self.child.stdout.close()
        self.child.wait(10)
        self.stderr.close()


READER_PROCESS_MIN_ROWS = 10_000  # below this a reader thread is enough (a process takes ~0.3 s to start)


def import_file(
    engine: Engine,
    path: str | os.PathLike,
    opts: ImportOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``path`` into ``opts.list_slug`` and return the report.

    ``progress(rows_done, rows_total)`` is called after each batch. Raises InvalidInput before
    writing anything when the file is malformed, NotFound when the list does not exist."""
    p = Path(path)
    fmt = _detect_format(p, opts.format)
    if opts.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    with transaction(engine) as conn:
        lst = _list_row(conn, opts.list_slug)
    total = check_file(p, opts)
    report = ImportReport(path=str(p), list_slug=opts.list_slug)
    source = check_text("the consent source", opts.source or f"import:{p.name}")
    writer = _Writer(engine, lst["id"], lst["opt_in"], opts, source, report)
    rejects_path = Path(opts.rejects_path) if opts.rejects_path else p.with_name(p.stem + ".rejects.csv")
    if rejects_path.exists():
        rejects_path.unlink()  # from an earlier run of this import: this run rewrites it
    if total >= READER_PROCESS_MIN_ROWS:
        reader = _ProcessReader(p, opts, fmt, rejects_path, copy=writer.sql.pg)
    else:
        reader = _ThreadReader(p, opts, fmt, rejects_path)
    # PostgreSQL: two batches are written at once on two connections, so one server process works
    # while the other waits on this one; a batch that shares an address with the one before it
    # waits for it, so the file's order still decides (the later row wins). SQLite has one writer.
    in_flight: deque = deque()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="newsletter-import-writer") if writer.sql.pg else None

    def settle(keep: int) -> None:
        """Wait until at most ``keep`` batches are in flight, oldest first."""
        while len(in_flight) > keep:
            future, read = in_flight.popleft()
            future.result()
            if progress:
                progress(read, total)

    try:
        while True:
            item = reader.get()
            if item is None:
                break
            if isinstance(item, _Failed):
                if item.user:
                    raise InvalidInput(item.message)
                raise NewsletterError(f"{p}: the import stopped: its reader failed ({item.message})")
            report.read, report.invalid, report.duplicates_in_file = item.read, item.invalid, item.duplicates
            report.rejects.extend(item.rejects)
            if item.invalid and report.rejects_path is None:
                report.rejects_path = str(rejects_path)
            if pool is None:
                if item.rows:
                    writer.write(item.rows, item.copy)
                if progress:
                    progress(item.read, total)
                continue
            settle(0 if item.overlaps else 1)
            if item.rows:
                in_flight.append((pool.submit(writer.write, item.rows, item.copy), item.read))
            elif progress:
                progress(item.read, total)
        settle(0)
    finally:
        reader.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # a batch being written finishes (or rolls back) first
    if progress:
        progress(report.read, total)
    return report
