"""The default ports of the command line's echo and time servers, and the loop rule
their UDP request/reply services share.

The defaults are unprivileged stand-ins for the well-known ports (7, 37, 13, 123). The
seed tutorial's strftime service has no well-known port; it sits next to the time
service.
"""

from __future__ import annotations

from collections.abc import Callable

from .._services.replies import refuse_server_ports
from .chat import UDP_DEFAULT as CHAT_UDP_DEFAULT

ECHO_PORT = 7007
RFC868_PORT = 7037
DAYTIME_PORT = 7013
SNTP_PORT = 7123
STRFTIME_PORT = 7038

#: The UDP ports of our services as the command line starts them (the chat's too: it
#: says to its room what a peer sends, and to that peer what the room says). Like the
#: well-known ports (below 1024), no client sends from them: a datagram from one is an
#: answer of another of our servers, and answering it could start a loop.
DEFAULT_UDP_PORTS = frozenset(
    {ECHO_PORT, RFC868_PORT, DAYTIME_PORT, SNTP_PORT, STRFTIME_PORT, CHAT_UDP_DEFAULT[1]}
)


def loop_rule(*served: int | None) -> Callable[[tuple[str, int]], str | None]:
    """The ``refuse_source`` rule of a request/reply service that the command line runs:
    source ports below 1024, the default ports of our services, and ``served`` (the
    ports this process serves; None and 0 are left out) are refused."""
    return refuse_server_ports(DEFAULT_UDP_PORTS | {port for port in served if port})
