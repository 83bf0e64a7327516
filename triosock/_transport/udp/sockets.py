"""The UDP socket under a server: binding it, its receive buffer, what the kernel
dropped, and which ``recvfrom`` errors concern one earlier datagram rather than the
socket."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from typing import Final

import trio

from .._lifecycle import binding

__all__ = [
    "DEFAULT_RECEIVE_BUFFER",
    "MAX_UDP_PAYLOAD",
    "PEER_ERRNOS",
    "Address",
    "bind_udp",
    "kernel_drops",
    "set_receive_buffer",
]

#: The largest payload a UDP datagram over IPv4 can carry.
MAX_UDP_PAYLOAD: Final = 65507
#: Bytes asked of the kernel for a server socket's receive buffer (SO_RCVBUF).
DEFAULT_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
#: Errors recvfrom reports for one earlier datagram (ICMP), not for the socket.
PEER_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EMSGSIZE,
        errno.ETIMEDOUT,
        errno.EPROTO,
    }
)

#: A numeric (host, port), as ``recvfrom`` gives it.
Address = tuple[str, int]


async def bind_udp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (``SO_REUSEPORT`` if asked).

    Raises:
      BindError: the address does not resolve or cannot be bound.
    """
    with binding(host, port, " (udp)"):
        infos = await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM)
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
    return sock


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes, past ``net.core.rmem_max`` when the
    process may (``SO_RCVBUFFORCE``); return what the kernel reports."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
        with contextlib.suppress(OSError):  # EPERM without CAP_NET_ADMIN: the cap stays
            sock.setsockopt(socket.SOL_SOCKET, force, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for ``sock`` because its receive buffer was full;
    None where the system does not say (Linux's ``/proc/net/udp`` does)."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    wanted = f" {inode} "
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as lines:
                for line in lines:
                    if wanted in line:
                        return int(line.split()[-1])
        except (OSError, ValueError):
            continue
    return None
