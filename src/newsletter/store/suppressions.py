"""The global suppression list: addresses and whole domains never mailed, on any list.

A suppression stops every send (``suppressed_condition`` is part of each sending query) and
every way of (re)subscribing: import, ``subscribers add``, the signup form, a confirmation link.
It is never overridden, not even with fresh consent; only ``unsuppress`` lifts it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, literal, or_, select
from sqlalchemy.engine import Connection, Engine

from ..errors import InvalidInput
from .addresses import _domain, domain_of
from .db import transaction
from .lookups import _key_of, supp_t
from .models import Suppression, utcnow
from .textrules import check_text


def _suppression_value(value: str) -> tuple[str, str]:
    """(kind, stored value) for an address or a domain given by a person."""
    text = (value or "").strip()
    if not text:
        raise InvalidInput("suppression needs an address or a domain")
    if "@" in text:
        return "address", _key_of(text)
    domain = text.lstrip("@").lower()
    checked = _domain(domain)
    if isinstance(checked, Exception):
        raise InvalidInput(f"{text!r} is not a valid domain: {checked}")
    return "domain", checked.lower()


def _find_suppression(conn: Connection, key: str):
    q = select(supp_t).where(
        or_(
            and_(supp_t.c.kind == "address", supp_t.c.value == key),
            and_(supp_t.c.kind == "domain", supp_t.c.value == domain_of(key)),
        )
    )
    return conn.execute(q).mappings().first()


def find_suppression(engine: Engine, email: str) -> Suppression | None:
    """The suppression entry (address or its domain) that blocks this address, if any."""
    with transaction(engine) as conn:
        r = _find_suppression(conn, _key_of(email))
    return Suppression(**r) if r else None


def suppressed_condition(email_key_column) -> Any:
    """SQL condition true when the address in ``email_key_column`` is suppressed (address or domain).

    Sending queries use ``~suppressed_condition(Subscriber.email_key)`` so a suppression added
    after a campaign was created still stops the mail."""
    return exists(
        select(literal(1)).select_from(supp_t).where(
            or_(
                and_(supp_t.c.kind == "address", supp_t.c.value == email_key_column),
                and_(supp_t.c.kind == "domain", email_key_column.like(literal("%@") + supp_t.c.value)),
            )
        )
    )


def suppress(engine: Engine, value: str, *, reason: str = "") -> tuple[Suppression, bool]:
    """Suppress an address (``ana@example.com``) or a whole domain (``example.net``) on every list.

    Returns (entry, created); suppressing twice keeps the first entry. Subscriptions are
    left as they are, but nothing is ever sent to a suppressed address and no import or add
    can subscribe it."""
    check_text("the suppression reason", reason or "", multiline=True)
    with transaction(engine) as conn:
        return suppress_in(conn, value, reason=reason)


def suppress_in(conn: Connection, value: str, *, reason: str = "") -> tuple[Suppression, bool]:
    """:func:`suppress` inside the caller's transaction (the bounce rules suppress and change
    subscriptions together)."""
    kind, stored = _suppression_value(value)
    row = dict(kind=kind, value=stored, reason=reason or "", created_at=utcnow())
    # ON CONFLICT DO NOTHING: two processes suppressing the same address at once both succeed.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        added = conn.execute(postgresql.insert(supp_t).values(**row).on_conflict_do_nothing(index_elements=["kind", "value"])).rowcount
    else:
        from sqlalchemy.dialects import sqlite

        added = conn.execute(sqlite.insert(supp_t).values(**row).on_conflict_do_nothing(index_elements=["kind", "value"])).rowcount
    r = conn.execute(select(supp_t).where(supp_t.c.kind == kind, supp_t.c.value == stored)).mappings().one()
    return Suppression(**r), bool(added)


def unsuppress(engine: Engine, value: str) -> bool:
    """Remove a suppression entry; False when there was none."""
    kind, stored = _suppression_value(value)
    with transaction(engine) as conn:
        return conn.execute(supp_t.delete().where(supp_t.c.kind == kind, supp_t.c.value == stored)).rowcount > 0


def list_suppressions(engine: Engine) -> list[Suppression]:
    """Every suppression entry, newest first."""
    with transaction(engine) as conn:
        rows = conn.execute(select(supp_t).order_by(supp_t.c.created_at.desc(), supp_t.c.id.desc())).mappings().all()
    return [Suppression(**r) for r in rows]
