"""Synthetic Teams call records for the Graph simulator: who called whom, every session,
segment and stream, and each record's life in time (when it appears, changes, is deleted).

Everything is generated from the tenant's seed, lazily: a day's ``RecordInfo``s (cheap
instants and counts) when the day is first asked for, a record's participants when they are
first asked for, and each session on its own (from a generator seeded by the record and the
session's number), so a page of a meeting of 20,000 attendees costs a page's work and memory,
never the whole meeting's.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import unicodedata
import uuid
from bisect import bisect_left
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

from collector.core.timefmt import TICKS_PER_SECOND

from .synthetic import TICKS_PER_DAY, format_ticks

RETENTION_DAYS = 30
"""Days Graph keeps a call record after the call ended ("A call record is created after a
call or meeting ends and remains available for 30 days", List callRecords)."""
MOST_PARTICIPANTS = 20_000
"""The largest meeting ``huge_participants`` may ask for (a town hall)."""
LONGEST_CALL = TICKS_PER_DAY
"""No generated call lasts longer (the longest is a three-hour meeting): how far before a
window a record can start and still be kept."""
MINUTE = 60 * TICKS_PER_SECOND
HOUR = 60 * MINUTE
DAY = TICKS_PER_DAY
SESSION_ADDED = "session_added"
METRIC_UPDATED = "metric_updated"

# --------------------------------------------------------------------------- knobs


@dataclass(frozen=True)
class CallRecordsConfig:
    """What a tenant's synthetic call records look like (the same seed and knobs always give
    the same records). The knobs that default to 0 or off draw from generators of their own,
    so turning one on leaves every other record exactly as it was."""

    records_per_day: int = 120
    sessions: tuple[int, int] = (1, 50)
    """Fewest and most sessions a record has: peer-to-peer calls have the fewest (or one
    more), group calls a skewed count in between, huge meetings the most."""
    huge_per_day: int = 1
    """Huge meetings a day (hundreds of participants, the most sessions; megabytes)."""
    huge_participants: tuple[int, int] = (200, 600)
    """Fewest and most participants of a huge meeting (at most ``MOST_PARTICIPANTS``);
    ``(3000, 3000)`` forces the size."""
    huge_session_per_attendee: bool = False
    """Give a huge meeting one session per participant (at least ``sessions[1]``), as Graph
    does ("group calls typically have at least one session per participant"): a town hall of
    10,000 attendees then has 10,000 sessions. Off, a huge meeting has ``sessions[1]``, so
    the default day stays a few megabytes."""
    retention_days: int = RETENTION_DAYS
    """Days a record is kept after its call ended."""
    change_rate: float = 0.35
    """Share of records that change (1-3 times) after they first appear (within 40 h of the
    call's end)."""
    late_change_rate: float = 0.0
    """Share of records that get one more change (a stream's metrics updated) 2 to 25 days
    after the call ended, long after a collector has read them as settled."""
    late_create_rate: float = 0.0
    """Share of records that first appear 3 to 20 days after the call ended (Graph catching
    up after an outage); their changes follow as late."""
    failing_rate: float = 0.0
    """Share of records whose reads answer 500 every time (still listed);
    ``CallRecords.fail_always`` picks one by id."""

    def __post_init__(self) -> None:
        low, high = self.sessions
        if not 1 <= low <= high:
            raise ValueError(f"sessions must be 1 <= low <= high, not {self.sessions}")
        fewest, most = self.huge_participants
        if not 1 <= fewest <= most <= MOST_PARTICIPANTS:
            raise ValueError(f"huge_participants must lie within 1..{MOST_PARTICIPANTS}")
        for name in ("change_rate", "late_change_rate", "late_create_rate", "failing_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie within 0..1")


# --------------------------------------------------------------------------- records in time


@dataclass(frozen=True, slots=True)
class Change:
    """A change of a record after it first appeared: ``at`` (ticks) it gets a new version."""

    at: int
    kind: str
    """``session_added`` (sessions ``session`` .. ``session + count - 1`` appear) or
    ``metric_updated`` (session ``session``'s first stream gets its next metrics)."""
    session: int
    count: int = 1


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """One call record's identity, shape and life in time (all instants in ticks since the
    epoch; ``format_ticks`` writes them as Graph does)."""

    id: str
    start: int
    end: int
    type: str
    sessions: int
    """Sessions of the final version."""
    participants: int
    huge: bool
    created: int
    """``lastModifiedDateTime`` of version 1."""
    available: int
    """From this instant on, the record is listed and can be read."""
    changes: tuple[Change, ...]
    deleted: int
    """From this instant on (``retention_days`` after the call ended), the record is gone."""
    failing: bool = False
    """Every read of the record answers 500 (``failing_rate``)."""

    @property
    def settled(self) -> int:
        """The instant of the last change (the record never changes after it)."""
        return self.changes[-1].at if self.changes else self.available

    @property
    def final_version(self) -> int:
        """The version the record ends with."""
        return 1 + len(self.changes)

    @property
    def town_hall(self) -> bool:
        """A huge meeting with a session per attendee (``huge_session_per_attendee``)."""
        return self.huge and self.sessions >= self.participants

    def visible_at(self, now: int) -> bool:
        """Whether Graph lists and returns the record at ``now``."""
        return self.available <= now < self.deleted

    def versions(self, now: int) -> list[tuple[int, int]]:
        """Every (version, ``lastModifiedDateTime`` in ticks) the record had by ``now``, oldest
        first (empty before it appeared)."""
        if now < self.available:
            return []
        return [(1, self.created)] + [
            (number, change.at)
            for number, change in enumerate(self.changes, start=2)
            if change.at <= now
        ]

    def applied(self, now: int) -> int:
        """How many changes happened by ``now``."""
        return sum(1 for change in self.changes if change.at <= now)

    def version_at(self, now: int) -> int:
        return 1 + self.applied(now)

    def modified_at(self, now: int) -> int:
        applied = self.applied(now)
        return self.changes[applied - 1].at if applied else self.created

    def sessions_at(self, now: int) -> int:
        """How many sessions the record has at ``now``."""
        return self.sessions - sum(
            c.count for c in self.changes if c.kind == SESSION_ADDED and c.at > now
        )


# --------------------------------------------------------------------------- vocabulary


_FIRST = (
    "Ruwini", "Richard", "Zoë", "Łukasz", "Lei", "Ngozi", "José", "Αθηνά", "Søren", "Ольга",
    "Siobhán", "Aiyana", "Mehmet", "Priya", "Kwame", "Yuki", "Fatima", "Lars", "Chloé", "Tomás",
    "Ana", "Dmitri", "Amara", "Hiroshi", "Inês", "Oluwaseun", "Maëlle", "Björn", "Noa", "Rafael",
)  # fmt: skip
_LAST = (
    "Perera", "Malk", "Ångström", "Żółkiewski", "Li", "Ọkọnkwọ", "Müller-Sánchez", "Papadopoulou",
    "Kierkegård", "Иванова", "O'Brien", "Nakamura", "Yılmaz", "Sharma", "Mensah", "Haddad",
    "Lindqvist", "Dubois", "García", "Kowalska", "Silva", "Novak", "Okafor", "Tanaka", "Rossi",
    "Adeyemi", "Le Gall", "Eriksson", "Cohen", "Costa",
)  # fmt: skip
_PEOPLE_NS = uuid.UUID("0d7a1c55-3f43-4b0e-9a57-2c8e0c4b6f31")


class _Site(NamedTuple):
    prefix: str
    """The first three octets: the subnet is ``prefix.0``."""
    connection: str
    poor: float
    """Chance that a stream from this network is poor."""
    public: str
    """Reflexive (public) address prefix."""


_SITES = (
    _Site("10.10.1", "wired", 0.02, "20.190.128"),
    _Site("10.10.2", "wifi", 0.06, "20.190.128"),
    _Site("10.20.1", "wired", 0.02, "40.126.9"),
    _Site("10.20.5", "wifi", 0.45, "40.126.9"),  # a congested floor
    _Site("10.30.8", "wired", 0.04, "52.96.17"),
    _Site("10.40.7", "wifi", 0.30, "52.96.17"),
    _Site("172.16.4", "wired", 0.02, "13.107.6"),
    _Site("192.168.1", "wifi", 0.15, "86.44.210"),  # at home
    _Site("10.99.0", "mobile", 0.25, "100.64.3"),  # on the road
)
_HOME, _MOBILE = 7, 8
_SITE_WEIGHTS = (14, 12, 14, 8, 12, 8, 10, 0, 0)
_SERVICE = _Site("52.114.128", "wired", 0.01, "52.114.128")
"""The conferencing service's side of group-call media."""
_PSTN = _Site("52.112.64", "wired", 0.05, "52.112.64")
_AGENTS = (
    ("windows", "Teams/24165.1410.2974.6689", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Teams/24165.1410.2974.6689/49"),
    ("macOS", "Teams/24165.1410.2974.6689", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Teams/24165.1410.2974.6689/49"),
    ("iOS", "Teams/6.14.1", "Teams/6.14.1 (iPhone; iOS 17.5.1)"),
    ("android", "Teams/1416/1.0.0.2024143201", "Teams/1416/1.0.0.2024143201 (Android 14; SM-S918B)"),
    ("web", "TeamsWeb/24165", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0 TeamsWeb/24165"),
    ("roomSystem", "MTR/5.1.34.0", "CallSignalingAgent (MTR/5.1.34.0; Windows)"),
)  # fmt: skip
_CPUS = (
    ("Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", 8, 2995),
    ("AMD Ryzen 7 PRO 7840U", 16, 3301),
    ("Apple M2", 8, 3490),
    ("Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", 2, 2594),
)
_DEVICES = (
    ("Microphone (Jabra Evolve2 65)", "Speakers (Jabra Evolve2 65)"),
    ("Microphone Array (Realtek(R) Audio)", "Speakers (Realtek(R) Audio)"),
    ("MacBook Pro Microphone", "MacBook Pro Speakers"),
    ("Default input device", "Default output device"),
)
_FAILURES = (
    ("callSetup", "Media failed to connect: firewall blocked UDP 3478-3481"),
    ("midcall", "Network connectivity lost"),
    ("midcall", "Call dropped: client crashed"),
)
_LABELS = {
    "audio": "main-audio",
    "video": "main-video",
    "videoBasedScreenSharing": "applicationsharing-video",
    "screenSharing": "applicationsharing",
    "data": "data",
}


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _duration(ms: int) -> str:
    """An ISO 8601 duration as Graph writes media metrics: ``PT0.012S``."""
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def _record_id(rng: random.Random, day_index: int) -> str:
    """A random-looking GUID that tells its record's start day (so a get finds the record
    without generating every day Graph keeps): the low 32 bits are the day XOR the high 32."""
    value = uuid.UUID(int=rng.getrandbits(128), version=4).int
    low = (day_index ^ (value >> 96)) & 0xFFFFFFFF
    return str(uuid.UUID(int=(value & ~0xFFFFFFFF) | low))


def _day_of(record_id: str) -> int:
    value = uuid.UUID(record_id).int
    return ((value & 0xFFFFFFFF) ^ (value >> 96)) & 0xFFFFFFFF


def stamp(ticks: int) -> str:
    """An instant as Graph writes call records: up to seven fractional digits, trailing zeros
    dropped (``2020-02-25T18:52:21.2169889Z``, ``2020-02-25T19:00:24.582757Z``,
    ``2023-09-25T09:28:38Z``)."""
    text = format_ticks(ticks)[:-1].rstrip("0").rstrip(".")
    return text + "Z"


def _micro(ticks: int) -> int:
    """The first whole microsecond strictly after ``ticks`` (instants tests can hold in a
    ``datetime``)."""
    return ticks - ticks % 10 + 10


def _fold(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", ascii_text.lower())


class _Person(NamedTuple):
    id: str
    name: str
    upn: str
    site: int


class _Party(NamedTuple):
    """A participant: who, how (user, guest, phone), and its participant_v2 object."""

    kind: str
    person: _Person | None
    phone: str | None
    participant: dict[str, Any]


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A small least-recently-used cache (callers hold the lock)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class _Plan(NamedTuple):
    """Where a record's sessions sit, in Graph's order, without their bodies (a few integers
    a session: cheap even for a town hall)."""

    numbers: tuple[int, ...]
    """The generation number of the session at each position (its body's seed)."""
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    callers: tuple[int, ...]
    """The index of each session's caller among the record's parties."""
    modalities: tuple[tuple[str, ...], ...]


# --------------------------------------------------------------------------- one tenant


class CallRecordSet:
    """One tenant's call records, generated lazily per UTC day of their start (cheap
    ``RecordInfo``s, cached per day) and per record (bodies, in small LRU caches)."""

    def __init__(self, seed: int, tenant_id: str, config: CallRecordsConfig) -> None:
        self.seed = seed
        self.tenant_id = tenant_id
        self.config = config
        self._days: dict[int, list[RecordInfo]] = {}
        self._by_id: dict[str, RecordInfo] = {}
        self._lock = threading.RLock()
        self._headers: _Lru[str, dict[str, Any]] = _Lru(4096)
        self._parties: _Lru[str, list[_Party]] = _Lru(256)
        self._plans: _Lru[str, _Plan] = _Lru(256)
        self._sessions: _Lru[tuple[str, int], dict[str, Any]] = _Lru(2048)
        self._listings: _Lru[tuple[int, int, int], list[RecordInfo]] = _Lru(16)
        self._people: list[_Person] | None = None
        self._crowd: list[_Person] = []
        """People beyond the directory, for meetings larger than it (grown on demand)."""

    # ---- records and their times

    def day(self, day_index: int) -> list[RecordInfo]:
        """The records starting on UTC day ``day_index`` (days since the epoch), by start."""
        with self._lock:
            found = self._days.get(day_index)
            if found is not None:
                return found
            rng = random.Random(f"{self.seed}:call_records:{day_index}")
            count = self.config.records_per_day
            base = day_index * TICKS_PER_DAY
            # The first record starts exactly at midnight, a window boundary.
            offsets = (
                sorted([0] + [rng.randrange(TICKS_PER_DAY) for _ in range(count - 1)])
                if count
                else []
            )
            huge = set(rng.sample(range(count), min(count, self.config.huge_per_day)))
            records = [self._info(rng, base + o, i in huge) for i, o in enumerate(offsets)]
            records.sort(key=lambda r: (r.start, r.id))
            self._days[day_index] = records
            for record in records:
                self._by_id[record.id] = record
            return records

    def _info(self, rng: random.Random, start: int, huge: bool) -> RecordInfo:
        low, high = self.config.sessions
        group = huge or rng.random() < 0.6
        if not group:
            seconds = min(2700, 20 + int(rng.expovariate(1 / 400)))
            sessions = low if rng.random() < 0.9 or low == high else low + 1
            participants = 2
        elif huge:
            seconds = rng.randint(45 * 60, 180 * 60)
            participants = rng.randint(*self.config.huge_participants)
            sessions = max(high, participants) if self.config.huge_session_per_attendee else high
        else:
            seconds = rng.randint(5 * 60, 90 * 60)
            # "Group calls typically have at least one session per participant."
            participants = min(40, 3 + int(rng.expovariate(1 / 5)))
            sessions = max(low, min(high, round(participants * rng.uniform(0.7, 1.4))))
        end = start + seconds * TICKS_PER_SECOND + rng.randrange(TICKS_PER_SECOND)
        record_id = _record_id(rng, start // TICKS_PER_DAY)
        delay = (
            rng.randint(15 * 60, 6 * 3600)
            if rng.random() < 0.85
            else rng.randint(6 * 3600, 30 * 3600)
        )
        available = _micro(end + delay * TICKS_PER_SECOND + rng.randrange(TICKS_PER_SECOND))
        created = max(_micro(end), available - rng.randint(0, 300) * TICKS_PER_SECOND)
        changes: list[Change] = []
        if rng.random() < self.config.change_rate:
            horizon = end + rng.randint(max(24 * 3600, delay + 1800), 40 * 3600) * TICKS_PER_SECOND
            times = sorted(
                {_micro(available + rng.randrange(horizon - available - 10)) for _ in range(3)}
            )[: rng.randint(1, 3)]
            kinds: list[tuple[str, int]] = []
            added = 0
            for _ in times:
                room = sessions - 1 - added
                if room >= 1 and rng.random() < 0.5:
                    count = rng.randint(1, min(3, room))
                    kinds.append((SESSION_ADDED, count))
                    added += count
                else:
                    kinds.append((METRIC_UPDATED, 1))
            base_sessions = sessions - added
            updated = rng.sample(
                range(base_sessions), min(base_sessions, sum(k == METRIC_UPDATED for k, _ in kinds))
            )
            first_added = base_sessions
            for at, (kind, count) in zip(times, kinds, strict=True):
                if kind == SESSION_ADDED:
                    changes.append(Change(at, kind, first_added, count))
                    first_added += count
                elif updated:
                    changes.append(Change(at, kind, updated.pop()))
        info = RecordInfo(
            id=record_id,
            start=start,
            end=end,
            type="groupCall" if group else "peerToPeer",
            sessions=sessions,
            participants=participants,
            huge=huge,
            created=created,
            available=available,
            changes=tuple(changes),
            deleted=end + self.config.retention_days * TICKS_PER_DAY,
        )
        return self._late(info)

    def _late(self, info: RecordInfo) -> RecordInfo:
        """``info`` with the rare lives the off-by-default knobs ask for: created late, changed
        late, failing. Drawn from a generator of the record's own, always in the same order,
        so no knob moves another's choices or any other record."""
        rng = random.Random(f"{self.seed}:{info.id}:late")
        create, change, fail = rng.random(), rng.random(), rng.random()
        config = self.config
        if create < config.late_create_rate:
            # The whole life moves: first seen 3-20 days after the call, then its usual changes.
            available = _micro(info.end + rng.randint(3 * DAY, 20 * DAY))
            shift = available - info.available
            info = replace(
                info,
                available=available,
                created=info.created + shift,
                changes=tuple(replace(c, at=c.at + shift) for c in info.changes),
            )
        if change < config.late_change_rate:
            at = _micro(info.end + rng.randint(2 * DAY, 25 * DAY))
            at = max(at, info.settled + MINUTE)  # after every other change, still < 25 days
            late = Change(at, METRIC_UPDATED, rng.randrange(info.sessions))
            info = replace(info, changes=(*info.changes, late))
        if fail < config.failing_rate:
            info = replace(info, failing=True)
        return info

    def between(self, start: int, end: int) -> list[RecordInfo]:
        """Every record (visible or not) starting in ``[start, end)``, in list order."""
        if end <= start:
            return []
        found: list[RecordInfo] = []
        for day_index in range(start // TICKS_PER_DAY, (end - 1) // TICKS_PER_DAY + 1):
            records = self.day(day_index)
            starts = [r.start for r in records]
            found.extend(records[bisect_left(starts, start) : bisect_left(starts, end)])
        return found

    def listing(self, start: int | None, end: int | None, now: int) -> list[RecordInfo]:
        """The records Graph lists at ``now`` whose start is in ``[start, end)`` (None: open)."""
        # Kept until their call's end + retention: a record may have started before that
        # edge by up to the longest call.
        low = now - self.config.retention_days * TICKS_PER_DAY - LONGEST_CALL
        low = low if start is None else max(start, low)
        high = now + 1 if end is None else min(end, now + 1)
        key = (low, high, now)
        with self._lock:
            cached = self._listings.get(key)
            if cached is None:
                cached = [r for r in self.between(low, high) if r.visible_at(now)]
                self._listings.put(key, cached)
            return cached

    def known(self) -> list[RecordInfo]:
        """Every record generated so far (the days asked for)."""
        with self._lock:
            return list(self._by_id.values())

    def find(self, record_id: str, now: int) -> RecordInfo | None:
        """The record with ``record_id`` (generating its day if needed and Graph may still
        keep it at ``now``)."""
        with self._lock:
            found = self._by_id.get(record_id.lower())
            if found is None:
                day_index = _day_of(record_id)
                today = now // TICKS_PER_DAY
                oldest = (now - self.config.retention_days * TICKS_PER_DAY - LONGEST_CALL) // DAY
                if oldest <= day_index <= today + 1:
                    self.day(day_index)
                    found = self._by_id.get(record_id.lower())
            return found

    # ---- people

    def _directory(self) -> list[_Person]:
        if self._people is None:
            rng = random.Random(f"{self.seed}:call_records:people")
            names = [(f, la) for f in _FIRST for la in _LAST]
            rng.shuffle(names)
            people: list[_Person] = []
            seen: set[str] = set()
            for number, (first, last) in enumerate(names):
                alias = f"{_fold(first) or 'user'}.{_fold(last) or 'user'}"
                if alias in seen:
                    alias = f"{alias}{number}"
                seen.add(alias)
                site = rng.choices(range(len(_SITES)), weights=_SITE_WEIGHTS)[0]
                people.append(
                    _Person(
                        str(uuid.uuid5(_PEOPLE_NS, f"{self.tenant_id}/{alias}")),
                        f"{first} {last}",
                        f"{alias}@contoso.com",
                        site,
                    )
                )
            self._people = people
        return self._people

    def _crowd_of(self, count: int) -> list[_Person]:
        """The first ``count`` people beyond the directory (the same ones every time): the
        rest of a company that turns up to a town hall."""
        while len(self._crowd) < count:
            number = len(self._crowd)
            first, last = _FIRST[number % len(_FIRST)], _LAST[number // len(_FIRST) % len(_LAST)]
            alias = f"{_fold(first) or 'user'}.{_fold(last) or 'user'}.{number}"
            site = random.Random(f"{self.seed}:call_records:crowd:{number}").choices(
                range(len(_SITES)), weights=_SITE_WEIGHTS
            )[0]
            self._crowd.append(
                _Person(
                    str(uuid.uuid5(_PEOPLE_NS, f"{self.tenant_id}/{alias}")),
                    f"{first} {last}",
                    f"{alias}@contoso.com",
                    site,
                )
            )
        return self._crowd[:count]

    def _user(self, person: _Person, principal: bool = False) -> dict[str, Any]:
        user = {"id": person.id, "displayName": person.name, "tenantId": self.tenant_id}
        if principal:
            user["userPrincipalName"] = person.upn
        return user

    def _organizer(self, info: RecordInfo) -> _Person:
        people = self._directory()
        return people[random.Random(f"{self.seed}:{info.id}:organizer").randrange(len(people))]

    def parties(self, info: RecordInfo) -> list[_Party]:
        """The record's participants, the organizer first."""
        with self._lock:
            cached = self._parties.get(info.id)
            if cached is not None:
                return cached
            rng = random.Random(f"{self.seed}:{info.id}:participants")
            organizer = self._organizer(info)
            people = [p for p in self._directory() if p.id != organizer.id]
            if info.participants - 1 > len(people):  # a meeting larger than the directory
                people += self._crowd_of(info.participants - 1 - len(people))
            others = rng.sample(people, info.participants - 1)
            phones: set[str] = set()
            parties = [self._party("user", organizer, rng, phones)]
            for person in others:
                draw = rng.random()
                kind = "phone" if draw < 0.06 else "guest" if draw < 0.11 else "user"
                parties.append(self._party(kind, person, rng, phones))
            self._parties.put(info.id, parties)
            return parties

    def _party(self, kind: str, person: _Person, rng: random.Random, phones: set[str]) -> _Party:
        """A participant; a phone number not among ``phones`` (the record's, added to)."""
        identity: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.communicationsIdentitySet",
            **dict.fromkeys(
                (
                    "acsUser",
                    "spoolUser",
                    "phone",
                    "guest",
                    "encrypted",
                    "onPremises",
                    "acsApplicationInstance",
                    "spoolApplicationInstance",
                    "applicationInstance",
                    "application",
                    "device",
                    "user",
                )
            ),
        }
        phone: str | None = None
        if kind == "phone":
            phone = ""
            while not phone or phone in phones:  # a town hall's callers have distinct numbers
                phone = "+1425555" + "".join(rng.choice("0123456789") for _ in range(4))
            phones.add(phone)
            identity["phone"] = {"id": phone, "displayName": None, "tenantId": None}
            participant_id = phone
        elif kind == "guest":
            participant_id = _guid(rng)
            identity["guest"] = {
                "id": participant_id,
                "displayName": f"{person.name} (Guest)",
                "tenantId": None,
            }
        else:
            participant_id = person.id
            identity["user"] = {
                "@odata.type": "#microsoft.graph.userIdentity",
                **self._user(person, principal=True),
            }
        participant = {"id": participant_id, "identity": identity, "administrativeUnitInfos": []}
        return _Party(kind, person, phone, participant)

    # ---- record bodies

    def _header(self, info: RecordInfo) -> dict[str, Any]:
        """The record's own properties that never change, in Graph's order."""
        with self._lock:
            cached = self._headers.get(info.id)
            if cached is not None:
                return cached
            rng = random.Random(f"{self.seed}:{info.id}:header")
            modalities = ["audio"]
            if rng.random() < 0.55:
                modalities.append("video")
            if info.type == "groupCall" and rng.random() < 0.3:
                modalities.append("screenSharing")
            if rng.random() < 0.1:
                modalities.append("videoBasedScreenSharing")
            if rng.random() < 0.05:
                modalities.append("data")
            organizer = self._organizer(info)
            join = None
            if info.type == "groupCall":
                thread = base64.b32encode(rng.randbytes(20)).decode().lower().rstrip("=")
                join = (
                    f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{thread}"
                    f"%40thread.v2/0?context=%7b%22Tid%22%3a%22{self.tenant_id}%22%2c%22Oid"
                    f"%22%3a%22{organizer.id}%22%7d"
                )
            header: dict[str, Any] = {
                "type": info.type,
                "modalities": modalities,
                "startDateTime": stamp(info.start),
                "endDateTime": stamp(info.end),
                "joinWebUrl": join,
                "organizer_v2": {
                    "id": organizer.id,
                    "identity": {"user": self._user(organizer)},
                },
            }
            if rng.random() < 0.03:  # a property the collector has never heard of
                header["futureProperty"] = {
                    "addedBy": "a later Graph release",
                    "n": rng.randint(0, 9),
                }
            self._headers.put(info.id, header)
            return header

    def record_at(self, info: RecordInfo, now: int) -> dict[str, Any]:
        """The record as Graph returns it at ``now``, without relationships or annotations."""
        header = self._header(info)
        record: dict[str, Any] = {
            "id": info.id,
            "version": info.version_at(now),
            "type": header["type"],
            "modalities": header["modalities"],
            "lastModifiedDateTime": stamp(info.modified_at(now)),
        }
        record.update((k, v) for k, v in header.items() if k not in record)
        return record

    def _plan(self, info: RecordInfo) -> _Plan:
        """The record's sessions' times, callers and modalities, in Graph's order (the first
        session, then by start)."""
        with self._lock:
            cached = self._plans.get(info.id)
            if cached is not None:
                return cached
            rng = random.Random(f"{self.seed}:{info.id}:sessions")
            parties = len(self.parties(info))
            modalities = tuple(self._header(info)["modalities"])
            span = info.end - info.start
            group = info.type == "groupCall"
            rows: list[tuple[int, int, int, int, tuple[str, ...]]] = []
            for number in range(info.sessions):
                if number == 0 or not group:
                    start, end = info.start, info.end
                else:
                    start = info.start + rng.randrange(max(1, span * 3 // 4))
                    end = min(info.end, start + rng.randrange(MINUTE, max(MINUTE + 1, span)))
                caller = (
                    number % 2
                    if not group
                    else number
                    if number < parties
                    else rng.randrange(parties)
                )
                chosen = (
                    modalities
                    if number == 0
                    else ("audio", *(m for m in modalities[1:] if rng.random() < 0.5))
                )
                rows.append((number, start, end, caller, chosen))
            rows.sort(key=lambda row: (row[0] != 0, row[1], row[0]))
            numbers, starts, ends, callers, chosen_modalities = zip(*rows, strict=True)
            plan = _Plan(numbers, starts, ends, callers, chosen_modalities)
            self._plans.put(info.id, plan)
            return plan

    def session(self, info: RecordInfo, position: int) -> dict[str, Any]:
        """The session at ``position`` (in Graph's order) as the final version holds it, with
        its segments; generated on its own (from a generator seeded by the record and the
        session), so a page of a town hall costs a page's work."""
        key = (info.id, position)
        with self._lock:
            cached = self._sessions.get(key)
        if cached is not None:
            return cached
        plan = self._plan(info)
        parties = self.parties(info)
        number = plan.numbers[position]
        rng = random.Random(f"{self.seed}:{info.id}:session:{number}")
        group = info.type == "groupCall"
        callee = None if group else parties[(plan.callers[position] + 1) % 2]
        built = self._session(
            rng,
            info,
            plan.starts[position],
            plan.ends[position],
            list(plan.modalities[position]),
            parties[plan.callers[position]],
            callee,
        )
        with self._lock:
            self._sessions.put(key, built)
        return built

    def _endpoint(self, rng: random.Random, party: _Party | None) -> dict[str, Any]:
        if party is None:  # the conferencing service
            return {
                "@odata.type": "#microsoft.graph.callRecords.serviceEndpoint",
                "name": None,
                "userAgent": {
                    "@odata.type": "#microsoft.graph.callRecords.serviceUserAgent",
                    "headerValue": "av-mcu/2024.7.5.2 (Microsoft Teams conferencing)",
                    "role": "conferencing",
                    "applicationVersion": None,
                },
            }
        if party.kind == "phone":
            agent: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.callRecords.clientUserAgent",
                "headerValue": "PSTN Gateway",
                "applicationVersion": None,
                "platform": "unknown",
                "productFamily": "unknown",
                "azureADAppId": None,
                "communicationServiceId": None,
            }
            identity: dict[str, Any] = {"phone": party.participant["identity"]["phone"]}
        else:
            platform, version, header = rng.choice(_AGENTS)
            agent = {
                "@odata.type": "#microsoft.graph.callRecords.clientUserAgent",
                "headerValue": header,
                "applicationVersion": version,
                "platform": platform,
                "productFamily": "teams",
                "azureADAppId": None,
                "communicationServiceId": None,
            }
            identity = (
                {"guest": party.participant["identity"]["guest"]}
                if party.kind == "guest"
                else {"user": self._user(party.person)}
                if party.person is not None
                else {}
            )
        cpu, cores, speed = rng.choice(_CPUS)
        endpoint: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.callRecords.participantEndpoint",
            "name": f"machineName_{rng.randint(1, 999)}",
            "cpuName": cpu,
            "cpuCoresCount": cores,
            "cpuProcessorSpeedInMhz": speed,
            "userAgent": agent,
            "identity": {"@odata.type": "#microsoft.graph.identitySet", **identity},
        }
        if rng.random() < 0.1:
            endpoint["feedback"] = {
                "@odata.type": "#microsoft.graph.callRecords.userFeedback",
                "rating": rng.choice(("poor", "fair", "good", "excellent")),
                "text": None,
                "tokens": {
                    "NoSound": False,
                    "Echo": rng.random() < 0.3,
                    "Noisy": rng.random() < 0.3,
                },
            }
        return endpoint

    def _session(
        self,
        rng: random.Random,
        info: RecordInfo,
        start: int,
        end: int,
        modalities: list[str],
        caller_party: _Party,
        callee_party: _Party | None,
    ) -> dict[str, Any]:
        caller = self._endpoint(rng, caller_party)
        callee = self._endpoint(rng, callee_party)
        caller_site = self._site(rng, caller_party)
        callee_site = _SERVICE if callee_party is None else self._site(rng, callee_party)
        failure = None
        if rng.random() < 0.04:
            stage, reason = rng.choice(_FAILURES)
            failure = {"stage": stage, "reason": reason}
        # A capped huge meeting's few sessions stand for many people: long, many segments.
        many = info.huge and not info.town_hall
        count = rng.randint(3, 5) if many else (2 if rng.random() < 0.15 else 1)
        bounds = sorted(
            [start, end] + [start + rng.randrange(max(1, end - start)) for _ in range(count - 1)]
        )
        segments: list[dict[str, Any]] = []
        for number in range(count):
            segment: dict[str, Any] = {
                "id": _guid(rng),
                "startDateTime": stamp(bounds[number]),
                "endDateTime": stamp(bounds[number + 1]),
                "caller": caller,
                "callee": callee,
            }
            if failure is not None and number == count - 1:
                segment["failureInfo"] = failure
            segment["media"] = [
                self._media(rng, m, bounds[number], bounds[number + 1], caller_site, callee_site)
                for m in modalities
            ]
            segments.append(segment)
        session: dict[str, Any] = {
            "id": _guid(rng),
            "modalities": modalities,
            "startDateTime": stamp(start),
            "endDateTime": stamp(end),
            "isTest": False,
            "caller": caller,
            "callee": callee,
        }
        if failure is not None:
            session["failureInfo"] = failure
        session["segments"] = segments
        return session

    @staticmethod
    def _site(rng: random.Random, party: _Party) -> _Site:
        if party.kind == "phone" or party.person is None:
            return _PSTN
        draw = rng.random()
        return _SITES[_HOME if draw < 0.15 else _MOBILE if draw < 0.2 else party.person.site]

    def _media(
        self,
        rng: random.Random,
        modality: str,
        start: int,
        end: int,
        caller_site: _Site,
        callee_site: _Site,
    ) -> dict[str, Any]:
        return {
            "label": _LABELS[modality],
            "callerNetwork": _network(rng, caller_site),
            "calleeNetwork": _network(rng, callee_site),
            "callerDevice": _device(rng, modality),
            "calleeDevice": _device(rng, modality),
            "streams": [
                _stream(rng, direction, modality, start, end, site, callee_site is _PSTN)
                for direction, site in (
                    ("callerToCallee", caller_site),
                    ("calleeToCaller", caller_site),
                )
            ],
        }

    def sessions_at(
        self,
        info: RecordInfo,
        now: int,
        start: int = 0,
        count: int | None = None,
        *,
        segments: bool,
    ) -> list[dict[str, Any]]:
        """Sessions ``start`` .. ``start + count`` as the record holds them at ``now``."""
        visible = info.sessions_at(now)
        stop = visible if count is None else min(visible, start + count)
        pending = Counter(
            c.session for c in info.changes if c.kind == METRIC_UPDATED and c.at > now
        )
        found: list[dict[str, Any]] = []
        for position in range(start, stop):
            session = self.session(info, position)
            for _ in range(pending[position]):  # the readings before its updates, newest last
                session = _earlier(session)
            found.append(
                session if segments else {k: v for k, v in session.items() if k != "segments"}
            )
        return found

    def participants(self, info: RecordInfo) -> list[dict[str, Any]]:
        """The record's ``participants_v2``, in order."""
        return [party.participant for party in self.parties(info)]

    def merged(self, info: RecordInfo, now: int) -> dict[str, Any]:
        """The record at ``now`` with every session (and its segments) and participant, as
        the collector archives it (a copy the caller may change)."""
        record = self.record_at(info, now)
        record["sessions"] = self.sessions_at(info, now, segments=True)
        record["participants_v2"] = self.participants(info)
        copy: dict[str, Any] = orjson.loads(orjson.dumps(record))
        return copy


def _earlier(session: dict[str, Any]) -> dict[str, Any]:
    """``session`` as it read before its first stream's metrics were updated (a copy): each
    update before it leaves a different reading, so every version differs."""
    earlier: dict[str, Any] = orjson.loads(orjson.dumps(session))
    stream = earlier["segments"][0]["media"][0]["streams"][0]
    loss = stream["averagePacketLossRate"]
    stream["averagePacketLossRate"] = round(loss + 0.05 if loss < 0.05 else loss / 2, 4)
    rtt = "PT0.999S" if stream["averageRoundTripTime"] != "PT0.999S" else "PT0.998S"
    stream["averageRoundTripTime"] = rtt
    return earlier


def _network(rng: random.Random, site: _Site) -> dict[str, Any]:
    wifi = site.connection == "wifi"
    poorish = site.poor > 0.2
    ratio = round(rng.uniform(0.05, 0.4) if poorish else rng.uniform(0, 0.03), 3)
    return {
        "ipAddress": f"{site.prefix}.{rng.randint(2, 254)}",
        "subnet": f"{site.prefix}.0",
        "connectionType": site.connection,
        "linkSpeed": rng.choice((144_000_000, 866_700_000, 54_000_000))
        if wifi
        else 10_000_000_000
        if site is _SERVICE
        else 1_000_000_000,
        "reflexiveIPAddress": f"{site.public}.{rng.randint(2, 254)}",
        "relayIPAddress": f"52.115.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
        "relayPort": rng.randint(3478, 3481),
        "port": rng.randint(50_000, 50_059),
        "macAddress": "02:00:00:00:00:00"
        if rng.random() < 0.3
        else ":".join(f"{rng.randrange(256):02X}" for _ in range(6)),
        "networkTransportProtocol": "tcp" if rng.random() < 0.05 else "udp",
        "dnsSuffix": None
        if site.prefix.startswith(("192.", "52.", "100."))
        else "corp.contoso.com",
        "bandwidthLowEventRatio": ratio,
        "delayEventRatio": round(ratio / 2, 3),
        "receivedQualityEventRatio": ratio,
        "sentQualityEventRatio": round(ratio * 0.8, 3),
        "basicServiceSetIdentifier": ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
        if wifi
        else None,
        "wifiBand": rng.choice(("frequency24GHz", "frequency50GHz")) if wifi else None,
        "wifiChannel": rng.choice((1, 6, 11, 36, 44, 149)) if wifi else None,
        "wifiRadioType": rng.choice(("wifi80211n", "wifi80211ac", "wifi80211ax")) if wifi else None,
        "wifiSignalStrength": rng.randint(20, 100) if wifi else None,
        "wifiBatteryCharge": rng.randint(5, 100) if wifi else None,
        "wifiMicrosoftDriver": "Microsoft Wi-Fi Direct Virtual Adapter" if wifi else None,
        "wifiMicrosoftDriverVersion": "10.0.22621.1" if wifi else None,
        "wifiVendorDriver": "Intel(R) Wi-Fi 6E AX211 160MHz" if wifi else None,
        "wifiVendorDriverVersion": "23.30.0.6" if wifi else None,
        "traceRouteHops": [],
    }


def _device(rng: random.Random, modality: str) -> dict[str, Any]:
    capture, render = rng.choice(_DEVICES)
    audio = modality == "audio"
    return {
        "captureDeviceName": capture if audio else None,
        "captureDeviceDriver": "Microsoft: 10.0.22621.3672" if audio else None,
        "renderDeviceName": render if audio else None,
        "renderDeviceDriver": "Microsoft: 10.0.22621.3672" if audio else None,
        "receivedSignalLevel": rng.randint(-40, -5) if audio else None,
        "receivedNoiseLevel": rng.randint(-90, -50) if audio else None,
        "sentSignalLevel": rng.randint(-40, -5) if audio else None,
        "sentNoiseLevel": rng.randint(-90, -50) if audio else None,
        "initialSignalLevelRootMeanSquare": round(rng.uniform(10, 200), 2) if audio else None,
        "speakerGlitchRate": round(rng.uniform(0, 30), 2) if audio else None,
        "micGlitchRate": round(rng.uniform(0, 30), 2) if audio else None,
        "howlingEventCount": rng.randint(0, 2) if audio else None,
        "lowSpeechLevelEventRatio": round(rng.uniform(0, 0.1), 3) if audio else None,
        "lowSpeechToNoiseEventRatio": round(rng.uniform(0, 0.1), 3) if audio else None,
        "deviceGlitchEventRatio": round(rng.uniform(0, 0.05), 3) if audio else None,
        "deviceClippingEventRatio": round(rng.uniform(0, 0.05), 3) if audio else None,
        "cpuInsufficentEventRatio": round(rng.uniform(0, 0.05), 3),
        "captureNotFunctioningEventRatio": 0.0,
        "renderNotFunctioningEventRatio": 0.0,
        "renderMuteEventRatio": 0.0,
        "renderZeroVolumeEventRatio": 0.0,
    }


def _stream(
    rng: random.Random,
    direction: str,
    modality: str,
    start: int,
    end: int,
    site: _Site,
    pstn: bool,
) -> dict[str, Any]:
    poor = rng.random() < site.poor
    loss = rng.uniform(0.1, 0.35) if poor else rng.uniform(0, 0.02)
    jitter = rng.randint(31, 150) if poor else rng.randint(1, 20)
    rtt = rng.randint(501, 1600) if poor else rng.randint(15, 180)
    audio, video = modality == "audio", modality != "audio" and modality != "data"
    packets = rng.randint(2**32, 2**40) if rng.random() < 0.01 else rng.randint(1_000, 5_000_000)
    return {
        "streamId": str(rng.randint(10**8, 4 * 10**9)),
        "streamDirection": direction,
        "startDateTime": stamp(start),
        "endDateTime": stamp(end),
        "averagePacketLossRate": round(loss, 4),
        "maxPacketLossRate": round(min(1.0, loss + rng.uniform(0, 0.2)), 4),
        "averageJitter": _duration(jitter),
        "maxJitter": _duration(jitter + rng.randint(0, 60)),
        "averageRoundTripTime": _duration(rtt),
        "maxRoundTripTime": _duration(rtt + rng.randint(0, 400)),
        "averageAudioDegradation": (
            round(rng.uniform(1.0, 3.5) if poor else rng.uniform(0, 0.6), 2) if audio else None
        ),
        "averageAudioNetworkJitter": _duration(jitter) if audio else None,
        "maxAudioNetworkJitter": _duration(jitter + rng.randint(0, 40)) if audio else None,
        "averageRatioOfConcealedSamples": round(loss / 2, 4) if audio else None,
        "maxRatioOfConcealedSamples": round(min(1.0, loss), 4) if audio else None,
        "audioCodec": rng.choice(("satin", "opus", "silkWide")) if audio else None,
        "isAudioForwardErrorCorrectionUsed": (rng.random() < 0.3) if audio else None,
        "postForwardErrorCorrectionPacketLossRate": round(loss / 3, 4),
        "averageBandwidthEstimate": rng.randint(50_000, 40_000_000),
        "packetUtilization": packets,
        "wasMediaBypassed": pstn and rng.random() < 0.5,
        "videoCodec": rng.choice(("h264", "av1", "h264s")) if video else None,
        "averageVideoFrameRate": round(rng.uniform(7, 30), 2) if video else None,
        "averageReceivedFrameRate": round(rng.uniform(7, 30), 2) if video else None,
        "lowFrameRateRatio": round(rng.uniform(0, 0.3 if poor else 0.05), 3) if video else None,
        "averageVideoPacketLossRate": round(loss, 4) if video else None,
        "averageVideoFrameLossPercentage": round(loss * 100, 2) if video else None,
        "averageFreezeDuration": _duration(rng.randint(0, 900)) if video else None,
        "rmsFreezeDuration": _duration(rng.randint(0, 1200)) if video else None,
        "lowVideoProcessingCapabilityRatio": round(rng.uniform(0, 0.05), 3) if video else None,
    }
