"""A small queue for the work of the public signup form: the request only enqueues, one
background thread does the database work and talks to SMTP (confirmation emails).

So the signup answer neither waits for the mail server nor takes longer for a new address than
for a known one (which would tell an observer who is subscribed): every signup's database work
happens here, after the answer. The queue lives in the server's memory: on shutdown the app
waits a bounded time for it to empty; a signup or confirmation lost in a crash is the same as
one the mail server refused — the visitor sends the form again, or
``newsletter subscribers send-confirmations`` mails everyone not yet mailed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger("newsletter.web")

MAX_QUEUED = 1000  # far above what the per-IP and per-address signup limits let through


class Mailer:
    """Runs submitted jobs one at a time on a daemon thread started on first use."""

    def __init__(self, max_queued: int = MAX_QUEUED):
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._ran = 0  # jobs finished so far (for callers that wait for a given one)
        self._ran_changed = threading.Condition()

    def submit(self, job: Callable[[], None], what: str) -> bool:
        """Queue ``job``; False (and a log line) when the queue is full or closed."""
        with self._lock:
            if self._closed:
                log.error("%s not sent: the server is shutting down", what)
                return False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="newsletter-mailer", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((job, what))
        except queue.Full:
            log.error("%s not sent: %d emails are already waiting for the mail server", what, self._queue.maxsize)
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                job, what = item
                try:
                    job()
                except Exception:  # one bad job must not stop the others
                    log.exception("%s: unexpected error", what)
                with self._ran_changed:
                    self._ran += 1
                    self._ran_changed.notify_all()
            finally:
                self._queue.task_done()

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def wait_ran(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` jobs in all have run (or ``timeout`` seconds); True if they have."""
        with self._ran_changed:
            return self._ran_changed.wait_for(lambda: self._ran >= count, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted job has run (or ``timeout`` seconds); True if none is left."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def close(self, timeout: float) -> bool:
        """Stop taking jobs and wait up to ``timeout`` seconds for the queued ones; True if all ran."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        left = self._queue.unfinished_tasks
        if left:
            log.error("%d confirmation email(s) still waiting for the mail server at shutdown were not sent", left)
            return False
        self._queue.put(None)
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
        return True
