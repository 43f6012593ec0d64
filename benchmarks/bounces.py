"""Benchmark: ``bounces process`` over ~1,000 messages, from a local Maildir and through a real
Dovecot (IMAP on loopback, plain and TLS).

    .venv/bin/python benchmarks/bounces.py [--messages 1000] [--json FILE]

Each run: a fresh SQLite database with N subscribers who were all sent one campaign (through the
outbox transport), then N messages in the mailbox — 80 % RFC 3464 hard-bounce reports quoting the
copy's headers, 10 % mailto unsubscribes with the copy's token, 10 % messages that are neither
(left in place) — and one ``process_mailboxes`` call, timed. Messages/s counts every message
looked at. Needs Debian's dovecot-imapd for the IMAP runs (started as in tests/dovecot.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

SECRET = "benchmark-secret-key-0123456789"


def dsn(recipient: str, quoted_headers: str, n: int) -> bytes:
    b = f"=_b{n}"
    return (f"From: MAILER-DAEMON@mx.example.com\r\nTo: bounces@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn{n}@mx.example.com>\r\nDate: Thu, 03 Dec 2026 09:30:00 +0000\r\nAuto-Submitted: auto-replied\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\r\n\r\n"
            f"--{b}\r\nContent-Type: text/plain\r\n\r\n<{recipient}>: host mx.example.com said: 550 5.1.1 User unknown\r\n\r\n"
            f"--{b}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n\r\n"
            f"--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted_headers}\r\n\r\n--{b}--\r\n").encode()


def mailto(sender: str, subject: str, n: int) -> bytes:
    return (f"From: {sender}\r\nTo: news@example.org\r\nSubject: {subject}\r\nMessage-ID: <u{n}@client.example>\r\n"
            f"Date: Thu, 03 Dec 2026 09:31:00 +0000\r\n\r\nsent from my phone\r\n").encode()


def other(n: int) -> bytes:
    return (f"From: friend{n}@elsewhere.example\r\nTo: bounces@example.org\r\nSubject: lunch?\r\nMessage-ID: <o{n}@x>\r\n\r\n"
            f"see you at noon\r\n").encode()


def prepare(workdir: Path, n: int):
    """A database where N people were sent one campaign, and the N messages that come back."""
    from email import message_from_bytes, policy
    from urllib.parse import unquote

    from dispatch_helpers import add_people, make_campaign, make_config, setup_db
    from newsletter.dispatch.sender import send_campaign

    url = f"sqlite:///{workdir / 'bench.db'}"
    engine = setup_db(url)
    config = make_config(url, workdir, secret_key=SECRET, bounce_address="bounces@example.org")
    add_people(engine, "weekly", n)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, outbox=str(workdir / "outbox"))
    copies = sorted((workdir / "outbox").rglob("*.eml"))
    messages = []
    for i, path in enumerate(copies[:n]):
        raw = path.read_bytes()
        msg = message_from_bytes(raw, policy=policy.default)
        rcpt = msg["To"].addresses[0].addr_spec
        if i % 10 < 8:
            messages.append(dsn(rcpt, raw.split(b"\r\n\r\n", 1)[0].decode(), i))
        elif i % 10 == 8:
            target = [p.strip(" <>") for p in msg["List-Unsubscribe"].split(",") if "mailto:" in p][0]
            messages.append(mailto(rcpt, unquote(target.split("subject=", 1)[1]), i))
        else:
            messages.append(other(i))
    return engine, config, messages


def write_maildir(root: Path, messages: list[bytes]) -> None:
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"{1700000000 + i}.M{i}P1.bench").write_bytes(raw)


def run(label: str, engine, config) -> dict:
    from newsletter.feedback.process import process_mailboxes

    t0 = time.perf_counter()
    r = process_mailboxes(engine, config, on_event=lambda line: None)
    dt = time.perf_counter() - t0
    looked = r.read + r.unreadable + r.already
    assert not r.errors, r.errors
    row = {"mailbox": label, "messages": looked, "seconds": round(dt, 2), "messages_per_s": round(looked / dt, 1),
           "bounced": r.bounced, "unsubscribed": r.unsubscribed, "left": r.left}
    print(f"{label:<24} {looked:>6} msgs {dt:>7.2f} s {looked / dt:>8.1f} msg/s  bounced {r.bounced} unsubscribed "
          f"{r.unsubscribed} left {r.left}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-bounces-") as tmp:
        work = Path(tmp) / "maildir-run"
        work.mkdir()
        engine, config, messages = prepare(work, args.messages)
        write_maildir(work / "Maildir", messages)
        rows.append(run("maildir", engine, dataclasses.replace(config, bounce_mailbox=f"maildir://{work / 'Maildir'}",
                                                              unsubscribe_mailbox=f"maildir://{work / 'Maildir'}")))
        engine.dispose()

        # the same through the command, process start-up included
        work = Path(tmp) / "cli-run"
        work.mkdir()
        engine, config, messages = prepare(work, args.messages)
        engine.dispose()
        write_maildir(work / "Maildir", messages)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(NEWSLETTER_DATABASE_URL=config.database_url, NEWSLETTER_SECRET_KEY=SECRET,
                   NEWSLETTER_BOUNCE_MAILBOX=f"maildir://{work / 'Maildir'}", NEWSLETTER_UNSUBSCRIBE_MAILBOX=f"maildir://{work / 'Maildir'}")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "newsletter", "bounces", "process", "--format", "json"], env=env,
                             capture_output=True, text=True, cwd=work)
        dt = time.perf_counter() - t0
        assert out.returncode == 0, out.stderr[-2000:]
        r = json.loads(out.stdout)
        looked = r["read"] + r["unreadable"] + r["already"]
        rows.append({"mailbox": "maildir, `bounces process`", "messages": looked, "seconds": round(dt, 2),
                     "messages_per_s": round(looked / dt, 1), "bounced": r["bounced"], "unsubscribed": r["unsubscribed"],
                     "left": r["left"]})
        print(f"{'maildir (CLI)':<24} {looked:>6} msgs {dt:>7.2f} s {looked / dt:>8.1f} msg/s  bounced {r['bounced']} "
              f"unsubscribed {r['unsubscribed']} left {r['left']}", flush=True)

        from dovecot import Dovecot, missing_reason

        if missing_reason():
            print(f"skipping IMAP: {missing_reason()}")
        else:
            for scheme, tls in (("imap", "none"), ("imaps", None)):
                work = Path(tmp) / f"{scheme}-run"
                (work / "dovecot").mkdir(parents=True)
                server = Dovecot(work / "dovecot").start()
                try:
                    engine, config, messages = prepare(work, args.messages)
                    for raw in messages:
                        server.deliver(raw)
                    os.environ["SSL_CERT_FILE"] = str(server.cert)
                    url = server.url(scheme, tls=tls)
                    cfg = dataclasses.replace(config, bounce_mailbox=url, unsubscribe_mailbox=url,
                                              bounce_mailbox_password=server.password)
                    rows.append(run(f"dovecot {scheme}" + (" (plain)" if tls == "none" else " (TLS)"), engine, cfg))
                    engine.dispose()
                finally:
                    server.stop()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
