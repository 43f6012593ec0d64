"""Tracking for one campaign: what it tracks (chosen at creation, kept in its meta) and the
rewritten content and per-reader URLs its sends use."""

from __future__ import annotations

import dataclasses

from ..config import Config
from ..errors import ConfigError
from ..store.db import transaction
from . import events as ev
from .links import DEFAULT_NOTE, Track, Tracker, parse_track, rewrite


def default_tracking(config: Config, list_slugs: list[str]) -> frozenset[Track]:
    """The tracking a new campaign gets when none is asked for: ``track_lists[slug]`` when every
    target list names the same choice there, else ``track`` (off unless configured)."""
    per_list = {parse_track(config.track_lists[s], where=f"track_lists {s}") for s in list_slugs
                if s in config.track_lists}
    if len(per_list) == 1 and len(list_slugs) == sum(1 for s in list_slugs if s in config.track_lists):
        return per_list.pop()
    return parse_track(config.track, where="track")


def tracking_for_new_campaign(config: Config, list_slugs: list[str], requested) -> list[str]:
    """What a new campaign records in ``meta["track"]`` (sorted names; [] = off). Tracking needs
    links readers can follow, like sending: refused for a non-https or loopback ``base_url``
    unless ``allow_local_links`` is on."""
    from ..dispatch.preflight import local_links_problem

    track = parse_track(requested) if requested is not None else default_tracking(config, list_slugs)
    if track and not config.allow_local_links:
        problem = local_links_problem(config.base_url)
        if problem:
            raise ConfigError(f"base_url {config.base_url} {problem}: tracking links would not work for readers; "
                              "set NEWSLETTER_BASE_URL to your public https address or create the campaign without tracking")
    return sorted(t.value for t in track)


def tracking_of(campaign) -> frozenset[Track]:
    """What a stored campaign tracks."""
    return parse_track(list((campaign.meta or {}).get("track") or []), where=f"campaign {campaign.id} track")


def privacy_url(config: Config) -> str:
    """Where the footer's "How and why" link goes: ``tracking_privacy_url`` or this app's page."""
    return config.tracking_privacy_url or config.base_url.rstrip("/") + "/privacy"


def tracked_content(engine, campaign, config: Config, secret: bytes, content):
    """(content, tracker) for a campaign's sends: unchanged and None when it tracks nothing;
    otherwise the HTML rewritten (links stored, numbered as any earlier part of the send did)."""
    track = tracking_of(campaign)
    if not track:
        return content, None
    rw = rewrite(content.html, base_url=config.base_url, track=track, privacy_url=privacy_url(config),
                 note=config.tracking_note or DEFAULT_NOTE)
    with transaction(engine) as conn:
        ev.store_links(conn, campaign.id, rw.links)
    return dataclasses.replace(content, html=rw.html), Tracker(campaign.id, config.base_url, secret, rw.links, track)
