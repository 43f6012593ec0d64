"""Hard or soft: one set of rules for an SMTP reply, whether read live or quoted in a bounce.

The enhanced status code (RFC 3463) decides first: ``4.x.x`` is transient (soft) and ``5.x.x``
permanent (hard), except for the codes that say something about the message or our reputation
rather than the address — a full mailbox (5.2.2, a judgement call: most providers free space or
lift a quota within days, so it counts toward the soft threshold rather than removing the reader),
a message too big, content or policy rejections (5.6.x, 5.7.x) — which are soft unless their
wording names a missing mailbox. Without an enhanced code, the basic reply code and the wording
decide. Nothing here raises.
"""

from __future__ import annotations

import re

from .model import BounceKind

ENHANCED_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
REPLY_RE = re.compile(r"(?<![\d.#-])([245])(\d\d)(?=[\s\-]|$)")

# Wording that says the address itself does not work.
_NO_MAILBOX = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address|person|account)|"
    r"(mailbox|user|account|address|recipient)( name)? (is )?(unavailable|not found|does not exist|doesn't exist|"
    r"unknown|invalid|disabled|inactive|deactivated|not recognized|has been disabled|is no longer)|"
    r"does not exist|doesn't exist|not a valid (mailbox|user|recipient|address)|invalid (recipient|mailbox|address|user)|"
    r"unknown (recipient|local part|mailbox|address)|recipient (address )?rejected|bad destination mailbox|"
    r"not listed in|no mailbox here|unrouteable address|unroutable address|host or domain name not found|"
    r"domain (name )?not found|no such domain|name or service not known|mailbox not available|address rejected|"
    r"not our customer|account (has been )?(closed|expired|suspended)|this account is|no longer (active|valid|in use)|"
    r"addressee unknown|recipient not found|undeliverable address|unknown or illegal (user|alias)|"
    r"unrouteable|illegal user|not a known user|is not a valid|no valid recipients|dd this user doesn't have",
    re.IGNORECASE,
)
# Wording that says the mailbox is full or over quota.
_FULL = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|exceed(ed|s)? (the |its |his |her )?(storage |mailbox )?quota|"
                   r"insufficient (disk )?(space|storage)|mailbox size limit|out of (disk )?space|full mailbox|"
                   r"user has exhausted|storage (quota|limit)|(not|n't) (have )?enough (storage |disk )?space|"
                   r"storage space|diskspace|disk space", re.IGNORECASE)
# Wording that says our message or our reputation was refused, not the address.
_BLOCKED = re.compile(r"spam|blocked|block list|blocklist|blacklist|black list|reputation|rbl|spamhaus|policy|"
                      r"content rejected|message rejected|not accepted|dmarc|spf|dkim|too many|rate limit|"
                      r"throttl|greylist|graylist|try again later|temporar|virus|suspicious|denied", re.IGNORECASE)
_TRANSIENT = re.compile(r"temporar|try again|will (continue|retry|keep) (trying|to try)|not yet been delivered|"
                        r"delayed|retry|deferred|timed? ?out|connection (refused|timed out|lost)|could not connect|"
                        r"unable to connect|isn't responding|not responding|queue|temp_failure|connection dropped|"
                        r"dropped by remote host|could not initiate|no route to host|network is unreachable", re.IGNORECASE)
_PERMANENT = re.compile(r"permanent(ly)?|fatal|i've given up|giving up|failed permanently|will not retry|"
                        r"not going to try again|undeliverable", re.IGNORECASE)


def parse_enhanced(text: str | None) -> str | None:
    """The first RFC 3463 code (``5.1.1``) in ``text``, else None."""
    if not text:
        return None
    m = ENHANCED_RE.search(text[:4000])
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" if m else None


def parse_reply_code(text: str | None) -> int | None:
    """The first SMTP reply code (``550``) in ``text``, else None."""
    if not text:
        return None
    m = REPLY_RE.search(text[:4000])
    return int(m.group(1) + m.group(2)) if m else None


def classify_smtp_reply(code: int | None, enhanced: str | None, text: str) -> BounceKind:
    """HARD, SOFT or UNKNOWN for an SMTP reply (``550``, ``5.1.1``, ``"user unknown"``).

    Used for the replies our own sends receive and for diagnostic codes quoted in bounces.
    A 2xx reply is DELIVERED. Text is capped; nothing raises.
    """
    text = (text or "")[:4000]
    enhanced = parse_enhanced(enhanced) if enhanced else None
    klass = enhanced[0] if enhanced else None
    if klass is None and code is not None:
        try:
            klass = str(int(code))[0]
        except (TypeError, ValueError):
            klass = None
    if klass == "2":
        return BounceKind.DELIVERED
    if klass == "4":
        return BounceKind.SOFT
    if klass == "5":
        return _permanent(enhanced, text)
    # No code at all: the wording alone.
    if _FULL.search(text):
        return BounceKind.SOFT
    if _NO_MAILBOX.search(text):
        return BounceKind.HARD
    if _TRANSIENT.search(text):
        return BounceKind.SOFT
    if _PERMANENT.search(text):
        return BounceKind.HARD
    return BounceKind.UNKNOWN


def _permanent(enhanced: str | None, text: str) -> BounceKind:
    """A 5xx reply: hard unless it is about space, size, content or policy rather than the address."""
    no_mailbox = bool(_NO_MAILBOX.search(text))
    if enhanced:
        _, subject, detail = enhanced.split(".")
        if subject == "1":  # addressing: bad mailbox, bad domain, bad syntax, moved, null MX
            return BounceKind.HARD
        if subject == "2":
            if detail in ("2", "3", "4"):  # mailbox full, message too big, list expansion
                return BounceKind.SOFT
            return BounceKind.HARD  # 5.2.0, 5.2.1 disabled mailbox
        if subject in ("3", "4", "6", "7"):  # system, network/routing, content, security/policy
            blocked = bool(_BLOCKED.search(text))
            if no_mailbox and (subject == "4" or not blocked):
                return BounceKind.HARD  # e.g. 5.4.1 "recipient address rejected", 5.7.1 "user unknown"
            if subject == "4" and detail in ("1", "4") and not blocked:
                return BounceKind.HARD  # 5.4.4 unroutable: the domain has no mail host
            return BounceKind.SOFT
        # 5.0.0 and 5.5.x: the wording decides, permanent by default.
    if _FULL.search(text):
        return BounceKind.SOFT
    if no_mailbox:
        return BounceKind.HARD
    if _BLOCKED.search(text):
        return BounceKind.SOFT
    return BounceKind.HARD


def classify_text(text: str) -> tuple[BounceKind, str | None]:
    """The kind and enhanced code read from a free-text failure explanation (no structured fields)."""
    enhanced = parse_enhanced(text)
    code = parse_reply_code(text)
    kind = classify_smtp_reply(code, enhanced, text)
    return kind, enhanced
