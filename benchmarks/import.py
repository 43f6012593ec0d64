"""Import benchmark: generate N subscriber rows, import them into SQLite and PostgreSQL
with the real CLI in a child process, report rows/s and the child's peak RSS.

    .venv/bin/python benchmarks/import.py [--rows 1000000] [--skip-pg] [--batch-size 5000]

Peak RSS comes from os.wait4() on the child (ru_maxrss), so it is the import process's
own high-water mark. Timing includes the file check pass, validation and all inserts.
Targets: >= 50,000 rows/s on both databases, peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from proc_cpu import process_cpu

DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "news.example.org"]
CITIES = ["Lisbon", "Porto", "Braga", "Coimbra", "Faro", "Évora"]
PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def generate(path: Path, rows: int, seed: int = 1) -> None:
    """A CSV with email,name,city,plan; ~1% invalid rows and ~1% different-case duplicates."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("email,name,city,plan\n")
        for i in range(rows):
            r = rng.random()
            if r < 0.01:
                email = f"broken{i}.example.com"
            elif r < 0.02 and i > 10:
                j = rng.randrange(i)
                email = f"Reader{j}@{DOMAINS[j % len(DOMAINS)]}".upper()
            else:
                email = f"reader{i}@{DOMAINS[i % len(DOMAINS)]}"
            f.write(f"{email},Reader {i},{CITIES[i % len(CITIES)]},{'pro' if i % 7 == 0 else 'free'}\n")


def run(argv: list[str], env: dict) -> tuple[float, int, str]:
    """Run a setup step (not measured for memory); return (seconds, 0, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = p.communicate()
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    return elapsed, 0, out


def _backend_cpu(app_name: str, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of PostgreSQL backends serving ``app_name`` (same machine: /proc)."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as conn:
            pids = [r[0] for r in conn.execute("select pid from pg_stat_activity where application_name = %s", (app_name,))]
    except Exception:
        return
    for pid in pids:
        if (got := process_cpu(pid)) is not None:
            seen[pid] = got[1]


def run_measured(argv: list[str], env: dict, pg_app: str | None = None) -> tuple[float, int, str, float, float]:
    """Run a child; return (wall seconds, its own peak RSS from wait4(), stdout, its CPU seconds,
    CPU seconds of its PostgreSQL backend(s), sampled every 0.5 s — a slight undercount)."""
    out_f = tempfile.TemporaryFile(mode="w+")
    err_f = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=out_f, stderr=err_f, env=env)
    backend: dict[int, float] = {}
    while pg_app is not None:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        _backend_cpu(pg_app, backend)
        time.sleep(0.5)
    else:
        _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    if p.returncode != 0:
        raise SystemExit(f"import failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    return elapsed, usage.ru_maxrss * 1024, out, usage.ru_utime + usage.ru_stime, sum(backend.values())


def bench(name: str, url: str, csv_path: Path, rows: int, batch_size: int) -> dict:
    app = f"nl-import-bench-{os.getpid()}"
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": url, "NEWSLETTER_SECRET_KEY": "benchmark-secret-key-0123456789", "PGAPPNAME": app}
    pg_app = app if name.startswith("postgresql") else None
    cli = [sys.executable, "-m", "newsletter"]
    run(cli + ["db", "upgrade"], env)
    run(cli + ["lists", "create", "bench", "--name", "Benchmark"], env)
    elapsed, rss, out, cpu, server = run_measured(
        cli + ["subscribers", "import", str(csv_path), "--list", "bench", "--batch-size", str(batch_size)], env, pg_app
    )
    # A second run: everything already present (the resume / re-import path).
    elapsed2, rss2, _, cpu2, server2 = run_measured(
        cli + ["subscribers", "import", str(csv_path), "--list", "bench", "--batch-size", str(batch_size)], env, pg_app
    )
    result = {
        "db": name, "rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed, "peak_rss_mb": rss / 2**20,
        "cpu_seconds": cpu, "rerun_cpu_seconds": cpu2, "server_cpu_seconds": server, "rerun_server_cpu_seconds": server2, "rerun_seconds": elapsed2, "rerun_rows_per_s": rows / elapsed2, "rerun_peak_rss_mb": rss2 / 2**20,
    }
    print(
        f"{name:10s} {rows:>9,d} rows  first import {elapsed:6.1f} s = {rows / elapsed:9,.0f} rows/s "
        f"(CPU: import process {cpu:5.1f} s" + (f" + PostgreSQL backend {server:5.1f} s" if pg_app else "") + f"), peak RSS {rss / 2**20:4.0f} MB"
        f"\n{'':10s} {'':>9s}       re-import    {elapsed2:6.1f} s = {rows / elapsed2:9,.0f} rows/s (CPU: import process {cpu2:5.1f} s"
        + (f" + PostgreSQL backend {server2:5.1f} s" if pg_app else "") + f"), peak RSS {rss2 / 2**20:4.0f} MB",
        flush=True,
    )
    print("   " + "\n   ".join(line for line in out.splitlines()[1:10]), flush=True)
    return result


def bench_unprivileged(csv_path: Path, rows: int, batch_size: int) -> None:
    """PostgreSQL as an ordinary role (not a superuser, no SET on session_replication_role): the
    import keeps the per-row foreign-key triggers, as it does on most managed databases."""
    import psycopg

    db, role = "nl_bench_" + uuid.uuid4().hex[:8], "nl_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"create role {role} login")
        conn.execute(f'create database "{db}" owner {role}')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgres@", f"{role}@", 1)
    try:
        bench("postgresql (ordinary role, FK triggers kept)", f"{base}/{db}", csv_path, rows, batch_size)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{db}" with (force)')
            conn.execute(f"drop role if exists {role}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--pg-unprivileged", action="store_true",
                    help="also import into PostgreSQL as a role that may not skip the foreign-key triggers")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores (shared with other work: absolute numbers wander), Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="nl-import-bench-") as tmp:
        tmpdir = Path(tmp)
        csv_path = tmpdir / "subscribers.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated {args.rows:,d} rows ({csv_path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
        if not args.skip_sqlite:
            bench("sqlite", f"sqlite:///{tmpdir / 'bench.db'}", csv_path, args.rows, args.batch_size)
        if not args.skip_pg:
            import psycopg

            db = "nl_bench_" + uuid.uuid4().hex[:8]
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'create database "{db}"')
            try:
                base = PG_ADMIN.rsplit("/", 1)[0]
                bench("postgresql", f"{base}/{db}", csv_path, args.rows, args.batch_size)
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'drop database if exists "{db}" with (force)')
            if args.pg_unprivileged:
                bench_unprivileged(csv_path, args.rows, args.batch_size)


if __name__ == "__main__":
    main()
