"""Import subscribers from CSV or JSON Lines into a list: streaming, in batches, resumable.

The file is read twice. The first pass only checks it (encoding, CSV structure, an email
column) so a malformed file changes nothing. The second pass validates each address,
merges duplicates, and writes each batch in one transaction with bulk
``INSERT ... ON CONFLICT DO NOTHING``. Memory stays constant whatever the file size; a
killed import leaves whole batches, and running it again finishes the job without
duplicates. Nobody unsubscribed, bounced, complained or suppressed is re-subscribed
unless ``resubscribe`` (fresh consent) is given — and suppression never yields.
"""

from __future__ import annotations

import codecs
import csv
import json
from json.encoder import encode_basestring as _quote
import os
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from sqlalchemy.engine import Engine

from ..errors import InvalidInput
from .addresses import AddressError, domain_of, normalize_email
from .db import transaction
from .models import OPTED_OUT_STATUSES, utcnow
from .subscribers import _list_row, safe_cell

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
EXPORT_COLUMNS = {"lists", "consent_source", "created_at"}
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


@dataclass(slots=True)
class _Rec:
    line: int
    email: str
    key: str
    name: str
    attrs: dict[str, Any]
    status: str | None


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


def _plan_columns(path: Path, header: list[str], mapping: dict[str, str], delimiter: str) -> list[tuple[str, str]]:
    """For each column: ("email"|"name"|"status"|"attr"|"skip", attribute name)."""
    if not header or all(not h.strip() for h in header):
        raise InvalidInput(f"{path}: the first line must be a header naming the columns (e.g. email,name)")
    mapping_l = {k.strip().lower(): v for k, v in mapping.items()}
    known = {h.strip().lower() for h in header}
    for col in mapping_l:
        if col not in known:
            raise InvalidInput(f"{path}: --map names column {col!r}, which is not in the header ({', '.join(h.strip() for h in header)})")
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
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else f"not a JSON object (a JSON {_json_kind(obj)})"
        except json.JSONDecodeError as e:
            problem = f"invalid JSON: {e.msg} (column {e.colno})"
        if problem is not None:
            if first:
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


class _SQL:
    """The handful of bulk statements an import batch runs, as raw driver SQL for speed.

    Going below SQLAlchemy's per-value type processing makes imports several times faster.
    SQLite passes key lists as one JSON array (``json_each``) and uses ``executemany``.
    PostgreSQL streams each list into a transaction-local temporary table with COPY (psycopg's
    array parameters are escaped in Python, which was the bottleneck) and joins against it."""

    _TEMP = (
        "create temp table if not exists nl_imp_text (v text) on commit delete rows;"
        "create temp table if not exists nl_imp_int (v int) on commit delete rows;"
        "create temp table if not exists nl_imp_new (e text, k text, n text, a text) on commit delete rows;"
        "create temp table if not exists nl_imp_upd (i int, n text, a text) on commit delete rows;"
        "create temp table if not exists nl_imp_subs (s int, st text) on commit delete rows"
    )

    def __init__(self, dialect: str):
        self.pg = dialect == "postgresql"

    def ts(self, now: datetime):
        # SQLite: the text format SQLAlchemy's DateTime reads back; PostgreSQL: timestamptz.
        return now if self.pg else now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def begin(self, conn) -> None:
        if self.pg:
            conn.exec_driver_sql(self._TEMP)
        else:
            # Only a bulk import wants a big page cache (the email index stays hot); other
            # connections keep SQLite's small default, so a sender's memory does not grow with the list.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_SQLITE_CACHE_KIB}")

    def _fill(self, conn, table: str, rows) -> None:
        """PostgreSQL: replace the rows of a temp table with ``rows`` (tuples) through COPY."""
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(f"delete from {table}")
            with cur.copy(f"copy {table} from stdin") as cp:
                for row in rows:
                    cp.write_row(row)

    def _in(self, conn, column: str, values: list, kind: str = "text") -> tuple[str, tuple]:
        """SQL condition ``column`` is one of ``values``, and its parameters."""
        if self.pg:
            self._fill(conn, f"nl_imp_{kind}", ((v,) for v in values))
            return f"{column} in (select v from nl_imp_{kind})", ()
        return f"{column} in (select value from json_each(?))", (json.dumps(values),)

    def suppressed_addresses(self, conn, keys: list[str]) -> set[str]:
        cond, params = self._in(conn, "value", keys)
        return {r[0] for r in conn.exec_driver_sql(f"select value from suppressions where kind = 'address' and {cond}", params)}

    def suppressed_domains(self, conn) -> set[str]:
        return {r[0] for r in conn.exec_driver_sql("select value from suppressions where kind = 'domain'")}

    def subscribers(self, conn, keys: list[str]) -> list[tuple]:
        cond, params = self._in(conn, "email_key", keys)
        rows = []
        for sid, key, name, attrs in conn.exec_driver_sql(f"select id, email_key, name, attributes from subscribers where {cond}", params):
            if isinstance(attrs, str):
                attrs = json.loads(attrs)
            rows.append((sid, key, name, attrs or {}))
        return rows

    def ids(self, conn, keys: list[str]) -> dict[str, int]:
        cond, params = self._in(conn, "email_key", keys)
        return dict(conn.exec_driver_sql(f"select email_key, id from subscribers where {cond}", params).all())

    def insert_subscribers(self, conn, rows: list[tuple], source: str, now) -> None:
        """rows: (email, email_key, name, attributes_json)."""
        cols = "(email, email_key, name, attributes, consent_source, consent_at, created_at, updated_at)"
        if self.pg:
            self._fill(conn, "nl_imp_new", rows)
            conn.exec_driver_sql(
                f"insert into subscribers {cols} select e, k, n, a::json, %s, %s, %s, %s from nl_imp_new "
                "on conflict (email_key) do nothing",
                (source, now, now, now),
            )
        else:
            conn.exec_driver_sql(
                f"insert into subscribers {cols} values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (email_key) do nothing",
                [(e, k, n, a, source, now, now, now) for e, k, n, a in rows],
            )

    def update_subscribers(self, conn, rows: list[tuple], now) -> None:
        """rows: (id, name, attributes_json)."""
        if self.pg:
            self._fill(conn, "nl_imp_upd", rows)
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

    def subscriptions(self, conn, list_id: int, ids: list[int]) -> dict[int, tuple]:
        cond, params = self._in(conn, "subscriber_id", ids, "int")
        p = "%s" if self.pg else "?"
        sql = f"select subscriber_id, id, status from subscriptions where list_id = {p} and {cond}"
        return {sid: (sub_id, status) for sid, sub_id, status in conn.exec_driver_sql(sql, (list_id, *params))}

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

    def subscribe_new(self, conn, list_id: int, status: str, source: str, now, keys: list[str]) -> None:
        """Subscribe just-inserted subscribers (by address key) in one INSERT ... SELECT: no id round trip."""
        cond, params = self._in(conn, "email_key", keys)
        p = "%s" if self.pg else "?"
        conn.exec_driver_sql(
            "insert into subscriptions (subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at) "
            f"select id, {p}, {p}, {p}, {p}, {p}, {p} from subscribers where {cond} "
            "on conflict (subscriber_id, list_id) do nothing",
            (list_id, status, source, now, now, now if status == "active" else None, *params),
        )

    def update_subscriptions(self, conn, rows: list[tuple]) -> None:
        """rows: (subscription id, status, updated_at, confirmed_at, unsubscribed_at)."""
        p = "%s" if self.pg else "?"
        conn.exec_driver_sql(
            f"update subscriptions set status = {p}, updated_at = {p}, confirmed_at = {p}, unsubscribed_at = {p} where id = {p}",
            [(st, up, cf, un, i) for i, st, up, cf, un in rows],
        )


class _Writer:
    """Writes batches; holds only per-import constants, never rows."""

    def __init__(self, engine: Engine, list_id: int, opt_in: str, opts: ImportOptions, source: str, report: ImportReport):
        self.engine = engine
        self.list_id = list_id
        self.fresh = "unconfirmed" if opt_in == "double" else "active"
        self.opts = opts
        self.source = source
        self.report = report
        self.sql = _SQL(engine.dialect.name)

    def write(self, batch: list[_Rec]) -> None:
        report, sql = self.report, self.sql
        merged: dict[str, _Rec] = {}
        for rec in batch:
            prev = merged.get(rec.key)
            if prev is None:
                merged[rec.key] = rec
                continue
            report.duplicates_in_file += 1
            prev.name = rec.name or prev.name
            prev.attrs.update(rec.attrs)
            if rec.status in OPTED_OUT_STATUSES or prev.status is None:
                prev.status = rec.status or prev.status
        keys = list(merged)
        now = sql.ts(utcnow())
        with transaction(self.engine) as conn:
            sql.begin(conn)
            suppressed = sql.suppressed_addresses(conn, keys)
            domains = sql.suppressed_domains(conn)
            if domains:
                suppressed.update(k for k in keys if domain_of(k) in domains)
            if suppressed:
                report.skipped_suppressed += len(suppressed)
                for k in suppressed:
                    del merged[k]
                keys = list(merged)
            if not keys:
                report.batches += 1
                return

            existing = {key: (sid, name, attrs) for sid, key, name, attrs in sql.subscribers(conn, keys)}
            new = [merged[k] for k in keys if k not in existing]
            ids = {key: v[0] for key, v in existing.items()}
            plain: list[str] = []  # new people with no status of their own: subscribed by key below
            if new:
                sql.insert_subscribers(
                    conn, [(r.email, r.key, r.name, _json(r.attrs) if r.attrs else "{}") for r in new], self.source, now
                )
                plain = [r.key for r in new if r.status is None]
                special = [r.key for r in new if r.status is not None]
                if special:
                    ids.update(sql.ids(conn, special))
                if plain:
                    sql.subscribe_new(conn, self.list_id, self.fresh, self.source, now, plain)
                    report.added += len(plain)
                    if self.fresh == "unconfirmed":
                        report.unconfirmed += len(plain)
                    plain_set = set(plain)
                    keys = [k for k in keys if k not in plain_set]

            changed: dict[int, tuple] = {}
            for key, (sid, old_name, old_attrs) in existing.items():
                rec = merged[key]
                name = rec.name or old_name
                attrs = {**old_attrs, **rec.attrs} if rec.attrs else old_attrs
                if name != old_name or attrs != old_attrs:
                    changed[sid] = (sid, name, _json(attrs))

            subs = sql.subscriptions(conn, self.list_id, list(ids.values()))
            inserts, updates = [], []
            fresh_confirmed = now if self.fresh == "active" else None
            for key in keys:
                rec, sid = merged[key], ids[key]
                sub = subs.get(sid)
                if sub is None:
                    status = rec.status or self.fresh
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
                if rec.status in OPTED_OUT_STATUSES and sub_status not in OPTED_OUT_STATUSES:
                    # The file records an opt-out we did not know about: honour it.
                    updates.append((sub_id, rec.status, now, None, now))
                    report.recorded_unsubscribed += 1
                    continue
                if sub_status in OPTED_OUT_STATUSES:
                    if self.opts.resubscribe and rec.status is None:
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


class _Reader:
    """Reads and validates rows into batches; runs in a thread so parsing overlaps database work."""

    def __init__(self, path: Path, opts: ImportOptions, fmt: str, report: ImportReport, rejects_path: Path):
        self.path, self.opts, self.fmt, self.report, self.rejects_path = path, opts, fmt, report, rejects_path
        self.queue: queue.Queue = queue.Queue(maxsize=2)  # bounded: memory stays constant
        self.stop = threading.Event()
        self.rejects_file = None
        self.rejects_writer = None

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _reject(self, line: int, email: str, reason: str) -> None:
        report = self.report
        report.invalid += 1
        if len(report.rejects) < MAX_REJECTS_KEPT:
            report.rejects.append(Reject(line, email, reason))
        if self.rejects_writer is None:
            try:
                self.rejects_file = open(self.rejects_path, "w", encoding="utf-8", newline="")
            except OSError as e:
                raise InvalidInput(f"{self.rejects_path}: cannot write the rejects file: {e.strerror}") from None
            self.rejects_writer = csv.writer(self.rejects_file)
            self.rejects_writer.writerow(["line", "email", "reason"])
            report.rejects_path = str(self.rejects_path)
        self.rejects_writer.writerow([line, safe_cell(email), safe_cell(reason)])  # opened in spreadsheets too

    def run(self) -> None:
        try:
            report, size = self.report, self.opts.batch_size
            batch: list[_Rec] = []
            for row in _rows(self.path, self.opts, self.fmt):
                report.read += 1
                if isinstance(row, BadLine):
                    self._reject(row.line, row.text, row.reason)
                    continue
                line, email, name, status_raw, attrs = row
                status_text = status_raw.strip().lower() if status_raw else ""
                if status_text not in STATUS_VALUES:
                    self._reject(line, email, f"unknown status {status_text!r} (use active, unsubscribed, bounced or complained)")
                    continue
                try:
                    address, key = normalize_email(email)
                except AddressError as e:
                    self._reject(line, email, e.reason)
                    continue
                batch.append(_Rec(line, address, key, name.strip() if name else "", attrs, STATUS_VALUES[status_text]))
                if len(batch) >= size:
                    if not self._put((batch, report.read)):
                        return
                    batch = []
            if batch and not self._put((batch, report.read)):
                return
            self._put(None)
        except BaseException as e:  # handed to the writing thread, which raises it
            self._put(e)
        finally:
            if self.rejects_file is not None:
                self.rejects_file.close()


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
    writer = _Writer(engine, lst["id"], lst["opt_in"], opts, opts.source or f"import:{p.name}", report)
    rejects_path = Path(opts.rejects_path) if opts.rejects_path else p.with_name(p.stem + ".rejects.csv")
    if rejects_path.exists():
        rejects_path.unlink()  # from an earlier run of this import: this run rewrites it
    reader = _Reader(p, opts, fmt, report, rejects_path)
    thread = threading.Thread(target=reader.run, name="newsletter-import-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = reader.queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            batch, read = item
            writer.write(batch)
            if progress:
                progress(read, total)
    finally:
        reader.stop.set()
        while thread.is_alive():
            try:
                reader.queue.get_nowait()
            except queue.Empty:
                thread.join(0.05)
    if progress:
        progress(report.read, total)
    return report
