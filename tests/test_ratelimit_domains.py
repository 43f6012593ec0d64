"""Per-recipient-domain limits (``rate_per_domain``) inside the rate limiter: a gmail.com copy waits
for the gmail bucket and the global one; other domains are not held up; no deadlock, no spin.
The limiter is driven by an injected clock; the sender test checks the server's receive times
against the GCRA bound (see tests/test_send.py::assert_paced)."""

from __future__ import annotations

import math
import threading
import time

import pytest

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.ratelimit import Rate, RateLimiter, parse_domain_rates, parse_rates
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import ConfigError
from smtp_server import max_in_window


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def limiter(clock, rate="100/s", **domains):
    return RateLimiter(parse_rates(rate), per_domain=parse_domain_rates(
        {d.replace("_", "."): r for d, r in domains.items()}), clock=clock)


def test_parse_domain_rates():
    assert parse_domain_rates({"Gmail.COM.": "20/s", "outlook.com": "10/s, 600/m"}) == {
        "gmail.com": [Rate(20, 1)], "outlook.com": [Rate(10, 1), Rate(600, 60)]}
    assert parse_domain_rates({"bücher.example": "1/s"}) == {"xn--bcher-kva.example": [Rate(1, 1)]}
    assert parse_domain_rates(None) == {}
    for bad in [{"gmail.com": "fast"}, {"a b": "1/s"}, {"x@gmail.com": "1/s"}, {"": "1/s"}, {"gmail.com": 20}]:
        with pytest.raises(ConfigError, match="rate_per_domain"):
            parse_domain_rates(bad)


def test_a_domain_copy_needs_both_buckets_and_a_waiting_one_holds_no_global_slot():
    clock = FakeClock()
    lim = limiter(clock, "100/s", gmail_com="10/s")
    assert lim.try_acquire("a@gmail.com") == 0
    # the gmail bucket is busy for 0.1 s; the global one only for 0.01 s
    clock.t += 0.01
    assert lim.try_acquire("b@gmail.com") == pytest.approx(0.09)
    # that refusal took nothing: a copy to another domain goes at once
    assert lim.try_acquire("c@example.com") == 0
    # and the global bucket still binds a domain copy: gmail is free again, the global one is not
    clock.t += 0.09
    assert lim.try_acquire("c2@example.com") == 0
    assert lim.try_acquire("b@gmail.com") == pytest.approx(0.01)
    clock.t += 0.01
    assert lim.try_acquire("b@gmail.com") == 0
    # subdomains share their parent's bucket; unrelated look-alikes do not
    assert lim.try_acquire("d@mail.gmail.com") > 0
    clock.t += 0.01
    assert lim.try_acquire("e@notgmail.com") == 0


def test_over_a_simulated_minute_each_domain_keeps_its_bound_and_the_rest_use_the_global_rate():
    """A mixed queue (every other copy to gmail.com) offered every millisecond for 60 simulated s:
    gmail.com gets exactly its 10/s GCRA bound, and the other domains fill the global 50/s."""
    clock = FakeClock()
    lim = limiter(clock, "50/s", gmail_com="10/s", outlook_com="5/s")
    granted: dict[str, list[float]] = {"gmail.com": [], "outlook.com": [], "other": []}
    waiting = ["a@gmail.com", "b@outlook.com", "c@example.org"]
    for _ in range(60000):
        clock.t += 0.001
        for rcpt in waiting:  # each lane offers its copy; a refused copy stays in its lane
            if lim.try_acquire(rcpt) == 0:
                d = rcpt.partition("@")[2]
                granted[d if d in granted else "other"].append(clock.t)
    for d, rate in (("gmail.com", 10), ("outlook.com", 5)):
        for w in (1 / rate, 2 / rate, 1.0, 10.0):
            assert max_in_window(granted[d], w) <= math.floor(rate * w + 1e-9) + 1, (d, w)
        assert len(granted[d]) >= rate * 60 - 1
    total = sorted(t for ts in granted.values() for t in ts)
    assert max_in_window(total, 1.0) <= 51
    assert len(granted["other"]) >= 50 * 60 - 10 * 60 - 5 * 60 - 3  # the slow domains do not hold the rest up


def test_threads_on_one_slow_domain_neither_deadlock_nor_spin():
    """Four threads each take 5 gmail slots at 200/s (bounded real waits, stop-able): all 20 are
    granted, at least 1/200 s apart by the limiter's own clock, and a thread waiting on gmail
    does not stop a thread sending elsewhere."""
    # Each grant is stamped with the clock reading the limiter granted it at (the last one its thread
    # made, through the clock= seam), not with a reading taken afterwards, which a busy machine delays.
    seen = threading.local()

    def clock() -> float:
        seen.last = time.monotonic()
        return seen.last

    lim = RateLimiter(parse_rates("1000/s"), per_domain={"gmail.com": parse_rates("200/s")}, clock=clock)
    stamps: list[float] = []
    other: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def take(rcpt, out, n):
        for _ in range(n):
            assert lim.acquire(stop, recipient=rcpt)
            with lock:
                out.append(seen.last)

    threads = [threading.Thread(target=take, args=("x@gmail.com", stamps, 5)) for _ in range(4)]
    threads.append(threading.Thread(target=take, args=("y@example.com", other, 20)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(stamps) == 20 and len(other) == 20
    stamps.sort()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 1 / 200 - 1e-9  # each gmail grant 5 ms after the one before, however threads ran
    # a waiter is released by stop, not left hanging: the gmail bucket is busy for a long while
    slow = RateLimiter(per_domain={"gmail.com": parse_rates("1/h")})
    assert slow.acquire(stop, recipient="x@gmail.com")
    stopper = threading.Timer(0.05, stop.set)
    stopper.start()
    assert slow.acquire(stop, recipient="x@gmail.com") is False


def test_a_send_spaces_copies_per_domain_at_the_server(sqlite_url, tmp_path, smtp_server):
    """6 gmail.com and 12 example.com readers, 4 connections, gmail.com at 5/s and no global
    rate: the server's receive times of the gmail copies keep the GCRA bound at 5/s (how far other
    domains are held up is measured with the injected clock above, not with wall time here)."""
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path, rate_per_domain={"gmail.com": "5/s"}, concurrency=4)
    add_people(engine, "weekly", 6, domain="gmail.com")
    add_people(engine, "weekly", 12, start=100, domain="example.com")
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert s.status == "finished" and s.counts == {"sent": 18}
    got = smtp_server.received()
    gmail = sorted(m.received_at for m in got if m.rcpt_tos[0].endswith("@gmail.com"))
    rest = sorted(m.received_at for m in got if m.rcpt_tos[0].endswith("@example.com"))
    assert len(gmail) == 6 and len(rest) == 12
    interval = 1 / 5  # wide enough that the server's receive-time jitter on a loaded machine stays below it
    for k in (2, 5):
        assert max_in_window(gmail, k * interval) <= k + 1
    assert gmail[-1] - gmail[0] >= (len(gmail) - 2) * interval
