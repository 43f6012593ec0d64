"""One worker per SQLite database: an OS file lock beside the database file.

SQLite has no row locks to share work with, so a second worker must not start. An OS lock
(``fcntl.flock`` on ``<db>.worker.lock``) is released by the kernel when its process dies —
even by SIGKILL — so there is no stale lock to expire and no heartbeat to keep, unlike a lock
row in the database. PostgreSQL needs no such lock: workers share work with row locks.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from ..errors import DispatchError


class WorkerLock:
    """Exclusive right to run a worker against one SQLite file (a no-op for PostgreSQL)."""

    def __init__(self, db_path: Path | None):
        self.path = Path(f"{db_path}.worker.lock") if db_path is not None else None
        self._fd: int | None = None

    def holder(self) -> str:
        """What the lock file says about the worker holding it ("pid 1234"), or ''."""
        try:
            return self.path.read_text(encoding="utf-8").strip() if self.path else ""
        except OSError:
            return ""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process now holds it."""
        if self.path is None or self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self, *, standby: bool = False, stop_event: threading.Event | None = None,
                poll_interval: float = 1.0, on_wait=None) -> bool:
        """Take the lock. Without ``standby`` a held lock is a DispatchError naming the holder; with it,
        wait (checking every ``poll_interval``) until the lock frees or ``stop_event`` is set (→ False)."""
        if self.try_acquire():
            return True
        if not standby:
            who = self.holder()
            raise DispatchError(
                f"another worker ({who or 'unknown pid'}) is running against SQLite database {str(self.path)[:-12]}: "
                "SQLite allows one worker (use PostgreSQL for several, or start this one with --standby to wait)"
            )
        if on_wait is not None:
            on_wait(self.holder())
        stop_event = stop_event or threading.Event()
        while not stop_event.wait(poll_interval):
            if self.try_acquire():
                return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
