"""The lifecycles as closed sets: allowed moves, the send outcome and its exit status, copies left."""

from __future__ import annotations

import pytest

from newsletter.cli.dispatch import EXIT_AUTO_PAUSED, EXIT_INTERRUPTED, EXIT_UNFINISHED, send_exit_code
from newsletter.dispatch.progress import Paced, eta_seconds, ledger_progress, send_rate
from newsletter.dispatch.sender import SendSummary
from newsletter.errors import StateError
from newsletter.store.lifecycle import (
    CampaignStatus,
    DeliveryState,
    PauseKind,
    SendOutcome,
    StopReason,
    campaign_transition,
    copies_left,
    delivery_transition,
)


def test_enums_are_the_stored_strings():
    assert CampaignStatus.PAUSED == "paused" and DeliveryState.SENDING == "sending" and PauseKind.WARMUP == "warmup"
    assert [s.value for s in CampaignStatus] == ["draft", "scheduled", "running", "paused", "finished", "cancelled"]


@pytest.mark.parametrize("current, to", [("draft", "running"), ("running", "paused"), ("paused", "scheduled"),
                                         ("finished", "running"), ("scheduled", "draft")])
def test_allowed_campaign_moves(current, to):
    assert campaign_transition(current, to) is CampaignStatus(to)


@pytest.mark.parametrize("current, to", [("cancelled", "running"), ("finished", "paused"), ("draft", "finished"),
                                         ("running", "draft"), ("running", "archived")])
def test_refused_campaign_moves_say_why(current, to):
    with pytest.raises(StateError, match=f"{current}"):
        campaign_transition(current, to, 7)


def test_delivery_moves():
    assert delivery_transition("claimed", "sending") is DeliveryState.SENDING
    assert delivery_transition("sending", "pending") is DeliveryState.PENDING  # given back, or resent
    for current, to in (("sent", "pending"), ("skipped", "claimed"), ("pending", "sending"), ("failed", "deferred")):
        with pytest.raises(StateError, match=f"a delivery that is {current} cannot become {to}"):
            delivery_transition(current, to)


def test_only_the_senders_own_pauses_are_automatic():
    assert {k for k in PauseKind if k.automatic} == {PauseKind.CONNECTIONS, PauseKind.WARMUP}


def test_copies_left_counts_what_is_still_to_hand_to_a_server():
    counts = {"pending": 3, "claimed": 2, "sending": 1, "deferred": 4, "sent": 9, "failed": 1, "skipped": 2}
    assert copies_left(counts) == 9
    p = ledger_progress(counts)
    assert (p.done, p.left, p.total) == (12, 9, 22)
    assert p.counts["pending"] == 5 and "claimed" not in p.counts
    assert ledger_progress({}, audience=40).as_dict() == {"counts": {"pending": 0}, "done": 0, "left": 0, "total": 40,
                                                         "percent": 0.0}
    assert send_rate(10, 0) == 0.0 and eta_seconds(100, 40, 0.0) is None and eta_seconds(100, 40, 6.0) == 10.0


def test_a_paced_chore_runs_at_its_interval_while_cheap_and_at_most_its_share_of_the_time_when_not():
    """The send loop's ledger counts (progress, rate guard): every 0.5 s while a count is cheap;
    when one takes 0.2 s (a million-row ledger), not again for 4 s, so counting never takes more
    than 5 % of the feeder's time. Due at once on the first look; a failing chore still paces."""
    now = [100.0]
    p = Paced(0.5, share=0.05, clock=lambda: now[0])
    assert p.due()
    with p.timed():
        now[0] += 0.001  # a cheap count
    assert not p.due()
    now[0] += 0.4
    assert not p.due()
    now[0] += 0.2
    assert p.due()
    with p.timed():
        now[0] += 0.2  # a count of a million rows
    now[0] += 3.9
    assert not p.due()
    now[0] += 0.2
    assert p.due()
    with pytest.raises(RuntimeError):
        with p.timed():
            now[0] += 1.0
            raise RuntimeError("database gone")
    now[0] += 19.8
    assert not p.due()
    now[0] += 0.4
    assert p.due()


def _summary(status, *, kind=None, stop=None):
    return SendSummary(campaign_id=1, status=status, status_reason="", counts={}, transport="outbox", worker_id="w",
                       stop=stop, pause_kind=kind)


@pytest.mark.parametrize("summary, outcome, code", [
    (_summary("finished"), SendOutcome.FINISHED, 0),
    (_summary("running", stop=StopReason.OTHERS_FINISHING), SendOutcome.FINISHED, 0),
    (_summary("paused", kind="warmup", stop=StopReason.AUTO_PAUSED), SendOutcome.AUTO_PAUSED, EXIT_AUTO_PAUSED),
    (_summary("paused", kind="connections", stop=StopReason.AUTO_PAUSED), SendOutcome.AUTO_PAUSED, EXIT_AUTO_PAUSED),
    (_summary("paused", kind="bounce-guard", stop=StopReason.PAUSED), SendOutcome.UNFINISHED, EXIT_UNFINISHED),
    (_summary("paused", kind="user", stop=StopReason.PAUSED), SendOutcome.UNFINISHED, EXIT_UNFINISHED),
    (_summary("running", stop=StopReason.STOP_REQUESTED), SendOutcome.UNFINISHED, EXIT_UNFINISHED),
    (_summary("cancelled", stop=StopReason.CANCELLED), SendOutcome.UNFINISHED, EXIT_UNFINISHED),
])
def test_the_outcome_of_a_send_and_its_exit_status(summary, outcome, code):
    assert summary.outcome is outcome
    assert send_exit_code(summary) == code
    assert send_exit_code(summary, interrupted=True) == EXIT_INTERRUPTED
