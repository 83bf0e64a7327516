"""A password is seen by nobody but the server's hash: ``chat serve -vv`` (the most it
logs) runs with its data in a directory; ``nc`` registers, a user logs in, fails a
login, changes the password; the log, the status JSON, the data file and what a TCP
and a WebSocket user in the same room saw are searched for every password used.
(What Redis sees is watched in ``test_accounts_cluster``.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio
from websockets.trio.client import connect

from .chattools import LineSocket
from .clitools import PYTHON, need
from .test_status import status_json

GUARD = 60
FIRST = "zqx7amber lantern phrase"
SECOND = "second-zqx8-phrase"
WRONG = "wrong-zqx9-guess"


async def test_no_password_reaches_the_log_the_status_the_file_or_other_users(
    tmp_path: Path,
) -> None:
    nc = need("nc")
    log = (tmp_path / "server.log").open("wb")
    argv = [
        *(PYTHON, "-m", "triosock", "chat", "serve", "-vv", "--rate", "none"),
        *("--tcp", "127.0.0.1:0", "--udp", "none", "--web", "127.0.0.1:0"),
        *("--status", "127.0.0.1:0", "--data", str(tmp_path / "data")),
    ]
    with trio.fail_after(GUARD), log:
        server = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=log)
        try:
            assert server.stdout is not None
            started = b""
            while b"status (http)" not in started:
                chunk = await server.stdout.receive_some()
                assert chunk, started
                started += chunk
            lines = started.decode().splitlines()

            def port(label: str) -> int:
                line = next(x for x in lines if x.startswith(label))
                return int(line.split("127.0.0.1:")[1].split(":")[0].split()[0])

            tcp, web = port("chat (tcp)"), port("chat (web)")
            status = f"127.0.0.1:{port('status (http)')}"
            watcher = await LineSocket.connect(tcp)
            await watcher.send(b"/nick watcher\n")
            await watcher.read_until(b"is now known as watcher")
            async with connect(f"ws://127.0.0.1:{web}/ws") as ws:
                # nc registers alice
                said = f"/nick alice\n/register {FIRST}\n/quit\n".encode()
                registration = await trio.run_process(
                    [nc, "-q", "5", "127.0.0.1", str(tcp)], stdin=said, capture_stdout=True
                )
                assert b"alice is yours" in registration.stdout
                alice = await LineSocket.connect(tcp)
                await alice.send(f"/login alice {WRONG}\n".encode())
                assert await alice.read_until(b"login failed") == (
                    b"-!- login failed: wrong nick or password for alice"
                )
                await alice.send(f"/login alice {FIRST}\n/password {SECOND} x\n".encode())
                await alice.read_until(b"logged in as alice")
                await alice.send(f"/password {FIRST.split()[0]} {SECOND}\n".encode())
                await alice.read_until(b"password not changed")  # FIRST has spaces: one word
                await alice.send(f"//login alice {FIRST}\n done\n".encode())
                await alice.read_until(b"not said")
                await watcher.read_until(b"alice:  done")
                figures = await status_json(status)
                seen_by_ws = []
                with trio.move_on_after(0.5):  # what the page saw meanwhile, all of it
                    while True:
                        seen_by_ws.append(str(await ws.recv()))
                alice.close()
            watcher.close()
        finally:
            with trio.CancelScope(shield=True):
                server.send_signal(2)
                with trio.move_on_after(10):
                    await server.wait()
                if server.returncode is None:
                    server.kill()
                    await server.wait()
    logged = (tmp_path / "server.log").read_text()
    assert "alice registered (tcp 127.0.0.1:" in logged  # -vv logged it all...
    assert "failed login for alice from 127.0.0.1 (wrong password)" in logged
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    assert b"scrypt$" in data  # ... and the file holds the hash
    places = {
        "log": logged,
        "status": str(figures),
        "file": data.decode("latin-1"),
        "watcher": b"\n".join(watcher.lines).decode(),
        "page": "\n".join(seen_by_ws),
    }
    assert "alice" in places["watcher"]
    assert "alice" in places["page"]
    for where, text in places.items():
        for secret in (FIRST, SECOND, WRONG, FIRST.split()[0]):
            assert secret not in text, f"{secret!r} in the {where}"
