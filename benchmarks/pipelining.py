"""SMTP PIPELINING (RFC 2920) against a relay that is far away: a sink on 127.0.0.1 that waits
--latency ms before each batch of replies it writes (one network round trip), with PIPELINING
offered or not. Sends the same prebuilt messages over one connection both ways, in one run.

    .venv/bin/python benchmarks/pipelining.py [--messages 400] [--latency 5] [--size 20000]

Without pipelining a message costs four round trips (MAIL, RCPT, DATA, end of data); with it,
two (MAIL+RCPT+DATA, end of data).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from newsletter.dispatch.personalize import Built  # noqa: E402
from newsletter.dispatch.smtp import SMTPSession, parse_smtp_url  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_sink import serve  # noqa: E402


def run(messages: int, latency_ms: float, size: int, pipelining: bool) -> float:
    port, _ = serve(pipelining, latency_ms / 1000)
    s = SMTPSession(parse_smtp_url(f"smtp://127.0.0.1:{port}", tls="none", timeout=30.0))
    body = b"Subject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78)
    built = [Built("news@example.org", f"r{i}@example.com", body, f"<{i}@x>") for i in range(messages)]
    s.send(built[0])  # connect and EHLO outside the timing
    t = time.perf_counter()
    for b in built[1:]:
        assert s.send(b).state == "sent"
    rate = (messages - 1) / (time.perf_counter() - t)
    s.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--latency", type=float, default=5.0, help="ms before each batch of replies")
    ap.add_argument("--size", type=int, default=20000)
    args = ap.parse_args()
    print(f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}; "
          f"{args.messages} messages of {args.size // 1000} KB, {args.latency:g} ms per round trip, one connection")
    for latency in (0.0, args.latency):
        without = run(args.messages, latency, args.size, False)
        with_ = run(args.messages, latency, args.size, True)
        print(f"latency {latency:g} ms: without pipelining {without:,.0f} msgs/s, with {with_:,.0f} msgs/s "
              f"({with_ / without:.2f}x)")


if __name__ == "__main__":
    main()
