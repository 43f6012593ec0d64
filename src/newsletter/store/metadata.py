"""The one MetaData holding every table: importing this module imports every model module.

Alembic's env.py and the migration test use it, so a model module missing here is a
model whose schema nobody checks. Engineers add one import line per model module.
"""

from sqlmodel import SQLModel

from . import models  # noqa: F401  (subscribers, lists, subscriptions, suppressions)
from . import campaign_models  # noqa: F401  (campaigns, campaign_lists, campaign_images, deliveries)
from . import digest_models  # noqa: F401  (digests, digest_runs, digest_sent_articles)
from . import bounce_models  # noqa: F401  (bounce_events)
from . import mailbox_models  # noqa: F401  (mailbox_messages)
from . import segment_models  # noqa: F401  (segments)
from . import engagement_models  # noqa: F401  (tracked_links, engagement_events)
from . import outbound_models  # noqa: F401  (webhook_deliveries, event_cursors)
from . import preference_models  # noqa: F401  (preference_changes)
from . import welcome_models  # noqa: F401  (welcome_sends)
from . import ab_models  # noqa: F401  (ab_tests)
from . import worker_models  # noqa: F401  (worker_heartbeats, campaign_stalls)

metadata = SQLModel.metadata
