"""The stacks compared side by side, per kind of server.

``baseline`` is the stack each ratio is taken against (raw trio; for HTTP, hypercorn on
trio; for the chat through Redis, triosock's in-process hub; the WebSocket chat has
none); ``reference`` is the second ratio column (the asyncio stack a user would pick
instead; for HTTP, aiohttp; for the WebSocket chat, websockets' asyncio server with
per-client queues; the chat through Redis has none).  The report's ratio columns keep
their names, ``x trio`` and ``x asyncio``, for every workload.  Peer servers live in
``benchmarks/servers/``; the triosock stacks run triosock's own command line, or (the
``triosock user handler`` and ``triosock FramedChannel`` rows) a peer server written on its
public API the way its README teaches.  The IRC fan-out's peers are IRC daemons (ngircd,
InspIRCd), started by the runner with a configuration of its own (``benchmarks/_ircd.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from benchmarks._procs import PORT_ANY


@dataclass(frozen=True)
class Stack:
    name: str
    argv: tuple[str, ...]
    port_pattern: str = PORT_ANY
    role: str = ""  # "baseline", "reference" or ""
    # a supervisor's line naming its workers ("2 workers: pid A, B"), whose CPU is measured
    pids_pattern: str = ""
    # the directory the server runs in (default: the project root); a baseline stack runs
    # in a worktree of an older commit, whose package `python -m` imports from there
    cwd: str = ""
    # an IRC daemon ("ngircd", "inspircd": benchmarks/_ircd.py), started with a
    # configuration of its own on a free port; argv is then just its name
    ircd: str = ""

    def command(self) -> list[str]:
        if self.ircd:
            return list(self.argv)
        return [sys.executable, *self.argv]

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")


def _peer(module: str, *extra: str) -> tuple[str, ...]:
    return ("-m", f"benchmarks.servers.{module}", "--port", "0", *extra)


TCP_ECHO = [
    Stack("trio serve_tcp", _peer("trio_serve_tcp"), role="baseline"),
    Stack("trio socket loop", _peer("trio_socket")),
    Stack("anyio on trio", _peer("anyio_trio")),
    Stack("asyncio streams", _peer("asyncio_streams"), role="reference"),
    Stack("asyncio Protocol", _peer("asyncio_protocol")),
    Stack("uvloop Protocol", _peer("asyncio_protocol", "--uvloop")),
    Stack("triosock", ("-m", "triosock", "echo", "serve", "--port", "0")),
    Stack("triosock user handler", _peer("triosock_stream")),
]

# line echo, each written the way its stack's documentation teaches a user
LINES = [
    Stack("trio serve_tcp hand split", _peer("trio_lines"), role="baseline"),
    Stack("anyio receive_until", _peer("anyio_lines")),
    Stack("asyncio streams readline", _peer("asyncio_lines"), role="reference"),
    Stack("uvloop streams readline", _peer("asyncio_lines", "--uvloop")),
    Stack("triosock FramedChannel", _peer("triosock_lines")),
]

UDP_ECHO = [
    Stack("trio recvfrom loop", _peer("trio_udp"), role="baseline"),
    Stack("asyncio Datagram", _peer("asyncio_udp"), role="reference"),
    Stack("uvloop Datagram", _peer("asyncio_udp", "--uvloop")),
    # unpaced: the ping-pong asks one address for thousands of echoes a second
    Stack(
        "triosock",
        ("-m", "triosock", "echo", "serve", "--udp", "--port", "0", "--reply-rate", "none"),
    ),
]

LOSSLESS = ("--policy", "block")  # the peer chat servers are lossless too
# The load client's one sender stands for a whole room's traffic, so the per-user rate
# limit (50 lines/s by default) is off in both triosock rows; everything else is default.
UNLIMITED = ("--rate", "none")
_TRIOSOCK_CHAT = ("-m", "triosock", "chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none")
_NO_WEB = ("--web", "none")  # two rows cannot both bind the web page's default port, 7072
_TCP_LINE = r"tcp\b[^\n]*?127\.0\.0\.1:(\d+)"  # the line naming the TCP listener

CHAT_WITH_HISTORY = "triosock"
CHAT_NO_HISTORY = "triosock --history 0"
CHAT = [
    Stack("trio chat", _peer("trio_chat"), role="baseline"),
    Stack("asyncio streams chat", _peer("asyncio_chat"), role="reference"),
    Stack("uvloop streams chat", _peer("asyncio_chat", "--uvloop")),
    Stack(
        CHAT_WITH_HISTORY,
        (*_TRIOSOCK_CHAT, *_NO_WEB, *LOSSLESS, *UNLIMITED),
        port_pattern=_TCP_LINE,
    ),
    Stack(
        "triosock default policy", (*_TRIOSOCK_CHAT, *_NO_WEB, *UNLIMITED), port_pattern=_TCP_LINE
    ),
    # the same as "triosock" without the history (every other row keeps it, in --data's
    # SQLite file: the runner gives each run a state directory of its own)
    Stack(
        CHAT_NO_HISTORY,
        (*_TRIOSOCK_CHAT, *_NO_WEB, *LOSSLESS, *UNLIMITED, "--history", "0"),
        port_pattern=_TCP_LINE,
    ),
]

# The chat's fan-out row ("triosock") as it was at an older commit (the runner's
# --baseline-rev REV): the same command, run in a worktree of REV, so that `python -m`
# imports that commit's package (the current directory comes first on sys.path).
CHAT_AT_PREFIX = "triosock chat serve @"


def chat_at(rev: str, tree: str) -> Stack:
    """The ``triosock`` chat row run from ``tree``, a checkout of commit ``rev``."""
    (current,) = (stack for stack in CHAT if stack.name == CHAT_WITH_HISTORY)
    return Stack(CHAT_AT_PREFIX + rev, current.argv, port_pattern=_TCP_LINE, cwd=tree)


# how long a resume of a session that missed 1,000 lines takes (benchmarks/resumebench.py)
RESUME = [
    Stack("triosock chat serve", (*_TRIOSOCK_CHAT, *_NO_WEB, *UNLIMITED), port_pattern=_TCP_LINE),
]

# logins per second while a room is busy, and the room's latency (benchmarks/loginbench.py):
# the chat as users run it (default policy), but for the per-user rate limit, off so that
# the probe's 100 lines/s and the logins are never slowed by it
LOGINS = [
    Stack("triosock chat serve", (*_TRIOSOCK_CHAT, *_NO_WEB, *UNLIMITED), port_pattern=_TCP_LINE),
]

# the chat over WebSocket; the ratio column "x asyncio" divides by websockets' asyncio server
# with per-client queues (there is no "x trio" base here)
_WEB_LINE = r"\(web\)[^\n]*?127\.0\.0\.1:(\d+)"  # "chat (web) listening on 127.0.0.1:PORT: ..."
_TRIOSOCK_WEB_CHAT = ("-m", "triosock", "chat", "serve", "--tcp", "none", "--udp", "none")

WS_CHAT = [
    Stack("websockets per-client queues", _peer("websockets_chat"), role="reference"),
    Stack("triosock serve_websocket", _peer("triosock_wschat")),
    Stack(
        "triosock chat serve --web",
        (*_TRIOSOCK_WEB_CHAT, "--web", "127.0.0.1:0", *LOSSLESS, *UNLIMITED),
        port_pattern=_WEB_LINE,
    ),
]

# the chat fan-out over IRC: one channel, #bench; the ratio columns "x trio" and "x asyncio"
# divide by ngircd and InspIRCd here. The daemons get their configuration from the runner
# (benchmarks/_ircd.py: flood protection off, no per-address limit); triosock's chat serves
# IRC on its --irc listener only, rate limit off and lossless, as the chat's triosock row.
# Its start-up line names irc and the address ("chat (irc) listening on 127.0.0.1:PORT").
IRC_LINE = r"(?im)^(?=[^\n]*\birc\b)[^\n]*?127\.0\.0\.1:(\d+)"
IRC_NGIRCD = "ngircd"
IRC_INSPIRCD = "InspIRCd"
IRC_TRIOSOCK = "triosock chat serve --irc"
IRC = [
    Stack(IRC_NGIRCD, ("ngircd",), role="baseline", ircd="ngircd"),
    Stack(IRC_INSPIRCD, ("inspircd",), role="reference", ircd="inspircd"),
    Stack(
        IRC_TRIOSOCK,
        (*_TRIOSOCK_WEB_CHAT, "--web", "none", "--irc", "127.0.0.1:0", *LOSSLESS, *UNLIMITED),
        port_pattern=IRC_LINE,
    ),
]

# the TCP chat's fan-out with its rooms in Redis, through the command line; the ratio column
# "x trio" divides by the in-process hub here (there is no "x asyncio" base). The Redis URLs
# are those of the runner's own redis-servers, one per stack.
_CHAT_LINE = r"chat \(tcp\) listening on 127\.0\.0\.1:(\d+)"
_TWO_WORKERS = r"\b2 workers: pid (\d+(?:, \d+)*)"  # the supervisor's, once all listen
CLUSTER_IN_PROCESS = "triosock in-process hub"
CLUSTER_REDIS = "triosock through redis"
CLUSTER_WORKERS = "triosock 2 workers through redis"


def cluster(redis_one: str, redis_workers: str) -> list[Stack]:
    """The cluster workload's stacks; ``redis_one`` and ``redis_workers`` are the Redis
    URLs of the one-process and the two-worker stack."""
    chat = (*_TRIOSOCK_CHAT, *_NO_WEB, *LOSSLESS, *UNLIMITED)
    return [
        Stack(CLUSTER_IN_PROCESS, chat, port_pattern=_CHAT_LINE, role="baseline"),
        Stack(CLUSTER_REDIS, (*chat, "--redis", redis_one), port_pattern=_CHAT_LINE),
        Stack(
            CLUSTER_WORKERS,
            (*chat, "--redis", redis_workers, "--workers", "2"),
            port_pattern=_CHAT_LINE,
            pids_pattern=_TWO_WORKERS,
        ),
    ]


# in-process, run by benchmarks/hubbench.py; argv here is hubbench's --stack
HUB = [
    Stack("trio channels", ("trio",), role="baseline"),
    Stack("asyncio.Queue", ("asyncio",), role="reference"),
    Stack("uvloop asyncio.Queue", ("uvloop",)),
    Stack("triosock hub", ("triosock",)),
]

# keep-alive HTTP/1.1, GET / answered with "hello world\n"; the ratio columns "x trio" and
# "x asyncio" divide by hypercorn (trio worker) and aiohttp here
HTTP = [
    Stack("hypercorn trio", _peer("hypercorn_trio"), role="baseline"),
    Stack("aiohttp", _peer("aiohttp_server"), role="reference"),
    Stack("uvicorn", _peer("uvicorn_server")),
    Stack("triosock serve_http", _peer("triosock_http")),
    # the CLI's start-up line: "http (tcp) listening on 127.0.0.1:PORT (hello)"
    Stack("triosock http serve", ("-m", "triosock", "http", "serve", "--port", "0")),
]
