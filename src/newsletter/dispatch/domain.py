"""Does the sending domain check out? SPF, DKIM, DMARC, alignment, bounce MX and https links.

:func:`check_domain` asks DNS (dnspython, through ``dns_resolver``), evaluates SPF with pyspf,
compares the published DKIM key with the configured one and decides DMARC alignment with the
Public Suffix List (``publicsuffixlist``, whose bundled snapshot is used: nothing is fetched). It
returns a :class:`DomainReport` of :class:`Check` lines, each with the record to publish when it
fails; the CLI and the web API only format it. :func:`auth_preflight` is the sender's quick,
DNS-free look at DKIM alignment before a campaign goes out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError, InvalidInput
from .resolver import LookupFailed, Resolver, spf_evaluate  # light: dnspython loads on first use

log = logging.getLogger(__name__)

# Checks that Gmail, Yahoo and Microsoft require of bulk senders (2024-2025 sender rules): SPF
# and DKIM pass, a DMARC record, From aligned, a working one-click unsubscribe (https).
REQUIRED = {"spf", "spf_relay", "dkim", "dkim_ed25519", "dmarc", "align_dkim", "align_spf", "base_url"}
PROBE_IP = "203.0.113.254"  # TEST-NET-3: an address no record authorizes, so SPF is evaluated in full


@dataclass
class Check:
    """One line of the report: ✓ or ✗, what was found, and the fix (a record to publish or a setting)."""

    name: str
    ok: bool
    summary: str
    fix: str | None = None
    required: bool = True
    dns_error: bool = False  # the answer could not be had (timeout, server failure): not proven either way


@dataclass
class DomainReport:
    """The checks of one domain; ``ok`` is False when a required check fails."""

    domain: str
    envelope_domain: str
    dkim_domain: str | None
    resolver: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok or not c.required for c in self.checks)

    @property
    def failed_required(self) -> list[str]:
        return [c.name for c in self.checks if c.required and not c.ok]

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict:
        return {"domain": self.domain, "envelope_domain": self.envelope_domain, "dkim_domain": self.dkim_domain,
                "resolver": self.resolver, "ok": self.ok, "failed_required": self.failed_required,
                "checks": [asdict(c) for c in self.checks]}


@lru_cache(maxsize=1)
def _psl():
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the snapshot shipped with the package; it never fetches


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 §3.2): one label below the public suffix."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def alignment(from_domain: str, other: str, mode: str) -> tuple[bool, str]:
    """DMARC identifier alignment: strict (``s``) wants the same name, relaxed (``r``) the same
    organisational domain. Returns (aligned, why)."""
    a, b = from_domain.lower().rstrip("."), other.lower().rstrip(".")
    if mode == "s":
        return (a == b), ("strict: identical" if a == b else f"strict alignment needs {a} exactly, not {b}")
    if a == b:
        return True, "relaxed: identical"
    oa, ob = org_domain(a), org_domain(b)
    if oa == ob:
        return True, f"relaxed: same organisational domain {oa}"
    return False, f"{b} is not under {oa} (organisational domains {oa} and {ob})"


def domain_of(address: str | None) -> str | None:
    """The domain of an address (``"Name <a@Example.org>"`` → ``example.org``), or None."""
    addr = parseaddr(address or "")[1]
    return addr.rpartition("@")[2].lower().rstrip(".") or None if "@" in addr else None


def valid_domain(name: str) -> str:
    """``name`` as a lower-case ASCII domain (internationalised names in their IDNA form);
    InvalidInput when it is not a domain name of two labels or more."""
    try:
        d = name.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        d = ""
    labels = d.split(".")
    if len(labels) < 2 or len(d) > 253 or not all(
            0 < len(x) < 64 and x.replace("-", "").replace("_", "").isascii()
            and x.replace("-", "").replace("_", "").isalnum() and not x.startswith("-") and not x.endswith("-")
            for x in labels):
        raise InvalidInput(f"domain {name!r}: not a domain name")
    return d


def _tags(record: str) -> dict[str, str]:
    """A DKIM/DMARC tag list (RFC 6376 §3.2) as a dict; ValueError when malformed."""
    import dkim.util

    try:
        parsed = dkim.util.parse_tag_value(record.encode("utf-8"))
    except dkim.util.InvalidTagValueList as e:
        raise ValueError(f"malformed tag list ({type(e).__name__}: {e})") from None
    return {k.decode().lower(): v.decode() for k, v in parsed.items()}


# ---- the checks --------------------------------------------------------------------------------

def _relays(config: Config) -> list[str]:
    """Host names of the configured SMTP relays that are not this machine."""
    from .preflight import local_links_problem

    hosts = []
    for server in config.smtp.values():
        host = (urlsplit(server.url).hostname or "").lower()
        if host and local_links_problem(f"https://{host}/") is None:
            hosts.append(host)
    return sorted(set(hosts))


def _spf_mechanism(config: Config, host: str | None = None) -> str:
    if config.spf_include:
        return f"include:{config.spf_include}"
    import ipaddress

    hosts = [host] if host else _relays(config)
    if hosts:
        try:
            ip = ipaddress.ip_address(hosts[0])
            return f"ip{ip.version}:{ip}"
        except ValueError:
            return f"a:{hosts[0]}"
    return "mx"


def _spf_fix(domain: str, records: list[str], add: str) -> str:
    terms: list[str] = []
    for r in sorted(records):  # answers come in any order; the fix should not
        for t in r.split()[1:]:
            if t.lower().lstrip("+-~?") != "all" and t.lower() not in (x.lower() for x in terms):
                terms.append(t)
    if add.lower() not in (t.lower().lstrip("+") for t in terms):
        terms.append(add)
    return f'{domain} TXT "v=spf1 {" ".join(terms + ["~all"])}"'


def _check_spf(config: Config, res: Resolver, env: str) -> list[Check]:
    try:
        records = [t for t in res.txt(env) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    except LookupFailed as e:
        return [Check("spf", False, str(e), dns_error=True)]
    relays = _relays(config)
    wanted = _spf_mechanism(config)
    if not records:
        return [Check("spf", False, f"no SPF record at {env}", _spf_fix(env, [], wanted))]
    if len(records) > 1:
        return [Check("spf", False, f"{len(records)} SPF records at {env}: RFC 7208 allows one (receivers answer "
                                    f"permerror); publish one and remove the others", _spf_fix(env, records, wanted))]
    record = records[0]
    result, why = spf_evaluate(res, PROBE_IP, f"postmaster@{env}", env)
    if result == "temperror":
        return [Check("spf", False, f"SPF {env}: {why}", dns_error=True)]
    if result == "permerror":
        return [Check("spf", False, f"SPF record at {env} is invalid: {why}: {record}", _spf_fix(env, records, wanted))]
    checks = [Check("spf", True, f"{env}: {record}")]
    if config.spf_include:
        wanted_terms = {f"include:{config.spf_include}".lower(), f"redirect={config.spf_include}".lower()}
        if any(t.lower().lstrip("+") in wanted_terms for t in record.split()[1:]):
            checks.append(Check("spf_relay", True, f"the SPF record includes {config.spf_include} (spf_include)"))
        else:
            checks.append(Check("spf_relay", False, f"the SPF record does not include {config.spf_include} (spf_include)",
                                _spf_fix(env, records, f"include:{config.spf_include}")))
        return checks
    for host in relays:
        import ipaddress

        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                ips = res.addresses(host)
            except LookupFailed as e:
                checks.append(Check("spf_relay", False, f"relay {host}: {e}", dns_error=True))
                continue
        if not ips:
            checks.append(Check("spf_relay", False, f"relay {host} has no A/AAAA record: SPF cannot be judged for it",
                                dns_error=True))
            continue
        bad = []
        for ip in ips:
            result, why = spf_evaluate(res, ip, f"postmaster@{env}", host)
            if result == "temperror":
                checks.append(Check("spf_relay", False, f"relay {host} ({ip}): {why}", dns_error=True))
                break
            if result != "pass":
                bad.append(f"{ip}: {result}")
        else:
            if bad:
                checks.append(Check("spf_relay", False, f"the SPF record at {env} does not authorize the relay {host} "
                                                        f"({', '.join(bad)})", _spf_fix(env, records, _spf_mechanism(config, host))))
            else:
                checks.append(Check("spf_relay", True, f"the SPF record authorizes the relay {host} ({', '.join(ips)})"))
    return checks


def _check_dkim(config: Config, res: Resolver, from_domain: str) -> list[Check]:
    from .dkim import configured_keys
    from .dkimkeys import public_key_equal, txt_line

    try:
        keys = configured_keys(config)
    except ConfigError as e:
        return [Check("dkim", False, str(e))]
    if not keys:
        return [Check("dkim", False, "DKIM signing is not configured (dkim_key_file, dkim_selector, dkim_domain)",
                      f"newsletter dkim keygen --domain {from_domain} --selector s1 --out dkim.pem, publish the record it "
                      "prints, then set dkim_key_file, dkim_selector and dkim_domain")]
    assert config.dkim_domain  # configured_keys refuses keys without one
    out = []
    for setting, selector, key in keys:
        name = "dkim" if setting == "dkim_key_file" else "dkim_ed25519"
        where = f"{selector}._domainkey.{config.dkim_domain}"
        fix = txt_line(selector, config.dkim_domain, key)
        try:
            records = [t for t in res.txt(where) if "p=" in t]
        except LookupFailed as e:
            out.append(Check(name, False, str(e), dns_error=True))
            continue
        if not records:
            out.append(Check(name, False, f"no DKIM record at {where}", fix))
            continue
        if len(records) > 1:
            out.append(Check(name, False, f"{len(records)} DKIM records at {where}: publish one", fix))
            continue
        try:
            tags = _tags(records[0])
        except ValueError as e:
            out.append(Check(name, False, f"DKIM record at {where}: {e}", fix))
            continue
        k = tags.get("k", "rsa").lower()
        if not tags.get("p"):
            out.append(Check(name, False, f"DKIM record at {where} is revoked (empty p=)", fix))
        elif k != key.kind:
            out.append(Check(name, False, f"DKIM record at {where} is k={k}, the configured key is {key.kind}", fix))
        elif not public_key_equal(key, tags["p"]):
            out.append(Check(name, False, f"the key published at {where} is not the public half of {setting} "
                                          f"{getattr(config, setting)}", fix))
        else:
            testing = " (t=y: testing mode)" if "y" in tags.get("t", "").split(":") else ""
            out.append(Check(name, True, f"{where}: {key.kind} key matches {setting}{testing}"))
    return out


def _find_dmarc(res: Resolver, domain: str) -> tuple[str | None, str, str | None]:
    """(record, where, problem) at _dmarc.DOMAIN, else at the organisational domain (RFC 7489 §6.6.3)."""
    for d in dict.fromkeys([domain, org_domain(domain)]):
        where = f"_dmarc.{d}"
        found = [t for t in res.txt(where) if t.replace(" ", "").lower().startswith("v=dmarc1")]
        if len(found) > 1:
            return None, where, f"{len(found)} DMARC records at {where}: receivers ignore all of them"
        if found:
            return found[0], where, None
    return None, f"_dmarc.{domain}", None


def _check_dmarc(res: Resolver, domain: str) -> tuple[Check, dict[str, str]]:
    fix = f'_dmarc.{domain} TXT "v=DMARC1; p=none; rua=mailto:postmaster@{domain}"'
    try:
        record, where, problem = _find_dmarc(res, domain)
    except LookupFailed as e:
        return Check("dmarc", False, str(e), dns_error=True), {}
    if problem:
        return Check("dmarc", False, problem, fix), {}
    if record is None:
        return Check("dmarc", False, f"no DMARC record at {where}", fix), {}
    try:
        tags = _tags(record)
    except ValueError as e:
        return Check("dmarc", False, f"DMARC record at {where}: {e}", fix), {}
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Check("dmarc", False, f"DMARC record at {where} has no valid p= policy: {record}", fix), {}
    meaning = {"none": "monitoring only: failing mail is delivered as usual",
               "quarantine": "failing mail goes to spam", "reject": "failing mail is refused"}[policy]
    pct = tags.get("pct", "100")
    extra = f", pct={pct}" if pct != "100" else ""
    return Check("dmarc", True, f"{where}: p={policy} ({meaning}{extra}); adkim={tags.get('adkim', 'r')}, "
                                f"aspf={tags.get('aspf', 'r')}"), tags


def check_domain(config: Config, domain: str | None = None, resolver: Resolver | None = None) -> DomainReport:
    """Check DOMAIN (default: the From address's) as receivers will: one :class:`Check` per line."""
    from .preflight import local_links_problem

    raw = domain or domain_of(config.from_address)
    if not raw:
        raise ConfigError(f"from_address {config.from_address!r} has no domain: pass DOMAIN or set from_address")
    dom = valid_domain(raw)
    env = valid_domain(domain_of(config.bounce_address) or dom) if config.bounce_address else dom
    res = resolver or Resolver.from_config(config.dns_resolver)
    report = DomainReport(dom, env, config.dkim_domain, config.dns_resolver or "system resolver")

    report.checks += _check_spf(config, res, env)
    report.checks += _check_dkim(config, res, dom)
    dmarc, tags = _check_dmarc(res, dom)
    report.checks.append(dmarc)
    assumed = "" if tags else " (no DMARC record read: relaxed assumed)"

    adkim = tags.get("adkim", "r").lower()
    if config.dkim_domain:
        ok, why = alignment(dom, config.dkim_domain, adkim)
        fix = None if ok else (f'dkim_domain = "{dom}", with the key published at <selector>._domainkey.{dom} '
                               "(newsletter dkim keygen prints the record)")
        report.checks.append(Check("align_dkim", ok, f"From {dom} and DKIM d={config.dkim_domain}: "
                                                     f"{'aligned' if ok else 'not aligned'} (adkim={adkim}; {why}){assumed}", fix))
    else:
        report.checks.append(Check("align_dkim", False, f"From {dom}: no DKIM d= to align (DKIM not configured)",
                                   f'dkim_domain = "{dom}"'))
    aspf = tags.get("aspf", "r").lower()
    ok, why = alignment(dom, env, aspf)
    report.checks.append(Check("align_spf", ok, f"From {dom} and envelope (bounce) {env}: "
                                                f"{'aligned' if ok else 'not aligned'} (aspf={aspf}; {why}){assumed}",
                               None if ok else f'bounce_address = "bounces@{dom}"'))

    try:
        mx, addrs = res.mx(env), []
        if not mx:
            addrs = res.addresses(env)
        if mx or addrs:
            report.checks.append(Check("bounce_mx", True, f"{env} receives mail: {'MX ' + ', '.join(mx) if mx else 'A ' + ', '.join(addrs)}",
                                       required=False))
        else:
            report.checks.append(Check("bounce_mx", False, f"{env} has no MX or A record: bounces and replies "
                                                           "to it cannot arrive", f"{env} MX 10 mail.{env}.", required=False))
    except LookupFailed as e:
        report.checks.append(Check("bounce_mx", False, str(e), required=False, dns_error=True))

    problem = local_links_problem(config.base_url)
    report.checks.append(Check("base_url", problem is None,
                               f"base_url {config.base_url} {problem or 'is https'} (one-click unsubscribe links)",
                               None if problem is None else 'base_url = "https://<your public host>"'))
    for c in report.checks:
        c.required = c.required and c.name in REQUIRED
    return report


# ---- before a send -----------------------------------------------------------------------------

_warned: set[tuple[int, str]] = set()
_warned_lock = threading.Lock()


def dkim_alignment_problem(config: Config, from_address: str) -> str | None:
    """Why DKIM will not align with From (relaxed, the DMARC default), without asking DNS; or None."""
    from_dom = domain_of(from_address)
    if not from_dom:
        return None
    if not config.dkim_domain:
        return f"messages are not DKIM-signed (set dkim_key_file, dkim_selector and dkim_domain for {from_dom})"
    ok, why = alignment(from_dom, config.dkim_domain, "r")
    return None if ok else f"DKIM d={config.dkim_domain} is not aligned with the From domain {from_dom} ({why})"


def auth_preflight(config: Config, campaign_id: int, from_address: str, smtp: bool = True) -> None:
    """Before an SMTP send: warn once per campaign (and process) when DKIM d= does not align with
    From; with ``strict_auth`` refuse instead (ConfigError, one line), unsigned mail too."""
    if not smtp:
        return
    problem = dkim_alignment_problem(config, from_address)
    if problem is None or (not config.dkim_domain and not config.strict_auth):
        return  # unsigned mail is refused under strict_auth, otherwise left to `domain check` to point out
    if config.strict_auth:
        raise ConfigError(f"campaign {campaign_id}: {problem}; strict_auth is on, so nothing is sent")
    with _warned_lock:
        if (campaign_id, problem) in _warned:
            return
        _warned.add((campaign_id, problem))
    log.warning("campaign %s: %s: receivers applying DMARC may junk it (strict_auth = true refuses such sends)",
                campaign_id, problem)
