"""SIGTERM / Ctrl-C set the stop event of `send` and `worker` even when the signal lands while the
main thread holds the event's own lock (it does, briefly, inside every ``Event.wait``; the send
loop waits on its stop event every 10 ms). A handler calling ``Event.set()`` there blocks forever:
the CI flake where `newsletter send` did not exit within 60 s of SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time

from newsletter.cli.signals import SignalStop


def _deliver_while_holding(lock, sig: int, received: list[int]) -> None:
    """Send ``sig`` to this process and let its Python handler run while ``lock`` is held."""
    with lock:
        os.kill(os.getpid(), sig)
        deadline = time.monotonic() + 10
        while sig not in received and time.monotonic() < deadline:
            time.sleep(0.001)  # the handler runs in this (main) thread, at the latest on the sleep's return
    assert sig in received, "the handler never ran"


def test_a_signal_landing_inside_event_wait_still_sets_the_stop_event():
    with SignalStop() as stop:
        # the state inside Event.wait(): this thread holds the event's condition lock
        _deliver_while_holding(stop.event._cond, signal.SIGTERM, stop.received)  # returns: no deadlock
        assert stop.event.wait(10)
    assert stop.received == [signal.SIGTERM]


def test_previous_handlers_come_back_and_on_signal_runs_in_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    with SignalStop((signal.SIGTERM,), on_signal=seen.append) as stop:
        assert signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(10)
    assert seen == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) == before
    assert not [t for t in threading.enumerate() if t.name == "signal-stop"]  # the watcher thread ended

