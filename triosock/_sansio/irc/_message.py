"""One IRC message: :func:`parse_message_untrusted` reads it, :func:`render` writes it.

The grammar is the Modern IRC client protocol's (modern.ircdocs.horse, "Message Format")
with IRCv3 message tags::

    message  = ["@" tags SPACE] [":" source SPACE] command *(SPACE middle) [SPACE ":" trailing]
    tags     = tag *(";" tag)        tag = key ["=" escaped-value]
    key      = ["+"] [vendor "/"] 1*(letter / digit / "-")
    command  = 1*letter / 3digit

**Reading.** IRC has no encoding: the bytes are decoded as UTF-8 with invalid bytes
replaced by U+FFFD, so decoding never fails (a Latin-1 client's accents become U+FFFD;
nothing else is lost, since every IRC delimiter is ASCII). One or more spaces separate
the parts (RFC 1459's leniency, which the modern document keeps); a tab is no space.
The command is upper-cased (``privmsg`` is ``PRIVMSG``); a numeric stays three digits.
Tag values are unescaped (``\\:`` ``;``, ``\\s`` space, ``\\\\`` backslash, ``\\r``,
``\\n``; a backslash before any other character is dropped, and so is a lone one at the
end); a key given twice keeps its last value, as message-tags asks; client-only tags
(``+key``) are kept like any other. A message is refused (:class:`IrcError`) when it
contains NUL, CR or LF, has an empty or malformed tag section or key, a source without a
command, no command, a command that is neither letters nor three digits, or more than
:data:`MAX_PARAMS` parameters: the modern document lets *clients* accept any number, but
RFC 1459/2812 cap them at 15 and a server that merged the extra ones into the last would
act on a message the client did not mean.

**Writing.** :func:`render` is on the fan-out's hot path: no regular expression, a few
``in`` tests per call. The last parameter gets a ``:`` when the grammar needs one (it is
empty, contains a space or begins with ``:``), and always when it is the command's free
text (:data:`TEXT_COMMANDS`: ``PRIVMSG``'s second, ``KICK``'s third, ...; a numeric's
last, but ``004``'s, ``221``'s and ``324``'s), as
ircds send them, so that clients that cut a line at its first ``" :"`` read one-word
messages right.

**Numeric replies** (:func:`numeric`) are ``:server CODE target params...``
(modern.ircdocs.horse, "Numeric Replies"): the server is always the source and the
client's nick (``*`` before it has one) the first parameter. :data:`NUMERICS` names the
codes this server uses as the modern document and IRCv3 SASL name them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_PARAMS",
    "NUMERICS",
    "TEXT_COMMANDS",
    "IrcError",
    "IrcMessage",
    "escape_tag_value",
    "numeric",
    "parse_message_untrusted",
    "render",
    "unescape_tag_value",
]

#: The most parameters a message may have (RFC 1459/2812).
MAX_PARAMS: Final = 15

#: Commands whose parameter at this position (1-based) is free text: rendered with ``:``
#: even when one word (``PART #room`` has none; ``PART #room :bye`` has).
TEXT_COMMANDS: Final = {
    "AWAY": 1,
    "ERROR": 1,
    "QUIT": 1,
    "PRIVMSG": 2,
    "NOTICE": 2,
    "PART": 2,
    "TOPIC": 2,
    "KILL": 2,
    "PONG": 2,
    "KICK": 3,
    "CAP": 3,
}

#: Numerics whose last parameter is a word of their grammar, not text (server and mode
#: lists): rendered without ``:`` (every other numeric's last parameter is text).
_BARE_NUMERICS: Final = frozenset({"004", "221", "324"})

#: Names (as in modern.ircdocs.horse and IRCv3 SASL) to codes.
NUMERICS: Final[Mapping[str, str]] = {
    "RPL_WELCOME": "001",
    "RPL_YOURHOST": "002",
    "RPL_CREATED": "003",
    "RPL_MYINFO": "004",
    "RPL_ISUPPORT": "005",
    "RPL_UMODEIS": "221",
    "RPL_LUSERCLIENT": "251",
    "RPL_LUSERCHANNELS": "254",
    "RPL_LUSERME": "255",
    "RPL_AWAY": "301",
    "RPL_UNAWAY": "305",
    "RPL_NOWAWAY": "306",
    "RPL_WHOISUSER": "311",
    "RPL_WHOISSERVER": "312",
    "RPL_ENDOFWHO": "315",
    "RPL_WHOISIDLE": "317",
    "RPL_ENDOFWHOIS": "318",
    "RPL_WHOISCHANNELS": "319",
    "RPL_LISTSTART": "321",
    "RPL_LIST": "322",
    "RPL_LISTEND": "323",
    "RPL_CHANNELMODEIS": "324",
    "RPL_CREATIONTIME": "329",
    "RPL_WHOISACCOUNT": "330",
    "RPL_NOTOPIC": "331",
    "RPL_TOPIC": "332",
    "RPL_TOPICWHOTIME": "333",
    "RPL_VERSION": "351",
    "RPL_WHOREPLY": "352",
    "RPL_NAMREPLY": "353",
    "RPL_ENDOFNAMES": "366",
    "RPL_BANLIST": "367",
    "RPL_ENDOFBANLIST": "368",
    "RPL_MOTD": "372",
    "RPL_MOTDSTART": "375",
    "RPL_ENDOFMOTD": "376",
    "RPL_TIME": "391",
    "ERR_NOSUCHNICK": "401",
    "ERR_NOSUCHCHANNEL": "403",
    "ERR_CANNOTSENDTOCHAN": "404",
    "ERR_TOOMANYTARGETS": "407",
    "ERR_NOORIGIN": "409",
    "ERR_INVALIDCAPCMD": "410",
    "ERR_NORECIPIENT": "411",
    "ERR_NOTEXTTOSEND": "412",
    "ERR_INPUTTOOLONG": "417",
    "ERR_UNKNOWNCOMMAND": "421",
    "ERR_NOMOTD": "422",
    "ERR_NONICKNAMEGIVEN": "431",
    "ERR_ERRONEUSNICKNAME": "432",
    "ERR_NICKNAMEINUSE": "433",
    "ERR_USERNOTINCHANNEL": "441",
    "ERR_NOTONCHANNEL": "442",
    "ERR_NOTREGISTERED": "451",
    "ERR_NEEDMOREPARAMS": "461",
    "ERR_ALREADYREGISTERED": "462",
    "ERR_PASSWDMISMATCH": "464",
    "ERR_YOUREBANNEDCREEP": "465",
    "ERR_UNKNOWNMODE": "472",
    "ERR_BANNEDFROMCHAN": "474",
    "ERR_BADCHANMASK": "476",
    "ERR_NOPRIVILEGES": "481",
    "ERR_CHANOPRIVSNEEDED": "482",
    "ERR_UMODEUNKNOWNFLAG": "501",
    "ERR_USERSDONTMATCH": "502",
    "RPL_LOGGEDIN": "900",
    "RPL_LOGGEDOUT": "901",
    "ERR_NICKLOCKED": "902",
    "RPL_SASLSUCCESS": "903",
    "ERR_SASLFAIL": "904",
    "ERR_SASLTOOLONG": "905",
    "ERR_SASLABORTED": "906",
    "ERR_SASLALREADY": "907",
    "RPL_SASLMECHS": "908",
}

# A tag key: optional client prefix, optional vendor (a host name), then the name.
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?/)?[A-Za-z0-9\-]+")
_ESCAPED = re.compile(r"\\(.?)", re.DOTALL)
_UNESCAPES: Final = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPES: Final = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class IrcError(ValueError):
    """A message that is not IRC; ``reason`` says why, in words fit for a log line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message, parsed.

    Attributes:
      command: the command, upper-cased (``PRIVMSG``), or a numeric's three digits.
      params: the parameters, the trailing one without its ``:``.
      tags: the message tags in the order of their last occurrence, values unescaped
        (``""`` for a tag without value).
      source: the source (``nick!user@host`` or a server name) without its ``:``, or None.
    """

    command: str
    params: tuple[str, ...]
    tags: tuple[tuple[str, str], ...] = ()
    source: str | None = None

    def tag(self, key: str) -> str | None:
        """The (unescaped) value of tag ``key``, ``""`` if it has none, or None if absent."""
        for name, value in self.tags:
            if name == key:
                return value
        return None


def _short(text: str) -> str:
    # Error reasons quote what they refuse; repr() escapes controls, so a log line stays
    # one line whatever a client sent.
    return repr(text if len(text) <= 40 else text[:39] + "…")


def unescape_tag_value(value: str) -> str:
    """A tag value as meant: message-tags' escapes undone (see the module docstring)."""
    if "\\" not in value:
        return value
    return _ESCAPED.sub(lambda match: _UNESCAPES.get(match[1], match[1]), value)


def escape_tag_value(value: str) -> str:
    """A tag value as sent: ``;``, space, backslash, CR and LF escaped."""
    return value.translate(_ESCAPES)


def _parse_tags(raw: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for tag in raw.split(";"):
        if not tag:  # "a;;b" or a trailing ";": sloppy, not ambiguous
            continue
        key, _, value = tag.partition("=")
        if _TAG_KEY.fullmatch(key) is None:
            raise IrcError(f"bad tag key {_short(key)}")
        found.pop(key, None)  # the last occurrence wins, in its own place
        found[key] = unescape_tag_value(value)
    if not found:
        raise IrcError("an empty tag section")
    return tuple(found.items())


def parse_message_untrusted(line: bytes) -> IrcMessage:
    """Parse one message, as received.

    Args:
      line: the message without its CR LF (or LF).

    Returns:
      The message; see the module docstring for how each part is read.

    Raises:
      IrcError: if the line is no IRC message (see the module docstring).
    """
    if b"\x00" in line:
        raise IrcError("a NUL byte inside the message")
    if b"\r" in line or b"\n" in line:
        raise IrcError("a CR or LF inside the message")
    rest = line.decode("utf-8", "replace")
    tags: tuple[tuple[str, str], ...] = ()
    if rest[:1] == "@":
        raw, space, rest = rest[1:].partition(" ")
        if not space:
            raise IrcError("tags without a command")
        tags = _parse_tags(raw)
    rest = rest.lstrip(" ")
    source = None
    if rest[:1] == ":":
        source, space, rest = rest[1:].partition(" ")
        if not source:
            raise IrcError("an empty source")
        rest = rest.lstrip(" ")
        if not rest:
            raise IrcError("a source without a command")
    command, _, rest = rest.partition(" ")
    if not command:
        raise IrcError("no command")
    if not (command.isascii() and (command.isalpha() or (command.isdigit() and len(command) == 3))):
        raise IrcError(f"bad command {_short(command)}")
    params: list[str] = []
    while True:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest[0] == ":":
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    if len(params) > MAX_PARAMS:
        raise IrcError(f"{len(params)} parameters: at most {MAX_PARAMS}")
    return IrcMessage(command.upper(), tuple(params), tags, source)


def _tag(key: str, value: str) -> str:
    if not key or "=" in key or ";" in key or " " in key:
        raise ValueError(f"bad tag key {_short(key)}")
    if not value:
        return key
    # Most values (times, ids) need no escape, and five scans for one cost less than
    # translate(), which looks every character up.
    if ";" in value or " " in value or "\\" in value or "\r" in value or "\n" in value:
        value = value.translate(_ESCAPES)
    return f"{key}={value}"


def render(
    command: str,
    *params: str,
    source: str | None = None,
    tags: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One message, ready to send: UTF-8 and CR LF.

    Nothing here enforces the 512-byte limit: the caller sizes text with
    :func:`~._text.split_text`.

    Args:
      command: the command (letters) or a numeric (three digits).
      params: the parameters; only the last may be empty, contain spaces or begin with
        ``:`` (it is then sent with a ``:``, see the module docstring).
      source: the source (``nick!user@host`` or the server name), or None for none.
      tags: ``(key, value)`` pairs, values unescaped (``""`` for none).

    Returns:
      The line, ending with CR LF. A lone surrogate (never in neutralised text) is sent
      as ``?``.

    Raises:
      ValueError: if the command is not ASCII letters and digits, the source is empty or
        contains a space, a tag key is malformed, a parameter other than the last is
        empty, contains a space or begins with ``:``, or anything contains CR, LF or NUL
        (a CR or LF in a tag value is escaped, not refused).
    """
    if not (command.isascii() and command.isalnum()):
        raise ValueError(f"bad command {_short(command)}")
    # f-strings and a tuple slice, no list: this runs once per line the fan-out renders.
    if not params:
        line = command
    else:
        last = params[-1]
        if (
            not last
            or " " in last
            or last[0] == ":"
            or len(params) >= TEXT_COMMANDS.get(command, 99)
            or (command[0].isdigit() and len(params) > 1 and command not in _BARE_NUMERICS)
        ):
            last = ":" + last
        if len(params) == 1:
            line = f"{command} {last}"
        else:
            middle = params[:-1]
            for param in middle:
                if not param or " " in param or param[0] == ":":
                    raise ValueError(f"parameter {_short(param)} can only be the last")
            line = f"{command} {' '.join(middle)} {last}"
    if source is not None:
        if not source or " " in source:
            raise ValueError(f"bad source {_short(source)}")
        line = f":{source} {line}"
    if tags:
        line = f"@{';'.join([_tag(key, value) for key, value in tags])} {line}"
    # What would end the line, or cut it short, on the other side: one scan in the common
    # case (printable text has neither), three otherwise.
    if not line.isprintable() and ("\r" in line or "\n" in line or "\x00" in line):
        raise ValueError(f"CR, LF or NUL in a message: {_short(line)}")
    return (line + "\r\n").encode("utf-8", "replace")


def numeric(code: str, target: str, *params: str, server: str) -> bytes:
    """Render a numeric reply: ``:server CODE target params...`` CR LF.

    Args:
      code: the three digits (``"433"``) or a name from :data:`NUMERICS`
        (``"ERR_NICKNAMEINUSE"``).
      target: the client's nick, or ``*`` before it has one.
      params: the parameters after the target; the last is usually the human-readable
        text.
      server: the server's name, the source.

    Returns:
      The line.

    Raises:
      ValueError: if ``code`` is neither three digits nor a known name, or a parameter
        cannot be rendered (see :func:`~._message.render`).
    """
    code = NUMERICS.get(code, code)
    if not (len(code) == 3 and code.isascii() and code.isdigit()):
        raise ValueError(f"not a numeric: {code!r}")
    return render(code, target, *params, source=server)
