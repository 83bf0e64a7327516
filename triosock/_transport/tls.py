"""TLS at the edge: the handshake a server bounds for each connection, the client's, and
one-line reasons for what fails.

The server's side (:class:`ServerTLS`, used by :func:`~triosock.serve_tcp`,
:func:`~triosock.serve_http` and :func:`~triosock.serve_websocket`):

* The handshake runs in the connection's own task, never in the accept loop: a client
  that connects and says nothing holds its own task (and its connection slot), not the
  server's accepting.
* It runs in a cancel scope whose deadline is ``handshake_timeout`` seconds from its
  start (:data:`DEFAULT_HANDSHAKE_TIMEOUT`, 10 s, unless the server was told otherwise;
  None: no deadline), and which the server's stop cancels too.
* A client that has not finished by then, or speaks something else (a plaintext client
  on a TLS port, whose first bytes are not a TLS record), is closed; the handler never
  sees it, and the log gets one line at DEBUG (``-v``) that says why
  (``127.0.0.1:50000: no TLS handshake within 10 s; closed``), never a traceback.

Why 10 s: a TLS 1.3 handshake is one round trip and a TLS 1.2 one two, plus a few
milliseconds of CPU; ten seconds leaves room for a slow mobile link and a loaded
machine, and a connection that says nothing costs its slot no longer than websockets'
opening handshake (:data:`~triosock._transport.websocket.OPEN_TIMEOUT`). Go's
``http.Transport`` gives a client's TLS handshake the same 10 s. (nginx waits 60 s;
Apache's ``mod_reqtimeout`` gives 5 s to the handshake.)

The client's side (:func:`client_handshake`, used by :func:`~triosock.open_tcp_stream`):
a :class:`~triosock.ConnectError` of one line for every failure: ``TLS handshake with
127.0.0.1:7070 failed: certificate verify failed: self-signed certificate``. Its
deadline is the caller's cancel scope, as trio has it (the command line's clients give
connecting and the handshake :data:`DEFAULT_HANDSHAKE_TIMEOUT` together).
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable
from typing import Any, Final

import trio

from .._errors import ConnectError, describe_oserror

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "ServerTLS", "client_handshake", "tls_reason"]

#: Seconds a TLS handshake may take, on either side (see the module docstring).
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0

# "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)": the words alone.
_OPENSSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")
#: What a client hears when the port it reached does not speak TLS (a plaintext
#: server answered the ClientHello with something that is not a TLS record).
_NOT_TLS: Final = frozenset(
    {"wrong version number", "unexpected message", "packet length too long", "http request"}
)


def tls_reason(exc: BaseException) -> str:
    """Why a TLS handshake failed, in a few lower-case words: ``wrong version number``,
    ``certificate verify failed: certificate has expired``, ``the connection closed``.

    Args:
      exc: what the handshake raised (trio's ``BrokenResourceError``, whose cause is
        the ``ssl.SSLError`` or ``OSError``), or that cause itself.
    """
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the connection closed"
    if isinstance(cause, ssl.SSLError):
        return _OPENSSL_NOISE.sub("", str(cause)) or type(cause).__name__
    if isinstance(cause, OSError):
        return describe_oserror(cause)
    return str(cause) or type(cause).__name__


class ServerTLS:
    """A server's TLS: its context, the handshake's deadline, what stops it, and how
    many handshakes failed.

    Args:
      context: the server's ``ssl.SSLContext`` (its certificate and key loaded).
      timeout: seconds a handshake may take (None: no deadline).
      stop_scope: makes a cancel scope that the server's stop cancels.
      logger: where a failed handshake's line goes (at DEBUG).
    """

    __slots__ = ("context", "failed", "logger", "stop_scope", "timeout")

    def __init__(
        self,
        context: ssl.SSLContext,
        timeout: float | None,
        stop_scope: Callable[[], trio.CancelScope],
        logger: logging.Logger,
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.stop_scope = stop_scope
        self.logger = logger
        #: Handshakes that failed or did not finish in time.
        self.failed = 0

    async def handshake(self, stream: trio.SSLStream[Any], peer: str) -> bool:
        """Do the server's half of ``stream``'s handshake within the deadline; whether
        it was done. When it was not, ``stream`` is broken (close it) and the log has
        said why. A cancel point."""
        scope = self.stop_scope()
        if self.timeout is not None:
            scope.deadline = trio.current_time() + self.timeout
        with scope:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                why = f"TLS handshake failed: {tls_reason(exc)}"
            else:
                return True
        if scope.cancelled_caught:
            if self.timeout is not None and trio.current_time() >= scope.deadline:
                why = f"no TLS handshake within {self.timeout:g} s"
            else:
                why = "the server stops: its TLS handshake was cut short"
        self.failed += 1
        self.logger.debug("%s: %s; closed", peer, why)
        return False


async def client_handshake(stream: trio.SSLStream[Any], where: str) -> None:
    """Do the client's half of ``stream``'s handshake (to ``where``, as it is shown). A
    cancel point; to bound its time, cancel it (trio's way: no timeout argument).

    Raises:
      ConnectError: it failed (one line: the certificate's problem, or a port that does
        not speak TLS). ``stream`` is broken then.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        reason = tls_reason(exc)
        if reason in _NOT_TLS:
            reason += " (does that port speak TLS?)"
        raise ConnectError(f"TLS handshake with {where} failed: {reason}") from exc
