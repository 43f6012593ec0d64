"""SMTP PIPELINING (RFC 2920) against a real server on 127.0.0.1 that *requires* it: the server
answers MAIL only once RCPT and DATA have arrived too, so a client that waited for each reply
would stall (and time out): passing proves the three commands went out in one write. Refusals
in the middle of a pipelined group are judged as without pipelining and the connection stays
usable."""

from __future__ import annotations

import socket
import threading

import pytest

from newsletter.dispatch.personalize import Built
from newsletter.dispatch.smtp import SMTPSession, parse_smtp_url


class PipeliningOnlyServer:
    """A minimal SMTP server that offers PIPELINING and holds MAIL's reply until the group's
    RCPT and DATA lines are in. ``reject``: recipients refused with 550 5.1.1; ``data_anyway``:
    answer 354 to DATA even when no recipient was accepted (a misbehaving server)."""

    def __init__(self, *, reject=(), data_anyway=False):
        self.reject, self.data_anyway = set(reject), data_anyway
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[str, bytes]] = []
        self.commands: list[str] = []
        self.envelope_in = threading.Event()  # a MAIL/RCPT/DATA group has been read
        self.content_in = threading.Event()  # a message's last content line (not its end) has been read
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(10)
        f = conn.makefile("rb")
        out = conn.makefile("wb")

        def reply(*lines):
            out.write(b"".join(line.encode() + b"\r\n" for line in lines))
            out.flush()

        def line():
            raw = f.readline()
            if not raw:
                raise EOFError
            text = raw.decode().rstrip("\r\n")
            self.commands.append(text)
            return text

        try:
            reply("220 pipelines only")
            while True:
                cmd = line()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    reply("250-localhost", "250-PIPELINING", "250 8BITMIME")
                elif verb == "MAIL":
                    rcpt, data = line(), line()  # the whole group before any answer
                    self.envelope_in.set()
                    to = rcpt.split("<", 1)[1].rstrip(">")
                    ok = to not in self.reject
                    go = ok or self.data_anyway
                    reply("250 2.1.0 ok", "250 2.1.5 ok" if ok else "550 5.1.1 no such user",
                          "354 go ahead" if go and data.upper() == "DATA" else "503 5.5.1 no valid recipients")
                    if go:
                        body = b""
                        while True:
                            raw = f.readline()
                            if raw == b"":  # the connection dropped in the middle: nothing is delivered
                                return
                            if raw == b".\r\n":
                                break
                            body += raw
                            if raw == b"..leading dot\r\n":  # _built's last line, dot-stuffed
                                self.content_in.set()
                        if ok:
                            self.messages.append((to, body))
                            reply("250 2.0.0 queued")
                        else:
                            reply("554 5.5.1 no valid recipients")
                elif verb == "RSET":
                    reply("250 ok")
                elif verb == "NOOP":
                    reply("250 ok")
                elif verb == "QUIT":
                    reply("221 bye")
                    return
                else:
                    reply("502 not here")
        except (EOFError, OSError):
            return
        finally:
            conn.close()


def _built(to: str) -> Built:
    data = f"To: {to}\r\nSubject: hi\r\n\r\nHello {to}\r\n.leading dot\r\n".encode()
    return Built("news@example.org", to, data, f"<{to}>")


def _session(port: int) -> SMTPSession:
    return SMTPSession(parse_smtp_url(f"smtp://127.0.0.1:{port}", tls="none", timeout=5.0))


def test_commands_go_out_in_one_group_and_every_copy_arrives():
    with PipeliningOnlyServer() as srv:
        s = _session(srv.port)
        try:
            outcomes = [s.send(_built(f"reader{i}@example.com")) for i in range(3)]
        finally:
            s.close()
    assert [o.state for o in outcomes] == ["sent"] * 3, [o.reply for o in outcomes]
    assert [to for to, _ in srv.messages] == [f"reader{i}@example.com" for i in range(3)]
    assert b"\r\n..leading dot" in srv.messages[0][1]  # dot-stuffing unchanged


@pytest.mark.parametrize("data_anyway", [False, True])
def test_a_refused_recipient_in_a_group_fails_alone_and_the_connection_goes_on(data_anyway):
    with PipeliningOnlyServer(reject={"ghost@example.com"}, data_anyway=data_anyway) as srv:
        s = _session(srv.port)
        try:
            ghost = s.send(_built("ghost@example.com"))
            ana = s.send(_built("ana@example.com"))
        finally:
            s.close()
    assert ghost.state == "failed" and ghost.suppress and "5.1.1" in ghost.reply
    assert ana.state == "sent"
    assert [to for to, _ in srv.messages] == ["ana@example.com"]
    assert "RSET" in [c.upper() for c in srv.commands]  # the failed group was reset before the next


def test_a_gated_send_writes_the_envelope_before_the_gate_and_the_content_only_after_it():
    """The sender commits the copy's `sending` mark in the gate: the envelope's round trip overlaps
    that commit, and no content reaches the server before the gate said yes."""
    seen: dict = {}
    with PipeliningOnlyServer() as srv:
        s = _session(srv.port)
        s.connect()

        def gate() -> bool:
            seen["envelope_in"] = srv.envelope_in.wait(5)
            seen["messages"] = list(srv.messages)
            return True

        try:
            out = s.send_gated(_built("ana@example.com"), gate)
            again = s.send(_built("ben@example.com"))  # the connection goes on as usual
        finally:
            s.close()
    assert seen == {"envelope_in": True, "messages": []}
    assert out is not None and out.state == "sent" and again.state == "sent"
    assert [to for to, _ in srv.messages] == ["ana@example.com", "ben@example.com"]


@pytest.mark.parametrize("refusal", ["no", "error"])
def test_a_gate_that_refuses_or_fails_drops_the_connection_and_delivers_nothing(refusal):
    with PipeliningOnlyServer() as srv:
        s = _session(srv.port)
        s.connect()

        def gate() -> bool:
            assert srv.envelope_in.wait(5)
            if refusal == "error":
                raise RuntimeError("the ledger is gone")
            return False

        try:
            if refusal == "error":
                with pytest.raises(RuntimeError, match="ledger is gone"):
                    s.send_gated(_built("ana@example.com"), gate)
            else:
                assert s.send_gated(_built("ana@example.com"), gate) is None
            assert s.conn is None  # dropped, not QUIT (which would have been taken as content)
        finally:
            s.close()
        srv.thread.join(5)
    assert srv.messages == [] and not srv.content_in.is_set()
    assert [c.split(" ")[0].upper() for c in srv.commands] == ["EHLO", "MAIL", "RCPT", "DATA"]


@pytest.mark.parametrize("answer", [True, False])
def test_a_refused_recipient_asks_the_gate_once_so_the_attempt_is_counted(answer):
    """No content goes out for a refused recipient, but the gate (the `sending` mark, which
    counts the attempt) is still asked, once; a no then means no outcome to record."""
    asked = []
    with PipeliningOnlyServer(reject={"ghost@example.com"}) as srv:
        s = _session(srv.port)
        s.connect()
        try:
            out = s.send_gated(_built("ghost@example.com"), lambda: asked.append(1) or answer)
            if answer:
                after = s.send(_built("ana@example.com"))
        finally:
            s.close()
    assert asked == [1]
    if answer:
        assert out is not None and out.state == "failed" and "5.1.1" in out.reply
        assert after.state == "sent" and [to for to, _ in srv.messages] == ["ana@example.com"]
    else:
        assert out is None and srv.messages == []


def test_a_real_server_delivers_nothing_when_the_gate_says_no():
    """aiosmtpd (which offers no PIPELINING: the gate comes before MAIL): when the gate says no
    nothing is delivered, and the next copy goes out."""
    from smtp_server import SMTPTestServer

    with SMTPTestServer() as srv:
        s = SMTPSession(parse_smtp_url(f"smtp://{srv.host}:{srv.port}", tls="none", timeout=5.0))
        s.connect()
        assert s.conn is not None and not s.conn.has_extn("pipelining")
        try:
            assert s.send_gated(_built("ana@example.com"), lambda: False) is None
            out = s.send_gated(_built("ben@example.com"), lambda: True)
        finally:
            s.close()
        assert out is not None and out.state == "sent", out
        assert [r.rcpt_tos for r in srv.received()] == [["ben@example.com"]]


def test_the_benchmarks_latency_sink_counts_what_it_accepted_and_offers_pipelining():
    """benchmarks/latency_sink.py (the relay far away of send.py and workers.py --latency), here
    without latency: a pipelined session's copies are counted, once each."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from latency_sink import serve

    port, counter = serve(True, 0.0)
    s = _session(port)
    try:
        s.connect()
        assert s.conn is not None and s.conn.has_extn("pipelining")
        outcomes = [s.send(_built(f"reader{i}@example.com")) for i in range(3)]
    finally:
        s.close()
    assert [o.state for o in outcomes] == ["sent"] * 3
    assert counter.messages == 3
