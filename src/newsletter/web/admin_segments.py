"""Admin pages for segments: the listing with live counts, the builder (rows of field / operator /
value joined by all or any, or the JSON filter itself), a live count while editing, a segment's
members, and delete behind a confirm step. A thin shell over store/segments.py; the rows are
web/segment_rows.py's. The save path works without JavaScript (the form posts the rows and the
server builds the filter); static/segments.js only adds rows and fetches the count.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ..errors import InvalidInput, NewsletterError
from ..store import segments as sg
from . import library
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import flash, page, redirect
from .segment_rows import FIELDS, MAX_ROWS, NO_VALUE, OPERATORS, Row, filter_rows, rows_filter

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])  # under admin.router's /admin

MEMBERS_PER_PAGE = 50
EVERYONE = "tick “Everyone on the list” to mean that"


def _href(name: str) -> str:
    return "/admin/segments/" + quote(name, safe="")


@router.get("/segments")
def segments_page(request: Request):
    """Every segment with its list, filter and live counts."""
    return page(request, "admin/segments.html", admin=True, active="segments", title="Segments",
                segments=sg.list_segments(state(request).engine))


# --- the builder's form ---------------------------------------------------------------------------


def _form_of(form: Any) -> dict:
    """What the builder posted (or sent to the count): rows, all/any, everyone, JSON and which of
    rows or JSON is meant, as typed."""
    rows = []
    indexes = sorted(int(k[6:]) for k in form if k.startswith("field_") and k[6:].isdigit() and len(k) < 12)
    for i in indexes:
        if form.get(f"remove_{i}"):
            continue
        rows.append(Row(str(form.get(f"field_{i}", "attr")), str(form.get(f"attr_{i}", "")), str(form.get(f"op_{i}", "eq")),
                        str(form.get(f"value_{i}", ""))))
    return {"name": str(form.get("name", "")).strip(), "list": str(form.get("list", "")),
            "match": "any" if form.get("match") == "any" else "all", "everyone": bool(form.get("everyone")),
            "filter_json": str(form.get("filter_json", "")), "source": "json" if form.get("source") == "json" else "rows",
            "rows": rows, "too_many": len(indexes) > MAX_ROWS}


def _filter_of(f: dict) -> str:
    """The filter text the form stands for; InvalidInput (worded for this page) when it cannot be one."""
    if f.get("too_many") and f["source"] == "rows":
        raise InvalidInput(f"at most {MAX_ROWS} conditions in the builder: write a longer filter as JSON")
    if f["source"] == "json":
        text = f["filter_json"].strip() or "{}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"segment filter: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    else:
        data = rows_filter(f["rows"], f["match"])
    if f["everyone"] and data != {}:
        raise InvalidInput("“Everyone on the list” means the whole list: untick it or remove the conditions")
    return json.dumps(data, ensure_ascii=False)


def _worded(e: NewsletterError) -> str:
    """A store message written for the CLI's flags, in this page's words."""
    return str(e).replace("give --all to mean that", EVERYONE).replace("give --all to mean the whole list", EVERYONE)


def _builder(request: Request, *, segment: sg.SegmentInfo | None, f: dict, http_status: int = 200,
             error: str | None = None, counts: tuple[int, int] | None = None):
    """The builder page: ``f`` as typed; rows come from the JSON when that is what was edited and
    rows can say it, and one blank row is added for a browser without JavaScript."""
    rows, match, nested = [r for r in f["rows"] if not r.blank()], f["match"], False
    if f["source"] == "json":
        try:
            back = filter_rows(json.loads(f["filter_json"] or "{}"))
        except json.JSONDecodeError:
            back = None
        if back is None:
            nested = True
        else:
            rows, match = back
    shown_json = f["filter_json"]
    if f["source"] == "rows":
        try:
            shown_json = json.dumps(rows_filter(rows, match), ensure_ascii=False, indent=1)
        except InvalidInput:
            pass
    return page(request, "admin/segment_form.html", status=http_status, admin=True, active="segments",
                title=f"Edit segment {segment.name}" if segment else "New segment", segment=segment,
                lists=library.all_lists(state(request)), form=f, rows=(rows + [Row()]) if not nested else rows,
                match=match, nested=nested, filter_json=shown_json, counts=counts, fields=FIELDS,
                operators=OPERATORS, no_value=NO_VALUE, flash=("error", error) if error else None)


def _form_from(info: sg.SegmentInfo) -> dict:
    data = json.loads(info.filter or "{}")
    back = filter_rows(data)
    rows, match = back if back is not None else ([], "all")
    return {"name": info.name, "list": info.list, "match": match, "everyone": info.match_all,
            "filter_json": json.dumps(data, ensure_ascii=False, indent=1), "source": "rows" if back is not None else "json",
            "rows": rows}


@router.get("/segments/new")
def segment_new(request: Request, list: str = ""):
    f = {"name": "", "list": list, "match": "all", "everyone": False, "filter_json": "{}", "source": "rows", "rows": []}
    return _builder(request, segment=None, f=f)


@router.post("/segments/new")
async def segment_create(request: Request):
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    f = _form_of(form)
    try:
        info = sg.create_segment(state(request).engine, f["name"], f["list"], _filter_of(f), match_all=f["everyone"])
    except NewsletterError as e:
        return _builder(request, segment=None, f=f, http_status=status_for(e), error=f"Not saved: {_worded(e)}")
    flash(request, "ok", f"Segment {info.name} created.")
    return redirect(_href(info.name) + "/members")


@router.get("/segments/count")
def segment_count(request: Request):
    """The builder's live count: the form's fields in the query (a read: nothing is stored).
    ``{"matching", "mailable", "filter"}``, or ``{"error"}`` with status 400 for a filter the
    store refuses."""
    f = _form_of(request.query_params)
    try:
        text = _filter_of(f)
        matching, mailable = sg.count_filter(state(request).engine, f["list"], text, match_all=f["everyone"])
    except NewsletterError as e:
        return JSONResponse({"error": _worded(e)}, status_code=status_for(e), headers={"Cache-Control": "no-store"})
    return JSONResponse({"matching": matching, "mailable": mailable,
                         "filter": json.dumps(json.loads(text), ensure_ascii=False, indent=1)},
                        headers={"Cache-Control": "no-store"})


@router.get("/segments/{name}/edit")
def segment_edit_form(request: Request, name: str):
    info = sg.get_segment(state(request).engine, name)
    return _builder(request, segment=info, f=_form_from(info), counts=(info.matching or 0, info.mailable or 0))


@router.post("/segments/{name}/edit")
async def segment_edit(request: Request, name: str):
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    st = state(request)
    info = sg.get_segment(st.engine, name, counts=False)
    f = _form_of(form) | {"name": info.name}
    try:
        sg.update_segment(st.engine, info.name, f["list"], _filter_of(f), match_all=f["everyone"])
    except NewsletterError as e:
        return _builder(request, segment=info, f=f, http_status=status_for(e), error=f"Not saved: {_worded(e)}")
    flash(request, "ok", f"Segment {info.name} saved.")
    return redirect(_href(info.name) + "/members")


# --- members and delete ---------------------------------------------------------------------------


@router.get("/segments/{name}/members")
def segment_members_page(request: Request, name: str, page_no: int = Query(1, alias="page", ge=1, le=10**6)):
    st = state(request)
    info = sg.get_segment(st.engine, name)
    pages = max(1, -(-(info.matching or 0) // MEMBERS_PER_PAGE))
    page_no = min(page_no, pages)
    members = sg.segment_members(st.engine, name, limit=MEMBERS_PER_PAGE, offset=(page_no - 1) * MEMBERS_PER_PAGE)
    return page(request, "admin/segment_members.html", admin=True, active="segments", title=f"Segment {info.name}",
                segment=info, members=members, page_no=page_no, pages=pages, href=_href(info.name))


@router.get("/segments/{name}/delete")
def segment_delete_form(request: Request, name: str):
    info = sg.get_segment(state(request).engine, name)
    return page(request, "admin/segment_delete.html", admin=True, active="segments", title=f"Delete segment {info.name}",
                segment=info, href=_href(info.name))


@router.post("/segments/{name}/delete")
async def segment_delete(request: Request, name: str):
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    sg.delete_segment(state(request).engine, name)
    flash(request, "ok", f"Segment {name} deleted; campaigns made with it keep the filter they recorded.")
    return redirect("/admin/segments")
