"""DKIM signing with dkimpy when a key file, selector and domain are configured.

``NEWSLETTER_DKIM_KEY_FILE`` (an RSA or Ed25519 private key, see :mod:`.dkimkeys`),
``NEWSLETTER_DKIM_SELECTOR`` and ``NEWSLETTER_DKIM_DOMAIN``; optionally a second key,
``dkim_ed25519_key_file`` with ``dkim_ed25519_selector``, for dual signing (RFC 8463: receivers
that do not know Ed25519 still verify the RSA signature). The signature covers From, To,
Subject, Date, Message-ID, the MIME headers and List-Unsubscribe/List-Unsubscribe-Post (RFC 8058
requires those two to be signed). Signing costs a private-key operation per message and key
(about a millisecond with RSA-2048, less with Ed25519).
"""

from __future__ import annotations

from typing import Callable

from ..config import Config
from ..errors import ConfigError
from .dkimkeys import DkimKey, load_key

SIGNED_HEADERS = [
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"MIME-Version", b"Content-Type",
    b"List-Unsubscribe", b"List-Unsubscribe-Post", b"List-Id",
]


def configured_keys(config: Config) -> list[tuple[str, str, DkimKey]]:
    """``[(setting, selector, key), ...]`` for each configured signing key (empty: DKIM is off).
    Half a configuration is an error, not a silent unsigned send."""
    key_file, selector, domain = config.dkim_key_file, config.dkim_selector, config.dkim_domain
    if not (key_file or selector or domain) and not config.dkim_ed25519_key_file:
        return []
    if not (key_file and selector and domain):
        given = {"dkim_key_file": key_file, "dkim_selector": selector, "dkim_domain": domain}
        missing = [k for k, v in given.items() if not v]
        raise ConfigError(f"DKIM is half configured: set {', '.join('NEWSLETTER_' + m.upper() for m in missing)}")
    keys = [("dkim_key_file", selector, load_key(key_file, "dkim_key_file"))]
    ed_file, ed_selector = config.dkim_ed25519_key_file, config.dkim_ed25519_selector
    if ed_file or ed_selector:
        if not (ed_file and ed_selector):
            raise ConfigError("dual DKIM signing is half configured: set both dkim_ed25519_key_file and dkim_ed25519_selector")
        key = load_key(ed_file, "dkim_ed25519_key_file")
        if key.kind != "ed25519":
            raise ConfigError(f"dkim_ed25519_key_file {ed_file}: an {key.kind} key, not Ed25519")
        if ed_selector == selector:
            raise ConfigError("dkim_ed25519_selector must differ from dkim_selector: each key needs its own record")
        keys.append(("dkim_ed25519_key_file", ed_selector, key))
    return keys


def make_signer(config: Config) -> Callable[[bytes], bytes] | None:
    """A function returning the ``DKIM-Signature`` header line(s) for a message (one per key), or
    None when DKIM is not configured."""
    keys = configured_keys(config)
    if not keys:
        return None
    import dkim

    assert config.dkim_domain  # configured_keys refuses keys without one
    domain = config.dkim_domain.encode("ascii")
    signers = [(setting, selector.encode("ascii"), key) for setting, selector, key in keys]

    def sign(message: bytes) -> bytes:
        present = {line.split(b":", 1)[0].strip().lower() for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                   if line and line[:1] not in (b" ", b"\t")}
        include = [h for h in SIGNED_HEADERS if h.lower() in present]
        return b"".join(dkim.sign(message, selector, domain, key.signing_key, include_headers=include,
                                  signature_algorithm=key.algorithm, linesep=b"\r\n")
                        for _, selector, key in signers)

    # Fail now (one line) rather than on the first message if a key does not sign.
    for setting, selector, key in signers:
        try:
            dkim.sign(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nx\r\n", selector, domain,
                      key.signing_key, signature_algorithm=key.algorithm, linesep=b"\r\n")
        except Exception as e:  # dkimpy raises several types for bad keys
            raise ConfigError(f"{setting} {getattr(config, setting)}: cannot sign with it: {' '.join(str(e).split())}") from None
    return sign
