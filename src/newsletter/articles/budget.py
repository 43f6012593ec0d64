"""A time budget for reading one source document (``source_time_budget`` seconds).

Parsers are linear in their input (``benchmarks/regex_audit.py`` checks every regex), yet a hostile page can
still be slow in many small ways. Each document (one file, one fetched feed or page) gets
a budget when its parsing starts; the parsers call ``check()`` between their stages and
between feed entries, and once the budget is spent the document is given up with a
SourceError naming it (a warning among other sources, an error with ``--strict``).

The budget is cooperative: it stops between steps, not inside one library call, which is
why every step must itself be bounded (linear regexes, the element caps in ``pages``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

from ..errors import SourceError

DEFAULT_SECONDS = 30.0


class OverBudget(SourceError):
    """A source took longer than its time budget to read."""


# The clock budgets are measured with (tests replace it with one they drive).
clock: Callable[[], float] = time.monotonic


class Budget:
    """The deadline of one document; ``clock`` defaults to the module's ``clock``."""

    def __init__(self, source: str, seconds: float, clock: Callable[[], float] | None = None):
        self.source = source
        self.seconds = seconds
        self.clock = clock or globals()["clock"]
        self.ends = self.clock() + seconds

    def check(self) -> None:
        if self.seconds > 0 and self.clock() >= self.ends:  # 0 (or less) turns the budget off
            raise OverBudget(self.source, f"took longer than {self.seconds:g} s to read (source_time_budget); skipped")


_current: ContextVar[Budget | None] = ContextVar("newsletter_source_budget", default=None)


@contextmanager
def reading(source: str, seconds: float | None, clock: Callable[[], float] | None = None) -> Iterator[Budget]:
    """Run the body with a budget of ``seconds`` for ``source`` (the innermost one applies)."""
    budget = Budget(source, DEFAULT_SECONDS if seconds is None else float(seconds), clock)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def check() -> None:
    """Raise OverBudget when the document being read has spent its budget (no-op outside one)."""
    budget = _current.get()
    if budget is not None:
        budget.check()
