"""Pre-flight checks of a send, before anything is connected or written: may this campaign be
sent now, through which transports, and would its links work for readers.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..config import Config
from ..errors import ConfigError, StateError
from ..store.campaign_models import Campaign
from ..store.lifecycle import CampaignStatus, PauseKind
from ..store.models import utcnow
from .ratelimit import RateLimiter
from .transports import OutboxTransport


def refuse_user_pause(cid: int, status: str | None, reason: str | None, kind: str | None) -> None:
    """A campaign someone paused stays paused until they resume it; one the sender auto-paused
    (servers failing, warm-up quota) may be continued by ``send`` (the summary says so)."""
    if status == CampaignStatus.PAUSED and not PauseKind(kind or PauseKind.USER).automatic:
        raise StateError(f"campaign {cid} is paused ({reason or 'paused by the user'}): "
                         f"run `newsletter campaigns resume {cid}` first")


def check_sendable(campaign: Campaign, *, resend_ambiguous: bool = False) -> None:
    """StateError unless ``send`` may work on the campaign now: not cancelled, not finished (unless
    resending ambiguous copies), not paused by a person or the bounce guard, not scheduled later."""
    cid = campaign.id
    assert cid is not None
    if campaign.status == CampaignStatus.CANCELLED:
        raise StateError(f"campaign {cid} was cancelled; nothing more is sent")
    if campaign.status == CampaignStatus.FINISHED and not resend_ambiguous:
        raise StateError(f"campaign {cid} is already finished (see `newsletter campaigns show {cid}`)")
    refuse_user_pause(cid, campaign.status, campaign.status_reason, campaign.pause_kind)
    if (campaign.status == CampaignStatus.SCHEDULED and campaign.scheduled_at is not None
            and campaign.scheduled_at > utcnow()):
        raise StateError(f"campaign {cid} is scheduled for {campaign.scheduled_at.isoformat()}: a `newsletter worker` "
                         f"sends it then; to send it now, run `newsletter send {cid} --now`")


def check_concurrency(concurrency: int | None, config: Config) -> int:
    """The number of lanes of a send (the option, else the config), ConfigError outside 1 to 256."""
    n = int(concurrency or config.concurrency or 1)
    if n < 1 or n > 256:
        raise ConfigError(f"concurrency {n}: expected 1 to 256")
    return n


def make_transports(config: Config, *, smtp: str | None = None, tls: str | None = None, outbox: str | None = None,
                    limiter_factory: Callable[..., RateLimiter] | None = None) -> list:
    """The transports of a send: ``--outbox DIR``, ``--smtp URL|NAME|a,b``, the configured default,
    or — when no SMTP server is configured at all — the outbox folder (nothing reaches real people).
    ``limiter_factory`` builds each SMTP server's rate limiter (see ``SMTPTransport``)."""
    from .smtp import SMTPTransport, settings_for

    if outbox is not None and smtp is not None:
        raise ConfigError("--outbox and --smtp exclude each other")
    if outbox is not None:
        return [OutboxTransport(outbox)]
    servers = settings_for(config, smtp, tls=tls, timeout=config.smtp_timeout)
    if not servers:
        return [OutboxTransport(config.outbox)]
    return [SMTPTransport(s, limiter_factory=limiter_factory) for s in servers]


def local_links_problem(base_url: str) -> str | None:
    """Why readers could not follow links under ``base_url`` (not https, or a loopback host), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(base_url or "")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "points at this machine"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
        return "points at this machine"
    if parts.scheme != "https":
        return "is not https"
    return None


def check_public_links(config: Config, transports: Sequence, allow_local_links: bool | None = None,
                       links: str = "unsubscribe links") -> None:
    """Refuse an SMTP send whose unsubscribe and web-version links (or, ``links``, confirmation
    links) would be dead for readers.

    Outbox sends (files for a local look) pass; ``allow_local_links`` (default: the config key)
    lets a local test through."""
    from .smtp import SMTPTransport

    allow = config.allow_local_links if allow_local_links is None else allow_local_links
    if allow or not any(isinstance(t, SMTPTransport) for t in transports):
        return
    if local_links_problem(config.base_url):
        raise ConfigError(
            f"base_url is {config.base_url}: {links} would not work for readers; set NEWSLETTER_BASE_URL "
            "to your public https address, or pass --allow-local-links (config allow_local_links) for a local test")

