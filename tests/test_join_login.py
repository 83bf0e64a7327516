"""``chat join --nick NAME --password-file FILE`` (or ``--login``, which asks without
echo): the client logs in to a registered nick, first thing, and again after a lost
connection that could not be resumed. Against a real ``chat serve``, through pipes, with
the password never on the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from .clitools import run
from .conftest import GUARD
from .test_accounts import registered
from .test_join_client import JOIN, chat_server, observer

PASSWORD = "a long pass phrase"


async def test_the_client_logs_in_with_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    with trio.fail_after(GUARD):
        async with chat_server("--data", str(tmp_path / "data")) as server:
            await registered(server.tcp, b"alice", PASSWORD)
            async with observer(server) as bob:
                args = [*JOIN, f"127.0.0.1:{server.tcp}", "--nick", "alice"]
                result = await run(
                    [*args, "--password-file", str(secret)], stdin=b"hello from alice\n/quit\n"
                )
                assert await bob.read_until(b"hello from alice") == (
                    b"[#lobby] alice: hello from alice"
                )
            assert result.returncode == 0, result.stderr
            assert b"-!- you are logged in as alice" in result.stdout
            assert PASSWORD.encode() not in result.stdout + result.stderr
            # a wrong one: told, and still in the room as a guest
            secret.write_text("not the password\n")
            result = await run(
                [*args, "--password-file", str(secret), "--no-reconnect"], stdin=b"/quit\n"
            )
            assert b"-!- login failed: wrong nick or password for alice" in result.stdout


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--login"], "--login and --password-file log in as --nick NAME: give it"),
        (["--nick", "a", "--password-file", "/nonexistent/pw"], "cannot read the password file"),
    ],
)
async def test_a_login_without_what_it_needs_is_a_usage_error(
    options: list[str], error: str
) -> None:
    with trio.fail_after(GUARD):
        result = await run([*JOIN, "127.0.0.1:9", *options])
    assert result.returncode == 2
    assert error in result.stderr.decode()
