"""An IRC client's session in the chat: IRC commands in, the chat's effects out.

:class:`IrcChatSession` is a :class:`~triosock._sansio.chat.ChatSession` whose input is
IRC messages (:meth:`IrcChatSession.receive_message`) and whose answers are IRC's
numerics where IRC has them. Most commands become the chat's own lines, so that every
rule (the rate limit, the line limit, what text may hold, nicks, operators) is the one
every transport has; what IRC asks of the directory comes back as numerics:

==============================  ======================================================
``PRIVMSG #room :text``         the line said in the room (``/me`` for CTCP ``ACTION``);
                                to a room the session is not in: ``404``
``PRIVMSG nick :text``          ``/msg nick text`` (``401`` when nobody has the nick)
``NOTICE``                      as ``PRIVMSG``, never answered with an error
``JOIN #a[,#b]``                ``/join #a`` (one room at a time: ``405`` for ``#b``;
                                a key: ``475``); ``JOIN 0``: back to ``#lobby``
``PART #room``                  back to ``#lobby`` (``442`` when not in it)
``NICK n``                      ``/nick`` (``432`` a nick IRC cannot carry; ``433`` taken)
``QUIT``                        ``/quit``
``NAMES``, ``WHO``, ``WHOIS``,  the directory's answer as ``353``/``366``, ``352``/
``ISON``, ``USERHOST``,         ``315``, ``311``/``318`` (``401``), ``303``, ``302``,
``LIST``                        ``322``/``323``
``TOPIC``, ``KICK``, ``MODE``   the operators' commands (``/topic``, ``/kick``, ``+b``
                                ``/ban``, ``-b`` ``/unban``, ``+o``/``-o``, ``+m``/``-m``)
``AWAY``                        ``306``/``305``
``MOTD``                        ``422``
``CLAIM``, ``REGISTER``, ...    the chat's own commands (:data:`CHAT_COMMANDS`), as
                                irssi's ``/quote CLAIM #room``: ``/claim #room``
anything else                   ``421``
==============================  ======================================================

One room at a time: the chat's session is in one room, so an IRC client's ``JOIN`` of
another channel parts the one it was in (the client is sent the ``PART``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from typing import Final

from ..chat import (
    DEFAULT_ROOM,
    ChatError,
    ChatSession,
    Effect,
    ListRooms,
    ListUsers,
    Lookup,
    Presence,
    Reply,
    Tell,
    apply_erasures,
    neutralise,
    nick_key,
    validate_room,
)
from ._message import IrcMessage, numeric, render
from ._names import from_irc_nick, is_irc_nick, to_irc_nick
from ._text import ctcp, parse_ctcp, split_text, strip_formatting, to_marks

__all__ = ["CHAT_COMMANDS", "VERSION_REPLY", "IrcChatSession", "user_source"]

#: What CTCP ``VERSION`` is answered with.
VERSION_REPLY: Final = "triosock chat"
#: The user and host parts of every chat member's IRC source (``nick!chat@triosock``).
USER_HOST: Final = "!chat@triosock"
#: The chat's own commands an IRC client may send as they are (irssi's ``/quote CLAIM``
#: as ``CLAIM``): each is the chat's ``/claim``, and so on.
CHAT_COMMANDS: Final = frozenset(
    {
        "REGISTER",
        "LOGIN",
        "IDENTIFY",
        "LOGOUT",
        "PASSWORD",
        "CLAIM",
        "OP",
        "DEOP",
        "BAN",
        "UNBAN",
        "BANS",
        "MUTE",
        "UNMUTE",
        "KILL",
        "HISTORY",
        "ROOMS",
        "HELP",
    }
)
#: The most bytes of a topic in a ``LIST`` line (322): with the server's name, the
#: client's nick and the room, the line stays within IRC's 512 bytes.
_LIST_TOPIC: Final = 300
#: What an IRC message means: a chat line, effects, or a line and effects after it.
_Translated = bytes | list[Effect] | tuple[bytes, list[Effect]]
#: Nicks a ``WHOIS``, ``ISON`` or ``USERHOST`` may ask about at once.
MAX_TARGETS: Final = 8


def user_source(nick: str) -> str:
    """The IRC source (``nick!user@host``) of the chat member ``nick``."""
    return to_irc_nick(nick) + USER_HOST


def _key(room: str) -> str:
    return room.lower()


class IrcChatSession(ChatSession):
    """A chat session whose client speaks IRC.

    Args:
      presence: what the directory gave the session on arrival.
      server: the server's name, the source of its numerics.
      **limits: as :class:`~triosock._sansio.chat.ChatSession`'s.
    """

    def __init__(
        self,
        presence: Presence,
        *,
        server: str,
        max_line_length: int = 4096,
        rate: float | None = None,
        burst: int = 100,
        now: float = 0.0,
    ) -> None:
        super().__init__(presence, max_line_length=max_line_length, rate=rate, burst=burst, now=now)
        self.server = server
        #: The away message set with ``AWAY``, or None.
        self.away: str | None = None
        # What each ListUsers / ListRooms asked for, in order: (verb, arguments).
        self._asking: deque[tuple[str, tuple[str, ...]]] = deque()

    @property
    def irc_nick(self) -> str:
        """The session's nick as IRC clients see it."""
        return to_irc_nick(self.nick)

    def _num(self, code: str, *params: str) -> Reply:
        """A numeric for this client; parameters echoed from its input (a channel, a
        nick it named) become ``*`` where they could not be a middle parameter."""
        middle = [p[:64] if p and " " not in p and p[0] != ":" else "*" for p in params[:-1]]
        return Reply(numeric(code, self.irc_nick, *middle, *params[-1:], server=self.server))

    def _self_line(self, command: str, *params: str) -> Reply:
        return Reply(render(command, *params, source=user_source(self.nick)))

    # -- arriving and moving: the client is told of its own joins and parts ------------

    def start(self, *, welcome: bool = True) -> list[Effect]:
        """The client's ``JOIN`` of its first room, then the chat's arrival (its names
        follow its topic: :meth:`ask_names`, asked for by the member)."""
        return [self._self_line("JOIN", self.room), *super().start(welcome=welcome)]

    def moved(self, room: str) -> list[Effect]:
        """The client's ``PART`` of the old room and ``JOIN`` of the new one, before
        the new room's earlier lines (which an IRC client shows only in a channel it
        joined)."""
        old = self.room
        effects: list[Effect] = [self._self_line("PART", old), self._self_line("JOIN", room)]
        return effects + super().moved(room)

    def ask_names(self, room: str) -> list[Effect]:
        """Ask for ``room``'s names, answered with ``353`` and ``366``."""
        self._asking.append(("NAMES", (room,)))
        return [ListUsers(room)]

    # -- input -------------------------------------------------------------------------

    def receive_message(self, message: IrcMessage, now: float) -> list[Effect]:
        """One IRC message of a registered client; it costs a token, as a line does
        (``PING`` and ``PONG`` are the member's and cost nothing)."""
        translated = self._translate(message)
        if isinstance(translated, bytes):
            return self.receive_line(translated, now)
        if isinstance(translated, tuple):  # a line, and answers after it
            line, answers = translated
            return self.receive_line(line, now) + answers
        return self._pace(now, translated)

    def _translate(self, message: IrcMessage) -> _Translated:
        """The chat line ``message`` means, or the effects that answer it."""
        command, params = message.command, message.params
        handler = _HANDLERS.get(command)
        if handler is None:
            if command in CHAT_COMMANDS:  # the chat's own, as an IRC client sends them
                return f"/{command.lower()} {' '.join(params)}".rstrip().encode()
            return [self._num("421", command, "Unknown command")]
        needed = _NEEDED.get(command, 0)
        if len(params) < needed:
            if command == "NICK":
                return [self._num("431", "No nickname given")]
            if command in ("PRIVMSG", "NOTICE"):
                if command == "NOTICE":
                    return []
                if not params:
                    return [self._num("411", f"No recipient given ({command})")]
                return [self._num("412", "No text to send")]
            return [self._num("461", command, "Not enough parameters")]
        return handler(self, params)

    # PRIVMSG and NOTICE

    def _privmsg(self, params: tuple[str, ...], *, notice: bool = False) -> bytes | list[Effect]:
        # formatting (bold, colour) reaches IRC clients; the others see the text without
        targets, text = params[0].split(","), to_marks(params[1])
        if len(targets) > 1:  # one target at a time: the chat has no multi-target line
            return [] if notice else [self._num("407", params[0], "Too many targets")]
        target = targets[0]
        query = parse_ctcp(text)
        if target[:1] == "#":
            if _key(target) != _key(self.room):
                if notice:
                    return []
                why = f"Cannot send to channel: you are in {self.room} (one room at a time)"
                return [self._num("404", target, why)]
            if query is not None:
                name, arg = query
                if name == "ACTION":
                    return b"/me " + arg.encode() if arg.strip() else []
                return []  # a CTCP query to a channel is for clients; the chat has none
            # as the chat will read it (erasures applied, neutralised): a line that would
            # then begin with "/" is said, not run
            shown = neutralise(apply_erasures(text))
            if not shown.strip():
                return [] if notice else [self._num("412", "No text to send")]
            line = shown.encode()
            return b"/" + line if line[:1] == b"/" else line
        nick = from_irc_nick(target)
        if query is not None:
            name, arg = query
            if name == "ACTION":
                text = f"* {self.nick} {arg}"
            elif notice:
                return []  # a CTCP reply: nobody here asked
            else:
                return self._ctcp_answer(target, name, arg)
        if not text.strip():
            return [] if notice else [self._num("412", "No text to send")]
        return f"/msg {nick} {text}".encode()

    def _ctcp_answer(self, target: str, name: str, arg: str) -> list[Effect]:
        """CTCP queries are answered by the server for whoever was asked (only IRC
        clients know CTCP; the chat's other users could not answer)."""
        if name == "VERSION":
            answer = ctcp("VERSION", VERSION_REPLY)
        elif name == "PING":
            answer = ctcp("PING", arg)
        elif name == "CLIENTINFO":
            answer = ctcp("CLIENTINFO", "ACTION CLIENTINFO PING VERSION")
        else:
            answer = ctcp("ERRMSG", f"{name} :unknown query")
        source = target + USER_HOST
        return [Reply(render("NOTICE", self.irc_nick, answer, source=source))]

    def _notice(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        return self._privmsg(params, notice=True)

    # rooms

    def _join(self, params: tuple[str, ...]) -> _Translated:
        if params[0] == "0":
            return [] if self.room == DEFAULT_ROOM else f"/join {DEFAULT_ROOM}".encode()
        if len(params) > 1 and params[1]:
            names = params[0].split(",")
            return [self._num("475", names[0], "Cannot join channel (rooms here have no keys)")]
        effects: list[Effect] = []
        chosen: str | None = None
        for name in params[0].split(",")[:MAX_TARGETS]:
            try:
                room = validate_room(name)
            except ChatError as exc:
                effects.append(self._num("403", name[:64], str(exc)))
                continue
            if _key(room) == _key(self.room):
                continue
            if chosen is None:
                chosen = room
            else:  # one room at a time (CHANLIMIT=#:1): the first named is the one joined
                why = f"You have joined too many channels (one at a time: {chosen})"
                effects.append(self._num("405", room, why))
        if chosen is None:
            return effects
        return f"/join {chosen}".encode(), effects

    def _part(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        effects: list[Effect] = []
        for name in params[0].split(",")[:MAX_TARGETS]:
            if _key(name) != _key(self.room):
                effects.append(self._num("442", name[:64], "You're not on that channel"))
            elif self.room == DEFAULT_ROOM:
                effects.append(
                    Tell(
                        f"everyone in no other room is in {DEFAULT_ROOM}: join another to leave it"
                    )
                )
            else:
                return f"/join {DEFAULT_ROOM}".encode()
        return effects

    def _topic(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        if _key(params[0]) != _key(self.room):
            return [self._num("442", params[0][:64], "You're not on that channel")]
        if len(params) == 1:
            return b"/topic"
        return f"/topic {strip_formatting(params[1]) or '-'}".encode()

    def _kick(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        if _key(params[0]) != _key(self.room):
            return [self._num("442", params[0][:64], "You're not on that channel")]
        reason = strip_formatting(params[2]) if len(params) > 2 else ""
        return f"/kick {from_irc_nick(params[1].split(',')[0])} {reason}".rstrip().encode()

    def _mode(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        target = params[0]
        if target[:1] != "#":
            if nick_key(from_irc_nick(target)) != nick_key(self.nick):
                return [self._num("502", "Can't change mode for other users")]
            return [self._num("221", "+")]
        if _key(target) != _key(self.room):
            return [self._num("442", target[:64], "You're not on that channel")]
        if len(params) == 1:
            return b"/mode"  # answered with 324 by the member, from the room's record
        return self._mode_change(params[1], list(params[2:]))

    def _mode_change(self, modes: str, args: list[str]) -> bytes | list[Effect]:
        sign = "+"
        lines: list[bytes] = []
        effects: list[Effect] = []
        for char in modes:
            if char in "+-":
                sign = char
            elif char == "b":
                if not args:  # the list: clients ask on every join; /quote BANS shows it
                    effects.append(self._num("368", self.room, "End of channel ban list"))
                    continue
                mask = args.pop(0).split("!")[0]
                verb = "ban" if sign == "+" else "unban"
                lines.append(f"/{verb} {from_irc_nick(mask)}".encode())
            elif char == "o":
                if not args:
                    effects.append(self._num("461", "MODE", "Not enough parameters"))
                    continue
                verb = "op" if sign == "+" else "deop"
                lines.append(f"/{verb} {from_irc_nick(args.pop(0))}".encode())
            elif char == "m":
                lines.append(f"/mode {sign}m".encode())
            else:
                effects.append(self._num("472", char, "is not a mode here (b, m, o are)"))
        if len(lines) > 1:
            return [Tell("one mode change at a time, please")]
        if effects or not lines:
            return effects
        return lines[0]

    # questions for the directory

    def _names(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        room = params[0].split(",")[0] if params else self.room
        if _key(room) != _key(self.room):
            return [self._num("366", room[:64], "End of /NAMES list")]
        return self.ask_names(self.room)

    def _who(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        mask = params[0] if params else "*"
        if mask[:1] == "#":
            if _key(mask) != _key(self.room):
                return [self._num("315", mask[:64], "End of /WHO list")]
            self._asking.append(("WHO", (self.room,)))
            return [ListUsers(self.room)]
        self._asking.append(("WHO", (mask,)))
        return [ListUsers("")]

    def _whois(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        nicks = params[-1].split(",")[:MAX_TARGETS]
        self._asking.append(("WHOIS", tuple(nicks)))
        return [ListUsers("")]

    def _ison(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        nicks = " ".join(params).split()[: MAX_TARGETS * 4]
        self._asking.append(("ISON", tuple(nicks)))
        return [ListUsers("")]

    def _userhost(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        self._asking.append(("USERHOST", params[:5]))
        return [ListUsers("")]

    def _list(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        self._asking.append(("LIST", ()))
        return [ListRooms()]

    # the rest

    def _away(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        if params and params[0]:
            self.away = params[0]
            return [self._num("306", "You have been marked as being away")]
        self.away = None
        return [self._num("305", "You are no longer marked as being away")]

    def _quit(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        return b"/quit"

    def _nick(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        name = params[0]
        if not is_irc_nick(name):
            return [self._num("432", name[:64], "Erroneous nickname")]
        return f"/nick {from_irc_nick(name)}".encode()

    def _tagmsg(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        return []  # client tags (typing, reactions) are not relayed: nobody else has them

    def _motd(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        return [self._num("422", "MOTD File is missing")]

    def _registered_already(self, params: tuple[str, ...]) -> bytes | list[Effect]:
        return [self._num("462", "You may not reregister")]

    # -- the directory's answers, as numerics --------------------------------------------

    def renamed(self, nick: str, ok: bool) -> list[Effect]:
        """``433`` when the nick is taken; else the chat's answer (a ``NICK`` line)."""
        if not ok:
            return [self._num("433", to_irc_nick(nick), "Nickname is already in use")]
        return super().renamed(nick, ok)

    def found(self, lookup: Lookup, target: Presence | None) -> list[Effect]:
        """``401`` when nobody has the nick."""
        if target is None:
            return [self._num("401", to_irc_nick(lookup.nick), "No such nick/channel")]
        return super().found(lookup, target)

    def listed_users(
        self,
        room: str,
        nicks: list[str],
        away: Collection[str] = (),
        *,
        operators: Collection[str] = (),
    ) -> list[Effect]:
        """The answer to what the ``ListUsers`` asked for, as numerics; ``operators``
        (nick keys) are marked ``@``."""
        verb, args = self._asking.popleft() if self._asking else ("NAMES", (room,))
        if verb == "NAMES":
            irc = [
                ("@" if nick_key(nick) in operators else "") + to_irc_nick(nick) for nick in nicks
            ]
            return [*self._names_lines(room, irc), self._num("366", room, "End of /NAMES list")]
        if verb == "WHO":
            return self._who_lines(room, args[0], nicks, away, operators)
        keys = {nick_key(nick): nick for nick in nicks}
        asked = [(name, keys.get(nick_key(from_irc_nick(name)))) for name in args]
        if verb == "ISON":
            return [self._num("303", " ".join(to_irc_nick(n) for _, n in asked if n))]
        if verb == "USERHOST":
            found = [f"{to_irc_nick(n)}=+{USER_HOST[1:]}" for _, n in asked if n]
            return [self._num("302", " ".join(found))]
        effects: list[Effect] = []  # WHOIS
        for name, nick in asked:
            if nick is None:
                effects.append(self._num("401", name[:64], "No such nick/channel"))
                continue
            shown = to_irc_nick(nick)
            effects.append(self._num("311", shown, "chat", "triosock", "*", nick))
            if nick_key(nick) in away:
                effects.append(self._num("301", shown, "detached: resuming soon, maybe"))
        effects.append(self._num("318", ",".join(a[:64] for a in args), "End of /WHOIS list"))
        return effects

    def _names_lines(self, room: str, irc: list[str]) -> list[Effect]:
        lines: list[Effect] = []
        room_for = 512 - len(f":{self.server} 353 {self.irc_nick} = {room} :\r\n") - 1
        chunk: list[str] = []
        size = 0
        for nick in irc:
            if chunk and size + len(nick) + 1 > room_for:
                lines.append(self._num("353", "=", room, " ".join(chunk)))
                chunk, size = [], 0
            chunk.append(nick)
            size += len(nick) + 1
        if chunk:
            lines.append(self._num("353", "=", room, " ".join(chunk)))
        return lines

    def _who_lines(
        self,
        room: str,
        mask: str,
        nicks: list[str],
        away: Collection[str],
        operators: Collection[str] = (),
    ) -> list[Effect]:
        effects: list[Effect] = []
        wanted = None if mask in ("*", "0") or mask[:1] == "#" else nick_key(from_irc_nick(mask))
        channel = room or "*"
        for nick in nicks:
            if wanted is not None and nick_key(nick) != wanted:
                continue
            flag = "G" if nick_key(nick) in away else "H"
            if nick_key(nick) in operators:
                flag += "@"
            shown = to_irc_nick(nick)
            effects.append(
                self._num("352", channel, "chat", "triosock", self.server, shown, flag, f"0 {nick}")
            )
        effects.append(self._num("315", mask[:64], "End of /WHO list"))
        return effects

    def listed_rooms(
        self, rooms: dict[str, int], topics: dict[str, str] | None = None
    ) -> list[Effect]:
        """``LIST``'s answer: ``321``, a ``322`` a room, ``323``."""
        if self._asking and self._asking[0][0] == "LIST":
            self._asking.popleft()
        topics = topics or {}
        effects: list[Effect] = [self._num("321", "Channel", "Users  Name")]
        for room, count in rooms.items():
            topic = topics.get(room, "")
            if len(topic.encode()) > _LIST_TOPIC:  # the line within IRC's 512 bytes
                topic = split_text(topic, _LIST_TOPIC - 3)[0].rstrip() + "…"
            effects.append(self._num("322", room, str(count), topic))
        effects.append(self._num("323", "End of /LIST"))
        return effects


_HANDLERS: Final = {
    "PRIVMSG": IrcChatSession._privmsg,
    "NOTICE": IrcChatSession._notice,
    "JOIN": IrcChatSession._join,
    "PART": IrcChatSession._part,
    "TOPIC": IrcChatSession._topic,
    "KICK": IrcChatSession._kick,
    "MODE": IrcChatSession._mode,
    "NAMES": IrcChatSession._names,
    "WHO": IrcChatSession._who,
    "WHOIS": IrcChatSession._whois,
    "ISON": IrcChatSession._ison,
    "USERHOST": IrcChatSession._userhost,
    "LIST": IrcChatSession._list,
    "AWAY": IrcChatSession._away,
    "QUIT": IrcChatSession._quit,
    "NICK": IrcChatSession._nick,
    "MOTD": IrcChatSession._motd,
    "TAGMSG": IrcChatSession._tagmsg,
    "USER": IrcChatSession._registered_already,
    "PASS": IrcChatSession._registered_already,
}
#: Parameters each command needs at least.
_NEEDED: Final = {
    "PRIVMSG": 2,
    "NOTICE": 2,
    "JOIN": 1,
    "PART": 1,
    "TOPIC": 1,
    "KICK": 2,
    "MODE": 1,
    "WHOIS": 1,
    "ISON": 1,
    "USERHOST": 1,
    "NICK": 1,
}
