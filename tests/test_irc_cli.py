"""The IRC listener from the command line: ``chat serve --irc``, plaintext and TLS
(judged by ``openssl s_client``), its startup lines and its join hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from .clitools import cli_server, line_process, need
from .irctools import IrcSocket, close_all, nc_user
from .tlstools import Certs, make_certs

GUARD = 60
CHAT = ["chat", "serve", "--udp", "none", "--web", "none", "--status", "none", "--data", "none"]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


async def test_chat_serve_irc_puts_an_irc_client_in_the_rooms_of_nc_users() -> None:
    args = [*CHAT, "--tcp", "127.0.0.1:0", "--irc", "127.0.0.1:0"]
    with trio.fail_after(GUARD):
        async with cli_server(args, ready_lines=4) as server:
            irc = server.port("chat (irc)")
            assert server.lines[1] == f"chat (irc) listening on 127.0.0.1:{irc}"
            hint = f"join with: an IRC client, e.g. irssi -c 127.0.0.1 -p {irc}"
            assert server.lines[3] == hint
            nc = await nc_user(server.port("chat (tcp)"))
            alice = await IrcSocket.connect(irc)
            try:
                await alice.register("alice")
                await nc.read_until(b"* alice joined #lobby")
                await alice.say("PRIVMSG #lobby :from the command line")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: from the command line"
            finally:
                close_all(nc, alice)


async def test_irc_over_tls_with_openssl_s_client(certs: Certs) -> None:
    openssl = need("openssl")
    args = [*CHAT, "--tcp", "none", "--irc", "127.0.0.1:0", "--plain-irc", "127.0.0.1:0"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, *certs.serve_args()], ready_lines=2) as server:
            tls_line = r"chat \(irc\) listening on 127\.0\.0\.1:\d+ \(TLS\)"
            assert re.fullmatch(tls_line, server.lines[0]), server.lines
            assert server.lines[1].endswith("(plaintext)")
            tls, plain = server.port("(TLS)"), server.port("(plaintext)")
            ossl = [openssl, "s_client", "-quiet", "-connect", f"127.0.0.1:{tls}"]
            ossl += ["-CAfile", str(certs.ca_file), "-verify_return_error", "-crlf"]
            async with line_process(ossl) as bob:
                await bob.send(b"NICK bob")
                await bob.send(b"USER bob 0 * :bob over TLS")
                assert (await bob.expect(b" 001 ")).startswith(b":triosock 001 bob :")
                await bob.expect(b" 366 ")
                alice = await IrcSocket.connect(plain)
                try:
                    await alice.register("alice")
                    await bob.expect(b"alice!chat@triosock JOIN #lobby")
                    await bob.send(b"PRIVMSG #lobby :hello over TLS")
                    said = await alice.until("hello over TLS")
                    assert said == ":bob!chat@triosock PRIVMSG #lobby :hello over TLS"
                    await bob.send(b"QUIT")
                    await bob.expect(b"ERROR :Closing link:")
                finally:
                    close_all(alice)
