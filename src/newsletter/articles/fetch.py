"""HTTP(S) fetching for every remote source: one function with a total deadline, a size cap,
a clear User-Agent, a bounded number of redirects, the charset from the HTTP header, and the
address policy of ``netpolicy`` (no loopback, private or reserved addresses unless allowed)
checked on every connection, redirects included.

Built on the standard library's ``urllib`` rather than httpx: httpx is only a test
dependency here, and urllib gives everything a source fetch needs (redirect control
through its handler, streaming reads for the size cap) without adding a runtime
dependency. Every failure becomes a one-line ``SourceError`` naming the URL.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass

from .. import __version__
from ..errors import SourceError
from .netpolicy import Deadline, FetchPolicy

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


@dataclass
class Fetched:
    """What a fetch returns: the body as bytes and what the server said about it."""

    url: str
    final_url: str
    content: bytes
    content_type: str | None
    charset: str | None


def user_agent(site_url: str | None = None) -> str:
    """The User-Agent every fetch sends: names the tool and, when known, the publisher's site."""
    return f"newsletter/{__version__} (+{site_url or 'https://example.org'})"


def is_url(source: str) -> bool:
    """True when ``source`` looks like an absolute http(s) URL (the only schemes fetched)."""
    try:
        return urllib.parse.urlsplit(source.strip()).scheme.lower() in {"http", "https"}
    except ValueError:  # e.g. "http://[" (an unterminated IPv6 host): still meant as a URL
        return source.strip().lower().startswith(("http://", "https://"))


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows at most ``max_redirections`` redirects, only to http(s), and detects loops."""

    def __init__(self, url: str, max_redirections: int):
        self.source_url = url
        # urllib reads the limit from the instance too; typeshed declares it a class variable.
        self.max_redirections = max_redirections  # type: ignore[misc]
        self.max_repetitions = 1  # visiting the same URL twice is a loop

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in {"http", "https"}:
            raise SourceError(self.source_url, f"redirected to a non-HTTP URL {newurl!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def http_error_302(self, req, fp, code, msg, headers):
        visited = getattr(req, "redirect_dict", {})
        newurl = headers.get("location") or headers.get("uri")
        if newurl:
            target = urllib.parse.urljoin(req.full_url, newurl)
            if urllib.parse.urlsplit(target).scheme.lower() not in {"http", "https"}:
                raise SourceError(self.source_url, f"redirected to a non-HTTP URL {target!r}")
            if target in visited or target == self.source_url:
                raise SourceError(self.source_url, f"redirect loop (back to {target})")
            if len(visited) >= self.max_redirections:
                raise SourceError(self.source_url, f"too many redirects (more than {self.max_redirections})")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _guarded(connection_class, deadline: Deadline):
    """A connection factory for ``do_open`` whose sockets come from ``deadline.connect`` (the
    address check and the fetch's deadline)."""
    def connection(host, **kw):
        conn = connection_class(host, **kw)
        conn._create_connection = deadline.connect  # http.client's socket hook, not in typeshed
        return conn

    return connection


class _HTTPHandler(urllib.request.HTTPHandler):
    """Plain HTTP through connections that check the address and obey the fetch's deadline."""

    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_guarded(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS likewise: the TCP connection goes to the checked address, TLS still verifies the host name."""

    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        connection = _guarded(http.client.HTTPSConnection, self.deadline)

        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]  # set by HTTPSHandler.__init__, not in typeshed


def fetch(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    user_agent_string: str | None = None,
    max_redirects: int = MAX_REDIRECTS,
    accept: str = "*/*",
    policy: FetchPolicy | None = None,
) -> Fetched:
    """GET ``url`` and return its body; raise ``SourceError`` naming the URL on any failure.

    ``timeout`` bounds the whole fetch (name resolution, connect, headers, body, every
    redirect), not each socket read; ``max_bytes`` caps the (decompressed) body; redirects
    are followed up to ``max_redirects`` and a loop is an error. ``policy`` says which
    addresses may be connected to (default: public ones only); proxies from the environment
    are not used, since the policy checks the address actually connected to.
    """
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - validates the port now rather than deep inside urllib
    except ValueError as e:
        raise SourceError(url, f"invalid URL: {e}") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise SourceError(url, "only http:// and https:// URLs can be fetched")
    if not parts.hostname:
        raise SourceError(url, "URL has no host name")

    deadline = Deadline(url, timeout, policy or FetchPolicy())
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _HTTPHandler(deadline), _HTTPSHandler(deadline), _RedirectHandler(url, max_redirects)
    )
    request = urllib.request.Request(
        url,
        headers={
            "User-Agent": user_agent_string or user_agent(),
            "Accept": accept,
            "Accept-Encoding": "gzip, deflate",
        },
    )
    with deadline:
        try:
            with opener.open(request, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes and not resp.headers.get("Content-Encoding"):
                    raise SourceError(url, f"too large: {int(length)} bytes (limit {max_bytes})")
                content = _read_capped(resp, url, max_bytes, deadline)
                content_type = resp.headers.get_content_type() if resp.headers.get("Content-Type") else None
                charset = resp.headers.get_content_charset()
                final_url = resp.geturl()
        except SourceError:
            raise
        except Exception as e:
            if deadline.expired:  # the timer shut the sockets down: whatever broke, time ran out
                raise SourceError(url, f"timed out after {timeout:g} s") from None
            raise _explain(e, url, parts, timeout) from None
        if deadline.expired:  # a body cut short by the timer is not a body
            raise SourceError(url, f"timed out after {timeout:g} s")
    return Fetched(url=url, final_url=final_url, content=content, content_type=content_type, charset=charset)


def _explain(e: Exception, url: str, parts, timeout: float) -> SourceError | Exception:
    """The one-line SourceError for what urllib/http.client raised (anything else is re-raised)."""
    if isinstance(e, urllib.error.HTTPError):
        reason = e.reason if isinstance(e.reason, str) else http.client.responses.get(e.code, "")
        if e.code in (301, 302, 303, 307, 308):
            return SourceError(url, f"redirect (HTTP {e.code}) that cannot be followed")
        return SourceError(url, f"HTTP {e.code} {reason}".rstrip())
    if isinstance(e, urllib.error.URLError):
        cause = e.reason
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return SourceError(url, f"timed out after {timeout:g} s")
        if isinstance(cause, ssl.SSLError):
            return SourceError(url, f"TLS error: {cause}")
        if isinstance(cause, socket.gaierror):
            return SourceError(url, f"cannot resolve host {parts.hostname!r}")
        if isinstance(cause, ConnectionRefusedError):
            return SourceError(url, "connection refused")
        return SourceError(url, f"cannot connect: {cause}")
    if isinstance(e, (socket.timeout, TimeoutError)):
        return SourceError(url, f"timed out after {timeout:g} s")
    if isinstance(e, (http.client.HTTPException, ConnectionError, OSError)):
        return SourceError(url, f"connection failed: {type(e).__name__} {e}".strip())
    if isinstance(e, ValueError):  # malformed URL details urllib notices late (bad port, ...)
        return SourceError(url, f"invalid URL: {e}")
    return e


def _read_capped(resp, url: str, max_bytes: int, deadline: Deadline) -> bytes:
    """Read the body in chunks, decompressing gzip/deflate, stopping at the cap or the deadline."""
    encoding = (resp.headers.get("Content-Encoding") or "").strip().lower()
    decomp = None
    if encoding in {"gzip", "x-gzip"}:
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decomp = zlib.decompressobj()
    out = bytearray()
    while True:
        deadline.remaining()  # raises once the budget is spent
        chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
        if not chunk:
            break
        if decomp is not None:
            try:
                chunk = decomp.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as e:
                raise SourceError(url, f"corrupt {encoding} body: {e}") from None
        out += chunk
        if len(out) > max_bytes:
            raise SourceError(url, f"too large: more than {max_bytes} bytes")
    if decomp is not None:
        out += decomp.flush()
        if len(out) > max_bytes:
            raise SourceError(url, f"too large: more than {max_bytes} bytes")
    return bytes(out)
