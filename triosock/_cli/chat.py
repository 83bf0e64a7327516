"""``python -m triosock chat serve``: the chat server as the command line builds it.

:class:`ChatSettings` is what ``chat serve`` was asked for (parsed by
:mod:`._chat_options`); :meth:`ChatSettings.serve` builds the chat from it (the shared
state, the :class:`~triosock.chat.ChatServer`, its TCP, UDP and web listeners) and
serves. ``python -m triosock chat`` alone serves chat on the defaults: TCP lines on
127.0.0.1:7070, the UDP dialect on 127.0.0.1:7071 and the web page with its WebSocket on
127.0.0.1:7072, with the in-process hub. With ``--tls-cert`` the TCP line port and the
web port speak TLS (see :mod:`._tls`), and ``--plain-tcp``/``--plain-web`` add
plaintext ones beside them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Self

import trio
from websockets.typing import Origin

from .._errors import DirectoryUnavailable
from .._hub import Policy
from .._liveness import expiry_after
from .._sansio.addresses import format_address
from .._services.chat import ChatServer
from .._services.chat._page import ChatPage
from .._services.chat._server import (
    DEFAULT_BURST,
    DEFAULT_HISTORY,
    DEFAULT_HISTORY_ON_JOIN,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_PRESENCE_INTERVAL,
    DEFAULT_PRESENCE_LIMIT,
    DEFAULT_RATE,
    DEFAULT_RESUME_WINDOW,
    DEFAULT_STALL_TIMEOUT,
)
from .._transport.tcp import TCPConnection, TCPServer, serve_tcp
from .._transport.udp import UDPServer, serve_udp
from .._transport.websocket import WebSocketServer, serve_websocket
from ._chat_redis import check_reachable, open_shared_state, private_redis
from ._chat_store import open_accounts, open_store
from ._serve_settings import PortSlot, ServeSettings
from ._serving import ServerStarter, run_servers, tcp_line, udp_line
from ._status_serve import Figures, Status
from ._tls import TLSFiles, tls_note
from ._values import Address
from ._workerenv import worker_index

__all__ = ["ChatSettings"]

TCP_DEFAULT = ("127.0.0.1", 7070)
UDP_DEFAULT = ("127.0.0.1", 7071)
WEB_DEFAULT = ("127.0.0.1", 7072)
IRC_DEFAULT = ("127.0.0.1", 6667)
STATUS_PORT = 7079
HEARTBEAT_DEFAULT = 5.0
#: Datagrams queued per UDP peer: UDP cannot slow a sender, so room for a paste.
UDP_QUEUE = 1024
#: The most connections (TCP, WebSocket) or UDP peers one source address may hold on one
#: listener (Ergo's per-IP default); this machine's own addresses are exempt (see
#: triosock._transport.peraddress).
PER_ADDRESS_DEFAULT = 16


def per_address_refusal(limit: int | None) -> bytes:
    """The line a TCP client past the per-address limit gets before its close."""
    return b"-!- refused: %d connections from your address already (the most)\r\n" % (limit or 0)


@dataclass(frozen=True)
class ChatSettings(ServeSettings):
    """What ``chat serve`` was asked for (each field is the option of that name)."""

    tcp: Address | None = TCP_DEFAULT
    udp: Address | None = UDP_DEFAULT
    web: Address | None = WEB_DEFAULT
    irc: Address | None = IRC_DEFAULT
    web_origin: tuple[str, ...] = ()
    oper: tuple[str, ...] = ()
    tls: TLSFiles | None = None
    plain_tcp: Address | None = None
    plain_web: Address | None = None
    plain_irc: Address | None = None
    redis: str | None = None
    data: str | None = None
    policy: Policy = "disconnect"
    buffer: int = 256
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    rate: float | None = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    max_backlog: int = DEFAULT_MAX_BACKLOG
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    presence_limit: int | None = DEFAULT_PRESENCE_LIMIT
    presence_interval: float = DEFAULT_PRESENCE_INTERVAL
    history: int = DEFAULT_HISTORY
    history_on_join: int = DEFAULT_HISTORY_ON_JOIN
    resume_window: float = DEFAULT_RESUME_WINDOW
    heartbeat: float = HEARTBEAT_DEFAULT
    expiry_factor: float = 2.0
    per_address: int | None = PER_ADDRESS_DEFAULT

    def port_slots(self) -> list[PortSlot]:
        slots = [("tcp", self.tcp, ("tcp",)), ("udp", self.udp, ("udp",))]
        slots += [("web", self.web, ("tcp",)), ("irc", self.irc, ("tcp",))]
        slots += [("plain_tcp", self.plain_tcp, ("tcp",)), ("plain_web", self.plain_web, ("tcp",))]
        slots.append(("plain_irc", self.plain_irc, ("tcp",)))
        return [PortSlot(name, *where, kinds) for name, where, kinds in slots if where]

    async def prepare(self, stack: contextlib.AsyncExitStack) -> Self:
        """The workers share the rooms through Redis: check ``--redis`` answers, or
        start a private redis-server, before the first worker starts."""
        if self.redis is not None:
            await check_reachable(self.redis)
            return self
        return replace(self, redis=await private_redis(stack))

    async def serve(self, status: Status) -> None:
        logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per request
        async with contextlib.AsyncExitStack() as stack:
            hub, directory = await open_shared_state(self.redis, stack)
            shared = hub if self.redis is not None else None
            store, kept = await open_store(self.data, self.history, stack, hub=shared)
            accounts, registered = await open_accounts(self.data, stack, redis=self.redis)
            chat = ChatServer(
                hub,
                directory,
                store=store,
                accounts=accounts,
                opers=self.oper,
                policy=self.policy,
                buffer=self.buffer,
                max_line_length=self.max_line_length,
                rate=self.rate,
                burst=self.burst,
                max_backlog=self.max_backlog,
                stall_timeout=self.stall_timeout,
                presence_limit=self.presence_limit,
                presence_interval=self.presence_interval,
                history=self.history,
                history_on_join=self.history_on_join,
                resume_window=self.resume_window,
            )
            status.extra = functools.partial(_chat_figures, chat)
            listening: list[tuple[str, Address]] = []  # (kind, bound address), as each starts
            context = None if self.tls is None else self.tls.context()
            starters = _Listeners(self, chat, status, listening, context).starters()

            async def hint(nursery: trio.Nursery) -> str:
                await trio.lowlevel.checkpoint()
                return "\n".join(
                    [*_join_hints(self.common.prog, listening), f"{kept}; {registered}"]
                )

            async with chat:  # runs the fan-out task
                await run_servers([*starters, hint], status)


class _Listeners:
    """The starters of the chat's listeners, each adding its server to the status and
    its bound address to ``listening``; with ``context``, ``--tcp`` and ``--web`` speak
    TLS, and ``--plain-tcp`` and ``--plain-web`` (each after its TLS twin) do not."""

    def __init__(
        self,
        settings: ChatSettings,
        chat: ChatServer,
        status: Status,
        listening: list[tuple[str, Address]],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.chat = chat
        self.status = status
        self.listening = listening
        self.reuse = worker_index() is not None
        self.context = context

    def starters(self) -> list[ServerStarter]:
        settings, tls = self.settings, self.context is not None
        wanted: list[tuple[Address | None, Callable[[Address, trio.Nursery], Awaitable[str]]]] = [
            (settings.tcp, functools.partial(self.start_tcp, tls=tls)),
            (settings.plain_tcp, functools.partial(self.start_tcp, tls=False)),
            (settings.udp, self.start_udp),
            (settings.web, functools.partial(self.start_web, tls=tls)),
            (settings.plain_web, functools.partial(self.start_web, tls=False)),
            (settings.irc, functools.partial(self.start_irc, tls=tls)),
            (settings.plain_irc, functools.partial(self.start_irc, tls=False)),
        ]
        return [functools.partial(start, where) for where, start in wanted if where is not None]

    def _tls(self, tls: bool) -> dict[str, Any]:
        """The serve function's TLS arguments for a listener that does (or not)."""
        if not tls:
            return {}
        assert self.context is not None
        assert self.settings.tls is not None
        return {
            "ssl_context": self.context,
            "handshake_timeout": self.settings.tls.handshake_timeout,
        }

    async def _serve_tcp(
        self,
        where: Address,
        nursery: trio.Nursery,
        handler: Callable[[TCPConnection], Awaitable[None]],
        refusal: bytes,
        *,
        tls: bool,
    ) -> TCPServer:
        """A TCP listener of the chat (lines or IRC), with the common limits."""
        common = self.settings.common
        server: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                handler,
                where[1],
                host=where[0],
                max_connections=common.max_connections,
                max_per_address=self.settings.per_address,
                per_address_refusal=refusal,
                idle_timeout=common.idle_or(None),
                grace_period=common.grace,
                reuse_port=self.reuse,
                task_status=task_status,
                **self._tls(tls),
            )
        )
        return server

    async def start_tcp(self, where: Address, nursery: trio.Nursery, *, tls: bool) -> str:
        refusal = per_address_refusal(self.settings.per_address)
        server = await self._serve_tcp(where, nursery, self.chat.serve_tcp_client, refusal, tls=tls)
        self.listening.append(("tls" if tls else "tcp", server.addresses[0]))
        self.status.add("chat", "tcp+tls" if tls else "tcp", server)
        return tcp_line("chat", server, tls_note(tls, self.context is not None))

    async def start_irc(self, where: Address, nursery: trio.Nursery, *, tls: bool) -> str:
        refusal = b"ERROR :Closing link: %d connections from your address already (the most)\r\n"
        refusal %= self.settings.per_address or 0
        server = await self._serve_tcp(where, nursery, self.chat.serve_irc_client, refusal, tls=tls)
        self.listening.append(("ircs" if tls else "irc", server.addresses[0]))
        self.status.add("chat", "irc+tls" if tls else "irc", server)
        addresses = ", ".join(format_address(a) for a in server.addresses)
        note = tls_note(tls, self.context is not None)
        return f"chat (irc) listening on {addresses}" + (f" ({note})" if note else "")

    async def start_udp(self, where: Address, nursery: trio.Nursery) -> str:
        expiry = expiry_after(self.settings.heartbeat, self.settings.expiry_factor)
        server: UDPServer = await nursery.start(
            lambda task_status: serve_udp(
                self.chat.serve_udp_peer,
                where[1],
                host=where[0],
                peer_idle_timeout=expiry,
                queue_size=UDP_QUEUE,
                max_peers_per_address=self.settings.per_address,
                grace_period=self.settings.common.grace,
                reuse_port=self.reuse,
                task_status=task_status,
            )
        )
        self.listening.append(("udp", server.address))
        self.status.add("chat", "udp", server)
        return udp_line("chat", server) + f" (peers expire after {expiry:g} s of silence)"

    async def start_web(self, where: Address, nursery: trio.Nursery, *, tls: bool) -> str:
        origins = [Origin(origin) for origin in self.settings.web_origin]
        server: WebSocketServer = await nursery.start(
            lambda task_status: serve_websocket(
                self.chat.serve_websocket_peer,
                where[1],
                host=where[0],
                process_request=ChatPage(
                    self.chat, host=where[0], origins=self.settings.web_origin
                ),
                origins=[*origins, None] if origins else None,
                max_connections=self.settings.common.max_connections,
                max_per_address=self.settings.per_address,
                grace_period=self.settings.common.grace,
                reuse_port=self.reuse,
                task_status=task_status,
                **self._tls(tls),
            )
        )
        self.listening.append(("https" if tls else "web", server.addresses[0]))
        self.status.add("chat", "web+tls" if tls else "web", server)
        address = format_address(server.addresses[0])
        note = tls_note(tls, self.context is not None)
        scheme = "https" if tls else "http"
        return (
            f"chat (web) listening on {address}{f' ({note})' if note else ''}: "
            f"open {scheme}://{address}/ (WebSocket at /ws)"
        )


def _join_hints(prog: str, listening: list[tuple[str, Address]]) -> list[str]:
    """How to join each listener, with its real address: a wildcard bind is shown as
    loopback (it takes this machine's other addresses too)."""
    lines = []
    for kind, address in listening:
        host, port = address[0], address[1]
        anywhere = host in ("0.0.0.0", "::")
        if anywhere:
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        where = format_address((host, port))
        also = " (from elsewhere: this machine's address)" if anywhere else ""
        match kind:
            case "tcp":
                lines.append(f"join with: nc {host} {port}, or {prog} chat join {where}{also}")
            case "tls":
                lines.append(
                    f"join with: openssl s_client -quiet -connect {where}, or {prog} chat "
                    f"join {where} --tls{also}"
                )
            case "irc" | "ircs":
                lines.append(
                    f"join with: an IRC client, e.g. irssi -c {host} -p {port}"
                    f"{' (TLS: /connect -tls)' if kind == 'ircs' else ''}{also}"
                )
            case "udp":
                lines.append(
                    f"join with: socat - UDP:{where}, or {prog} chat join {where} --udp{also}"
                )
            case _:
                scheme = "https" if kind == "https" else "http"
                lines.append(f"join with: a browser at {scheme}://{where}/{also}")
    return lines


async def _chat_figures(chat: ChatServer) -> Figures:
    figures = chat.statistics()
    try:
        rooms: dict[str, Any] = await chat.rooms()
    except DirectoryUnavailable:
        rooms = {}
    kinds = {"web" if kind == "ws" else kind: n for kind, n in figures.users_by_kind.items()}
    return {
        "users": figures.users,
        "users_by_transport": kinds,
        "sessions_total": figures.sessions_total,
        "rooms": rooms,
        "lines_in": figures.lines_received,
        "lines_out": figures.lines_delivered,
        "paced": figures.paced,
        "dropped": figures.dropped,
        "disconnected_slow": figures.disconnected_slow,
        "detached": figures.detached,
        "resumed": figures.resumed,
        "resume_refused": figures.resume_refused,
        "registered": figures.registered,
        "logins": figures.logins,
        "logins_failed": figures.logins_failed,
        "logins_refused": figures.logins_refused,
        "kept_offline": figures.kept_offline,
    }
