"""The import's reader side: validating rows and merging them into batches, in a thread or a child process.

Each row's address, name, status and attributes are checked (control characters, the caps of
textrules.py); a bad row is rejected into the rejects file, never fatal. Rows naming the same
person are merged, the later values winning and an opt-out kept, and handed over in batches of
``batch_size`` people. For PostgreSQL each batch also carries its rows as COPY text, built here
on the reader's own core so that the writer only forwards bytes.
"""

from __future__ import annotations

import csv
import json
from json.encoder import encode_basestring as _quote
from pathlib import Path
from typing import Any, Callable, NamedTuple

from ..errors import InvalidInput
from .addresses import AddressError, normalize_email
from .attr_types import apply_types
from .import_reading import STATUS_VALUES, BadLine, ImportOptions, Reject, _rows, status_of
from .models import OPTED_OUT_STATUSES
from .export import safe_cell
from .textrules import MAX_ATTRIBUTE_NAMES_PER_FILE, attributes_problem, control_problem

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(attrs: dict[str, Any]) -> str:
    """Compact JSON for an attributes dict; CSV values are all strings, which take a faster path."""
    if all(type(v) is str for v in attrs.values()):
        return "{" + ",".join(_quote(k) + ":" + _quote(v) for k, v in attrs.items()) + "}"
    return _encode(attrs)

MAX_REJECTS_KEPT = 1000  # in the report; the .rejects.csv file has them all


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
                reject(line, email, f"unknown status {status_text!r} (use active, subscribed, unsubscribed, bounced or complained)")
                continue
            try:
                address, key = normalize_email(email)
            except AddressError as e:
                if isinstance(email, str) and control_problem(email):
                    reject(line, _shown(email), f"address {e.reason}")  # the reason names the character
                else:
                    reject(line, email, e.reason)
                continue
            status = status_of(status_text, opts.keep_confirmed)
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
            if problem is None and attrs and opts.attr_types:  # typed attributes (attr_types.py)
                problem = apply_types(attrs, opts.attr_types)
            if problem is None and attrs and "timezone" in attrs:  # stored as the reader's zone, not an attribute
                problem = _zone_problem(attrs["timezone"])
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


def _zone_problem(value: Any) -> str | None:
    """Why an import's ``timezone`` value is not an IANA zone zoneinfo knows (None: it is)."""
    from .preferences import check_timezone

    try:
        if isinstance(value, str) and check_timezone(value):
            return None
    except InvalidInput:
        pass
    return f"time zone {str(value)[:64]!r}: unknown (use an IANA name such as Europe/Paris, or leave it empty)"


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

