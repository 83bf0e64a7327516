"""Workload 5: in-process publish/subscribe fan-out, no sockets.

One publisher and K subscriber tasks in one process.  The publisher publishes a burst of B
messages (synchronously, no await per subscriber), then waits until every subscriber has taken
all of them; each subscriber drains what is queued without waiting and awaits only when empty.
Reported: deliveries per second (K x messages / wall time) and the publish cost per delivery
(time inside the synchronous publish calls / deliveries), which stays flat when publish is
linear in K.

Stacks:
    trio      a list of trio memory channels, ``send_nowait`` / ``receive_nowait`` (the baseline)
    asyncio   a list of ``asyncio.Queue``, ``put_nowait`` / ``await get()``
    uvloop    the same on uvloop
    triosock  ``triosock.hub.InProcessHub``: ``publish_nowait`` / ``drain_nowait`` /
              ``await receive()``

Prints one JSON line per subscriber count, or ``{"event": "unavailable", ...}`` when the stack
cannot be imported.  Every wait is bounded (a stalled round ends the run with an error line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

MESSAGE = b"m" * 64
ROUND_TIMEOUT = 10.0


@dataclass
class Plan:
    subscribers: int
    burst: int
    messages: int

    @classmethod
    def for_total(cls, subscribers: int, deliveries: int) -> Plan:
        burst = max(1, min(256, deliveries // subscribers))
        rounds = max(1, deliveries // (subscribers * burst))
        return cls(subscribers, burst, burst * rounds)


@dataclass
class Outcome:
    seconds: float = 0.0
    publish_seconds: float = 0.0
    delivered: int = 0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self, stack: str, plan: Plan) -> dict[str, Any]:
        deliveries = plan.subscribers * plan.messages
        row: dict[str, Any] = {
            "event": "result",
            "stack": stack,
            "subscribers": plan.subscribers,
            "messages": plan.messages,
            "burst": plan.burst,
            "deliveries": self.delivered,
            "seconds": self.seconds,
        }
        if self.error:
            row["event"] = "error"
            row["error"] = self.error
        elif self.seconds > 0:
            row["deliveries_per_s"] = self.delivered / self.seconds
            row["publish_ns_per_delivery"] = 1e9 * self.publish_seconds / max(1, deliveries)
        row.update(self.extra)
        return row


class Rounds:
    """Counts subscribers that have finished the current burst."""

    def __init__(self, subscribers: int, new_event: Callable[[], Any]) -> None:
        self.subscribers = subscribers
        self.new_event = new_event
        self.ready = 0
        self.all_ready = new_event()
        self.finished = 0
        self.done = new_event()

    def subscribed(self) -> None:
        self.ready += 1
        if self.ready == self.subscribers:
            self.all_ready.set()

    def next_round(self) -> None:
        self.finished = 0
        self.done = self.new_event()

    def finish(self) -> None:
        self.finished += 1
        if self.finished == self.subscribers:
            self.done.set()


# ---------------------------------------------------------------- trio and triosock


async def run_trio_like(stack: str, plan: Plan) -> Outcome:
    """The trio memory-channel baseline and the triosock hub share this driver."""
    outcome = Outcome()
    rounds = Rounds(plan.subscribers, trio.Event)
    delivered = [0]

    if stack == "triosock":
        import triosock.hub

        hub: triosock.hub.InProcessHub[bytes] = triosock.hub.InProcessHub()

        def publish(message: bytes) -> None:
            hub.publish_nowait("bench", message)

        async def subscriber() -> None:
            async with hub.subscribe("bench", buffer=2 * plan.burst) as sub:
                rounds.subscribed()
                got = 0
                while got < plan.messages:
                    batch = sub.drain_nowait()
                    if batch:
                        got += len(batch)
                    else:
                        await sub.receive()
                        got += 1
                    if got % plan.burst == 0:
                        rounds.finish()
                delivered[0] += got

    else:
        channels = [
            trio.open_memory_channel[bytes](2 * plan.burst) for _ in range(plan.subscribers)
        ]
        senders = [send for send, _ in channels]

        def publish(message: bytes) -> None:
            for send in senders:
                send.send_nowait(message)

        async def subscriber_on(receive: trio.MemoryReceiveChannel[bytes]) -> None:
            rounds.subscribed()
            got = 0
            while got < plan.messages:
                try:
                    receive.receive_nowait()
                except trio.WouldBlock:
                    await receive.receive()
                got += 1
                if got % plan.burst == 0:
                    rounds.finish()
            delivered[0] += got

        receivers = iter([receive for _, receive in channels])

        async def subscriber() -> None:
            await subscriber_on(next(receivers))

    async with trio.open_nursery() as nursery:
        for _ in range(plan.subscribers):
            nursery.start_soon(subscriber)
        with trio.move_on_after(ROUND_TIMEOUT):
            await rounds.all_ready.wait()
        if not rounds.all_ready.is_set():
            outcome.error = f"only {rounds.ready} of {plan.subscribers} subscribed"
            nursery.cancel_scope.cancel()
            return outcome
        start = time.perf_counter()
        for _ in range(plan.messages // plan.burst):
            rounds.next_round()
            p0 = time.perf_counter()
            for _ in range(plan.burst):
                publish(MESSAGE)
            outcome.publish_seconds += time.perf_counter() - p0
            with trio.move_on_after(ROUND_TIMEOUT):
                await rounds.done.wait()
            if not rounds.done.is_set():
                outcome.error = f"stalled: {rounds.finished} of {plan.subscribers} finished a round"
                nursery.cancel_scope.cancel()
                return outcome
        outcome.seconds = time.perf_counter() - start
    outcome.delivered = delivered[0]
    return outcome


# ---------------------------------------------------------------- asyncio


async def run_asyncio(plan: Plan) -> Outcome:
    outcome = Outcome()
    rounds = Rounds(plan.subscribers, asyncio.Event)
    queues = [asyncio.Queue[bytes](maxsize=2 * plan.burst) for _ in range(plan.subscribers)]
    delivered = [0]

    async def subscriber(queue: asyncio.Queue[bytes]) -> None:
        rounds.subscribed()
        got = 0
        while got < plan.messages:
            await queue.get()
            got += 1
            if got % plan.burst == 0:
                rounds.finish()
        delivered[0] += got

    tasks = [asyncio.create_task(subscriber(queue)) for queue in queues]
    try:
        await asyncio.wait_for(rounds.all_ready.wait(), ROUND_TIMEOUT)
        start = time.perf_counter()
        for _ in range(plan.messages // plan.burst):
            rounds.next_round()
            p0 = time.perf_counter()
            for _ in range(plan.burst):
                for queue in queues:
                    queue.put_nowait(MESSAGE)
            outcome.publish_seconds += time.perf_counter() - p0
            await asyncio.wait_for(rounds.done.wait(), ROUND_TIMEOUT)
        outcome.seconds = time.perf_counter() - start
        await asyncio.gather(*tasks)
    except TimeoutError:
        outcome.error = f"stalled: {rounds.finished} of {plan.subscribers} finished a round"
    finally:
        for task in tasks:
            task.cancel()
    outcome.delivered = delivered[0]
    return outcome


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", choices=["trio", "asyncio", "uvloop", "triosock"], required=True)
    parser.add_argument("--subscribers", default="1,10,100,1000,10000")
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="per subscriber count")
    args = parser.parse_args()
    if args.stack == "triosock":
        try:
            import triosock.hub

            triosock.hub.InProcessHub  # noqa: B018
        except (ImportError, AttributeError) as exc:
            print(json.dumps({"event": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}))
            return
    for k in (int(s) for s in args.subscribers.split(",")):
        plan = Plan.for_total(k, args.deliveries)
        try:
            if args.stack in ("trio", "triosock"):
                outcome = trio.run(run_trio_like, args.stack, plan)
            elif args.stack == "asyncio":
                outcome = asyncio.run(run_asyncio(plan))
            else:
                import uvloop

                outcome = uvloop.run(run_asyncio(plan))
        except Exception as exc:  # report and go on with the next count
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
        print(json.dumps(outcome.report(args.stack, plan)), flush=True)


if __name__ == "__main__":
    main()
