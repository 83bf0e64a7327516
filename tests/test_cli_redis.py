"""What ``chat serve`` shares through Redis, checked before anything is served: without
coredis, or with a ``--redis`` that nobody answers, the server says so in one line and
exits 1, with ``--workers`` before any worker starts (not workers that die and start
again, forever)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from .clitools import PYTHON

GUARD = 60
#: Long enough for an interpreter's start and a refused connection; a supervisor that
#: starts workers instead goes on past it.
ANSWER_WITHIN = 15
CHAT = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
CHAT += ["--status", "none"]

#: A sitecustomize that makes ``import coredis`` fail, as where it is not installed.
_NO_COREDIS = """\
import importlib.abc
import sys


class _NoCoredis(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "coredis" or name.startswith("coredis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoCoredis())
"""


async def _serve(args: list[str], env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run ``python -m triosock ARGS``; its status, stdout and stderr, or fail when it
    is still running after ANSWER_WITHIN seconds."""
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "triosock", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = bytearray(), bytearray()

    async def collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
        while chunk := await stream.receive_some():
            into += chunk

    try:
        with trio.move_on_after(ANSWER_WITHIN):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, process.stdout, out)
                nursery.start_soon(collect, process.stderr, err)
                await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()  # its workers see their stdin end and stop too
                await process.wait()
                pytest.fail(f"still running after {ANSWER_WITHIN} s: {bytes(out + err)!r}")
    status = process.returncode
    assert status is not None
    return status, bytes(out), bytes(err)


def _without_coredis(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(_NO_COREDIS)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


def _free_port() -> int:
    """A loopback port nothing listens on (bound, and closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


COREDIS_MISSING = (
    b"triosock: error: --redis needs coredis (No module named 'coredis'): "
    b"pip install 'triosock[redis]'\n"
)


@pytest.mark.parametrize("workers", ["1", "4"])
async def test_without_coredis_redis_is_one_line_before_any_worker(
    tmp_path: Path, workers: str
) -> None:
    env = _without_coredis(tmp_path)
    with trio.fail_after(GUARD):
        # --workers shares the rooms through a private redis: coredis is needed as well.
        implied = await _serve([*CHAT, "--workers", workers], env) if workers != "1" else None
        given = await _serve([*CHAT, "--workers", workers, "--redis", "redis://x:1/0"], env)
    for result in filter(None, [implied, given]):
        assert result == (1, b"", COREDIS_MISSING)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_redis_nobody_answers_is_one_line_before_any_worker(workers: str) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    with trio.fail_after(GUARD):
        result = await _serve([*CHAT, "--workers", workers, "--redis", url])
    assert result == (
        1,
        b"",
        f"triosock: error: cannot reach redis at {url}: connection refused\n".encode(),
    )
