"""``python -m triosock SERVICE status``: a running server's figures, read from its status
port, against what the test did to it (real servers, real clients, real sockets)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from websockets.trio.client import connect

from triosock import Request, Response, TCPServer, serve_http
from triosock._cli._console import CLIError
from triosock._cli._status_ask import NotAStatusPort, fetch_status

from .chattools import LineSocket, validate_udp_socket
from .clitools import PYTHON, cli_server, run

GUARD = 60
CLI = [PYTHON, "-m", "triosock"]
CHAT = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]


async def status_json(where: str, service: str = "chat") -> dict[str, Any]:
    result = await run([*CLI, service, "status", where, "--json"])
    assert result.returncode == 0, result.stderr.decode()
    figures = json.loads(result.stdout)
    assert isinstance(figures, dict)
    return figures


def listener(figures: dict[str, Any], transport: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [x for x in figures["listeners"] if x["transport"] == transport]
    assert len(found) == 1, found
    return found[0]


async def test_chat_status_counts_tcp_udp_and_web_users_rooms_and_lines() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            [*CHAT, "--web", "127.0.0.1:0", "--status", "127.0.0.1:0", "--rate", "none"],
            ready_lines=8,  # with the history line
        ) as server:
            status_line = next(x for x in server.lines if x.startswith("status (http)"))
            where = re.search(r"127\.0\.0\.1:\d+", status_line)
            assert where is not None
            status = where.group()
            alice = await LineSocket.connect(server.port("chat (tcp)"))
            bob = await LineSocket.connect(server.port("chat (tcp)"))
            await alice.send(b"/nick alice\n")
            await alice.read_until(b"is now known as alice")
            await bob.send(b"/nick bob\n/join #dev\n")
            await bob.read_until(b"joined #dev")
            udp = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await udp.connect(("127.0.0.1", server.port("chat (udp)")))
            await validate_udp_socket(udp)  # arrives, says nothing
            await alice.read_until(b"joined #lobby")
            web_port = server.port("chat (web)")
            async with connect(f"ws://127.0.0.1:{web_port}/ws") as web:
                await alice.read_until(b"joined #lobby")
                before = await status_json(status)
                for n in range(5):
                    await alice.send(b"line %d\n" % n)
                await alice.read_until(b"line 4")  # the sender sees its own lines
                while b"line 4" not in await udp.recv(2048):
                    pass
                while "line 4" not in str(await web.recv()):
                    pass
                after = await status_json(status)
                text = await run([*CLI, "chat", "status", status, "--interval", "0.2"])
            udp.close()
            alice.close()
            bob.close()

    chat = after["chat"]
    assert after["service"] == "chat"
    assert chat["users"] == 4
    assert chat["users_by_transport"] == {"tcp": 2, "udp": 1, "web": 1}
    assert chat["rooms"] == {"#lobby": 3, "#dev": 1}
    assert chat["sessions_total"] == 4
    assert listener(after, "tcp")["connections"] == 2
    assert listener(after, "udp")["peers"] == 1
    assert listener(after, "web")["connections"] == 1
    # Five lines in, each to the three in #lobby.
    assert chat["lines_in"] - before["chat"]["lines_in"] == 5
    assert chat["lines_out"] - before["chat"]["lines_out"] == 15
    assert chat["dropped"] == chat["disconnected_slow"] == 0
    # And as people read it:
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0].startswith("chat: pid ")
    assert "  users: 4 (tcp 2, udp 1, web 1), 4 sessions since start" in lines
    assert "  rooms: #dev 1, #lobby 3" in lines
    assert any(re.fullmatch(r"  chat \(tcp\) 127\.0\.0\.1:\d+: 2 connections .*", x) for x in lines)


async def test_worker_status_is_each_workers_and_their_sum() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            ["echo", "serve", "--port", "0", "--workers", "2", "--status", "127.0.0.1:0"],
            ready_lines=3,
        ) as server:
            port = server.port("echo (tcp)")
            status = re.search(r"127\.0\.0\.1:\d+", server.lines[2])
            assert status is not None
            assert server.lines[2].startswith("status (http)")
            for n in range(20):
                echo = await LineSocket.connect(port)
                await echo.send(b"%d\n" % n)
                assert await echo.read_until(b"%d" % n) == b"%d" % n
                echo.close()
            figures = await status_json(status.group(), "echo")
            text = await run([*CLI, "echo", "status", status.group(), "--once"])
    workers = figures["workers"]
    assert [w["worker"] for w in workers] == [1, 2]
    served = [listener(w, "tcp")["connections_total"] for w in workers]
    assert sum(served) == 20
    assert listener(figures["total"], "tcp")["connections_total"] == 20
    assert len({w["pid"] for w in workers}) == 2
    lines = text.stdout.decode().splitlines()
    assert lines[0].startswith("echo: 2 workers under pid ")
    assert lines[-2] == "all workers:"
    assert re.fullmatch(
        r"  echo \(tcp\) 127\.0\.0\.1:\d+: \d+ connections? \(20 since start\)", lines[-1]
    )


async def test_status_of_a_wrong_port_or_service_is_one_line() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            ["echo", "serve", "--port", "0", "--status", "127.0.0.1:0"], ready_lines=2
        ) as server:
            echo_port = server.port("echo (tcp)")
            status_port = server.port("status (http)")
            not_status = await run([*CLI, "echo", "status", f"127.0.0.1:{echo_port}", "--once"])
            not_chat = await run([*CLI, "chat", "status", f"127.0.0.1:{status_port}", "--once"])
        nobody = await run([*CLI, "echo", "status", f"127.0.0.1:{status_port}"])
    for result, expected in [
        (not_status, f"127.0.0.1:{echo_port} is not a status port: it does not answer HTTP"),
        (not_chat, "is an echo server, not chat: try python -m triosock echo status"),
        (nobody, "connection refused"),
    ]:
        assert result.returncode == 1
        assert b"Traceback" not in result.stderr
        (line,) = result.stderr.decode().strip().splitlines()
        assert expected in line


async def test_status_of_a_chat_port_says_at_once_it_is_no_status_port() -> None:
    # The chat's TCP port answers an HTTP request with a 400 that says it is a chat port;
    # the command repeats it, names the status port, and does not wait for its 5 s.
    with trio.fail_after(GUARD):
        async with cli_server(
            [*CHAT, "--web", "none", "--status", "none"], ready_lines=2
        ) as server:
            tcp = server.port("chat (tcp)")
            began = trio.current_time()
            result = await run([*CLI, "chat", "status", f"127.0.0.1:{tcp}"])
            took = trio.current_time() - began
    assert result.returncode == 1
    (line,) = result.stderr.decode().strip().splitlines()
    assert line == (
        f"triosock: error: 127.0.0.1:{tcp} is not a status port: it answered 400 Bad "
        "Request: this is a chat port (nc, telnet); it does not speak HTTP (chat servers "
        "answer status on 127.0.0.1:7079 unless --status moved it)"
    )
    assert took < 4  # an interpreter's start and a greeting, not the 5 s wait


async def test_what_another_http_server_says_is_repeated_without_its_control_characters() -> None:
    async def refuse(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return Response.text(403, "\x1b[2J\x1b[31mforbidden here\x07\nsecond line\n")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(refuse, 0, task_status=task_status)
            )
            with pytest.raises(NotAStatusPort) as refused:
                await fetch_status(("127.0.0.1", server.port))
            nursery.cancel_scope.cancel()
    assert str(refused.value) == (
        f"127.0.0.1:{server.port} is not a status port: it answered 403: [2J[31mforbidden here"
    )


async def test_a_status_port_that_refuses_the_host_says_to_ask_by_address() -> None:
    # A status port answers only for its own host (421 otherwise): the command says what
    # to do instead of calling it "not a status port".
    async def misdirected(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return Response.text(421, "not this server's host\n")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(misdirected, 0, task_status=task_status)
            )
            with pytest.raises(CLIError) as refused:
                await fetch_status(("127.0.0.1", server.port))
            nursery.cancel_scope.cancel()
    assert not isinstance(refused.value, NotAStatusPort)
    assert str(refused.value) == (
        f"127.0.0.1:{server.port} answers its status only to its own address or localhost "
        "(421 Misdirected Request): ask it by IP address"
    )


def _status_answer(figures: dict[str, Any]) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        body = json.dumps(figures).encode()
        return Response(200, [("content-type", "application/json")], body)

    return answer


HOSTILE = {
    "service": "chat",
    "version": "0.1\x1b]0;owned\x07",
    "pid": 7,
    "worker": None,
    "started": 0,
    "uptime": 5,
    "listeners": [
        {
            "name": "chat\x1b[2J",
            "transport": "tcp",
            "address": "x\x1b[H",
            "connections": 1,
            "connections_total": 2,
        }
    ],
}


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        (HOSTILE, None),  # printed, without its escape sequences
        ({**HOSTILE, "pid": None, "uptime": "soon"}, "ValueError"),
        ({k: v for k, v in HOSTILE.items() if k != "listeners"} | {"listeners": [{}]}, "KeyError"),
        ({**HOSTILE, "uptime": 1e999}, "OverflowError"),
        ({**HOSTILE, "service": "evil\x1b[31m"}, "is an evil[31m server, not chat"),
    ],
)
async def test_another_hosts_status_cannot_drive_the_terminal_or_raise_a_traceback(
    figures: dict[str, Any], expected: str | None
) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(_status_answer(figures), 0, task_status=task_status)
            )
            got = await run([*CLI, "chat", "status", f"127.0.0.1:{server.port}", "--once"])
            nursery.cancel_scope.cancel()
    assert b"\x1b" not in got.stdout + got.stderr
    assert b"\x07" not in got.stdout + got.stderr
    assert b"Traceback" not in got.stderr
    if expected is None:
        assert got.returncode == 0
        assert got.stdout.startswith(b"chat: pid 7, up 0:00:05, triosock 0.1]0;owned\n")
        assert b"  chat[2J (tcp) x[H: 1 connection (2 since start)" in got.stdout
    else:
        assert got.returncode == 1
        (line,) = got.stderr.decode().splitlines()
        assert expected in line
