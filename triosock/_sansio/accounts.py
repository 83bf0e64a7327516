"""Accounts, sans-IO: what a password may be, how its hash is recorded, and how failed
logins are slowed. Nothing here does IO; the chat's account service hashes off the event
loop and keeps the records in a store (:mod:`triosock._accounts`).

* **Passwords** are :data:`MIN_PASSWORD` to :data:`MAX_PASSWORD` characters, any
  characters a line may carry (spaces and Unicode included; a chat line has its control
  characters removed and its trailing spaces dropped before it is read, the same way at
  registration and at login).
* **Hashes** are ``hashlib.scrypt`` of the password's UTF-8 with a random 16-byte salt
  per account, recorded with their parameters so that they can be raised later:
  ``scrypt$<log2 n>$<r>$<p>$<salt, base64>$<hash, base64>``. A record whose parameters
  are not this module's current ones still verifies (:func:`needs_rehash` says so).
* **Failed logins** are answered after a delay that doubles with each failure, per
  account and per address (:class:`FailedLogins`), from :data:`FIRST_DELAY` up to
  :data:`MOST_DELAY`; a success forgets the account's count. Guessing in parallel gains
  nothing: while a password of an account (or from an address) is being checked, and
  for its delay after a failure, other attempts for it are refused at once, unchecked
  (no hash is computed for them).
* **Registrations** from one address are paced (:class:`Registrations`):
  :data:`REGISTRATION_BURST` at once, then one every :data:`REGISTRATION_INTERVAL`
  seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from .ratelimit import Backoff, TokenBucket

__all__ = [
    "FIRST_DELAY",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "MOST_DELAY",
    "REGISTRATION_BURST",
    "REGISTRATION_INTERVAL",
    "SCRYPT_LOG2_N",
    "FailedLogins",
    "Registrations",
    "ScryptParameters",
    "check_password",
    "derive",
    "is_guest_nick",
    "make_record",
    "needs_rehash",
    "verify_record",
]

#: The shortest and longest password, in characters.
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 256
#: scrypt's cost: n = 2 ** SCRYPT_LOG2_N, r = 8, p = 1 (16 MiB of memory per hash).
SCRYPT_LOG2_N: Final = 14
_R: Final = 8
_P: Final = 1
_SALT: Final = 16
_LENGTH: Final = 32
#: The most memory one hash may take (scrypt needs 128 * r * n bytes, and a little more).
_MAXMEM: Final = 64 * 1024 * 1024
#: The first delay after a failed login, and the longest, in seconds.
FIRST_DELAY: Final = 0.5
MOST_DELAY: Final = 30.0
#: Seconds a count of failures is remembered after the last one; how many are kept.
_MEMORY: Final = 600.0
_KEPT: Final = 10_000
#: Registrations one address may make at once, and the seconds that earn one more.
REGISTRATION_BURST: Final = 10
REGISTRATION_INTERVAL: Final = 30.0

_GUEST = re.compile(r"guest\d+", re.IGNORECASE)


def is_guest_nick(nick: str) -> bool:
    """Whether ``nick`` is of the form the server gives new users (``guest12``): such
    nicks cannot be registered."""
    return _GUEST.fullmatch(nick) is not None


def check_password(password: str) -> str | None:
    """Why ``password`` is refused (a notice that never repeats it), or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password is at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password is at most {MAX_PASSWORD} characters"
    return None


@dataclass(frozen=True, slots=True)
class ScryptParameters:
    """scrypt's cost parameters, as recorded with a hash."""

    log2_n: int = SCRYPT_LOG2_N
    r: int = _R
    p: int = _P


def derive(password: str, salt: bytes, parameters: ScryptParameters) -> bytes:
    """scrypt of ``password`` (slow on purpose: call it off the event loop)."""
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=2**parameters.log2_n,
        r=parameters.r,
        p=parameters.p,
        maxmem=_MAXMEM,
        dklen=_LENGTH,
    )


def make_record(password: str, salt: bytes, parameters: ScryptParameters | None = None) -> str:
    """The record of ``password``'s hash with ``salt`` (:data:`_SALT` random bytes)."""
    chosen = parameters or ScryptParameters()
    digest = derive(password, salt, chosen)
    return "$".join(
        (
            "scrypt",
            str(chosen.log2_n),
            str(chosen.r),
            str(chosen.p),
            base64.b64encode(salt).decode("ascii"),
            base64.b64encode(digest).decode("ascii"),
        )
    )


def _parse(record: str) -> tuple[ScryptParameters, bytes, bytes] | None:
    parts = record.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        parameters = ScryptParameters(int(parts[1]), int(parts[2]), int(parts[3]))
        salt, digest = base64.b64decode(parts[4]), base64.b64decode(parts[5])
    except ValueError:
        return None
    if not (1 <= parameters.log2_n <= 20 and 1 <= parameters.r <= 32 and 1 <= parameters.p <= 4):
        return None
    return parameters, salt, digest


def verify_record(password: str, record: str) -> bool:
    """Whether ``password`` is the one ``record`` was made of (compared in constant
    time; an unreadable record verifies nothing)."""
    parsed = _parse(record)
    if parsed is None:
        return False
    parameters, salt, digest = parsed
    return hmac.compare_digest(derive(password, salt, parameters), digest)


def needs_rehash(record: str) -> bool:
    """Whether ``record`` was made with other parameters than today's."""
    parsed = _parse(record)
    return parsed is None or parsed[0] != ScryptParameters()


class FailedLogins:
    """How long the answer to a failed login waits: the delay doubles with each
    failure for the same account, and for the same address, and the longer of the two
    applies (see the module docstring)."""

    __slots__ = ("_accounts", "_addresses", "_checking")

    def __init__(self) -> None:
        self._accounts = Backoff(FIRST_DELAY, MOST_DELAY, _MEMORY, _KEPT)
        self._addresses = Backoff(FIRST_DELAY, MOST_DELAY, _MEMORY, _KEPT)
        # the accounts and addresses with a check under way (or in its failure's delay)
        self._checking: set[str] = set()

    def begin(self, account: str, address: str, now: float) -> str | None:
        """A login for ``account`` from ``address`` at ``now`` is to be checked: why it
        is refused unchecked (a notice), or None, and then :meth:`end` must follow."""
        if f"a:{account}" in self._checking:
            return f"a login for {account} is being checked; try again in a moment"
        if f"h:{address}" in self._checking:
            return "a login from your address is being checked; try again in a moment"
        wait = max(self._accounts.waiting(account, now), self._addresses.waiting(address, now))
        if wait > 0:
            return f"too many failed logins: try again in {math.ceil(wait)} s"
        self._checking.update((f"a:{account}", f"h:{address}"))
        return None

    def end(self, account: str, address: str) -> None:
        """The check :meth:`begin` let through is over (its failure's delay included)."""
        self._checking.difference_update((f"a:{account}", f"h:{address}"))

    def failed(self, account: str, address: str, now: float) -> float:
        """One more failure for ``account`` from ``address`` at ``now``: the seconds
        its answer waits."""
        count = max(self._accounts.count(account, now), self._addresses.count(address, now))
        return self._accounts.delay(count)

    def succeeded(self, account: str) -> None:
        """``account`` logged in: its failures are forgotten (its address's are not)."""
        self._accounts.forget(account)


class Registrations:
    """Registrations paced per address: :data:`REGISTRATION_BURST` at once, then one
    every :data:`REGISTRATION_INTERVAL` seconds (the most recent :data:`_KEPT` addresses
    are remembered)."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, address: str, now: float) -> float:
        """A registration from ``address`` at ``now``: 0 if it may go on, else the
        seconds to wait before the next one may (this one is refused, and costs
        nothing)."""
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(1 / REGISTRATION_INTERVAL, REGISTRATION_BURST, now)
        self._buckets[address] = bucket
        while len(self._buckets) > _KEPT:
            self._buckets.popitem(last=False)
        if bucket.available(now) < 1:
            return (1 - bucket.available(now)) * REGISTRATION_INTERVAL
        bucket.take(now)
        return 0.0
