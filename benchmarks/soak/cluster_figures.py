"""The cluster-faults soak's accounting: from what every member sent (and when) and got,
one row per fault, its figures and its bounds (README.md's guarantee table).

A line belongs to the row of the part of the run it was *sent* in: from 1 s before its
fault to 1 s before the next one. Loss is counted per pair of members of a room (sender,
receiver that kept reading): the numbers the sender sent against those the receiver
got. "Local" pairs are served by one worker process; "across" pairs by two (of one
server or of both), so their lines travel through Redis.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._harness import Row, percentile

#: Seconds before a fault in which a line counts as in flight when it happens.
IN_FLIGHT = 1.0
#: Bounds, in seconds (README.md: the lease is 6 s, ghosts go within a reaping pass more;
#: delivery across servers resumes within 2 s of Redis's return).
GHOSTS_WITHIN = 10.0
RESUME_WITHIN = 2.0
WHO_BACK_WITHIN = 2.0
NS = 1_000_000_000


@dataclass
class Events:
    """When each thing happened (CLOCK_MONOTONIC ns) and what the orchestrator saw."""

    began: int
    go: int
    unmapped: list[str] = field(default_factory=list)  # members of no known worker
    kill: int = 0
    victim_pid: int = 0
    killed: list[str] = field(default_factory=list)
    vanished_s: float | None = None
    restarted: bool = False
    pause: int = 0
    resume: int = 0
    redis_kill: int = 0
    restart: int = 0
    who_back_s: float | None = None
    stop: int = 0
    end: int = 0
    witness_closed: list[int] = field(default_factory=list)
    witness_left: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Tally:
    """The figures of one row, as the pairs are counted."""

    sent: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    local_expected: int = 0
    local_lost: int = 0
    across_expected: int = 0
    across_lost: int = 0
    across_lost_outside: int = 0  # across, outside what the table allows
    in_flight: int = 0  # killed senders' lines sent in the IN_FLIGHT s before the kill
    in_flight_lost: int = 0
    after_kill: int = 0  # killed senders' lines written after the kill
    latency: Counter[float] = field(default_factory=Counter)
    per_second: dict[int, Counter[float]] = field(default_factory=dict)


def rows(
    members: dict[str, dict[str, Any]],
    worker_of: dict[str, tuple[int, int]],
    events: Events,
    rss: list[tuple[int, int]],
    errors: list[str],
) -> list[Row]:
    second = NS
    windows = [
        (events.go, events.pause - second),
        (events.pause - second, events.redis_kill - second),
        (events.redis_kill - second, events.end + 3600 * second),
    ]
    killed = set(events.killed)
    tallies = [Tally() for _ in windows]

    def row_of(ns: int) -> int:
        for i, (start, end) in enumerate(windows):
            if start <= ns < end:
                return i
        return -1  # before go (none are sent then)

    for member in members.values():
        for sent_at in member["said_at"]:
            if (i := row_of(sent_at)) >= 0:
                tallies[i].sent += 1
    outage = (events.redis_kill - int(IN_FLIGHT * second), events.restart + int(RESUME_WITHIN * NS))
    late_across = 0  # lines said while Redis was down that reached another worker after
    resume_at: list[int] = []  # each receiver's first across line said after the restart
    for receiver, got_by in members.items():
        if receiver in killed:
            continue  # disconnected with its worker: expected, not counted
        first_after = 0
        for sender, member in members.items():
            if sender == receiver or member["room"] != got_by["room"]:
                continue
            said_at: list[int] = member["said_at"]
            got = got_by["got"].get(sender, [])
            local = worker_of.get(sender) == worker_of.get(receiver)
            counts = Counter(seq for seq, _ in got)
            for seq, sent_at in enumerate(said_at):
                i = row_of(sent_at)
                if i < 0:
                    continue
                tally = tallies[i]
                n = counts.get(seq, 0)
                if sender in killed and sent_at >= events.kill:
                    # Written after the kill, before its client saw the connection end:
                    # to a closed socket, never read by any server.
                    tally.after_kill += 1
                    tally.delivered += n
                    continue
                if sender in killed and sent_at >= events.kill - int(IN_FLIGHT * NS):
                    tally.in_flight += 1
                    tally.in_flight_lost += n == 0
                    tally.delivered += n
                    continue
                tally.expected += 1
                tally.delivered += n
                tally.duplicated += max(0, n - 1)
                if local:
                    tally.local_expected += 1
                else:
                    tally.across_expected += 1
                if n == 0:
                    tally.lost += 1
                    if local:
                        tally.local_lost += 1
                    else:
                        tally.across_lost += 1
                        if i != 2 or not outage[0] <= sent_at <= outage[1]:
                            tally.across_lost_outside += 1
                elif not local and events.redis_kill <= sent_at < events.restart:
                    late_across += 1
            for (a, _), (b, _) in itertools.pairwise(got):
                if b < a and b < len(said_at) and (i := row_of(said_at[b])) >= 0:
                    tallies[i].reordered += 1
            for seq, latency_us in got:
                if seq >= len(said_at) or (i := row_of(said_at[seq])) < 0:
                    continue
                ms = latency_us / 1000
                bucket = round(ms, 1) if ms < 100 else float(round(ms))
                tallies[i].latency[bucket] += 1
                counter = tallies[i].per_second.setdefault(
                    (said_at[seq] - events.go) // NS, Counter()
                )
                counter[bucket] += 1
                if not local and said_at[seq] >= events.restart:
                    arrived = said_at[seq] + latency_us * 1000
                    if not first_after or arrived < first_after:
                        first_after = arrived
        if first_after:
            resume_at.append(first_after)

    # Disconnects, errors, leave lines, notices: per row by when they happened.
    survivors = [nick for nick in members if nick not in killed]
    expected_closes = [0, 0, 0]
    unexpected_closes: list[list[str]] = [[], [], []]
    client_errors: list[list[str]] = [[], [], []]
    for nick, member in members.items():
        closed_at = member["closed_at"]
        if closed_at:
            i = max(0, row_of(closed_at))
            if nick in killed:
                expected_closes[i] += 1
            else:
                unexpected_closes[i].append(nick)
        if member["send_error"] and nick not in killed:
            at, what = member["send_error"]
            client_errors[max(0, row_of(at))].append(f"{nick}: {what}")
    for at in events.witness_closed:
        unexpected_closes[max(0, row_of(at))].append("a witness")
    client_errors[2] += errors
    killed_not_closed = sorted(nick for nick in killed if not members[nick]["closed_at"])
    leave_missing = 0
    leave_last = events.kill
    spurious: list[list[str]] = [[], [], []]
    for nick in survivors:
        member = members[nick]
        for gone, at in member["left"].items():
            if gone in killed:
                leave_last = max(leave_last, at)
            elif gone in members and events.go <= at < events.stop:  # (not the ends)
                spurious[max(0, row_of(at))].append(f"{gone} at {nick}")
        for gone in killed:
            if members[gone]["room"] == member["room"] and gone not in member["left"]:
                leave_missing += 1
    told = 0
    for nick in survivors:
        kinds = [(k, at) for k, at in members[nick]["notices"] if at >= events.redis_kill]
        degraded = [at for k, at in kinds if k == "degraded"]
        if degraded and any(k == "back" and at > degraded[0] for k, at in kinds):
            told += 1
    back_last = max(
        (at for nick in survivors for k, at in members[nick]["notices"] if k == "back"),
        default=0,
    )
    pause_degraded = sum(
        1
        for nick in survivors
        for k, at in members[nick]["notices"]
        if k == "degraded" and events.pause <= at < events.redis_kill
    )
    resume_s = (max(resume_at) - events.restart) / NS if resume_at else None

    result: list[Row] = []
    names = [
        "kill -9 of a worker (of 4)",
        "redis SIGSTOP for 2 s",
        "redis kill -9, restarted 2 s later",
    ]
    for i, (tally, (start, end)) in enumerate(zip(tallies, windows, strict=True)):
        in_window = [kib for at, kib in rss if start <= at < end]
        figures: dict[str, Any] = {
            "members": len(members),
            "sent": tally.sent,
            "expected": tally.expected,
            "delivered": tally.delivered,
            "lost": tally.lost,
            "duplicated": tally.duplicated,
            "reordered": tally.reordered,
            "local_lost": tally.local_lost,
            "across_lost": tally.across_lost,
            "p50_ms": percentile(tally.latency, 0.5),
            "p99_ms": percentile(tally.latency, 0.99),
            "max_rss_mib": round(max(in_window, default=0) / 1024, 1),
            "disconnects_expected": expected_closes[i],
            "disconnects_unexpected": len(unexpected_closes[i]),
            "client_errors": len(client_errors[i]),
            "spurious_leaves": len(spurious[i]),
            "seconds": round(((min(end, events.end) - start) / NS), 1),
        }
        row = Row("cluster faults", names[i], figures)
        row.latency_series = [
            (float(s), percentile(c, 0.99)) for s, c in sorted(tally.per_second.items())
        ]
        row.rss_series = [((at - events.began) / NS, kib) for at, kib in rss if start <= at < end]
        common = [
            ("0 duplicated", tally.duplicated == 0),
            ("0 reordered per sender", tally.reordered == 0),
            (f"no client errors ({client_errors[i][:2]})", not client_errors[i]),
            (f"no other user disconnected ({unexpected_closes[i][:3]})", not unexpected_closes[i]),
            (f"no leave line for a user still there ({spurious[i][:3]})", not spurious[i]),
        ]
        if i == 0:
            figures.update(
                killed_users=len(killed),
                in_flight=tally.in_flight,
                in_flight_lost=tally.in_flight_lost,
                written_after_kill=tally.after_kill,
                ghosts_gone_s=None if events.vanished_s is None else round(events.vanished_s, 2),
                leave_lines_s=round((leave_last - events.kill) / NS, 2),
                leave_lines_missing=leave_missing,
            )
            row.bounds += [
                (f"each user's worker known from the logs ({events.unmapped[:3]})",
                 not events.unmapped),
                ("the killed worker served someone", bool(killed)),
                (f"its users disconnected ({killed_not_closed[:3]})", not killed_not_closed),
                ("0 lost among the others, nor of its users' lines sent > 1 s before",
                 tally.lost == 0),
                ("every other user in their rooms got their leave lines", leave_missing == 0),
                (f"/who stops listing them within {GHOSTS_WITHIN:.0f} s",
                 events.vanished_s is not None and events.vanished_s <= GHOSTS_WITHIN),
                ("the supervisor started a new worker", events.restarted),
            ]  # fmt: skip
        elif i == 1:
            figures.update(degraded_notices=pause_degraded)
            row.bounds += [("0 lost at every user", tally.lost == 0)]
        else:
            figures.update(
                local_expected=tally.local_expected,
                across_expected=tally.across_expected,
                across_lost_outside=tally.across_lost_outside,
                late_across=late_across,
                told_degraded_then_back=f"{told}/{len(survivors)}",
                back_notice_s=round((back_last - events.restart) / NS, 2) if back_last else None,
                resume_s=None if resume_s is None else round(resume_s, 2),
                who_back_s=None if events.who_back_s is None else round(events.who_back_s, 2),
            )
            row.bounds += [
                ("0 lost between users of one worker", tally.local_lost == 0),
                ("across workers, lost only what was said while Redis was down "
                 f"(from {IN_FLIGHT:.0f} s before to {RESUME_WITHIN:.0f} s after)",
                 tally.across_lost_outside == 0),
                ("every user told 'degraded', then 'back'", told == len(survivors)),
                (f"delivery across resumes within {RESUME_WITHIN:.0f} s of Redis's return",
                 resume_s is not None and resume_s <= RESUME_WITHIN),
                (f"/who lists everyone again within {WHO_BACK_WITHIN:.0f} s",
                 events.who_back_s is not None and events.who_back_s <= WHO_BACK_WITHIN),
            ]  # fmt: skip
        row.bounds += common
        result.append(row)
    return result
