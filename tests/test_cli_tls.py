"""TLS from the command line, with real clients: ``openssl s_client``, ``curl --cacert``,
``nc``, and triosock's own ``chat join --tls``, ``echo send --tls`` and ``http get
https://``. The certificates are a trustme CA's (see :mod:`tests.tlstools`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from .clitools import PYTHON, ServerProcess, cli_server, line_process, need, run
from .tlstools import Certs, make_certs

GUARD = 60
CLI = [PYTHON, "-m", "triosock"]
#: The chat without UDP, without a status port or a history file.
CHAT = ["chat", "serve", "--udp", "none", "--status", "none", "--data", "none"]
TLS_LINE = re.compile(r"chat \(tcp\) listening on 127\.0\.0\.1:\d+ \(TLS\)")
PLAIN_LINE = re.compile(r"chat \(tcp\) listening on 127\.0\.0\.1:\d+ \(plaintext\)")
WEB_LINE = re.compile(
    r"chat \(web\) listening on 127\.0\.0\.1:(\d+) \(TLS\): "
    r"open https://127\.0\.0\.1:\1/ \(WebSocket at /ws\)"
)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


def one_line_error(stderr: bytes) -> str:
    """The single line a failed command printed; fails on a traceback or more lines."""
    assert b"Traceback" not in stderr, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


async def rest_of_stderr(server: ServerProcess) -> str:
    """What the (stopped) server wrote on stderr."""
    stream = server.process.stderr
    assert stream is not None
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data.decode()


async def test_chat_over_tls_openssl_nc_and_chat_join_talk(certs: Certs) -> None:
    nc, openssl = need("nc"), need("openssl")
    args = [*CHAT, "--tcp", "127.0.0.1:0", "--plain-tcp", "127.0.0.1:0", "--web", "127.0.0.1:0"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, *certs.serve_args()], ready_lines=6) as server:
            assert TLS_LINE.fullmatch(server.lines[0]), server.lines
            assert PLAIN_LINE.fullmatch(server.lines[1]), server.lines
            assert WEB_LINE.fullmatch(server.lines[2]), server.lines
            tls, plain = server.port("(TLS)"), server.port("(plaintext)")
            assert server.lines[3:] == [
                f"join with: openssl s_client -quiet -connect 127.0.0.1:{tls}, or python -m "
                f"triosock chat join 127.0.0.1:{tls} --tls",
                f"join with: nc 127.0.0.1 {plain}, or python -m triosock chat join "
                f"127.0.0.1:{plain}",
                f"join with: a browser at https://127.0.0.1:{server.port('chat (web)')}/",
            ]
            async with line_process([nc, "127.0.0.1", str(plain)]) as alice:
                await alice.expect(b"welcome")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                ossl = [openssl, "s_client", "-quiet", "-connect", f"127.0.0.1:{tls}"]
                ossl += ["-CAfile", str(certs.ca_file), "-verify_return_error"]
                async with line_process(ossl) as bob:
                    await bob.expect(b"welcome")
                    await alice.expect(b"joined #lobby")
                    await bob.send(b"/nick bob")
                    await alice.expect(b"is now known as bob")
                    await bob.send(b"hello from openssl")
                    assert await alice.expect(b"bob:") == b"[#lobby] bob: hello from openssl"
                    join = [*CLI, "chat", "join", f"127.0.0.1:{tls}", "--tls"]
                    join += ["--ca", str(certs.ca_file), "--nick", "carol", "--no-reconnect"]
                    async with line_process(join) as carol:
                        await carol.expect(b"welcome")
                        await alice.expect(b"is now known as carol")
                        await carol.send(b"hi from chat join")
                        assert await bob.expect(b"carol:") == b"[#lobby] carol: hi from chat join"
                        await alice.send(b"hi all")
                        assert await carol.expect(b"alice:") == b"[#lobby] alice: hi all"
                        await carol.send(b"/quit")
                        await carol.read_to_eof()
                        assert await carol.process.wait() == 0


async def test_curl_fetches_the_page_and_rooms_over_https(certs: Certs) -> None:
    curl = need("curl")
    with trio.fail_after(GUARD):
        args = [*CHAT, "--tcp", "none", "--web", "127.0.0.1:0", *certs.serve_args()]
        async with cli_server(args, ready_lines=1) as server:
            assert WEB_LINE.fullmatch(server.lines[0]), server.lines
            url = f"https://127.0.0.1:{server.port()}"
            page = await run([curl, "-sS", "--cacert", str(certs.ca_file), f"{url}/"])
            rooms = await run([curl, "-sS", "--cacert", str(certs.ca_file), f"{url}/rooms"])
            untrusted = await run([curl, "-sS", f"{url}/"])
            plain = await run([curl, "-sS", f"http://127.0.0.1:{server.port()}/"])
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith(b"<!doctype html>")
    assert (rooms.returncode, rooms.stdout) == (0, b'{"rooms": {}}\n')
    assert untrusted.returncode == 60  # curl: the peer's certificate cannot be verified
    assert plain.returncode == 52  # curl: an empty reply (closed at the failed handshake)


async def test_nc_on_the_tls_port_is_closed_within_the_deadline_with_one_line(
    certs: Certs,
) -> None:
    nc = need("nc")
    args = [*CHAT, "--tcp", "127.0.0.1:0", "--web", "none", "--tls-handshake-timeout", "1", "-v"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, *certs.serve_args()], ready_lines=1) as server:
            port = server.port("(TLS)")
            began = trio.current_time()
            silent = await run([nc, "127.0.0.1", str(port)])  # says nothing (stdin is empty)
            waited = trio.current_time() - began
            talking = await run([nc, "127.0.0.1", str(port)], stdin=b"hello? /nick bob\n" * 4)
            talked = trio.current_time() - began - waited
        log = await rest_of_stderr(server)
    assert (silent.returncode, silent.stdout) == (0, b"")
    assert 1 <= waited < 2.5
    assert (talking.returncode, talking.stdout) == (0, b"")
    assert talked < 1  # what it said is no TLS: closed at once
    assert "Traceback" not in log
    about_tls = [line for line in log.splitlines() if "TLS" in line]
    assert len(about_tls) == 2, log
    assert about_tls[0].endswith(": no TLS handshake within 1 s; closed")
    assert about_tls[1].endswith(": TLS handshake failed: wrong version number; closed")
    assert " DEBUG triosock.tcp: 127.0.0.1:" in about_tls[0]


async def _chat_join_error(port: int, *extra: str) -> str:
    result = await run([*CLI, "chat", "join", f"127.0.0.1:{port}", "--tls", *extra])
    assert result.returncode == 1
    return one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("which", "trust", "reason"),
    [
        ("expired", "ca", "certificate verify failed: certificate has expired"),
        ("self_signed", "system", "certificate verify failed: self-signed certificate"),
        ("", "system", "certificate verify failed: unable to get local issuer certificate"),
    ],
)
async def test_chat_join_says_what_is_wrong_with_the_certificate(
    certs: Certs, which: str, trust: str, reason: str
) -> None:
    cert = getattr(certs, f"{which}_cert" if which else "cert")
    key = getattr(certs, f"{which}_key" if which else "key")
    args = [*CHAT, "--tcp", "127.0.0.1:0", "--web", "none", "--tls-cert", str(cert)]
    with trio.fail_after(GUARD):
        async with cli_server([*args, "--tls-key", str(key)]) as server:
            port = server.port()
            extra = ["--ca", str(certs.ca_file)] if trust == "ca" else []
            error = await _chat_join_error(port, *extra)
    assert error == f"triosock: error: TLS handshake with 127.0.0.1:{port} failed: {reason}"


async def test_tls_clients_on_plaintext_ports_get_a_clear_error(certs: Certs) -> None:
    ca = ["--ca", str(certs.ca_file)]
    with trio.fail_after(GUARD):
        async with (
            cli_server([*CHAT, "--tcp", "127.0.0.1:0", "--web", "none"]) as chat,
            cli_server(["echo", "serve", "--port", "0", "--status", "none"]) as echo,
            cli_server(["http", "serve", "--port", "0", "--status", "none"]) as web,
        ):
            joined = await _chat_join_error(chat.port(), *ca)
            sent = await run([*CLI, "echo", "send", f"127.0.0.1:{echo.port()}", "--tls", *ca, "x"])
            got = await run([*CLI, "http", "get", f"https://127.0.0.1:{web.port()}/", *ca])
    where = f"triosock: error: TLS handshake with 127.0.0.1:{chat.port()} failed:"
    assert joined == f"{where} sslv3 alert handshake failure"  # the chat port's TLS alert
    assert (sent.returncode, got.returncode) == (1, 1)
    assert one_line_error(sent.stderr) == (
        f"triosock: error: TLS handshake with 127.0.0.1:{echo.port()} failed: unexpected "
        "message (does that port speak TLS?)"
    )
    assert one_line_error(got.stderr) == (
        f"triosock: error: TLS handshake with 127.0.0.1:{web.port()} failed: wrong version "
        "number (does that port speak TLS?)"
    )


async def test_echo_over_tls_beside_plaintext(certs: Certs) -> None:
    args = ["echo", "serve", "--port", "0", "--plain-port", "0", "--status", "none"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, *certs.serve_args()], ready_lines=2) as server:
            assert re.fullmatch(
                r"echo \(tcp\) listening on 127\.0\.0\.1:\d+ \(TLS\)", server.lines[0]
            )
            assert re.fullmatch(
                r"echo \(tcp\) listening on 127\.0\.0\.1:\d+ \(plaintext\)", server.lines[1]
            )
            tls, plain = server.port("(TLS)"), server.port("(plaintext)")
            send = [*CLI, "echo", "send", f"127.0.0.1:{tls}", "--tls", "--ca", str(certs.ca_file)]
            words = await run([*send, "over", "tls"])
            piped = await run(send, stdin=b"one\ntwo\n" * 1000)
            nothing = await run(send, stdin=b"")
            beside = await run([*CLI, "echo", "send", f"127.0.0.1:{plain}", "in", "clear"])
    assert (words.returncode, words.stdout) == (0, b"over tls\n")
    assert (piped.returncode, piped.stdout) == (0, b"one\ntwo\n" * 1000)
    assert (nothing.returncode, nothing.stdout) == (0, b"")
    assert (beside.returncode, beside.stdout) == (0, b"in clear\n")


async def test_https_from_the_command_line(certs: Certs) -> None:
    curl = need("curl")
    with trio.fail_after(GUARD):
        args = ["http", "serve", "--port", "0", "--status", "none", *certs.serve_args()]
        async with cli_server(args) as server:
            assert re.fullmatch(
                r"http \(tcp\) listening on 127\.0\.0\.1:\d+ \(TLS, hello\)", server.lines[0]
            )
            url = f"https://127.0.0.1:{server.port()}/"
            got = await run([*CLI, "http", "get", url, "--ca", str(certs.ca_file)])
            by_curl = await run([curl, "-sS", "--cacert", str(certs.ca_file), url])
            untrusted = await run([*CLI, "http", "get", url])
    assert got.returncode == 0, got.stderr
    assert got.stdout == by_curl.stdout
    assert got.stdout == b"hello world\n"
    assert one_line_error(untrusted.stderr) == (
        f"triosock: error: TLS handshake with 127.0.0.1:{server.port()} failed: certificate "
        "verify failed: unable to get local issuer certificate"
    )


async def test_tls_options_in_a_config_file(certs: Certs, tmp_path: Path) -> None:
    config = tmp_path / "chat.toml"
    config.write_text(
        f'tls-cert = "{certs.cert}"\ntls-key = "{certs.key}"\n'
        'tcp = "127.0.0.1:0"\nplain-tcp = "127.0.0.1:0"\nweb = "none"\n'
        "tls-handshake-timeout = 3\n"
    )
    with trio.fail_after(GUARD):
        async with cli_server([*CHAT, "--config", str(config)], ready_lines=2) as server:
            assert TLS_LINE.fullmatch(server.lines[0]), server.lines
            assert PLAIN_LINE.fullmatch(server.lines[1]), server.lines


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["chat", "serve", "--tls-key", "k.pem"], "--tls-key goes with --tls-cert"),
        (["chat", "serve", "--plain-tcp", "127.0.0.1:0"], "--plain-tcp is a plaintext listener"),
        (["chat", "serve", "--plain-web", "127.0.0.1:0"], "--plain-web is a plaintext listener"),
        (["echo", "serve", "--plain-port", "0"], "--plain-port is a plaintext listener"),
        (["http", "serve", "--plain-port", "0"], "--plain-port is a plaintext listener"),
        (["echo", "serve", "--udp", "--tls-cert", "c.pem"], "echo over UDP has no TLS"),
        (["chat", "serve", "--tls-handshake-timeout", "0"], "must be positive"),
        (["chat", "join", "127.0.0.1:9", "--ca", "ca.pem"], "--ca is for --tls"),
        (["chat", "join", "127.0.0.1:9", "--udp", "--tls"], "the UDP dialect has no TLS"),
        (["echo", "send", "127.0.0.1:9", "--ca", "ca.pem", "x"], "--ca is for --tls"),
        (["http", "get", "http://127.0.0.1:9/", "--ca", "ca.pem"], "--ca is for https:// URLs"),
    ],
)
async def test_tls_options_that_cannot_mean_anything_are_usage_errors(
    args: list[str], expected: str
) -> None:
    with trio.fail_after(GUARD):
        result = await run([*CLI, *args])
    assert result.returncode == 2
    assert expected in one_line_error(result.stderr)


async def test_files_that_will_not_do_are_one_line_each(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    cases = [
        (["--tls-cert", str(missing)], f"--tls-cert {missing}: no such file or directory"),
        (
            ["--tls-cert", str(certs.cert), "--tls-key", str(certs.ca_file)],
            f"--tls-cert {certs.cert} and --tls-key {certs.ca_file}: not a PEM certificate "
            "and its private key",
        ),
        (
            ["--tls-cert", str(certs.cert), "--tls-key", str(certs.expired_key)],
            f"--tls-cert {certs.cert} and --tls-key {certs.expired_key}: key values mismatch",
        ),
    ]
    with trio.fail_after(GUARD):
        for args, expected in cases:
            result = await run([*CLI, *CHAT, *args])
            assert result.returncode == 1
            assert one_line_error(result.stderr) == f"triosock: error: {expected}"
        client = await run([*CLI, "chat", "join", "127.0.0.1:9", "--tls", "--ca", str(missing)])
    assert (
        one_line_error(client.stderr)
        == f"triosock: error: --ca {missing}: no such file or directory"
    )
