"""The chat, sans-IO: its protocol, its rules and its state. Nothing here does IO.

The chat service feeds these modules what users send and gets back commands, effects
and the bytes users see. Users of every transport (TCP lines from ``nc``/``telnet``/
``socat``, UDP peers speaking the tutorial dialect, WebSocket users) share the same
rooms, commands and events.

* :mod:`._lines` — TCP input: lines ended by LF, CRLF, CR or CR NUL, telnet's IAC
  negotiation stripped and answered, overlong lines refused without losing sync, and a
  first line that is an HTTP request told apart.
* :mod:`._commands` — what a line means (:func:`parse_line_untrusted`).
* :mod:`._names` — valid nicks and rooms.
* :mod:`._text` — neutralising user text for other people's terminals.
* :mod:`._events` — what users see, rendered and encoded to cross processes.
* :mod:`._udp` — the UDP tutorial dialect.
* :mod:`._web` — the WebSocket page's protocol: JSON lines out, JSON events or text in.
* :mod:`._directory` — who owns which nick and is in which room (:class:`DirectoryState`).
* :mod:`._core` — the rules for one session (:class:`ChatSession`): input in, effects out.
"""

from __future__ import annotations

from ._commands import (
    HELP_TEXT,
    Command,
    Empty,
    Help,
    Invalid,
    Join,
    Me,
    Msg,
    Nick,
    Quit,
    Rooms,
    Say,
    Who,
    parse_line_untrusted,
)
from ._core import (
    ChatSession,
    Close,
    Effect,
    ListRooms,
    ListUsers,
    Lookup,
    Move,
    Pause,
    Publish,
    Rename,
    Reply,
    Tell,
)
from ._directory import DirectoryState, Presence, inbox_topic, room_topic
from ._errors import ChatError
from ._events import (
    Action,
    Crowd,
    Direct,
    Event,
    Joined,
    Left,
    Message,
    NickChanged,
    Notice,
    ServerClosing,
    decode_event_untrusted,
    encode_event,
    render_line,
)
from ._lines import AreYouThere, HttpRequest, LineReader, Negotiation, Overlong, TlsHello
from ._names import (
    DEFAULT_ROOM,
    MAX_NICK_LENGTH,
    MAX_ROOM_LENGTH,
    default_nick,
    nick_key,
    validate_nick,
    validate_room,
)
from ._text import MAX_TEXT_LENGTH, apply_erasures, neutralise, sanitize_text
from ._udp import (
    BYE,
    HEARTBEAT,
    REFLECTION_FACTOR,
    TOKEN_MARK,
    UDP_QUIT,
    Datagram,
    Heartbeat,
    UdpQuit,
    UdpText,
    address_token,
    classify_datagram_untrusted,
    format_address,
    is_address_token,
    join_notice,
    notice_token_untrusted,
    udp_ack_line,
)
from ._web import (
    BadEvent,
    hello_json,
    parse_json_line_untrusted,
    parse_web_message_untrusted,
    render_json,
    split_web_message_untrusted,
)

__all__ = [
    "BYE",
    "DEFAULT_ROOM",
    "HEARTBEAT",
    "HELP_TEXT",
    "MAX_NICK_LENGTH",
    "MAX_ROOM_LENGTH",
    "MAX_TEXT_LENGTH",
    "REFLECTION_FACTOR",
    "TOKEN_MARK",
    "UDP_QUIT",
    "Action",
    "AreYouThere",
    "BadEvent",
    "ChatError",
    "ChatSession",
    "Close",
    "Command",
    "Crowd",
    "Datagram",
    "Direct",
    "DirectoryState",
    "Effect",
    "Empty",
    "Event",
    "Heartbeat",
    "Help",
    "HttpRequest",
    "Invalid",
    "Join",
    "Joined",
    "Left",
    "LineReader",
    "ListRooms",
    "ListUsers",
    "Lookup",
    "Me",
    "Message",
    "Move",
    "Msg",
    "Negotiation",
    "Nick",
    "NickChanged",
    "Notice",
    "Overlong",
    "Pause",
    "Presence",
    "Publish",
    "Quit",
    "Rename",
    "Reply",
    "Rooms",
    "Say",
    "ServerClosing",
    "Tell",
    "TlsHello",
    "UdpQuit",
    "UdpText",
    "Who",
    "address_token",
    "apply_erasures",
    "classify_datagram_untrusted",
    "decode_event_untrusted",
    "default_nick",
    "encode_event",
    "format_address",
    "hello_json",
    "inbox_topic",
    "is_address_token",
    "join_notice",
    "neutralise",
    "nick_key",
    "notice_token_untrusted",
    "parse_json_line_untrusted",
    "parse_line_untrusted",
    "parse_web_message_untrusted",
    "render_json",
    "render_line",
    "room_topic",
    "sanitize_text",
    "split_web_message_untrusted",
    "udp_ack_line",
    "validate_nick",
    "validate_room",
]
