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
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ..errors import InvalidInput
from .addresses import AddressError, domain_of, normalize_email
from .db import transaction
from .models import OPTED_OUT_STATUSES, MailingList, Subscriber, Subscription, Suppression, utcnow
from .subscribers import _list_row

subscribers_t = Subscriber.__table__
subs_t = Subscription.__table__
supp_t = Suppression.__table__
lists_t = MailingList.__table__

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
    rejects_path: Path | None = None  # default: <input>.rejects.csv


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


@dataclass
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
        f = open(path, "rb")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: file not found") from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror}") from None
    with f:
        if enc.startswith(("utf-16", "utf-32")):
            # Not ASCII-compatible: let the text layer split lines.
            text = io.TextIOWrapper(f, encoding=enc, newline="")
            try:
                yield from text
            except UnicodeDecodeError as e:
                raise InvalidInput(f"{path}: cannot decode as {enc}: {e.reason}") from None
            return
        first = True
        for number, raw in enumerate(f, 1):
            if first:
                first = False
                if raw.startswith(codecs.BOM_UTF8) and enc == "utf-8-sig":
                    raw = raw[3:]
            try:
                yield raw.decode(enc)
            except UnicodeDecodeError as e:
                hint = "" if encoding else "; the file is not UTF-8: pass --encoding (e.g. --encoding cp1252)"
                raise InvalidInput(f"{path}: line {number}: cannot decode byte 0x{raw[e.start]:02x} as {enc}{hint}") from None


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


def _csv_rows(path: Path, opts: ImportOptions) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, {email, name, status, attrs}) for each data row; raises on structural problems."""
    if len(opts.delimiter) != 1:
        raise InvalidInput(f"--delimiter must be one character, not {opts.delimiter!r}")
    reader = csv.reader(_lines(path, opts.encoding), delimiter=opts.delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInput(f"{path}: the file is empty (expected a header line such as email,name)")
        plan = _plan_columns(path, header, opts.mapping, opts.delimiter)
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
            rec: dict[str, Any] = {"attrs": {}}
            for (kind, attr), value in zip(plan, row):
                if kind == "attr":
                    if value != "":
                        rec["attrs"][attr] = value
                elif kind != "skip":
                    rec[kind] = value
            yield start + 1, rec
            start = reader.line_num
    except csv.Error as e:
        raise InvalidInput(f"{path}: line {reader.line_num}: malformed CSV: {e} (unbalanced quote?)") from None


def _jsonl_rows(path: Path, opts: ImportOptions) -> Iterator[tuple[int, dict[str, Any]]]:
    mapping = {k.strip(): v for k, v in opts.mapping.items()}
    for number, line in enumerate(_lines(path, opts.encoding), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{path}: line {number}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}: line {number}: expected a JSON object per line")
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
        if "email" not in rec:
            rec["email"] = ""
        yield number, rec


def _rows(path: Path, opts: ImportOptions, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    return _jsonl_rows(path, opts) if fmt == "jsonl" else _csv_rows(path, opts)


def check_file(path: str | os.PathLike, opts: ImportOptions) -> int:
    """Read the whole file once without touching the database; returns the number of data rows.

    Raises InvalidInput (one line, with the line number) for a bad encoding, malformed CSV
    or JSON, or a missing email column."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInput(f"{p}: is a directory, not a file")
    n = 0
    for _ in _rows(p, opts, _detect_format(p, opts.format)):
        n += 1
    return n


# ---------------------------------------------------------------- writing


def _insert(conn, table):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _chunks(seq: list, n: int = 2000) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class _Writer:
    """Writes batches; holds only per-import constants, never rows."""

    def __init__(self, engine: Engine, list_id: int, opt_in: str, opts: ImportOptions, source: str, report: ImportReport):
        self.engine = engine
        self.list_id = list_id
        self.fresh = "unconfirmed" if opt_in == "double" else "active"
        self.opts = opts
        self.source = source
        self.report = report

    def write(self, batch: list[_Rec]) -> None:
        report = self.report
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
        now = utcnow()
        with transaction(self.engine) as conn:
            suppressed = set()
            domains = {r[0] for r in conn.execute(select(supp_t.c.value).where(supp_t.c.kind == "domain"))}
            for part in _chunks(keys):
                suppressed.update(r[0] for r in conn.execute(
                    select(supp_t.c.value).where(supp_t.c.kind == "address", supp_t.c.value.in_(part))))
            if domains:
                suppressed.update(k for k in keys if domain_of(k) in domains)
            if suppressed:
                report.skipped_suppressed += len(suppressed)
                for k in suppressed:
                    del merged[k]
                keys = list(merged)

            existing: dict[str, Any] = {}
            for part in _chunks(keys):
                for r in conn.execute(
                    select(subscribers_t.c.id, subscribers_t.c.email_key, subscribers_t.c.name, subscribers_t.c.attributes)
                    .where(subscribers_t.c.email_key.in_(part))
                ):
                    existing[r.email_key] = r
            new = [merged[k] for k in keys if k not in existing]
            if new:
                conn.execute(
                    _insert(conn, subscribers_t).on_conflict_do_nothing(index_elements=["email_key"]),
                    [
                        {"email": r.email, "email_key": r.key, "name": r.name, "attributes": r.attrs,
                         "consent_source": self.source, "consent_at": now, "created_at": now, "updated_at": now}
                        for r in new
                    ],
                )
            ids: dict[str, int] = {k: r.id for k, r in existing.items()}
            missing = [r.key for r in new]
            for part in _chunks(missing):
                for sid, key in conn.execute(
                    select(subscribers_t.c.id, subscribers_t.c.email_key).where(subscribers_t.c.email_key.in_(part))
                ):
                    ids[key] = sid

            changed: dict[int, dict[str, Any]] = {}
            for key, old in existing.items():
                rec = merged[key]
                name = rec.name or old.name
                attrs = {**(old.attributes or {}), **rec.attrs} if rec.attrs else (old.attributes or {})
                if name != old.name or attrs != (old.attributes or {}):
                    changed[old.id] = {"b_id": old.id, "name": name, "attributes": attrs, "updated_at": now}

            subs: dict[int, Any] = {}
            id_list = list(ids.values())
            for part in _chunks(id_list):
                for r in conn.execute(
                    select(subs_t.c.id, subs_t.c.subscriber_id, subs_t.c.status)
                    .where(subs_t.c.list_id == self.list_id, subs_t.c.subscriber_id.in_(part))
                ):
                    subs[r.subscriber_id] = r

            inserts, updates = [], []
            for key in keys:
                rec, sid = merged[key], ids[key]
                sub = subs.get(sid)
                if sub is None:
                    status = rec.status or self.fresh
                    inserts.append({
                        "subscriber_id": sid, "list_id": self.list_id, "status": status, "source": self.source,
                        "created_at": now, "updated_at": now,
                        "confirmed_at": now if status == "active" else None,
                        "unsubscribed_at": now if status in OPTED_OUT_STATUSES else None,
                    })
                    if status in OPTED_OUT_STATUSES:
                        report.recorded_unsubscribed += 1
                    else:
                        report.added += 1
                        if status == "unconfirmed":
                            report.unconfirmed += 1
                    continue
                if rec.status in OPTED_OUT_STATUSES and sub.status not in OPTED_OUT_STATUSES:
                    # The file records an opt-out we did not know: honour it.
                    updates.append({"b_id": sub.id, "status": rec.status, "updated_at": now, "unsubscribed_at": now, "confirmed_at": None})
                    report.recorded_unsubscribed += 1
                    continue
                if sub.status in OPTED_OUT_STATUSES:
                    if self.opts.resubscribe and rec.status is None:
                        updates.append({"b_id": sub.id, "status": self.fresh, "updated_at": now, "unsubscribed_at": None,
                                        "confirmed_at": now if self.fresh == "active" else None})
                        report.resubscribed += 1
                        if self.fresh == "unconfirmed":
                            report.unconfirmed += 1
                    else:
                        report.skipped_unsubscribed += 1
                        changed.pop(sid, None)  # someone who left is not touched by an import
                    continue
                if sid in changed:
                    report.updated += 1
                else:
                    report.already_present += 1

            if changed:
                conn.execute(
                    subscribers_t.update().where(subscribers_t.c.id == bindparam("b_id")).values(
                        name=bindparam("name"), attributes=bindparam("attributes"), updated_at=bindparam("updated_at")),
                    list(changed.values()),
                )
            if inserts:
                conn.execute(
                    _insert(conn, subs_t).on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"]), inserts
                )
            if updates:
                by_shape: dict[tuple, list] = {}
                for u in updates:
                    by_shape.setdefault(tuple(sorted(u)), []).append(u)
                for shape, rows in by_shape.items():
                    values = {k: bindparam(k) for k in shape if k != "b_id"}
                    conn.execute(subs_t.update().where(subs_t.c.id == bindparam("b_id")).values(**values), rows)
        report.batches += 1


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
    rejects_path = opts.rejects_path or p.with_name(p.name + ".rejects.csv")
    rejects_file = None
    rejects_writer = None
    if rejects_path.exists():
        rejects_path.unlink()  # from an earlier run of this import: this run rewrites it
    try:
        batch: list[_Rec] = []
        for line, raw in _rows(p, opts, fmt):
            report.read += 1
            email = raw.get("email", "")
            reason = None
            status_text = (raw.get("status") or "").strip().lower()
            if status_text not in STATUS_VALUES:
                reason = f"unknown status {status_text!r} (use active, unsubscribed, bounced or complained)"
            else:
                try:
                    address, key = normalize_email(email)
                except AddressError as e:
                    reason = e.reason
            if reason is not None:
                report.invalid += 1
                if len(report.rejects) < MAX_REJECTS_KEPT:
                    report.rejects.append(Reject(line, email, reason))
                if rejects_writer is None:
                    try:
                        rejects_file = open(rejects_path, "w", encoding="utf-8", newline="")
                    except OSError as e:
                        raise InvalidInput(f"{rejects_path}: cannot write the rejects file: {e.strerror}") from None
                    rejects_writer = csv.writer(rejects_file)
                    rejects_writer.writerow(["line", "email", "reason"])
                    report.rejects_path = str(rejects_path)
                rejects_writer.writerow([line, email, reason])
                continue
            batch.append(_Rec(line, address, key, (raw.get("name") or "").strip(), raw["attrs"], STATUS_VALUES[status_text]))
            if len(batch) >= opts.batch_size:
                writer.write(batch)
                batch = []
                if progress:
                    progress(report.read, total)
        if batch:
            writer.write(batch)
        if progress:
            progress(report.read, total)
    finally:
        if rejects_file is not None:
            rejects_file.close()
    return report
