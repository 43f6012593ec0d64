"""Stop events set by SIGTERM and Ctrl-C, without taking a lock inside the signal handler.

A Python signal handler runs in the main thread between two bytecodes, so it may interrupt that
thread while it holds the very lock the handler needs: ``Event.set()`` from a handler that lands
inside ``Event.wait()`` of the same event (the send loop waits on its stop event every 10 ms)
blocks forever on the event's own condition lock — `newsletter send` then ignores SIGTERM for
good. Here the handler only records the signal and writes a byte to a pipe (a system call, no
lock); a small thread reads the pipe and sets the event.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Callable, Iterable


class SignalStop:
    """While in use (``with``), each of ``signals`` sets ``event`` (from a helper thread) and is
    appended to ``received``; ``on_signal(signum)`` runs in the handler first, for work that
    takes no lock (re-arming a signal). Leaving restores the previous handlers."""

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT), *,
                 event: threading.Event | None = None, on_signal: Callable[[int], None] | None = None):
        self.signals = tuple(signals)
        self.event = event or threading.Event()
        self.received: list[int] = []
        self.on_signal = on_signal
        self._old: dict[int, object] = {}
        self._r = self._w = -1
        self._thread: threading.Thread | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)  # list.append takes no lock the main thread could hold
        if self.on_signal is not None:
            self.on_signal(signum)
        try:
            os.write(self._w, bytes([signum]))
        except OSError:  # the pipe is full (a burst of signals): the watcher has one to read already
            pass

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._r, 64)
            except OSError:
                return
            if not data or 0 in data:  # closed, or told to stop
                return
            self.event.set()

    def __enter__(self) -> "SignalStop":
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._thread = threading.Thread(target=self._watch, name="signal-stop", daemon=True)
        self._thread.start()
        self._old = {sig: signal.signal(sig, self._handler) for sig in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old = {}
        try:
            os.write(self._w, b"\0")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
