"""A/B subject tests: a share of the audience gets one of 2–4 subjects, the rest the winner.

At ledger time every reader's row is created ``held``; a stable hash of (campaign, subscriber)
puts ``test_share`` of them in the test, each with a variant (``deliveries.variant``), and those
rows become ``pending`` — so a crash and a resume keep every reader in their variant, and the
unique ledger key keeps one copy per reader. Once every test copy has been handed over, the wait
starts; at its end a worker (:func:`decide_due`) compares the variants — human clicks by default
(``engagement.classify`` tells people from scanners), or people's opens when asked — records the
decision and its numbers, and releases the held rows with the winner, in one transaction that only
one worker can make. A variant needs ``min_sample`` delivered copies for a decision on data; with
fewer, or a tie, A (the campaign's own subject) is sent and the decision says why.

The body is the campaign's, shared: a variant changes the Subject (and the HTML ``<title>``,
which must match it) and, as a body variant, may add an intro paragraph (:func:`with_intro`), so
each variant is one message skeleton built once per send (:func:`variant_factory`), never per copy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Callable

from sqlalchemy.engine import Connection, Engine

from ..errors import InvalidInput
from ..store import abtests as store
from ..store import queries as q
from ..store.ab_models import WINNER_METRICS, ABTest
from ..store.db import transaction
from ..store.lifecycle import DeliveryState
from ..store.models import utcnow

MAX_VARIANTS = 4
LETTERS = "ABCD"
SUBJECT_FLAGS = ("--subject", "--subject-b", "--subject-c", "--subject-d")
INTRO_FLAGS = ("--intro", "--intro-b", "--intro-c", "--intro-d")
DEFAULT_SHARE = "20%"
DEFAULT_WAIT = "4h"
DEFAULT_MIN_SAMPLE = 50
MAX_WAIT = timedelta(days=30)
APPLE_WARNING = ("--winner-by opens: Apple Mail Privacy Protection opens every message it receives, and image "
                 "proxies hide people; opens are counted for people only (apple-mpp and scanners left out), "
                 "which undercounts Apple Mail readers — clicks are the better measure")
# Opens that count for a decision: people, and providers' image proxies fetching for a person.
OPEN_AGENTS = ("human", "proxy")
_CHUNK = 5000


@dataclass(frozen=True)
class ABSpec:
    """A test asked for at creation: subjects (A first), share in basis points, wait, metric."""

    subjects: tuple[str, ...]
    test_share: int
    wait_seconds: int
    winner_by: str = "clicks"
    min_sample: int = DEFAULT_MIN_SAMPLE
    intros: tuple[str | None, ...] = ()  # a body variant: an intro paragraph above the content, per variant

    @property
    def variants(self) -> list[dict]:
        intros = list(self.intros) + [None] * (len(self.subjects) - len(self.intros))
        return [{"subject": s, **({"intro": i} if i else {})} for s, i in zip(self.subjects, intros)]


def parse_share(text: str | None) -> int:
    """``--test-share`` ("20%", "20", "12.5%") as basis points; strictly between 0 and 100 %."""
    raw = (text or "").strip()
    m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,2})?)\s*%?", raw)
    if not m:
        raise InvalidInput(f"--test-share {raw!r}: expected a percentage such as 20%")
    bp = round(float(m.group(1)) * 100)
    if not 0 < bp < 10000:
        raise InvalidInput(f"--test-share {raw!r}: must be more than 0% and less than 100% "
                           "(the rest of the audience gets the winner)")
    return bp


_WAIT = re.compile(r"(\d{1,6})\s*(d|h|min|m|s)")


def parse_wait(text: str | None) -> int:
    """``--test-wait`` ("4h", "90m", "1d", "1h30m") in seconds; more than 0, at most 30 days."""
    raw = (text or "").strip().lower()
    pos, total = 0, 0
    for m in _WAIT.finditer(raw):
        if raw[pos:m.start()].strip():
            break
        total += int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1}[m.group(2)]
        pos = m.end()
    if not raw or pos == 0 or raw[pos:].strip():
        raise InvalidInput(f"--test-wait {text!r}: expected a duration such as 4h, 90m, 1d or 1h30m")
    if total <= 0 or total > MAX_WAIT.total_seconds():
        raise InvalidInput(f"--test-wait {text!r}: must be more than 0 and at most 30 days")
    return total


def ab_spec(subject_a: str | None, others: list[str | None], *, test_share: str | None = None,
            test_wait: str | None = None, winner_by: str | None = None,
            min_sample: int | None = None, intros: list[str | None] | None = None) -> ABSpec | None:
    """The test asked for by the creation flags, checked (InvalidInput naming the flag), or None
    when none of them was given. ``others`` are --subject-b, -c, -d in order; ``intros`` the
    optional --intro, --intro-b, -c, -d (a body variant: the same content, another intro)."""
    given = [o for o in others if o is not None]
    intros = list(intros or [])
    if (not given and test_share is None and test_wait is None and winner_by is None and min_sample is None
            and not any(i is not None for i in intros)):
        return None
    for i, o in enumerate(others):
        if o is not None and not o.strip():
            raise InvalidInput(f"{SUBJECT_FLAGS[i + 1]}: the subject is empty")
        if o is not None and i and others[i - 1] is None:
            raise InvalidInput(f"{SUBJECT_FLAGS[i + 1]} without {SUBJECT_FLAGS[i]}: name the variants in order")
    if not given:
        raise InvalidInput("A/B test with one variant: give --subject-b (and up to --subject-d) to compare subjects")
    if subject_a is not None and not subject_a.strip():
        raise InvalidInput("A/B test: --subject (variant A) is empty")
    subjects = (subject_a or "", *given)  # A "": the digest's subject, filled in by create_ab_campaign
    _check_distinct(subjects)
    for i, intro in enumerate(intros):
        if intro is None:
            continue
        if i >= len(subjects):
            raise InvalidInput(f"{INTRO_FLAGS[i]} without {SUBJECT_FLAGS[i]}: an intro belongs to a variant")
        if not intro.strip() or len(intro) > 2000:
            raise InvalidInput(f"{INTRO_FLAGS[i]}: an intro is 1 to 2000 characters")
    metric = (winner_by if winner_by is not None else "clicks").strip().lower()
    if metric not in WINNER_METRICS:
        raise InvalidInput(f"--winner-by {winner_by!r}: expected clicks or opens")
    if min_sample is not None and min_sample < 1:
        raise InvalidInput(f"--min-sample {min_sample}: must be at least 1")
    return ABSpec(subjects=subjects, test_share=parse_share(test_share if test_share is not None else DEFAULT_SHARE),
                  wait_seconds=parse_wait(test_wait if test_wait is not None else DEFAULT_WAIT), winner_by=metric,
                  min_sample=min_sample if min_sample is not None else DEFAULT_MIN_SAMPLE,
                  intros=tuple(i.strip() if i else None for i in intros[:len(subjects)]))


def _check_distinct(subjects) -> None:
    for i, s in enumerate(subjects):
        if s and s in subjects[:i]:
            raise InvalidInput(f"{SUBJECT_FLAGS[i]} {s!r}: the same subject as {SUBJECT_FLAGS[subjects.index(s)]}")


def check_ab(digest, list_slugs: list[str], config, spec: ABSpec, track=None) -> ABSpec:
    """``spec`` with A filled in (the digest's subject when none was given), after the checks a
    test needs before anything is stored: every subject checked like a campaign's own, no
    unknown merge tag in a subject or an intro, and the metric tracked (``--track``)."""
    from ..engagement.campaign import tracking_for_new_campaign
    from .campaigns import _check_headers
    from .personalize import unknown_tags

    if not spec.subjects[0]:  # A is the digest's own subject
        spec = replace(spec, subjects=(digest.subject, *spec.subjects[1:]))
        _check_distinct(spec.subjects)
    for flag, s in zip(SUBJECT_FLAGS, spec.subjects):
        try:
            _check_headers(s, str(config.from_address or "x@example.org"), None, None)
        except InvalidInput as e:
            raise InvalidInput(f"{flag}: {e}") from None
        bad = unknown_tags(s)
        if bad:
            raise InvalidInput(f"{flag}: unknown merge tag {bad[0]}: it would be sent as written")
    for flag, intro in zip(INTRO_FLAGS, spec.intros):
        bad = unknown_tags(intro or "")
        if bad:
            raise InvalidInput(f"{flag}: unknown merge tag {bad[0]}: it would be sent as written")
    tracking = tracking_for_new_campaign(config, list_slugs, track)
    if spec.winner_by not in tracking:
        raise InvalidInput(f"--winner-by {spec.winner_by}: the campaign does not track {spec.winner_by} "
                           f"(add --track {spec.winner_by}, or opens,clicks)")
    return spec


def create_ab_campaign(engine: Engine, digest, list_slugs: list[str], config, spec: ABSpec, *,
                       track=None, **kw):
    """``campaigns.create_campaign`` with an A/B test (:func:`check_ab`): the campaign and its
    test are written in one transaction (nothing stored on any refusal)."""
    from .campaigns import create_campaign

    spec = check_ab(digest, list_slugs, config, spec, track)
    with transaction(engine) as conn:
        c = create_campaign(engine, digest, list_slugs, config, subject=spec.subjects[0], track=track, conn=conn, **kw)
        assert c.id is not None
        store.insert_test(conn, c.id, variants=spec.variants, test_share=spec.test_share,
                          wait_seconds=spec.wait_seconds, winner_by=spec.winner_by, min_sample=spec.min_sample)
    return c


# --- the ledger -------------------------------------------------------------------------------------
def variant_of(campaign_id: int, subscriber_id: int, test_share: int, variants: int) -> int | None:
    """The variant a reader gets in the test (0 = A), or None when they are in the rest: a stable
    hash of (campaign, subscriber), the same on every run and every machine."""
    h = int.from_bytes(hashlib.sha256(f"ab:{campaign_id}:{subscriber_id}".encode()).digest()[:8], "big")
    if h % 10000 >= test_share:
        return None
    return (h // 10000) % variants


def create_ledger_for(conn: Connection, campaign_id: int, now: datetime | None = None) -> int:
    """Create the campaign's ledger (``queries.create_ledger``); for an A/B campaign, every row
    ``held``, then the test share released ``pending`` with its variants. Returns rows added."""
    test = store.test_of(conn, campaign_id)
    if test is None:
        return q.create_ledger(conn, campaign_id, now)
    now = now or utcnow()
    added = q.create_ledger(conn, campaign_id, now, state=DeliveryState.HELD)
    n, after = len(test.variants), 0
    while True:
        rows = q.held_rows(conn, campaign_id, after, _CHUNK)
        if not rows:
            return added
        after = rows[-1][0]
        picked: dict[int, list[int]] = {}
        for i, sid in rows:
            v = variant_of(campaign_id, sid, test.test_share, n)
            if v is not None:
                picked.setdefault(v, []).append(i)
        for v, ids in sorted(picked.items()):
            q.release_held_as(conn, v, ids, now)


# --- building the copies ------------------------------------------------------------------------------
class VariantFactory:
    """The message factories of an A/B campaign's variants behind one ``build``: each copy is built
    with its ledger row's variant (``Recipient.variant``; None: A). Everything else is A's."""

    def __init__(self, factories: list):
        self.factories = factories

    def build(self, r, **kw):
        v = r.variant if r.variant is not None and 0 <= r.variant < len(self.factories) else 0
        return self.factories[v].build(r, **kw)

    def __getattr__(self, name):
        return getattr(self.factories[0], name)


_PREHEADER_END = re.compile(r'<div class="nl-preheader"[^>]*>.*?</div>', re.S)
_BODY_START = re.compile(r"<body\b[^>]*>", re.I)
INTRO_STYLE = ("max-width:544px;margin:16px auto 0;padding:0 28px;font-size:16px;line-height:1.6;"
               "font-family:-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif")


def with_intro(html: str, text: str, intro: str) -> tuple[str, str]:
    """(html, text) with ``intro`` as their first paragraph: in the HTML right after the hidden
    preview text (else after ``<body>``), escaped; in the text before everything."""
    import html as _html

    block = f'<div class="nl-ab-intro" style="{INTRO_STYLE}"><p style="margin:0">{_html.escape(intro)}</p></div>'
    m = _PREHEADER_END.search(html) or _BODY_START.search(html)
    new_html = html[:m.end()] + block + html[m.end():] if m else block + html
    return new_html, f"{intro}\n\n{text}"


def _variant_view(campaign, variant: dict):
    """What the message factory reads of ``campaign``, with a variant's subject (and matching
    title) and, for a body variant, its intro."""
    from .campaigns import titled

    keys = ("id", "from_address", "reply_to", "headers", "meta", "preheader", "name")
    html, text = titled(campaign.html, variant["subject"]), campaign.text
    if variant.get("intro"):
        html, text = with_intro(html, text, variant["intro"])
    return SimpleNamespace(**{k: getattr(campaign, k, None) for k in keys}, subject=variant["subject"],
                           html=html, text=text)


def variant_factory(engine: Engine, campaign, build: Callable):
    """``build(campaign)`` — or, for an A/B campaign, one factory per variant behind a
    :class:`VariantFactory` (a test send of such a campaign uses the subject it is given)."""
    with transaction(engine) as conn:
        test = store.test_of(conn, campaign.id) if campaign.id is not None else None
    if test is None or campaign.subject != test.variants[0]["subject"]:
        return build(campaign)
    return VariantFactory([build(campaign if i == 0 and not v.get("intro") else _variant_view(campaign, v))
                           for i, v in enumerate(test.variants)])


# --- results and the decision -----------------------------------------------------------------------
@dataclass
class VariantResult:
    """One variant's numbers: copies delivered and people who clicked / opened, in the test
    (``test_*``) and in all (the winner's include the rest once it went out)."""

    variant: int
    letter: str
    subject: str
    test_copies: int = 0
    test_delivered: int = 0
    test_clickers: int = 0
    test_openers: int = 0
    rest_copies: int = 0
    delivered: int = 0
    clickers: int = 0
    openers: int = 0
    intro: str | None = None  # a body variant's intro

    def rate(self, metric: str) -> float | None:
        """People who clicked (or opened) over test copies delivered."""
        n = self.test_clickers if metric == "clicks" else self.test_openers
        return n / self.test_delivered if self.test_delivered else None


@dataclass
class ABStatus:
    """An A/B campaign's test as shown by ``campaigns show/report``, the API and the web page."""

    campaign_id: int
    test_share: float  # percent
    wait_seconds: int
    winner_by: str
    min_sample: int
    phase: str  # "not started" | "testing" | "waiting" | "decided"
    held: int
    tested_at: datetime | None
    decide_after: datetime | None
    decided_at: datetime | None
    winner: int | None
    winner_letter: str | None
    decision: dict | None
    variants: list[VariantResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("tested_at", "decide_after", "decided_at"):
            d[k] = d[k].isoformat() if d[k] else None
        for v, r in zip(d["variants"], self.variants):
            v["rate"] = r.rate(self.winner_by)
        return d


def variant_results(conn: Connection, test: ABTest) -> list[VariantResult]:
    """Per variant: copies and delivered (ledger), people who clicked and opened (engagement)."""
    from ..engagement import events as ev

    out = [VariantResult(i, LETTERS[i], v["subject"], intro=v.get("intro")) for i, v in enumerate(test.variants)]
    cid = test.campaign_id
    for v, in_test, state, n in q.counts_by_variant(conn, cid):
        if v is None or not 0 <= v < len(out):
            continue
        r = out[v]
        if in_test:
            r.test_copies += n
            r.test_delivered += n if state == DeliveryState.SENT else 0
        else:
            r.rest_copies += n
        r.delivered += n if state == DeliveryState.SENT else 0
    for attr, kind, agents in (("clickers", "click", ("human",)), ("openers", "open", OPEN_AGENTS)):
        for (v, in_test), n in ev.variant_readers(conn, cid, kind, agents).items():
            if v is None or not 0 <= v < len(out):
                continue
            setattr(out[v], attr, getattr(out[v], attr) + n)
            if in_test:
                setattr(out[v], "test_" + attr, getattr(out[v], "test_" + attr) + n)
    return out


def choose(results: list[VariantResult], winner_by: str, min_sample: int) -> tuple[int, str, bool]:
    """(winner, why, on_data): the best rate of ``winner_by`` among the variants when each has at
    least ``min_sample`` delivered test copies and one leads; else A, saying why."""
    metric = "human clicks" if winner_by == "clicks" else "people's opens"
    short = [r for r in results if r.test_delivered < min_sample]
    if short:
        names = ", ".join(f"{r.letter} {r.test_delivered}" for r in short)
        return 0, f"too few delivered copies for a decision on {metric} ({names}; at least {min_sample} each): A is sent", False
    rates = [(r.rate(winner_by) or 0.0) for r in results]
    best = max(rates)
    leaders = [r for r, rate in zip(results, rates) if rate == best]
    if best == 0:
        return 0, f"no {metric} in the test: A is sent", False
    if len(leaders) > 1:
        return 0, f"a tie on {metric} ({', '.join(r.letter for r in leaders)} at {best:.1%}): A is sent", False
    w = leaders[0]
    return w.variant, f"{w.letter} has the most {metric}: {best:.1%} of its delivered copies", True


@dataclass
class Decision:
    """What :func:`decide_due` did for one campaign."""

    campaign_id: int
    winner: int
    reason: str
    released: int


def _numbers(results: list[VariantResult], winner_by: str) -> list[dict]:
    return [{"variant": r.letter, "subject": r.subject, "delivered": r.test_delivered, "clickers": r.test_clickers,
             "openers": r.test_openers, "rate": r.rate(winner_by)} for r in results]


def _test_in_progress(conn: Connection, campaign_id: int) -> bool:
    """Whether test copies are still to be handed over (pending, claimed or in flight)."""
    busy = (DeliveryState.PENDING, DeliveryState.CLAIMED, DeliveryState.SENDING)
    return any(in_test and state in busy and n for _, in_test, state, n in q.counts_by_variant(conn, campaign_id))


def decide_due(engine: Engine, now: datetime, on_event: Callable[[str], None] | None = None) -> list[Decision]:
    """For each running A/B campaign without a winner: start the wait once its test copies are
    all handed over, and at the wait's end record the decision and release the rest with the
    winner (a compare-and-set: with several workers, one decides). Returns the decisions made."""
    say = on_event or (lambda _line: None)
    made: list[Decision] = []
    with transaction(engine) as conn:
        tests = store.undecided_running(conn)
    for test in tests:
        cid = test.campaign_id
        with transaction(engine) as conn:
            ledger = q.campaign_state(conn, cid).ledger_created_at
            if ledger is None:
                continue
            if test.tested_at is None:
                if _test_in_progress(conn, cid):
                    continue
                if store.mark_tested(conn, cid, now):
                    say(f"campaign {cid}: A/B test copies sent; the winner is chosen after "
                        f"{_human(test.wait_seconds)} (at {(now + timedelta(seconds=test.wait_seconds)).isoformat(timespec='minutes')})")
                tested_at = now
            else:
                tested_at = test.tested_at
            if now < tested_at + timedelta(seconds=test.wait_seconds):
                continue
            results = variant_results(conn, test)
            winner, why, on_data = choose(results, test.winner_by, test.min_sample)
            decision = {"winner": LETTERS[winner], "subject": test.variants[winner]["subject"], "reason": why,
                        "on_data": on_data, "winner_by": test.winner_by, "min_sample": test.min_sample,
                        "at": now.isoformat(), "numbers": _numbers(results, test.winner_by)}
            if not store.record_decision(conn, cid, winner, decision, now):
                continue  # another worker decided first
            released = q.release_held(conn, cid, winner, now)
        made.append(Decision(cid, winner, why, released))
        say(f"campaign {cid}: A/B winner {LETTERS[winner]} ({why}); sending it to the other {released} reader(s)")
    return made


def decision_came_due(engine: Engine, since: datetime, now: datetime) -> str | None:
    """An A/B decision whose time came in (``since``, ``now``] (a worker busy with a long send
    makes way for it), or None."""
    with transaction(engine) as conn:
        waiting = store.tested_waiting(conn)
    for cid, tested_at, wait in waiting:
        if since < tested_at + timedelta(seconds=wait) <= now:
            return f"campaign {cid}'s A/B decision came due"
    return None


def ab_status(engine: Engine, campaign_id: int) -> ABStatus | None:
    """The campaign's A/B test with its per-variant numbers, or None for a campaign without one."""
    with transaction(engine) as conn:
        test = store.test_of(conn, campaign_id)
        if test is None:
            return None
        results = variant_results(conn, test)
        held = sum(n for v, _, state, n in q.counts_by_variant(conn, campaign_id) if state == DeliveryState.HELD)
        ledger = q.campaign_state(conn, campaign_id).ledger_created_at
    if test.decided_at is not None:
        phase = "decided"
    elif test.tested_at is not None:
        phase = "waiting"
    else:
        phase = "testing" if ledger is not None else "not started"
    after = test.tested_at + timedelta(seconds=test.wait_seconds) if test.tested_at else None
    return ABStatus(campaign_id=campaign_id, test_share=test.test_share / 100, wait_seconds=test.wait_seconds,
                    winner_by=test.winner_by, min_sample=test.min_sample, phase=phase, held=held,
                    tested_at=test.tested_at, decide_after=after, decided_at=test.decided_at, winner=test.winner,
                    winner_letter=LETTERS[test.winner] if test.winner is not None else None,
                    decision=test.decision, variants=results)


def _human(seconds: int) -> str:
    """A wait in words: 4h, 90m, 1d 2h."""
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n]
    return " ".join(parts) or "0s"

