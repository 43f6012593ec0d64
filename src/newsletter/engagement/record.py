"""Recording tracking hits off the request path: the web app hands each hit to a
:class:`HitRecorder`, which classifies and stores them in batches from one thread.

A redirect answers at once; the database sees one transaction per batch (up to
:data:`BATCH` hits or every :data:`FLUSH_EVERY` seconds) instead of one per hit. The same hit
replayed within :data:`REPLAY_WINDOW` (a double click, a client retrying) counts once. A hit for
a copy whose reader was erased, or that never existed, is dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from datetime import timedelta

from ..store.db import transaction
from . import events as ev
from .classify import BURST_WINDOW, CANARY_WINDOW, Agent, Hit, classify, ip_class

log = logging.getLogger("newsletter.engagement")

BATCH = 500
FLUSH_EVERY = 0.2
REPLAY_WINDOW = timedelta(seconds=5)
_SEEN_MAX = 100_000


class HitRecorder:
    """Classify and store hits in batches (see the module docstring). ``store_ip`` keeps the
    address itself; ``scanner_seconds`` is the too-soon-after-delivery rule's window."""

    def __init__(self, engine, *, store_ip: bool = False, scanner_seconds: float = 10.0):
        self.engine, self.store_ip, self.scanner_seconds = engine, store_ip, scanner_seconds
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._seen: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.links: dict[tuple[int, int], str | None] = {}  # (campaign, idx) -> url, read-through

    # -- the request side ------------------------------------------------------------------
    def link(self, campaign_id: int, idx: int) -> str | None:
        """The original URL of a tracked link (cached: links never change once stored)."""
        key = (campaign_id, idx)
        if key in self.links:
            return self.links[key]
        with transaction(self.engine) as conn:
            url = ev.link_url(conn, campaign_id, idx)
        if url is not None:
            if len(self.links) > _SEEN_MAX:
                self.links.clear()
            self.links[key] = url
        return url

    def hit(self, h: Hit) -> None:
        """Queue one hit (never blocks on the database)."""
        key = (h.kind, h.campaign_id, h.subscriber_id, h.link, h.user_agent, h.ip)
        with self._lock:
            last = self._seen.get(key)
            if last is not None and timedelta(0) <= h.at - last <= REPLAY_WINDOW:
                return
            self._seen[key] = h.at
            self._seen.move_to_end(key)
            while len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="newsletter-hits", daemon=True)
                self._thread.start()
        self._q.put(h)

    # -- the writer side -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(FLUSH_EVERY)
            try:
                self.flush()
            except Exception:  # a database hiccup loses this batch, never the web app
                log.exception("recording tracking hits failed")

    def close(self) -> None:
        """Store what is queued and stop the writer thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def flush(self) -> int:
        """Classify and store every queued hit now; returns how many were stored."""
        stored = 0
        with self._flush_lock:
            while True:
                batch: list[Hit] = []
                while len(batch) < BATCH:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                if not batch:
                    return stored
                stored += self._store(batch)

    def _store(self, batch: list[Hit]) -> int:
        copies = {(h.campaign_id, h.subscriber_id) for h in batch}
        since = min(h.at for h in batch) - max(CANARY_WINDOW, BURST_WINDOW)
        with transaction(self.engine) as conn:
            alive = ev.existing_subscribers(conn, {s for _, s in copies})
            sent = ev.sent_times(conn, copies)
            history = ev.recent_hits(conn, copies, since)
            rows: list[dict] = []
            marks: dict[str, list[int]] = {"burst": [], "canary": []}
            for h in sorted(batch, key=lambda x: x.at):
                copy = (h.campaign_id, h.subscriber_id)
                if h.subscriber_id not in alive or copy not in sent:
                    continue  # erased, or a copy that never went out
                # Earlier hits of this copy: (stored id or this batch's row, time, kind, link, agent).
                past = history.setdefault(copy, [])
                agent, why = classify(h, sent_at=sent[copy], scanner_seconds=self.scanner_seconds,
                                      recent=[(t, k, link) for _, t, k, link, _ in past])
                row = dict(campaign_id=h.campaign_id, subscriber_id=h.subscriber_id, kind=h.kind,
                           link_idx=h.link, agent=agent.value, why=why, ip_class=ip_class(h.ip),
                           ip=(h.ip[:45] or None) if self.store_ip else None, occurred_at=h.at)
                rows.append(row)
                if agent is Agent.SCANNER and why in ("burst", "canary"):
                    window = BURST_WINDOW if why == "burst" else CANARY_WINDOW
                    for ref, t, k, _, a in past:
                        if k != "click" or a == "scanner" or abs(h.at - t) > window:
                            continue
                        if isinstance(ref, dict):
                            ref.update(agent="scanner", why=why)
                        else:
                            marks[why].append(ref)
                past.append((row, h.at, h.kind, h.link, agent.value))
            ev.append_events(conn, rows)
            for why, ids in marks.items():
                ev.mark_scanner(conn, ids, why)
        return len(rows)
