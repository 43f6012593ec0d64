"""Import subscribers from CSV or JSON Lines into a list: streaming, in batches, resumable.

The file is read twice. The first pass only checks it (encoding, CSV structure, an email
column) so a malformed file changes nothing. The second pass — in a child process for large
files, so it runs on another core — validates each address and merges duplicates into batches;
each batch is written in one transaction (SQLite: bulk statements on a JSON array of keys;
PostgreSQL: one COPY into a temporary table, two batches at a time on two connections).
Memory stays constant whatever the file size; a killed import leaves whole batches, and
running it again finishes the job without duplicates. Nobody unsubscribed, bounced, complained
or suppressed is re-subscribed unless ``resubscribe`` (fresh consent) is given — and
suppression never yields.

This module is the pipeline and its public entry point (``import_file``): it starts the reader,
writes each batch and keeps the report. Reading the file is import_reading.py; validating and
batching rows (the reader thread or process) import_batches.py; the bulk SQL import_sql.py.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Sequence

from sqlalchemy.engine import Engine

from ..errors import InvalidInput, NewsletterError
from .addresses import domain_of
from .attr_types import check_types
from .consent import Join, joining_status, may_join
from .db import transaction
from .import_batches import MAX_REJECTS_KEPT, _Failed, _json, _produce, copy_text
from .import_reading import ImportOptions, Reject, _detect_format, check_file
from .import_sql import _SQL, _Retry
from .lookups import _list_row
from .models import OPTED_OUT_STATUSES, utcnow
from .textrules import check_text

__all__ = ["ImportOptions", "ImportReport", "Reject", "check_file", "import_file", "MAX_REJECTS_KEPT"]


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


_COUNTERS = ("added", "updated", "already_present", "skipped_unsubscribed", "skipped_suppressed",
             "recorded_unsubscribed", "resubscribed", "unconfirmed", "batches")


class _Writer:
    """Writes batches; holds only per-import constants, never rows."""

    def __init__(self, engine: Engine, list_id: int, opt_in: str, opts: ImportOptions, source: str, report: ImportReport):
        self.engine = engine
        self.list_id = list_id
        self.fresh = joining_status(opt_in)
        self.opts = opts
        self.source = source
        self.report = report
        self.sql = _SQL(engine)
        self.lock = threading.Lock()  # PostgreSQL writes two batches at once

    def write(self, rows: list[tuple], copy: bytes | None = None) -> None:
        """Write one batch of (email, key, name, attributes JSON, status) rows, already merged by
        key, in one transaction (``copy``: the same rows as COPY text, for PostgreSQL). When a
        concurrent import stored one of these people between our lookup and our insert, the
        batch is rolled back and done again, so it sees them as already stored."""
        if self.sql.pg and copy is None:
            copy = copy_text(rows)
        for attempt in range(1, 4):
            delta = ImportReport(path=self.report.path, list_slug=self.report.list_slug)
            try:
                self._write(rows, copy, delta)
            except _Retry:
                if attempt == 3:
                    raise InvalidInput(f"{self.report.path}: another import keeps storing the same people at the "
                                       "same time; run this import again when it has finished") from None
                continue
            with self.lock:
                for name in _COUNTERS:
                    setattr(self.report, name, getattr(self.report, name) + getattr(delta, name))
            return

    def _write(self, rows: list[tuple], copy: bytes | None, report: ImportReport) -> None:
        sql = self.sql
        merged = {r[1]: r for r in rows}
        keys = list(merged)
        now = sql.ts(utcnow())
        with transaction(self.engine) as conn:
            sql.begin(conn, keys, copy)
            suppressed = sql.suppressed_addresses(conn)
            domains = sql.suppressed_domains(conn)
            if domains:
                suppressed.update(k for k in keys if domain_of(k) in domains)
            if suppressed:
                report.skipped_suppressed += len(suppressed)
                for k in suppressed:
                    del merged[k]
                keys = list(merged)
                sql.drop_keys(conn, suppressed)
            if not keys:
                report.batches += 1
                return

            existing = {k: v for k, v in sql.existing(conn, self.list_id).items() if k in merged}
            ids = {key: v[0] for key, v in existing.items()}
            subs = {v[0]: (v[3], v[4]) for v in existing.values() if v[3] is not None}
            new = [merged[k] for k in keys if k not in existing]
            if new:
                plain = [r[:4] for r in new if r[4] is None]  # no status of their own: the list's fresh status
                special = [r[:4] for r in new if r[4] is not None]
                if plain:
                    stored = [k for k, v in existing.items() if merged[k][4] is None]
                    sql.insert_and_subscribe(conn, plain, self.list_id, self.fresh, self.source, now, stored)
                    report.added += len(plain)
                    if self.fresh == "unconfirmed":
                        report.unconfirmed += len(plain)
                    done = {r[1] for r in plain}
                    keys = [k for k in keys if k not in done]
                if special:
                    sql.insert_subscribers(conn, special, self.source, now)
                    wanted = {r[1] for r in special}
                    ids.update((k, i) for k, i in sql.ids(conn).items() if k in wanted)

            changed: dict[int, tuple] = {}
            for key, (sid, old_name, old_text, _, _) in existing.items():
                _, _, new_name, new_text, _ = merged[key]
                name = new_name or old_name
                text = old_text
                if new_text != "{}" and new_text != old_text:  # the same JSON text: nothing to merge
                    old_attrs = json.loads(old_text) or {}
                    attrs = {**old_attrs, **json.loads(new_text)}
                    if attrs != old_attrs:
                        text = _json(attrs)
                if name != old_name or text is not old_text:
                    changed[sid] = (sid, name, text)

            inserts, updates = [], []
            fresh_confirmed = now if self.fresh == "active" else None
            for key in keys:
                rec_status, sid = merged[key][4], ids[key]
                sub = subs.get(sid)
                if sub is None:
                    status = rec_status or self.fresh
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
                if rec_status in OPTED_OUT_STATUSES and sub_status not in OPTED_OUT_STATUSES:
                    # The file records an opt-out we did not know about: honour it.
                    updates.append((sub_id, rec_status, now, None, now))
                    report.recorded_unsubscribed += 1
                    continue
                # Suppressed people left the batch above; a row with a status of its own is no consent.
                decision = may_join(sub_status, fresh_consent=self.opts.resubscribe and rec_status is None)
                if decision is Join.REJOIN:
                    updates.append((sub_id, self.fresh, now, fresh_confirmed, None))
                    report.resubscribed += 1
                    if self.fresh == "unconfirmed":
                        report.unconfirmed += 1
                    continue
                if decision is Join.LEFT:
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
            if any('"timezone"' in r[3] for r in rows):  # a `timezone` column: the readers' own zone
                sql.move_timezones(conn)
        report.batches += 1


class _ThreadReader:
    """The reader in a thread of this process: for small files, where starting a process costs more than it saves."""

    def __init__(self, path: Path, opts: ImportOptions, fmt: str, rejects_path: Path):
        self.queue: queue.Queue = queue.Queue(maxsize=2)  # bounded: memory stays constant
        self.stop = threading.Event()
        self.thread = threading.Thread(target=_produce, args=(path, opts, fmt, rejects_path, self._put),
                                       name="newsletter-import-reader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self):
        return self.queue.get()

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self.thread.join(0.05)


def _reader_command() -> list[str]:
    """The reader process's command line: this interpreter, and this package's own copy of the module."""
    import sys

    return [sys.executable, str(Path(__file__).with_name("import_reader.py"))]


class _ProcessReader:
    """The reader in a child process, so parsing and validating (pure Python, GIL-bound) run on
    another core while this process writes. The pipe is the bounded queue: a reader that gets
    ahead blocks on it, so memory stays constant. A plain subprocess rather than multiprocessing,
    which would re-run the caller's ``__main__`` (spawn) or fork a process holding threads."""

    def __init__(self, path: Path, opts: ImportOptions, fmt: str, rejects_path: Path, copy: bool = False,
                 command: Sequence[str] | None = None):
        import pickle
        import subprocess
        import tempfile

        self.finished = False  # the child sent its end marker (None or _Failed)
        self.stderr = tempfile.TemporaryFile()
        self.child = subprocess.Popen(list(command or _reader_command()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self.stderr)
        assert self.child.stdin is not None and self.child.stdout is not None  # both are pipes
        self.out = self.child.stdout
        pickle.dump((path, opts, fmt, rejects_path, copy), self.child.stdin)
        self.child.stdin.close()

    def get(self):
        import pickle

        try:
            item = pickle.load(self.out)
            self.finished = item is None or isinstance(item, _Failed)
            return item
        except (EOFError, pickle.UnpicklingError, OSError):
            code = self.child.wait(10)
            self.stderr.seek(0)
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
            why = f": {lines[-1]}" if lines else ""
            return _Failed(f"the reader process ended unexpectedly (exit code {code}){why}", False)

    def close(self) -> None:
        import subprocess

        if self.finished:
            try:  # it sent its last item after closing the rejects file: let it exit on its own
                self.child.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.child.poll() is None:
            self.child.kill()  # stopped early: it only reads the input and writes the rejects file
        self.out.close()
        self.child.wait(10)
        self.stderr.close()


READER_PROCESS_MIN_ROWS = 10_000  # below this a reader thread is enough (a process takes ~0.3 s to start)


def import_file(
    engine: Engine,
    path: str | os.PathLike,
    opts: ImportOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
    reader_process: bool | None = None,
    reader_command: Sequence[str] | None = None,
    around_write: Callable[[list[str]], ContextManager[object]] | None = None,
) -> ImportReport:
    """Import ``path`` into ``opts.list_slug`` and return the report.

    ``progress(rows_done, rows_total)`` is called after each batch. Raises InvalidInput before
    writing anything when the file is malformed, NotFound when the list does not exist.

    Where the file is read: in a child process (``reader_process=True``), a thread (False), or by
    size (None: a process from READER_PROCESS_MIN_ROWS rows). ``reader_command`` is that process's
    command line (default: this interpreter running this package's import_reader.py; it reads its
    job, pickled, from stdin). With
    ``around_write``, each batch is written inside ``around_write(keys)`` (a context manager, in
    the thread writing the batch, given the batch's address keys): a way to watch or pace writes."""
    p = Path(path)
    fmt = _detect_format(p, opts.format)
    if opts.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    opts.attr_types = check_types(opts.attr_types)
    with transaction(engine) as conn:
        lst = _list_row(conn, opts.list_slug)
    total = check_file(p, opts)
    report = ImportReport(path=str(p), list_slug=opts.list_slug)
    source = check_text("the consent source", opts.source or f"import:{p.name}")
    writer = _Writer(engine, lst["id"], lst["opt_in"], opts, source, report)
    rejects_path = Path(opts.rejects_path) if opts.rejects_path else p.with_name(p.stem + ".rejects.csv")
    if rejects_path.exists():
        rejects_path.unlink()  # from an earlier run of this import: this run rewrites it
    reader: _ThreadReader | _ProcessReader
    use_process = total >= READER_PROCESS_MIN_ROWS if reader_process is None else reader_process
    if use_process:
        reader = _ProcessReader(p, opts, fmt, rejects_path, copy=writer.sql.pg, command=reader_command)
    else:
        reader = _ThreadReader(p, opts, fmt, rejects_path)
    # PostgreSQL: two batches are written at once on two connections, so one server process works
    # while the other waits on this one; a batch that shares an address with the one before it
    # waits for it, so the file's order still decides (the later row wins). SQLite has one writer.
    in_flight: deque = deque()

    def write(rows: list[tuple], copy: bytes | None) -> None:
        if around_write is None:
            writer.write(rows, copy)
            return
        with around_write([r[1] for r in rows]):
            writer.write(rows, copy)

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="newsletter-import-writer") if writer.sql.pg else None

    def settle(keep: int) -> None:
        """Wait until at most ``keep`` batches are in flight, oldest first."""
        while len(in_flight) > keep:
            future, read = in_flight.popleft()
            future.result()
            if progress:
                progress(read, total)

    try:
        while True:
            item = reader.get()
            if item is None:
                break
            if isinstance(item, _Failed):
                if item.user:
                    raise InvalidInput(item.message)
                raise NewsletterError(f"{p}: the import stopped: its reader failed ({item.message})")
            report.read, report.invalid, report.duplicates_in_file = item.read, item.invalid, item.duplicates
            report.rejects.extend(item.rejects)
            if item.invalid and report.rejects_path is None:
                report.rejects_path = str(rejects_path)
            if pool is None:
                if item.rows:
                    write(item.rows, item.copy)
                if progress:
                    progress(item.read, total)
                continue
            settle(0 if item.overlaps else 1)
            if item.rows:
                in_flight.append((pool.submit(write, item.rows, item.copy), item.read))
            elif progress:
                progress(item.read, total)
        settle(0)
    finally:
        reader.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # a batch being written finishes (or rolls back) first
    if progress:
        progress(report.read, total)
    return report
