#!/usr/bin/env python
"""An SMTP sink that answers like a relay far away: it waits ``--latency`` ms before each batch
of replies it writes (one network round trip), offers PIPELINING (or not), accepts everything
and counts the messages. This machine's kernel has no ``netem``, so the delay is the sink's.

    python benchmarks/latency_sink.py --port 2525 --latency 5 [--no-pipelining]

Prints ``ready PORT`` once it listens and ``messages=N`` when it stops (SIGTERM). The content of
a message is read with one search for the end-of-data line, not line by line, so the sink costs
little CPU per message even for 200 KB messages. :func:`spawn` starts one in a process of its
own (benchmarks/send.py, workers.py); :func:`serve` runs one in a thread instead
(benchmarks/pipelining.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path

LIMIT = 64 * 1024 * 1024  # the largest message the stream reader will hold


class Counter:
    """Messages accepted, over every connection."""

    def __init__(self) -> None:
        self.messages = 0


async def _client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipelining: bool, latency: float,
                  counter: Counter) -> None:
    pending: list[bytes] = []

    async def flush() -> None:
        if pending:
            if latency:
                await asyncio.sleep(latency)
            writer.write(b"".join(pending))
            pending.clear()
            await writer.drain()

    pending.append(b"220 sink\r\n")
    await flush()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"EHLO":
                pending.append(b"250-sink\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n")
            elif verb == b"DATA":
                pending.append(b"354 go\r\n")
                await flush()  # the client waits for 354 before any content
                if not reader._buffer.startswith(b".\r\n"):  # noqa: SLF001 - an empty message ends at once
                    await reader.readuntil(b"\r\n.\r\n")
                else:
                    await reader.readexactly(3)
                counter.messages += 1
                pending.append(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                pending.append(b"221 bye\r\n")
                await flush()
                break
            else:
                pending.append(b"250 ok\r\n")
            if not reader._buffer:  # noqa: SLF001 - nothing more buffered: this batch is complete, answer it
                await flush()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # a client that went away in the middle of a message: nothing counted
    writer.close()


async def _serve(port: int, pipelining: bool, latency: float, counter: Counter, ready) -> None:
    server = await asyncio.start_server(lambda r, w: _client(r, w, pipelining, latency, counter),
                                        "127.0.0.1", port, limit=LIMIT)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def serve(pipelining: bool, latency: float) -> tuple[int, Counter]:
    """Start a sink in a daemon thread of this process on a free port: (port, its counter)."""
    counter = Counter()
    started = threading.Event()
    box: dict = {}

    def ready(port: int) -> None:
        box["port"] = port
        started.set()

    loop = asyncio.new_event_loop()
    threading.Thread(target=lambda: loop.run_until_complete(_serve(0, pipelining, latency, counter, ready)),
                     daemon=True).start()
    started.wait(10)
    return box["port"], counter


def spawn(port: int, latency_ms: float, stderr=None) -> subprocess.Popen:
    """Start this sink as a process on ``port`` and wait until it listens. Its stdout is a pipe
    that holds nothing more until it exits, then ``messages=N``."""
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--port", str(port),
                          "--latency", str(latency_ms)], stdout=subprocess.PIPE, stderr=stderr, text=True)
    if not (p.stdout and p.stdout.readline().startswith("ready")):
        p.kill()
        raise SystemExit("latency_sink.py did not start")
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=5.0, help="ms before each batch of replies")
    ap.add_argument("--no-pipelining", action="store_true")
    args = ap.parse_args()
    counter = Counter()
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(_serve(args.port, not args.no_pipelining, args.latency / 1000, counter,
                                        lambda port: print(f"ready {port}", flush=True)))
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        loop.run_until_complete(main_task)
    except asyncio.CancelledError:
        pass
    print(f"messages={counter.messages}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
