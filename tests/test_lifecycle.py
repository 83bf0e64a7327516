"""What every ``serve_*`` shares: its limits are checked when it starts."""

from __future__ import annotations

import functools
import socket
from typing import Any

import pytest
import trio

import triosock


async def _echo(stream: object) -> None:
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("serve", "options", "error"),
    [
        (triosock.serve_tcp, {"idle_timeout": float("nan")}, ValueError),
        (triosock.serve_tcp, {"idle_timeout": 0}, ValueError),
        (triosock.serve_tcp, {"idle_timeout": "5"}, TypeError),
        (triosock.serve_tcp, {"grace_period": -1}, ValueError),
        (triosock.serve_udp, {"peer_idle_timeout": -1.0}, ValueError),
        (triosock.serve_udp, {"grace_period": float("nan")}, ValueError),
        (triosock.serve_websocket, {"ping_interval": 0}, ValueError),
        (triosock.serve_http, {"grace_period": -0.5}, ValueError),
    ],
)
async def test_a_bad_limit_is_refused_when_the_server_starts_and_binds_nothing(
    serve: Any, options: dict[str, object], error: type[Exception]
) -> None:
    # Checked before the first peer arrives (where it would have killed the server) and
    # before anything is bound (the port is free again at once).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(error):
                await nursery.start(functools.partial(serve, _echo, port, **options))
    with socket.socket() as again:  # nothing was left bound to the port
        again.bind(("127.0.0.1", port))
