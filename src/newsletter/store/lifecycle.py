"""The lifecycles of a campaign and of a ledger row, as closed sets with their allowed moves.

Campaign status, delivery state, why a campaign is paused and why a send run stopped are
``StrEnum`` members: they compare equal to the strings stored in the database, so no stored value
changed when they became enums. :func:`campaign_transition` and :func:`delivery_transition` are
the one check of each lifecycle; every statement that moves a campaign or a row goes through
them (``dispatch.campaigns.transition``, the statements in ``store.queries``). Nothing reads a
status sentence to learn what happened: a pause records its :class:`PauseKind` beside the reason.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable, Mapping

from ..errors import StateError


class CampaignStatus(StrEnum):
    """Where a campaign stands (``campaigns.status``)."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    """Where one copy stands (``deliveries.state``); see ``store.campaign_models`` for the diagram."""

    PENDING = "pending"
    CLAIMED = "claimed"  # held by a live worker, never handed to a server
    SENDING = "sending"  # handed (or about to be) to a server: ambiguous after a crash
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"  # "try later": claimable again at next_attempt_at
    SKIPPED = "skipped"  # never sent: the reader left, or the campaign was cancelled
    HELD = "held"  # an A/B test's rest: waits for the winner, then pending with the winning variant


class PauseKind(StrEnum):
    """Who or what paused a campaign (``campaigns.pause_kind``; ``status_reason`` says it in words)."""

    USER = "user"  # a person: stays paused until someone resumes it
    CONNECTIONS = "connections"  # the sender: every server kept failing
    WARMUP = "warmup"  # the sender: today's warm-up quota is used up; a worker resumes it the next UTC day
    BOUNCE_GUARD = "bounce-guard"  # the bounce or complaint rate passed its limit: a person must look

    @property
    def automatic(self) -> bool:
        """True for a pause the sender made on its own, which ``send`` may simply continue."""
        return self in (PauseKind.CONNECTIONS, PauseKind.WARMUP)


class StopReason(StrEnum):
    """Why a send run ended before its campaign finished (``SendSummary.stop``)."""

    STOP_REQUESTED = "stop requested"  # the caller's stop event (SIGTERM, Ctrl-C, a worker's turn)
    PAUSED = "paused"  # paused from elsewhere while it ran
    CANCELLED = "cancelled"  # cancelled from elsewhere while it ran
    AUTO_PAUSED = "auto-paused"  # this run paused it (servers failing, warm-up quota)
    DEFERRED_WAIT = "deferred copies wait for a later retry"  # told not to wait for retries
    OTHERS_FINISHING = "other workers are finishing the campaign"
    NEXT_BUCKET = "the next local-time bucket is not due yet"  # local-time delivery: a worker sends it then
    INTERRUPTED = "interrupted"  # an exception (e.g. KeyboardInterrupt) in the feeding thread
    AB_WAITING = "the rest waits for the A/B test's winner (`newsletter worker` sends it after the wait)"


class SendOutcome(StrEnum):
    """What a send run achieved, which the CLI turns into its exit status."""

    FINISHED = "finished"  # the campaign is finished, or other live workers are sending its last copies
    AUTO_PAUSED = "auto-paused"  # paused by the sender itself (servers failing, warm-up quota)
    UNFINISHED = "unfinished"  # stopped before the end: stop requested, paused or cancelled elsewhere


# The one table of allowed campaign moves. "finished → running" only happens to resend ambiguous
# copies; "paused → scheduled": it was paused before it started.
CAMPAIGN_MOVES: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED,
                                         CampaignStatus.CANCELLED}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.FINISHED, CampaignStatus.CANCELLED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.SCHEDULED, CampaignStatus.CANCELLED}),
    CampaignStatus.FINISHED: frozenset({CampaignStatus.RUNNING}),
    CampaignStatus.CANCELLED: frozenset(),
}

D = DeliveryState
# The one table of allowed ledger moves (a row is created ``pending``, or ``held`` in an A/B test).
DELIVERY_MOVES: dict[DeliveryState, frozenset[DeliveryState]] = {
    D.PENDING: frozenset({D.CLAIMED, D.SKIPPED}),
    D.HELD: frozenset({D.PENDING, D.SKIPPED}),  # released with a variant (test share, then the winner)
    D.CLAIMED: frozenset({D.SENDING, D.PENDING, D.SKIPPED}),  # back to pending: released unsent
    D.SENDING: frozenset({D.SENT, D.FAILED, D.DEFERRED, D.PENDING}),  # pending: given back or resent
    D.DEFERRED: frozenset({D.CLAIMED, D.SKIPPED}),
    D.SENT: frozenset(),
    D.FAILED: frozenset(),
    D.SKIPPED: frozenset(),
}

# The campaigns `campaigns resume` (CLI, web, API) accepts: a draft would be sent whole by a
# mistyped id, a scheduled one starts at its time.
RESUMABLE = frozenset({CampaignStatus.PAUSED, CampaignStatus.RUNNING})
# Copies that will still be handed to a server ("sending" ones already were: in flight, or
# ambiguous after a crash; "held" ones wait for an A/B test's winner).
LEFT_STATES = (D.PENDING, D.CLAIMED, D.DEFERRED, D.HELD)
# Copies with a final answer.
DONE_STATES = (D.SENT, D.FAILED, D.SKIPPED)


def campaign_transition(current: str, to: str, campaign_id: int | None = None) -> CampaignStatus:
    """Raise StateError unless a campaign may move from ``current`` to ``to``; returns ``to`` as
    the enum."""
    try:
        target, source = CampaignStatus(to), CampaignStatus(current)
    except ValueError:
        raise StateError(f"campaign status {current!r} → {to!r}: not a campaign status") from None
    if target not in CAMPAIGN_MOVES[source]:
        what = f"campaign {campaign_id}" if campaign_id is not None else "campaign"
        raise StateError(f"{what} is {current}: cannot make it {to}")
    return target


def delivery_transition(current: str, to: str) -> DeliveryState:
    """Raise StateError unless a ledger row may move from ``current`` to ``to``; returns ``to``."""
    try:
        target, source = DeliveryState(to), DeliveryState(current)
    except ValueError:
        raise StateError(f"delivery state {current!r} → {to!r}: not a delivery state") from None
    if target not in DELIVERY_MOVES[source]:
        raise StateError(f"a delivery that is {current} cannot become {to}")
    return target


def delivery_sources(sources: Iterable[str], to: str) -> list[str]:
    """``sources`` checked as moves into ``to`` (for a statement's ``WHERE state IN (...)``)."""
    out = list(sources)
    for s in out:
        delivery_transition(s, to)
    return out


def copies_left(counts: Mapping[str, int]) -> int:
    """How many copies of a campaign will still be handed to a server, from its ledger counts."""
    return sum(counts.get(s, 0) for s in LEFT_STATES)


def copies_done(counts: Mapping[str, int]) -> int:
    """How many copies have a final answer (sent, failed or skipped), from its ledger counts."""
    return sum(counts.get(s, 0) for s in DONE_STATES)
