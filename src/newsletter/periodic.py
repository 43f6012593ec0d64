"""A job the worker runs every so often in a thread of its own (the bounce mailbox poll, the
event webhooks), so it never holds a send back and a stop request ends its wait at once."""

from __future__ import annotations

import threading


class Periodic:
    """Call :meth:`run_once` every ``interval`` seconds in a daemon thread until :meth:`stop`.
    Subclasses implement ``run_once`` and keep their own failures to themselves."""

    name = "periodic"

    def __init__(self, interval: float):
        self.interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.is_set():
            self.run_once()
            self._done.wait(self.interval)

    def stop(self, timeout: float = 60.0) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout)
