"""Which addresses a fetch may connect to, and the connection that enforces it.

Every outbound fetch (feeds, pages, URL lists, the Vimeo oEmbed lookup) resolves the host
itself, refuses loopback, private, link-local, reserved, multicast and unspecified
addresses (IPv4 and IPv6, including IPv4 addresses carried inside IPv6: mapped, NAT64,
6to4, Teredo), then connects to the very address it checked, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot slip through. Redirects open
new connections through the same check. ``allow_private_fetch`` turns the check off and
``fetch_allow_networks`` lets named networks through (see docs/fetching.md).

``Deadline`` makes ``fetch_timeout`` a total budget for a whole fetch (name resolution,
connect, headers, body, every redirect): when it passes, every socket the fetch opened is
shut down, which wakes a read blocked on a server that trickles one byte at a time.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from ..errors import ConfigError, SourceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not private, not public either


def parse_networks(values: Iterable[str], setting: str = "fetch_allow_networks") -> tuple[IPNetwork, ...]:
    """CIDR strings ("10.1.0.0/16", "fd00::/8", "192.0.2.7") → networks; ConfigError naming the bad one."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(str(v).strip(), strict=False))
        except ValueError as e:
            raise ConfigError(f"{setting}: {v!r} is not a network like 10.1.0.0/16 ({e})") from None
    return tuple(out)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d, NAT64, 6to4, Teredo client)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address ("loopback", "private", ...), or None when it is public."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        kind = address_kind(inner)
        if kind:
            return kind
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return None  # ::ffff:8.8.8.8 is 8.8.8.8
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may connect to: public addresses, plus everything (``allow_private``) or
    the listed ``allow_networks``."""

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, config) -> "FetchPolicy":
        return cls(
            allow_private=bool(getattr(config, "allow_private_fetch", False)),
            allow_networks=parse_networks(getattr(config, "fetch_allow_networks", None) or ()),
        )

    def refusal(self, ip: IPAddress) -> str | None:
        """Why a connection to ``ip`` is refused (the kind of address), or None when it is allowed."""
        if self.allow_private:
            return None
        kind = address_kind(ip)
        if kind is None:
            return None
        inner = embedded_ipv4(ip)
        for net in self.allow_networks:
            if ip in net or (inner is not None and inner in net):
                return None
        return kind


class Deadline:
    """A total time budget for one fetch. ``connect`` is the connection factory handed to
    http.client: it resolves, checks every address against the policy, connects to an allowed
    one and remembers the socket so that ``expire`` (run by a timer) can shut it down."""

    def __init__(self, url: str, timeout: float, policy: FetchPolicy):
        self.url = url
        self.timeout = timeout
        self.policy = policy
        self.ends = time.monotonic() + timeout
        self.expired = False
        self._lock = threading.Lock()
        self._handles: list[socket.socket] = []
        self._timer = threading.Timer(max(0.0, timeout), self.expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            handles, self._handles = self._handles, []
        for h in handles:
            h.close()

    def remaining(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0 or self.expired:
            raise SourceError(self.url, f"timed out after {self.timeout:g} s")
        return left

    def expire(self) -> None:
        """Out of time: shut every socket of this fetch down (a blocked read returns at once)."""
        with self._lock:
            self.expired = True
            handles = list(self._handles)
        for h in handles:
            try:
                h.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _track(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same socket: TLS wrapping detaches the original object,
        # but shutting the duplicate down still ends the connection both share.
        handle = sock.dup()
        with self._lock:
            self._handles.append(handle)
            expired = self.expired
        if expired:
            self.expire()

    def resolve(self, host: str, port: int) -> list[tuple]:
        """getaddrinfo within the remaining budget (a hung resolver cannot outlast the deadline)."""
        try:
            ipaddress.ip_address(host.strip("[]").split("%")[0])
            return socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except ValueError:
            pass
        box: dict = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="fetch-resolve", daemon=True).start()
        if not done.wait(self.remaining()):
            raise SourceError(self.url, f"timed out after {self.timeout:g} s (resolving {host!r})")
        if "error" in box:
            raise SourceError(self.url, f"cannot resolve host {host!r}")
        return box["infos"]

    def connect(self, address, timeout=None, source_address=None, **_) -> socket.socket:
        """http.client's ``_create_connection``: resolve, check, connect to the checked address."""
        host, port = address
        infos = self.resolve(host, port)
        allowed, refused = [], None
        for family, type_, proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            kind = self.policy.refusal(ip)
            if kind:
                refused = refused or (ip, kind)
            else:
                allowed.append((family, type_, proto, sockaddr))
        if not allowed:
            if refused is None:
                raise SourceError(self.url, f"cannot resolve host {host!r}")
            ip, kind = refused
            shown = host if host == str(ip) else f"{host} ({ip})"
            raise SourceError(
                self.url,
                f"refused to connect to {shown}: a {kind} address (set allow_private_fetch = true, "
                f"or list its network in fetch_allow_networks, to allow it)",
            )
        error: OSError | None = None
        for family, type_, proto, sockaddr in allowed:
            sock = socket.socket(family, type_, proto)
            try:
                self._track(sock)
                sock.settimeout(min(self.remaining(), timeout) if isinstance(timeout, (int, float)) else self.remaining())
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                error = e
            except SourceError:
                sock.close()
                raise
        assert error is not None
        raise error
