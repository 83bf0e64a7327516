"""``echo serve --udp`` as users run it, under floods: it keeps serving new clients,
its memory stays bounded, and Ctrl-C stops it at once, whatever is arriving."""

from __future__ import annotations

import signal
import socket
import subprocess

import trio
import trio.lowlevel

from triosock import UDPChannel, open_udp_channel

from .clitools import PYTHON, cli_server

GUARD = 60
#: What 5,000 one-shot clients may add to the server's memory: at most 1,024 peers are
#: known at once (the rest are evicted), a few KiB each.
RSS_BOUND_KIB = 32 * 1024


async def ask(client: UDPChannel, question: bytes) -> None:
    """Send ``question`` until its echo comes back, every 100 ms, as UDP clients do: under
    a flood the kernel drops what the server's socket buffer cannot hold."""
    while True:
        await client.send(question)
        with trio.move_on_after(0.1):
            while await client.receive() != question:
                pass  # the echo of an earlier try
            return


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_five_thousand_addresses_then_a_new_client_is_answered_at_once() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--udp", "--port", "0"]) as server:
            port = server.port("echo (udp)")
            before = rss_kib(server.process.pid)
            for n in range(5000):  # a distinct source address each, in 127.0.0.0/8
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind((f"127.3.{n // 250}.{n % 250 + 1}", 0))
                    sock.sendto(b"one-shot %d" % n, ("127.0.0.1", port))
                if n % 500 == 499:
                    await (
                        trio.lowlevel.checkpoint()
                    )  # let the nursery breathe; the server is elsewhere
            client = await open_udp_channel("127.0.0.1", port)
            with trio.fail_after(1):  # the acceptance bound: answered within a second
                await ask(client, b"new client")
            await client.aclose()
            grown = rss_kib(server.process.pid) - before
            assert grown < RSS_BOUND_KIB, f"RSS grew by {grown} KiB"


FLOOD = """
import socket, sys, time
port = int(sys.argv[1])
socks = []
for n in range(50):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.4.0.{n + 1}", 0))
    s.setblocking(False)
    socks.append(s)
print("flooding", flush=True)
end = time.monotonic() + 10  # bounded in time and in count
for i in range(5_000_000):
    try:
        socks[i % 50].sendto(b"x" * 64, ("127.0.0.1", port))
    except OSError:
        pass
    if i % 10000 == 0 and time.monotonic() > end:
        break
"""


async def test_ctrl_c_during_a_flood_stops_the_server_within_a_second() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(["echo", "serve", "--udp", "--port", "0"]) as server:
            port = server.port("echo (udp)")
            flood = await trio.lowlevel.open_process(
                [PYTHON, "-c", FLOOD, str(port)], stdout=subprocess.PIPE
            )
            try:
                assert flood.stdout is not None
                assert b"flooding" in await flood.stdout.receive_some()
                # The flood is on (the server's socket buffer stays full: the kernel drops
                # most of it, and would drop a real client's datagram alike).
                await trio.sleep(0.5)
                server.process.send_signal(signal.SIGINT)
                with trio.fail_after(1):  # the acceptance bound
                    assert await server.process.wait() == 0
            finally:
                flood.kill()
                await flood.wait()
