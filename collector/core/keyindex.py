"""The rows a day already holds, in about 10 bytes a row: what the settle pass compares
against.

Settling reads a day again and writes only the rows whose key no blob of the day holds yet.
A busy day has 1.5 million rows; their keys as Python strings would take about 150 MB. Here
a row is a 64-bit hash of its key (kept sorted, in 256 arrays by the hash's top byte, so no
sort ever needs a list of the whole day), a 16-bit fingerprint of its archived JSON text
(which tells a row that came back unchanged from one that came back different) and a bit
saying whether a row read again matched it: 10.1 bytes a row, 15.2 MB for 1.5 million.

Hashes are Python's own ``hash``: salted per process, which is fine because an index is
built and probed by the same run. Two different keys share a 64-bit hash with a chance of
about n²/2⁶⁵ (6·10⁻⁸ for a day of 1.5 million rows); the later row then counts as
``CHANGED`` (or, one time in 65,536, ``SAME``) and is not written. A changed row passes
for unchanged one time in 65,536: it is then not counted (it is never written either way).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from enum import Enum

_BUCKETS = 256
_MASK = (1 << 64) - 1


class Seen(Enum):
    """What the index says of a row read again."""

    NEW = "new"
    """No archived row has its key: it is late, and is written."""
    SAME = "same"
    """An archived row has its key and the same JSON text."""
    CHANGED = "changed"
    """An archived row has its key but other content: the archived one is kept."""


def _key_hash(key: str) -> int:
    return hash(key) & _MASK


def _fingerprint(line: bytes) -> int:
    return hash(line) & 0xFFFF


class KeyIndex:
    """The keys (and content fingerprints) of the rows archived for one day.

    ``add`` every archived row, then ``check`` each row read again. ``unseen`` counts the
    archived rows no ``check`` matched: rows Graph no longer returns (they stay archived).
    """

    def __init__(self) -> None:
        self._keys = [array("Q") for _ in range(_BUCKETS)]
        self._prints = [array("H") for _ in range(_BUCKETS)]
        self._seen: list[bytearray] = []
        self._sorted = False

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys)

    def add(self, key: str, line: bytes) -> None:
        """Record an archived row: its key and its JSONL text (without the newline)."""
        if self._sorted:
            raise RuntimeError("KeyIndex.add after the first check")
        hashed = _key_hash(key)
        bucket = hashed >> 56
        self._keys[bucket].append(hashed)
        self._prints[bucket].append(_fingerprint(line))

    def _sort(self) -> None:
        # One bucket at a time: the temporary list holds 1/256 of the day.
        for bucket, keys in enumerate(self._keys):
            order = sorted(range(len(keys)), key=keys.__getitem__)
            prints = self._prints[bucket]
            self._keys[bucket] = array("Q", [keys[i] for i in order])
            self._prints[bucket] = array("H", [prints[i] for i in order])
        self._seen = [bytearray((len(keys) + 7) // 8) for keys in self._keys]  # a bit a row
        self._sorted = True

    def check(self, key: str, line: bytes) -> Seen:
        """Say whether a row read again is new, archived unchanged, or archived different."""
        if not self._sorted:
            self._sort()
        hashed = _key_hash(key)
        bucket = hashed >> 56
        keys = self._keys[bucket]
        index = bisect_left(keys, hashed)
        if index == len(keys) or keys[index] != hashed:
            return Seen.NEW
        printed = _fingerprint(line)
        prints, seen = self._prints[bucket], self._seen[bucket]
        found = Seen.CHANGED
        while index < len(keys) and keys[index] == hashed:  # a key archived twice
            seen[index >> 3] |= 1 << (index & 7)
            if prints[index] == printed:
                found = Seen.SAME
            index += 1
        return found

    @property
    def unseen(self) -> int:
        """Archived rows that no row read again matched."""
        if not self._sorted:
            return len(self)
        matched = sum(int.from_bytes(seen, "little").bit_count() for seen in self._seen)
        return len(self) - matched

    @property
    def repeated(self) -> int:
        """Rows whose key another row of the index has too (a key archived twice counts once)."""
        if not self._sorted:
            self._sort()
        return sum(1 for keys in self._keys for i in range(1, len(keys)) if keys[i] == keys[i - 1])
