"""A reader's own web version of a campaign: the copy the "view in browser" link of their email
opens (``{base_url}/view/TOKEN``), with their merge tags filled as in the email.

The token (store/tokens.py, kind "view") names the campaign and the reader and never expires; it
is the only key. A forged token, a campaign that is gone or a reader who was erased is NotFound.
It works whether or not the campaign is in the public archive (dispatch/archive.py): readers of
an unpublished campaign keep their web version. Subscriber 0 (a test send to an address that is
no reader) opens the anonymous copy, as the archive would show it.
The page carries no tracking: the stored campaign HTML has no tracking tags (they are added
per send), and any left are dropped. The public archive keeps the anonymous copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import InvalidToken, NotFound
from ..i18n import N_
from ..store import queries as q
from ..store.db import transaction
from .personalize import Recipient, render_preview

_TRACKING = re.compile(r"\*\|(?:OPEN|CLICK:\d+)\|\*", re.IGNORECASE)  # never in a stored campaign; dropped if ever
_GONE = N_("this web version does not exist (the link may have been cut short, or the reader has left)")


@dataclass
class ReaderCopy:
    """One reader's copy of a campaign, ready to show."""

    campaign_id: int
    subject: str
    html: str


def reader_copy(engine: Engine, config: Config, token: str, *, page_url: str) -> ReaderCopy:
    """The copy ``token`` opens, merge tags filled for its reader (links signed for them: unsubscribe,
    preferences; the web version link is ``page_url``). NotFound for anything that is not a genuine,
    current token."""
    from ..store.secret import secret_key
    from ..store.tokens import preferences_token, unsubscribe_token, verify_view_token
    from .campaigns import campaign_lists, get_campaign

    secret = secret_key(config)
    try:
        cid, sid = verify_view_token(secret, token)
    except InvalidToken:
        raise NotFound(_GONE) from None
    if sid == 0:
        return _anonymous_copy(engine, cid, token, page_url)
    subs = q.subscribers
    with transaction(engine) as conn:
        reader = conn.execute(select(subs.c.email, subs.c.name, subs.c.attributes, subs.c.pref_key_version)
                              .where(subs.c.id == sid)).first()
        lid = conn.execute(select(q.deliveries.c.list_id).where(
            q.deliveries.c.campaign_id == cid, q.deliveries.c.subscriber_id == sid)).scalar()
    if reader is None:
        raise NotFound(_GONE)
    try:
        campaign = get_campaign(engine, cid)
    except NotFound:
        raise NotFound(_GONE) from None
    if lid is None:  # a test send: the campaign's first list
        lists = campaign_lists(engine, cid)
        lid = min(lists) if lists else 0
    base = config.base_url.rstrip("/")
    r = Recipient(sid, lid, reader.email, reader.name or "", reader.attributes or {})
    html = render_preview(
        campaign.html, r, html=True, web_version_url=page_url,
        unsubscribe_url=f"{base}/unsubscribe/{unsubscribe_token(secret, sid, lid)}",
        preferences_url=f"{base}/preferences/{preferences_token(secret, sid, reader.pref_key_version or 0)}",
    )
    html = _TRACKING.sub("", html).replace('src="cid:', f'src="/view/{token}/cid/')
    return ReaderCopy(cid, campaign.subject, html)


def _anonymous_copy(engine: Engine, cid: int, token: str, page_url: str) -> ReaderCopy:
    """A test send's web version: nobody's merge tags, links pointing back at the page itself."""
    from .campaigns import get_campaign

    try:
        campaign = get_campaign(engine, cid)
    except NotFound:
        raise NotFound(_GONE) from None
    html = render_preview(campaign.html, Recipient(0, 0, "you", ""), html=True, unsubscribe_url=page_url,
                          web_version_url=page_url)
    html = _TRACKING.sub("", html).replace('src="cid:', f'src="/view/{token}/cid/')
    return ReaderCopy(cid, campaign.subject, html)


def reader_image(engine: Engine, config: Config, token: str, cid: str) -> tuple[str, bytes]:
    """(content type, bytes) of an inline image of the copy ``token`` opens; NotFound otherwise."""
    from ..store.secret import secret_key
    from ..store.tokens import verify_view_token
    from .campaigns import campaign_images

    try:
        campaign_id, _ = verify_view_token(secret_key(config), token)
    except InvalidToken:
        raise NotFound(_GONE) from None
    for image in campaign_images(engine, campaign_id):
        if image.cid == cid:
            return image.content_type, image.data
    raise NotFound(f"this issue has no image {cid!r}")

