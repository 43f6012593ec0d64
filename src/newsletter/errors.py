"""The project's exception hierarchy.

Library code raises these with a one-line message naming the thing and the problem;
only the CLI and web shells turn them into exit codes, log lines or HTTP answers.
"""

from __future__ import annotations

from .i18n import Message


class NewsletterError(Exception):
    """Base of every error the project raises on purpose; ``str()`` is one line for the user."""

    exit_code = 1
    reader: Message | None = None  # the same words, translatable, when readers may see them (public pages)

    def __init__(self, message: str):
        # Errors are shown on one line: fold any newline a wrapped exception brought in.
        super().__init__(" ".join(str(message).split()))
        if isinstance(message, Message):
            self.reader = message


class ConfigError(NewsletterError):
    """A config file, environment variable or flag has a bad value."""


class SourceError(NewsletterError):
    """An article source (file, directory, URL) cannot be read or parsed."""

    def __init__(self, source: str, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class SelectionError(NewsletterError):
    """Selection left nothing to compose, or a selection flag is malformed."""


class RenderError(NewsletterError):
    """A template is missing or fails to render."""


class StoreError(NewsletterError):
    """The database cannot be reached, is read-only, or refused a change."""


class SchemaOutdated(StoreError):
    """The database schema is older than the code: run ``newsletter db upgrade``."""


class NotFound(NewsletterError):
    """A named thing (list, subscriber, campaign, digest) does not exist."""


class InvalidInput(NewsletterError):
    """A value given by the user is malformed (address, header, CSV, token...)."""


class InvalidToken(InvalidInput):
    """A signed token is forged, truncated, expired or meant for something else."""

    reason: str  # "forged" | "expired" | "malformed", set where the token is checked (store/tokens.py)


class StateError(NewsletterError):
    """An operation is not allowed in the current state (e.g. sending a finished campaign)."""


class DispatchError(NewsletterError):
    """Sending cannot proceed: SMTP unreachable, login refused, campaign locked..."""


class ScheduleError(NewsletterError):
    """A schedule (cron expression, time zone, time) is invalid."""


class WebhookRejected(InvalidInput):
    """A provider's webhook request is unsigned, badly signed, stale, replayed or not for us;
    ``status`` is the HTTP answer (401, 403, 404, 409, 400) and nothing was changed."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


class MailboxError(NewsletterError):
    """A bounce or unsubscribe mailbox cannot be opened, logged into or read (named without its password)."""
