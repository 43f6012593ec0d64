"""What the feedback mailboxes held: one row per message we acted on (or chose to leave), so a
second poll, a crash before the move, or the same message twice counts nothing twice.

The row is also the evidence for an unsubscribe received by email (``kind='unsubscribe'``: who,
which list, the message's From, Message-ID and date) and the operator's list of unsubscribe
requests that carried no token (``kind='unsubscribe-request'``), which are never acted on alone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow


class MailboxMessageKind(StrEnum):
    """What a mailbox message turned out to be (closed set)."""

    BOUNCE = "bounce"  # a report (DSN, ARF, auto-reply, non-standard bounce): events recorded
    UNSUBSCRIBE = "unsubscribe"  # a mailto unsubscribe carrying a valid signed token: acted on
    UNSUBSCRIBE_REQUEST = "unsubscribe-request"  # no valid token, From a subscribed address: listed, not acted on
    DUPLICATE = "duplicate"  # the same bytes as a message processed before: nothing counted
    LEFT = "left"  # not a report nor an unsubscribe: left in place for a person to read


MAILBOX_MESSAGE_KINDS = tuple(k.value for k in MailboxMessageKind)


class MailboxMessage(SQLModel, table=True):
    """One message seen in a bounce or unsubscribe mailbox; see the module docstring."""

    __tablename__ = "mailbox_messages"
    __table_args__ = (
        sa.UniqueConstraint("mailbox", "message_key", name="uq_mailbox_messages_mailbox_key"),
        sa.CheckConstraint(
            "kind in ('bounce', 'unsubscribe', 'unsubscribe-request', 'duplicate', 'left')",
            name="ck_mailbox_messages_kind",
        ),
        sa.Index("ix_mailbox_messages_digest", "digest"),
        sa.Index("ix_mailbox_messages_kind", "kind"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    mailbox: str = Field(sa_type=sa.String(500), nullable=False)  # the mailbox URL, without password
    message_key: str = Field(sa_type=sa.String(300), nullable=False)  # UIDVALIDITY:UID, UIDL, file name, digest
    digest: str = Field(sa_type=sa.String(64), nullable=False)  # sha256 of the raw message
    kind: str = Field(sa_type=sa.String(24), nullable=False)
    message_id: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    from_address: Optional[str] = Field(default=None, sa_type=sa.String(320), nullable=True)
    subject: str = Field(default="", sa_type=sa.Text(), nullable=False)
    sent_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)  # the Date header
    subscriber_id: Optional[int] = Field(
        default=None, sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="SET NULL")], nullable=True
    )
    list_id: Optional[int] = Field(default=None, sa_column_args=[sa.ForeignKey("lists.id", ondelete="SET NULL")], nullable=True)
    events_new: int = Field(default=0, nullable=False)
    events_duplicate: int = Field(default=0, nullable=False)
    detail: str = Field(default="", sa_type=sa.Text(), nullable=False)  # one line: what was done
    processed_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
