"""Rate limiting: parsing, even spacing, sliding windows, threads sharing one limiter."""

from __future__ import annotations

import threading

import pytest

from newsletter.dispatch.ratelimit import Rate, RateLimiter, parse_rates
from newsletter.errors import ConfigError


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_parse():
    assert parse_rates("20/s") == [Rate(20, 1)]
    assert parse_rates("600/m, 10000/h") == [Rate(600, 60), Rate(10000, 3600)]
    assert parse_rates(None) == [] and parse_rates("") == []
    for bad in ["20", "20/x", "-1/s", "0/s", "fast"]:
        with pytest.raises(ConfigError):
            parse_rates(bad)


def test_token_bucket_spaces_evenly():
    clock = FakeClock()
    lim = RateLimiter(parse_rates("10/s"), clock=clock)
    assert lim.try_acquire() == 0
    wait = lim.try_acquire()
    assert wait == pytest.approx(0.1)
    clock.t += 0.1
    assert lim.try_acquire() == 0
    # over a simulated minute at most 10 per second get through
    granted = []
    for _ in range(6000):
        clock.t += 0.01
        if lim.try_acquire() == 0:
            granted.append(clock.t)
    assert 590 <= len(granted) <= 601
    for i in range(len(granted) - 10):
        assert granted[i + 10] - granted[i] >= 1.0 - 1e-9


def test_sliding_window_and_seed():
    clock = FakeClock()
    lim = RateLimiter(windows=parse_rates("3/h"), clock=clock)
    lim.seed([10.0, 20.0])  # two sends in the last minute, e.g. from the ledger
    assert lim.try_acquire() == 0
    assert lim.try_acquire() == pytest.approx(3600 - 20)
    clock.t += 3600 - 20
    assert lim.try_acquire() == 0


def test_threads_share_the_limit_and_stop_interrupts():
    import time

    # Each grant is stamped with the clock reading the limiter granted it at (the last one its thread
    # made), not with a reading taken afterwards, which a busy machine can delay.
    seen = threading.local()

    def clock() -> float:
        seen.last = time.monotonic()
        return seen.last

    lim = RateLimiter(parse_rates("50/s"), clock=clock)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            assert lim.acquire()
            with lock:
                stamps.append(seen.last)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 40
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 0.02 - 1e-9  # 20 ms apart at least, however the threads were scheduled
    stop = threading.Event()
    slow = RateLimiter(parse_rates("1/h"))
    assert slow.acquire(stop)
    stop.set()
    assert slow.acquire(stop) is False


def test_exact_window_bound_of_a_burst_of_one():
    """GCRA with burst 1: grants are at least 1/rate apart, so a closed window of W seconds holds
    at most floor(rate·W) + 1 of them — and a caller asking all the time reaches that bound."""
    import math

    from smtp_server import max_in_window

    clock = FakeClock()
    lim = RateLimiter(parse_rates("20/s"), clock=clock)
    granted = []
    for _ in range(5000):  # 5 simulated seconds, asking every millisecond
        if lim.try_acquire() == 0:
            granted.append(clock.t)
        clock.t = round(clock.t + 0.001, 6)
    assert len(granted) == 100
    for w in (0.05, 0.1, 0.37, 0.5, 1.0, 2.0):
        assert max_in_window(granted, w) == math.floor(20 * w + 1e-9) + 1
