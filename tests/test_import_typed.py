"""Typed attributes on import (``--attr-type`` and the admin mapping's type per column), on SQLite
and PostgreSQL: numbers, ISO dates and booleans are stored as such so a segment's gt/lt/before
compare them numerically and chronologically; a cell that does not parse as its type sends the
row to the rejects file with the reason, and a bad declaration is a one-line error with nothing
stored."""

from __future__ import annotations

import csv
import re

import pytest
from fastapi.testclient import TestClient

from cli_runner import run_main
from newsletter.config import Config
from newsletter.errors import InvalidInput
from newsletter.store import lists as store_lists
from newsletter.store import segments as sg
from newsletter.store import subscribers as subs
from newsletter.store.attr_types import apply_types, typed_value
from newsletter.store.db import get_engine, upgrade
from newsletter.store.importer import ImportOptions, import_file
from newsletter.web import create_app

CSV = ("email,age,joined,vip,zip\n"
       "ana@example.com,34,2024-03-01,yes,01234\n"
       "bo@example.com,1e3,2024-01-01T01:00:00+02:00,no,12345\n"
       "cy@example.com, 9 ,2023-06-30,TRUE,\n"
       "di@example.com,old,2024-02-02,true,999\n"
       "ed@example.com,40,31/01/2024,false,1\n"
       "fi@example.com,41,2024-02-30,maybe,2\n")


@pytest.fixture
def engine(db_url):
    upgrade(db_url)
    engine = get_engine(db_url)
    store_lists.create_list(engine, "weekly", "Weekly", opt_in="single")
    yield engine
    engine.dispose()


@pytest.fixture(params=["reader thread", "reader process"])
def reader(request, monkeypatch):
    from newsletter.store import importer

    monkeypatch.setattr(importer, "READER_PROCESS_MIN_ROWS", 0 if request.param == "reader process" else 10**9)
    return request.param


def attrs(engine, email):
    return subs.get_subscriber(engine, email).attributes


def count(engine, where) -> int:
    return sg.count_filter(engine, "weekly", where)[0]


def test_declared_types_are_stored_typed_and_bad_cells_are_rejected(engine, tmp_path, reader):
    p = tmp_path / "people.csv"
    p.write_text(CSV, encoding="utf-8")
    report = import_file(engine, p, ImportOptions(list_slug="weekly", attr_types={"age": "number", "joined": "date", "vip": "bool"}))
    assert report.added == 3 and report.invalid == 3
    assert attrs(engine, "ana@example.com") == {"age": 34, "joined": "2024-03-01", "vip": True, "zip": "01234"}
    assert attrs(engine, "bo@example.com") == {"age": 1000, "joined": "2023-12-31T23:00:00Z", "vip": False, "zip": "12345"}
    assert attrs(engine, "cy@example.com") == {"age": 9, "joined": "2023-06-30", "vip": True}
    reasons = {r.email: r.reason for r in report.rejects}
    assert reasons == {"di@example.com": "attribute 'age': 'old' is not a number",
                       "ed@example.com": "attribute 'joined': '31/01/2024' is not a date (write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)",
                       "fi@example.com": "attribute 'joined': '2024-02-30' is not a valid date"}
    with open(report.rejects_path, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "email", "reason"] and {r[1] for r in rows[1:]} == set(reasons)
    # What the types are for: segments compare numbers and dates as such, booleans as booleans.
    assert count(engine, '{"attr": "age", "gt": 100}') == 1  # 1e3 (as text it was no number at all)
    assert count(engine, '{"attr": "age", "lt": 10}') == 1  # 9, not " 9 "
    assert count(engine, '{"attr": "joined", "before": "2024-01-01"}') == 2  # bo's moment is 2023-12-31 in UTC
    assert count(engine, '{"attr": "vip", "eq": true}') == 2  # "yes" and "TRUE"
    assert count(engine, '{"attr": "zip", "eq": "01234"}') == 1  # undeclared: text as written


def test_auto_recognises_plain_numbers_booleans_and_iso_dates_only(engine, tmp_path):
    p = tmp_path / "auto.csv"
    p.write_text("email,a,b,c,d\nana@example.com,42,007,true,2024-05-06\nbo@example.com,-3.5,1e3,yes,2024-05-06T10:00:00Z\n",
                 encoding="utf-8")
    import_file(engine, p, ImportOptions(list_slug="weekly", attr_types={"*": "auto", "b": "text"}))
    assert attrs(engine, "ana@example.com") == {"a": 42, "b": "007", "c": True, "d": "2024-05-06"}
    assert attrs(engine, "bo@example.com") == {"a": -3.5, "b": "1e3", "c": "yes", "d": "2024-05-06T10:00:00Z"}


def test_jsonl_values_already_typed_are_kept_and_strings_converted(engine, tmp_path):
    p = tmp_path / "people.jsonl"
    p.write_text('{"email": "ana@example.com", "age": 31, "vip": "1"}\n{"email": "bo@example.com", "age": [1], "vip": true}\n',
                 encoding="utf-8")
    report = import_file(engine, p, ImportOptions(list_slug="weekly", attr_types={"age": "number", "vip": "bool"}))
    assert attrs(engine, "ana@example.com") == {"age": 31, "vip": True}
    assert [r.reason for r in report.rejects] == ["attribute 'age': '[1]' is not a number"]


@pytest.mark.parametrize("types, message", [
    ({"age": "integer"}, "--attr-type age=integer: the type must be one of text, number, date, bool, auto"),
    ({"agee": "number"}, "--attr-type names attribute 'agee', which no column becomes (attributes: age, joined, vip, zip)"),
])
def test_a_bad_declaration_is_refused_before_anything_is_stored(engine, tmp_path, types, message):
    p = tmp_path / "people.csv"
    p.write_text(CSV, encoding="utf-8")
    with pytest.raises(InvalidInput) as e:
        import_file(engine, p, ImportOptions(list_slug="weekly", attr_types=types))
    assert message in str(e.value)
    assert subs.list_subscribers(engine).total == 0


def test_cli_attr_type(engine, tmp_path, monkeypatch, capsys):
    p = tmp_path / "people.csv"
    p.write_text(CSV, encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    r = run_main(monkeypatch, capsys, ["--db", url, "subscribers", "import", str(p), "--list", "weekly",
                                       "--attr-type", "age=numbr"])
    assert r.returncode != 0 and "age=numbr: the type must be one of" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and subs.list_subscribers(engine).total == 0
    r = run_main(monkeypatch, capsys, ["--db", url, "subscribers", "import", str(p), "--list", "weekly",
                                       "--attr-type", "age=number", "--attr-type", "joined=date", "--attr-type", "vip=bool"])
    assert r.returncode == 0, r.stderr
    assert "'di@example.com': attribute 'age': 'old' is not a number" in r.stdout
    assert "rejected rows written to" in r.stdout
    assert attrs(engine, "bo@example.com")["age"] == 1000
    assert count(engine, '{"attr": "age", "gt": 33}') == 2


def test_web_mapping_declares_a_type_per_column(engine, db_url, tmp_path):
    config = Config(database_url=db_url, secret_key="test-secret-key-0123456789", outbox=str(tmp_path / "outbox"))
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000),
                    follow_redirects=False) as client:
        t = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/subscribers/import").text).group(1)
        r = client.post("/admin/subscribers/import", data={"list": "weekly", "csrf_token": t},
                        files={"file": ("people.csv", CSV.encode(), "text/csv")})
        key_url = r.headers["location"]
        page = client.get(key_url).text
        assert 'name="type_1"' in page and '<option value="number">Number</option>' in page
        mapping = {"map_0": "email", "map_1": "attr:age", "map_2": "attr:joined", "map_3": "attr:vip", "map_4": "attr:zip"}
        # An unknown type: the mapping comes back with the reason, nothing imported.
        r = client.post(key_url, data={"csrf_token": t, **mapping, "type_1": "numeric", "list": "weekly"})
        assert r.status_code == 400 and "Nothing was imported: --attr-type age=numeric" in r.text
        assert subs.list_subscribers(engine).total == 0
        r = client.post(key_url, data={"csrf_token": t, **mapping, "type_1": "number", "type_2": "date", "type_3": "bool",
                                       "type_4": "text", "list": "weekly"})
        assert r.status_code == 303
        assert attrs(engine, "ana@example.com") == {"age": 34, "joined": "2024-03-01", "vip": True, "zip": "01234"}
        rejects = client.get(key_url + "/rejects.csv").text
        assert "attribute 'age': 'old' is not a number" in rejects and "is not a valid date" in rejects


@pytest.mark.parametrize("kind, cell, value", [
    ("number", "42", 42), ("number", "-0.5", -0.5), ("number", "+7", 7), ("number", "2.0", 2), ("number", "1.5e2", 150),
    ("bool", "Y", True), ("bool", "off", False), ("bool", "0", False),
    ("date", "2024-02-29", "2024-02-29"), ("date", "2024-02-29 23:30", "2024-02-29T23:30:00"),
    ("date", "2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z"),
])
def test_typed_value(kind, cell, value):
    got = typed_value(kind, cell)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("kind, cell", [("number", "nan"), ("number", "1e999"), ("number", "1,5"), ("number", ""),
                                        ("bool", "si"), ("date", "2023-02-29"), ("date", "yesterday")])
def test_typed_value_refuses(kind, cell):
    attrs = {"x": cell}
    assert apply_types(attrs, {"x": kind}).startswith(f"attribute 'x': {cell!r} ")
