"""Reading an import file: formats, encodings, header columns and ``--map``, one row at a time.

Nothing here touches the database. ``check_file`` reads the whole file once so that a malformed
one (bad encoding, broken CSV, no email column, not JSON Lines) is refused before anything is
written; the import's reader (import_batches.py) reads it again through the same row iterators.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from ..errors import InvalidInput
from .export import EXPORT_MARKER, unguard_cell
from .import_formats import (FLAG_TARGETS, IGNORE, SINGLE_TARGETS, check_target, default_target, detect_format,
                             flag_set, joined_name)
from .textrules import MAX_ATTRIBUTE_NAME, MAX_COLUMNS, control_problem

DEFAULT_BATCH_SIZE = 5000
# Columns our own export writes that are not attributes.
EXPORT_COLUMNS = {"lists", "consent_source", "created_at", EXPORT_MARKER}
# A status cell -> the status it records (None: the list's usual one). Other tools' words too:
# listmonk's enabled/disabled/blocklisted, Mailchimp's subscribed/pending/cleaned.
STATUS_VALUES = {"": None, "active": None, "subscribed": None, "unconfirmed": None, "enabled": None, "pending": None,
                 "confirmed": None, "unsubscribed": "unsubscribed", "disabled": "unsubscribed",
                 "blocklisted": "unsubscribed", "bounced": "bounced", "cleaned": "bounced", "complained": "complained"}
# Status cells that say the person already confirmed (with ImportOptions.keep_confirmed: active on any list).
CONFIRMED_VALUES = {"active", "subscribed", "confirmed", "enabled"}


def status_of(cell: str, keep_confirmed: bool) -> str | None:
    """The status a (lowercased, known) status cell gives a row: an opt-out, ``active`` for a
    confirmed row when the file is taken as consent evidence, else None (the list's usual status)."""
    if keep_confirmed and cell in CONFIRMED_VALUES:
        return "active"
    return STATUS_VALUES[cell]


@dataclass
class ImportOptions:
    """How to read the file and what to do with people already known."""

    list_slug: str
    format: str | None = None  # "csv" | "jsonl" | None (from the file extension)
    encoding: str | None = None  # default: UTF-8 with or without BOM
    mapping: dict[str, str] = field(default_factory=dict)  # column -> email | name | status | attr:NAME | - (ignore)
    delimiter: str = ","
    resubscribe: bool = False
    # A double-opt-in list: rows whose status says subscribed/active/confirmed become active at
    # once (the file is the consent evidence) instead of unconfirmed (asked again by email).
    keep_confirmed: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    source: str | None = None  # consent source recorded on new subscribers (default "import:<file name>")
    rejects_path: str | os.PathLike | None = None  # default: <input stem>.rejects.csv beside it (a.csv -> a.rejects.csv)
    # attribute name (or "*") -> text | number | date | bool | auto (attr_types.py); a cell that
    # does not parse as its type rejects the row
    attr_types: dict[str, str] = field(default_factory=dict)


@dataclass
class Reject:
    """A row left out of the import: its line, the address as written, and why."""

    line: int
    email: str
    reason: str



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
    fmt = detect_format(header)
    plan: list[tuple[str, str]] = []
    seen: set[str] = set()
    defaults = [default_target(h, EXPORT_COLUMNS, fmt) for h in header]
    named = any((mapping_l.get(h.strip().lower()) or d) == "name" for h, d in zip(header, defaults))
    for h, default in zip(header, defaults):
        given = mapping_l.get(h.strip().lower())
        if given is None and named and default in ("first_name", "last_name"):
            default = "attr:" + h.strip()  # a file with a name column: first/last name stay attributes
        target = check_target(h, given) if given is not None else default
        if target in SINGLE_TARGETS and target in seen:
            if given is not None:
                raise InvalidInput(f"{path}: two columns map to {target!r}")
            target = "attr:" + h.strip()  # a second "name" column, say: kept as an attribute
        if target in IGNORE:
            plan.append(("skip", ""))
        elif target in FLAG_TARGETS:
            plan.append(("flag", FLAG_TARGETS[target]))
        elif target.startswith("attr:"):
            plan.append(("attr", target[5:].strip()))
        else:
            plan.append((target, ""))
            seen.add(target)
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
        fields = {kind: i for i, (kind, _) in enumerate(plan) if kind in SINGLE_TARGETS}
        email_i, name_i, status_i = fields["email"], fields.get("name"), fields.get("status")
        first_i, last_i, json_i = fields.get("first_name"), fields.get("last_name"), fields.get("attributes")
        attr_cols = [(i, attr) for i, (kind, attr) in enumerate(plan) if kind == "attr"]
        if json_i is None:
            _check_typed_names(path, opts.attr_types, {a for _, a in attr_cols})
        flag_cols = [(i, status) for i, (kind, status) in enumerate(plan) if kind == "flag"]
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
                name = row[name_i] if name_i is not None else ""
                if not name.strip() and (first_i is not None or last_i is not None):
                    name = joined_name(row[first_i] if first_i is not None else "", row[last_i] if last_i is not None else "")
                status = row[status_i] if status_i is not None else ""
                for i, flagged in flag_cols:
                    if flag_set(row[i]) and STATUS_VALUES.get(status.strip().lower()) is None:
                        status = flagged
                attrs = _json_attributes(row[json_i]) if json_i is not None else {}
                attrs.update((a, row[i]) for i, a in attr_cols if row[i] != "")
                yield start + 1, row[email_i], name, status, attrs
            else:
                yield start + 1, "", "", "", None
            start = reader.line_num
    except csv.Error as e:
        raise InvalidInput(f"{path}: line {reader.line_num}: malformed CSV: {e} (unbalanced quote?)") from None


def _check_typed_names(path: Path, types: dict[str, str], names: set[str]) -> None:
    """A type declared for an attribute the file does not have is a typo: say so before importing."""
    from .attr_types import EVERY

    for name in types:
        if name != EVERY and name not in names:
            raise InvalidInput(f"{path}: --attr-type names attribute {name!r}, which no column becomes "
                               f"(attributes: {', '.join(sorted(names)) or 'none'})")


class BadLine(NamedTuple):
    """A JSON Lines line that is not a JSON object: rejected like an invalid address, not fatal."""

    line: int
    text: str  # the line as written (shortened), for the report and the rejects file
    reason: str


def _json_attributes(cell: str) -> dict[str, Any]:
    """A cell holding a JSON object (listmonk's attributes column) as attributes; any other text
    is kept whole as the attribute ``attributes``."""
    if not cell.strip():
        return {}
    try:
        value = json.loads(cell)
    except (ValueError, RecursionError):
        value = None
    return dict(value) if isinstance(value, dict) else {"attributes": cell}


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
        defaults = {k: default_target(k, EXPORT_COLUMNS) for k in obj}
        named = any((mapping.get(k) or d) == "name" for k, d in defaults.items())
        for k, v in obj.items():
            given = mapping.get(k)
            target = check_target(k, given) if given is not None else defaults[k]
            if given is None and named and target in ("first_name", "last_name"):
                target = "attr:" + k  # an object with a name: first/last name stay attributes
            text = "" if v is None else (v if isinstance(v, str) else str(v))
            if target in IGNORE:
                continue
            if target in FLAG_TARGETS:
                if flag_set(text) and v is not False:
                    rec["flag"] = FLAG_TARGETS[target]
            elif target == "attributes" or (k == "attributes" and isinstance(v, dict) and target == "attr:attributes"):
                if isinstance(v, dict):
                    rec["attrs"].update(v)
                elif v is not None and v != "":
                    rec["attrs"][k] = v
            elif target in SINGLE_TARGETS:
                rec[target] = text
            elif v is not None and v != "":
                rec["attrs"][target[5:]] = v
        name = rec.get("name", "")
        if not name.strip() and ("first_name" in rec or "last_name" in rec):
            name = joined_name(rec.get("first_name", ""), rec.get("last_name", ""))
        status = rec.get("status", "")
        if "flag" in rec and STATUS_VALUES.get(status.strip().lower()) is None:
            status = rec["flag"]
        yield number, rec.get("email", ""), name, status, rec["attrs"]


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _rows(path: Path, opts: ImportOptions, fmt: str, build: bool = True) -> Iterator[Row | BadLine]:
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



def preview_file(path: str | os.PathLike, opts: ImportOptions, rows: int = 5) -> tuple[list[str], list[list[str]]]:
    """The header and first ``rows`` data rows of an import file, for the admin's mapping step
    (JSON Lines: the keys of the first objects as the header). InvalidInput as ``check_file``."""
    p = Path(path)
    if _detect_format(p, opts.format) == "jsonl":
        keys: list[str] = []
        objs: list[dict] = []
        for line in _lines(p, opts.encoding):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                obj = None
            if not isinstance(obj, dict):
                raise InvalidInput(f"{p}: line {len(objs) + 1}: not a JSON object: not a JSON Lines file (one {{...}} object per line)")
            objs.append(obj)
            keys.extend(k for k in obj if k not in keys)
            if len(objs) >= rows:
                break
        shown = [[_cell_text(o.get(k)) for k in keys] for o in objs]
        return keys, shown
    if len(opts.delimiter) != 1:
        raise InvalidInput(f"--delimiter must be one character, not {opts.delimiter!r}")
    reader = csv.reader(_lines(p, opts.encoding), delimiter=opts.delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInput(f"{p}: the file is empty (expected a header line such as email,name)")
        if header and header[-1] == EXPORT_MARKER:
            header = [unguard_cell(h) for h in header[:-1]] + [EXPORT_MARKER]
        if not any(h.strip() for h in header):
            raise InvalidInput(f"{p}: the first line must be a header naming the columns (e.g. email,name)")
        if len(header) > MAX_COLUMNS:
            raise InvalidInput(f"{p}: the header has {len(header)} columns: at most {MAX_COLUMNS}")
        out = []
        for row in reader:
            if row and any(c.strip() for c in row):
                out.append(row)
            if len(out) >= rows:
                break
    except csv.Error as e:
        raise InvalidInput(f"{p}: line {reader.line_num}: malformed CSV: {e} (unbalanced quote?)") from None
    return header, out


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
