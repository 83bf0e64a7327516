"""History, sans-IO: what was said under each key, with ids, bounded by count and bytes.

:class:`HistoryLog` is the state of a history: for each key (a room's topic, an inbox),
its recent records, oldest first. It never does IO; the stores
(:mod:`triosock._store`) keep one in memory, and write what it takes to disk or read it
back.

Rules:

* **Ids.** Each key counts its own records: the first gets id 1, the next 2, and so on,
  with no gap. An id is never given twice within one **epoch**: a random string made
  when the history began. A history that was lost (a restart without a data file, a
  broker restarted empty) begins again with a new epoch, so a client holding an id of
  the old epoch can tell that the ids it knows mean nothing any more.
* **Time.** Each record carries the wall-clock time it was taken, in milliseconds since
  the Unix epoch (what a JavaScript ``Date`` takes).
* **Bounds.** A key keeps its last ``per_key`` records (0: none are kept, ids are still
  given); all keys together keep at most ``max_bytes`` of records (each record counts
  its data and :data:`RECORD_OVERHEAD`), dropping the oldest records of the whole log
  first, whatever their key. A key whose records are all gone keeps its count (the next
  id follows the last one given), so ids never go back.
* **Keys.** At most ``max_keys`` keys are kept: past it the key written longest ago
  goes, records and all. Its ids are not forgotten for that: a key that comes back (or
  a new one) starts above every id an evicted key had given, so an id still never
  means two lines within one epoch.
* **Reading.** :meth:`HistoryLog.last` gives a key's newest records,
  :meth:`HistoryLog.after` the records after an id (what a resuming client missed),
  :meth:`HistoryLog.before` the records before one (older lines, for a scrolling page);
  each says which ids it could not give (the key's first id kept), so a gap past what is
  kept is told, never silent.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_HISTORY_BYTES",
    "DEFAULT_MAX_KEYS",
    "RECORD_OVERHEAD",
    "HistoryLog",
    "Page",
    "Record",
    "new_epoch",
]

#: Records kept per key by default.
DEFAULT_HISTORY: Final = 1000
#: Bytes of records kept in all by default.
DEFAULT_HISTORY_BYTES: Final = 64 * 1024 * 1024
#: Keys kept at most (rooms and inboxes with lines).
DEFAULT_MAX_KEYS: Final = 100_000
#: What one record costs beyond its data, counted against ``max_bytes`` (the record
#: object, its place in two queues): about what CPython spends on it.
RECORD_OVERHEAD: Final = 160


def new_epoch() -> str:
    """A new epoch: 16 random hex digits."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Record:
    """One thing said, as the history keeps it.

    Attributes:
      id: its id within its key (1, 2, ...).
      time: when it was taken, in milliseconds since the Unix epoch.
      data: what was said, as the caller encoded it.
    """

    id: int
    time: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """Records of one key, oldest first, and what the key holds around them.

    Attributes:
      epoch: the history's epoch when the page was read.
      records: the records, oldest first (maybe none).
      first: the oldest id the key still keeps (0: it keeps none).
      last: the newest id the key has given (0: none yet).
    """

    epoch: str
    records: tuple[Record, ...]
    first: int
    last: int

    @property
    def more(self) -> bool:
        """Whether older records of the key are kept than the page's."""
        return bool(self.records) and self.first < self.records[0].id

    @property
    def newest(self) -> int:
        """The id of the page's newest record, or 0 when it has none."""
        return self.records[-1].id if self.records else 0


class _Key:
    __slots__ = ("last", "records")

    def __init__(self, last: int = 0) -> None:
        self.records: deque[Record] = deque()
        self.last = last


class HistoryLog:
    """The recent records of every key, with ids, under the bounds of the module docstring.

    Args:
      per_key: records kept per key (0 keeps none, but ids are still given).
      max_bytes: bytes of records kept in all.
      max_keys: keys kept in all (see the module docstring).
      epoch: the epoch (a new random one by default).

    Raises:
      ValueError: a negative ``per_key``, or ``max_bytes`` under one record.
    """

    __slots__ = (
        "_floor",
        "_kept",
        "_keys",
        "_order",
        "bytes",
        "epoch",
        "max_bytes",
        "max_keys",
        "per_key",
    )

    def __init__(
        self,
        per_key: int = DEFAULT_HISTORY,
        max_bytes: int = DEFAULT_HISTORY_BYTES,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        epoch: str | None = None,
    ) -> None:
        if per_key < 0:
            raise ValueError(f"the history must keep 0 or more lines per room, not {per_key}")
        if max_bytes < RECORD_OVERHEAD:
            raise ValueError(f"the history needs at least {RECORD_OVERHEAD} bytes, not {max_bytes}")
        if max_keys < 1:
            raise ValueError(f"the history must keep at least 1 key, not {max_keys}")
        self.per_key = per_key
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self._floor = 0  # the highest id an evicted key had given
        self.epoch = epoch if epoch is not None else new_epoch()
        self._keys: OrderedDict[str, _Key] = OrderedDict()  # the written longest ago first
        # every record kept, in the order taken: (key, record), for the bound on bytes
        self._order: deque[tuple[_Key, Record]] = deque()
        self._kept = 0
        #: Bytes of records kept now.
        self.bytes = 0

    def __len__(self) -> int:
        """Records kept now, in all keys."""
        return self._kept

    # -- taking ------------------------------------------------------------------------

    def next_id(self, key: str) -> int:
        """The id the next record of ``key`` gets."""
        entry = self._keys.get(key)
        return (self._floor if entry is None else entry.last) + 1

    def add(self, key: str, time: int, data: bytes) -> Record:
        """Take ``data`` under ``key`` with the next id; return its record."""
        entry = self._entry(key)
        entry.last += 1
        record = Record(entry.last, time, data)
        self._keep(entry, record)
        return record

    def restore(self, key: str, records: Iterable[Record], last: int) -> None:
        """Put back what a store read from disk: ``records`` of ``key`` (ids increasing)
        and the last id it gave. The bounds apply as for new records."""
        entry = self._entry(key)
        for record in records:
            self._keep(entry, record)
        entry.last = max(entry.last, last)

    def _entry(self, key: str) -> _Key:
        """``key``'s entry, made if need be, now the most recently written."""
        keys = self._keys
        entry = keys.get(key)
        if entry is not None:
            keys.move_to_end(key)
            return entry
        entry = keys[key] = _Key(self._floor)
        while len(keys) > self.max_keys:
            _, old = keys.popitem(last=False)
            self._floor = max(self._floor, old.last)
            while old.records:
                self._dropped(old.records.popleft())
        return entry

    def _keep(self, entry: _Key, record: Record) -> None:
        if not self.per_key:
            return
        entry.records.append(record)
        self._order.append((entry, record))
        self._kept += 1
        self.bytes += len(record.data) + RECORD_OVERHEAD
        if len(entry.records) > self.per_key:
            self._dropped(entry.records.popleft())
        while self.bytes > self.max_bytes:
            old_entry, old = self._order.popleft()
            if old_entry.records and old_entry.records[0] is old:
                self._dropped(old_entry.records.popleft())
            # else: gone already (its key's count, or forget), and counted off then

    def _dropped(self, record: Record) -> None:
        """Count off a record its key no longer holds. Its place in the order of the
        whole log goes when the bound on bytes reaches it, or at the next compaction
        (so the order never holds more than about twice what is kept)."""
        self._kept -= 1
        self.bytes -= len(record.data) + RECORD_OVERHEAD
        if len(self._order) > 2 * self._kept + 1024:
            kept = {id(r) for entry in self._keys.values() for r in entry.records}
            self._order = deque(item for item in self._order if id(item[1]) in kept)

    def forget(self, key: str) -> None:
        """Drop ``key`` and its records (an inbox nobody will read, whose key is never
        used again)."""
        entry = self._keys.pop(key, None)
        if entry is not None:
            while entry.records:
                self._dropped(entry.records.popleft())

    # -- reading -----------------------------------------------------------------------

    def _page(self, entry: _Key | None, records: Iterable[Record]) -> Page:
        if entry is None:
            return Page(self.epoch, (), 0, 0)
        first = entry.records[0].id if entry.records else 0
        return Page(self.epoch, tuple(records), first, entry.last)

    def last(self, key: str, count: int) -> Page:
        """The newest ``count`` records of ``key`` (fewer if it keeps fewer)."""
        entry = self._keys.get(key)
        if entry is None or count <= 0:
            return self._page(entry, ())
        kept = entry.records
        start = max(0, len(kept) - count)
        return self._page(entry, itertools.islice(kept, start, None))

    def after(self, key: str, after: int, limit: int) -> Page:
        """The records of ``key`` after id ``after``, oldest first, at most ``limit``."""
        entry = self._keys.get(key)
        if entry is None or limit <= 0:
            return self._page(entry, ())
        kept = entry.records
        first = kept[0].id if kept else entry.last + 1
        start = max(0, after + 1 - first)  # ids are consecutive within what is kept
        return self._page(entry, itertools.islice(kept, start, start + limit))

    def before(self, key: str, before: int, limit: int) -> Page:
        """The records of ``key`` before id ``before``, oldest first, at most ``limit``
        (the newest of them)."""
        entry = self._keys.get(key)
        if entry is None or limit <= 0:
            return self._page(entry, ())
        kept = entry.records
        if not kept:
            return self._page(entry, ())
        end = min(len(kept), max(0, before - kept[0].id))
        return self._page(entry, itertools.islice(kept, max(0, end - limit), end))

    def keys(self) -> list[str]:
        """The keys that have given ids."""
        return list(self._keys)
