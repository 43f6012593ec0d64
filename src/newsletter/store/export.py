"""Exporting subscribers as CSV that is safe to open in a spreadsheet and re-imports exactly.

``safe_cell`` guards every cell against CSV injection; a file whose header ends with
EXPORT_MARKER is one of ours, and the import (import_reading.py) takes the guard off again.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import IO, Any

from sqlalchemy.engine import Engine

from .subscribers import iter_subscribers

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_GUARDED = (*_FORMULA_START, "'")  # a cell that starts with ' is guarded too, so the guard can be undone exactly
EXPORT_MARKER = "newsletter_export_v1"  # last header cell of export_csv: the import then undoes the guard


def safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (CSV injection): a cell starting with
    = + - @ TAB or CR — or with ' itself — gets a leading ' (``unguard_cell`` takes it off again)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, datetime):
        text = value.isoformat(timespec="seconds")
    else:
        text = str(value)
    return "'" + text if text.startswith(_GUARDED) else text


def unguard_cell(text: str) -> str:
    """The value ``safe_cell`` guarded (a cell of our own export, see EXPORT_MARKER)."""
    return text[1:] if text.startswith("'") else text


def export_csv(engine: Engine, out: IO[str], *, list_slug: str | None = None, status: str | None = None,
               search: str | None = None) -> int:
    """Write matching subscribers as CSV (header: email, name, status or lists, consent_source,
    created_at, one column per attribute, then EXPORT_MARKER) that re-imports exactly: every cell
    is guarded against CSV injection (``safe_cell``), and the import takes the guard off again in
    a file whose header ends with the marker. ``search`` filters as the admin's search box does.
    Returns the row count."""
    attr_keys: set[str] = set()
    for row in iter_subscribers(engine, list_slug=list_slug, status=status, search=search):
        attr_keys.update(row.attributes)
    reserved = {"email", "name", "status", "lists", "consent_source", "created_at", EXPORT_MARKER}
    keys = sorted(k for k in attr_keys if k not in reserved)
    writer = csv.writer(out, lineterminator="\r\n")
    head = ["email", "name", "status" if list_slug else "lists", "consent_source", "created_at", *keys]
    writer.writerow([safe_cell(h) for h in head] + [EXPORT_MARKER])
    n = 0
    for row in iter_subscribers(engine, list_slug=list_slug, status=status, search=search):
        where = row.status if list_slug else " ".join(f"{slug}:{st}" for slug, st in row.lists.items())
        cells = [row.email, row.name, where, row.consent_source, row.created_at, *(row.attributes.get(k) for k in keys)]
        writer.writerow([safe_cell(c) for c in cells] + [""])
        n += 1
    return n
