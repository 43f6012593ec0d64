"""The worker's mailbox poll: ``process_mailboxes`` every ``bounce_poll_interval`` seconds in a
thread of its own, so a long send does not hold bounces back (the bounce guard can pause it
meanwhile). Every failure — a mailbox refusing the login, a dropped connection, a bad setting —
is a warning line; the worker goes on sending.
"""

from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy.engine import Engine

from ..config import Config
from ..periodic import Periodic
from .process import ProcessResult, process_mailboxes

log = logging.getLogger("newsletter.bounces")


def summary_line(r: ProcessResult) -> str:
    """One line saying what a run did (``bounces process``, the worker's log)."""
    parts = [f"{r.read} message(s) read", f"events {r.events_new} new, {r.events_duplicate} duplicate, {r.events_unmatched} unmatched",
             f"people bounced {r.bounced}, complained {r.complained}, unsubscribed {r.unsubscribed}"]
    extra = [f"{n} {what}" for n, what in ((r.requests, "unsubscribe request(s) without token listed"),
                                           (r.already_unsubscribed, "unsubscribe(s) already done"),
                                           (r.duplicates, "duplicate message(s)"), (r.left, "left in place (not ours)"),
                                           (r.unreadable, "unreadable left in place")) if n]
    if r.paused:
        extra.append(f"campaign(s) paused by the bounce guard: {', '.join(map(str, r.paused))}")
    return "; ".join(parts + extra)


class MailboxPoller(Periodic):
    """See the module docstring; ``for_config`` is None when no mailbox is configured."""

    name = "mailbox-poll"

    def __init__(self, engine: Engine, config: Config, emit: Callable[[str], None], interval: float):
        super().__init__(interval)
        self.engine, self.config, self.emit = engine, config, emit

    @classmethod
    def for_config(cls, engine: Engine, config: Config, emit: Callable[[str], None]) -> "MailboxPoller | None":
        if not (config.bounce_mailbox or config.unsubscribe_mailbox) or config.bounce_poll_interval <= 0:
            return None
        return cls(engine, config, emit, float(config.bounce_poll_interval))

    def poll_once(self) -> ProcessResult | None:
        """One run over the mailboxes; warnings and a summary (when something happened) go to ``emit``."""
        def on_event(line: str) -> None:
            if line.startswith("warning: "):
                self.emit(f"warning: mailbox: {line[len('warning: '):]}")

        try:
            result = process_mailboxes(self.engine, self.config, on_event=on_event, stop_event=self._done)
        except Exception as e:  # a bad setting or a database hiccup: say it, keep the worker alive
            self.emit(f"warning: mailbox poll failed: {e if str(e) else type(e).__name__}")
            log.debug("mailbox poll failed", exc_info=True)
            return None
        if result.read or result.unreadable:
            self.emit(f"mailbox: {summary_line(result)}")
        return result

    run_once = poll_once
