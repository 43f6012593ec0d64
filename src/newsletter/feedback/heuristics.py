"""Reports without a standard structure: free-text bounces and RFC 3834 auto-replies.

Exim, qmail, Postfix without DSN, Sendmail, Exchange, Domino, Yahoo and others explain a failure
in prose. We read the human-readable part up to where the returned original starts, take the
addresses it names (preferring those in the places MTAs put the failed recipient: alone on a
line, after ``RCPT TO:``, ``<addr>:`` or ``<addr>...``, ``X-Failed-Recipients``), skip the
report's own parties, and classify the text that follows each address. Every loop is bounded by
the capped text; nothing here raises on odd input.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from .classify import classify_text
from .dsn import Finding, _short, header_text
from .model import BounceKind

MAX_TEXT = 64 * 1024
MAX_RECIPIENTS = 100
CONTEXT_CHARS = 700

ADDRESS_RE = re.compile(r"[\w.%+\-=/!#$&*?^`{|}~]{1,64}@\w[\w.\-]{0,253}")  # \w: SMTPUTF8 addresses too
_TLD_RE = re.compile(r"\.(?:[^\W\d_]{2,24}|xn--[a-z0-9\-]{1,59})$")
_ROLE_LOCALS = {"mailer-daemon", "postmaster", "root", "daemon", "mail", "noreply", "no-reply", "mailerdaemon",
                "mail-daemon", "bounce", "bounces", "nobody", "abuse", "hostmaster", "webmaster", "mdaemon"}

# Where the returned original (or its headers) starts: everything after is not the explanation.
_ORIGINAL_START = re.compile(
    r"^[ \t]*[-=_*]{2,}[ \t]*(?:this is a copy of|below this line is a copy|original message|the original message|"
    r"returned message|unsent message|undelivered message|message removed|text of (?:the )?message|headers of the|"
    r"rfc822|copy of (?:the |your )?message|start of returned|your original message|message headers follow|"
    r"the body of the message|included message|beginning of message|message header follows)"
    r"|^[ \t]*(?:below this line is a copy|original message follows|original message as received|"
    r"this is a copy of the message|the (?:first \d+ lines|headers) of your (?:original )?message follow|"
    r"message headers follow|--- ?original message ?---)",
    re.IGNORECASE | re.MULTILINE,
)
_STRONG_PATTERNS = [
    re.compile(r"^[ \t]*[<\"']?(%s)[>\"']?:?[ \t]*$" % ADDRESS_RE.pattern, re.MULTILINE),  # alone on a line
    re.compile(r"RCPT TO:?[ \t]*\n?[ \t]*<(%s)>" % ADDRESS_RE.pattern, re.IGNORECASE),
    re.compile(r"<(%s)>(?:\.\.\.|:|,? *\(| *\r?\n)" % ADDRESS_RE.pattern),
    re.compile(r"\bSMTP=(%s)" % ADDRESS_RE.pattern, re.IGNORECASE),
    re.compile(r"(?:recipient|address|user|mailbox|addressee)s?(?:\(es\))?(?:\(s\))?[^\n@]{0,60}?[:\s]<?(%s)>?"
               % ADDRESS_RE.pattern, re.IGNORECASE),
    re.compile(r"(%s)(?:\.\.\.|:)[ \t]*(?:user unknown|unknown user|no such|mailbox|host|said|remote|[45]\d\d)"
               % ADDRESS_RE.pattern, re.IGNORECASE),
]

_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail ?delivery|mail administrator|mail system|"
                            r"delivery subsystem|mdaemon|notification", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|report|problem|notification)|"
    r"returned mail|failure notice|mail delivery failed|non[- ]?delivery|could not be delivered|"
    r"delivery has failed|not delivered|unable to deliver|warning: could not send|message status|"
    r"failed delivery|failure delivery|nondeliverable|rejected|returned to sender|delivery notification|"
    r"mail system error|bounced|unknown user|user unknown|delayed|delivery (warning|delay)", re.IGNORECASE)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|wasn't able to deliver|was not able to deliver|unable to deliver|"
    r"delivery (?:to the following recipients? )?(?:has )?failed|permanent(?:ly)? (?:error|fatal|failed)|"
    r"the following address(?:\(es\)|es)? failed|did not reach the following|user unknown|unknown user|"
    r"no such (?:user|mailbox)|undeliverable|failed permanently|not delivered|delivery failure|"
    r"could not deliver|cannot be delivered|returned to the sender|rejected your message|has not yet been delivered|"
    r"delivery to the following|mail delivery failed|message was not delivered|delivery problem|"
    r"an error occurred while trying to deliver|qmail-send program|transcript of session|fatal error|"
    r"delivery of email to this address|has been postponed|delivery attempts will continue",
    re.IGNORECASE)
# A delay notice, not a final failure: read in the subject, or in the explanation's wording.
_WARNING_SUBJECT = re.compile(r"warning|delayed|delay|postponed|not yet delivered", re.IGNORECASE)
_WARNING = re.compile(r"has not yet been delivered|not been delivered yet|will (?:continue|keep) (?:trying|to try)|"
                      r"will be retried|still trying|no action is required|still being retried|has been postponed|"
                      r"delivery attempts will continue|will continue to try|will retry|advisory", re.IGNORECASE)

_SMTP_CODE = re.compile(r"(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?![\d.])|\b[45][05][0-9][ -][A-Za-z]|smtp error code [45]\d\d",
                        re.IGNORECASE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:re:\s*)?(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|auto:|"
    r"abwesenheitsnotiz|abwesend|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|"
    r"resposta autom[áa]tica|automatisch antwoord|automatyczna odpowied|(?:on )?vacation|away from|"
    r"i am (?:currently )?(?:out|away)|i'm (?:currently )?(?:out|away)|autosvar|automaattinen vastaus)",
    re.IGNORECASE)


def decoded_subject(msg: Message) -> str:
    """The Subject with RFC 2047 encoded words decoded, on one line ('' if unreadable)."""
    raw = header_text(msg.get("subject", ""))
    try:
        text = str(make_header(decode_header(raw)))
    except Exception:
        text = raw
    return " ".join(text.split())[:500]


def looks_like_bounce(msg: Message, text: str) -> bool:
    """True when headers or the explanation say delivery failed (or is delayed)."""
    if msg.get("x-failed-recipients"):
        return True
    sender = f"{msg.get('from', '')} {msg.get('return-path', '')}"
    subject = decoded_subject(msg)
    body_says = bool(_BOUNCE_BODY.search(text[:MAX_TEXT]))
    by_sender = bool(_BOUNCE_SENDER.search(sender)) or str(msg.get("return-path", "")).strip() == "<>"
    by_subject = bool(_BOUNCE_SUBJECT.search(subject))
    if body_says and (by_sender or by_subject) or (by_sender and by_subject):
        return True
    # A bounce subject over text that quotes an SMTP reply ("[SMTP Error Code 550]", "#5.1.1").
    return by_subject and bool(_SMTP_CODE.search(text[:MAX_TEXT]))


def auto_reply_reason(msg: Message) -> str | None:
    """Why this message is an RFC 3834 auto-reply (or an out-of-office by its subject), else None."""
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto.split(';')[0][:40]}"
    for header in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation"):
        if msg.get(header) is not None:
            return f"{header} header"
    precedence = str(msg.get("precedence", "")).strip().lower()
    if precedence == "auto_reply":
        return "Precedence: auto_reply"
    if str(msg.get("x-auto-response-suppress", "")) and str(msg.get("x-ms-exchange-inbox-rules-loop", "")):
        return "Exchange inbox rule reply"
    subject = decoded_subject(msg)
    if _AUTO_SUBJECT.search(subject):
        return f"subject {_short(subject, 60)!r}"
    return None


def explanation(text: str) -> str:
    """The part of a bounce's text before the returned original begins."""
    text = text[:MAX_TEXT]
    m = _ORIGINAL_START.search(text)
    # A marker in the first lines is a heading ("Your original message ..."), not the cut.
    if m and m.start() > 40:
        return text[: m.start()]
    return text


def _clean(addr: str) -> str | None:
    addr = addr.strip().strip(".-")
    local, _, domain = addr.rpartition("@")
    if local.lower().startswith("smtp="):
        local = local[5:]
    local = local.lstrip("<=\"'")
    domain = domain.rstrip(".-")
    if not local or not _TLD_RE.search(domain) or ".." in domain or ".." in local or local[0] == "." or local[-1] == ".":
        return None
    return f"{local}@{domain}"


def party_addresses(*messages: Message | None) -> set[str]:
    """Lowercased addresses of the report's own parties (sender, list, reporting daemon)."""
    out: set[str] = set()
    for msg in messages:
        if msg is None:
            continue
        values = [header_text(msg.get(h, "")) for h in ("from", "sender", "reply-to", "return-path", "errors-to",
                                                  "x-original-sender", "list-post", "message-id")]
        for _, addr in getaddresses(values):
            if "@" in addr:
                out.add(addr.strip("<>").lower())
    return out


def find_recipients(text: str, exclude: set[str]) -> list[tuple[str, int]]:
    """Failed recipients named in an explanation, with their position; strong placements first."""
    def keep(addr: str) -> str | None:
        clean = _clean(addr)
        if clean is None:
            return None
        low = clean.lower()
        if low in exclude or low.split("@")[0] in _ROLE_LOCALS:
            return None
        return clean

    found: dict[str, tuple[str, int]] = {}
    for pattern in _STRONG_PATTERNS:
        for m in pattern.finditer(text):
            addr = keep(m.group(1))
            if addr and addr.lower() not in found:
                found[addr.lower()] = (addr, m.start(1))
            if len(found) >= MAX_RECIPIENTS:
                break
    if not found:
        for m in ADDRESS_RE.finditer(text):
            addr = keep(m.group(0))
            if addr and addr.lower() not in found:
                found[addr.lower()] = (addr, m.start())
            if len(found) >= MAX_RECIPIENTS:
                break
    return sorted(found.values(), key=lambda item: item[1])


def read_nonstandard(msg: Message, text: str, exclude: set[str]) -> list[Finding]:
    """Findings for a prose bounce: one per named recipient (or one without a recipient)."""
    part = explanation(text)
    subject = decoded_subject(msg)
    recipients: list[tuple[str, int]] = []
    failed_header = str(msg.get("x-failed-recipients", ""))
    for _, addr in getaddresses([failed_header])[:MAX_RECIPIENTS]:
        clean = _clean(addr) if "@" in addr else None
        if clean:
            pos = part.lower().find(clean.lower())
            recipients.append((clean, max(pos, 0)))
    if not recipients:
        recipients = find_recipients(part, exclude)
    warning = bool(_WARNING_SUBJECT.search(subject)) or bool(_WARNING.search(part[:3000]))
    overall_kind, overall_status = classify_text(part)
    findings = []
    positions = [p for _, p in recipients] + [len(part)]
    slots: list[tuple[str | None, int]] = list(recipients) if recipients else [(None, 0)]
    for i, (recipient, pos) in enumerate(slots):
        end = min(positions[i + 1] if recipients else len(part), pos + CONTEXT_CHARS)
        if recipient is not None and end <= pos + len(recipient):
            end = pos + CONTEXT_CHARS
        context = part[pos:end]
        kind, status = classify_text(context) if recipients else (BounceKind.UNKNOWN, None)
        if kind in (BounceKind.UNKNOWN, BounceKind.DELIVERED):
            # Nothing in this recipient's lines: a delay notice is soft, else what the whole text says.
            kind, status = (BounceKind.SOFT, status) if warning else (overall_kind, status or overall_status)
        if kind in (BounceKind.UNKNOWN, BounceKind.DELIVERED):
            kind = BounceKind.SOFT if warning else BounceKind.HARD  # a final failure notice without code or wording
        findings.append(Finding(kind, recipient, status, _reason(context if recipients else part, recipient)))
    return findings


def _reason(context: str, addr: str | None) -> str:
    lines = [ln.strip() for ln in context.splitlines() if ln.strip()]
    if addr:
        lines = [ln for ln in lines if ln.strip("<>:") != addr] or lines
    return _short(" ".join(lines[:4]), 200) or "non-standard bounce"
