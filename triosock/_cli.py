"""The command line: ``python -m triosock <service> <action> ...``.

Every error a user can cause (a bad address, a port in use, a refused connection) ends
the program with a one-line ``triosock: error: ...`` on stderr and a non-zero status,
never a traceback. SIGINT or SIGTERM stop a server gracefully, with status 0.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import trio

from ._errors import TriosockError
from ._services.echo import echo_handler
from ._transport.tcp import TCPServer, connect_tcp, format_address, serve_tcp

__all__ = ["main", "parse_hostport"]

#: Default ports: unprivileged stand-ins for the well-known ones (echo is 7).
ECHO_PORT = 7007

EXIT_ERROR = 1
EXIT_USAGE = 2


class CLIError(TriosockError):
    """A problem with what the user asked for, reported as one line."""


def parse_port(text: str) -> int:
    """A port number from text; argparse turns the ValueError into a usage error."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into ``(host, port)``."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not host:
        raise argparse.ArgumentTypeError(f"missing host in {text!r}")
    return host, parse_port(port_text)


def _say(text: str) -> None:
    print(text, flush=True)


# -- running servers -------------------------------------------------------------------

ServerStarter = Callable[[trio.Nursery], Awaitable[str]]


async def run_servers(starters: Sequence[ServerStarter]) -> None:
    """Start every server, print where each listens, and run until SIGINT/SIGTERM.

    Each starter starts one server in the nursery and returns a line describing it.
    A signal cancels the nursery, which stops every server gracefully.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for start in starters:
                _say(await start(nursery))
            async for signum in signals:
                _say(f"{signal.Signals(signum).name} received, shutting down")
                nursery.cancel_scope.cancel()
                break


def _tcp_line(name: str, server: TCPServer) -> str:
    where = ", ".join(format_address(a) for a in server.addresses)
    return f"{name} (tcp) listening on {where}"


# -- echo ------------------------------------------------------------------------------


async def _echo_serve(args: argparse.Namespace) -> None:
    async def start_tcp(nursery: trio.Nursery) -> str:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                echo_handler, args.port, host=args.host, task_status=task_status
            )
        )
        return _tcp_line("echo", server)

    await run_servers([start_tcp])


async def _read_stdin_chunk() -> bytes:
    stdin: io.BufferedReader = sys.stdin.buffer  # type: ignore[assignment]
    return await trio.to_thread.run_sync(stdin.read1, 65536, abandon_on_cancel=True)


async def _echo_send(args: argparse.Namespace) -> None:
    host, port = args.address
    stream = await connect_tcp(host, port)
    out = sys.stdout.buffer

    async def send() -> None:
        if args.message:
            await stream.send_all((" ".join(args.message) + "\n").encode())
        else:
            while chunk := await _read_stdin_chunk():
                await stream.send_all(chunk)
        await stream.send_eof()

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        async for data in stream:
            out.write(data)
            out.flush()


# -- the parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m triosock",
        description="Structured-concurrency network services on Trio.",
    )
    services = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")

    echo = services.add_parser("echo", help="RFC 862 echo server and client")
    echo_actions = echo.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = echo_actions.add_parser("serve", help="run an echo server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=parse_port, default=ECHO_PORT, help=f"port (default {ECHO_PORT})"
    )
    serve.set_defaults(run=_echo_serve)
    send = echo_actions.add_parser("send", help="send MESSAGE (or stdin) and print the echo")
    send.add_argument("address", type=parse_hostport, metavar="HOST:PORT")
    send.add_argument("message", nargs="*", metavar="MESSAGE", help="words to send as one line")
    send.set_defaults(run=_echo_send)
    return parser


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _user_error(exc: BaseException) -> str | None:
    """The one line to show for an error the user can cause, or None for a real bug."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, TriosockError):
            return str(leaf)
    for leaf in leaves:
        if isinstance(leaf, trio.BrokenResourceError | trio.ClosedResourceError):
            return f"connection lost: {leaf or type(leaf).__name__}"
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], Awaitable[None]] = args.run
    try:
        trio.run(run, args)
    except KeyboardInterrupt:
        # A second Ctrl-C while the graceful stop runs, or one in a client.
        sys.exit(130)
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"triosock: error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(0)
