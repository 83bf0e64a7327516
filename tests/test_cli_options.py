"""The options every serve command shares, and what the help promises: each serve
command takes ``--max-connections`` and ``--idle-timeout`` (the API's limits), its
``--config`` example is an option it has, a command line that asks for nothing to serve
is a usage error, and a client's help shows its own service's port. Real processes and
sockets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from .clitools import PYTHON, cli_server, run

GUARD = 60
CLI = [PYTHON, "-m", "triosock"]
#: Each serve command on free ports, without a status port, and the label of a line it
#: prints once it listens.
SERVE = {
    "echo": (["echo", "serve", "--port", "0"], "echo (tcp)"),
    "http": (["http", "serve", "--port", "0"], "http (tcp)"),
    "time": (
        ["time", "serve", "--strftime-port", "0"]
        + [f"--{name}-port=none" for name in ("rfc868", "daytime", "sntp")],
        "strftime (udp)",
    ),
    "chat": (
        ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"],
        "chat (tcp)",
    ),
}


def _config_example(help_text: str) -> str:
    """The config line the ``--config`` help shows, such as ``max-connections = 500``."""
    flat = " ".join(help_text.split())
    match = re.search(r"--config FILE .*? without the dashes \((.+?)\); the command line", flat)
    assert match, flat
    return match.group(1)


@pytest.mark.parametrize("service", sorted(SERVE))
async def test_the_config_example_of_each_serve_command_is_one_of_its_options(
    service: str, tmp_path: Path
) -> None:
    args, label = SERVE[service]
    with trio.fail_after(GUARD):
        shown = await run([*CLI, *args[:2], "--help"])
        assert shown.returncode == 0
        help_text = shown.stdout.decode()
        for option in ("--max-connections N", "--idle-timeout SECONDS|none"):
            assert option in help_text, f"{service} serve has no {option}"
        config = tmp_path / "serve.toml"
        config.write_text(_config_example(help_text) + '\nstatus = "none"\n')
        async with cli_server([*args, "--config", str(config)]) as server:
            assert label in server.lines[0]
            server.process.send_signal(2)
            assert await server.process.wait() == 0


async def test_echo_serve_closes_a_silent_connection_after_its_idle_timeout() -> None:
    with trio.fail_after(GUARD):
        args = ["echo", "serve", "--port", "0", "--status", "none", "--idle-timeout", "0.5"]
        async with cli_server(args) as server:
            silent = await trio.open_tcp_stream("127.0.0.1", server.port("echo (tcp)"))
            began = trio.current_time()
            assert await silent.receive_some() == b""  # closed by the server
            waited = trio.current_time() - began
            await silent.aclose()
    assert 0.4 <= waited < 5, waited


async def test_echo_serve_serves_max_connections_at_once_and_the_next_in_turn() -> None:
    with trio.fail_after(GUARD):
        args = ["echo", "serve", "--port", "0", "--status", "none", "--max-connections", "1"]
        async with cli_server(args) as server:
            port = server.port("echo (tcp)")
            first = await trio.open_tcp_stream("127.0.0.1", port)
            await first.send_all(b"one\n")
            assert await first.receive_some() == b"one\n"
            second = await trio.open_tcp_stream("127.0.0.1", port)  # waits in the backlog
            await second.send_all(b"two\n")
            with trio.move_on_after(0.5) as waited:  # not served while the first is
                await second.receive_some()
            assert waited.cancelled_caught
            await first.aclose()
            assert await second.receive_some() == b"two\n"  # its turn now
            await second.aclose()


async def test_time_serve_takes_an_idle_timeout_for_its_tcp_services() -> None:
    with trio.fail_after(GUARD):
        args, _ = SERVE["time"]
        async with cli_server(
            [*args, "--status", "none", "--idle-timeout", "0.5"], ready_lines=2
        ) as server:
            silent = await trio.open_tcp_stream("127.0.0.1", server.port("strftime (tcp)"))
            began = trio.current_time()
            assert await silent.receive_some() == b""  # closed, not after the default 300 s
            waited = trio.current_time() - began
            await silent.aclose()
    assert 0.4 <= waited < 5, waited


@pytest.mark.parametrize("command", [["chat"], ["chat", "serve"]])
async def test_serving_nothing_is_a_usage_error(command: list[str]) -> None:
    with trio.fail_after(GUARD):
        nothing = ("--tcp", "none", "--udp", "none", "--web", "none", "--irc", "none")
        result = await run([*CLI, *command, *nothing])
    prog = "python -m triosock " + " ".join(command)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"{prog}: error: nothing to serve: --tcp, --udp, --web and --irc are all none "
        f"(see {prog} --help)\n"
    )


@pytest.mark.parametrize(
    ("command", "port"),
    [(["time", "query"], 7038), (["echo", "send"], 7007), (["chat", "status"], 7079)],
)
async def test_a_clients_help_shows_its_own_services_port(command: list[str], port: int) -> None:
    with trio.fail_after(GUARD):
        result = await run([*CLI, *command, "--help"])
    assert result.returncode == 0
    ports = set(re.findall(r"127\.0\.0\.1:(\d+)", " ".join(result.stdout.decode().split())))
    assert ports == {str(port)}
