"""IRC daemons for the IRC fan-out (``irc``): ngircd and InspIRCd, as Debian packages them.

Each runs in the foreground with a configuration file of its own, written into the results
folder (never into the project), that binds 127.0.0.1 only, on a port found free just before
(tried again on another port when the daemon cannot bind it).  The process started is the
daemon itself, so the CPU time the runner reads from ``/proc/PID/stat`` is the daemon's.

Flood protection is off for every client, so also for the load client's one sender (it
stands for a whole channel's traffic, as in the triosock rows, which turn the per-user rate
limit off); the per-address connection limits allow the thousand subscribers from 127.0.0.1:

- **ngircd** (``ngircd.conf(5)``): ``MaxPenaltyTime = 0`` ("0 to disable penalties
  altogether"): the second of penalty ngircd adds for more than 3 commands in one pass of its
  loop, or more than 256 bytes in a second, becomes no delay.  ngircd still handles at most 3
  commands of a client per pass of its loop (10 with user mode ``F``, which only an IRC
  operator may set); that is its scheduling, not a rate limit, and the sender is left an
  ordinary user, as in the other rows.  ``MaxConnectionsIP = 0`` and ``MaxConnections = 0``
  (no limits), ``DNS = no``, ``Ident = no`` (no resolver subprocess per connection),
  ``PAM = no``.  Started as root it runs as ``nobody`` (its ``ServerUID`` default), the same
  process.
- **InspIRCd** (``<connect>`` class, InspIRCd 3): ``commandrate`` 10^9 (a million commands a
  second drained from the penalty) and ``threshold`` 10^6 (the penalty allowed: a million
  commands), with ``fakelag="no"``: a client over the threshold would be disconnected
  ("Excess Flood"), which the load client reports, rather than slowed in silence.
  ``softsendq`` and ``hardsendq`` 16 MiB, ``recvq`` 1 MiB, ``localmax``, ``globalmax`` and
  ``limit`` 5000, ``maxconnwarn="no"``, ``resolvehostnames="no"``, ``useident="no"``; no
  module loaded (none of connflood, connectban, messageflood); no log files, no PID file;
  ``--runasroot`` when started as root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks._procs import Pinning, Processes, Server, Unavailable, free_port

#: Where the daemons live on Debian (/usr/sbin is not on every user's PATH).
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Ircd:
    name: str  # the binary's name
    package: str  # the Debian package that has it
    ready: tuple[str, ...]  # every one of these in its output: it listens
    clash: str  # in its output: the port was taken (try another)


# 'Now listening on [127.0.0.1]:PORT (socket 6).', then 'Server "NAME" (on "HOST") ready.'
NGIRCD = Ircd(
    "ngircd", "ngircd", ("Now listening on [127.0.0.1]:{port} ", ") ready."), "already in use"
)
INSPIRCD = Ircd("inspircd", "inspircd", ("InspIRCd is now running as",), "failed to bind")
IRCDS = {ircd.name: ircd for ircd in (NGIRCD, INSPIRCD)}


def binary(name: str) -> str | None:
    """The daemon's path, on PATH or in the sbin directories; None when not installed."""
    return shutil.which(name) or shutil.which(name, path=SBIN)


def version(name: str) -> str:
    """``26.1`` for ngircd, ``3.15.0-debian`` for InspIRCd; or why there is none."""
    path = binary(name)
    if path is None:
        return "not installed"
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    # "ngIRCd 26.1-IDENT+IPv6+...", "InspIRCd-3.15.0-debian"
    found = re.search(r"(?:ngIRCd |InspIRCd-)(\d[^\s+]*?)(?:-IDENT|\+|\s|$)", done.stdout)
    return found.group(1) if found else "unknown"


def ngircd_config(port: int) -> str:
    """ngircd.conf: 127.0.0.1:``port`` only, no penalties, no per-address limit, no lookups."""
    return f"""\
# written by benchmarks/run.py for one run of the IRC fan-out (see benchmarks/_ircd.py)
[Global]
Name = bench.ngircd
Info = triosock benchmark
AdminInfo1 = triosock benchmark
AdminInfo2 = loopback only
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = triosock benchmark

[Limits]
# 0: no penalty time at all (the flood protection's delays), for every client
MaxPenaltyTime = 0
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
PingTimeout = 120
PongTimeout = 60

[Options]
DNS = no
Ident = no
PAM = no
"""


def inspircd_config(port: int) -> str:
    """inspircd.conf: 127.0.0.1:``port`` only, a connect class without flood limits."""
    return f"""\
# written by benchmarks/run.py for one run of the IRC fan-out (see benchmarks/_ircd.py)
<server name="bench.inspircd" description="triosock benchmark" network="bench">
<admin name="triosock benchmark" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">

<connect name="bench"
         allow="127.0.0.1"
         timeout="60"
         pingfreq="2m"
         softsendq="16M"
         hardsendq="16M"
         recvq="1M"
         threshold="1000000"
         commandrate="1000000000"
         fakelag="no"
         localmax="5000"
         globalmax="5000"
         limit="5000"
         maxconnwarn="no"
         maxchans="20"
         resolvehostnames="no"
         useident="no">

<performance somaxconn="1024" softlimit="5000" quietbursts="yes">
<security maxtargets="20">
"""


def _copy(stream: IO[bytes], log: Path) -> None:
    """Copy a daemon's output into its log, but for ngircd's "Write error on connection"
    lines: when the load client leaves, ngircd tells every member of the channel about each
    one that quit, writes into sockets already closed and logs each failed write (about
    N**2 / 2.4 lines, 400,000 at 1000 subscribers); they are counted, not kept."""
    skipped = 0
    with log.open("ab") as out:
        try:
            for line in stream:
                if b"Write error on connection" in line:
                    skipped += 1
                    continue
                if skipped:
                    out.write(b"(%d write errors to closed connections not shown)\n" % skipped)
                    skipped = 0
                out.write(line)
                out.flush()
        except (OSError, ValueError):  # the runner closed the pipe
            pass
        if skipped:
            out.write(b"(%d write errors to closed connections not shown)\n" % skipped)


class IrcdServer(Server):
    """ngircd or InspIRCd in the foreground on a free loopback port, with a configuration
    file written into ``conf_dir``; the process started, and measured, is the daemon."""

    def __init__(
        self,
        procs: Processes,
        ircd: Ircd,
        *,
        conf_dir: Path,
        log: Path,
        cwd: Path,
        pinning: Pinning,
    ) -> None:
        super().__init__(procs, [ircd.name], port_pattern="", log=log, cwd=cwd, pinning=pinning)
        self.ircd, self.conf_dir = ircd, conf_dir
        self.copier: threading.Thread | None = None

    def command(self, path: str, conf: Path) -> list[str]:
        if self.ircd is NGIRCD:
            return [path, "--nodaemon", "--config", str(conf)]
        argv = [path, "--nofork", "--nopid", "--config", str(conf)]
        if os.geteuid() == 0:  # InspIRCd refuses to run as root unless told
            argv.append("--runasroot")
        return argv

    def start(self, timeout: float = 15.0) -> int:
        path = binary(self.ircd.name)
        if path is None:
            install = f"Debian: apt-get install {self.ircd.package}"
            raise Unavailable(f"{self.ircd.name} is not installed ({install})", lasting=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_bytes(b"")
        deadline = time.monotonic() + timeout
        for _ in range(5):  # another process may take the free port before the daemon binds it
            port = free_port()
            conf = self.conf_dir / f"{self.ircd.name}.conf"
            conf.write_text(ngircd_config(port) if self.ircd is NGIRCD else inspircd_config(port))
            self.argv = self.command(path, conf)
            with self.log.open("ab") as out:
                out.write(f"$ {' '.join(self.argv)}\n".encode())
                begins = out.tell()  # this attempt's output starts here
            self.proc = self.procs.start(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
            self.pinning.pin(self.proc.pid, "server")
            assert self.proc.stdout is not None
            self.copier = threading.Thread(
                target=_copy, args=(self.proc.stdout, self.log), daemon=True
            )
            self.copier.start()
            ready = [marker.format(port=port) for marker in self.ircd.ready]
            while time.monotonic() < deadline:
                text = self.log.read_bytes()[begins:].decode(errors="replace")
                if self.ircd.clash in text:
                    break  # this attempt's port was taken: stop it, try another
                if all(marker in text for marker in ready):
                    self.port = port
                    self.workers = [self.proc.pid]
                    time.sleep(0.05)  # let it reach its accept loop
                    return port
                if self.proc.poll() is not None:
                    self.stop()
                    tail = " | ".join(text.strip().splitlines()[-3:])
                    raise Unavailable(f"exited: {tail or 'no output'}", lasting=True)
                time.sleep(0.02)
            else:
                raise Unavailable(f"no {ready} within {timeout:.0f} s", lasting=False)
            self.stop()
        raise Unavailable(f"{self.ircd.name} found no free port in 5 tries", lasting=False)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            if self.copier is not None:
                self.copier.join(2.0)  # the rest of its output into the log
        finally:
            self.copier = None
            super().stop()
