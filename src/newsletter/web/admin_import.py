"""The admin's import in three steps: upload a file, map its columns (seeing the first rows;
Mailchimp, listmonk and Substack exports come mapped), then the report with a downloadable
rejects file and, on a double-opt-in list, a button sending the confirmation emails.

The upload waits in a private temporary folder between the steps, named by a random key and
deleted after the import (or when newer uploads push it out). Reading and importing are the
library's (store/import_reading.py, import_formats.py, importer.py).
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidInput, NewsletterError
from . import library
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import page, redirect

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])  # under admin.router's /admin

KEPT_UPLOADS = 20  # uploads waiting for their mapping step; older ones are deleted
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".txt")
# What a column can be mapped to, as the mapping step offers it (attr:HEADER is added per column).
TARGETS = [("email", "Email address"), ("name", "Name"), ("first_name", "First name (joined into the name)"),
           ("last_name", "Last name (joined into the name)"), ("status", "Status (subscribed / unsubscribed…)"),
           ("attributes", "Attributes as JSON"), ("unsubscribed-if-set", "Unsubscribed when filled in"),
           ("bounced-if-set", "Bounced when filled in"), ("-", "Ignore this column")]
# How an attribute column's cells are stored (store/attr_types.py): segments compare by this type.
ATTR_TYPE_CHOICES = [("text", "Text, as written"), ("auto", "Recognise numbers, dates, true/false"),
                     ("number", "Number"), ("date", "Date (YYYY-MM-DD)"), ("bool", "Yes/no (true/false)")]


@dataclass
class Upload:
    """One uploaded file between the steps (its report once imported)."""

    key: str
    path: Path
    filename: str
    sha256: str
    created: float = field(default_factory=time.monotonic)
    report: object = None
    rejects: Path | None = None
    options: dict = field(default_factory=dict)


class Uploads:
    """The uploads of this process, in a private temporary folder (mode 0700)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="newsletter-uploads-"))
        self.items: dict[str, Upload] = {}
        self.lock = threading.Lock()

    def add(self, fileobj, filename: str) -> Upload:
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise InvalidInput(f"{Path(filename).name}: import takes a .csv or .jsonl file")
        key = secrets.token_urlsafe(16)
        folder = self.dir / key
        folder.mkdir(mode=0o700)
        path = folder / ("upload" + (".jsonl" if suffix in (".jsonl", ".ndjson") else ".csv"))
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            while block := fileobj.read(1 << 20):
                digest.update(block)
                out.write(block)
        up = Upload(key, path, Path(filename).name[:200], digest.hexdigest())
        with self.lock:
            self.items[key] = up
            for old in sorted(self.items.values(), key=lambda u: u.created)[:-KEPT_UPLOADS]:
                self.drop(old.key)
        return up

    def get(self, key: str) -> Upload:
        with self.lock:
            up = self.items.get(key)
        if up is None:
            raise HTTPException(404, "that upload is no longer here (uploads are kept until imported, 20 at most): upload the file again")
        return up

    def drop(self, key: str) -> None:
        up = self.items.pop(key, None)
        if up is not None:
            shutil.rmtree(up.path.parent, ignore_errors=True)


def _uploads(request: Request) -> Uploads:
    app_state = request.app.state
    if getattr(app_state, "uploads", None) is None:
        app_state.uploads = Uploads()
    return app_state.uploads


def _form_page(request: Request, *, http_status: int = 200, error: str | None = None, list_slug: str = ""):
    return page(request, "admin/import.html", status=http_status, admin=True, active="subscribers", title="Import",
                lists=library.all_lists(state(request)), list_slug=list_slug, flash=("error", error) if error else None)


@router.get("/subscribers/import")
def import_form(request: Request, list: str = ""):
    return _form_page(request, list_slug=list)


@router.post("/subscribers/import")
async def import_upload(request: Request):
    """Step 1: keep the file, then show its first rows and the mapping."""
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    list_slug = str(form.get("list", ""))
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return _form_page(request, http_status=400, error="Choose a CSV or JSON Lines file to import.", list_slug=list_slug)
    try:
        up = await run_in_threadpool(_uploads(request).add, upload.file, upload.filename)
        up.options["list"] = list_slug
        await run_in_threadpool(_preview, up)  # a file that cannot be read is refused here
    except NewsletterError as e:
        return _form_page(request, http_status=status_for(e), error=_plain(str(e), up.path if "up" in locals() else None),
                          list_slug=list_slug)
    return redirect(f"/admin/subscribers/import/{up.key}")


def _plain(message: str, path: Path | None) -> str:
    """A library message about the temporary copy, naming the uploaded file instead."""
    return message.replace(str(path), "the file") if path is not None else message


def _preview(up: Upload):
    from ..store.import_formats import suggested_mapping
    from ..store.import_reading import EXPORT_COLUMNS, ImportOptions, preview_file

    header, rows = preview_file(up.path, ImportOptions(list_slug=""))
    fmt, targets = suggested_mapping(header, EXPORT_COLUMNS)
    return header, rows, fmt, targets


def _mapping_page(request: Request, up: Upload, *, http_status: int = 200, error: str | None = None, chosen: dict | None = None):
    header, rows, fmt, targets = _preview(up)
    chosen = chosen or {}
    columns = []
    for i, h in enumerate(header):
        picked = chosen.get(f"map_{i}", targets[i])
        options = list(TARGETS) + ([(f"attr:{h.strip()}", f"Attribute “{h.strip()}”")] if h.strip() else [])
        if picked not in [v for v, _ in options]:
            options.append((picked, picked))
        columns.append({"index": i, "name": h, "picked": picked, "options": options, "type": chosen.get(f"type_{i}", "text"),
                        "samples": [r[i] if i < len(r) else "" for r in rows]})
    lists = library.all_lists(state(request))
    return page(request, "admin/import_map.html", status=http_status, admin=True, active="subscribers", title="Map columns",
                up=up, columns=columns, fmt=fmt, lists=lists, list_slug=chosen.get("list", up.options.get("list", "")),
                confirmed_mode=chosen.get("confirmed", "ask"), resubscribe=bool(chosen.get("resubscribe")),
                flash=("error", error) if error else None, rows_shown=len(rows), attr_types=ATTR_TYPE_CHOICES)


@router.get("/subscribers/import/{key}")
def import_mapping(request: Request, key: str):
    up = _uploads(request).get(key)
    if up.report is not None:
        return _result_page(request, up)
    return _mapping_page(request, up)


@router.post("/subscribers/import/{key}")
async def import_run(request: Request, key: str):
    """Step 2: import with the chosen mapping; step 3: the report."""
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    up = _uploads(request).get(key)
    if up.report is not None:
        return redirect(f"/admin/subscribers/import/{key}")
    chosen = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        await run_in_threadpool(_run, request, up, chosen)
    except NewsletterError as e:
        problem = e
    else:
        return redirect(f"/admin/subscribers/import/{key}")
    return await run_in_threadpool(lambda: _mapping_page(request, up, http_status=status_for(problem),
                                                         error=f"Nothing was imported: {_plain(str(problem), up.path)}",
                                                         chosen=chosen))


def _run(request: Request, up: Upload, chosen: dict) -> None:
    from ..store.importer import ImportOptions, import_file

    st = state(request)
    header, _, _, _ = _preview(up)
    mapping, types = {}, {}
    for i, h in enumerate(header):
        target = chosen.get(f"map_{i}")
        if target is not None and h.strip():
            mapping[h] = target
            kind = chosen.get(f"type_{i}", "text")
            if target.startswith("attr:") and kind != "text":
                types[target[5:].strip()] = kind
    if sum(1 for t in mapping.values() if t == "email") != 1:
        raise InvalidInput("map exactly one column to Email address")
    list_slug = chosen.get("list", "")
    if not list_slug:
        raise InvalidInput("choose the list to import into")
    keep = chosen.get("confirmed") == "keep"
    evidence = f"import:{up.filename} sha256:{up.sha256[:16]}" + (" (confirmed in the file)" if keep else "")
    rejects = up.path.with_name("rejects.csv")
    opts = ImportOptions(list_slug=list_slug, mapping=mapping, resubscribe=bool(chosen.get("resubscribe")),
                         keep_confirmed=keep, source=evidence, rejects_path=rejects, attr_types=types)
    report = import_file(st.engine, up.path, opts)
    report.path = up.filename
    up.report, up.rejects = report, rejects if rejects.exists() else None
    up.options = {"list": list_slug, "keep": keep, "resubscribe": bool(chosen.get("resubscribe")), "evidence": evidence}
    up.path.unlink(missing_ok=True)  # the people are stored; only the rejects stay for download


def _result_page(request: Request, up: Upload):
    lst = next((x for x in library.all_lists(state(request)) if x.slug == up.options.get("list")), None)
    return page(request, "admin/import_result.html", admin=True, active="subscribers", title="Import report",
                up=up, report=up.report, lst=lst, resubscribe=up.options.get("resubscribe"), keep=up.options.get("keep"),
                evidence=up.options.get("evidence"))


@router.get("/subscribers/import/{key}/rejects.csv")
def import_rejects(request: Request, key: str):
    up = _uploads(request).get(key)
    if up.rejects is None or not up.rejects.exists():
        raise HTTPException(404, "this import rejected no row")
    stem = Path(up.filename).stem or "import"
    return FileResponse(up.rejects, media_type="text/csv; charset=utf-8", filename=f"{stem}.rejects.csv",
                        headers={"Cache-Control": "no-store"})
