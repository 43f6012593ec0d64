"""Import and export hardening (issue 11): the rejects file is complete when the import returns,
column and attribute caps, one control-character rule, deep JSON, and an exact export -> import
round trip on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

from newsletter.store.importer import ImportOptions, _produce


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --- the rejects file is on disk before the reader says it is done --------------------------


def test_rejects_file_is_complete_when_the_reader_sends_its_end_marker(tmp_path):
    """The reader process used to close (flush) the rejects file after sending its end marker, and
    the importer killed it right after receiving that marker: under load the caller read an empty
    rejects file. Whatever reads the file when the marker arrives must find every reject."""
    p = write(tmp_path, "people.jsonl", '{"email": "a@example.com"}\nnot json\n["x"]\n{"email": "b@example.com"}\n')
    rejects = tmp_path / "people.rejects.csv"
    seen = []

    def put(item) -> bool:
        if item is None:
            with open(rejects, newline="", encoding="utf-8") as f:
                seen.append([(r["line"], r["email"]) for r in csv.DictReader(f)])
        return True

    _produce(p, ImportOptions(list_slug="weekly", batch_size=1), "jsonl", rejects, put)
    assert seen == [[("2", "not json"), ("3", '["x"]')]]
