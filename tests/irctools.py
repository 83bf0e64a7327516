"""Shared helpers of the IRC listener's tests: the chat with an IRC listener on free
loopback ports, and a raw IRC client that reads lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from websockets.trio.client import connect

from tests.chattools import Events, LineSocket, chat_servers
from triosock import TCPServer, WebSocketServer, serve_tcp, serve_websocket
from triosock.chat import ChatServer


@dataclass
class Ports:
    """Where the chat listens: TCP lines, UDP and IRC."""

    tcp: int
    udp: int
    irc: int


@asynccontextmanager
async def irc_chat(chat: ChatServer, **irc_options: object) -> AsyncIterator[Ports]:
    """The chat over TCP, UDP and IRC on free loopback ports, for the body of the block."""
    async with chat_servers(chat) as (tcp, udp, nursery):
        irc: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                chat.serve_irc_client,
                0,
                host="127.0.0.1",
                grace_period=1,
                task_status=task_status,
                **irc_options,  # type: ignore[arg-type]
            )
        )
        yield Ports(tcp.port, udp.port, irc.port)


class IrcSocket(LineSocket):
    """A raw IRC client: sends lines, reads the server's (CRLF stripped)."""

    async def say(self, *lines: str) -> None:
        """Send each line, with CRLF."""
        await self.send(b"".join(line.encode() + b"\r\n" for line in lines))

    async def until(self, wanted: str) -> str:
        """The next line holding ``wanted``, as text without CRLF."""
        line = await self.read_until(wanted.encode())
        return line.rstrip(b"\r").decode()

    async def register(self, nick: str, caps: Sequence[str] = ()) -> str:
        """Register as ``nick`` (negotiating ``caps`` first); the 001 line."""
        if caps:
            await self.say("CAP LS 302", f"CAP REQ :{' '.join(caps)}")
            await self.until(" ACK ")
        await self.say(f"NICK {nick}", f"USER {nick} 0 * :{nick} of the tests")
        if caps:
            await self.say("CAP END")
        return await self.until(" 001 ")


async def irc_user(
    port: int, nick: str, caps: Sequence[str] = (), *, names: bool = True
) -> IrcSocket:
    """An IRC client registered as ``nick``, once it has joined #lobby (its names
    list read, when ``names``)."""
    user = await IrcSocket.connect(port)
    await user.register(nick, caps)
    await user.until(" JOIN #lobby")
    if names:
        await user.until(" 366 ")
    return user


@asynccontextmanager
async def web_chat_and_irc(**options: object) -> AsyncIterator[tuple[Ports, Events]]:
    """The chat over TCP, UDP, IRC and WebSocket: the ports, and a WebSocket user's
    events, once it is in #lobby."""
    chat = ChatServer(**options)  # type: ignore[arg-type]
    async with irc_chat(chat) as ports, trio.open_nursery() as nursery:
        web: WebSocketServer = await nursery.start(
            lambda task_status: serve_websocket(
                chat.serve_websocket_peer, 0, host="127.0.0.1", task_status=task_status
            )
        )
        async with connect(f"ws://127.0.0.1:{web.port}/ws") as ws:
            events = Events(ws)
            await events.next(type="joined")
            yield ports, events
        nursery.cancel_scope.cancel()


async def nc_user(port: int) -> LineSocket:
    """A TCP line user (as ``nc``), once its session has begun in #lobby."""
    user = await LineSocket.connect(port)
    await user.read_until(b"joined #lobby")
    return user


def close_all(*sockets: LineSocket) -> None:
    """Close every socket (in a ``finally``)."""
    for sock in sockets:
        sock.close()


__all__ = ["IrcSocket", "Ports", "close_all", "irc_chat", "irc_user", "nc_user", "web_chat_and_irc"]
