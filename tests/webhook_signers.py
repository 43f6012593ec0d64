"""Test-side signers for provider webhooks, built the way each provider signs (with test keys).

SNS: an RSA key and a self-signed certificate served over HTTP from 127.0.0.1; SendGrid: an
ECDSA P-256 key; Mailgun: an HMAC key; Postmark: basic-auth credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CertServer:
    """A real HTTP server on 127.0.0.1 serving the SNS test certificate and counting GETs."""

    def __init__(self, pem: bytes):
        self.pem = pem
        self.gets: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.gets.append(self.path)
                body = outer.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class SNSSigner:
    def __init__(self, topic: str):
        self.topic = topic
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.amazonaws.com")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(datetime(2020, 1, 1, tzinfo=timezone.utc))
                     .not_valid_after(datetime(2100, 1, 1, tzinfo=timezone.utc))
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def envelope(self, kind: str, message: str, *, now: float, cert_url: str, message_id: str, version: str = "1",
                 key=None, **extra) -> dict:
        env = {"Type": kind, "MessageId": message_id, "TopicArn": self.topic, "Message": message,
               "Timestamp": iso(now), "SignatureVersion": version, "SigningCertURL": cert_url, **extra}
        text = "".join(f"{k}\n{env[k]}\n" for k in SNS_FIELDS[kind] if k in env)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        env["Signature"] = base64.b64encode((key or self.key).sign(text.encode(), padding.PKCS1v15(), digest)).decode()
        return env


class SendGridSigner:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_b64 = base64.b64encode(der).decode()

    def headers(self, body: bytes, ts: int, key=None) -> dict:
        sig = (key or self.key).sign(str(ts).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": str(ts), "Content-Type": "application/json"}


def mailgun_body(key: str, event_data: dict, *, ts: int, token: str) -> bytes:
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(ts), "token": token, "signature": sig},
                       "event-data": event_data}).encode()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
