"""Copies in ``sending`` are told apart: in flight (their sender is alive) or ambiguous (it died),
on both databases, while a real sender holds a copy at a real SMTP server; the campaign page
says which and offers the action for the ambiguous ones."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.liveness import in_flight
from newsletter.dispatch.sender import send_campaign
from newsletter.store import queries as q
from newsletter.web import create_app
from smtp_server import SMTPTestServer


def _sending(engine, cid) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(q.deliveries.c.id).where(
            q.deliveries.c.campaign_id == cid, q.deliveries.c.state == "sending")).all())


def test_a_live_senders_copy_is_in_flight_and_a_dead_ones_is_ambiguous(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path, concurrency=1)
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    release = threading.Event()
    with SMTPTestServer(hold=release) as srv:
        t = threading.Thread(target=send_campaign, args=(engine, c.id, config), kwargs={"smtp": srv.url}, daemon=True)
        t.start()
        try:
            deadline = time.monotonic() + 60  # a bound for a hang: we wait on the ledger's state
            while _sending(engine, c.id) == 0:
                assert time.monotonic() < deadline and t.is_alive(), "no copy reached the server"
                time.sleep(0.01)
            assert in_flight(engine, c.id) == (1, 0)
        finally:
            release.set()
            t.join(60)
    assert in_flight(engine, c.id) == (0, 0)
    # A copy left "sending" by a sender that is gone.
    with engine.begin() as conn:
        row = conn.execute(select(q.deliveries.c.id).where(q.deliveries.c.campaign_id == c.id).limit(1)).scalar()
        conn.execute(update(q.deliveries).where(q.deliveries.c.id == row).values(
            state="sending", worker_id="gone-host:999999:abc123"))
    assert in_flight(engine, c.id) == (0, 1)
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000)) as client:
        page = client.get(f"/admin/campaigns/{c.id}").text
    assert "Ambiguous" in page and f"newsletter send {c.id} --resend-ambiguous" in page
    engine.dispose()
