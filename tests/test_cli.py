"""The command line, as a user runs it: real processes, real clients."""

from __future__ import annotations

import trio

from .clitools import PYTHON, cli_server, need, run

GUARD = 60


async def test_nc_gets_its_line_echoed() -> None:
    nc = need("nc")
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--port", "0"]) as server:
            port = server.port("echo (tcp)")
            result = await run([nc, "-N", "127.0.0.1", str(port)], stdin=b"hello\n")
            assert result.stdout == b"hello\n"


async def test_echo_send_with_arguments_and_with_stdin() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--port", "0"]) as server:
            where = f"127.0.0.1:{server.port()}"
            result = await run([PYTHON, "-m", "triosock", "echo", "send", where, "hi", "there"])
            assert (result.returncode, result.stdout) == (0, b"hi there\n")
            data = bytes(range(256)) * 1000
            result = await run([PYTHON, "-m", "triosock", "echo", "send", where], stdin=data)
            assert result.returncode == 0
            assert result.stdout == data


async def test_sigint_stops_the_server_gracefully_with_status_zero() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--port", "0"]) as server:
            server.process.send_signal(2)
            assert await server.process.wait() == 0


async def test_a_second_sigint_during_the_stop_exits_without_a_traceback() -> None:
    # The first Ctrl-C starts the graceful stop; a user still connected keeps it busy
    # (its goodbye and linger), and a second Ctrl-C arrives meanwhile: exit 130, as a
    # shell expects, and no traceback.
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
        ) as server:
            user = await trio.open_tcp_stream("127.0.0.1", server.port("tcp"))
            await user.receive_some()  # the welcome: the session is running
            server.process.send_signal(2)
            assert server.process.stdout is not None
            seen = b""
            while b"shutting down" not in seen:
                seen += await server.process.stdout.receive_some()
            server.process.send_signal(2)
            status = await server.process.wait()
            assert server.process.stderr is not None
            errors = b""
            while chunk := await server.process.stderr.receive_some():
                errors += chunk
            await user.aclose()
    assert status == 130
    assert b"Traceback" not in errors


async def test_user_errors_are_one_line_without_traceback() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--port", "0"]) as server:
            in_use = await run(
                [PYTHON, "-m", "triosock", "echo", "serve", "--port", str(server.port())]
            )
            refused_port = server.port()
        refused = await run(
            [PYTHON, "-m", "triosock", "echo", "send", f"127.0.0.1:{refused_port}", "x"]
        )
        bad_address = await run([PYTHON, "-m", "triosock", "echo", "send", "nohost", "x"])
        bad_port = await run([PYTHON, "-m", "triosock", "echo", "serve", "--port", "99999"])
        unknown_host = await run(
            [PYTHON, "-m", "triosock", "echo", "serve", "--host", "no.such.host.invalid"]
        )
    for result, expected in [
        (in_use, b"address already in use"),
        (refused, b"cannot connect to 127.0.0.1:"),
        (bad_address, b"expected HOST:PORT"),
        (bad_port, b"port out of range"),
        (unknown_host, b"cannot listen on no.such.host.invalid"),
    ]:
        assert result.returncode != 0
        assert expected in result.stderr
        assert b"Traceback" not in result.stderr
        assert result.stderr.strip().count(b"\n") <= 1 or result.stderr.startswith(b"usage:")


async def test_nc_gets_udp_echo() -> None:
    nc = need("nc")
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--udp", "--port", "0"]) as server:
            port = server.port("echo (udp)")
            result = await run([nc, "-u", "-w1", "127.0.0.1", str(port)], stdin=b"ping\n")
            assert result.stdout == b"ping\n"
            result = await run(
                [PYTHON, "-m", "triosock", "echo", "send", "--udp", f"127.0.0.1:{port}", "hi"]
            )
            assert (result.returncode, result.stdout) == (0, b"hi\n")
