"""The worker's heartbeat: a thread that writes the worker's row in ``worker_heartbeats`` every
few seconds, so the admin pages can tell a publisher whether anything will send what is scheduled."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from ..errors import NewsletterError
from ..periodic import Periodic
from ..store import workers

log = logging.getLogger("newsletter.worker")

HEARTBEAT_S = 5.0


class Heartbeat(Periodic):
    """Beat every ``interval`` seconds until :meth:`stop`, which records a clean stop. A failed beat
    (database busy) is logged and tried again at the next one; it never stops the worker."""

    name = "worker-heartbeat"

    def __init__(self, engine: Engine, worker_id: str, interval: float = HEARTBEAT_S):
        super().__init__(interval)
        self.engine, self.worker_id = engine, worker_id

    def run_once(self) -> bool:
        try:
            workers.beat(self.engine, self.worker_id, self.interval)
            return True
        except NewsletterError as e:
            log.warning("heartbeat not written: %s", e)
            return False

    def stop(self, timeout: float = 60.0) -> None:
        super().stop(timeout)
        try:
            workers.stopped(self.engine, self.worker_id)
        except NewsletterError as e:
            log.warning("worker stop not recorded: %s", e)
