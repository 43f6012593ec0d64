"""DKIM keys: generate them, read them, and say the TXT record that publishes each one.

RSA keys are PEM files (2048-bit when generated here). Ed25519 keys (RFC 8463) are files
holding the base64 32-byte seed, the form dkimpy signs with (and ``dknewkey`` writes); a PEM
Ed25519 key (``openssl genpkey -algorithm ed25519``) is read too.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import ConfigError, InvalidInput

RSA_BITS = 2048


@dataclass(frozen=True)
class DkimKey:
    """A private key as dkimpy takes it, its kind (``rsa`` or ``ed25519``) and its public ``p=``."""

    kind: str
    signing_key: bytes = b""  # PEM (rsa) or base64 seed (ed25519): what dkim.sign() takes
    public: str = ""  # the base64 p= value

    @property
    def algorithm(self) -> bytes:
        return b"rsa-sha256" if self.kind == "rsa" else b"ed25519-sha256"

    def record(self) -> str:
        """The TXT record's value: ``v=DKIM1; k=rsa; p=…``."""
        return f"v=DKIM1; k={self.kind}; p={self.public}"

    def __repr__(self) -> str:  # never show key material
        return f"DkimKey(kind={self.kind!r}, public={self.public[:12]!r}…)"


def txt_line(selector: str, domain: str, key: DkimKey) -> str:
    """One line to publish: ``S._domainkey.D TXT "v=DKIM1; k=rsa; p=…"``."""
    return f'{selector}._domainkey.{domain} TXT "{key.record()}"'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _from_private(priv) -> DkimKey:
    if isinstance(priv, rsa.RSAPrivateKey):
        pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
        spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        return DkimKey("rsa", pem, _b64(spki))
    if isinstance(priv, ed25519.Ed25519PrivateKey):
        seed = priv.private_bytes_raw()
        return DkimKey("ed25519", _b64(seed).encode("ascii"), _b64(priv.public_key().public_bytes_raw()))
    raise ValueError(f"a {type(priv).__name__.removeprefix('_')} key; DKIM takes RSA or Ed25519")


def parse_key(data: bytes) -> DkimKey:
    """Read a PEM private key (RSA or Ed25519) or a base64 Ed25519 seed; ValueError names the problem."""
    if b"PRIVATE KEY" in data:
        try:
            priv = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise ValueError("the key is encrypted; DKIM signing needs it unencrypted") from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"not a readable PEM private key ({' '.join(str(e).split())[:80]})") from None
        return _from_private(priv)
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ValueError("neither a PEM private key nor a base64 Ed25519 seed")
    return _from_private(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def load_key(path: str | os.PathLike, what: str = "dkim_key_file") -> DkimKey:
    """The key in ``path``; ConfigError (one line, naming the setting and file) when unusable."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot read it: {e.strerror or e}") from None
    try:
        return parse_key(data)
    except ValueError as e:
        raise ConfigError(f"{what} {p}: {e}") from None


def public_key_equal(key: DkimKey, published: str) -> bool:
    """Whether a published ``p=`` (base64) is the public half of ``key`` (SPKI or PKCS#1 for RSA)."""
    try:
        der = base64.b64decode("".join(published.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    if key.kind == "ed25519":
        return der == base64.b64decode(key.public)
    mine = serialization.load_der_public_key(base64.b64decode(key.public))
    try:
        theirs = serialization.load_der_public_key(der)
    except ValueError:
        try:  # some publish the bare PKCS#1 RSAPublicKey
            theirs = serialization.load_der_public_key(_pkcs1_to_spki(der))
        except ValueError:
            return False
    return (isinstance(theirs, rsa.RSAPublicKey) and isinstance(mine, rsa.RSAPublicKey)
            and theirs.public_numbers() == mine.public_numbers())


def _pkcs1_to_spki(der: bytes) -> bytes:
    """Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (rsaEncryption, NULL params)."""
    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + length + body
    algo = bytes.fromhex("300d06092a864886f70d0101010500")
    return tlv(0x30, algo + tlv(0x03, b"\x00" + der))


def generate(out: str | os.PathLike, *, ed25519_key: bool = False) -> DkimKey:
    """Write a new private key to ``out`` (mode 0600) and return it. Refuses an existing file:
    overwriting a published key would break every signature until DNS is updated."""
    priv = ed25519.Ed25519PrivateKey.generate() if ed25519_key else rsa.generate_private_key(65537, RSA_BITS)
    key = _from_private(priv)
    data = key.signing_key + (b"\n" if ed25519_key else b"")
    p = Path(out)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"--out {p}: the file exists; refusing to overwrite a key (choose another name)") from None
    except OSError as e:
        raise InvalidInput(f"--out {p}: cannot create it: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        p.unlink(missing_ok=True)
        raise InvalidInput(f"--out {p}: cannot write it: {e.strerror or e}") from None
    return key
