"""One load process of the reconnect storm: members of one transport that drop and
resume at random, or the talkers that keep the rooms busy.

``python -m benchmarks.soak.storm_load --kind tcp|ws|udp|talk --process I --roster SPEC
--rooms N --tcp PORT --web PORT --udp PORT --seconds S --seed N ...``

1. Connects its clients (members: its share of the roster, ``tcp0m17`` in ``#r{17 %
   rooms}``; talkers: one of each transport in every room, ``tcp0t3`` in ``#r3``), each
   to its room, and prints ``ready``.
2. On ``go`` (stdin) the storm runs for ``--seconds``: talkers say bursts of 1-6 numbered
   lines (``m NICK SEQ T_NS``) every 0.4-1 s, and the TCP talkers a direct message
   (``d NICK SEQ T_NS``) to a random member every 0.5-1.5 s; members say a numbered line
   now and then, and each drops at random (see :func:`storm`) and resumes after a short
   pause, again and again.
3. After the deadline each member resumes a last time, the process reads until no
   numbered line came for ``--quiet`` seconds, and prints ``sent {JSON}``: the stamps of
   every line its clients said (the soak merges every process's into one file).
4. On ``check PATH`` it judges what each of its clients received against that file (see
   :func:`judge`) and prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import bisect
import json
import resource
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from .storm_clients import (
    Client,
    Run,
    TCPClient,
    UDPClient,
    WSClient,
    now_ns,
)

KINDS: dict[str, type[Client]] = {"tcp": TCPClient, "ws": WSClient, "udp": UDPClient}
#: How each transport's members drop (weights): ``reset`` closes the socket with a reset
#: (SO_LINGER 0), ``cut`` closes it without the WebSocket closing handshake, ``clean``
#: ends it in order (TCP: shutdown, read to the end, close; WebSocket: the closing
#: handshake), ``silence``: a UDP member closes its socket and says nothing more.
ACTIONS: dict[str, dict[str, int]] = {
    "tcp": {"reset": 70, "clean": 30},
    "ws": {"reset": 40, "cut": 30, "clean": 30},
    "udp": {"silence": 100},
}
#: When: after a random time attached (``timer``), right after a talker's line arrives
#: (``burst``: the rest of its burst is on its way), at most 0.3 s after the resume was
#: granted (``early``: during or just after its catch-up), or after it stopped reading
#: for STALL seconds (``stalled``: a link that hangs, then dies; TCP then reads what the
#: kernel holds for it and resets at once). UDP members do not stall.
TIMINGS = {"timer": 50, "burst": 20, "early": 15, "stalled": 15}
STALL = (1.0, 6.0)
#: Seconds past its expiry a UDP member's silence may cost it the lines said (the server
#: notices the expiry on its own clock, and its fan-out may run behind).
UDP_SLACK = 1.0
#: Seconds a UDP member stays away past its expiry (LOW, HIGH): what is said then must
#: come in its catch-up.
UDP_AWAY = (1.0, 4.0)
#: The most bytes of padding after a talker's numbered line.
PAD = 300


def roster(spec: str, rooms: int) -> dict[str, str]:
    """Every member's nick and room, from ``tcp:1x200,ws:2x100,udp:1x100``."""
    members: dict[str, str] = {}
    for part in spec.split(","):
        kind, _, shape = part.partition(":")
        processes, _, each = shape.partition("x")
        for proc in range(int(processes)):
            for i in range(int(each)):
                members[f"{kind}{proc}m{i}"] = f"#r{i % rooms}"
    return members


def talkers(rooms: int) -> dict[str, str]:
    """The talkers' nicks and rooms: one of each transport in every room."""
    return {f"{kind}0t{i}": f"#r{i}" for i in range(rooms) for kind in KINDS}


def pick(run: Run, weights: dict[str, int]) -> str:
    return run.rng.choices(list(weights), list(weights.values()))[0]


async def storm(client: Client, run: Run, args: argparse.Namespace) -> None:
    """Drop and resume until the deadline; return attached (or given up)."""
    early = False
    while True:
        conn = client.conn
        assert conn is not None
        timings = {k: w for k, w in TIMINGS.items() if k != "early"}
        if client.kind == "udp":
            del timings["stalled"]
        timing = "early" if early else pick(run, timings)
        action = pick(run, ACTIONS[client.kind])
        period = run.rng.uniform(0, 0.3) if early else run.rng.uniform(*args.attached)
        with trio.move_on_at(min(trio.current_time() + period, run.deadline)):
            await conn.request.wait()  # the server closed it
        if not conn.request.is_set():
            if trio.current_time() >= run.deadline:
                return
            client.attached = False  # says nothing more on this connection
            await client.confirmed()
            if timing == "burst":
                conn.armed = f"{action}-burst"
                with trio.move_on_after(3):
                    await conn.request.wait()
            elif timing == "stalled":
                conn.stall = run.rng.uniform(*STALL)
            conn.drop(f"{action}-{timing}")
        await conn.closed.wait()
        if client.kind == "udp":  # past its expiry, or the server never detaches it
            pause = run.expiry + run.rng.uniform(*UDP_AWAY)
        else:
            pause = run.rng.uniform(*args.pause)
        await trio.sleep(pause)
        early = run.rng.random() < TIMINGS["early"] / sum(TIMINGS.values())
        if not await client.resume(early):
            client.tally.gave_up_ns = client.tally.drops[-1][0]
            if client.conn is not None:
                client.conn.drop("gave-up")
            return


async def chatter(client: Client, run: Run, args: argparse.Namespace) -> None:
    """A member says a numbered line now and then, while attached."""
    while True:
        await trio.sleep(run.rng.uniform(*args.say_every))
        if trio.current_time() >= run.deadline:
            return
        if client.attached and client.pending is None:
            try:
                await client.say()
            except Exception as exc:  # its socket was closed under it
                run.error(f"{client.nick}: say: {exc!r}")
                if client.pending is not None:
                    client.unconfirmed.append(client.pending)
                    client.pending = None


async def talk(client: Client, run: Run, members: Sequence[str], dms: dict[str, Any]) -> None:
    """A talker: bursts of numbered lines; the TCP ones also direct messages."""
    rng = run.rng
    next_dm = trio.current_time() + rng.uniform(0.5, 1.5)
    mine: dict[str, list[list[int]]] = dms.setdefault(client.nick, {})
    while True:
        await trio.sleep(rng.uniform(0.4, 1.0))
        if trio.current_time() >= run.deadline:
            return
        lines = []
        for _ in range(rng.randint(1, 6)):
            stamp = now_ns()
            pad = "x" * rng.randint(0, PAD)  # chat lines are tens to hundreds of bytes
            lines.append(f"m {client.nick} {len(client.said)} {stamp} {pad}")
            client.said.append(stamp)
        await client.send_lines(lines)
        if isinstance(client, TCPClient) and trio.current_time() >= next_dm:
            target = rng.choice(members)
            seq = sum(len(v) for v in mine.values())
            stamp = now_ns()
            await client.send(f"/msg {target} d {client.nick} {seq} {stamp}")
            mine.setdefault(target, []).append([seq, stamp])
            next_dm = trio.current_time() + rng.uniform(0.5, 1.5)


async def drain(run: Run, minimum: float, quiet: float, cap: float) -> float:
    """Wait ``minimum`` seconds, then until no numbered line came for ``quiet`` (``cap``
    in all); the seconds it waited."""
    start = trio.current_time()
    await trio.sleep(minimum)
    while (now := trio.current_time()) - start < cap:
        idle = now - run.last_arrival
        if idle >= quiet:
            break
        await trio.sleep(min(quiet - idle, cap - (now - start)))
    return trio.current_time() - start


# -- the judgement ---------------------------------------------------------------------

Drop = tuple[int, str]


def judge(
    expected: dict[int, int],
    optional: set[int],
    got: tuple[Sequence[int], Sequence[int]] | None,
    drops: list[Drop],
    allowed: Callable[[Drop, int], bool],
    lost_lines: list[tuple[int, int, int, int]] | None = None,
) -> Counter[str]:
    """One receiver's lines from one sender.

    ``expected``: number -> stamp of what it should have; ``optional``: numbers it may
    have or not (their sender never saw them taken, or the receiver gave up before);
    ``got``: the numbers it received, in order, with their generations; ``drops``: its
    closes, one per generation. A missing line is *in flight* when a drop of the
    receiver lies between the last line of that sender it got before and the first it
    got after (by number), and ``allowed(drop, stamp)`` says that drop may have taken
    it; else it is lost. ``lost_lines`` collects (number, stamp, generation before,
    generation after) of the lost ones.
    """
    seqs, gens = got if got is not None else ((), ())
    out: Counter[str] = Counter(expected=len(expected), delivered=len(seqs))
    first_gen: dict[int, int] = {}
    previous = -1
    for seq, gen in zip(seqs, gens, strict=True):
        if seq < previous:
            out["reordered"] += 1
        previous = seq
        if seq in first_gen:
            out["duplicated"] += 1
        else:
            first_gen[seq] = gen
        if seq not in expected and seq not in optional:
            out["unexpected"] += 1
    missing = [seq for seq in expected if seq not in first_gen]
    if not missing:
        return out
    have = sorted(first_gen)
    for seq in missing:
        at = bisect.bisect(have, seq)
        before = first_gen[have[at - 1]] if at else 0
        after = first_gen[have[at]] if at < len(have) else len(drops)
        if any(allowed(drops[d], expected[seq]) for d in range(before, min(after, len(drops)))):
            out["in_flight"] += 1
        else:
            out["lost"] += 1
            if lost_lines is not None:
                lost_lines.append((seq, expected[seq], before, after))
    return out


def allowance(kind: str, expiry: float) -> Callable[[Drop, int], bool]:
    """Which drops of a receiver of ``kind`` may cost it a line said at ``stamp``:
    TCP, its resets (and a close by the server), for lines said before the reset: the
    server resumes after the last line it handed to the socket, and a reset takes what
    the kernel still held; UDP, its silences, for lines said until the server expired
    it (it wrote them to an address nobody read); WebSocket members say the last id
    they saw: none."""
    if kind == "tcp":
        return lambda drop, stamp: drop[1].startswith(("reset", "server")) and stamp <= drop[0]
    if kind == "udp":
        slack = int((expiry + UDP_SLACK) * 1e9)
        return lambda drop, stamp: stamp <= drop[0] + slack
    return lambda drop, stamp: False


def check(clients: list[Client], path: Path, run: Run) -> dict[str, Any]:
    """Judge every client's receipts against the merged file of what was said."""
    said = json.loads(path.read_text())
    senders: dict[str, dict[str, Any]] = said["senders"]
    dm_sent: dict[str, dict[str, list[list[int]]]] = said["dms"]
    by_room: dict[str, list[str]] = {}
    for nick, info in senders.items():
        by_room.setdefault(info["room"], []).append(nick)
    groups: dict[str, Counter[str]] = {}
    resume_ms: dict[str, list[float]] = {}
    drops: dict[str, Counter[str]] = {}
    examples: list[dict[str, Any]] = []
    for client in clients:
        tally = client.tally
        group = "talk" if client.nick.rstrip("0123456789").endswith("t") else client.kind
        totals = groups.setdefault(group, Counter())
        allowed = allowance(client.kind, run.expiry)
        cut = tally.gave_up_ns
        room = Counter[str]()
        mine: list[dict[str, Any]] = []  # examples of its lost lines
        for sender in by_room.get(client.room, []):
            if sender == client.nick:
                continue
            info = senders[sender]
            unsure = set(info["unconfirmed"])
            expected = {
                seq: stamp
                for seq, stamp in enumerate(info["stamps"])
                if seq not in unsure and (cut is None or stamp <= cut)
            }
            lost: list[tuple[int, int, int, int]] = []
            room += judge(expected, set(range(len(info["stamps"]))), tally.rooms.get(sender),
                          tally.drops, allowed, lost)  # fmt: skip
            for seq, stamp, before, after in lost[:2]:
                mine.append(_example(client, sender, seq, stamp, before, after))
        direct = Counter[str]()
        for talker, targets in dm_sent.items():
            pairs = targets.get(client.nick, [])
            expected = {seq: stamp for seq, stamp in pairs if cut is None or stamp <= cut}
            optional = {seq for seq, _ in pairs}
            lost = []
            direct += judge(expected, optional, tally.dms.get(talker), tally.drops, allowed, lost)
            for seq, stamp, before, after in lost[:2]:
                mine.append(_example(client, "dm " + talker, seq, stamp, before, after))
        if client.kind == "udp":  # the lines the server said it could not show
            excused = min(tally.told, room["lost"] + direct["lost"])
            from_room = min(excused, room["lost"])
            room["lost"] -= from_room
            direct["lost"] -= excused - from_room
            totals["told_excused"] += excused
        if room["lost"] + direct["lost"]:  # (UDP: those the server's notices left)
            examples += mine[: max(0, 12 - len(examples))]
        totals += room
        totals.update({f"dm_{key}": n for key, n in direct.items()})
        totals["told"] += tally.told
        totals += tally.counts
        totals["clients"] += 1
        totals["drops"] += len([d for d in tally.drops if d[1] not in ("gave-up",)])
        totals["gave_up"] += cut is not None
        totals["sent"] += len(client.said) - len(client.unconfirmed)
        totals["unconfirmed"] += len(client.unconfirmed)
        resume_ms.setdefault(group, []).extend(tally.resume_ms)
        modes = drops.setdefault(group, Counter())
        modes.update(mode for _, mode in tally.drops)
    return {
        "groups": {g: dict(c) for g, c in groups.items()},
        "resume_ms": resume_ms,
        "drop_modes": {g: dict(c) for g, c in drops.items()},
        "latency": {str(k): v for k, v in run.latency.items()},
        "examples": examples,
    }


def _example(
    client: Client, sender: str, seq: int, stamp: int, before: int, after: int
) -> dict[str, Any]:
    """A lost line, with the receiver's drops around it (ms from the line's stamp)."""
    around = [
        (round((closed - stamp) / 1e6), mode)
        for closed, mode in client.tally.drops[max(0, before - 1) : after + 1]
    ]
    return {
        "receiver": client.nick,
        "sender": sender,
        "seq": seq,
        "generations": [before, after],
        "drops_ms_after_it": around,
    }


# -- the process -----------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args.seed, args.expiry)
    ports = {"tcp": args.tcp, "ws": args.web, "udp": args.udp}
    everyone = roster(args.roster, args.rooms)
    if args.kind == "talk":
        mine = talkers(args.rooms)
    else:
        prefix = f"{args.kind}{args.process}m"
        mine = {nick: room for nick, room in everyone.items() if nick.startswith(prefix)}
    clients: list[Client] = []
    for i, (nick, room) in enumerate(mine.items()):
        kind = nick.rstrip("0123456789")[:-1].rstrip("0123456789")
        client = KINDS[kind](nick, room, "127.0.0.1", ports[kind], run)
        client.small = args.kind != "talk" and kind != "udp" and i % 5 == 4
        clients.append(client)
    joined = 0
    all_joined = trio.Event()
    settled = 0
    all_settled = trio.Event()
    dms: dict[str, Any] = {}
    limiter = trio.CapacityLimiter(20)  # connects at once

    async def life(client: Client) -> None:
        nonlocal joined, settled
        async with trio.open_nursery() as nursery:
            client.nursery = nursery
            async with limiter:
                await client.enter()
            joined += 1
            if joined == len(clients):
                all_joined.set()
            await run.go.wait()
            if args.kind == "talk":
                await talk(client, run, list(everyone), dms)
            else:
                nursery.start_soon(chatter, client, run, args)
                await storm(client, run, args)
            settled += 1
            if settled == len(clients):
                all_settled.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(life, client)
        with trio.fail_after(180):
            await all_joined.wait()
        print("ready", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() == "go", line
        run.deadline = trio.current_time() + args.seconds
        run.go.set()
        with trio.move_on_after(args.seconds + 60):
            await all_settled.wait()
        if not all_settled.is_set():
            run.error(f"only {settled} of {len(clients)} clients settled after the storm")
        drained = await drain(run, args.quiet, args.quiet, 60)
        sent = {
            "senders": {
                c.nick: {"room": c.room, "stamps": c.said, "unconfirmed": c.unconfirmed}
                for c in clients
            },
            "dms": dms,
        }
        print("sent " + json.dumps(sent), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        verb, _, path = line.strip().partition(" ")
        assert verb == "check", line
        result = check(clients, Path(path), run)
        nursery.cancel_scope.cancel()
    result.update(
        kind=args.kind,
        process=args.process,
        errors=run.errors,
        drained_s=round(drained, 1),
        max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    return result


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=[*KINDS, "talk"], required=True)
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--roster", required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--tcp", type=int, required=True)
    parser.add_argument("--web", type=int, required=True)
    parser.add_argument("--udp", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expiry", type=float, required=True, help="the server's UDP expiry")
    parser.add_argument("--attached", type=_pair, default=(3.0, 20.0), help="LOW,HIGH seconds")
    parser.add_argument("--pause", type=_pair, default=(0.05, 2.0), help="LOW,HIGH seconds")
    parser.add_argument("--say-every", type=_pair, default=(6.0, 15.0), help="LOW,HIGH s")
    parser.add_argument("--quiet", type=float, default=3.0)
    result = trio.run(partial(main, parser.parse_args()))
    print(json.dumps(result), flush=True)
