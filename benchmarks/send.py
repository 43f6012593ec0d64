"""Benchmark: send a real 10-article digest to N recipients through the ledger to a C SMTP sink.

    apt-get install -y postfix        # for /usr/sbin/smtp-sink (benchmark only)
    .venv/bin/python benchmarks/send.py [--sizes 10000,100000] [--concurrency 1] [--raw 20000] [--images cid,linked]
        [--db sqlite,postgresql] [--sync full,normal] [--repeat 1] [--latency MS]

Two kinds of message (``--images``): ``cid`` — the thumbnails embedded as CID parts, what a
campaign carries when no ``asset_base_url`` is configured (about 210 KiB a message); ``linked``
— ``asset_base_url`` set, the thumbnails are ``<img src="https://…">`` links and the message is
the HTML and text alone (about 70 KiB). Both by default, each with its own ceiling.

What it measures, in one run, against ``smtp-sink`` on 127.0.0.1 in another process:

- the ceiling: a minimal raw-socket SMTP client sending one pre-built message's bytes
  (EHLO once, then MAIL/RCPT/DATA per message, no pipelining — what our sender does too);
- ``send_campaign`` for each size and each database of ``--db`` (a fresh SQLite file or a fresh
  PostgreSQL database at 127.0.0.1:5432, as the tests use, and a fresh process each, so peak RSS
  is per send): messages/s, and peak RSS (``ru_maxrss``), which must not grow with N. The
  databases take turns (``--repeat`` rounds of them), so their ratio is measured under the same
  load; on PostgreSQL the server's own counters (``pg_stat_database.xact_commit``, the ledger's
  ``n_tup_upd``/``n_tup_hot_upd``) give the commits and row versions per message;
- the CPU a send costs the whole machine per message (sink, database server, everything, from
  ``/proc``; of it, PostgreSQL's server processes): on a small machine where they all share the
  cores, this is what caps messages/s;
- the CPU cost per recipient of personalization + MIME (``MessageFactory.build``), against
  building an ``email.message.EmailMessage`` per recipient for comparison.

No rate limit. Results are printed as a table and as JSON (``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# --srcdir (a child of a --before run): import the sender from another checkout's src/
_SRC = sys.argv[sys.argv.index("--srcdir") + 1] if "--srcdir" in sys.argv else str(REPO / "src")
sys.path.insert(0, _SRC)

SECRET = "benchmark-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int, latency_ms: float = 0.0) -> subprocess.Popen:
    """smtp-sink (C) on 127.0.0.1, or with ``latency_ms`` benchmarks/latency_sink.py: a sink that
    waits that long before each batch of replies, like a relay far away (PIPELINING offered)."""
    if latency_ms:
        from latency_sink import spawn

        return spawn(port, latency_ms)
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(exe):
        sys.exit("smtp-sink not found: apt-get install -y postfix")
    cmd = [exe]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += [f"127.0.0.1:{port}", "256"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            time.sleep(0.02)
    p.kill()
    sys.exit("smtp-sink did not start")


def make_articles(folder: Path) -> None:
    """The sample articles plus generated ones, ten in all."""
    folder.mkdir(parents=True)
    samples = sorted((REPO / "articles").glob("*.md"))
    for f in samples[:10]:
        shutil.copy(f, folder / f.name)
    if (REPO / "articles" / "images").is_dir():
        shutil.copytree(REPO / "articles" / "images", folder / "images")
    for i in range(len(samples), 10):
        body = "\n\n".join(
            f"Paragraph {j} of a longer report on river towns, their ferries and the people who keep them running. "
            "It has enough words to look like a real article in a real digest." for j in range(6))
        (folder / f"2026-11-1{i % 10}-generated-{i}.md").write_text(
            f"---\ntitle: Generated story {i}\ndate: 2026-11-1{i % 10}\nauthor: Bench Writer\ntags: [bench]\n"
            f"summary: A generated story number {i} about river towns.\n---\n\n{body}\n", encoding="utf-8")


def build_db(url: str, n: int) -> None:
    from sqlalchemy import insert

    from newsletter.store import db
    from newsletter.store.lists import create_list
    from newsletter.store.models import Subscriber, utcnow

    db.upgrade(url)
    engine = db.get_engine(url)
    lid = create_list(engine, "weekly", "Weekly").id
    now = utcnow()
    with engine.begin() as conn:
        for start in range(0, n, 10000):
            rows = [{"email": f"reader{i}@example.com", "email_key": f"reader{i}@example.com", "name": f"Reader {i}",
                     "attributes": {"city": "Lyon"}, "created_at": now, "updated_at": now}
                    for i in range(start, min(n, start + 10000))]
            conn.execute(insert(Subscriber.__table__), rows)
        conn.exec_driver_sql(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at) "
            f"SELECT id, {lid}, 'active', created_at, updated_at FROM subscribers")
    engine.dispose()


PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def new_pg_database() -> tuple[str, str]:
    """A fresh, empty PostgreSQL database: (its name, its SQLAlchemy URL)."""
    import uuid

    import psycopg

    name = "nl_bench_send_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def pg_counters(name: str) -> dict:
    """The server's counters for database ``name``: commits, and updates of ledger rows (all, HOT)."""
    import psycopg

    time.sleep(1.2)  # backends report their statistics at most once a second, and on exit
    with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, autocommit=True) as conn:
        commits = conn.execute("select xact_commit from pg_stat_database where datname = current_database()").fetchone()[0]
        row = conn.execute("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables where relname = 'deliveries'").fetchone()
    return {"commits": int(commits), "updates": int(row[0]), "hot_updates": int(row[1])}


ASSET_BASE_URL = "https://news.example.org/assets"


def config_for(url: str, outbox: Path, images: str = "cid", sync: str = ""):
    from newsletter.config import Config

    return Config(database_url=url, secret_key=SECRET, base_url="https://news.example.org",
                  from_address="The Weekly Dispatch <news@example.org>", outbox=str(outbox), concurrency=1,
                  asset_base_url=ASSET_BASE_URL if images == "linked" else None,
                  **({"ledger_sync": sync} if sync else {}))  # (code before ledger_sync: --before)


def vm_hwm_kb() -> int:
    """Peak RSS of this process since exec (ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(args) -> None:
    """Run one send in this fresh process and print JSON (elapsed, rate, peak RSS)."""
    from newsletter.compose import load_digest
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store.db import get_engine
    from proc_cpu import machine_cpu

    config = config_for(args.url, Path(args.tmp) / "outbox", args.images, args.sync or "")
    engine = get_engine(args.url)
    digest = load_digest(args.digest)
    c = create_campaign(engine, digest, ["weekly"], config)
    rss_before = vm_hwm_kb()
    machine0 = machine_cpu()  # (the server processes this send's connections open count from zero)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    samples: list[int] = []

    def progress(p):  # RSS at each tenth of the run: the sender's own memory must stay flat
        if p.total and p.sent_now >= (len(samples) + 1) * p.total / 10:
            samples.append(vm_rss_kb())

    s = send_campaign(engine, c.id, config, smtp=f"smtp://127.0.0.1:{args.port}", tls="none",
                      concurrency=args.concurrency, rate=None, progress_callback=progress)
    elapsed = time.perf_counter() - t0
    machine1 = machine_cpu()  # before exit: the send's database sessions are still open
    print(json.dumps({
        "machine_cpu_s": machine1[0] - machine0[0], "pg_cpu_s": machine1[1] - machine0[1],
        "n": args.child, "sent": s.counts.get("sent", 0), "elapsed": elapsed, "rate": s.counts.get("sent", 0) / elapsed,
        "cpu_s": time.process_time() - cpu0, "rss_before_kb": rss_before,
        "peak_rss_kb": vm_hwm_kb(), "rss_samples_kb": samples, "status": s.status,
    }))


def raw_ceiling(port: int, message: bytes, n: int) -> float:
    """Messages/s of a minimal client: one connection, MAIL/RCPT/DATA per message, bytes pre-built
    (0 with --latency: one connection waiting on a far relay is no ceiling of anything)."""
    if n <= 0:
        return 0.0
    payload = message.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line or line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"EHLO bench.example.org\r\n")
    reply()
    t0 = time.perf_counter()
    for i in range(n):
        s.sendall(b"MAIL FROM:<news@example.org>\r\n")
        reply()
        s.sendall(b"RCPT TO:<reader%d@example.com>\r\n" % i)
        reply()
        s.sendall(b"DATA\r\n")
        reply()
        s.sendall(payload)
        reply()
    elapsed = time.perf_counter() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    return n / elapsed


def build_costs(engine, campaign, config, n: int) -> dict:
    from email.message import EmailMessage

    from newsletter.dispatch.personalize import Recipient
    from newsletter.dispatch.sender import message_factory

    f = message_factory(engine, campaign, config)
    rs = [Recipient(i, 1, f"reader{i}@example.com", f"Reader {i}", {"city": "Lyon"}) for i in range(n)]
    f.build(rs[0])
    t0 = time.process_time()
    size = 0
    for r in rs:
        size += len(f.build(r).data)
    ours = (time.process_time() - t0) / n * 1e6
    m = min(300, n)
    t0 = time.process_time()
    for r in rs[:m]:
        msg = EmailMessage()
        msg["From"] = campaign.from_address
        msg["To"] = f"{r.name} <{r.email}>"
        msg["Subject"] = campaign.subject
        msg.set_content(campaign.text.replace("*|NAME|*", r.name))
        msg.add_alternative(campaign.html.replace("*|NAME|*", r.name), subtype="html")
        msg.as_bytes()
    naive = (time.process_time() - t0) / m * 1e6
    return {"build_us": ours, "emailmessage_us": naive, "message_bytes": size // n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--raw", type=int, default=20000, help="messages for the raw-socket ceiling")
    ap.add_argument("--images", default="cid,linked",
                    help="cid (thumbnails embedded), linked (asset_base_url set), or both: cid,linked")
    ap.add_argument("--db", dest="dbs", default="sqlite", help="sqlite, postgresql, or both: sqlite,postgresql")
    ap.add_argument("--sync", dest="syncs", default="",
                    help="ledger_sync of each send: full, normal or full,normal (default: each database's default)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the databases taking turns")
    ap.add_argument("--before", help="a checkout of the code before a change (e.g. `git worktree add`): each send "
                    "runs with its src/ too, taking turns with this one, and both are reported")
    ap.add_argument("--after", help="with --before: the checkout of the code after the change (default: this one)")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="ms: send to benchmarks/latency_sink.py, which waits this long before each batch of "
                         "replies (a relay far away), instead of smtp-sink; no raw ceiling then")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sync-child", dest="sync", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--srcdir", help=argparse.SUPPRESS)
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--digest", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.latency:
        args.raw = 0
    if args.build:  # the database of a send, made by the code that will send (its own migrations)
        return build_db(args.url, args.build)
    if args.child:
        return child(args)

    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if not args.dbs or set(args.dbs) - {"sqlite", "postgresql"}:
        sys.exit("--db: sqlite, postgresql or sqlite,postgresql")
    args.syncs = [x.strip() for x in args.syncs.split(",") if x.strip()] or [""]
    if set(args.syncs) - {"", "full", "normal"}:
        sys.exit("--sync: full, normal or full,normal")
    modes = [m.strip() for m in args.images.split(",") if m.strip()]
    if not modes or set(modes) - {"cid", "linked"}:
        sys.exit("--images: cid, linked or cid,linked")
    tmp = Path(tempfile.mkdtemp(prefix="nl-bench-send-"))
    port = free_port()
    sink = start_sink(port, args.latency)
    results: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "concurrency": args.concurrency,
                     "load_average": os.getloadavg(), "modes": {}}
    try:
        make_articles(tmp / "articles")
        for mode in modes:
            results["modes"][mode] = run_mode(mode, args, tmp, port)
    finally:
        sink.kill()
        sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()

    print(f"machine: {results['machine']}  ({results['date']}; load average "
          f"{results['load_average'][0]:.1f} before, {results['load_average_after'][0]:.1f} after)")
    for mode, res in results["modes"].items():
        print(f"[{mode}] digest: {res['articles']} articles, HTML {res['html_bytes'] / 1024:.0f} KiB, "
              f"message {res['message_bytes'] / 1024:.0f} KiB ({res['images']} embedded images)")
        print(f"[{mode}] per-recipient build (personalization + MIME): {res['build_us']:.0f} µs "
              f"(EmailMessage per recipient: {res['emailmessage_us']:.0f} µs)")
        print(f"[{mode}] raw-socket ceiling: {res['raw_ceiling']:.0f} msgs/s" if res["raw_ceiling"] else
              f"[{mode}] sink: latency_sink.py, {args.latency:g} ms before each batch of replies (no raw ceiling)")
        for r in res["runs"]:
            ceiling = (r["ceiling_before"] + r["ceiling_after"]) / 2
            pg = r.get("pg")
            per_msg = (f"; per message: {pg['commits'] / r['sent']:.2f} commits, {pg['updates'] / r['sent']:.2f} row "
                       f"updates ({pg['hot_updates'] / max(pg['updates'], 1) * 100:.0f} % HOT)" if pg else "")
            code = f"{r['code']:<6} " if r["code"] != "this" else ""
            machine = (f" (whole machine {r['machine_cpu_s'] / r['sent'] * 1e6:.0f} µs/msg"
                       + (f", of it PostgreSQL's server {r['pg_cpu_s'] / r['sent'] * 1e6:.0f}" if pg else "") + ")"
                       if "machine_cpu_s" in r else "")
            around = (f"({r['rate'] / ceiling * 100:.0f} % of the ceiling measured around it: "
                      f"{r['ceiling_before']:.0f}/{r['ceiling_after']:.0f} msgs/s), " if ceiling else "")
            print(f"[{mode}] {code}{r['db']:<10} send {r['n']:>7} recipients, concurrency {args.concurrency}: {r['rate']:.0f} msgs/s "
                  f"{around}{r['elapsed']:.1f} s, "
                  f"CPU {r['cpu_s'] / r['sent'] * 1e6:.0f} µs/msg{machine}, peak RSS {r['peak_rss_kb'] / 1024:.0f} MiB "
                  f"(RSS from the first to the last tenth of the run: {r['rss_samples_kb'][0] / 1024:.0f} → "
                  f"{r['rss_samples_kb'][-1] / 1024:.0f} MiB), status {r['status']}{per_msg}")
        by_db: dict = {}
        for r in res["runs"]:
            by_db.setdefault((r["n"], r["code"], r["db"]), []).append(r["rate"])
        for n, code in sorted({k[:2] for k in by_db}):
            for sync in args.syncs:
                tag = f"/{sync}" if sync else ""
                lite, pg = by_db.get((n, code, "sqlite" + tag)), by_db.get((n, code, "postgresql" + tag))
                if lite and pg:
                    print(f"[{mode}] {code + ' code, ' if code != 'this' else ''}{n} recipients"
                          f"{', ledger_sync ' + sync if sync else ''}: PostgreSQL / SQLite = "
                          f"{sum(pg) / len(pg) / (sum(lite) / len(lite)) * 100:.0f} % "
                          f"(means of {len(pg)} and {len(lite)} sends taking turns)")
        for n, kind in sorted({(k[0], k[2]) for k in by_db}):
            before, after = by_db.get((n, "before", kind)), by_db.get((n, "after", kind))
            if before and after:
                print(f"[{mode}] {kind}, {n} recipients: after / before = "
                      f"{sum(after) / len(after) / (sum(before) / len(before)):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def run_mode(mode: str, args, tmp: Path, port: int) -> dict:
    """Compose the digest for this kind of message, measure its build cost, its ceiling and each send."""
    from newsletter.compose import ComposeOptions, compose, write_digest
    from newsletter.dispatch.campaigns import campaign_images, create_campaign
    from newsletter.dispatch.personalize import Recipient
    from newsletter.dispatch.sender import message_factory
    from newsletter.store.db import get_engine

    res: dict = {}
    cfg = config_for("sqlite:///" + str(tmp / f"x-{mode}.db"), tmp / "outbox", mode)
    digest = compose([str(tmp / "articles")], cfg, ComposeOptions(limit=10))
    out_dir = tmp / f"out-{mode}"
    write_digest(digest, out_dir)
    res["articles"] = len(digest.articles)
    res["html_bytes"] = len(digest.html.encode())

    # per-recipient build cost (and one pre-built message for the raw ceiling)
    url0 = "sqlite:///" + str(tmp / f"build-{mode}.db")
    build_db(url0, 10)
    e0 = get_engine(url0)
    cfg0 = config_for(url0, tmp / "outbox", mode)
    c0 = create_campaign(e0, digest, ["weekly"], cfg0)
    res["images"] = len(campaign_images(e0, c0.id))
    if mode == "linked" and res["images"]:
        sys.exit("linked mode still embeds images: is asset_base_url honoured by compose?")
    res.update(build_costs(e0, c0, cfg0, 20000))
    one = message_factory(e0, c0, cfg0).build(Recipient(1, 1, "reader1@example.com", "Reader 1"))
    e0.dispose()

    # The machine is shared: measure the ceiling right before and after each send and report the
    # ratio to those neighbouring measurements.
    res["raw_ceiling"] = raw_ceiling(port, one.data, args.raw)
    runs = []
    for n in [int(x) for x in args.sizes.split(",")]:
        for round_ in range(args.repeat):
            for sync in args.syncs:
                for kind in args.dbs:
                    for code in (["before", "after"] if args.before else ["this"]):
                        srcdir = str(Path(args.before if code == "before" else args.after or REPO) / "src")
                        r = one_send(kind, n, mode, args, tmp, port, out_dir, one.data, f"{round_}-{code}{sync}",
                                     srcdir, sync)
                        r["code"] = code
                        runs.append(r)
    res["runs"] = runs
    return res


def one_send(kind: str, n: int, mode: str, args, tmp: Path, port: int, out_dir: Path, message: bytes, tag: str,
             srcdir: str, sync: str = "") -> dict:
    """One send of ``n`` recipients on a fresh database of ``kind``, in a child process, with the
    raw ceiling measured just before and after it (and the server's counters on PostgreSQL)."""
    pg_name = None
    if kind == "postgresql":
        pg_name, url = new_pg_database()
    else:
        url = "sqlite:///" + str(tmp / f"n{n}-{mode}-{tag}.db")
    try:
        subprocess.run([sys.executable, __file__, "--build", str(n), "--url", url, "--srcdir", srcdir], check=True)
        before = pg_counters(pg_name) if pg_name else None
        ceiling = raw_ceiling(port, message, args.raw)
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--url", url, "--port", str(port),
                              "--digest", str(out_dir), "--tmp", str(tmp), "--concurrency", str(args.concurrency),
                              "--images", mode, "--srcdir", srcdir] + (["--sync-child", sync] if sync else []),
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            sys.exit(f"send of {n} ({mode}, {kind}) failed: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["db"] = kind + (f"/{sync}" if sync else "")
        r["ceiling_before"] = ceiling
        r["ceiling_after"] = raw_ceiling(port, message, args.raw)
        if pg_name and before:
            after = pg_counters(pg_name)
            r["pg"] = {k: after[k] - before[k] for k in after}
        return r
    finally:
        if pg_name:
            drop_pg_database(pg_name)


if __name__ == "__main__":
    main()
