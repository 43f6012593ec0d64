"""The retry decision for a copy a server deferred: when to try again, or when to give up."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from ..config import Config
from ..store.models import utcnow


def retry_decision(config: Config, attempts: int, since: datetime, reply: str,
                   now: datetime | None = None) -> tuple[str, str, datetime | None]:
    """What becomes of a copy that was just deferred (4xx, dropped connection, timeout) after
    ``attempts`` tries: ``("deferred", reply, next_attempt_at)`` or ``("failed", why, None)``.

    The age is the limit: retries go on until ``retry_max_age`` after ``since``, the copy's first
    temporary failure (2 days by default; a campaign paused for a week before it was tried does
    not eat into them), ``retry_base`` apart at first and doubling up to ``retry_max_delay`` (an
    hour), with equal jitter; the last retry is due no later than the deadline itself.
    ``max_attempts`` (default 100: with the default delays, at least about two days of retries) is
    only a backstop."""
    now = now or utcnow()
    age = (now - since).total_seconds()
    if age >= config.retry_max_age:
        return "failed", f"gave up after {int(age)} s of retries ({attempts} attempts): {reply}", None
    if attempts >= config.max_attempts:
        return "failed", f"gave up after {attempts} attempts: {reply}", None
    delay = min(config.retry_max_delay, config.retry_base * 2 ** min(attempts - 1, 60))
    delay = delay / 2 + random.uniform(0, delay / 2)  # "equal jitter"
    delay = min(delay, config.retry_max_age - age)
    return "deferred", reply, now + timedelta(seconds=delay)

