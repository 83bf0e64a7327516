"""Driving the real IRC clients irssi and WeeChat from trio tests, through tmux.

Each client runs in a tmux server of its own (``tmux -L <unique name>``, started with
``-f /dev/null``, so a user's tmux server and configuration are never touched), in a pane
of a fixed size; what a user would see is the pane's rendered text (``capture-pane -p``).
The client's home is a directory the test gives, with a configuration written there before
it starts: nothing is read from the user's real home (``HOME`` points there too and the
environment is built from scratch), it connects to the given server only, without TLS or
SASL, and timestamps show seconds (``HH:MM:SS``) so a test can check a line's time.

Both context managers return once the client is registered: the configuration has the
client print :data:`REGISTERED` on its server window when the server's welcome (001) has
come (irssi's ``autosendcmd``, WeeChat's server ``command``), so a test's first command
is not typed into a client that is still connecting.

Needs ``tmux``, ``irssi`` and WeeChat's curses UI (the Debian package ``weechat-curses``,
binary ``weechat``; ``weechat-headless`` has no screen to read); a test is skipped if one
is missing.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from .clitools import need

#: What a client prints on its server window once the server has welcomed it.
REGISTERED = "triosock-harness: registered"

_POLL = 0.05  # seconds between two looks at the screen
_RETYPE = 1.0  # seconds before a window switch that has not shown is typed again
_QUIT_GRACE = 3.0  # how long a client may take to exit after /quit
_SESSION = "irc"  # the one tmux session (and window) of each tmux server


class IrcClientScreen:
    """One IRC client in its tmux pane: type into it and read what it shows."""

    def __init__(
        self,
        kind: str,
        version: tuple[int, ...],
        tmux: _Tmux,
        server_tag: str,
        patience: float,
    ) -> None:
        #: ``"irssi"`` or ``"weechat"``.
        self.kind = kind
        #: The client's version, as ``(3, 8)``: WeeChat understands ``batch`` and
        #: ``echo-message`` only from 4.0 (Debian 12 ships 3.8).
        self.version = version
        #: The client's name for the server (irssi's chatnet, WeeChat's server name).
        self.server_tag = server_tag
        #: How long :meth:`wait_for` waits before it fails (seconds).
        self.patience = patience
        self._tmux = tmux

    async def command(self, text: str) -> None:
        """Type ``text`` into the input line and press Enter (``"/join #a"``, ``"hello"``).

        The keys are written to the pane's terminal in order, so commands typed one after
        the other reach the client in that order; this does not wait for any effect.
        """
        await self._tmux.run(
            *("send-keys", "-t", _SESSION, "-l", "--", _literal(text)),
            *(";", "send-keys", "-t", _SESSION, "Enter"),
        )

    async def send_keys(self, *keys: str) -> None:
        """Press keys by tmux's names (``"Enter"``, ``"C-n"``, ``"PageUp"``, ``"y"``)."""
        await self._tmux.run("send-keys", "-t", _SESSION, *(_literal(key) for key in keys))

    async def screen(self) -> str:
        """The pane's rendered text now: the client's current window, its bars and input.

        Only what is on the screen: both clients draw on the terminal's alternate screen
        and redraw in place, so tmux keeps no scrollback of theirs, and a line that has
        scrolled out of the client's window is no longer here (the pane is 50 rows).
        """
        text, _ = await self._look()
        return text

    async def wait_for(self, text: str | re.Pattern[str]) -> str:
        """Wait until the screen shows ``text`` (a substring, or a pattern to search for).

        Returns the screen that showed it. Fails with the screen's contents if it does not
        within :attr:`patience` seconds, or at once if the client has exited.

        This is the one place the tests poll: a terminal sends no event when its screen
        changes, so the screen is read every 0.05 s until it shows ``text``, bounded by
        :attr:`patience` (and by the test's own ``trio.fail_after``).
        """
        shown, screen, exited = await self._poll(text, self.patience)
        if shown:
            return screen
        why = "the client has exited" if exited else f"not within {self.patience}s"
        wanted = text if isinstance(text, str) else text.pattern
        raise AssertionError(f"{self.kind}: no {wanted!r} on the screen ({why}):\n{screen}")

    async def window(self, name: str) -> None:
        """Switch to the window of channel or query ``name`` and wait until it shows.

        irssi: ``/window goto NAME``; WeeChat: ``/buffer irc.SERVER.NAME``. Done once the
        status bar names the window. A query window opens only when its first message
        arrives, which a test often cannot see from the window it is in; so the command
        is typed again every second (the client may print that there is no such window
        meanwhile) until the window shows, for :attr:`patience` seconds at most, then it
        fails with the screen.
        """
        escaped = re.escape(name)
        if self.kind == "irssi":
            switch = f"/window goto {name}"
            # irssi's status bar: "[2:triosock/#a(+nt)]", "[3:triosock/bob]"
            status = re.compile(rf"\[\d+:[^\s\]/]+/{escaped}[(\]]", re.IGNORECASE)
        else:
            switch = f"/buffer irc.{self.server_tag}.{name}"
            # WeeChat's status bar: "[2] [irc/triosock] 2:#a(+nt){2}", "3:bob", and once
            # parted or kicked "2:(#a){0}"
            status = re.compile(
                rf"\] \d+:(?:{escaped}|\({escaped}\))(?:[({{ ]|$)", re.IGNORECASE | re.MULTILINE
            )
        screen, exited = "", False
        with trio.move_on_after(self.patience):
            while not exited:
                await self.command(switch)
                shown, screen, exited = await self._poll(status, _RETYPE)
                if shown:
                    return
        why = "the client has exited" if exited else f"not within {self.patience}s"
        raise AssertionError(f"{self.kind}: no window {name!r} ({why}):\n{screen}")

    async def server_window(self) -> None:
        """Switch to the server's window (irssi's status window, WeeChat's server buffer)."""
        if self.kind == "irssi":
            await self.command("/window goto 1")
        else:
            await self.command(f"/buffer irc.server.{self.server_tag}")

    async def exited(self) -> bool:
        """Whether the client has exited (its pane stays, showing its last screen)."""
        _, dead = await self._look()
        return dead

    async def _poll(self, text: str | re.Pattern[str], seconds: float) -> tuple[bool, str, bool]:
        """Read the screen until it shows ``text``: whether it did, the last screen, and
        whether the client has exited; for ``seconds`` at most, or until it exits."""
        found = (lambda screen: text in screen) if isinstance(text, str) else text.search
        screen, exited = "", False
        with trio.move_on_after(seconds):
            while True:
                screen, exited = await self._look()
                if found(screen):
                    return True, screen, exited
                if exited:
                    break
                await trio.sleep(_POLL)
        return False, screen, exited

    async def _look(self) -> tuple[str, bool]:
        # One tmux call for both: the pane's text, then a last line that says if it is dead.
        out = await self._tmux.run(
            *("capture-pane", "-p", "-t", _SESSION),
            *(";", "display-message", "-p", "-t", _SESSION, "#{pane_dead}"),
        )
        text, _, dead = out.rstrip("\n").rpartition("\n")
        return text.rstrip("\n"), dead.strip() == "1"


class _Tmux:
    """A tmux server of our own: its socket name, and the environment it runs under."""

    def __init__(self, home: Path) -> None:
        self.name = f"triosock-irc-{os.getpid()}-{secrets.token_hex(6)}"
        # tmux puts its socket at $TMUX_TMPDIR/tmux-UID/NAME; our environment has no
        # TMUX_TMPDIR, so it is under /tmp.
        self.socket = Path("/tmp", f"tmux-{os.getuid()}", self.name)
        self.env = _environment(home)

    async def run(self, *args: str) -> str:
        """Run a tmux command (list) on this server; its standard output."""
        result = await trio.run_process(
            ["tmux", "-L", self.name, "-u", "-f", "/dev/null", *args],
            env=self.env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        if result.returncode != 0:
            error = result.stderr.decode(errors="replace").strip()
            raise AssertionError(f"tmux {' '.join(args)}: exit {result.returncode}: {error}")
        return result.stdout.decode(errors="replace")


def _environment(home: Path) -> dict[str, str]:
    """A fresh environment: no XDG directories, ``HOME`` in the test's directory, UTF-8,
    times in UTC."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",  # tmux's own; the panes get tmux's default-terminal
        "TZ": "UTC",  # the clients show local times: UTC, as the chat's lines say them
    }
    return env


async def _version(binary: str, home: Path) -> tuple[int, ...]:
    """The version ``binary --version`` prints (``irssi 1.4.3 (...)``, ``3.8``)."""
    result = await trio.run_process(
        [binary, "--version"], env=_environment(home), capture_stdout=True, check=True
    )
    match = re.search(rb"(\d+(?:\.\d+)*)", result.stdout)
    if match is None:
        raise AssertionError(f"{binary} --version: {result.stdout!r}")
    return tuple(int(part) for part in match[1].split(b"."))


def _literal(text: str) -> str:
    """``text`` as one tmux argument: a trailing ``;`` would end the command list."""
    return text[:-1] + "\\;" if text.endswith(";") else text


def _quoted(value: str, what: str) -> str:
    """``value`` in double quotes for a client's configuration file."""
    if any(char in value for char in '"\\\n\r'):
        raise ValueError(f"{what} {value!r}: no quotes, backslashes or line breaks")
    return f'"{value}"'


@asynccontextmanager
async def _client_in_tmux(
    kind: str,
    version: tuple[int, ...],
    argv: Sequence[str],
    home: Path,
    server_tag: str,
    patience: float,
    size: tuple[int, int],
) -> AsyncIterator[IrcClientScreen]:
    """Run ``argv`` in a new tmux server's pane until registered; /quit and kill it after."""
    tmux = _Tmux(home)
    columns, rows = size
    client = IrcClientScreen(kind, version, tmux, server_tag, patience)
    try:
        # One command list, run in order before the server's loop sees the client exit:
        # a pane whose program exits stays (remain-on-exit), so a failure shows its screen.
        await tmux.run(
            *("start-server", ";", "set-option", "-g", "status", "off"),
            *(";", "set-option", "-g", "remain-on-exit", "on"),
            *(";", "new-session", "-d", "-s", _SESSION, "-x", str(columns), "-y", str(rows)),
            *("--", *argv),
        )
        await client.wait_for(REGISTERED)
        yield client
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(_QUIT_GRACE + 5):
            try:
                if not await client.exited():
                    await client.command("/quit")
                    for _ in range(round(_QUIT_GRACE / _POLL)):  # then it is killed
                        if await client.exited():
                            break
                        await trio.sleep(_POLL)
            except AssertionError:
                pass  # no tmux server (it failed to start) or it is gone already
            finally:
                await trio.run_process(
                    ["tmux", "-L", tmux.name, "kill-server"],
                    env=tmux.env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                tmux.socket.unlink(missing_ok=True)


@asynccontextmanager
async def irssi(
    host: str,
    port: int,
    nick: str,
    home: Path,
    *,
    patience: float = 10.0,
    password: str | None = None,
    sasl: tuple[str, str] | None = None,
    server_time: bool = True,
    size: tuple[int, int] = (200, 50),
) -> AsyncIterator[IrcClientScreen]:
    """irssi connected to ``host``:``port`` as ``nick``, registered, in a tmux pane.

    ``home`` (created if missing) gets ``irssi/config``: one server (network
    ``triosock``, no TLS), autoconnected, the only one; nick, user name and real name
    ``nick``; timestamps ``%H:%M:%S``; no throttling of typed commands (a test types
    faster than irssi's default of one line per 2.2 s after a burst of 5), no paste
    detection, no CTCP VERSION reply, no settings saved back. ``password`` is sent as
    PASS; ``sasl`` (user, password) logs in with SASL PLAIN, else irssi asks for no SASL.

    ``server_time`` turns on irssi's ``show_server_time``: without it irssi stamps every
    line with the time it arrived, even one whose ``@time`` tag is in the past.

    The client is started with ``irssi --home=HOME/irssi``; ``/quit`` and the end of its
    tmux server on exit, even on failure.
    """
    need("tmux")
    need("irssi")
    directory = home / "irssi"
    directory.mkdir(parents=True, exist_ok=True)
    name = _quoted(nick, "nick")
    chatnet = [
        'type = "IRC";',
        f"nick = {name}; username = {name}; realname = {name};",
        f'autosendcmd = "/echo {REGISTERED}";',
    ]
    if sasl is not None:
        user, secret = sasl
        chatnet.append(
            f'sasl_mechanism = "PLAIN"; sasl_username = {_quoted(user, "SASL user")}; '
            f"sasl_password = {_quoted(secret, 'SASL password')};"
        )
    server = [
        f'address = {_quoted(host, "host")}; chatnet = "triosock"; port = "{port}";',
        'use_tls = "no"; tls_verify = "no"; autoconnect = "yes";',
    ]
    if password is not None:
        server.append(f"password = {_quoted(password, 'password')};")
    config = f"""\
servers = (
  {{ {" ".join(server)} }}
);
chatnets = {{
  triosock = {{ {" ".join(chatnet)} }};
}};
channels = ( );
settings = {{
  core = {{
    nick = {name}; user_name = {name}; real_name = {name};
    timestamp_format = "%H:%M:%S";
    timestamp_format_alt = "%a %e %b %H:%M:%S";
    settings_autosave = "no";
    resolve_prefer_ipv6 = "no";
  }};
  "fe-common/core" = {{ beep_msg_level = ""; }};
  "fe-text" = {{
    paste_detect_time = "0";
    show_server_time = "{"yes" if server_time else "no"}";
  }};
  "irc/core" = {{
    cmd_queue_speed = "0msec";
    cmds_max_at_once = "1000";
    ctcp_version_reply = "";
  }};
}};
"""
    (directory / "config").write_text(config)
    argv = ["irssi", f"--home={directory}"]
    version = await _version("irssi", home)
    async with _client_in_tmux("irssi", version, argv, home, "triosock", patience, size) as client:
        yield client


@asynccontextmanager
async def weechat(
    host: str,
    port: int,
    nick: str,
    home: Path,
    *,
    patience: float = 10.0,
    caps: Sequence[str] = (),
    password: str | None = None,
    sasl: tuple[str, str] | None = None,
    size: tuple[int, int] = (200, 50),
) -> AsyncIterator[IrcClientScreen]:
    """WeeChat (curses UI) connected to ``host``:``port`` as ``nick``, registered, in tmux.

    ``home`` (created if missing) gets ``weechat/weechat.conf`` and ``weechat/irc.conf``:
    one server (``triosock``, no TLS), autoconnected, no reconnecting; nick, user name and
    real name ``nick``; timestamps ``%H:%M:%S``; no anti-flood delay between typed lines
    (WeeChat's default is 2 s); no smart filter (it would hide the joins, parts and nick
    changes of users who have not spoken); no logo, no paste confirmation.

    ``caps`` is the list of capabilities WeeChat asks for (its option
    ``irc.server_default.capabilities``); empty keeps WeeChat's default, ``*``: every one
    it supports and the server offers (WeeChat 3.8: account-notify, away-notify,
    cap-notify, chghost, extended-join, invite-notify, message-tags, multi-prefix,
    server-time, setname, userhost-in-names; ``batch`` and ``echo-message`` only from
    WeeChat 4.0). ``password`` is sent as PASS; ``sasl`` (user, password) logs in with
    SASL PLAIN, else no SASL.

    The client is started with ``weechat --dir HOME/weechat --plugins irc`` (no other
    plugin, no script); ``/quit`` and the end of its tmux server on exit, even on failure.
    """
    need("tmux")
    binary = need("weechat")  # the curses UI (Debian: weechat-curses)
    directory = home / "weechat"
    directory.mkdir(parents=True, exist_ok=True)
    version = await _version(binary, home)
    tls = "tls" if version >= (4,) else "ssl"  # renamed in WeeChat 4.0
    name = _quoted(nick, "nick")
    server = [
        f"addresses = {_quoted(f'{host}/{port}', 'host')}",
        f"{tls} = off",
        f"nicks = {name}",
        f"username = {name}",
        f"realname = {name}",
        "autoconnect = on",
        f'command = "/print {REGISTERED}"',
    ]
    if password is not None:
        server.append(f"password = {_quoted(password, 'password')}")
    if sasl is not None:
        user, secret = sasl
        server += [
            "sasl_mechanism = plain",
            f"sasl_username = {_quoted(user, 'SASL user')}",
            f"sasl_password = {_quoted(secret, 'SASL password')}",
        ]
    defaults = ["autoreconnect = off"]
    if version >= (4, 1):  # one option (milliseconds) in place of the two (seconds)
        defaults.append("anti_flood = 0")
    else:
        defaults += ["anti_flood_prio_high = 0", "anti_flood_prio_low = 0"]
    if caps:
        defaults.append(f"capabilities = {_quoted(','.join(caps), 'capabilities')}")
    (directory / "weechat.conf").write_text(
        "[look]\n"
        'buffer_time_format = "%H:%M:%S"\n'
        "confirm_quit = off\n"
        "paste_max_lines = -1\n"
        "[startup]\n"
        "display_logo = off\n"
        "display_version = off\n"
    )
    (directory / "irc.conf").write_text(
        "[look]\n"
        "smart_filter = off\n"
        # a server that puts the client in a channel (the chat's #lobby) would take the
        # screen away from the server buffer, where the registration mark is printed
        "buffer_switch_autojoin = off\n"
        "buffer_switch_join = off\n"
        "[server_default]\n"
        + "".join(f"{line}\n" for line in defaults)
        + "[server]\n"
        + "".join(f"triosock.{line}\n" for line in server)
    )
    argv = [binary, "--dir", str(directory), "--plugins", "irc", "--no-script"]
    async with _client_in_tmux(
        "weechat", version, argv, home, "triosock", patience, size
    ) as client:
        yield client
