"""The UDP client: a connected socket as a message channel (see :func:`open_udp_channel`)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ..._errors import ConnectError, MessageTooLargeError, TriosockError, describe_oserror
from ..._sansio.addresses import format_address
from .._lifecycle import check_port
from .sockets import MAX_UDP_PAYLOAD

__all__ = ["DatagramTooLargeError", "PeerUnreachableError", "UDPChannel", "open_udp_channel"]


class PeerUnreachableError(trio.BrokenResourceError, TriosockError):
    """The peer's host reported (through ICMP) that nothing listens on its port.

    A :class:`trio.BrokenResourceError`, so code written against trio's channel contract
    handles it without knowing triosock.
    """


class DatagramTooLargeError(MessageTooLargeError):
    """A datagram to send is longer than UDP carries (65,507 bytes over IPv4)."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(limit, size)
        self.args = (f"a datagram of {size} bytes is over UDP's limit of {limit} bytes",)


class UDPChannel(trio.abc.Channel[bytes]):
    """A connected UDP socket as a ``trio.abc.Channel[bytes]``: one datagram a message.

    ``receive()`` returns the next datagram from the connected peer (others are filtered
    by the kernel). When the peer's host answers with ICMP port-unreachable, the next
    ``send`` or ``receive`` raises :class:`PeerUnreachableError`.
    """

    def __init__(self, sock: trio.socket.SocketType, max_datagram: int = MAX_UDP_PAYLOAD) -> None:
        self._sock = sock
        self._size = max_datagram + 1

    @property
    def socket(self) -> trio.socket.SocketType:
        """The connected trio socket underneath."""
        return self._sock

    async def send(self, value: bytes) -> None:
        """Send ``value`` as one datagram.

        Raises:
          DatagramTooLargeError: longer than a UDP datagram can carry (or than the path
            allows, as the kernel says); nothing is sent, and the channel stays usable.
        """
        with self._translate_errors("send"):
            try:
                await self._sock.send(value)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise DatagramTooLargeError(MAX_UDP_PAYLOAD, len(value)) from exc
                raise

    async def receive(self) -> bytes:
        with self._translate_errors("receive"):
            return await self._sock.recv(self._size)
        raise AssertionError("unreachable")  # pragma: no cover - for type checkers

    @contextmanager
    def _translate_errors(self, what: str) -> Iterator[None]:
        """OSError at this edge becomes trio's stream errors or PeerUnreachableError."""
        try:
            yield
        except ConnectionRefusedError as exc:
            raise PeerUnreachableError(f"nothing listens at {self._peer()}") from exc
        except OSError as exc:
            if self._sock.fileno() == -1:
                raise trio.ClosedResourceError("the channel was closed") from exc
            raise trio.BrokenResourceError(f"{what} failed: {describe_oserror(exc)}") from exc

    def _peer(self) -> str:
        try:
            return format_address(self._sock.getpeername())
        except OSError:
            return "the peer"

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()


async def open_udp_channel(
    host: str, port: int, *, max_datagram: int = MAX_UDP_PAYLOAD
) -> UDPChannel:
    """A UDP socket connected to ``host:port``, as a :class:`UDPChannel`.

    Raises:
      ConnectError: the host does not resolve or the address cannot be reached.
    """
    check_port(port)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, type_, proto, _, sockaddr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
    except OSError as exc:
        where = format_address((host, port))
        raise ConnectError(f"cannot reach {where} (udp): {describe_oserror(exc)}") from exc
    try:
        await sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        where = format_address((host, port))
        raise ConnectError(f"cannot reach {where} (udp): {describe_oserror(exc)}") from exc
    return UDPChannel(sock, max_datagram)
