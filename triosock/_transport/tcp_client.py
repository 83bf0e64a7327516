"""TCP (and TLS) clients: a stream or a framed channel to ``host:port``, with errors a
user can read (``cannot connect to 127.0.0.1:7070: connection refused``; a TLS failure
as :func:`~triosock._transport.tls.client_handshake` says it)."""

from __future__ import annotations

import os
import ssl

import trio

from .._errors import ConnectError, describe_oserror
from .._sansio.addresses import format_address
from .._sansio.framing import Framer
from ._lifecycle import check_port
from .channel import FramedChannel
from .tls import client_handshake

__all__ = ["open_tcp_channel", "open_tcp_stream"]


def _connect_reason(exc: OSError) -> str:
    """Why a connect failed: trio's "all attempts to connect ... failed" carries the
    attempts' own errors (one per address tried) in its cause; say theirs, once each."""
    attempts: list[OSError] = []
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        attempts = [e for e in cause.exceptions if isinstance(e, OSError)]
    elif isinstance(cause, OSError):
        attempts = [cause]
    reasons = list(
        dict.fromkeys(
            os.strerror(e.errno).lower() if e.errno else describe_oserror(e) for e in attempts
        )
    )
    return ", ".join(reasons) if reasons else describe_oserror(exc)


async def open_tcp_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> trio.abc.HalfCloseableStream | trio.SSLStream[trio.SocketStream]:
    """Open a TCP (or TLS, with ``ssl_context``) stream to ``host:port``.

    With TLS the handshake is done here, so a certificate problem surfaces as a
    :class:`~triosock.ConnectError` at once rather than on the first send.

    Args:
      host, port: where to connect.
      ssl_context: speak TLS, checking the server with this client context
        (``ssl.create_default_context()`` trusts the system's CAs; ``cafile=`` a CA of
        your own).
      server_hostname: the name the server's certificate must have (default ``host``;
        an IP address is checked against the certificate's IP addresses).

    A cancel point. No timeout argument, as trio has it: to bound the connect and the
    handshake, put the call in a cancel scope (the command line's clients give them
    :data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT` seconds).

    Returns:
      The stream: trio's ``SocketStream``, or an ``SSLStream`` over one.

    Raises:
      ConnectError: refused, unreachable, unknown host, or a failed TLS handshake (one
        line: ``TLS handshake with 127.0.0.1:7070 failed: certificate verify failed:
        self-signed certificate``).
    """
    check_port(port)
    where = format_address((host, port))
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectError(f"cannot connect to {where}: {_connect_reason(exc)}") from exc
    if ssl_context is None:
        return stream
    tls = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname or host)
    try:
        await client_handshake(tls, where)
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


async def open_tcp_channel(
    host: str,
    port: int,
    *,
    framer: Framer | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> FramedChannel:
    """Connect and return a :class:`~triosock.FramedChannel` (lines by default).

    Args:
      host, port, ssl_context, server_hostname: as for :func:`open_tcp_stream`.
      framer: how messages are framed (lines by default).

    Raises:
      ConnectError: as :func:`open_tcp_stream` raises it.
    """
    stream = await open_tcp_stream(
        host, port, ssl_context=ssl_context, server_hostname=server_hostname
    )
    return FramedChannel(stream, framer)
