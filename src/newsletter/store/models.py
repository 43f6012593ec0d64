"""Subscribers, lists, subscriptions and the global suppression list (SQLModel tables).

An address is stored as email-validator normalized it (``email``) and, lowercased, in
``email_key``, which is unique: ``Ana@Example.com`` and ``ana@example.com`` are one person.
Timestamps are timezone-aware UTC in Python on both SQLite and PostgreSQL (``UtcDateTime``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

SUBSCRIPTION_STATUSES = ("unconfirmed", "active", "unsubscribed", "bounced", "complained")
# Statuses that mean "do not mail and do not re-add by import".
OPTED_OUT_STATUSES = ("unsubscribed", "bounced", "complained")
OPT_IN_MODES = ("single", "double")
SUPPRESSION_KINDS = ("address", "domain")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A timestamp stored as UTC and always returned timezone-aware (naive input is taken as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Subscriber(SQLModel, table=True):
    """A person: one row per address, whatever the case it was written in."""

    __tablename__ = "subscribers"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids are never reused: tokens name them

    id: Optional[int] = Field(default=None, primary_key=True)
    email: str = Field(sa_type=sa.String(320), nullable=False)
    email_key: str = Field(sa_type=sa.String(320), nullable=False, unique=True)
    name: str = Field(default="", sa_type=sa.Text(), nullable=False)
    attributes: dict = Field(default_factory=dict, sa_type=sa.JSON(), nullable=False)
    consent_source: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    consent_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # The class of network the consent came from (engagement.classify.ip_class: loopback, private,
    # ipv4…), when it was given on a web page; never the address itself.
    consent_ip_class: Optional[str] = Field(default=None, sa_type=sa.String(16), nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    # The preference centre (store/preferences.py): no campaign mails them before pause_until; their
    # IANA time zone; and the version of their preferences link (bumping it revokes old links).
    pause_until: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    timezone: Optional[str] = Field(default=None, sa_type=sa.String(64), nullable=True)
    pref_key_version: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})


class MailingList(SQLModel, table=True):
    """A list people subscribe to; ``opt_in`` is ``single`` or ``double`` (confirmation email first)."""

    __tablename__ = "lists"
    __table_args__ = (
        sa.CheckConstraint("opt_in in ('single', 'double')", name="ck_lists_opt_in"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    slug: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    name: str = Field(sa_type=sa.Text(), nullable=False)
    description: str = Field(default="", sa_type=sa.Text(), nullable=False)
    opt_in: str = Field(default="single", sa_type=sa.String(8), nullable=False)
    # The welcome email (dispatch/welcome.py): {"template": path, "steps": [0, 3, 7], "since": ISO time}; None: off.
    welcome: Optional[dict] = Field(default=None, sa_type=sa.JSON(none_as_null=True), nullable=True)
    language: Optional[str] = Field(default=None, sa_type=sa.String(16), nullable=True)  # readers' language; None: config.language
    # IANA zone of readers who gave none (local-time delivery); None: config.timezone
    timezone: Optional[str] = Field(default=None, sa_type=sa.String(64), nullable=True)
    # public: a signup page, and offered on every reader's preference centre; private: only its own readers see it
    public: bool = Field(default=True, nullable=False, sa_column_kwargs={"server_default": sa.true()})
    # "22:00-07:00": local-time campaigns send nothing to its readers then, in each reader's zone; None: no quiet hours
    quiet_hours: Optional[str] = Field(default=None, sa_type=sa.String(11), nullable=True)
    # its campaigns go in the public archive unless a campaign says otherwise (dispatch/archive.py)
    archive: bool = Field(default=True, nullable=False, sa_column_kwargs={"server_default": sa.true()})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)


class Subscription(SQLModel, table=True):
    """One subscriber on one list, with where they are in the opt-in/opt-out life cycle."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "list_id", name="uq_subscriptions_subscriber_list"),
        sa.CheckConstraint(
            "status in ('unconfirmed', 'active', 'unsubscribed', 'bounced', 'complained')",
            name="ck_subscriptions_status",
        ),
        sa.Index("ix_subscriptions_list_status", "list_id", "status"),
        # outgoing event webhooks read what changed since their cursor: WHERE updated_at >= :t
        sa.Index("ix_subscriptions_updated_at", "updated_at"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=False
    )
    list_id: int = Field(sa_column_args=[sa.ForeignKey("lists.id", ondelete="CASCADE")], nullable=False)
    status: str = Field(sa_type=sa.String(16), nullable=False)
    source: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    confirmed_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # When the double-opt-in email was last sent (None: never), so confirmations go out once
    # and reminders only after a while.
    confirmation_sent_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    unsubscribed_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)


class Suppression(SQLModel, table=True):
    """A global do-not-mail entry for an address or a whole domain; no import or add overrides it."""

    __tablename__ = "suppressions"
    __table_args__ = (
        sa.UniqueConstraint("kind", "value", name="uq_suppressions_kind_value"),
        sa.CheckConstraint("kind in ('address', 'domain')", name="ck_suppressions_kind"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(sa_type=sa.String(8), nullable=False)
    value: str = Field(sa_type=sa.String(320), nullable=False)  # lowercased address or domain
    reason: str = Field(default="", sa_type=sa.Text(), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
