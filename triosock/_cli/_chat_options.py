"""``python -m triosock chat [serve|join|status]``: the chat's command line.

``chat`` alone, and ``chat serve``, take the serve options below and the shared ones
(:func:`~._serve_settings.add_serve_options`), parsed into a
:class:`~.chat.ChatSettings`. The options may come before the action too: ``chat
--rate 5 serve`` is ``chat serve --rate 5``.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, get_args

from .._hub import Policy
from .._sansio.chat import ChatError, validate_nick
from . import join
from ._chat_store import NO_DATA, default_data_dir
from ._console import UsageError
from ._parser import Parser, record
from ._run import Job
from ._serve_settings import ServeCommon, add_serve_options, serve_common
from ._serving import run_serve
from ._status_ask import register_status
from ._tls import add_tls_serve_options, tls_files
from ._values import (
    address_or_none,
    count,
    count_or_none,
    factor,
    not_negative,
    positive,
    positive_or_none,
    whole,
)
from .chat import IRC_DEFAULT, STATUS_PORT, TCP_DEFAULT, UDP_DEFAULT, WEB_DEFAULT, ChatSettings

__all__ = ["register"]

#: What ``chat serve`` does when not told otherwise: the defaults the help shows.
DEFAULTS = ChatSettings(ServeCommon("chat", "python -m triosock"))

_IDLE_HELP = (
    "close a TCP user that sends nothing this long (none); time the server keeps a "
    "user waiting (the rate limit) does not count"
)


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"not a redis URL: {text!r} (redis://HOST:PORT/DB or unix://PATH)"
        )
    return text


def _data_dir(text: str) -> str:
    """``--data``: a directory, or ``none`` (memory only)."""
    if text.lower() == NO_DATA:
        return NO_DATA
    if not text.strip():
        raise argparse.ArgumentTypeError("a directory, or none")
    return text


def _nick(text: str) -> str:
    """A nick given on the command line, checked as the chat checks one."""
    try:
        return validate_nick(text)
    except ChatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve_job(args: argparse.Namespace) -> Job:
    """The settings ``chat serve`` was given, and the job that serves them.

    Raises:
      UsageError: it was asked to serve nothing.
    """
    if args.tcp is None and args.udp is None and args.web is None and args.irc is None:
        raise UsageError("nothing to serve: --tcp, --udp, --web and --irc are all none")
    tls = tls_files(args, "--plain-tcp", "--plain-web", "--plain-irc")
    if tls is not None and args.tcp is None and args.web is None and args.irc is None:
        raise UsageError("--tls-cert is for --tcp, --web and --irc, and all are none")
    common = serve_common(args, "chat", STATUS_PORT)
    settings = record(
        ChatSettings,
        args,
        common=common,
        web_origin=tuple(args.web_origin),
        oper=tuple(args.oper),
        tls=tls,
    )
    return functools.partial(run_serve, settings)


def _add_chat_options(parser: Parser, *, defaults: bool = True) -> None:
    """The chat's own serve options; without ``defaults`` (on ``chat serve``), an option
    left out keeps what ``chat`` before it set."""

    def add(*names: str, default: object, **options: Any) -> None:
        parser.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **options)

    for name, where, what in [
        ("tcp", TCP_DEFAULT, "where TCP line users connect"),
        ("udp", UDP_DEFAULT, "where UDP peers send datagrams"),
        ("web", WEB_DEFAULT, "where the chat page and its WebSocket (/ws) are served"),
        ("irc", IRC_DEFAULT, "where IRC clients connect (irssi, WeeChat, HexChat)"),
    ]:
        add(
            f"--{name}",
            type=address_or_none,
            default=where,
            metavar="HOST:PORT|none",
            help=f"{what} (default {where[0]}:{where[1]})",
        )
    for name, what in [
        ("tcp", "TCP line users"),
        ("web", "the page and its WebSocket"),
        ("irc", "IRC clients"),
    ]:
        add(
            f"--plain-{name}",
            type=address_or_none,
            default=None,
            metavar="HOST:PORT|none",
            help=f"with --tls-cert: where {what} connect without TLS too (default none: "
            f"only --{name}, with TLS)",
        )
    add_tls_serve_options(
        parser,
        what="--tcp, --web (the page on https://, its WebSocket on wss://) and --irc",
        defaults=defaults,
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
        "--oper",
        action="append",
        default=[],
        type=_nick,
        metavar="NICK",
        help="a server operator: this registered nick, once logged in, acts in every room "
        "(topic, kick, ban, mute, mode) and may /kill (repeatable; default none)",
    )
    add(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="share rooms, nicks and direct messages with every server using this redis "
        "(redis://HOST:PORT/DB or unix://PATH; needs triosock[redis]); default: this "
        "process only, or with --workers a private redis-server",
    )
    add(
        "--policy",
        choices=get_args(Policy),
        default=DEFAULTS.policy,
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
        default=DEFAULTS.max_line_length,
        metavar="BYTES",
        help=f"longer lines are refused with a notice ({DEFAULTS.max_line_length})",
    )
    add(
        "--rate",
        type=positive_or_none,
        default=DEFAULTS.rate,
        metavar="LINES/S|none",
        help=f"lines per second one user may send on average ({DEFAULTS.rate:g}); "
        "faster senders are slowed, not dropped",
    )
    add(
        "--burst",
        type=count,
        default=DEFAULTS.burst,
        metavar="LINES",
        help=f"lines one user may send at once ({DEFAULTS.burst})",
    )
    add(
        "--max-backlog",
        type=count,
        default=DEFAULTS.max_backlog,
        metavar="BYTES",
        help=f"bytes that may wait for one user's socket ({DEFAULTS.max_backlog})",
    )
    add(
        "--stall-timeout",
        type=positive_or_none,
        default=DEFAULTS.stall_timeout,
        metavar="SECONDS|none",
        help="a user whose socket takes nothing this long while output waits is "
        f"disconnected ({DEFAULTS.stall_timeout:g})",
    )
    add(
        "--presence-limit",
        type=count_or_none,
        default=DEFAULTS.presence_limit,
        metavar="N|none",
        help="a room with more users than this on this server gets, instead of a line "
        "per join and leave, how many came and went every --presence-interval "
        f"({DEFAULTS.presence_limit}; none: a line each, always)",
    )
    add(
        "--presence-interval",
        type=positive,
        default=DEFAULTS.presence_interval,
        metavar="SECONDS",
        help=f"seconds between two counts of a crowded room's joins and leaves "
        f"({DEFAULTS.presence_interval:g})",
    )
    add(
        "--data",
        type=_data_dir,
        default=None,
        metavar="DIR|none",
        help="keep the history in DIR/chat.sqlite3, so that it outlives a restart "
        f"(default: {default_data_dir()}); none: in memory only",
    )
    add(
        "--history",
        type=whole,
        default=DEFAULTS.history,
        metavar="N",
        help=f"lines kept per room, with ids ({DEFAULTS.history}; 0: none, /history is off)",
    )
    add(
        "--history-on-join",
        type=whole,
        default=DEFAULTS.history_on_join,
        metavar="N",
        help=f"earlier lines a user is shown on entering a room ({DEFAULTS.history_on_join})",
    )
    add(
        "--resume-window",
        type=not_negative,
        default=DEFAULTS.resume_window,
        metavar="SECONDS",
        help="a session whose connection ends without /quit waits this long for "
        f"/resume TOKEN on a new one ({DEFAULTS.resume_window:g}; 0: it ends at once)",
    )
    add(
        "--heartbeat",
        type=positive,
        default=DEFAULTS.heartbeat,
        metavar="SECONDS",
        help=f"UDP heartbeat interval in seconds ({DEFAULTS.heartbeat:g})",
    )
    add(
        "--expiry-factor",
        type=factor,
        default=DEFAULTS.expiry_factor,
        metavar="N",
        help="UDP peers expire after this many heartbeat intervals of silence "
        f"({DEFAULTS.expiry_factor:g})",
    )
    add(
        "--per-address",
        type=count_or_none,
        default=DEFAULTS.per_address,
        metavar="N|none",
        help="the most connections or UDP peers one source address may hold on one "
        f"listener ({DEFAULTS.per_address}; 127.0.0.1 and ::1 are exempt)",
    )
    add_serve_options(
        parser, status_port=STATUS_PORT, idle_help=_IDLE_HELP, job=_serve_job, defaults=defaults
    )


def register(top: Parser) -> None:
    chat = top.add_command(
        "chat",
        help="chat rooms over TCP lines, UDP and the web (alone: serve on the defaults)",
        usage="%(prog)s [-h] [OPTIONS] [ACTION ...]",
        description="Chat rooms shared by TCP line users (nc, telnet), UDP peers and the "
        "web page. With no ACTION, or with serve, run the server with OPTIONS; join runs a "
        "client (see chat join --help).",
        # No abbreviations of its options: it sees its commands' options too, and join's
        # --tls would be an ambiguous abbreviation of --tls-cert, --tls-key...
        allow_abbrev=False,
    )
    _add_chat_options(chat)
    chat.add_commands(leaf=True, required=False, metavar="ACTION", prog=chat.prog)
    serve = chat.add_command("serve", help="run the chat server")
    _add_chat_options(serve, defaults=False)
    register_status(chat, "chat", STATUS_PORT)
    join.register(chat)
