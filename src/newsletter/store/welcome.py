"""A list's welcome email: its setting (template and series steps) and the welcome ledger's rows.

A list's ``welcome`` column holds ``{"template": path, "steps": [0, 3, 7], "since": ISO time}``;
the template ``"default"`` (never a stored path: those are absolute) is the default welcome, one
step: ``welcome.mjml`` of config ``template_dir`` when it has one, else the shipped templates/welcome.mjml.
Readers who join the list after ``since`` — through the signup form or their preference centre,
or by confirming the double opt-in link they were mailed — are due step *n* ``n`` days after they
joined (``subscriptions.confirmed_at``). Readers added by hand or imported as active are not welcomed.

The ledger (``welcome_sends``, unique per reader, list and step) is claimed row by row before a
message leaves: see dispatch/welcome.py for the at-most-once argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import and_, exists, null, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..errors import InvalidInput
from .db import table_of, transaction
from .lookups import _list_row, lists_t, subs_t, subscribers_t
from .models import utcnow
from .preferences import SOURCE as PREFERENCE_CENTRE
from .signup import SOURCE as WEB_FORM
from .suppressions import suppressed_condition
from .welcome_models import WelcomeSend

welcome_t = table_of(WelcomeSend)
MAX_STEPS = 10
MAX_DAY = 365
MAX_ATTEMPTS = 4  # a step the server did not take is tried again in later passes, this many times in all,
RETRY_AFTER = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6))  # after these pauses
SINGLE_FILE_STEP = 0
DEFAULT_TEMPLATE = "default"


def parse_series(value: str) -> list[int]:
    """Series steps such as ``"0,3,7"`` (days after joining): distinct whole numbers 0-365, sorted."""
    parts = [p.strip() for p in (value or "").split(",")]
    if not parts or any(not p.isdigit() or len(p) > 3 for p in parts):
        raise InvalidInput(f"--series {value!r}: use days after joining separated by commas, like 0,3,7")
    steps = sorted({int(p) for p in parts})
    if steps[-1] > MAX_DAY or len(steps) > MAX_STEPS:
        raise InvalidInput(f"--series {value!r}: at most {MAX_STEPS} steps, each at most {MAX_DAY} days after joining")
    return steps


def default_welcome(template_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """The default welcome's MJML and text files: ``template_dir``'s welcome.mjml (and its
    welcome.txt, if any) when it has one, else the shipped welcome.mjml and welcome.txt."""
    from ..compose.templates import default_template_dir

    own = Path(template_dir).expanduser() if template_dir else None
    if own is not None and (own / "welcome.mjml").is_file():
        txt = own / "welcome.txt"
        return own / "welcome.mjml", txt if txt.is_file() else None
    shipped = default_template_dir()
    return shipped / "welcome.mjml", shipped / "welcome.txt"


def step_files(template: str | Path, steps: Sequence[int], template_dir: str | Path | None = None,
               ) -> dict[int, tuple[Path, Path | None]]:
    """The MJML file and optional plain-text file of each step: a file serves a lone step 0
    (its text beside it, same name ending ``.txt``); a folder holds ``step-N.mjml`` (and
    ``step-N.txt``) per step, or ``welcome.mjml`` for a lone step 0; ``"default"`` is the default
    welcome (``default_welcome``, of config ``template_dir``). InvalidInput naming what is missing."""
    if str(template) == DEFAULT_TEMPLATE:
        if list(steps) != [SINGLE_FILE_STEP]:
            raise InvalidInput("--default is one welcome, on the day they join: a series needs --template FOLDER with step-N.mjml")
        return {SINGLE_FILE_STEP: default_welcome(template_dir)}
    path = Path(template).expanduser()
    if path.is_file():
        if list(steps) != [SINGLE_FILE_STEP]:
            raise InvalidInput(f"--template {path}: a series needs a folder with step-N.mjml for each step, not one file")
        txt = path.with_suffix(".txt")
        return {0: (path, txt if txt.is_file() else None)}
    if not path.is_dir():
        raise InvalidInput(f"--template {path}: no such file or folder")
    out: dict[int, tuple[Path, Path | None]] = {}
    for step in steps:
        mjml = path / f"step-{step}.mjml"
        if not mjml.is_file() and step == SINGLE_FILE_STEP and list(steps) == [SINGLE_FILE_STEP]:
            mjml = path / "welcome.mjml"
        if not mjml.is_file():
            raise InvalidInput(f"--template {path}: missing step-{step}.mjml (one MJML file per step of the series)")
        txt = mjml.with_suffix(".txt")
        out[step] = (mjml, txt if txt.is_file() else None)
    return out


def set_welcome(engine: Engine, slug: str, *, template: str | None = None, steps: Sequence[int] | None = None,
                off: bool = False, now: datetime | None = None, default: bool = False) -> dict | None:
    """Turn a list's welcome on (``template``, optional ``steps``, default day 0 only; or ``default``,
    the default welcome) or ``off``; returns the stored setting. Only readers who join after it was
    first turned on are welcomed: changing the template of a list whose welcome is on keeps that date."""
    if sum((off, template is not None, default)) != 1:
        raise InvalidInput("give one of --template PATH, --default or --off")
    if template is not None and template.strip() == DEFAULT_TEMPLATE:
        template, default = None, True  # `--template default` is the shipped welcome, as --default
    if default:
        template = DEFAULT_TEMPLATE
    with transaction(engine) as conn:
        lst = _list_row(conn, slug)
        if off:
            setting = None
        else:
            assert template is not None
            chosen = list(steps) if steps else [SINGLE_FILE_STEP]
            step_files(template, chosen)
            current = lst["welcome"] or {}
            since = current.get("since") or (now or utcnow()).isoformat()
            stored = DEFAULT_TEMPLATE if default else str(Path(template).expanduser().resolve())
            setting = {"template": stored, "steps": chosen, "since": since}
        conn.execute(lists_t.update().where(lists_t.c.id == lst["id"]).values(welcome=setting if setting is not None else null(), updated_at=utcnow()))
    return setting


def list_name(engine: Engine, slug: str) -> str:
    """The display name of list ``slug`` (NotFound otherwise)."""
    with transaction(engine) as conn:
        return _list_row(conn, slug)["name"]


@dataclass
class DueWelcome:
    """One step of one reader's welcome that is due now (and not yet claimed)."""

    subscriber_id: int
    list_id: int
    step: int
    email: str
    name: str
    attributes: dict = field(default_factory=dict)
    retry_of: int | None = None  # the id of a failed row to claim again, None for a first try


@dataclass
class WelcomeList:
    """A list whose welcome is on: what each of its steps is rendered from."""

    id: int
    slug: str
    name: str
    template: str
    steps: list[int]
    since: datetime
    language: str | None = None  # the list's language (None: config ``language``)


def welcome_lists(engine: Engine) -> list[WelcomeList]:
    """Every list whose welcome is on."""
    with transaction(engine) as conn:
        rows = conn.execute(select(lists_t.c.id, lists_t.c.slug, lists_t.c.name, lists_t.c.welcome, lists_t.c.language)
                            .where(lists_t.c.welcome.is_not(None)).order_by(lists_t.c.id)).mappings().all()
    out = []
    for r in rows:
        w: dict[str, Any] = r["welcome"] or {}
        if not w.get("template"):
            continue  # a JSON null stored as 'null'
        since = datetime.fromisoformat(w["since"])
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        out.append(WelcomeList(r["id"], r["slug"], r["name"], w["template"], [int(s) for s in w.get("steps") or [0]], since,
                               r["language"]))
    return out


def due_welcomes(engine: Engine, lst: WelcomeList, step: int, now: datetime, *, limit: int = 200) -> list[DueWelcome]:
    """Readers of ``lst`` due its step ``step`` at ``now``: active (not paused, not suppressed),
    joined by themselves after the welcome was turned on, at least ``step`` days ago, and without a
    claimed or sent row for this step (a failed row is due again once its pause is over, while it has tries left)."""
    w = welcome_t
    settled = exists(select(w.c.id).where(
        w.c.subscriber_id == subs_t.c.subscriber_id, w.c.list_id == subs_t.c.list_id, w.c.step == step,
        or_(w.c.status != "failed", w.c.attempts >= MAX_ATTEMPTS, w.c.next_attempt_at > now)))
    # by themselves: the form or the preference centre, or a double opt-in link we mailed them
    joined_themselves = or_(subs_t.c.source.in_((WEB_FORM, PREFERENCE_CENTRE)),
                            and_(lists_t.c.opt_in == "double", subs_t.c.confirmation_sent_at.is_not(None)))
    failed = (select(w.c.id).where(w.c.subscriber_id == subs_t.c.subscriber_id, w.c.list_id == subs_t.c.list_id,
                                   w.c.step == step, w.c.status == "failed").scalar_subquery())
    q = (
        select(subs_t.c.subscriber_id, subscribers_t.c.email, subscribers_t.c.name, subscribers_t.c.attributes,
               failed.label("retry_of"))
        .select_from(subs_t.join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id)
                     .join(lists_t, lists_t.c.id == subs_t.c.list_id))
        .where(
            subs_t.c.list_id == lst.id, subs_t.c.status == "active",
            subs_t.c.confirmed_at.is_not(None), subs_t.c.confirmed_at >= lst.since,
            subs_t.c.confirmed_at <= now - timedelta(days=step),
            joined_themselves,
            or_(subscribers_t.c.pause_until.is_(None), subscribers_t.c.pause_until <= now),
            ~suppressed_condition(subscribers_t.c.email_key), ~settled,
        )
        .order_by(subs_t.c.confirmed_at, subs_t.c.subscriber_id).limit(limit)
    )
    with transaction(engine) as conn:
        rows = conn.execute(q).mappings().all()
    return [DueWelcome(r["subscriber_id"], lst.id, step, r["email"], r["name"] or "", dict(r["attributes"] or {}),
                       r["retry_of"]) for r in rows]


def claim(engine: Engine, due: DueWelcome, now: datetime) -> bool:
    """Record this step as ``sending`` before it is sent, if the reader is still on the list; False
    when another worker claimed it first or the reader left meanwhile. The unique key decides a race."""
    try:
        with transaction(engine) as conn:
            still = conn.execute(select(subs_t.c.id).where(
                subs_t.c.subscriber_id == due.subscriber_id, subs_t.c.list_id == due.list_id,
                subs_t.c.status == "active")).first()
            if still is None:
                return False
            if due.retry_of is not None:
                return conn.execute(
                    welcome_t.update().where(welcome_t.c.id == due.retry_of, welcome_t.c.status == "failed",
                                             welcome_t.c.attempts < MAX_ATTEMPTS)
                    .values(status="sending", attempts=welcome_t.c.attempts + 1, error="")
                ).rowcount == 1
            conn.execute(welcome_t.insert().values(
                subscriber_id=due.subscriber_id, list_id=due.list_id, step=due.step, status="sending",
                attempts=1, error="", created_at=now))
            return True
    except IntegrityError:
        return False


def settle(engine: Engine, due: DueWelcome, *, error: str | None, now: datetime) -> None:
    """Mark a claimed step ``sent`` (``error`` None) or ``failed`` (the server did not take it: tried
    again after 15 minutes, an hour, then six hours)."""
    with transaction(engine) as conn:
        if error is None:
            values: dict[str, Any] = {"status": "sent", "sent_at": now, "next_attempt_at": None}
        else:
            tries = conn.execute(select(welcome_t.c.attempts).where(
                welcome_t.c.subscriber_id == due.subscriber_id, welcome_t.c.list_id == due.list_id,
                welcome_t.c.step == due.step)).scalar() or 1
            pause = RETRY_AFTER[min(tries, len(RETRY_AFTER)) - 1]
            values = {"status": "failed", "error": error[:500], "next_attempt_at": now + pause}
        conn.execute(welcome_t.update().where(
            and_(welcome_t.c.subscriber_id == due.subscriber_id, welcome_t.c.list_id == due.list_id,
                 welcome_t.c.step == due.step, welcome_t.c.status == "sending")).values(**values))


def welcome_counts(engine: Engine, slug: str) -> dict[str, int]:
    """How many welcome steps of a list are in each ledger status (sending rows are ones a crash left: never resent)."""
    from sqlalchemy import func

    with transaction(engine) as conn:
        lst = _list_row(conn, slug)
        rows = conn.execute(select(welcome_t.c.status, func.count()).where(welcome_t.c.list_id == lst["id"])
                            .group_by(welcome_t.c.status)).all()
    return {status: n for status, n in rows}
