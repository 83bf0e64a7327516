"""Connection registration, sans-IO: CAP negotiation, SASL PLAIN, NICK and USER.

:class:`Registration` takes the client's messages until it is registered and answers
them; the caller sends the :class:`Reply` lines and acts on the other items. The rules,
one row a command (the table is :data:`_BEFORE`; the IRCv3 capability negotiation 302
and SASL 3.1 specifications, modern.ircdocs.horse for the numerics)::

    CAP LS [302]    CAP <nick|*> LS :caps (values, e.g. sasl=PLAIN, and lines split
                    with a "*" only for 302); registration waits for CAP END
    CAP REQ :a -b   CAP <nick|*> ACK :a -b, or NAK :a -b if any cap is not offered or
                    there are more than MAX_CAP_REQ (all or nothing); waits for CAP END
    CAP LIST        CAP <nick|*> LIST :enabled caps
    CAP END         negotiation over (a SASL exchange under way is aborted: 906)
    CAP other       410 ERR_INVALIDCAPCMD; CAP alone: 461
    NICK n          431 if no nick, 432 if not is_irc_nick(n), else kept
    USER u m * r    461 with fewer than 4 parameters or an empty u, else kept
    PASS x          ignored: the chat's accounts log in through SASL
    PING t          :server PONG server t (461 without t)
    PONG            ignored
    AUTHENTICATE    SASL PLAIN (below)
    QUIT [r]        Quit(r)
    anything else   451 ERR_NOTREGISTERED

Once NICK and USER have come, and CAP END if CAP LS or REQ came, :class:`Registered`
is given with the nick *as the client sent it*: the caller maps it to a chat nick
(:func:`~._names.from_irc_nick`), checks it (``validate_nick``, the directory) and, if it
cannot have it, calls :meth:`Registration.nick_taken` (433) or
:meth:`Registration.nick_erroneous` (432), which re-open registration for another NICK;
else it sends :func:`~._welcome.welcome`. After :class:`Registered` the caller handles
everything but ``CAP`` (allowed at any time: REQ then gives :class:`CapsChanged`),
``USER`` and ``PASS`` (462) and ``AUTHENTICATE`` (907, or 462).

**SASL PLAIN.** Only with the ``sasl`` cap enabled (else 904). ``AUTHENTICATE PLAIN``
is answered ``AUTHENTICATE +``; another mechanism gets 908 (the list: ``PLAIN``) and
904. The client then sends base64 in chunks of 400 bytes, a chunk shorter than 400 (or
``+``) ending it; ``*`` aborts (906); a chunk over 400 bytes is 905; more than
:data:`MAX_SASL_BYTES` in all, bad base64, or no ``authzid NUL authcid NUL password`` in
UTF-8 is 904. A complete response gives :class:`SaslPlain`, which the caller answers with
:meth:`Registration.sasl_result` *before it feeds the next message* (900 and 903, or
904). After a success, AUTHENTICATE is 907.

**Bounds.** Everything held is bounded: the nick and user by the line length, caps by
the offer, the SASL response by :data:`MAX_SASL_BYTES`, a REQ by :data:`MAX_CAP_REQ`.
Time is the caller's: it gives up on a client that has not registered within its
deadline (a cancel scope), and may also count :attr:`Registration.lines`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._message import IrcMessage, numeric, render
from ._names import is_irc_nick
from ._text import MAX_LINE

__all__ = [
    "MAX_CAP_REQ",
    "MAX_SASL_BYTES",
    "CapsChanged",
    "Quit",
    "Registered",
    "Registration",
    "RegistrationItem",
    "Reply",
    "SaslPlain",
]

#: The most caps one ``CAP REQ`` may name.
MAX_CAP_REQ: Final = 32
#: The longest SASL response, in base64 bytes.
MAX_SASL_BYTES: Final = 8192
#: The length of a full SASL chunk: one this long means more follow.
_SASL_CHUNK = 400
_MECHANISMS = "PLAIN"
_CAP_VERSION_302 = 302
# No CAP LS version above this is stored: a number is a number, but a bounded one.
_MAX_CAP_VERSION = 999_999
# The longest nick quoted back in 432/433 (what was sent may be any length).
_QUOTED_NICK = 64

# SASL states: none under way; a mechanism chosen, response chunks coming; a complete
# response given to the caller, its verdict awaited.
_SASL_IDLE, _SASL_DATA, _SASL_WAITING = range(3)


@dataclass(frozen=True, slots=True)
class Reply:
    """A rendered line to send to the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Registered:
    """The client has registered: NICK and USER came, and CAP END if it negotiated.

    Attributes:
      nick: the nick as the client sent it (an IRC nick, not yet a chat nick).
      user: the username of USER, as sent (not checked: build masks with your own).
      realname: the real name of USER.
      caps: the caps enabled.
      account: the account SASL logged in, or None.
    """

    nick: str
    user: str
    realname: str
    caps: frozenset[str]
    account: str | None = None


@dataclass(frozen=True, slots=True)
class SaslPlain:
    """A SASL PLAIN response to check; answer with :meth:`Registration.sasl_result`.

    Attributes:
      authzid: the identity to act as (``""``: the same as ``authcid``).
      authcid: the account to log in.
      password: the password (not in ``repr``).
    """

    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Quit:
    """The client sent QUIT; ``reason`` is its message (``""`` if none)."""

    reason: str


@dataclass(frozen=True, slots=True)
class CapsChanged:
    """A CAP REQ after registration changed the caps enabled; ``caps`` are the new ones."""

    caps: frozenset[str]


#: What :meth:`Registration.receive` gives.
RegistrationItem: TypeAlias = Reply | Registered | SaslPlain | Quit | CapsChanged

_Handler: TypeAlias = Callable[["Registration", IrcMessage], list[RegistrationItem]]


def _quotable(text: str) -> str:
    """``text`` as a middle parameter of a reply, or ``*`` if it cannot be one."""
    if not text or " " in text or text[0] == ":":
        return "*"
    return text[:_QUOTED_NICK]


class Registration:
    """One client's registration (see the module docstring for the rules).

    Args:
      server_name: the server's name, the source of its replies.
      caps: the caps offered, with their values for ``CAP LS 302`` (None for none), e.g.
        ``{"server-time": None, "sasl": "PLAIN"}``. Only PLAIN is done for ``sasl``.

    Raises:
      ValueError: if a cap name is empty or contains a space or ``=``, or a value
        contains a space.
    """

    __slots__ = (
        "_account",
        "_cap_version",
        "_enabled",
        "_lines",
        "_negotiating",
        "_nick",
        "_offered",
        "_realname",
        "_registered",
        "_sasl",
        "_sasl_chunks",
        "_sasl_size",
        "_user",
        "server_name",
    )

    def __init__(self, server_name: str, caps: Mapping[str, str | None]) -> None:
        for name, value in caps.items():
            if not name or " " in name or "=" in name or name[0] == "-":
                raise ValueError(f"bad cap name {name!r}")
            if value is not None and (not value or " " in value):
                raise ValueError(f"bad value {value!r} for cap {name!r}")
        self.server_name = server_name
        self._offered = dict(caps)
        self._enabled: set[str] = set()
        self._cap_version = 0
        self._negotiating = False
        self._nick: str | None = None
        self._user: str | None = None
        self._realname = ""
        self._registered = False
        self._account: str | None = None
        self._sasl = _SASL_IDLE
        self._sasl_chunks: list[str] = []
        self._sasl_size = 0
        self._lines = 0

    @property
    def registered(self) -> bool:
        """True once :class:`Registered` was given (and not re-opened since)."""
        return self._registered

    @property
    def caps(self) -> frozenset[str]:
        """The caps enabled now."""
        return frozenset(self._enabled)

    @property
    def cap_version(self) -> int:
        """The highest ``CAP LS`` version the client sent (0 for none)."""
        return self._cap_version

    @property
    def account(self) -> str | None:
        """The account SASL logged in, or None."""
        return self._account

    @property
    def lines(self) -> int:
        """How many messages :meth:`receive` took: a bound for a client that never
        registers (time is the caller's bound)."""
        return self._lines

    @property
    def _target(self) -> str:
        return self._nick or "*"

    def _numeric(self, code: str, *params: str, target: str | None = None) -> Reply:
        return Reply(numeric(code, target or self._target, *params, server=self.server_name))

    def receive(self, msg: IrcMessage) -> list[RegistrationItem]:
        """Take one message from the client.

        Args:
          msg: the message, as parsed.

        Returns:
          What to send (:class:`Reply`) and what to act on (:class:`Registered`,
          :class:`SaslPlain`, :class:`Quit`, :class:`CapsChanged`), in order.

        Raises:
          RuntimeError: if a :class:`SaslPlain` has not been answered yet, or, after
            registration, the command is not one of ``CAP``, ``USER``, ``PASS`` and
            ``AUTHENTICATE`` (the rest is the caller's).
        """
        if self._sasl == _SASL_WAITING:
            raise RuntimeError("answer the SaslPlain with sasl_result() first")
        self._lines += 1
        if self._registered:
            handler = _AFTER.get(msg.command)
            if handler is None:
                raise RuntimeError(f"{msg.command} after registration is the caller's")
            return handler(self, msg)
        handler = _BEFORE.get(msg.command)
        if handler is None:
            return [self._numeric("451", "You have not registered", target="*")]
        return handler(self, msg)

    def sasl_result(
        self, ok: bool, account: str | None, nick: str, *, mask: str | None = None
    ) -> list[Reply]:
        """The verdict on the :class:`SaslPlain` given last.

        Args:
          ok: True if the credentials are good.
          account: the account logged in (needed when ``ok``).
          nick: the client's nick for the replies (``*`` if it has none yet).
          mask: the client's ``nick!user@host`` for 900; ``nick!user@server`` if None.

        Returns:
          900 RPL_LOGGEDIN and 903 RPL_SASLSUCCESS, or 904 ERR_SASLFAIL.

        Raises:
          RuntimeError: if no :class:`SaslPlain` awaits a verdict.
          ValueError: if ``ok`` and ``account`` is None.
        """
        if self._sasl != _SASL_WAITING:
            raise RuntimeError("no SaslPlain awaits a verdict")
        if ok and account is None:
            raise ValueError("a successful login needs the account")
        self._sasl = _SASL_IDLE
        if not ok or account is None:
            return [self._numeric("904", "SASL authentication failed", target=nick)]
        self._account = account
        mask = mask or f"{nick}!{self._user or nick}@{self.server_name}"
        return [
            self._numeric("900", mask, account, f"You are now logged in as {account}", target=nick),
            self._numeric("903", "SASL authentication successful", target=nick),
        ]

    def nick_taken(self, nick: str, why: str = "Nickname is already in use") -> list[Reply]:
        """The caller cannot give ``nick`` (the directory has it, or an account): 433
        with ``why``, and registration waits for another NICK."""
        self._reopen()
        return [self._numeric("433", _quotable(nick), why, target="*")]

    def nick_erroneous(self, nick: str, why: str = "Erroneous nickname") -> list[Reply]:
        """The caller refuses ``nick`` (an IRC nick, but no valid chat nick): 432 with
        ``why``, and registration waits for another NICK."""
        self._reopen()
        return [self._numeric("432", _quotable(nick), why, target="*")]

    def _reopen(self) -> None:
        self._nick = None
        self._registered = False

    def _maybe_register(self) -> list[RegistrationItem]:
        if self._registered or self._negotiating or self._nick is None or self._user is None:
            return []
        out: list[RegistrationItem] = []
        if self._sasl == _SASL_DATA:  # sasl-3.1: registering aborts an exchange under way
            self._sasl_reset()
            out.append(self._numeric("906", "SASL authentication aborted"))
        self._registered = True
        out.append(Registered(self._nick, self._user, self._realname, self.caps, self._account))
        return out

    # -- CAP ------------------------------------------------------------------------

    def _cap(self, msg: IrcMessage) -> list[RegistrationItem]:
        if not msg.params:
            return [self._numeric("461", "CAP", "Not enough parameters")]
        sub = msg.params[0].upper()
        arg = msg.params[1] if len(msg.params) > 1 else ""
        if sub == "LS":
            version = min(int(arg), _MAX_CAP_VERSION) if arg.isascii() and arg.isdigit() else 0
            self._cap_version = max(self._cap_version, version)
            self._negotiating = not self._registered
            offered = [
                name if value is None or version < _CAP_VERSION_302 else f"{name}={value}"
                for name, value in self._offered.items()
            ]
            return self._cap_lines("LS", offered, multiline=version >= _CAP_VERSION_302)
        if sub == "LIST":
            enabled = sorted(self._enabled)
            return self._cap_lines("LIST", enabled, multiline=self._cap_version >= _CAP_VERSION_302)
        if sub == "REQ":
            self._negotiating = not self._registered
            return self._cap_req(arg)
        if sub == "END":
            if self._registered:
                return []  # the spec: ignored after registration
            self._negotiating = False
            return self._maybe_register()
        return [self._numeric("410", _quotable(sub), "Invalid CAP command")]

    def _cap_line(self, sub: str, *params: str) -> Reply:
        return Reply(render("CAP", self._target, sub, *params, source=self.server_name))

    def _cap_lines(self, sub: str, caps: list[str], *, multiline: bool) -> list[RegistrationItem]:
        """``CAP * LS :caps``, cut into lines within 512 bytes; every line but the last
        has a ``*`` before its list when the client speaks 302."""
        if not multiline:
            return [self._cap_line(sub, " ".join(caps))]
        # The longest list a line holds: what a continuation line leaves (the last line,
        # without its "*", leaves two bytes more, unused).
        room = MAX_LINE - len(self._cap_line(sub, "*", "").data)
        out: list[RegistrationItem] = []
        line: list[str] = []
        size = -1  # the bytes of " ".join(line): no space before the first cap
        for cap in caps:
            cost = len(cap.encode()) + 1
            if line and size + cost > room:
                out.append(self._cap_line(sub, "*", " ".join(line)))
                line, size = [], -1
            line.append(cap)
            size += cost
        out.append(self._cap_line(sub, " ".join(line)))
        return out

    def _cap_req(self, text: str) -> list[RegistrationItem]:
        wanted = text.split(" ")
        wanted = [cap for cap in wanted if cap]
        enabled = set(self._enabled)
        refused = not wanted or len(wanted) > MAX_CAP_REQ
        for cap in [] if refused else wanted:
            name = cap[1:] if cap[0] == "-" else cap
            if name not in self._offered:
                refused = True
                break
            if cap[0] == "-":
                enabled.discard(name)
            else:
                enabled.add(name)
        if refused:  # all or nothing: not one cap changes
            return [self._cap_line("NAK", text if len(text) <= 400 else text[:400])]
        out: list[RegistrationItem] = [self._cap_line("ACK", " ".join(wanted))]
        if self._registered and enabled != self._enabled:
            out.append(CapsChanged(frozenset(enabled)))
        self._enabled = enabled
        return out

    # -- NICK, USER and the rest ----------------------------------------------------

    def _nick_command(self, msg: IrcMessage) -> list[RegistrationItem]:
        nick = msg.params[0] if msg.params else ""
        if not nick:
            return [self._numeric("431", "No nickname given", target="*")]
        if not is_irc_nick(nick):
            return [self._numeric("432", _quotable(nick), "Erroneous nickname", target="*")]
        self._nick = nick
        return self._maybe_register()

    def _user_command(self, msg: IrcMessage) -> list[RegistrationItem]:
        if len(msg.params) < 4 or not msg.params[0]:
            return [self._numeric("461", "USER", "Not enough parameters")]
        self._user, self._realname = msg.params[0], msg.params[3]
        return self._maybe_register()

    def _ping(self, msg: IrcMessage) -> list[RegistrationItem]:
        if not msg.params:
            return [self._numeric("461", "PING", "Not enough parameters")]
        server = self.server_name
        return [Reply(render("PONG", server, msg.params[0], source=server))]

    def _ignore(self, msg: IrcMessage) -> list[RegistrationItem]:
        return []

    def _quit(self, msg: IrcMessage) -> list[RegistrationItem]:
        return [Quit(msg.params[0] if msg.params else "")]

    def _already(self, msg: IrcMessage) -> list[RegistrationItem]:
        return [self._numeric("462", "You may not reregister")]

    # -- SASL -----------------------------------------------------------------------

    def _sasl_reset(self) -> None:
        self._sasl = _SASL_IDLE
        self._sasl_chunks = []
        self._sasl_size = 0

    def _sasl_fail(self, code: str, text: str) -> list[RegistrationItem]:
        self._sasl_reset()
        return [self._numeric(code, text)]

    def _authenticate(self, msg: IrcMessage) -> list[RegistrationItem]:
        if self._account is not None:
            return [self._numeric("907", "You have already authenticated using SASL")]
        if self._registered:
            return self._already(msg)
        if "sasl" not in self._enabled:
            return [self._numeric("904", "SASL authentication failed")]
        arg = msg.params[0] if msg.params else ""
        if not arg:
            return [self._numeric("461", "AUTHENTICATE", "Not enough parameters")]
        if arg == "*":
            return self._sasl_fail("906", "SASL authentication aborted")
        if self._sasl == _SASL_IDLE:
            if arg.upper() != _MECHANISMS:
                mechanisms = self._numeric("908", _MECHANISMS, "are available SASL mechanisms")
                return [mechanisms, *self._sasl_fail("904", "SASL authentication failed")]
            self._sasl = _SASL_DATA
            return [Reply(render("AUTHENTICATE", "+"))]
        if len(arg) > _SASL_CHUNK:
            return self._sasl_fail("905", "SASL message too long")
        if arg != "+":
            self._sasl_size += len(arg)
            if self._sasl_size > MAX_SASL_BYTES:
                return self._sasl_fail("904", "SASL authentication failed")
            self._sasl_chunks.append(arg)
            if len(arg) == _SASL_CHUNK:
                return []  # more follows (a last chunk of 400 is followed by "+")
        response = "".join(self._sasl_chunks)
        self._sasl_reset()
        try:
            plain = base64.b64decode(response, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):  # bad base64 or not UTF-8
            return self._sasl_fail("904", "SASL authentication failed")
        parts = plain.split("\x00")
        if len(parts) != 3 or not parts[1]:
            return self._sasl_fail("904", "SASL authentication failed")
        self._sasl = _SASL_WAITING
        return [SaslPlain(parts[0], parts[1], parts[2])]


_B = Registration
#: The rules before registration: command -> handler (see the module docstring).
_BEFORE: Final[Mapping[str, _Handler]] = {
    "CAP": _B._cap,
    "NICK": _B._nick_command,
    "USER": _B._user_command,
    "PASS": _B._ignore,
    "PING": _B._ping,
    "PONG": _B._ignore,
    "AUTHENTICATE": _B._authenticate,
    "QUIT": _B._quit,
}
#: The rules after registration; every other command is the caller's.
_AFTER: Final[Mapping[str, _Handler]] = {
    "CAP": _B._cap,
    "USER": _B._already,
    "PASS": _B._already,
    "AUTHENTICATE": _B._authenticate,
}
