"""``python -m triosock chat [serve|join]``: the flagship.

``python -m triosock chat`` alone serves chat on the defaults: TCP lines on
127.0.0.1:7070, the UDP dialect on 127.0.0.1:7071 and the web page with its WebSocket on
127.0.0.1:7072, with the in-process hub.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Any, cast, get_args

import trio

from .._directory import Directory
from .._errors import DirectoryUnavailable
from .._hub import Hub, Policy
from .._liveness import expiry_after
from .._sansio.addresses import format_address
from .._services.chat import ChatServer
from .._services.chat._page import ChatPage
from .._services.chat._server import (
    DEFAULT_BURST,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_PRESENCE_INTERVAL,
    DEFAULT_PRESENCE_LIMIT,
    DEFAULT_RATE,
    DEFAULT_STALL_TIMEOUT,
)
from .._transport.tcp import TCPServer, serve_tcp
from .._transport.udp import UDPServer, serve_udp
from .._transport.websocket import WebSocketServer, serve_websocket
from . import join
from ._common import (
    CLIError,
    ServerStarter,
    add_log_options,
    configure_logging,
    count,
    count_or_none,
    factor,
    not_negative,
    parse_hostport,
    positive,
    positive_or_none,
    run_servers,
    tcp_line,
    udp_line,
)
from ._parser import CommandParser, add_config_option
from ._status import Status, add_status_option, register_status, status_starter
from ._workers import PortSlot, die_with_parent, supervise, worker_index, workers_count

TCP_DEFAULT = ("127.0.0.1", 7070)
UDP_DEFAULT = ("127.0.0.1", 7071)
WEB_DEFAULT = ("127.0.0.1", 7072)
STATUS_PORT = 7079
HEARTBEAT_DEFAULT = 5.0
#: Datagrams queued per UDP peer: UDP cannot slow a sender, so room for a paste.
UDP_QUEUE = 1024


def _address_or_none(text: str) -> tuple[str, int] | None:
    return None if text.lower() == "none" else parse_hostport(text)


# -- serve -----------------------------------------------------------------------------


async def _chat_serve(args: argparse.Namespace) -> None:
    if args.tcp is None and args.udp is None and args.web is None:
        raise CLIError("nothing to serve: --tcp, --udp and --web are all none")
    configure_logging(args)
    if args.workers > 1:
        async with contextlib.AsyncExitStack() as stack:
            if args.redis is None:  # the workers share the rooms through a private one
                args.redis = await _private_redis(stack)
            await supervise(args, _PORT_SLOTS, grace=args.grace)
        return
    logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per request
    async with contextlib.AsyncExitStack() as stack:
        hub, directory = await _shared_state(args.redis, stack)
        await _serve_chat(args, ChatServer(hub, directory, **_chat_options(args)))


def _chat_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        policy=args.policy,
        buffer=args.buffer,
        max_line_length=args.max_line_length,
        rate=args.rate,
        burst=args.burst,
        max_backlog=args.max_backlog,
        stall_timeout=args.stall_timeout,
        presence_limit=args.presence_limit,
        presence_interval=args.presence_interval,
    )


async def _shared_state(
    url: str | None, stack: contextlib.AsyncExitStack
) -> tuple[Hub[bytes] | None, Directory | None]:
    """With ``--redis``: a Redis hub and directory, running; without, the in-process ones."""
    if url is None:
        await trio.lowlevel.checkpoint()
        return None, None
    try:
        from .._directory._redis import RedisDirectory
        from .._hub._redis import RedisHub
        from .._redis import describe_failure, redis_client
    except ImportError as exc:
        raise CLIError(f"--redis needs coredis ({exc}): pip install 'triosock[redis]'") from None
    reason = "no answer within 3 s"
    with trio.move_on_after(3):
        try:
            async with redis_client(url) as client:
                await client.ping()
            reason = ""
        except Exception as exc:  # coredis raises several kinds; all mean "not there"
            reason = describe_failure(exc)
    if reason:
        raise CLIError(f"cannot reach redis at {url}: {reason}")
    hub = await stack.enter_async_context(RedisHub(url))
    directory = await stack.enter_async_context(RedisDirectory(url))
    with trio.move_on_after(3):
        await hub.wait_connected()
    logging.getLogger("triosock.chat").info("rooms shared through redis at %s", url)
    return hub, directory


def _slot(name: str, kinds: tuple[str, ...]) -> PortSlot:
    def set_port(args: argparse.Namespace, port: int) -> None:
        setattr(args, name, (getattr(args, name)[0], port))

    return PortSlot(lambda args: getattr(args, name), set_port, kinds)


_PORT_SLOTS = [_slot("tcp", ("tcp",)), _slot("udp", ("udp",)), _slot("web", ("tcp",))]


#: Nothing written to disk, in the foreground.
_EPHEMERAL = ("--save", "", "--appendonly", "no", "--daemonize", "no")


async def _private_redis(stack: contextlib.AsyncExitStack) -> str:
    """A redis-server for this server's workers only: a unix socket in a private
    directory, nothing written to disk, stopped with the server; and, should this
    process be killed outright, by the kernel (started from the main thread for that)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CLIError(
            "--workers shares the rooms through redis: install redis-server (Debian's "
            "package redis-server), or give --redis URL"
        )
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="triosock-redis-"))
    path = os.path.join(folder, "redis.sock")
    process = subprocess.Popen(  # noqa: ASYNC220 (a fork and exec, from this thread)
        [binary, "--port", "0", "--unixsocket", path, "--unixsocketperm", "700", *_EPHEMERAL],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C is for us: we stop it after the workers
        preexec_fn=die_with_parent,
    )

    async def stop() -> None:
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                process.terminate()
                with trio.move_on_after(5):
                    await trio.to_thread.run_sync(process.wait)
                if process.poll() is None:
                    process.kill()
                    await trio.to_thread.run_sync(process.wait)
            assert process.stdout is not None
            process.stdout.close()

    stack.push_async_callback(stop)
    assert process.stdout is not None
    seen = b""
    with trio.move_on_after(10):
        while b"ready to accept connections" not in seen.lower():
            line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
            if not line:
                break
            seen += line
    if b"ready to accept connections" not in seen.lower():
        last = seen.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise CLIError(f"the private redis-server did not start: {last[0]}")
    # Keep reading what it logs, or it blocks once the pipe is full.
    threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    logging.getLogger("triosock.chat").info("the workers share a private redis at %s", path)
    return f"unix://{path}"


def _drain(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.readline():
            pass


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"not a redis URL: {text!r} (redis://HOST:PORT/DB or unix://PATH)"
        )
    return text


def _join_hints(prog: str, listening: list[tuple[str, Any]]) -> list[str]:
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
            case "udp":
                lines.append(
                    f"join with: socat - UDP:{where}, or {prog} chat join {where} --udp{also}"
                )
            case _:
                lines.append(f"join with: a browser at http://{where}/{also}")
    return lines


async def _serve_chat(args: argparse.Namespace, chat: ChatServer) -> None:
    starters: list[ServerStarter] = []
    listening: list[tuple[str, Any]] = []  # (kind, bound address), as each starts
    status = Status("chat")
    status.extra = functools.partial(_chat_figures, chat)
    if args.tcp is not None:
        host, port = args.tcp

        async def start_tcp(nursery: trio.Nursery) -> str:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    chat.serve_tcp_client,
                    port,
                    host=host,
                    max_connections=args.max_connections,
                    idle_timeout=args.idle_timeout,
                    grace_period=args.grace,
                    reuse_port=worker_index() is not None,
                    task_status=task_status,
                )
            )
            listening.append(("tcp", server.addresses[0]))
            status.add("chat", "tcp", server)
            return tcp_line("chat", server)

        starters.append(start_tcp)
    if args.udp is not None:
        host_u, port_u = args.udp
        expiry = expiry_after(args.heartbeat, args.expiry_factor)

        async def start_udp(nursery: trio.Nursery) -> str:
            server: UDPServer = await nursery.start(
                lambda task_status: serve_udp(
                    chat.serve_udp_peer,
                    port_u,
                    host=host_u,
                    peer_idle_timeout=expiry,
                    queue_size=UDP_QUEUE,
                    grace_period=args.grace,
                    reuse_port=worker_index() is not None,
                    task_status=task_status,
                )
            )
            listening.append(("udp", server.address))
            status.add("chat", "udp", server)
            return udp_line("chat", server) + f" (peers expire after {expiry:g} s of silence)"

        starters.append(start_udp)

    if args.web is not None:
        host_w, port_w = args.web
        page = ChatPage(chat)

        async def start_web(nursery: trio.Nursery) -> str:
            server: WebSocketServer = await nursery.start(
                lambda task_status: serve_websocket(
                    chat.serve_websocket_peer,
                    port_w,
                    host=host_w,
                    process_request=page,
                    origins=[*args.web_origin, None] if args.web_origin else None,
                    max_connections=args.max_connections,
                    grace_period=args.grace,
                    reuse_port=worker_index() is not None,
                    task_status=task_status,
                )
            )
            listening.append(("web", server.addresses[0]))
            status.add("chat", "web", server)
            where = format_address(server.addresses[0])
            return f"chat (web) listening on {where}: open http://{where}/ (WebSocket at /ws)"

        starters.append(start_web)

    async def hint(nursery: trio.Nursery) -> str:
        await trio.lowlevel.checkpoint()
        return "\n".join(_join_hints(getattr(args, "prog", "python -m triosock"), listening))

    async with chat:  # runs the fan-out task
        await run_servers([*starters, hint, status_starter(args, status.figures)])


async def _chat_figures(chat: ChatServer) -> dict[str, Any]:
    figures = chat.statistics()
    try:
        rooms = await chat.rooms()
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
    }


# -- the parser ------------------------------------------------------------------------


def _add_serve_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The serve options; without ``defaults`` (on ``chat serve``), an option left out
    keeps what ``chat`` before it set: ``chat --rate 5 serve`` is ``chat serve --rate 5``."""
    add = parser.add_argument
    if not defaults:

        def add(*names: str, **options: Any) -> argparse.Action:
            options["default"] = argparse.SUPPRESS
            return parser.add_argument(*names, **options)

    add(
        "--tcp",
        type=_address_or_none,
        default=TCP_DEFAULT,
        metavar="HOST:PORT|none",
        help="where TCP line users connect (default 127.0.0.1:7070)",
    )
    add(
        "--udp",
        type=_address_or_none,
        default=UDP_DEFAULT,
        metavar="HOST:PORT|none",
        help="where UDP peers send datagrams (default 127.0.0.1:7071)",
    )
    add(
        "--web",
        type=_address_or_none,
        default=WEB_DEFAULT,
        metavar="HOST:PORT|none",
        help="where the chat page and its WebSocket (/ws) are served (default 127.0.0.1:7072)",
    )
    add(
        "--web-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page origin allowed to open the WebSocket, such as http://chat.lan:7072 "
        "(repeatable; replaces the default: the page's own address when it is an IP, "
        "localhost or the --web host)",
    )
    add(
        "--workers",
        type=workers_count,
        default=1,
        metavar="N",
        help="serve with N processes on the same ports (SO_REUSEPORT), restarted when "
        "they die; they share the rooms through --redis, or a private redis-server "
        "(default 1: this process)",
    )
    add(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="share rooms, nicks and direct messages with every server using this redis "
        "(redis://HOST:PORT/DB or unix://PATH; needs triosock[redis]); default: this "
        "process only",
    )
    add(
        "--policy",
        choices=get_args(Policy),
        default="disconnect",
        help="what a user gets when more than --max-backlog bytes wait for its socket "
        "(default disconnect; block: lossless, at the slowest reader's pace)",
    )
    add(
        "--buffer",
        type=count,
        default=256,
        metavar="N",
        help="events queued per user per pass (256)",
    )
    add(
        "--max-line-length",
        type=count,
        default=DEFAULT_MAX_LINE_LENGTH,
        metavar="BYTES",
        help=f"longer lines are refused with a notice ({DEFAULT_MAX_LINE_LENGTH})",
    )
    add(
        "--rate",
        type=positive_or_none,
        default=DEFAULT_RATE,
        metavar="LINES/S|none",
        help=f"lines per second one user may send on average ({DEFAULT_RATE:g}); "
        "faster senders are slowed, not dropped",
    )
    add(
        "--burst",
        type=count,
        default=DEFAULT_BURST,
        metavar="LINES",
        help=f"lines one user may send at once ({DEFAULT_BURST})",
    )
    add(
        "--max-backlog",
        type=count,
        default=DEFAULT_MAX_BACKLOG,
        metavar="BYTES",
        help=f"bytes that may wait for one user's socket ({DEFAULT_MAX_BACKLOG})",
    )
    add(
        "--stall-timeout",
        type=positive_or_none,
        default=DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS|none",
        help="a user whose socket takes nothing this long while output waits is "
        f"disconnected ({DEFAULT_STALL_TIMEOUT:g})",
    )
    add(
        "--presence-limit",
        type=count_or_none,
        default=DEFAULT_PRESENCE_LIMIT,
        metavar="N|none",
        help="a room with more users than this on this server gets, instead of a line "
        "per join and leave, how many came and went every --presence-interval "
        f"({DEFAULT_PRESENCE_LIMIT}; none: a line each, always)",
    )
    add(
        "--presence-interval",
        type=positive,
        default=DEFAULT_PRESENCE_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between two counts of a crowded room's joins and leaves "
        f"({DEFAULT_PRESENCE_INTERVAL:g})",
    )
    add(
        "--heartbeat",
        type=positive,
        default=HEARTBEAT_DEFAULT,
        metavar="SECONDS",
        help=f"UDP heartbeat interval in seconds ({HEARTBEAT_DEFAULT:g})",
    )
    add(
        "--expiry-factor",
        type=factor,
        default=2.0,
        metavar="N",
        help="UDP peers expire after this many heartbeat intervals of silence (2)",
    )
    add(
        "--max-connections",
        type=count,
        default=None,
        metavar="N",
        help="TCP users, and WebSocket users, served at once each; the next wait in the "
        "listen backlog (no limit)",
    )
    add(
        "--idle-timeout",
        type=positive_or_none,
        default=None,
        metavar="SECONDS|none",
        help="close a TCP user that sends nothing this long (none); time the server "
        "keeps a user waiting (the rate limit) does not count",
    )
    add(
        "--grace",
        type=not_negative,
        default=5.0,
        metavar="SECONDS",
        help="seconds to say goodbye on stop (5)",
    )


def register(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = services.add_parser(
        "chat",
        help="chat rooms over TCP lines, UDP and the web (alone: serve on the defaults)",
        usage="%(prog)s [-h] [OPTIONS] [ACTION ...]",
        description="Chat rooms shared by TCP line users (nc, telnet), UDP peers and the "
        "web page. With no ACTION, or with serve, run the server with OPTIONS; join runs a "
        "client (see chat join --help).",
    )
    _add_serve_options(chat)
    add_status_option(chat, STATUS_PORT)
    add_config_option(chat)
    add_log_options(chat, defaults=False)
    chat.set_defaults(run=_chat_serve)
    actions = chat.add_subparsers(
        dest="action", metavar="ACTION", parser_class=CommandParser, prog=chat.prog
    )
    serve = actions.add_parser("serve", help="run the chat server")
    _add_serve_options(serve, defaults=False)
    add_status_option(serve, STATUS_PORT, defaults=False)
    add_config_option(serve)
    add_log_options(serve, defaults=False)
    serve.set_defaults(run=_chat_serve)
    register_status(actions, "chat", STATUS_PORT)
    # (the subparsers make CommandParsers; join's register takes any ArgumentParser's)
    join.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", actions))
