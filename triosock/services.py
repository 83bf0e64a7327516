"""The classic socket services as handlers for triosock's servers.

* Echo (RFC 862): :func:`echo_handler` for :func:`triosock.serve_tcp`,
  :func:`udp_echo_handler` for :func:`triosock.serve_udp`.
* Time: RFC 868 (:func:`rfc868_tcp_handler`, :func:`rfc868_udp_handler`), RFC 867 daytime
  (:func:`daytime_tcp_handler`, :func:`daytime_udp_handler`), SNTP
  (:func:`sntp_udp_handler`) and the tutorials' strftime service
  (:func:`strftime_tcp_handler`, :func:`strftime_udp_handler`).
* HTTP, for :func:`triosock.serve_http`: :func:`tutorial_handler` (hello and echo) and
  :class:`StaticFiles` (the files under a directory).
* :func:`reply_each`: the request/reply loop the UDP services are written with, for
  services of your own: one answer per datagram, the peer forgotten after a quiet spell,
  at most :data:`REPLY_RATE` answers a second to one address after :data:`REPLY_BURST`.
* :func:`refuse_server_ports`: the loop rule of the UDP request/reply services, for
  ``serve_udp(refuse_source=...)``: source ports only servers send from are refused.
"""

from __future__ import annotations

from ._services.echo import echo_handler, udp_echo_handler
from ._services.http import StaticFiles, tutorial_handler
from ._services.replies import (
    FIRST_CLIENT_PORT,
    REPLY_BURST,
    REPLY_IDLE_TIMEOUT,
    REPLY_RATE,
    refuse_server_ports,
    reply_each,
)
from ._services.timeservice import (
    daytime_tcp_handler,
    daytime_udp_handler,
    rfc868_tcp_handler,
    rfc868_udp_handler,
    sntp_udp_handler,
    strftime_tcp_handler,
    strftime_udp_handler,
)

__all__ = [
    "FIRST_CLIENT_PORT",
    "REPLY_BURST",
    "REPLY_IDLE_TIMEOUT",
    "REPLY_RATE",
    "StaticFiles",
    "daytime_tcp_handler",
    "daytime_udp_handler",
    "echo_handler",
    "refuse_server_ports",
    "reply_each",
    "rfc868_tcp_handler",
    "rfc868_udp_handler",
    "sntp_udp_handler",
    "strftime_tcp_handler",
    "strftime_udp_handler",
    "tutorial_handler",
    "udp_echo_handler",
]
