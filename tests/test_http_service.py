"""``python -m triosock http serve|get`` as users run them, judged by curl and ab."""

from __future__ import annotations

import logging
import os
import re
from functools import partial
from pathlib import Path

import pytest
import trio

from triosock import TCPConnection, TCPServer, serve_http, serve_tcp
from triosock.services import StaticFiles

from .clitools import PYTHON, cli_server, need, run
from .conftest import GUARD


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    done = await run([need("curl"), "-sS", "--max-time", "10", *args])
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "hello.txt").write_text("hello from a file\n")
    (root / "page.html").write_text("<p>a page</p>\n")
    (root / "docs" / "index.html").write_text("<p>the docs</p>\n")
    (root / "<script>.txt").write_text("odd name\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root\n")
    (root / "escape").symlink_to(secret)
    (root / "inside").symlink_to(root / "hello.txt")
    (root / "sub").mkdir()  # no index.html: listed
    (root / "sub" / "a b.txt").write_text("in sub\n")
    (root / "sub" / "deeper").mkdir()
    (root / "evil.com").mkdir()
    (root / "we?rd #dir").mkdir()
    return root


#: The status line of a 301, with its reason phrase.
MOVED = re.compile(rb"HTTP/1\.1 301 Moved Permanently\r\n")


async def exchange(port: int, method: str, target: str) -> tuple[bytes, dict[str, str], bytes]:
    """One request on its own connection, written as given: the status line, the
    headers (names in lower case) and the body."""
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", port))
        request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        await sock.send(request.encode())
        received = b""
        while chunk := await sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = [line.decode("latin-1").split(": ", 1) for line in lines]
    return status + b"\r\n", {name.lower(): value for name, value in fields}, body


@pytest.mark.parametrize(
    ("method", "target", "location"),
    [
        ("GET", "/docs", "/docs/"),
        ("HEAD", "/docs", "/docs/"),
        ("GET", "/sub", "/sub/"),
        ("GET", "/sub/deeper", "/sub/deeper/"),
        ("GET", "/docs?x=1&y=%20z", "/docs/?x=1&y=%20z"),  # the query as sent
        ("GET", "/./sub", "/sub/"),
        ("GET", "/we%3Frd%20%23dir", "/we%3Frd%20%23dir/"),  # re-encoded
        ("GET", "/we%3Frd%20%23dir?a", "/we%3Frd%20%23dir/?a"),
        # Never a Location another host: an origin-form target "//evil.com" is a path
        # (the directory evil.com), and the Location is rebuilt with one slash.
        ("GET", "//evil.com", "/evil.com/"),
        ("GET", "///evil.com", "/evil.com/"),
        ("GET", "/%2Fevil.com", "/evil.com/"),
        ("HEAD", "/%2F%2Fevil.com", "/evil.com/"),
        ("GET", "/docs?q=<a>", "/docs/?q=%3Ca%3E"),
    ],
)
async def test_a_directory_without_its_slash_is_moved_permanently_to_it(
    site: Path, method: str, target: str, location: str
) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                partial(serve_http, StaticFiles(site), 0, grace_period=1)
            )
            status, headers, body = await exchange(server.port, method, target)
            nursery.cancel_scope.cancel()
    assert MOVED.fullmatch(status), status
    assert headers["location"] == location
    assert int(headers["content-length"]) == len(f"moved permanently to {location}\n")
    assert body == (b"" if method == "HEAD" else f"moved permanently to {location}\n".encode())


@pytest.mark.parametrize(
    ("target", "start"),
    [("/docs/", b"<p>the docs</p>"), ("/sub/", b"<!doctype html>"), ("//evil.com/", b"<!doctype")],
)
async def test_a_directory_with_its_slash_is_served(site: Path, target: str, start: bytes) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                partial(serve_http, StaticFiles(site), 0, grace_period=1)
            )
            status, headers, body = await exchange(server.port, "GET", target)
            nursery.cancel_scope.cancel()
    assert status == b"HTTP/1.1 200 OK\r\n"
    assert "location" not in headers
    assert body.startswith(start)


async def test_curl_follows_a_directory_to_its_slash_and_its_relative_links(site: Path) -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0", "--root", str(site)]) as server:
            base = f"http://127.0.0.1:{server.port('http')}"
            for option in ("-i", "-I"):  # GET and HEAD
                code, out, _ = await curl(option, f"{base}/docs?x=1")
                head, _, body = out.partition(b"\r\n\r\n")
                status, *lines = head.split(b"\r\n")
                assert (code, MOVED.fullmatch(status + b"\r\n") is not None) == (0, True)
                assert b"location: /docs/?x=1" in [line.lower() for line in lines]
                assert body == (b"moved permanently to /docs/?x=1\n" if option == "-i" else b"")
            code, out, _ = await curl("-L", f"{base}/docs")
            assert (code, out) == (0, b"<p>the docs</p>\n")
            code, listing, _ = await curl("-L", "-w", "%{url_effective}", f"{base}/sub")
            assert code == 0
            assert listing.endswith(f"{base}/sub/".encode())  # where curl ended
            # The listing's links are relative, and resolve inside the directory.
            hrefs = re.findall(rb'href="([^"]*)"', listing)
            assert hrefs == [b"a%20b.txt", b"deeper/"]
            assert await curl(f"{base}/sub/{hrefs[0].decode()}") == (0, b"in sub\n", b"")
            deeper = f"{base}/sub/{hrefs[1].decode()}"
            assert await curl("-o", "/dev/null", "-w", "%{http_code}", deeper) == (0, b"200", b"")


async def test_the_tutorial_server_says_hello_and_echoes_the_request() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0"]) as server:
            base = f"http://127.0.0.1:{server.port('http')}"
            assert await curl(f"{base}/") == (0, b"hello world\n", b"")
            code, body, _ = await curl("--data-binary", "the body", f"{base}/echo?x=1")
            assert code == 0
            head, _, rest = body.partition(b"\r\n\r\n")
            assert head.splitlines()[0] == b"POST /echo?x=1 HTTP/1.1"
            assert b"content-length: 8" in head.lower().splitlines()
            assert rest == b"the body"
            code, out, _ = await curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/nope")
            assert out == b"404"
            code, out, _ = await curl("-i", "-X", "DELETE", f"{base}/")
            assert out.startswith(b"HTTP/1.1 405 ")
            assert b"allow: GET, HEAD" in out.lower().replace(b"get, head", b"GET, HEAD")


async def test_static_files_with_types_validators_and_304(site: Path) -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0", "--root", str(site)]) as server:
            base = f"http://127.0.0.1:{server.port('http')}"
            _, out, _ = await curl("-i", f"{base}/page.html")
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert body == b"<p>a page</p>\n"
            headers = dict(line.decode().lower().split(": ", 1) for line in head.splitlines()[1:])
            assert headers["content-type"] == "text/html"
            etag = headers["etag"]
            _, out, _ = await curl("-I", f"{base}/page.html")
            assert b"content-length: 14" in out.lower()
            assert out.endswith(b"\r\n\r\n")
            for condition in (
                f"If-None-Match: {etag}",
                f"If-Modified-Since: {headers['last-modified']}",
            ):
                _, out, _ = await curl("-i", "-H", condition, f"{base}/page.html")
                assert out.startswith(b"HTTP/1.1 304 "), condition
                assert out.endswith(b"\r\n\r\n")  # no body
                assert b"content-length" not in out.lower()  # nor a length of one
            assert (await curl(f"{base}/docs/"))[1] == b"<p>the docs</p>\n"  # index.html
            assert (await curl(f"{base}/inside"))[1] == b"hello from a file\n"
            _, listing, _ = await curl(f"{base}/")
            assert b"&lt;script&gt;.txt" in listing
            assert b"<script>" not in listing
            assert b"escape" not in listing  # a symlink out of the root is not listed
            _code, out, _ = await curl("-o", "/dev/null", "-w", "%{http_code}", "-d", "x", base)
            assert out == b"405"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/%2E%2E/%2e%2e/secret.txt",
        "/escape",
        "/..%2fsecret.txt",
        "/missing.txt",
    ],
)
async def test_paths_out_of_the_root_are_404(site: Path, path: str) -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0", "--root", str(site)]) as server:
            url = f"http://127.0.0.1:{server.port('http')}{path}"
            _code, out, _ = await curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", url)
            assert out == b"404"


async def test_ab_keep_alive_runs_without_errors() -> None:
    ab = need("ab")
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0"]) as server:
            url = f"http://127.0.0.1:{server.port('http')}/"
            done = await run([ab, "-k", "-q", "-n", "2000", "-c", "20", url])
            out = done.stdout.decode()
            assert done.returncode == 0, done.stderr
            assert re.search(r"Complete requests:\s+2000", out)
            assert re.search(r"Failed requests:\s+0", out)
            # ab speaks HTTP/1.0, whose keep-alive h11 does not do: each request gets its
            # answer and a close (curl's HTTP/1.1 reuse is tested in test_http.py).
            assert re.search(r"Non-2xx responses", out) is None


async def triosock_http(*args: str) -> tuple[int, bytes, bytes]:
    done = await run([PYTHON, "-m", "triosock", "http", *args])
    return done.returncode, done.stdout, done.stderr


async def test_http_get_prints_the_body_or_says_why_not(site: Path) -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["http", "serve", "--port", "0", "--root", str(site)]) as server:
            base = f"http://127.0.0.1:{server.port('http')}"
            assert await triosock_http("get", f"{base}/hello.txt") == (
                0,
                b"hello from a file\n",
                b"",
            )
            code, out, _ = await triosock_http("get", "-i", f"{base}/hello.txt")
            assert code == 0
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"etag: " in out
            code, out, err = await triosock_http("get", f"{base}/missing")
            assert (code, err) == (1, b"triosock: error: HTTP 404 Not Found\n")
        # the server is gone now: its port refuses
        code, _, err = await triosock_http("get", f"{base}/hello.txt")
        assert code == 1
        assert err.startswith(b"triosock: error: cannot connect to ")
        assert err.count(b"\n") == 1
        code, _, err = await triosock_http("get", "ftp://127.0.0.1/")
        assert (code, err) == (
            1,
            b"triosock: error: not an http:// or https:// URL: ftp://127.0.0.1/\n",
        )


async def test_http_get_gives_up_at_its_timeout() -> None:
    async def silent(conn: TCPConnection) -> None:
        await trio.sleep_forever()  # accepts, never answers

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(partial(serve_tcp, silent, 0, grace_period=0))
            code, _, err = await triosock_http(
                "get", "--timeout", "0.5", f"http://127.0.0.1:{server.port}/"
            )
            assert (code, err) == (
                1,
                f"triosock: error: no answer from 127.0.0.1:{server.port} within 0.5 s\n".encode(),
            )
            nursery.cancel_scope.cancel()


async def test_bad_root_is_a_one_line_error(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        done = await run(
            [
                PYTHON,
                "-m",
                "triosock",
                "http",
                "serve",
                "--port",
                "0",
                "--root",
                str(tmp_path / "no"),
            ]
        )
    assert done.returncode == 1
    assert done.stderr.startswith(b"triosock: error: --root ")
    assert done.stderr.count(b"\n") == 1
    assert os.fspath(tmp_path / "no").encode() in done.stderr


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/docs/index.html/x", 404),  # a path under a file: ENOTDIR
        ("/" + "n" * 300, 414),  # a name longer than the file system takes
        ("/docs/" + "d" * 300 + "/x", 414),
        ("//docs/", 200),  # a path, not a host
    ],
)
async def test_what_the_file_system_refuses_is_a_plain_status_without_a_traceback(
    site: Path, target: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                partial(serve_http, StaticFiles(site), 0, grace_period=1)
            )
            got, _, body = await exchange(server.port, "GET", target)
            nursery.cancel_scope.cancel()
    assert got.split(b" ")[1] == str(status).encode()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    if status == 200:
        assert body == b"<p>the docs</p>\n"


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("//anything/admin.txt", b"404", b"not found\n"),  # never /admin.txt
        ("//sub/p.txt", b"404", b"not found\n"),  # never /p.txt
        ("//x/a.txt", b"200", b"x/a\n"),  # the path /x/a.txt
        ("//[x/a.txt", b"404", b"not found\n"),
        ("http://[/", b"400", b"400 Bad Request\n"),
    ],
)
async def test_targets_are_paths_and_a_malformed_one_is_400_without_a_traceback(
    tmp_path: Path, target: str, status: bytes, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # A path-prefix filter in front (allow /x/, say) must see the path this server serves:
    # "//anything/admin.txt" is the path /anything/admin.txt, not a host and /admin.txt.
    (tmp_path / "admin.txt").write_text("secret\n")
    (tmp_path / "p.txt").write_text("p\n")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("x/a\n")
    caplog.set_level(logging.DEBUG, "triosock")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(partial(serve_http, StaticFiles(tmp_path), 0))
            line, _, got = await exchange(server.port, "GET", target)
            nursery.cancel_scope.cancel()
    assert line.split()[1] == status
    assert got == body
    assert all(record.exc_info is None for record in caplog.records)
    assert all(record.levelno < logging.WARNING for record in caplog.records)
