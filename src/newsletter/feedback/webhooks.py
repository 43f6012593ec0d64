"""Provider webhooks: verify that a request really comes from the provider, then record its events.

Each provider proves its requests differently:

- Amazon SES through SNS: an RSA signature (SignatureVersion 1: SHA1, 2: SHA256) by the
  certificate at ``SigningCertURL``, which must be https on an ``sns.<region>.amazonaws.com``
  host; only the topics in ``webhook_ses_topics`` are accepted.
- SendGrid: ECDSA P-256 (SHA-256) over ``timestamp + body``, checked with the configured public key.
- Mailgun: HMAC-SHA256 of ``timestamp + token`` with the webhook signing key.
- Postmark: nothing signed: HTTP basic-auth credentials in the webhook URL, optionally an IP allow-list.

A request that is unsigned, badly signed, older (or further in the future) than
``webhook_max_age``, or a replay of one already accepted is refused with a
:class:`~newsletter.errors.WebhookRejected` before its events are read, and changes nothing.
Replays are caught by a bounded in-memory record of what was accepted within the freshness
window (a replay older than that is stale anyway) and, behind it, by the events table's unique
report id. No FastAPI here: ``web/webhooks.py`` is the HTTP shell.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError, WebhookRejected
from . import providers
from .record import RecordResult, record_bounces

log = logging.getLogger(__name__)

PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{1,40}\.amazonaws\.com(\.cn)?$")
_SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
MAX_CERT_BYTES = 64 * 1024
POSTMARK_REPLAY_TTL = 86400.0  # Postmark signs nothing: its event ids are remembered a day


def sns_cert_url_ok(url: str) -> bool:
    """True for an SNS signing-certificate URL: https on ``sns.<region>.amazonaws.com``, a .pem path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError):
        return False
    host = parts.hostname
    return (parts.scheme == "https" and host is not None and bool(_SNS_HOST.match(host))
            and port in (None, 443) and not parts.username and parts.path.endswith(".pem"))


def fetch_url(url: str, timeout: float = 10.0, max_bytes: int = MAX_CERT_BYTES) -> bytes:
    """GET ``url`` without following redirects, at most ``max_bytes``; OSError when it fails."""
    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "newsletter-webhooks"}), timeout=timeout) as r:
            data = r.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        raise OSError(f"HTTP {e.code}") from None
    if len(data) > max_bytes:
        raise OSError(f"more than {max_bytes} bytes")
    return data


class ReplayGuard:
    """The requests accepted recently (key → expiry), bounded: a key seen again before it
    expires is a replay. Thread-safe; the oldest entries go first when it is full."""

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, now: float, ttl: float) -> bool:
        """Record ``key`` until ``now + ttl``; False when it is already there (a replay)."""
        with self._lock:
            while self._seen:
                first, expiry = next(iter(self._seen.items()))
                if expiry > now:
                    break
                del self._seen[first]
            known = self._seen.get(key)
            if known is not None and known > now:
                return False
            self._seen[key] = now + ttl
            self._seen.move_to_end(key)
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
                log.warning("webhook replay record full (%d entries): dropping the oldest", self.max_entries)
            return True

    def release(self, key: str) -> None:
        """Forget ``key`` (its request failed on our side: the provider's retry must get through)."""
        with self._lock:
            self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class WebhookResult:
    """What one accepted request did."""

    provider: str
    events: int = 0  # feedback events read (bounces, complaints, deliveries)
    ignored: int = 0  # provider events that are not feedback (opens, clicks, deferrals, ...)
    recorded: RecordResult | None = None
    confirmed: bool = False  # an SNS subscription was confirmed
    note: str = ""

    def as_dict(self) -> dict:
        r = self.recorded
        return {"provider": self.provider, "events": self.events, "ignored": self.ignored, "confirmed": self.confirmed,
                "new": r.new if r else 0, "duplicates": r.duplicates if r else 0, "note": self.note}


@dataclass
class _Verified:
    replay_key: str
    ttl: float
    payload: Any
    sns_type: str | None = None


@dataclass
class WebhookReceiver:
    """Verifies and records provider webhooks for one configuration.

    ``fetch`` gets SNS signing certificates and SubscribeURLs; ``cert_url_ok`` decides which
    URLs it may fetch (:func:`sns_cert_url_ok`: only tests relax it, to serve a test
    certificate from 127.0.0.1); ``clock`` gives the time in seconds."""

    config: Config
    fetch: Callable[[str], bytes] | None = None
    cert_url_ok: Callable[[str], bool] = sns_cert_url_ok
    clock: Callable[[], float] = time.time
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    _certs: OrderedDict = field(default_factory=OrderedDict)
    _sendgrid_key: Any = None

    def receive(self, provider: str, engine, body: bytes, headers: Mapping[str, str], client_ip: str = "") -> WebhookResult:
        """Verify one request (``headers`` with lowercase names) and record its events; raises
        WebhookRejected for a request that must be refused, ConfigError when the provider's
        settings are unusable."""
        if provider not in PROVIDERS:
            raise WebhookRejected(f"webhook provider {provider!r} is unknown (known: {', '.join(PROVIDERS)})", 404)
        v: _Verified = getattr(self, f"_verify_{provider}")(body, headers, client_ip)
        if not self.replay.claim(v.replay_key, self.clock(), v.ttl):
            raise WebhookRejected(f"{provider} webhook: this request was already received (replay refused)", 409)
        try:
            return self._handle(provider, engine, v)
        except WebhookRejected:
            raise
        except BaseException:
            self.replay.release(v.replay_key)  # not the sender's fault: let its retry in
            raise

    def _handle(self, provider: str, engine, v: _Verified) -> WebhookResult:
        from ..store.secret import secret_key

        if v.sns_type == "SubscriptionConfirmation":
            return self._confirm(v.payload)
        if v.sns_type == "UnsubscribeConfirmation":
            log.warning("SNS topic %s unsubscribed this endpoint", v.payload.get("TopicArn"))
            return WebhookResult(provider, note="unsubscribe confirmation noted")
        secret = secret_key(self.config)
        bounces, ignored = getattr(providers, f"{provider}_events")(v.payload, secret)
        result = WebhookResult(provider, events=len(bounces), ignored=ignored)
        if bounces:
            bounces = with_recent_campaign(engine, bounces, self.clock())
            result.recorded = record_bounces(engine, bounces, config=self.config)
            if provider == "postmark" and result.recorded.new == 0:
                # Postmark's request carries no signed time: a replay after the in-memory record
                # is gone is still caught here (the event is stored once).
                raise WebhookRejected("postmark webhook: this event was already recorded (replay refused)", 409)
        return result

    # --- freshness -------------------------------------------------------------------------------

    def _fresh(self, provider: str, when: float | None) -> None:
        max_age = self.config.webhook_max_age
        if max_age < 1:
            raise ConfigError(f"webhook_max_age: {max_age} must be at least 1 second")
        if when is None:
            raise WebhookRejected(f"{provider} webhook: the timestamp is missing or malformed", 400)
        age = self.clock() - when
        if age > max_age:
            raise WebhookRejected(f"{provider} webhook: the request is stale ({int(age)} s old, "
                                  f"webhook_max_age is {max_age} s)", 400)
        if age < -max_age:
            raise WebhookRejected(f"{provider} webhook: the timestamp is {int(-age)} s in the future", 400)

    def _ttl(self) -> float:
        return 2.0 * self.config.webhook_max_age + 60.0  # covers the window on both sides

    # --- Amazon SES via SNS ----------------------------------------------------------------------

    def _verify_ses(self, body: bytes, headers: Mapping[str, str], client_ip: str) -> _Verified:
        topics = set(self.config.webhook_ses_topics)
        if not topics:
            raise WebhookRejected("the SES webhook is not configured (set webhook_ses_topics)", 404)
        env = _json(body, "SNS message")
        if not isinstance(env, dict):
            raise WebhookRejected("SNS message is not a JSON object", 400)
        kind = env.get("Type")
        if kind not in _SNS_SIGNED:
            raise WebhookRejected(f"SNS message type {str(kind)[:40]!r} is not one we accept", 400)
        if env.get("TopicArn") not in topics:
            raise WebhookRejected(f"SNS topic {str(env.get('TopicArn'))[:200]!r} is not in webhook_ses_topics", 403)
        version = env.get("SignatureVersion")
        if version not in ("1", "2"):
            raise WebhookRejected(f"SNS SignatureVersion {str(version)[:10]!r} is not 1 or 2", 401)
        cert_url = str(env.get("SigningCertURL") or "")
        if not self.cert_url_ok(cert_url):
            raise WebhookRejected(f"SNS SigningCertURL {cert_url[:200]!r} is not https on an sns.<region>.amazonaws.com host", 401)
        if not all(isinstance(env.get(k), str) for k in _SNS_SIGNED[kind] if k != "Subject" or k in env):
            raise WebhookRejected(f"SNS {kind} lacks a signed field", 400)
        self._fresh("ses", _iso_seconds(env.get("Timestamp")))
        try:
            signature = base64.b64decode(str(env.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if not signature:
            raise WebhookRejected("SNS message is unsigned (Signature missing or not base64)", 401)
        text = "".join(f"{k}\n{env[k]}\n" for k in _SNS_SIGNED[kind] if k in env)
        self._verify_rsa(self._cert(cert_url), signature, text.encode("utf-8"), version)
        if kind == "Notification":
            message = _json(env["Message"].encode("utf-8"), "SES message in the SNS notification")
        else:
            message = env
        return _Verified(f"ses:{env.get('MessageId')}", self._ttl(), message, sns_type=kind)

    def _cert(self, url: str):
        from cryptography import x509

        cert = self._certs.get(url)
        if cert is None:
            fetch = self.fetch or (lambda u: fetch_url(u, timeout=self.config.fetch_timeout))
            try:
                data = fetch(url)
                cert = x509.load_pem_x509_certificate(data)
            except (OSError, ValueError) as e:
                raise WebhookRejected(f"SNS signing certificate {url[:200]!r} could not be read: {str(e)[:120]!r}", 502) from None
            self._certs[url] = cert
            while len(self._certs) > 32:
                self._certs.popitem(last=False)
        now = datetime.fromtimestamp(self.clock(), tz=timezone.utc)
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise WebhookRejected(f"SNS signing certificate {url[:200]!r} is expired or not yet valid", 401)
        return cert

    @staticmethod
    def _verify_rsa(cert, signature: bytes, data: bytes, version: str) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRejected("SNS signing certificate does not hold an RSA key", 401)
        try:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA1() if version == "1" else hashes.SHA256())
        except InvalidSignature:
            raise WebhookRejected("SNS message signature does not verify", 401) from None

    def _confirm(self, env: dict) -> WebhookResult:
        url = str(env.get("SubscribeURL") or "")
        if not self.config.webhook_ses_confirm:
            log.warning("SNS subscription confirmation for topic %s not confirmed: webhook_ses_confirm is off "
                        "(confirm it in the AWS console, or set webhook_ses_confirm and resend)", env.get("TopicArn"))
            raise WebhookRejected("SNS subscription confirmation refused: webhook_ses_confirm is off", 403)
        if not self.cert_url_ok_for_subscribe(url):
            raise WebhookRejected(f"SNS SubscribeURL {url[:200]!r} is not https on an sns.<region>.amazonaws.com host", 400)
        fetch = self.fetch or (lambda u: fetch_url(u, timeout=self.config.fetch_timeout))
        try:
            fetch(url)
        except OSError as e:
            raise WebhookRejected(f"SNS subscription could not be confirmed: {str(e)[:120]}", 502) from None
        log.info("SNS subscription to topic %s confirmed", env.get("TopicArn"))
        return WebhookResult("ses", confirmed=True, note="subscription confirmed")

    def cert_url_ok_for_subscribe(self, url: str) -> bool:
        """The SubscribeURL is held to the same host rule as the certificate (any path)."""
        if self.cert_url_ok is sns_cert_url_ok:
            parts = urlsplit(url)
            return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and not parts.username
        return self.cert_url_ok(url)

    # --- SendGrid --------------------------------------------------------------------------------

    def _verify_sendgrid(self, body: bytes, headers: Mapping[str, str], client_ip: str) -> _Verified:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = self._sendgrid_public_key()
        sig_b64 = headers.get("x-twilio-email-event-webhook-signature", "")
        stamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
        if not sig_b64 or not stamp:
            raise WebhookRejected("sendgrid webhook: the request is unsigned (signature or timestamp header missing)", 401)
        self._fresh("sendgrid", _int_seconds(stamp))
        try:
            key.verify(base64.b64decode(sig_b64, validate=True), stamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError, UnicodeError):
            raise WebhookRejected("sendgrid webhook: the signature does not verify", 401) from None
        # ECDSA signatures are malleable: the replay key is what was signed, not the signature.
        key_id = hashlib.sha256(stamp.encode("ascii") + b"\n" + body).hexdigest()
        return _Verified(f"sendgrid:{key_id}", self._ttl(), _json(body, "SendGrid payload"))

    def _sendgrid_public_key(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if self._sendgrid_key is not None:
            return self._sendgrid_key
        text = (self.config.webhook_sendgrid_key or "").strip()
        if not text:
            raise WebhookRejected("the SendGrid webhook is not configured (set NEWSLETTER_WEBHOOK_SENDGRID_KEY)", 404)
        try:
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(text.encode("ascii"))
            else:
                key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
        except (ValueError, binascii.Error, UnicodeError, TypeError):
            key = None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError("webhook_sendgrid_key is not a base64 ECDSA P-256 public key (copy the verification key "
                              "from SendGrid's Signed Event Webhook settings)")
        self._sendgrid_key = key
        return key

    # --- Mailgun ---------------------------------------------------------------------------------

    def _verify_mailgun(self, body: bytes, headers: Mapping[str, str], client_ip: str) -> _Verified:
        secret = self.config.webhook_mailgun_key
        if not secret:
            raise WebhookRejected("the Mailgun webhook is not configured (set NEWSLETTER_WEBHOOK_MAILGUN_KEY)", 404)
        payload = _json(body, "Mailgun payload")
        sig = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str) and sig.get(k) for k in ("timestamp", "token", "signature")):
            raise WebhookRejected("mailgun webhook: the request is unsigned (signature.timestamp, token, signature missing)", 401)
        if len(sig["token"]) > 200:
            raise WebhookRejected("mailgun webhook: the token is too long", 400)
        self._fresh("mailgun", _int_seconds(sig["timestamp"]))
        expected = hmac.new(secret.encode("utf-8"), (sig["timestamp"] + sig["token"]).encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), sig["signature"].strip().lower().encode("utf-8")):
            raise WebhookRejected("mailgun webhook: the signature does not verify", 401)
        return _Verified(f"mailgun:{sig['token']}", self._ttl(), payload.get("event-data"))

    # --- Postmark --------------------------------------------------------------------------------

    def _verify_postmark(self, body: bytes, headers: Mapping[str, str], client_ip: str) -> _Verified:
        user, password = self.config.webhook_postmark_user, self.config.webhook_postmark_password
        if not user or not password:
            raise WebhookRejected("the Postmark webhook is not configured (set NEWSLETTER_WEBHOOK_POSTMARK_USER and "
                                  "NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD)", 404)
        if self.config.webhook_postmark_ips and not _ip_allowed(client_ip, self.config.webhook_postmark_ips):
            raise WebhookRejected(f"postmark webhook: {client_ip[:60] or 'the client'} is not in webhook_postmark_ips", 403)
        got_user, got_password = _basic_auth(headers.get("authorization", ""))
        ok_user = hmac.compare_digest(got_user.encode("utf-8"), user.encode("utf-8"))
        ok_password = hmac.compare_digest(got_password.encode("utf-8"), password.encode("utf-8"))
        if not (ok_user and ok_password):
            raise WebhookRejected("postmark webhook: missing or wrong credentials", 401)
        record = _json(body, "Postmark payload")
        if not isinstance(record, dict):
            raise WebhookRejected("Postmark payload is not a JSON object", 400)
        return _Verified(f"postmark:{providers.postmark_event_id(record)}", POSTMARK_REPLAY_TTL, record)


CAMPAIGN_LOOKBACK = 30 * 86400  # a provider event is tied to a copy sent at most this long before it


def with_recent_campaign(engine, bounces: list, now: float) -> list:
    """Events the provider did not tie to a campaign (no VERP address or ref echoed) get the
    campaign of the latest copy we handed over for their recipient before the event (within
    ``CAMPAIGN_LOOKBACK``), so per-campaign rates count them; the subscriber is still found by
    address in record_bounces. Read-only."""
    from dataclasses import replace
    from datetime import timedelta

    from sqlalchemy import select

    from ..store.bounces import MAILED_STATES, deliveries, subscribers
    from ..store.db import transaction

    out = []
    with transaction(engine) as conn:
        for b in bounces:
            if b.campaign_id is None and b.subscriber_id is None and b.recipient:
                when = min(b.occurred_at or datetime.fromtimestamp(now, tz=timezone.utc),
                           datetime.fromtimestamp(now, tz=timezone.utc))
                cid = conn.execute(
                    select(deliveries.c.campaign_id)
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .where(subscribers.c.email_key == b.recipient.strip().lower(), deliveries.c.state.in_(MAILED_STATES),
                           deliveries.c.sent_at <= when, deliveries.c.sent_at >= when - timedelta(seconds=CAMPAIGN_LOOKBACK))
                    .order_by(deliveries.c.sent_at.desc(), deliveries.c.id.desc()).limit(1)).scalar()
                if cid is not None:
                    b = replace(b, campaign_id=cid, attribution="recent-copy")
            out.append(b)
    return out


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeError, RecursionError):
        raise WebhookRejected(f"{what} is not valid JSON", 400) from None


def _iso_seconds(value: Any) -> float | None:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.timestamp() if t.tzinfo else None


def _int_seconds(value: Any) -> float | None:
    text = str(value).strip()
    return float(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def _basic_auth(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeError):
        return "", ""
    return user, password


def _ip_allowed(client_ip: str, allowed: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for value in allowed:
        try:
            if addr in ipaddress.ip_network(value.strip(), strict=False):
                return True
        except ValueError:
            raise ConfigError(f"webhook_postmark_ips: {value!r} is not an IP address or network") from None
    return False
