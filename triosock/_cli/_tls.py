"""TLS on the command line: the serve commands' ``--tls-cert``/``--tls-key``, and the
clients' ``--tls``/``--ca``.

A serve command given ``--tls-cert FILE`` (and ``--tls-key FILE``, unless the key is in
the same file) speaks TLS on its TCP listeners: the chat's line port and its web port
(the page over ``https://``, its WebSocket over ``wss://``), the echo and HTTP servers'
port. Plaintext listeners beside them are the user's choice (``--plain-tcp`` and
``--plain-web`` for the chat, ``--plain-port`` for echo and http); the start-up lines say
``(TLS)`` or ``(plaintext)`` after each address. A handshake has
``--tls-handshake-timeout`` seconds (:data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT`).
The files are read once when the command is parsed, so that a missing or broken one is
a one-line error before anything listens, and again by each process that serves.

A client given ``--tls`` checks the server's certificate against the system's CAs, or
against ``--ca FILE`` alone; connecting and the handshake together have
:data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT` seconds. A certificate that
does not check out is the usual one-line error (``triosock: error: TLS handshake with
127.0.0.1:7070 failed: certificate verify failed: self-signed certificate``), status 1.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from .._errors import ConnectError, describe_oserror
from .._sansio.addresses import format_address
from .._transport.tcp import open_tcp_stream
from .._transport.tls import DEFAULT_HANDSHAKE_TIMEOUT, tls_reason
from ._console import CLIError, UsageError
from ._parser import Parser
from ._values import positive

__all__ = [
    "TLSFiles",
    "add_tls_client_options",
    "add_tls_serve_options",
    "client_context",
    "open_client_stream",
    "tls_files",
    "tls_note",
]


@dataclass(frozen=True)
class TLSFiles:
    """What a serve command's TLS was asked for (picklable: each worker loads the files).

    Attributes:
      cert: the certificate (chain) file, PEM.
      key: the private key file, PEM (None: it is in ``cert``).
      handshake_timeout: seconds a client's handshake may take.
    """

    cert: str
    key: str | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def context(self) -> ssl.SSLContext:
        """The server's context, with the certificate and its key loaded.

        Raises:
          CLIError: a file cannot be read, or is not a certificate and its key.
        """
        for option, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    raise CLIError(f"{option} {path}: {describe_oserror(exc)}") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key, password=self._encrypted)
        except ssl.SSLError as exc:
            reason = tls_reason(exc)
            if reason == "PEM lib":
                reason = "not a PEM certificate and its private key"
            key = f" and --tls-key {self.key}" if self.key else ""
            raise CLIError(f"--tls-cert {self.cert}{key}: {reason}") from None
        return context

    def _encrypted(self) -> NoReturn:
        # Never a passphrase prompt in a server (or in each of its workers).
        raise CLIError(
            f"{self.key or self.cert}: the private key is encrypted: give one without a "
            "passphrase (openssl pkey -in KEY -out PLAIN_KEY)"
        )


def tls_note(tls: bool, any_tls: bool) -> str:
    """What a start-up line says after a TCP listener's address: ``TLS``, ``plaintext``
    (beside TLS ones), or nothing (a server without TLS, whose lines stay as they were)."""
    if tls:
        return "TLS"
    return "plaintext" if any_tls else ""


def add_tls_serve_options(parser: Parser, *, what: str, defaults: bool = True) -> None:
    """``--tls-cert``, ``--tls-key`` and ``--tls-handshake-timeout``; ``what`` names the
    listeners that speak TLS. Without ``defaults`` (on a command under one that has
    them) an option left out keeps what was said before it."""

    def add(*names: str, default: object, **options: Any) -> None:
        parser.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **options)

    add(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help=f"speak TLS on {what} with this certificate (PEM, its chain after it)",
    )
    add(
        "--tls-key",
        default=None,
        metavar="FILE",
        help="the certificate's private key (PEM; default: in the --tls-cert file)",
    )
    add(
        "--tls-handshake-timeout",
        type=positive,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help="a client that has not finished its TLS handshake this long after connecting "
        f"is closed ({DEFAULT_HANDSHAKE_TIMEOUT:g})",
    )


def tls_files(args: argparse.Namespace, *plain: str) -> TLSFiles | None:
    """The TLS a parsed serve command asked for (None: none), its files checked;
    ``plain`` names the options of plaintext listeners beside TLS ones, which need
    ``--tls-cert``.

    Raises:
      UsageError: ``--tls-key`` or a ``plain`` option without ``--tls-cert``.
      CLIError: the files cannot be used (see :meth:`TLSFiles.context`).
    """
    if args.tls_cert is None:
        if args.tls_key is not None:
            raise UsageError("--tls-key goes with --tls-cert: give the certificate too")
        for name in plain:
            if getattr(args, name.removeprefix("--").replace("-", "_")) is not None:
                raise UsageError(
                    f"{name} is a plaintext listener beside TLS ones: it needs "
                    "--tls-cert (without it, every listener is plaintext)"
                )
        return None
    files = TLSFiles(args.tls_cert, args.tls_key, args.tls_handshake_timeout)
    files.context()
    return files


def add_tls_client_options(parser: Parser, *, flag: bool = True) -> None:
    """``--tls`` (unless ``flag`` is false: the URL says) and ``--ca``."""
    if flag:
        parser.add_argument(
            "--tls",
            action="store_true",
            help="speak TLS, checking the server's certificate (the system's CAs, or --ca)",
        )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help="trust only this CA certificate (PEM) for the server's certificate"
        + (" (with --tls)" if flag else " (https:// URLs)"),
    )


def client_context(ca: str | None) -> ssl.SSLContext:
    """A client's context: the system's CAs, or only ``ca``.

    Raises:
      CLIError: ``ca`` cannot be read, or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=ca)
    except OSError as exc:  # (ssl.SSLError is one: after this)
        if isinstance(exc, ssl.SSLError):
            raise CLIError(f"--ca {ca}: not a PEM certificate ({tls_reason(exc)})") from None
        raise CLIError(f"--ca {ca}: {describe_oserror(exc)}") from None


async def open_client_stream(
    host: str, port: int, context: ssl.SSLContext | None
) -> trio.abc.HalfCloseableStream | trio.SSLStream[trio.SocketStream]:
    """A client's stream to ``host:port``: with ``context``, TLS, connecting and
    shaking hands within :data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT`.

    Raises:
      ConnectError: refused, unreachable, a failed handshake, or no handshake in time.
    """
    if context is None:
        return await open_tcp_stream(host, port)
    with trio.move_on_after(DEFAULT_HANDSHAKE_TIMEOUT):
        return await open_tcp_stream(host, port, ssl_context=context)
    where = format_address((host, port))
    raise ConnectError(
        f"no TLS handshake with {where} within {DEFAULT_HANDSHAKE_TIMEOUT:g} s "
        "(does that port speak TLS?)"
    )
