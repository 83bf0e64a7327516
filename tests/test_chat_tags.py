"""Tags on TCP lines (``/tags on``): the ids of lines said, for clients that count them;
and ``/resume TOKEN EPOCH ROOM=ID direct=ID``, which resumes exactly after them."""

from __future__ import annotations

import re

import pytest
import trio

from triosock._sansio import chat as proto
from triosock.chat import ChatServer

from .chattools import LineSocket, chat_servers
from .conftest import GUARD
from .test_chat_resume import token_of, wait_away

STAMP = rb"\[\d\d:\d\d:\d\d\] "


# -- sans-IO ---------------------------------------------------------------------------


def test_tagged_lines_carry_id_and_key_and_nothing_else_does() -> None:
    said = proto.Message("#lobby", "alice", "hi", 57, 1)
    assert proto.render_tagged_line(said) == b"@id=57;key=#lobby [#lobby] alice: hi"
    action = proto.Action("#lobby", "alice", "waves", 58, 1)
    assert proto.render_tagged_line(action) == b"@id=58;key=#lobby [#lobby] * alice waves"
    direct = proto.Direct("alice", "bob", "psst", 3, 1)
    assert (
        proto.render_tagged_line(direct, viewer="bob") == b"@id=3;key=direct [dm from alice] psst"
    )
    assert proto.render_tagged_line(direct, viewer="alice") == b"@id=3;key=direct [dm to bob] psst"
    recalled = proto.Recalled(proto.Message("#lobby", "alice", "old", 5, 0))
    assert proto.render_tagged_line(recalled) == b"@id=5;key=#lobby [00:00:00] [#lobby] alice: old"
    for plain in (
        proto.Message("#lobby", "alice", "never recorded"),  # id 0
        proto.Joined("#lobby", "bob"),
        proto.Notice("hello"),
        proto.RecallEnd("#lobby", more=False),
    ):
        assert proto.render_tagged_line(plain) == proto.render_line(plain)


def test_tags_read_back_with_the_ircv3_escapes() -> None:
    line = proto.epoch_line("a b;c\\d")
    assert line.startswith(b"@epoch=a\\sb\\:c\\\\d -!- tags on: ")
    tags, rest = proto.split_tags_untrusted(line)
    assert tags == {"epoch": "a b;c\\d"}
    assert rest == b"-!- " + proto.TAGS_ON.encode()
    assert proto.split_tags_untrusted(b"[#lobby] a: @x") == ({}, b"[#lobby] a: @x")
    assert proto.split_tags_untrusted(b"@id=1;key=#a;flag x") == (
        {"id": "1", "key": "#a", "flag": ""},
        b"x",
    )


def test_resume_with_ids_parses_to_the_websockets_request() -> None:
    token = "t" * 32
    command = proto.parse_line_untrusted(f"/resume {token} 9f3c #lobby=57 direct=3".encode())
    assert command == proto.Resume(token, {"#lobby": 57, "direct": 3}, "9f3c")
    assert proto.parse_line_untrusted(f"/resume {token}".encode()) == proto.Resume(token)
    assert proto.parse_line_untrusted(f"/resume {token} #a=0".encode()) == proto.Resume(
        token, {"#a": 0}
    )
    line = proto.resume_line(token, "9f3c", {"#lobby": 57, "direct": 3})
    assert line == f"/resume {token} 9f3c #lobby=57 direct=3".encode()
    usage = "usage: /resume TOKEN [EPOCH] [ROOM=ID ...] [direct=ID]"
    for args, why in [
        ("", ""),
        ("tok e #a", ": #a is not ROOM=ID"),
        ("tok #a=x", ": #a=x: an ID is a whole number, 0 or more"),
        ("tok #a=-1", ": #a=-1: an ID is a whole number, 0 or more"),
        ("tok #a=1 #a=2", ": #a comes twice"),
        ("tok =3", ": =3 is not ROOM=ID"),
        (f"tok {'e' * 65}", ": EPOCH is the one /tags on told"),
    ]:
        assert proto.parse_line_untrusted(f"/resume {args}".encode()) == proto.Invalid(usage + why)
    too_many = " ".join(f"#r{i}=1" for i in range(65))
    assert proto.parse_line_untrusted(f"/resume tok {too_many}".encode()) == proto.Invalid(
        f"{usage}: 'after' names at most 64 rooms (the ROOM=ID words)"
    )
    assert proto.parse_line_untrusted(b"/TAGS On") == proto.Tags(True)
    assert proto.parse_line_untrusted(b"/tags off") == proto.Tags(False)
    assert proto.parse_line_untrusted(b"/tags maybe") == proto.Invalid("usage: /tags on|off")


# -- over TCP --------------------------------------------------------------------------


async def test_tags_on_renders_exactly_these_bytes() -> None:
    chat = ChatServer()
    epoch = chat.store.epoch.encode()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\nbefore\n")
            await alice.read_until(b"alice: before")
            bob = await LineSocket.connect(tcp.port)
            await bob.send(b"/tags on\n")  # a first line: the greeting answers it
            await bob.read_until(b"guest2 joined")
            await alice.send(b"hi\n/me waves\n/msg guest2 psst\n")
            await bob.read_until(b"psst")
            await bob.send(b"/msg alice back\n/history 1\n/tags off\n")
            await bob.read_until(b"-!- tags off")
            await alice.send(b"plain\n")
            await bob.read_until(b"plain")
            await bob.send(b"/tags on\n")
            await bob.read_until(b"tags on")
            tags_on = b"-!- " + proto.TAGS_ON.encode()
            assert bob.lines[:2] == [
                b"@epoch=" + epoch + b" " + tags_on,
                b"-!- welcome to triosock chat, guest2; /help lists commands",
            ]
            assert re.fullmatch(rb"-!- your resume token: .*", bob.lines[2])
            assert bob.lines[3].startswith(b"-!- #lobby: 1 earlier line (times UTC, ")
            assert re.fullmatch(
                rb"@id=1;key=#lobby " + STAMP + rb"\[#lobby\] alice: before", bob.lines[4]
            )
            assert bob.lines[5:12] == [
                b"-!- end of earlier lines of #lobby",
                b"* guest2 joined #lobby",
                b"@id=2;key=#lobby [#lobby] alice: hi",
                b"@id=3;key=#lobby [#lobby] * alice waves",
                b"@id=1;key=direct [dm from alice] psst",
                b"@id=2;key=direct [dm to alice] back",
                b"-!- #lobby: 1 earlier line (times UTC, " + bob.lines[3][-11:],
            ]
            assert re.fullmatch(
                rb"@id=3;key=#lobby " + STAMP + rb"\[#lobby\] \* alice waves", bob.lines[12]
            )
            assert bob.lines[13:] == [
                b"-!- end of earlier lines of #lobby; /history N shows more",
                b"-!- tags off",
                b"[#lobby] alice: plain",
                b"@epoch=" + epoch + b" " + tags_on,
            ]
            # alice never asked: her lines have no tags
            assert not any(line.startswith(b"@") for line in alice.lines)
            alice.close()
            bob.close()


async def test_a_resume_with_ids_replays_exactly_the_lines_after_them_once() -> None:
    """bob saw ten lines and a direct message; the server wrote them all to his socket,
    so a resume without ids would start after line 10. Asking after line 5 and no
    direct message gets lines 6 to 15 and both direct messages, once, in order, then
    the live lines."""
    chat = ChatServer()
    epoch = chat.store.epoch
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n")
            bob = await LineSocket.connect(tcp.port)
            await bob.send(b"/tags on\n/nick bob\n")
            token = await token_of(bob)
            await alice.read_until(b"is now known as bob")
            await alice.send(b"".join(b"line %d\n" % i for i in range(1, 11)) + b"/msg bob one\n")
            await bob.read_until(b"[dm from alice] one")
            bob.close()
            await wait_away(alice, b"bob")
            await alice.send(b"".join(b"line %d\n" % i for i in range(11, 16)) + b"/msg bob two\n")
            await alice.read_until(b"[dm to bob] two")
            back = await LineSocket.connect(tcp.port)
            resume = proto.resume_line(token.decode(), epoch, {"#lobby": 5, "direct": 0})
            await back.send(b"/tags on\n" + resume + b"\n")
            await back.read_until(b"end of earlier lines")
            await alice.send(b"line 16\n")
            await back.read_until(b"line 16")
            said = [line for line in back.lines if line.startswith(b"@id=")]
            assert [re.sub(STAMP, b"", line) for line in said] == [
                *(b"@id=%d;key=#lobby [#lobby] alice: line %d" % (i, i) for i in range(6, 11)),
                b"@id=1;key=direct [dm from alice] one",
                *(b"@id=%d;key=#lobby [#lobby] alice: line %d" % (i, i) for i in range(11, 16)),
                b"@id=2;key=direct [dm from alice] two",
                b"@id=16;key=#lobby [#lobby] alice: line 16",
            ]
            assert back.lines[0] == proto.epoch_line(epoch)
            assert back.lines[1].startswith(b"-!- welcome back, bob: you were away ")
            assert not [line for line in alice.lines if b"joined" in line and b"bob" in line]
            alice.close()
            back.close()


@pytest.mark.parametrize(
    ("line", "notice"),
    [
        (b"/resume tok #lobby=x", b"-!- usage: /resume TOKEN [EPOCH] [ROOM=ID ...] [direct=ID]: "),
        (b"/tags", b"-!- usage: /tags on|off"),
    ],
)
async def test_bad_forms_get_a_notice(line: bytes, notice: bytes) -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            user = await LineSocket.connect(tcp.port)
            await user.read_until(b"joined")
            await user.send(line + b"\n")
            assert (await user.read_until(b"usage")).startswith(notice)
            user.close()
