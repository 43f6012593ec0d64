"""Every statement that moves a campaign or a ledger row, in one package read as a whole (like
listmonk's queries.sql), with the reads the senders decide on.

Each function takes an open SQLAlchemy ``Connection`` (the caller owns the transaction) and runs
one statement, whose shape and reason its docstring gives. The ledger (``deliveries``) has one
row per (campaign, subscriber); its states and their allowed moves are ``store.lifecycle``'s, and
each moving statement names its move through :func:`store.lifecycle.delivery_sources`, so a
statement cannot move a row along a path the lifecycle does not have.

One module a topic, re-exported here (callers write ``queries.claim_batch``): ``campaigns``
(reads, moves, the SQLite campaign lock), ``ledger`` (create, claim, skip, send and record,
release and recover, reads), ``abtest`` (held rows and variants), ``localtime`` (the bucket
plan), ``digests`` (the scheduler's claim); ``common`` holds the tables. ``quiet`` (quiet hours)
is imported by its one caller as ``queries.quiet``.
"""

from .common import *  # noqa: F401,F403
from .common import D, LEDGER_CHUNK, UNWANTED_REPLY, CANCELLED_REPLY  # noqa: F401
from .campaigns import *  # noqa: F401,F403
from .ledger import *  # noqa: F401,F403
from .abtest import *  # noqa: F401,F403
from .digests import *  # noqa: F401,F403
from .localtime import *  # noqa: F401,F403
