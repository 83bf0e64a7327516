"""What an HTTP server refuses before it serves, judged from the bytes a client sent.

Three rules, each a function that returns why a request is refused (or None), so that the
layer with the socket answers and logs it:

* :func:`framing_refusal_untrusted`: a request whose body framing two parsers could read
  two ways (RFC 9112 6.1 and 5.2, as nginx refuses them): ``Content-Length`` beside
  ``Transfer-Encoding``, ``Transfer-Encoding`` in HTTP/1.0, a header folded onto a second
  line (obs-fold).
* :func:`target_refusal_untrusted`: a request target that is neither a path, nor an
  absolute ``http(s)`` URL whose authority parses, nor ``*`` for ``OPTIONS`` (RFC 9112
  3.2).
* :func:`host_refusal_untrusted`: a ``Host`` that is not the server's own: an IP address,
  ``localhost``, the host it was told to bind, or one of the names it was given. A page
  on a DNS name that an attacker points at the server (DNS rebinding) sends its own name,
  so it cannot read the answers. The same names as the WebSocket's ``Origin`` rule.

Pure: no sockets, no trio.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Sequence
from urllib.parse import urlsplit

__all__ = [
    "absolute_target",
    "framing_refusal_untrusted",
    "host_refusal_untrusted",
    "is_own_host",
    "target_refusal_untrusted",
]

# "scheme://" of an absolute-form target (RFC 3986's scheme)
absolute_target = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a request head
_FOLD = re.compile(rb"\n[ \t]")  # a line that continues the one above (obs-fold)


def framing_refusal_untrusted(
    headers: Sequence[tuple[bytes, bytes]], http_version: bytes, raw: bytes
) -> str | None:
    """Why a request's body framing is ambiguous, or None.

    Args:
      headers: the parsed header fields, names in lower case.
      http_version: ``b"1.1"`` or ``b"1.0"``.
      raw: the bytes received from the request's first byte on (its head, maybe more).
    """
    names = {name for name, _ in headers}
    if b"transfer-encoding" in names:
        if b"content-length" in names:
            return "both Content-Length and Transfer-Encoding"
        if http_version == b"1.0":
            return "Transfer-Encoding in an HTTP/1.0 request"
    end = _HEAD_END.search(raw)
    if _FOLD.search(raw, 0, end.start() if end else len(raw)):
        return "a header folded onto a second line (obs-fold)"
    return None


def target_refusal_untrusted(method: bytes, target: bytes) -> str | None:
    """Why a request target is not one to serve, or None."""
    if target.startswith(b"/"):  # origin form: a path, whatever follows
        return None
    text = target.decode("ascii", "replace")
    if target == b"*":
        return None if method == b"OPTIONS" else f"target * for {method.decode('ascii', '?')}"
    if absolute_target.match(text) and text.split(":", 1)[0].lower() in ("http", "https"):
        try:
            parts = urlsplit(text)
            if parts.hostname and parts.port != 0:
                return None
        except ValueError:
            pass
    return f"malformed request target {text[:80]!r}"


def is_own_host(name: str, bound: str, names: Collection[str] = ()) -> bool:
    """True when host ``name`` (no port) is an IP address, ``localhost``, ``bound`` or
    one of ``names`` (all compared without case)."""
    name = name.lower()
    if name in ("localhost", bound.lower()) or name in {other.lower() for other in names}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_refusal_untrusted(
    hosts: Sequence[str], bound: str, names: Collection[str] = ()
) -> str | None:
    """Why a request's ``Host`` header is not this server's own, or None.

    Args:
      hosts: the request's ``Host`` values; none at all is accepted (HTTP/1.0, not a
        browser: a browser always names the host it thinks it talks to).
      bound: the host the server was told to bind.
      names: other host names to accept (from the allowed origins).
    """
    if not hosts:
        return None
    if len(hosts) > 1:
        return "more than one Host"
    host = hosts[0]
    try:
        parts = urlsplit(f"//{host}")
        name = parts.hostname or ""
        _ = parts.port  # a port that is not a number raises
    except ValueError:
        return f"a malformed Host {host[:80]!r}"
    if parts.username is not None or not is_own_host(name, bound, names):
        return f"Host {host[:80]!r} is not this server's"
    return None
