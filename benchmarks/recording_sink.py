#!/usr/bin/env python
"""An SMTP sink in a process of its own that records every message it accepts: one line
``recipient<TAB>Message-ID`` per recipient, appended (and flushed) before it answers 250, so a
message the sender saw accepted is always in the file, and one the sink never accepted never is.

    python benchmarks/recording_sink.py --host 127.0.0.1 --port 2525 --log received.tsv

Prints ``ready HOST PORT`` on stdout once it listens; stops on SIGTERM. Used by
benchmarks/soak.py and the tests that kill workers (a sink inside the test process would share its
fate and its GIL; here the senders are the only thing being killed). :class:`Sink` starts one.
"""

from __future__ import annotations

import argparse
import collections
import email.parser
import email.policy
import signal
import subprocess
import sys
from pathlib import Path


class _Recorder:
    def __init__(self, log: Path):
        self.out = open(log, "a", encoding="utf-8")

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)
        msgid = str(headers.get("Message-ID") or "-")
        for rcpt in envelope.rcpt_tos:
            self.out.write(f"{rcpt.lower()}\t{msgid}\n")
        self.out.flush()  # the parent reads the file: a line is there before the 250 is
        return "250 2.0.0 OK queued"


def serve(host: str, port: int, log: Path) -> None:
    from aiosmtpd.controller import Controller

    ctl = Controller(_Recorder(log), hostname=host, port=port, ready_timeout=30)
    ctl.start()
    print(f"ready {host} {port}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})  # blocked in every thread (main): only received here
    ctl.stop()


class Sink:
    """A recording sink process: ``url``, ``count()`` of recorded recipients, ``recipients()``."""

    def __init__(self, log: Path, host: str = "127.0.0.1", port: int | None = None, *, prefix: list[str] | None = None):
        import socket

        if port is None:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port, self.log = host, port, Path(log)
        self.prefix = prefix or []  # e.g. ["ip", "netns", "exec", "ns"] to run it in another namespace
        self.proc: subprocess.Popen | None = None
        self._lines = 0
        self._offset = 0

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self, timeout: float = 60) -> "Sink":
        self.log.write_text("")
        self.proc = subprocess.Popen([*self.prefix, sys.executable, __file__, "--host", self.host, "--port",
                                      str(self.port), "--log", str(self.log)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not sel.select(timeout):
            self.stop()
            raise RuntimeError(f"SMTP sink did not start within {timeout} s")
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("ready"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            self.stop()
            raise RuntimeError(f"SMTP sink failed to start: {line.strip()} {err[-500:]}")
        return self

    def count(self) -> int:
        """Recipients recorded so far (read incrementally: cheap to poll)."""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._lines += chunk[:end].count(b"\n")
        self._offset += end
        return self._lines

    def recipients(self) -> collections.Counter:
        """How many copies each recipient got."""
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return collections.Counter(line.split("\t", 1)[0] for line in lines if line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", type=Path, required=True)
    args = ap.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # sigwait receives them
    serve(args.host, args.port, args.log)


if __name__ == "__main__":
    main()
