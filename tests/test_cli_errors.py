"""The command line's edges: every bad value is one line, the help says what it means,
and the servers tell users how to reach them and stop gracefully on any stop signal."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
import trio

import triosock

from .clitools import PYTHON, cli_server, need, run

GUARD = 60
CLI = [PYTHON, "-m", "triosock"]


def one_line_error(stderr: bytes) -> str:
    """The single line a failed command printed; fails on a traceback or more lines."""
    assert b"Traceback" not in stderr, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # Named in the issue:
        (["echo", "send", "--udp", "--timeout", "-1", "127.0.0.1:9", "x"], "must be positive"),
        (["chat", "serve", "--grace", "-1"], "--grace: must not be negative"),
        (["echo", "send", "127.0.0.1:9", "--timeout", "0", "x"], "--timeout: must be positive"),
        (["echo", "send", "127.0.0.1:9", "-n"], "echo send: error: unrecognized arguments: -n"),
        # And their neighbours:
        (["chat", "--grace", "nan"], "must be a finite number"),
        (["chat", "serve", "--rate", "-5"], "--rate: must be positive"),
        (["chat", "serve", "--workers", "0"], "--workers: must be from 1 to 256"),
        (["chat", "serve", "--tcp", "nohost"], "expected HOST:PORT"),
        (["chat", "serve", "--redis", "localhost:6379"], "not a redis URL"),
        (["chat", "serve", "--policy", "lossy"], "invalid choice: 'lossy'"),
        (["chat", "serve", "--expiry-factor", "0.5"], "must be at least 1"),
        (["chat", "join", "127.0.0.1:99999"], "port out of range"),
        (["echo", "serve", "--port", "-1"], "port out of range"),
        (["time", "query", "127.0.0.1:9", "--timeout", "inf"], "must be a finite number"),
        (["time", "serve", "--sntp-port", "http"], "not a port number"),
        (["http", "get", "http://127.0.0.1:9/", "--timeout", "-3"], "must be positive"),
        (["http", "get", "ftp://127.0.0.1/"], "not an http:// or https:// URL"),
        (["echo", "serve", "--workers", "many"], "not a whole number"),
        (["nosuch"], "invalid choice: 'nosuch'"),
        ([], "the following arguments are required: SERVICE"),
    ],
)
async def test_every_bad_value_is_one_line_and_a_failure(args: list[str], expected: str) -> None:
    with trio.fail_after(GUARD):
        result = await run([*CLI, *args])
    assert result.returncode != 0
    assert expected in one_line_error(result.stderr)


async def test_a_refused_connection_says_so() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--port", "0"]) as server:
            port = server.port()
        result = await run([*CLI, "echo", "send", f"127.0.0.1:{port}", "x"])
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert line == f"triosock: error: cannot connect to 127.0.0.1:{port}: connection refused"


async def test_an_oversized_datagram_is_not_a_lost_connection() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--udp", "--port", "0"]) as server:
            where = f"127.0.0.1:{server.port()}"
            result = await run([*CLI, "echo", "send", "--udp", where], stdin=b"x" * 70_000)
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "connection" not in line
    assert "a datagram of 70000 bytes is over UDP's limit of 65507 bytes" in line


async def test_version_help_and_the_console_scripts_name() -> None:
    with trio.fail_after(GUARD):
        version = await run([*CLI, "--version"])
        assert version.returncode == 0
        assert version.stdout.decode().startswith(f"triosock {triosock.__version__} (trio ")
        query_help = (await run([*CLI, "time", "query", "--help"])).stdout.decode()
        assert "'%H:%M:%S'" in query_help
        assert "%%" not in query_help
        chat_help = (await run([*CLI, "chat", "--help"])).stdout.decode()
        assert "[ACTION ...]" in chat_help.splitlines()[0]
        serve_help = (await run([*CLI, "chat", "serve", "--help"])).stdout.decode()
        for option in ("--max-connections N", "--idle-timeout SECONDS|none", "--grace SECONDS"):
            text = serve_help.split("\n  " + option, 1)[1].split("\n  -", 1)[0]
            assert "(" in text, f"{option} says no default: {text!r}"
        send_help = (await run([*CLI, "echo", "send", "--help"])).stdout.decode()
        assert "[IPv6]:PORT" in send_help
        script = Path(sys.executable).with_name("triosock")
        if not script.exists():
            pytest.skip("no triosock console script beside this interpreter")
        result = await run([str(script), "echo", "send", "nohost"])
    assert one_line_error(result.stderr).startswith("triosock echo send: error:")


async def test_sighup_stops_a_server_gracefully() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
        ) as server:
            user = await trio.open_tcp_stream("127.0.0.1", server.port("tcp"))
            await user.receive_some()  # the welcome
            server.process.send_signal(signal.SIGHUP)
            goodbye = b""
            while chunk := await user.receive_some():  # the server says goodbye, then closes
                goodbye += chunk
            assert await server.process.wait() == 0
            assert b"-!- server closing" in goodbye
            await user.aclose()


async def test_the_start_up_lines_say_how_to_join_each_listener() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "none"],
            ready_lines=4,
        ) as server:
            tcp, udp = server.port("chat (tcp)"), server.port("chat (udp)")
            hints = [line for line in server.lines if line.startswith("join with:")]
        assert hints == [
            f"join with: nc 127.0.0.1 {tcp}, or python -m triosock chat join 127.0.0.1:{tcp}",
            f"join with: socat - UDP:127.0.0.1:{udp}, or python -m triosock chat join "
            f"127.0.0.1:{udp} --udp",
        ]
        # Only UDP: no word of nc.
        async with cli_server(
            ["chat", "serve", "--tcp", "none", "--udp", "127.0.0.1:0", "--web", "none"],
            ready_lines=2,
        ) as server:
            assert server.lines[1].startswith("join with: socat - UDP:127.0.0.1:")
            assert not any("nc " in line for line in server.lines)


async def _log_of(args: list[str], client: list[str]) -> str:
    """What the echo server logged while ``client`` (with ``{port}``) ran once."""
    async with cli_server(args) as server:
        port = server.port()
        await run([part.format(port=port) for part in client], stdin=b"hello\n")
        server.process.send_signal(signal.SIGINT)
        assert await server.process.wait() == 0
        assert server.process.stderr is not None
        log = b""
        while chunk := await server.process.stderr.receive_some():
            log += chunk
    return log.decode()


async def test_verbose_logs_each_client_coming_and_going_and_quiet_logs_nothing() -> None:
    nc = need("nc")
    tcp_client = [nc, "-N", "127.0.0.1", "{port}"]
    udp_client = [*CLI, "echo", "send", "--udp", "127.0.0.1:{port}", "hello"]
    with trio.fail_after(GUARD):
        plain = await _log_of(["echo", "serve", "--port", "0"], tcp_client)
        verbose_tcp = await _log_of(["echo", "serve", "--port", "0", "-v"], tcp_client)
        verbose_udp = await _log_of(["-v", "echo", "serve", "--udp", "--port", "0"], udp_client)
        quiet = await _log_of(
            ["chat", "serve", "-q", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"],
            tcp_client,
        )
    assert plain == ""
    assert re.search(r" DEBUG triosock\.tcp: 127\.0\.0\.1:\d+ connected", verbose_tcp)
    assert re.search(r" DEBUG triosock\.tcp: 127\.0\.0\.1:\d+ disconnected after", verbose_tcp)
    assert re.search(r" DEBUG triosock\.udp: UDP peer 127\.0\.0\.1:\d+ arrived", verbose_udp)
    # The chat logs each join and leave at INFO: -q keeps them out.
    assert quiet == "", quiet


async def test_a_config_file_sets_options_and_the_command_line_overrides_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "chat.toml"
    config.write_text(
        'tcp = "none"\nudp = "127.0.0.1:0"\nweb = "none"\nstatus = "none"\n'
        "heartbeat = 2\nexpiry-factor = 3\n"
    )
    with trio.fail_after(GUARD):
        async with cli_server(["chat", "serve", "--config", str(config)]) as server:
            from_file = server.lines[0]
        async with cli_server(
            ["chat", "serve", "--heartbeat", "1", f"--config={config}", "--tcp", "127.0.0.1:0"],
            ready_lines=2,
        ) as server:
            overridden = server.lines[:2]
    assert re.fullmatch(
        r"chat \(udp\) listening on .*\(peers expire after 6 s of silence\)", from_file
    )
    assert overridden[0].startswith("chat (tcp) listening on 127.0.0.1:")
    assert overridden[1].endswith("(peers expire after 3 s of silence)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1\n", "'bogus' is not an option of python -m triosock echo serve"),
        ("port = [1, 2]\n", "port takes one value, not a list"),
        ("udp = 1\n", "udp is true or false"),
        ("port = true\n", "port takes a value, not true"),
        ("port = \n", "is not valid TOML"),
        ("port = 99999\n", "port out of range"),
        ("[echo]\nport = 1\n", "'echo' is not an option"),
        ("host = {a = 1}\nport = 0\n", "host must be a string or a number"),
    ],
)
async def test_a_bad_config_file_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "echo.toml"
    config.write_text(text)
    with trio.fail_after(GUARD):
        result = await run([*CLI, "echo", "serve", "--config", str(config)])
        missing = await run([*CLI, "echo", "serve", "--config", str(tmp_path / "none.toml")])
    assert result.returncode == missing.returncode == 2
    assert expected in one_line_error(result.stderr)
    assert "cannot read" in one_line_error(missing.stderr)
