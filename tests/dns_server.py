"""A real DNS server for tests: Debian's dnsmasq on 127.0.0.1, a free port, records from a file.

    with DNSTestServer([("example.test", "TXT", "v=spf1 mx -all"),
                        ("example.test", "MX", "10 mail.example.test"),
                        ("mail.example.test", "A", "192.0.2.25")]) as dns:
        config.dns_resolver = dns.address        # "127.0.0.1:PORT"

Only the domains named in ``zones`` (default: every record's last two labels) are answered, all
from the file: other names under them get NXDOMAIN, nothing is forwarded anywhere. TXT values
longer than 255 bytes are split into several character-strings of one record (RFC 1035 §3.3.14),
as a DKIM key must be; a tuple value gives the strings explicitly. dnsmasq was picked over nsd
because its ``txt-record``/``mx-host``/``host-record`` lines need no zone file, SOA or chroot.

Missing ``dnsmasq``: the fixtures skip with the reason, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)

Record = tuple[str, str, "str | tuple[str, ...]"]


def require_dnsmasq() -> str:
    """The dnsmasq binary, or skip (fail in CI) naming the package to install."""
    if DNSMASQ:
        return DNSMASQ
    reason = "dnsmasq is not installed (Debian package dnsmasq-base): the DNS tests need a real server"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _quote(s: str) -> str:
    if '"' in s or "\\" in s:
        raise ValueError(f"test TXT value {s!r}: quotes and backslashes are not supported")
    return f'"{s}"'


def _txt_strings(value) -> list[str]:
    if isinstance(value, tuple):
        return list(value)
    raw = value.encode("ascii")
    return [raw[i:i + 255].decode("ascii") for i in range(0, len(raw), 255)] or [""]


def config_lines(records: list[Record]) -> list[str]:
    """dnsmasq configuration lines serving ``records``."""
    lines = []
    for name, rtype, value in records:
        rtype = rtype.upper()
        if rtype == "TXT":
            lines.append(f"txt-record={name},{','.join(_quote(s) for s in _txt_strings(value))}")
        elif rtype == "MX":
            pref, target = value.split()
            lines.append(f"mx-host={name},{target.rstrip('.')},{int(pref)}")
        elif rtype in ("A", "AAAA"):
            lines.append(f"host-record={name},{value}")
        elif rtype == "CNAME":
            lines.append(f"cname={name},{value.rstrip('.')}")
        else:
            raise ValueError(f"record type {rtype} is not supported by the test DNS server")
    return lines


class DNSTestServer:
    """dnsmasq answering ``records`` on 127.0.0.1:``port`` (a free one by default)."""

    def __init__(self, records: list[Record], zones: list[str] | None = None):
        self.records = list(records)
        self.zones = zones or sorted({".".join(n.lower().split(".")[-2:]) for n, _, _ in records})
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="dns-test-")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _free_port(self) -> int:
        # dnsmasq listens on UDP and TCP: find a port free for both.
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", 0))
                port = u.getsockname()[1]
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    try:
                        t.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                return port
        raise RuntimeError("no free port for the test DNS server")

    def start(self) -> "DNSTestServer":
        binary = require_dnsmasq()
        conf = Path(self._dir.name) / "dnsmasq.conf"
        log = Path(self._dir.name) / "dnsmasq.log"
        for attempt in range(5):
            self.port = self._free_port()
            conf.write_text("\n".join([
                f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
                "no-poll", "cache-size=0", *[f"local=/{z}/" for z in self.zones], *config_lines(self.records),
            ]) + "\n")
            args = [binary, "--keep-in-foreground", f"--conf-file={conf}", "--pid-file", "--log-facility=-"]
            if os.geteuid() == 0:
                args.append("--user=root")
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready():
                return self
            self.stop()
            text = log.read_text(errors="replace")
            if "Address already in use" not in text:
                raise RuntimeError(f"dnsmasq did not start: {text.strip()[-500:]}")
        raise RuntimeError("dnsmasq: no free port after 5 tries")

    def _wait_ready(self, deadline_s: float = 15.0) -> bool:
        """True once the server answers a query (bounded; each probe waits for the server's reply)."""
        import dns.message
        import dns.query

        end = time.monotonic() + deadline_s
        q = dns.message.make_query(f"{self.zones[0]}.", "SOA")
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5)
                return True
            except (dns.exception.Timeout, OSError):
                continue
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "DNSTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._dir.cleanup()
