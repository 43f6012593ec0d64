"""The admin's segment builder over HTTP (local client, no auth), on SQLite and PostgreSQL: create
from rows (no JavaScript: the server builds the filter), edit, edit as JSON, delete after a
confirm step, errors shown in the form with what was typed and nothing stored, the CSRF check,
the live count endpoint and the paginated members page linking to each person."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from newsletter.config import Config
from newsletter.store import lists as store_lists
from newsletter.store import segments as sg
from newsletter.store import subscribers as subs
from newsletter.store.db import get_engine, upgrade
from newsletter.store.leaving import unsubscribe
from newsletter.web import create_app
from newsletter.web.segment_rows import Row, filter_rows, rows_filter

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def engine(db_url):
    upgrade(db_url)
    engine = get_engine(db_url)
    store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    store_lists.create_list(engine, "news", "News", opt_in="single")
    people = [("ana@example.com", {"city": "Lisbon", "age": 34, "vip": True}),
              ("bo@example.com", {"city": "Porto", "age": "9"}),
              ("cy@x.org", {"city": "Lisbon", "age": 70}),
              ("di@x.org", {})]
    for email, attrs in people:
        subs.add_subscriber(engine, email, list_slug="weekly", attributes=attrs, source="test")
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine, db_url, tmp_path):
    config = Config(database_url=db_url, secret_key=SECRET, outbox=str(tmp_path / "outbox"))
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000),
                    follow_redirects=False) as c:
        yield c


def token(client, url="/admin/segments/new"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def rows_form(**rows) -> dict:
    """Form fields for builder rows given as field_0=..., attr_0=... keyword arguments."""
    return {k: str(v) for k, v in rows.items()}


def test_create_from_rows_without_javascript_then_members_and_listing(client, engine):
    page = client.get("/admin/segments/new").text
    assert 'id="segment-form"' in page and 'name="field_0"' in page and '/static/segments.js' in page
    assert "<script>" not in page  # CSP: scripts only from /static
    t = token(client)
    r = client.post("/admin/segments/new", data={
        "csrf_token": t, "name": "lisbon-adults", "list": "weekly", "match": "all", "source": "rows",
        **rows_form(field_0="attr", attr_0="city", op_0="eq", value_0="Lisbon",
                    field_1="attr", attr_1="age", op_1="gt", value_1="18",
                    field_2="attr", attr_2="", op_2="eq", value_2="")})  # the blank spare row is left out
    assert r.status_code == 303 and r.headers["location"] == "/admin/segments/lisbon-adults/members"
    info = sg.get_segment(engine, "lisbon-adults")
    assert json.loads(info.filter) == {"all": [{"attr": "city", "eq": "Lisbon"}, {"attr": "age", "gt": 18}]}
    assert (info.matching, info.mailable) == (2, 2)
    members = client.get("/admin/segments/lisbon-adults/members").text
    assert 'href="/admin/subscribers/person?email=ana%40example.com"' in members
    assert "cy@x.org" in members and "bo@example.com" not in members and 'id="matching">2<' in members
    listing = client.get("/admin/segments").text
    assert "lisbon-adults" in listing and "/admin/segments/lisbon-adults/edit" in listing


def test_any_negation_and_other_fields(client, engine):
    t = token(client)
    r = client.post("/admin/segments/new", data={
        "csrf_token": t, "name": "mixed", "list": "weekly", "match": "any", "source": "rows",
        **rows_form(field_0="domain", op_0="eq", value_0="x.org", field_1="attr", attr_1="vip", op_1="eq", value_1="true",
                    field_2="attr", attr_2="city", op_2="!exists")})
    assert r.status_code == 303, r.text
    assert json.loads(sg.get_segment(engine, "mixed").filter) == {"any": [
        {"domain": {"eq": "x.org"}}, {"attr": "vip", "eq": True}, {"attr": "city", "exists": False}]}
    assert sg.get_segment(engine, "mixed").matching == 3  # ana (vip), cy and di (x.org)


@pytest.mark.parametrize("fields, problem", [
    ({"field_0": "attr", "attr_0": "age", "op_0": "within", "value_0": "soon"}, "duration 'soon' is invalid"),
    ({"field_0": "attr", "attr_0": "age", "op_0": "bigger", "value_0": "3"}, "'bigger' does not apply"),
    ({"field_0": "status", "op_0": "eq", "value_0": "gone"}, "status 'gone' is unknown"),
    ({"field_0": "attr", "attr_0": 'ci"ty', "op_0": "eq", "value_0": "x"}, "attribute name 'ci\"ty' is invalid"),
    ({"field_0": "attr", "attr_0": "", "op_0": "eq", "value_0": ""}, "would match everyone on the list: tick “Everyone on the list”"),
    ({"source": "json", "filter_json": '{"attr": "age", "near": 3}'}, "unknown operator 'near'"),
    ({"source": "json", "filter_json": '{"attr": '}, "malformed JSON"),
    ({"everyone": "1", "field_0": "attr", "attr_0": "age", "op_0": "gt", "value_0": "3"}, "“Everyone on the list” means the whole list"),
])
def test_errors_stay_in_the_form_with_the_values_and_store_nothing(client, engine, fields, problem):
    t = token(client)
    data = {"csrf_token": t, "name": "bad-one", "list": "weekly", "match": "all", "source": "rows", **fields}
    r = client.post("/admin/segments/new", data=data)
    assert r.status_code == 400, r.text
    flash = re.search(r'<div class="flash error" role="alert">([^<]*)</div>', r.text).group(1)
    assert flash.startswith("Not saved: ") and "\n" not in flash
    assert problem in flash.replace("&#34;", '"').replace("&#39;", "'"), flash
    assert 'value="bad-one"' in r.text and 'aria-label="Admin"' in r.text
    for v in fields.values():
        if v and v not in ("attr", "eq", "1", "json", "status"):
            assert v.replace('"', "&#34;") in r.text or v in r.text, v
    assert sg.list_segments(engine) == []


def test_too_many_rows_are_refused_not_cut(client, engine):
    rows = {k: v for i in range(51) for k, v in {f"field_{i}": "attr", f"attr_{i}": "n", f"op_{i}": "eq", f"value_{i}": str(i)}.items()}
    r = client.post("/admin/segments/new", data={"csrf_token": token(client), "name": "long", "list": "weekly", "source": "rows", **rows})
    assert r.status_code == 400 and "at most 50 conditions" in r.text and sg.list_segments(engine) == []


def test_unknown_list_and_duplicate_name(client, engine):
    t = token(client)
    base = {"csrf_token": t, "name": "dup", "source": "rows", "field_0": "attr", "attr_0": "city", "op_0": "eq", "value_0": "Porto"}
    r = client.post("/admin/segments/new", data=base | {"list": "nope"})
    assert r.status_code == 404 and "list &#39;nope&#39; does not exist" in r.text
    assert client.post("/admin/segments/new", data=base | {"list": "weekly"}).status_code == 303
    r = client.post("/admin/segments/new", data=base | {"list": "weekly"})
    assert r.status_code == 409 and "already exists" in r.text


def test_csrf_is_refused_and_nothing_changes(client, engine):
    sg.create_segment(engine, "keep", "weekly", '{"attr": "city", "eq": "Porto"}')
    data = {"name": "x", "list": "weekly", "source": "rows", "field_0": "attr", "attr_0": "city", "op_0": "eq", "value_0": "Porto"}
    assert client.post("/admin/segments/new", data=data | {"csrf_token": "forged"}).status_code == 403
    assert client.post("/admin/segments/keep/edit", data=data).status_code == 403
    assert client.post("/admin/segments/keep/delete", data={"csrf_token": "forged"}).status_code == 403
    assert [s.name for s in sg.list_segments(engine)] == ["keep"]
    assert sg.get_segment(engine, "keep").filter == '{"attr":"city","eq":"Porto"}'


def test_edit_rows_and_json_and_delete_after_confirm(client, engine):
    sg.create_segment(engine, "porto", "weekly", '{"attr": "city", "eq": "Porto"}')
    page = client.get("/admin/segments/porto/edit").text
    assert 'value="city"' in page and 'value="Porto"' in page and 'id="count-matching">1<' in page
    t = token(client, "/admin/segments/porto/edit")
    r = client.post("/admin/segments/porto/edit", data={"csrf_token": t, "list": "weekly", "source": "rows", "match": "all",
                                                        "field_0": "attr", "attr_0": "age", "op_0": "lt", "value_0": "50",
                                                        "field_1": "attr", "attr_1": "city", "op_1": "eq", "value_1": "x",
                                                        "remove_1": "1"})
    assert r.status_code == 303
    info = sg.get_segment(engine, "porto")
    assert json.loads(info.filter) == {"attr": "age", "lt": 50} and info.matching == 2  # 34 and "9" (text, numeric)
    # A nested filter saved as JSON: the builder says so and shows the JSON only.
    nested = {"any": [{"all": [{"attr": "city", "eq": "Lisbon"}, {"attr": "age", "gt": 50}]}, {"domain": {"eq": "example.com"}}]}
    r = client.post("/admin/segments/porto/edit", data={"csrf_token": t, "list": "news", "source": "json",
                                                        "filter_json": json.dumps(nested)})
    assert r.status_code == 303
    info = sg.get_segment(engine, "porto")
    assert json.loads(info.filter) == nested and info.list == "news"
    page = client.get("/admin/segments/porto/edit").text
    assert 'id="nested-note"' in page and 'name="field_0"' not in page and 'value="json"' in page
    # Delete: a confirm page first (a GET changes nothing), then the POST.
    confirm = client.get("/admin/segments/porto/delete")
    assert confirm.status_code == 200 and "Delete segment porto?" in confirm.text
    assert sg.get_segment(engine, "porto")
    r = client.post("/admin/segments/porto/delete", data={"csrf_token": t})
    assert r.status_code == 303 and sg.list_segments(engine) == []
    assert client.get("/admin/segments/porto/members").status_code == 404


def test_count_endpoint_is_a_read_with_the_forms_fields(client, engine):
    q = {"list": "weekly", "source": "rows", "match": "all", "field_0": "attr", "attr_0": "city", "op_0": "eq", "value_0": "Lisbon"}
    r = client.get("/admin/segments/count", params=q)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert (body["matching"], body["mailable"]) == (2, 2) and json.loads(body["filter"]) == {"attr": "city", "eq": "Lisbon"}
    unsubscribe(engine, "cy@x.org", "weekly")  # still matching, no longer mailable
    r = client.get("/admin/segments/count", params=q)
    assert (r.json()["matching"], r.json()["mailable"]) == (2, 1)
    r = client.get("/admin/segments/count", params=q | {"value_0": "Porto"})
    assert (r.json()["matching"], r.json()["mailable"]) == (1, 1)
    r = client.get("/admin/segments/count", params={"list": "weekly", "source": "json", "filter_json": '{"attr": "age", "gt": 30}'})
    assert r.json()["matching"] == 2  # 34 and 70; "9" is less
    r = client.get("/admin/segments/count", params={"list": "weekly", "everyone": "1", "source": "rows"})
    assert r.json()["matching"] == 4
    r = client.get("/admin/segments/count", params=q | {"op_0": "within"})
    assert r.status_code == 400 and "duration 'Lisbon' is invalid" in r.json()["error"]
    assert client.post("/admin/segments/count", data=q).status_code == 405
    assert sg.list_segments(engine) == []


def test_members_page_is_paginated(client, engine, monkeypatch):
    from newsletter.web import admin_segments

    monkeypatch.setattr(admin_segments, "MEMBERS_PER_PAGE", 2)
    sg.create_segment(engine, "everyone", "weekly", "{}", match_all=True)
    first = client.get("/admin/segments/everyone/members").text
    assert "Page 1 of 2" in first and 'rel="next"' in first and "ana@example.com" in first and "cy@x.org" not in first
    second = client.get("/admin/segments/everyone/members", params={"page": 2}).text
    assert "cy@x.org" in second and "di@x.org" in second and "ana@example.com" not in second and 'rel="prev"' in second


def test_rows_and_filters_round_trip():
    rows = [Row("attr", "city", "eq", "Lisbon"), Row("attr", "tags", "!contains", "vip"), Row("opened", "", "within", "30d"),
            Row("attr", "age", "in", "1, 2.5"), Row("status", "", "in", "active, unconfirmed"), Row("attr", "x", "!exists", "")]
    f = rows_filter(rows, "any")
    assert f == {"any": [{"attr": "city", "eq": "Lisbon"}, {"not": {"attr": "tags", "contains": "vip"}},
                         {"opened": {"within": "30d"}}, {"attr": "age", "in": [1, 2.5]},
                         {"status": {"in": ["active", "unconfirmed"]}}, {"attr": "x", "exists": False}]}
    assert filter_rows(f) == (rows, "any")
    assert filter_rows({"attr": "zip", "eq": "42"}) is None  # rows would read 42 as a number: JSON only
    assert filter_rows({"all": [{"any": [{"attr": "a", "eq": 1}]}]}) is None
