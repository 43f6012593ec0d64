"""`newsletter dkim keygen` and dual RSA + Ed25519 signing, verified by dkimpy against a real DNS
server (dnsmasq on a loopback port) serving the record keygen printed."""

from __future__ import annotations

import os
import re
import stat

import dns.resolver
import pytest

from cli_runner import run_main
from dispatch_helpers import add_people, setup_db
from dns_server import DNSTestServer
from newsletter.config import Config
from newsletter.dispatch.dkim import make_signer
from newsletter.dispatch.dkimkeys import load_key
from newsletter.dispatch.domain import check_domain
from newsletter.errors import ConfigError

LINE = re.compile(r'^(?P<name>[\w.-]+) TXT "(?P<value>v=DKIM1; k=(?P<k>rsa|ed25519); p=(?P<p>[A-Za-z0-9+/=]+))"$')


def keygen(monkeypatch, capsys, tmp_path, *args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    r = run_main(monkeypatch, capsys, ["dkim", "keygen", *args])
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("flag, kind, min_len", [((), "rsa", 300), (("--ed25519",), "ed25519", 40)])
def test_keygen_writes_a_private_key_and_prints_one_txt_line(monkeypatch, capsys, tmp_path, flag, kind, min_len):
    out_file = tmp_path / "keys" / "dkim.key"
    out_file.parent.mkdir()
    code, out, err = keygen(monkeypatch, capsys, tmp_path, "--domain", "Example.TEST", "--selector", "nl2026",
                            "--out", str(out_file), *flag)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    m = LINE.match(lines[0])
    assert m and m["name"] == "nl2026._domainkey.example.test" and m["k"] == kind and len(m["p"]) > min_len
    assert stat.S_IMODE(os.stat(out_file).st_mode) == 0o600
    key = load_key(out_file)
    assert key.kind == kind and key.public == m["p"]
    if kind == "rsa":
        from cryptography.hazmat.primitives import serialization

        assert serialization.load_pem_private_key(out_file.read_bytes(), None).key_size == 2048


def test_keygen_refuses_to_overwrite(monkeypatch, capsys, tmp_path):
    f = tmp_path / "dkim.pem"
    f.write_text("precious")
    code, out, err = keygen(monkeypatch, capsys, tmp_path, "--domain", "example.test", "--selector", "s1", "--out", str(f))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and out == "" and len(lines) == 1 and "exists; refusing to overwrite" in lines[0]
    assert f.read_text() == "precious"
    for args, needle in [(("--domain", "not a domain", "--selector", "s1"), "not a domain name"),
                         (("--domain", "example.test", "--selector", "s 1"), "--selector")]:
        code, out, err = keygen(monkeypatch, capsys, tmp_path, *args, "--out", str(tmp_path / "new.pem"))
        assert code != 0 and needle in err and "Traceback" not in err and not (tmp_path / "new.pem").exists()


def test_printed_records_published_pass_the_domain_check(monkeypatch, capsys, tmp_path):
    """The line keygen prints, served as is by a real DNS server, is the record `domain check` accepts."""
    printed = {}
    for name, flag in (("rsa", ()), ("ed", ("--ed25519",))):
        sel = "s1" if name == "rsa" else "s1e"
        code, out, err = keygen(monkeypatch, capsys, tmp_path, "--domain", "keys.test", "--selector", sel,
                                "--out", str(tmp_path / f"{name}.key"), *flag)
        printed[name] = LINE.match(out.strip())
    records = [(m["name"], "TXT", m["value"]) for m in printed.values()]
    records += [("keys.test", "TXT", "v=spf1 mx -all"), ("keys.test", "MX", "10 mx.keys.test"),
                ("mx.keys.test", "A", "192.0.2.30"), ("_dmarc.keys.test", "TXT", "v=DMARC1; p=quarantine")]
    with DNSTestServer(records) as server:
        # The 2048-bit key is longer than one TXT string: it arrives split and is joined again.
        answer = dns.resolver.Resolver(configure=False)
        answer.nameservers, answer.port = ["127.0.0.1"], server.port
        strings = answer.resolve("s1._domainkey.keys.test", "TXT")[0].strings
        assert len(strings) > 1 and b"".join(strings).decode() == printed["rsa"]["value"]
        config = Config(from_address="news@keys.test", dkim_key_file=str(tmp_path / "rsa.key"), dkim_selector="s1",
                        dkim_domain="keys.test", dkim_ed25519_key_file=str(tmp_path / "ed.key"),
                        dkim_ed25519_selector="s1e", base_url="https://news.keys.test", dns_resolver=server.address)
        report = check_domain(config)
    assert report.ok, [(c.name, c.summary) for c in report.checks if not c.ok]
    assert report.check("dkim").ok and report.check("dkim_ed25519").ok


def test_dual_signing_both_signatures_verify_against_the_dns_server(smtp_server, tmp_path):
    """RSA and Ed25519 keys configured: each message carries two DKIM-Signature headers and dkimpy,
    asking the loopback DNS server for the keys, verifies both; a changed body fails both."""
    import dkim

    from dispatch_helpers import make_campaign
    from newsletter.dispatch.dkimkeys import generate
    from newsletter.dispatch.sender import send_campaign

    rsa_key, ed_key = generate(tmp_path / "rsa.pem"), generate(tmp_path / "ed.key", ed25519_key=True)
    records = [("nl._domainkey.example.org", "TXT", rsa_key.record()),
               ("nled._domainkey.example.org", "TXT", ed_key.record())]
    engine = setup_db(f"sqlite:///{tmp_path / 'n.db'}")
    config = Config(database_url=f"sqlite:///{tmp_path / 'n.db'}", secret_key="s" * 32, base_url="https://news.example.org",
                    from_address="Dispatch <news@example.org>", dkim_key_file=str(tmp_path / "rsa.pem"),
                    dkim_selector="nl", dkim_domain="example.org", dkim_ed25519_key_file=str(tmp_path / "ed.key"),
                    dkim_ed25519_selector="nled")
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    received = smtp_server.received()
    assert len(received) == 2
    with DNSTestServer(records, zones=["example.org"]) as server:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port = ["127.0.0.1"], server.port
        asked = []

        def dnsfunc(name, timeout=5):
            asked.append(name)
            return b"".join(res.resolve(name.decode(), "TXT")[0].strings)

        def verifies(d, idx):
            try:
                return d.verify(idx=idx, dnsfunc=dnsfunc)
            except dkim.DKIMException:
                return False

        for m in received:
            d = dkim.DKIM(m.data)
            sigs = [v for k, v in m.message().items() if k.lower() == "dkim-signature"]
            assert len(sigs) == 2
            assert {re.search(r"a=([\w-]+)", " ".join(s.split()))[1] for s in sigs} == {"rsa-sha256", "ed25519-sha256"}
            assert verifies(d, 0) and verifies(d, 1)
            tampered = dkim.DKIM(m.data.replace(b"\r\n\r\n", b"\r\n\r\nX", 1))
            assert not verifies(tampered, 0) and not verifies(tampered, 1)
    engine.dispose()
    assert {b"nl._domainkey.example.org.", b"nled._domainkey.example.org."} <= set(asked)


def test_dual_signing_config_errors_are_one_line(tmp_path):
    from newsletter.dispatch.dkimkeys import generate

    generate(tmp_path / "rsa.pem")
    generate(tmp_path / "ed.key", ed25519_key=True)
    base = Config(dkim_key_file=str(tmp_path / "rsa.pem"), dkim_selector="nl", dkim_domain="example.org")
    with pytest.raises(ConfigError, match="set both dkim_ed25519_key_file and dkim_ed25519_selector"):
        make_signer(base.replace(dkim_ed25519_key_file=str(tmp_path / "ed.key")))
    with pytest.raises(ConfigError, match="an rsa key, not Ed25519"):
        make_signer(base.replace(dkim_ed25519_key_file=str(tmp_path / "rsa.pem"), dkim_ed25519_selector="e"))
    with pytest.raises(ConfigError, match="must differ"):
        make_signer(base.replace(dkim_ed25519_key_file=str(tmp_path / "ed.key"), dkim_ed25519_selector="nl"))
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(ConfigError, match="dkim_key_file .*junk.pem: neither a PEM private key"):
        make_signer(base.replace(dkim_key_file=str(tmp_path / "junk.pem")))
    # An Ed25519 key alone (keygen --ed25519) signs too.
    sign = make_signer(Config(dkim_key_file=str(tmp_path / "ed.key"), dkim_selector="e", dkim_domain="example.org"))
    assert b"a=ed25519-sha256" in sign(b"From: a@example.org\r\nSubject: x\r\n\r\nx\r\n")
