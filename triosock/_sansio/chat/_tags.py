"""Tags on TCP lines, sans-IO: the ids of lines said, for clients that count them.

A TCP user sees no ids (see :func:`~._events.render_line`), so it can only resume after
the last line the server wrote to its old connection, which a dead server takes with
it. A client that sends ``/tags on`` gets, from then on, each line said (a message, a
``/me``, a direct message, and the same lines shown again from the history) prefixed
with a tag part, as in IRCv3's message-tags: ``@`` and ``key=value`` pairs separated by
``;``, then one space, then the line as it would be without tags::

    @id=57;key=#lobby [#lobby] alice: hi
    @id=58;key=#lobby [#lobby] * alice waves
    @id=3;key=direct [dm from alice] psst
    @id=12;key=#lobby [11:58:02] [#lobby] alice: an earlier line

``id`` is the line's id in its history and ``key`` the history it counts in: its room,
or :data:`~._resume.DIRECT` for the session's direct messages (the keys of
:class:`~._resume.ResumeRequest`'s ``after``). Every other line (notices, joins,
leaves, renames, and lines of a store that keeps no ids, whose id is 0) has no tag
part, so a line starts with ``@`` exactly when it has one. Values are escaped as IRCv3
escapes them (``\\:`` for ``;``, ``\\s`` for a space, ``\\\\``, ``\\r``, ``\\n``).

The history's epoch (ids of another epoch mean nothing) is told by a notice of its own,
:func:`epoch_line`, the answer to ``/tags on`` and the first line of each session
begun or resumed on a connection whose tags are on::

    @epoch=9f3c0a1b2c3d4e5f -!- tags on: lines said start with @id=N;key=ROOM (or ...

With the ids, ``/resume TOKEN EPOCH #lobby=57 direct=3`` resumes exactly after them
(see :mod:`._commands`); :func:`resume_line` writes it, :func:`split_tags_untrusted`
reads a tagged line back (both for clients).
"""

from __future__ import annotations

from typing import Final

from ._events import Action, Direct, Message, Notice, Recalled, Shown, render_line
from ._resume import DIRECT
from ._text import neutralise

__all__ = [
    "TAGS_OFF",
    "TAGS_ON",
    "epoch_line",
    "line_tags",
    "render_tagged_line",
    "resume_line",
    "split_tags_untrusted",
]

#: The notice that answers ``/tags on`` (it comes with the epoch: :func:`epoch_line`).
TAGS_ON: Final = (
    "tags on: lines said start with @id=N;key=ROOM (or key=direct); /tags off ends them"
)
#: The notice that answers ``/tags off``.
TAGS_OFF: Final = "tags off"

_ESCAPES: Final = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})
_UNESCAPES: Final = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def _escape(value: str) -> bytes:
    return neutralise(value).translate(_ESCAPES).encode("utf-8")


def _unescape(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_UNESCAPES.get(following, following))  # IRCv3: an unknown one is itself
        else:
            out.append(char)
    return "".join(out)


def line_tags(event: Shown) -> bytes:
    """The tag part of ``event``'s line, with its trailing space; empty when it has
    none (it is no line said, or a line said that has no id)."""
    said = event.event if isinstance(event, Recalled) else event
    if isinstance(said, Message | Action):
        key = _escape(said.room)
    elif isinstance(said, Direct):
        key = DIRECT.encode("ascii")
    else:
        return b""
    if said.id <= 0:
        return b""
    return b"@id=%d;key=%s " % (said.id, key)


def render_tagged_line(event: Shown, *, viewer: str | None = None) -> bytes:
    """:func:`~._events.render_line`, with the tag part of a line said before it."""
    return line_tags(event) + render_line(event, viewer=viewer)


def epoch_line(epoch: str) -> bytes:
    """The notice that tells a connection with tags on the history's epoch (no LF)."""
    return b"@epoch=" + _escape(epoch) + b" " + render_line(Notice(TAGS_ON))


def split_tags_untrusted(line: bytes) -> tuple[dict[str, str], bytes]:
    """A line from the server: its tags (unescaped; a tag without ``=`` is "") and the
    line without them. A line that starts with no ``@`` has no tags."""
    if line[:1] != b"@":
        return {}, line
    part, _, rest = line[1:].partition(b" ")
    tags: dict[str, str] = {}
    for pair in part.decode("utf-8", errors="replace").split(";"):
        name, _, value = pair.partition("=")
        if name:
            tags[name] = _unescape(value)
    return tags, rest


def resume_line(token: str, epoch: str | None, after: dict[str, int]) -> bytes:
    """``/resume TOKEN [EPOCH] [KEY=ID ...]``: take the session back after the ids."""
    words = [token, *([epoch] if epoch else []), *(f"{k}={n:d}" for k, n in after.items())]
    return ("/resume " + " ".join(words)).encode("utf-8")
