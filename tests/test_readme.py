"""The README's API example, run as a user would run it, judged by nc."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from .clitools import PYTHON, line_process, need
from .conftest import GUARD

README = Path(__file__).parent.parent / "README.md"


def api_example() -> str:
    """The first Python block of the README's API section."""
    text = README.read_text()
    section = text[text.index("## The API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_the_api_example_serves_nc_and_refuses_a_long_line_without_dropping_the_user() -> (
    None
):
    nc = need("nc")
    with trio.fail_after(GUARD):
        async with line_process([PYTHON, "-u", "-c", api_example()]) as server:
            started = await server.expect(b"listening on port")
            port = started.split()[-1].decode()
            async with line_process([nc, "-N", "127.0.0.1", port]) as client:
                await client.send(b"hello")
                assert await client.readline() == b"HELLO"
                await client.send(b"x" * 5000)  # over its 4096
                assert await client.readline() == b"refused: 5000 bytes or more"
                await client.send(b"still here")
                assert await client.readline() == b"STILL HERE"
                await client.close_stdin()
                assert await client.read_to_eof() == []
            server.process.kill()
