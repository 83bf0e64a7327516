"""The values the command line takes: each parser turns text into a value or raises
``argparse.ArgumentTypeError``, which argparse reports as the one-line usage error
``argument --grace: must not be negative: -1``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "Address",
    "address_help",
    "address_or_none",
    "count",
    "count_or_none",
    "factor",
    "not_negative",
    "number",
    "parse_hostport",
    "parse_port",
    "positive",
    "positive_or_none",
    "positive_or_unlimited",
    "workers_count",
]

#: A host (name or address) and a port.
Address = tuple[str, int]

T = TypeVar("T")
N = TypeVar("N", int, float)


def _converted(convert: Callable[[str], T], text: str, what: str) -> T:
    """``convert(text)``, its ValueError said as ``not a WHAT: 'text'``."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None


def address_help(what: str, port: int) -> str:
    """The help of a HOST:PORT argument naming ``what``, with ``port`` (its default
    port, so that the example is one that works) in the example."""
    return (
        f"{what} to talk to: IPv4 or name and port (127.0.0.1:{port}), or [IPv6]:PORT "
        f"([::1]:{port})"
    )


def parse_port(text: str) -> int:
    """A port number, 0 to 65535."""
    port = _converted(int, text, "port number")
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def parse_hostport(text: str) -> Address:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into ``(host, port)``."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not host:
        raise argparse.ArgumentTypeError(f"missing host in {text!r}")
    return host, parse_port(port_text)


def address_or_none(text: str) -> Address | None:
    """``HOST:PORT``, or None for ``none`` (that listener is not started)."""
    return None if text.lower() == "none" else parse_hostport(text)


def number(text: str) -> float:
    """A finite number."""
    value = _converted(float, text, "number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text}")
    return value


def positive(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def not_negative(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _at_least_1(value: N, text: str) -> N:
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def factor(text: str) -> float:
    """A number, at least 1."""
    return _at_least_1(number(text), text)


def positive_or_none(text: str) -> float | None:
    """A positive number, or None for ``none``."""
    return None if text.lower() == "none" else positive(text)


def positive_or_unlimited(text: str) -> float:
    """A positive number, or infinity for ``none``: "no limit" said on purpose, which a
    command tells apart from an option left out (None), whose default may be a limit."""
    return math.inf if text.lower() == "none" else positive(text)


def count(text: str) -> int:
    """A whole number, at least 1."""
    return _at_least_1(_converted(int, text, "whole number"), text)


def whole(text: str) -> int:
    """A whole number, 0 or more."""
    value = _converted(int, text, "whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def count_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else count(text)


def workers_count(text: str) -> int:
    """How many worker processes: 1 to 256."""
    value = _converted(int, text, "whole number")
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256: {text}")
    return value
