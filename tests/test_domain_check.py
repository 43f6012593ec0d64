"""`newsletter domain check` against a real DNS server (dnsmasq on a loopback port, see dns_server.py).

One server holds a good zone and a zone broken in each way the check must catch; each test points
the config at one of them and asserts the line that fails, the record it says to publish and the
exit status.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest

from cli_runner import run_main
from dns_server import DNSTestServer
from newsletter.config import Config, SMTPServer
from newsletter.dispatch.dkimkeys import generate, txt_line
from newsletter.dispatch.domain import alignment, auth_preflight, check_domain, org_domain
from newsletter.dispatch.resolver import Resolver, parse_resolver
from newsletter.errors import ConfigError, StateError

RELAY = [("smtp.relay.test", "A", "192.0.2.10"), ("_spf.relay.test", "TXT", "v=spf1 ip4:192.0.2.0/28 -all")]


@pytest.fixture(autouse=True)
def fresh_warnings():
    """The sender warns once per campaign id and process: each test starts with none said."""
    from newsletter.dispatch import domain

    domain._warned.clear()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {"rsa": (d / "rsa.pem", generate(d / "rsa.pem")), "other": (d / "other.pem", generate(d / "other.pem")),
            "ed": (d / "ed.key", generate(d / "ed.key", ed25519_key=True))}


def zone(domain: str, keys, *, spf="v=spf1 mx include:_spf.relay.test -all", dkim="rsa", dmarc="v=DMARC1; p=reject",
         mx=True, selector="s1", extra=()):
    recs = []
    for s in ([spf] if isinstance(spf, str) else spf or []):
        recs.append((domain, "TXT", s))
    if dkim:
        recs.append((f"{selector}._domainkey.{domain}", "TXT", keys[dkim][1].record()))
    if dmarc:
        recs.append((f"_dmarc.{domain}", "TXT", dmarc))
    if mx:
        recs += [(domain, "MX", f"10 mx.{domain}"), (f"mx.{domain}", "A", "192.0.2.30")]
    return recs + list(extra)


@pytest.fixture(scope="module")
def dns(keys):
    records = RELAY + zone("good.test", keys, extra=[("s1e._domainkey.good.test", "TXT", keys["ed"][1].record())])
    records += zone("nospf.test", keys, spf=None)
    records += zone("twospf.test", keys, spf=["v=spf1 mx -all", "v=spf1 include:_spf.relay.test -all"])
    records += zone("norelay.test", keys, spf="v=spf1 mx -all")
    records += zone("badspf.test", keys, spf="v=spf1 mx includ:_spf.relay.test -all")
    records += zone("redirect.test", keys, spf="v=spf1 redirect=_spf.relay.test")
    records += zone("nodkim.test", keys, dkim=None)
    records += zone("wrongkey.test", keys, dkim="other")
    records += zone("nodmarc.test", keys, dmarc=None)
    records += zone("monitor.test", keys, dmarc="v=DMARC1; p=none; rua=mailto:d@monitor.test")
    records += zone("other.test", keys, dmarc=None)
    records += zone("strict.test", keys, dkim=None, dmarc="v=DMARC1; p=quarantine; adkim=s; aspf=s",
                    extra=[("s1._domainkey.mail.strict.test", "TXT", keys["rsa"][1].record()),
                           ("mail.strict.test", "TXT", "v=spf1 include:_spf.relay.test -all")])
    records += zone("relaxed.test", keys, dkim=None, dmarc="v=DMARC1; p=quarantine",
                    extra=[("s1._domainkey.mail.relaxed.test", "TXT", keys["rsa"][1].record())])
    records += zone("nomx.test", keys, mx=False)
    records += zone("elsewhere.test", keys, dkim=None, dmarc=None)
    with DNSTestServer(records) as server:
        yield server


def cfg(dns, keys, domain="good.test", **kw) -> Config:
    base = dict(from_address=f"News <news@{domain}>", dkim_key_file=str(keys["rsa"][0]), dkim_selector="s1",
                dkim_domain=domain, base_url=f"https://news.{domain}", dns_resolver=dns.address,
                spf_include="_spf.relay.test")
    base.update(kw)
    return Config(**base)


def failing(report):
    return {c.name for c in report.checks if not c.ok}


def test_good_zone_passes_every_check(dns, keys):
    report = check_domain(cfg(dns, keys))
    assert failing(report) == set() and report.ok
    names = [c.name for c in report.checks]
    assert names == ["spf", "spf_relay", "dkim", "dmarc", "align_dkim", "align_spf", "bounce_mx", "base_url"]
    assert "p=reject" in report.check("dmarc").summary
    assert "relaxed: identical" in report.check("align_dkim").summary


def test_relay_from_the_smtp_host_is_evaluated_with_spf(dns, keys):
    """No spf_include: the SMTP relay's address must pass SPF (here through include:_spf.relay.test)."""
    relay = {"relay": SMTPServer(name="relay", url="smtp://smtp.relay.test:587")}
    good = check_domain(cfg(dns, keys, spf_include=None, smtp=relay))
    assert good.ok and "authorizes the relay smtp.relay.test (192.0.2.10)" in good.check("spf_relay").summary
    bad = check_domain(cfg(dns, keys, "norelay.test", spf_include=None, smtp=relay))
    c = bad.check("spf_relay")
    assert not c.ok and "192.0.2.10: fail" in c.summary and not bad.ok
    assert c.fix == 'norelay.test TXT "v=spf1 mx a:smtp.relay.test ~all"'
    # A relay on this machine (the default local catcher) is not a relay to authorize.
    local = check_domain(cfg(dns, keys, spf_include=None, smtp={"l": SMTPServer(name="l", url="smtp://127.0.0.1:25")}))
    assert local.check("spf_relay") is None and local.ok


@pytest.mark.parametrize("domain, name, summary, fix", [
    ("nospf.test", "spf", "no SPF record at nospf.test", 'nospf.test TXT "v=spf1 include:_spf.relay.test ~all"'),
    ("twospf.test", "spf", "2 SPF records at twospf.test", 'twospf.test TXT "v=spf1 include:_spf.relay.test mx ~all"'),
    ("badspf.test", "spf", "SPF record at badspf.test is invalid", None),
    ("norelay.test", "spf_relay", "does not include _spf.relay.test",
     'norelay.test TXT "v=spf1 mx include:_spf.relay.test ~all"'),
    ("nodkim.test", "dkim", "no DKIM record at s1._domainkey.nodkim.test", "DKIM"),
    ("wrongkey.test", "dkim", "is not the public half of dkim_key_file", "DKIM"),
    ("nodmarc.test", "dmarc", "no DMARC record at _dmarc.nodmarc.test",
     '_dmarc.nodmarc.test TXT "v=DMARC1; p=none; rua=mailto:postmaster@nodmarc.test"'),
])
def test_each_broken_record_fails_its_line_with_the_record_to_publish(dns, keys, domain, name, summary, fix):
    config = cfg(dns, keys, domain)
    report = check_domain(config)
    c = report.check(name)
    assert failing(report) == {name}, [(x.name, x.summary) for x in report.checks]
    assert summary in c.summary and c.required and not report.ok
    if fix == "DKIM":  # the exact record for the configured key
        assert c.fix == txt_line("s1", domain, keys["rsa"][1])
    elif fix:
        assert c.fix == fix
    else:
        assert c.fix.startswith(f'{domain} TXT "v=spf1 ')


def test_relay_reached_through_redirect_counts(dns, keys):
    report = check_domain(cfg(dns, keys, "redirect.test"))
    assert report.ok and report.check("spf_relay").ok
    relay = {"relay": SMTPServer(name="relay", url="smtp://smtp.relay.test:587")}
    assert check_domain(cfg(dns, keys, "redirect.test", spf_include=None, smtp=relay)).check("spf_relay").ok


def test_dmarc_p_none_passes_and_is_shown(dns, keys):
    report = check_domain(cfg(dns, keys, "monitor.test"))
    assert report.ok
    assert "p=none (monitoring only" in report.check("dmarc").summary


def test_from_not_aligned_with_dkim_d(dns, keys):
    report = check_domain(cfg(dns, keys, "good.test", dkim_domain="other.test"))
    assert failing(report) == {"align_dkim"} and not report.ok
    c = report.check("align_dkim")
    assert "not aligned" in c.summary and "other.test is not under good.test" in c.summary
    assert c.fix.startswith('dkim_domain = "good.test"')


def test_strict_and_relaxed_alignment_told_apart(dns, keys):
    """d=mail.X aligns with From X under relaxed DMARC (organisational domain), not under adkim=s."""
    relaxed = check_domain(cfg(dns, keys, "relaxed.test", dkim_domain="mail.relaxed.test"))
    assert relaxed.ok
    assert "adkim=r; relaxed: same organisational domain relaxed.test" in relaxed.check("align_dkim").summary
    strict = check_domain(cfg(dns, keys, "strict.test", dkim_domain="mail.strict.test",
                              bounce_address="bounces@mail.strict.test"))
    assert failing(strict) == {"align_dkim", "align_spf", "bounce_mx"}
    assert "adkim=s; strict alignment needs strict.test exactly, not mail.strict.test" in strict.check("align_dkim").summary
    assert "aspf=s" in strict.check("align_spf").summary


def test_org_domain_uses_the_public_suffix_list():
    assert org_domain("a.b.example.co.uk") == "example.co.uk"
    assert alignment("news.example.co.uk", "mail.example.co.uk", "r")[0]
    assert not alignment("example.co.uk", "other.co.uk", "r")[0]  # last two labels would wrongly say aligned
    assert not alignment("news.example.org", "example.org", "s")[0]


def test_bounce_domain_not_aligned(dns, keys):
    report = check_domain(cfg(dns, keys, "good.test", bounce_address="Bounces <b@elsewhere.test>"))
    assert report.envelope_domain == "elsewhere.test"
    assert failing(report) == {"align_spf"} and not report.ok
    c = report.check("align_spf")
    assert "envelope (bounce) elsewhere.test: not aligned" in c.summary and c.fix == 'bounce_address = "bounces@good.test"'


def test_no_mx_or_a_for_bounce_domain_is_shown_but_not_required(dns, keys):
    report = check_domain(cfg(dns, keys, "nomx.test"))
    c = report.check("bounce_mx")
    assert failing(report) == {"bounce_mx"} and not c.required and report.ok
    assert "nomx.test has no MX or A record" in c.summary and c.fix == "nomx.test MX 10 mail.nomx.test."


def test_http_base_url_fails(dns, keys):
    report = check_domain(cfg(dns, keys, base_url="http://news.good.test"))
    assert failing(report) == {"base_url"} and not report.ok
    assert "is not https" in report.check("base_url").summary


def test_dkim_not_configured(dns, keys):
    report = check_domain(cfg(dns, keys, dkim_key_file=None, dkim_selector=None, dkim_domain=None))
    assert failing(report) == {"dkim", "align_dkim"}
    assert report.check("dkim").fix.startswith("newsletter dkim keygen --domain good.test")


def test_dual_keys_each_checked(dns, keys):
    config = cfg(dns, keys, dkim_ed25519_key_file=str(keys["ed"][0]), dkim_ed25519_selector="s1e")
    report = check_domain(config)
    assert report.ok and "ed25519 key matches" in report.check("dkim_ed25519").summary
    missing = check_domain(cfg(dns, keys, "nodmarc.test", dkim_ed25519_key_file=str(keys["ed"][0]),
                               dkim_ed25519_selector="s1e"))
    assert missing.check("dkim_ed25519").fix == txt_line("s1e", "nodmarc.test", keys["ed"][1])


def test_dns_timeout_is_one_line_per_record(keys):
    """A resolver that never answers: each look-up fails on one line naming the record; no exception."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        spec = f"127.0.0.1:{silent.getsockname()[1]}"
        config = Config(from_address="news@good.test", dkim_key_file=str(keys["rsa"][0]), dkim_selector="s1",
                        dkim_domain="good.test", base_url="https://news.good.test", dns_resolver=spec)
        report = check_domain(config, resolver=Resolver.from_config(spec, timeout=0.5))
    errors = [c for c in report.checks if c.dns_error]
    assert {c.name for c in errors} == {"spf", "dkim", "dmarc", "bounce_mx"}
    assert "TXT good.test: DNS query timed out" in report.check("spf").summary
    assert "TXT s1._domainkey.good.test" in report.check("dkim").summary
    assert all("\n" not in c.summary for c in report.checks) and not report.ok


def test_resolver_spec_parsing():
    assert parse_resolver("127.0.0.1:5353, [::1]:53, 192.0.2.1") == [("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53)]
    assert parse_resolver(None) == []
    for bad in ("localhost:53", "127.0.0.1:99999", "[::1]x"):
        with pytest.raises(ConfigError, match="dns_resolver"):
            parse_resolver(bad)


def test_preflight_warns_once_per_campaign_and_strict_refuses(caplog):
    config = Config(from_address="news@good.test", dkim_domain="other.test")
    with caplog.at_level(logging.WARNING, logger="newsletter.dispatch.domain"):
        for _ in range(3):
            auth_preflight(config, 901, config.from_address)
        auth_preflight(config, 902, config.from_address)
    warned = [r.getMessage() for r in caplog.records if "not aligned" in r.getMessage()]
    assert len(warned) == 2 and warned[0].startswith("campaign 901: DKIM d=other.test is not aligned with the From domain good.test")
    auth_preflight(Config(from_address="news@good.test", dkim_domain="mail.good.test", strict_auth=True), 903,
                   "news@good.test")  # relaxed-aligned: fine even when strict
    with pytest.raises(ConfigError, match="campaign 904: DKIM d=other.test is not aligned.*strict_auth"):
        auth_preflight(config.replace(strict_auth=True), 904, config.from_address)
    auth_preflight(config.replace(strict_auth=True), 905, config.from_address, smtp=False)  # outbox: no refusal
    unsigned = Config(from_address="news@good.test")
    with caplog.at_level(logging.WARNING, logger="newsletter.dispatch.domain"):
        auth_preflight(unsigned, 906, unsigned.from_address)  # unsigned: `domain check` says so, send does not nag
    assert not [r for r in caplog.records if "campaign 906" in r.getMessage()]
    with pytest.raises(ConfigError, match="campaign 907: messages are not DKIM-signed.*strict_auth"):
        auth_preflight(unsigned.replace(strict_auth=True), 907, unsigned.from_address)


# ---- the command ------------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, tmp_path, *args, env=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    r = run_main(monkeypatch, capsys, list(args))
    return r.returncode, r.stdout, r.stderr


def toml_for(dns, keys, domain, **extra) -> str:
    lines = [f'from_address = "News <news@{domain}>"', f'dkim_key_file = "{keys["rsa"][0]}"', 'dkim_selector = "s1"',
             f'dkim_domain = "{domain}"', f'base_url = "https://news.{domain}"', f'dns_resolver = "{dns.address}"',
             'spf_include = "_spf.relay.test"'] + [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_cli_good_and_broken(dns, keys, tmp_path, monkeypatch, capsys):
    (tmp_path / "newsletter.toml").write_text(toml_for(dns, keys, "good.test"))
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "domain", "check")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"good.test (envelope good.test, DKIM d=good.test; asking {dns.address})"
    assert [ln[0] for ln in lines[1:-1]] == ["✓"] * 8 and lines[-1] == "ready for bulk sending"
    # The same config, another domain given on the command line: its DKIM record is missing.
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "domain", "check", "nodmarc.test")
    assert code == 1
    assert "✗ DMARC: no DMARC record at _dmarc.nodmarc.test" in out
    assert '    publish/set: _dmarc.nodmarc.test TXT "v=DMARC1; p=none; rua=mailto:postmaster@nodmarc.test"' in out
    assert out.splitlines()[-1].startswith("not ready: ")


def test_cli_json_and_recommended_only_exit_zero(dns, keys, tmp_path, monkeypatch, capsys):
    (tmp_path / "newsletter.toml").write_text(toml_for(dns, keys, "nomx.test"))
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "domain", "check", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["failed_required"] == []
    mx = next(c for c in data["checks"] if c["name"] == "bounce_mx")
    assert mx["ok"] is False and mx["required"] is False and mx["fix"] == "nomx.test MX 10 mail.nomx.test."
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "domain", "check", "--format", "json",
                             env={"NEWSLETTER_BASE_URL": "http://news.nomx.test"})
    assert code == 1 and json.loads(out)["failed_required"] == ["base_url"]


def test_cli_bad_input_is_one_line(dns, keys, tmp_path, monkeypatch, capsys):
    (tmp_path / "newsletter.toml").write_text(toml_for(dns, keys, "good.test"))
    for args, needle in [(("domain", "check", "not a domain"), "not a domain name"),
                         (("domain", "check", "--format", "xml"), "--format"),
                         (("domain", "check"), "dns_resolver")]:
        env = {"NEWSLETTER_DNS_RESOLVER": "nameserver.example"} if needle == "dns_resolver" else None
        code, out, err = run_cli(monkeypatch, capsys, tmp_path, *args, env=env)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code != 0 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
        if env:
            monkeypatch.delenv("NEWSLETTER_DNS_RESOLVER")


def test_send_warns_once_per_campaign_and_strict_auth_refuses_before_anything_is_sent(smtp_server, tmp_path, caplog):
    """The real send path: DKIM d= not aligned with From warns once per campaign however often the
    campaign is sent; with strict_auth the send is refused, the ledger untouched, nothing delivered."""
    from dispatch_helpers import add_people, make_campaign, make_config, setup_db
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store import queries as q

    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    key = tmp_path / "k.pem"
    generate(key)
    config = make_config(url, tmp_path, dkim_key_file=str(key), dkim_selector="s1", dkim_domain="elsewhere.test")
    add_people(engine, "weekly", 2)
    strict = make_campaign(engine, config)
    with pytest.raises(ConfigError, match=f"campaign {strict.id}: DKIM d=elsewhere.test is not aligned with the From "
                                          "domain example.org .*strict_auth is on"):
        send_campaign(engine, strict.id, config.replace(strict_auth=True), smtp=smtp_server.url)
    assert smtp_server.received() == []
    with engine.connect() as conn:
        assert conn.execute(q.deliveries.select().where(q.deliveries.c.campaign_id == strict.id)).first() is None
    c = make_campaign(engine, config)
    with caplog.at_level(logging.WARNING, logger="newsletter.dispatch.domain"):
        send_campaign(engine, c.id, config, smtp=smtp_server.url)
        with pytest.raises(StateError):  # sent again (it is finished): the preflight ran, warned no more
            send_campaign(engine, c.id, config, smtp=smtp_server.url, resend_ambiguous=True)
    warned = [r.getMessage() for r in caplog.records if f"campaign {c.id}: DKIM d=elsewhere.test" in r.getMessage()]
    assert len(warned) == 1 and len(smtp_server.received()) == 2
    engine.dispose()


def test_web_api_serves_the_same_report(dns, keys, tmp_path):
    from fastapi.testclient import TestClient

    from newsletter.store.db import get_engine, upgrade
    from newsletter.web import create_app

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    engine = get_engine(url)
    config = cfg(dns, keys, "wrongkey.test", database_url=url, secret_key="k" * 32, admin_token="tok-0123456789abcdef")
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000") as client:
        r = client.get("/api/domain", headers={"Authorization": "Bearer tok-0123456789abcdef"})
        assert r.status_code == 200, r.text
        assert r.json() == check_domain(config).as_dict()
        assert r.json()["failed_required"] == ["dkim"]
        assert client.get("/api/domain").status_code in (401, 403)
    engine.dispose()


def test_worker_refuses_an_unaligned_campaign_under_strict_auth_and_warns_once_otherwise(smtp_server, tmp_path, caplog):
    from datetime import UTC, datetime

    from dispatch_helpers import add_people, make_campaign, make_config, setup_db
    from newsletter.dispatch.campaigns import get_campaign
    from newsletter.schedule.oneoff import schedule_campaign_at
    from newsletter.schedule.worker import run_worker

    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    key = tmp_path / "k.pem"
    generate(key)
    config = make_config(url, tmp_path, dkim_key_file=str(key), dkim_selector="s1", dkim_domain="elsewhere.test")
    add_people(engine, "weekly", 3)
    cid = make_campaign(engine, config).id
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "UTC", now=datetime(2026, 11, 30, tzinfo=UTC))
    at = datetime(2026, 12, 1, 8, 1, tzinfo=UTC)
    report = run_worker(engine, config.replace(strict_auth=True), once=True, now=at, smtp=smtp_server.url)
    assert [e for e in report.errors if "strict_auth is on" in e and f"campaign {cid}" in e]
    assert smtp_server.received() == []
    with caplog.at_level(logging.WARNING, logger="newsletter.dispatch.domain"):
        report = run_worker(engine, config, once=True, now=at, smtp=smtp_server.url)
    assert report.errors == [] and len(smtp_server.received()) == 3 and get_campaign(engine, cid).status == "finished"
    assert len([r for r in caplog.records if f"campaign {cid}: DKIM d=elsewhere.test is not aligned" in r.getMessage()]) == 1
    engine.dispose()
