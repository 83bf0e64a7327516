"""The IRC protocol, sans-IO: bytes in, messages and replies out. Nothing here does IO.

The IRC listener's member adapter feeds these modules what a client sends and gets back
the messages it means and the lines to answer; chat names become IRC names and back.
The references are the Modern IRC client protocol (modern.ircdocs.horse), the IRCv3
specifications (message-tags, capability negotiation 302, sasl-3.1) and RFC 1459/2812
for the numerics.

* :mod:`._message` — one message: :func:`parse_message_untrusted`, :func:`render`, and
  numeric replies (:func:`numeric`, :data:`NUMERICS`).
* :mod:`._reader` — a byte stream cut into messages (:class:`IrcReader`), with hard
  limits on the tag section and the rest, memory bounded whatever a client sends.
* :mod:`._text` — text cut to fit a line (:func:`split_text`, :func:`privmsg_room`),
  CTCP, formatting codes.
* :mod:`._names` — chat nicks as IRC nicks and back, channels, the casemapping.
* :mod:`._welcome` — the welcome burst (``001`` to ``005``) and the ISUPPORT tokens.
* :mod:`._registration` — connection registration (:class:`Registration`): CAP 302,
  SASL PLAIN, NICK and USER.
* :mod:`._chat` — a registered client's session in the chat (:class:`IrcChatSession`):
  IRC commands in, the chat's effects out.
"""

from __future__ import annotations

from ._chat import CHAT_COMMANDS, VERSION_REPLY, IrcChatSession, user_source
from ._message import (
    MAX_PARAMS,
    NUMERICS,
    TEXT_COMMANDS,
    IrcError,
    IrcMessage,
    escape_tag_value,
    numeric,
    parse_message_untrusted,
    render,
    unescape_tag_value,
)
from ._names import (
    CASEMAPPING,
    CHANNELLEN,
    CHANTYPES,
    NICK_MARKER,
    NICKLEN,
    from_irc_nick,
    irc_lower,
    is_irc_channel,
    is_irc_nick,
    to_irc_nick,
)
from ._reader import IrcReader, Item, Malformed, Overlong
from ._registration import (
    MAX_CAP_REQ,
    MAX_SASL_BYTES,
    CapsChanged,
    Quit,
    Registered,
    Registration,
    RegistrationItem,
    Reply,
    SaslPlain,
)
from ._text import (
    MAX_LINE,
    ctcp,
    from_marks,
    has_formatting,
    parse_ctcp,
    privmsg_room,
    split_text,
    strip_formatting,
    to_marks,
)
from ._welcome import ISUPPORT_TAIL, MAX_ISUPPORT_TOKENS, isupport_tokens, welcome

__all__ = [
    "CASEMAPPING",
    "CHANNELLEN",
    "CHANTYPES",
    "CHAT_COMMANDS",
    "ISUPPORT_TAIL",
    "MAX_CAP_REQ",
    "MAX_ISUPPORT_TOKENS",
    "MAX_LINE",
    "MAX_PARAMS",
    "MAX_SASL_BYTES",
    "NICKLEN",
    "NICK_MARKER",
    "NUMERICS",
    "TEXT_COMMANDS",
    "VERSION_REPLY",
    "CapsChanged",
    "IrcChatSession",
    "IrcError",
    "IrcMessage",
    "IrcReader",
    "Item",
    "Malformed",
    "Overlong",
    "Quit",
    "Registered",
    "Registration",
    "RegistrationItem",
    "Reply",
    "SaslPlain",
    "ctcp",
    "escape_tag_value",
    "from_irc_nick",
    "from_marks",
    "has_formatting",
    "irc_lower",
    "is_irc_channel",
    "is_irc_nick",
    "isupport_tokens",
    "numeric",
    "parse_ctcp",
    "parse_message_untrusted",
    "privmsg_room",
    "render",
    "split_text",
    "strip_formatting",
    "to_irc_nick",
    "to_marks",
    "unescape_tag_value",
    "user_source",
    "welcome",
]
