"""The tiny HTTP server of the socket tutorials, made real: hello/echo, and static files.

* :func:`tutorial_handler`: ``GET /`` says hello (Workerman's ``http://0.0.0.0:2345``
  worker), ``/echo`` returns the request it received, as the tutorial's server does.
* :class:`StaticFiles`: the files under a root, ``GET`` and ``HEAD`` only. A path that
  would leave the root (``..``, its percent-encoded forms, a symlink pointing out) is
  404, as is anything missing, so a prober learns nothing. ``Content-Type`` from
  ``mimetypes``; ``ETag`` and ``Last-Modified``, with ``304 Not Modified`` for
  ``If-None-Match`` and ``If-Modified-Since``; a directory serves its ``index.html`` or
  an index page at its URL with the trailing slash, where relative links resolve inside
  it; without the slash it answers ``301 Moved Permanently`` to that URL, as nginx,
  Apache and Python's ``http.server`` do. A file is sent in pieces of
  :data:`~triosock._transport.http.SEND_PIECE` (64 KiB), each read in a worker thread when
  the one before has been written, as nginx sends files in bounded pieces: a client that
  does not read holds one piece, not the file; the server's ``send_timeout`` then closes
  it.
"""

from __future__ import annotations

import email.utils
import errno
import html
import logging
import mimetypes
import os
import stat
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import trio

from .._transport.http import SEND_PIECE, Request, Response

__all__ = ["StaticFiles", "tutorial_handler"]

LOGGER = logging.getLogger("triosock.http")

_READ_ONLY = ("GET", "HEAD")

# What a query keeps unencoded in a Location: RFC 3986's query characters, and "%" so
# that what the client encoded stays as it was.
_QUERY_SAFE = "!$&'()*+,;=:@/?%-._~"


def _not_allowed(allowed: tuple[str, ...]) -> Response:
    response = Response.text(405, "method not allowed\n")
    response.headers.append(("allow", ", ".join(allowed)))
    return response


async def tutorial_handler(request: Request) -> Response:
    """``/``: hello world. ``/echo``: the request as received. Anything else: 404."""
    if request.path == "/":
        if request.method not in _READ_ONLY:
            return _not_allowed(_READ_ONLY)
        return Response.text(200, "hello world\n")
    if request.path == "/echo":
        lines = [f"{request.method} {request.target} HTTP/{request.http_version}"]
        lines += [f"{name}: {value}" for name, value in request.headers]
        text = "\r\n".join(lines) + "\r\n\r\n"
        body = text.encode("latin-1", "replace") + request.body
        return Response(200, [("content-type", "text/plain; charset=utf-8")], body)
    return Response.text(404, "not found\n")


class StaticFiles:
    """A :func:`~triosock.serve_http` handler serving the files under ``root``.

    ``GET`` and ``HEAD`` only (405 otherwise). A path that would leave the root (``..``,
    its percent-encoded forms, a symlink pointing out), anything missing, and whatever
    the file system refuses are 404, so a prober learns nothing; a directory asked for
    without its trailing slash is moved (301) to it, and serves its ``index.html`` or an
    index page. ``Content-Type`` comes from :mod:`mimetypes`; ``ETag`` and
    ``Last-Modified`` make ``If-None-Match`` / ``If-Modified-Since`` answer 304. Files
    go out in 64 KiB pieces, each read in a worker thread once the last is written.

    Args:
      root: the directory served; it must exist.

    Raises:
      NotADirectoryError: ``root`` is not a directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {root}")

    async def __call__(self, request: Request) -> Response:
        if request.method not in _READ_ONLY:
            return _not_allowed(_READ_ONLY)
        path = self.resolve(request.path)
        if path is None:
            return Response.text(404, "not found\n")
        return await trio.to_thread.run_sync(self._respond, request, path)

    def resolve(self, url_path: str) -> Path | None:
        """The file or directory for a (decoded) URL path, or None if outside the root."""
        parts = _parts(url_path)
        if any(part == ".." or "\0" in part or "\\" in part for part in parts):
            return None
        candidate = os.path.realpath(self.root.joinpath(*parts))  # follows symlinks
        if os.path.commonpath([candidate, self.root]) != str(self.root):
            return None  # a symlink (or anything else) leading out of the root
        return Path(candidate)

    def _respond(self, request: Request, path: Path) -> Response:
        try:
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                if not request.path.endswith("/"):
                    return _moved(_directory_url(request))
                index = path / "index.html"
                if index.is_file():
                    return self._file(request, index, index.stat())
                return self._listing(request, path)
            if not stat.S_ISREG(info.st_mode):
                return Response.text(404, "not found\n")
            return self._file(request, path, info)
        except OSError as exc:
            # Missing, forbidden, a path under a file (ENOTDIR), a name too long for the
            # file system: whatever the file system says, a prober learns nothing more
            # than that there is nothing here, and the log gets no traceback.
            LOGGER.debug("%s %s: %s", request.method, request.target, exc)
            if exc.errno == errno.ENAMETOOLONG:
                return Response.text(414, "request target too long\n")
            return Response.text(404, "not found\n")

    def _file(self, request: Request, path: Path, info: os.stat_result) -> Response:
        etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        validators = [("etag", etag), ("last-modified", modified)]
        if _not_modified(request, etag, info.st_mtime):
            return Response(304, validators, b"")
        content_type, encoding = mimetypes.guess_type(path.name)
        headers = [("content-type", content_type or "application/octet-stream"), *validators]
        if encoding:
            headers.append(("content-encoding", encoding))
        headers.append(("content-length", str(info.st_size)))
        if request.method == "HEAD":
            return Response(200, headers, b"")
        # The size said is the size sent: a file that grows meanwhile is cut there, one
        # that shrinks ends the body short and the server closes the connection.
        return Response(200, headers, stream=_FileBody(path.open("rb"), info.st_size))

    def _listing(self, request: Request, path: Path) -> Response:
        entries = sorted(path.iterdir(), key=lambda entry: entry.name)
        items = []
        for entry in entries:
            if self.resolve(f"{request.path}/{entry.name}") is None:
                continue  # a symlink out of the root: not even its name
            name = entry.name + ("/" if entry.is_dir() else "")
            # Relative to the directory's URL, which ends with "/": a request path such
            # as "//host/" cannot turn into a link to another host, and quoting ":"
            # keeps a name from reading as a scheme.
            href = html.escape(quote(name))
            items.append(f'<li><a href="{href}">{html.escape(name)}</a></li>')
        listing = "\n".join(items)
        title = html.escape(request.path)
        page = (
            f"<!doctype html>\n<meta charset=utf-8>\n<title>Index of {title}</title>\n"
            f"<h1>Index of {title}</h1>\n<ul>\n{listing}\n</ul>\n"
        )
        return Response.text(200, page, content_type="text/html")


class _FileBody:
    """A file's first ``size`` bytes, a piece at a time, each read in a worker thread
    (``Response.stream``); the server closes it."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._left <= 0:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        piece = await trio.to_thread.run_sync(self._file.read, min(SEND_PIECE, self._left))
        if not piece:
            raise StopAsyncIteration  # shorter than it was: the server closes the connection
        self._left -= len(piece)
        return piece

    async def aclose(self) -> None:
        """Close the file."""
        self._file.close()
        await trio.lowlevel.checkpoint()


def _parts(url_path: str) -> list[str]:
    """The segments of a decoded URL path, without empty ones and ``.``."""
    return [part for part in url_path.split("/") if part not in ("", ".")]


def _directory_url(request: Request) -> str:
    """Where a directory requested without its trailing slash is: its path with the
    slash, and the query as sent.

    The path is built again from its segments, each percent-encoded whole, never copied
    from the request: a request for ``//evil.com`` (or ``/%2Fevil.com``) must not answer
    ``Location: //evil.com/``, which a browser reads as another host.
    """
    location = "/" + "".join(quote(part, safe="") + "/" for part in _parts(request.path))
    if request.query:
        location += "?" + quote(request.query, safe=_QUERY_SAFE)
    return location


def _moved(location: str) -> Response:
    response = Response.text(301, f"moved permanently to {location}\n")
    response.headers.append(("location", location))
    return response


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    if_none_match = request.header("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip() for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags or f"W/{etag}" in tags
    since = request.header("if-modified-since")
    if since is not None:
        try:
            when = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
        return int(mtime) <= when
    return False
