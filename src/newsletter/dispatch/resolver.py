"""DNS look-ups for the domain check, through dnspython and the configured resolver.

``dns_resolver`` (config) names one or more servers, ``"127.0.0.1:5353"`` or
``"[::1]:53, 192.0.2.53"``; unset, the system resolver (/etc/resolv.conf) answers. Every
failure becomes a :class:`LookupFailed` whose message is one line naming the record.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, NewsletterError

if TYPE_CHECKING:
    import dns.resolver

TIMEOUT = 5.0  # seconds for one look-up, retries included


class LookupFailed(NewsletterError):
    """A DNS query timed out or the server failed (not: the record does not exist)."""


def parse_resolver(spec: str | None) -> list[tuple[str, int]]:
    """``"127.0.0.1:5353, [::1]:53, 192.0.2.1"`` → ``[(address, port), ...]`` (port 53 by default)."""
    out: list[tuple[str, int]] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        host, port = part, "53"
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"dns_resolver {part!r}: expected [IPv6]:PORT")
                port = rest[1:]
        elif part.count(":") == 1:
            host, port = part.split(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"dns_resolver {part!r}: expected an IP address, optionally with :PORT") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"dns_resolver {part!r}: the port must be 1-65535")
        out.append((host, int(port)))
    return out


@dataclass
class Resolver:
    """A small façade over ``dns.resolver.Resolver``: answers as Python values, failures as one line."""

    resolver: "dns.resolver.Resolver"

    @classmethod
    def from_config(cls, spec: str | None, timeout: float = TIMEOUT) -> "Resolver":
        import dns.nameserver
        import dns.resolver

        servers = parse_resolver(spec)
        if servers:
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
        else:
            try:
                r = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError("no DNS resolver: /etc/resolv.conf names none; set dns_resolver") from None
        r.lifetime = timeout
        r.timeout = min(timeout, 2.0)
        r.cache = None  # answers must reflect what was just published
        return cls(r)

    def _resolve(self, name: str, rdtype: str):
        import dns.exception
        import dns.resolver

        try:
            return list(self.resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.LifetimeTimeout:
            raise LookupFailed(f"{rdtype} {name}: DNS query timed out after {self.resolver.lifetime:g} s") from None
        except dns.resolver.NoNameservers as e:
            answered = sorted(set(re.findall(r"answered (\w+)", str(e))))
            why = f"answered {', '.join(answered)}" if answered else "failed to answer"
            raise LookupFailed(f"{rdtype} {name}: the DNS server {why}") from None
        except dns.exception.DNSException as e:
            raise LookupFailed(f"{rdtype} {name}: DNS error: {_first_line(e)}") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record at ``name``, its strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._resolve(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        return [r.address for t in ("A", "AAAA") for r in self._resolve(name, t)]

    def mx(self, name: str) -> list[str]:
        return [r.exchange.to_text(omit_final_dot=True) for r in self._resolve(name, "MX")]

    def spf_lookup(self, name, qtype, strict=True, timeout=30):
        """pyspf's ``DNSLookup`` contract: ``[((name, qtype), value), ...]``, TempError on failure."""
        import dns.exception
        import dns.resolver
        import spf

        out = []
        try:
            answers = self.resolver.resolve(name, qtype, search=False, lifetime=min(timeout, self.resolver.lifetime))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as e:
            raise spf.TempError(f"DNS {qtype} {name}: {_first_line(e)}") from None
        for r in answers:
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), r.address))
            elif qtype == "MX":
                out.append(((name, qtype), (r.preference, r.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), r.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), r.strings))
        return out


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# pyspf looks records up through its module-level ``DNSLookup``; route it, per call, through the
# resolver the check was given (a context variable keeps concurrent checks apart).
_spf_resolver: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar("spf_resolver", default=None)


def spf_evaluate(resolver: Resolver, ip: str, sender: str, helo: str) -> tuple[str, str]:
    """Evaluate SPF (RFC 7208, pyspf) for a message from ``ip`` with envelope ``sender``:
    ``(result, explanation)``, result one of pass/fail/softfail/neutral/none/permerror/temperror."""
    import spf

    if getattr(spf.DNSLookup, "__name__", "") != "_routed_lookup":
        original = spf.DNSLookup

        def _routed_lookup(name, qtype, strict=True, timeout=30):
            r = _spf_resolver.get()
            return r.spf_lookup(name, qtype, strict, timeout) if r else original(name, qtype, strict, timeout)

        spf.DNSLookup = _routed_lookup
    token = _spf_resolver.set(resolver)
    try:
        result, _code, explanation = spf.query(i=ip, s=sender, h=helo, timeout=resolver.resolver.lifetime).check()
    finally:
        _spf_resolver.reset(token)
    return result, " ".join(str(explanation).split())
