"""kill -9 soak, short: two `newsletter worker` processes share a campaign on PostgreSQL, one of
them is killed with SIGKILL five times and restarted, then both stop on SIGTERM.

The long run (3,000 readers, 20 kills) is benchmarks/soak.py; this is the same driver
(``run_soak``) with fewer readers. The SMTP server is a real aiosmtpd sink in its own process.
Kill moments are chosen on state — the sink has recorded N messages and the victim has a row in
``sending`` — and after each kill the test waits for the victim's PostgreSQL sessions to end; no
sleeps, each wait bounded.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dispatch_helpers import add_people, make_campaign, make_config, setup_db

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from recording_sink import Sink  # noqa: E402
from soak import run_soak  # noqa: E402

READERS = 500
CONCURRENCY = 3


@pytest.mark.slow
@pytest.mark.postgres
def test_five_kill_9_of_one_of_two_workers_lose_nothing_and_double_nothing(pg_url, tmp_path):
    from newsletter.dispatch.campaigns import schedule_campaign

    engine = setup_db(pg_url)
    config = make_config(pg_url, tmp_path)
    people = set(add_people(engine, "weekly", READERS))
    cid = make_campaign(engine, config).id
    schedule_campaign(engine, cid, datetime.now(timezone.utc) - timedelta(seconds=1))
    engine.dispose()
    with Sink(tmp_path / "received.tsv") as sink:
        r = run_soak(pg_url, cid, people, kills=5, concurrency=CONCURRENCY, kill_points=[40, 110, 180, 250, 320],
                     sink=sink, workdir=tmp_path, timeout=600)
    assert r.problems == [], r
    assert len(r.ambiguous_per_kill) == 5 and max(r.ambiguous_per_kill) <= CONCURRENCY
    assert r.duplicates == 0 and r.status == "finished" and r.exit_codes == [0, 0]
    # nothing lost: every copy is at the sink or reported ambiguous (sending, its worker dead)
    assert set(r.undelivered) <= set(r.ambiguous)
    assert r.delivered + len(r.undelivered) == READERS
