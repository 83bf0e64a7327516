"""Socket addresses as people read them: ``192.0.2.7:5000``, ``[2001:db8::1]:5000``.

One formatter for every layer (log lines, error messages, the chat's UDP names), so that
an address reads the same everywhere. Pure: no sockets, no trio.
"""

from __future__ import annotations

__all__ = ["format_address"]


def format_address(address: object) -> str:
    """``host:port`` for an IPv4 address, ``[host]:port`` for IPv6, ``str()`` otherwise.

    Args:
      address: a socket address (``(host, port)`` or the longer IPv6 tuple), or anything
        else (a Unix socket path, None), which is shown as ``str()``.
    """
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
