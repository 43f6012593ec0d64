"""The per-campaign message factory: the skeleton every copy of a campaign is built from, with its
unsubscribe tokens, DKIM signer, envelope (VERP) and Feedback-ID settings.
"""

from __future__ import annotations

from email.utils import parseaddr

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import ConfigError
from ..store import queries as q
from ..store.db import transaction
from .campaigns import campaign_images, campaign_lists
from .personalize import CampaignContent, MessageFactory, check_header_value


def _content(engine: Engine, campaign) -> CampaignContent:
    """What every copy of ``campaign`` (as given: a test send changes its subject) is built from."""
    return CampaignContent(
        campaign_id=campaign.id, subject=campaign.subject, from_address=campaign.from_address, html=campaign.html,
        text=campaign.text, reply_to=campaign.reply_to, headers=campaign.headers or {},
        images=campaign_images(engine, campaign.id), lists=campaign_lists(engine, campaign.id),
    )


def message_factory(engine: Engine, campaign, config: Config) -> MessageFactory:
    """The per-campaign skeleton builder (also used for previews and test sends); for an A/B test,
    one per variant behind one ``build`` (``abtest.variant_factory``)."""
    from ..store import preferences
    from ..store.secret import secret_key
    from ..store.tokens import unsubscribe_token, view_key, view_token
    from .dkim import make_signer

    secret = secret_key(config)
    bounce = config.bounce_address
    if bounce:
        check_header_value("bounce_address", bounce)
        bounce = parseaddr(bounce)[1] or None
    copy_address, verp, feedback = _feedback_headers(engine, campaign, config, secret, bounce)
    from ..engagement.campaign import tracked_content

    views = view_key(secret)  # derived once: each copy's view link costs one HMAC

    def build(variant) -> MessageFactory:
        """The skeleton of ``variant`` (the campaign itself, or a copy of it with an A/B subject)."""
        content, tracker = tracked_content(engine, variant, config, secret, _content(engine, variant))
        return MessageFactory(
            content, base_url=config.base_url, tracker=tracker,
            unsubscribe_token=lambda sid, lid: unsubscribe_token(secret, sid, lid),
            preferences_token=preferences.token_maker(engine, secret),
            newsletter_name=config.newsletter_name, instance_key=secret,
            precedence_bulk=(config.precedence or "").strip().lower() == "bulk",
            unsubscribe_mailto=config.unsubscribe_mailto, envelope_from=bounce, signer=make_signer(config),
            copy_address=copy_address, verp=verp, feedback_id=feedback,
            view_token=lambda sid: view_token(views, campaign.id, sid),
        )

    from .abtest import variant_factory  # an A/B test: one skeleton per subject, chosen per copy

    return variant_factory(engine, campaign, build)


def _feedback_headers(engine: Engine, campaign, config: Config, secret: bytes, bounce: str | None):
    """(copy_address, verp, feedback_id) for the message factory: each copy names itself with a
    signed ``bounce_address`` + token (the From address when no bounce address is set), used as
    its envelope sender when ``verp`` is on and a bounce address is configured (a plain From
    mailbox may not accept ``+`` addresses); Feedback-ID is campaign:list:newsletter:domain.

    The token grows with the ids: a bounce address too long to carry it for today's highest
    subscriber id is refused up front; a copy for a much later id that would not fit goes out
    with the plain envelope (``copy_address`` returns None) rather than fail."""
    from ..feedback.verp import feedback_id, verp_address

    base = bounce or parseaddr(campaign.from_address)[1]
    verp = bool(config.verp and bounce)
    with transaction(engine) as conn:
        top = conn.execute(select(func.max(q.subscribers.c.id))).scalar() or 1
    try:
        verp_address(base, secret, campaign.id, top)
    except ValueError as e:
        if verp:
            raise ConfigError(f"bounce_address: {e} (shorten it, or set verp = false)") from None
        copy_address = None
    else:
        def copy_address(sid: int) -> str | None:
            try:
                return verp_address(base, secret, campaign.id, sid)
            except ValueError:
                return None
    domain = parseaddr(campaign.from_address)[1].rpartition("@")[2]
    return copy_address, verp, lambda slug: feedback_id(campaign.id, slug, domain)

