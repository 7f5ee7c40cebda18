"""Full Teams call records in the Graph simulator: synthetic records, their life in time,
the documented HTTP API and its throttling limits.

What Microsoft documents, and what is served here (Graph v1.0 and beta, ``CallRecords.Read.All``):

- List callRecords, ``GET /communications/callRecords``: ``$filter`` only on ``startDateTime``
  (``lt``, ``le``, ``gt``, ``ge``; the examples write the DateTimeOffset unquoted,
  ``startDateTime ge 2023-09-25T09:25:00Z``) and on ``participants_v2/any(p:p/id eq '…')``;
  listed records carry no ``sessions`` and no ``participants_v2``; default page size 60;
  ``Prefer: odata.maxpagesize``; nothing older than 30 days.
  https://learn.microsoft.com/en-us/graph/api/callrecords-cloudcommunications-list-callrecords?view=graph-rest-1.0
- Get callRecord, ``GET /communications/callRecords/{id}``: ``$expand`` of a *single*
  relationship (``participants_v2``, or ``sessions`` and ``segments``); ``organizer_v2`` is
  expanded by default; ``participants_v2`` only comes when expanded (else just its
  ``participants_v2@odata.context``); more sessions follow ``sessions@odata.nextLink``; maximum
  page sizes 60 sessions and 130 participants; a record older than 30 days is a 404.
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-get?view=graph-rest-1.0
- List sessions, ``GET /communications/callRecords/{id}/sessions[?$expand=segments]`` (at most
  60 a page) and List participants_v2, ``GET /communications/callRecords/{id}/participants_v2``
  (at most 130 a page), paged with ``@odata.nextLink``.
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-list-sessions?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-list-participants_v2?view=graph-rest-1.0
- Resources: callRecord (``organizer``/``participants`` are deprecated and stop returning data
  on 2026-06-30, so they are not served), session, segment, media, mediaStream, networkInfo,
  participantEndpoint, clientUserAgent, deviceInfo, participant, failureInfo.
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-callrecord?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-session?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-segment?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-media?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-mediastream?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-networkinfo?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-participantendpoint?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-clientuseragent?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-deviceinfo?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-participant?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-failureinfo?view=graph-rest-1.0
- Throttling, "Call records limits": 10,000 requests per 20 s per tenant, 1,500 per 20 s per
  application per tenant, and per call record 10 requests per 20 s (first page) and 50 per
  5 minutes (subsequent pages).
  https://learn.microsoft.com/en-us/graph/throttling-limits#call-records-limits

Where the docs are silent, this module chooses (and says so where it does): the default page
size of sessions (20, at most 60) and of participants (130), the list order (start, then id),
keyset ``$skiptoken``s, a first page being any request without ``$skiptoken``, expanding both
relationships at once being refused (``multi_expand`` allows it), a quoted or date-only
DateTimeOffset being refused as OData refuses it, and how late records appear and change.

Time: each record appears some time after its call ended (15 min to 6 h, some up to 30 h),
may change until it settles (``version`` up, ``lastModifiedDateTime`` later: a session added
or a stream's metrics updated; never later than 40 h after the call ended), and is gone
``retention_days`` (30) after its start. The clock is ``CallRecords.now`` (None: real time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import random
import re
import threading
import time
import unicodedata
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote

import orjson
from aiohttp import web

from collector.core.errors import InstantParseError
from collector.core.timefmt import TICKS_PER_SECOND, parse_ticks, to_ticks

from .graph_errors import graph_error
from .identity import TENANT_ID
from .synthetic import TICKS_PER_DAY, format_ticks

if TYPE_CHECKING:
    from .graph_simulator import Fault, GraphSimulator

SOURCE = "call_records"
"""The ``source`` of the simulator's faults that hit call-record requests."""
LIST_PAGE_SIZE = 60
"""Records a list page holds (documented default; also its maximum here)."""
SESSIONS_PAGE_SIZE = 20
"""Sessions a page holds by default (undocumented; the documented maximum is 60)."""
SESSIONS_MAX_PAGE_SIZE = 60
PARTICIPANTS_PAGE_SIZE = 130
"""Participants a page holds (the documented maximum; the default is undocumented)."""
PARTICIPANTS_MAX_PAGE_SIZE = 130
RETENTION_DAYS = 30

MINUTE = 60 * TICKS_PER_SECOND
HOUR = 60 * MINUTE
SESSION_ADDED = "session_added"
METRIC_UPDATED = "metric_updated"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# --------------------------------------------------------------------------- knobs


@dataclass(frozen=True)
class CallRecordsConfig:
    """What a tenant's synthetic call records look like (the same seed and knobs always give
    the same records)."""

    records_per_day: int = 120
    sessions: tuple[int, int] = (1, 50)
    """Fewest and most sessions a record has: peer-to-peer calls have the fewest (or one
    more), group calls a skewed count in between, huge meetings the most."""
    huge_per_day: int = 1
    """Huge meetings a day (hundreds of participants, the most sessions; megabytes)."""
    huge_participants: tuple[int, int] = (200, 600)
    retention_days: int = RETENTION_DAYS
    change_rate: float = 0.35
    """Share of records that change (1-3 times) after they first appear."""

    def __post_init__(self) -> None:
        low, high = self.sessions
        if not 1 <= low <= high:
            raise ValueError(f"sessions must be 1 <= low <= high, not {self.sessions}")
        if not 1 <= self.huge_participants[0] <= self.huge_participants[1] <= 890:
            raise ValueError("huge_participants must lie within 1..890")


@dataclass(frozen=True)
class CallRecordLimits:
    """Graph's documented call-records limits (periods in seconds)."""

    per_app: int = 1_500
    per_tenant: int = 10_000
    period: float = 20.0
    record_first: int = 10
    record_first_period: float = 20.0
    record_later: int = 50
    record_later_period: float = 300.0


# --------------------------------------------------------------------------- records in time


@dataclass(frozen=True, slots=True)
class Change:
    """A change of a record after it first appeared: ``at`` (ticks) it gets a new version."""

    at: int
    kind: str
    """``session_added`` (sessions ``session`` .. ``session + count - 1`` appear) or
    ``metric_updated`` (session ``session``'s first stream gets its final metrics)."""
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
    """From this instant on (``retention_days`` after the start), the record is gone."""

    @property
    def settled(self) -> int:
        """The instant of the last change (the record never changes after it)."""
        return self.changes[-1].at if self.changes else self.available

    @property
    def final_version(self) -> int:
        return 1 + len(self.changes)

    def visible_at(self, now: int) -> bool:
        """Whether Graph lists and returns the record at ``now``."""
        return self.available <= now < self.deleted

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
_OPERATORS = {
    "ge": "GreaterThanOrEqual",
    "gt": "GreaterThan",
    "le": "LessThanOrEqual",
    "lt": "LessThan",
}
_RECORD_PROPERTIES = frozenset(
    {
        "id",
        "version",
        "type",
        "modalities",
        "lastModifiedDateTime",
        "startDateTime",
        "endDateTime",
        "joinWebUrl",
        "organizer",
        "participants",
        "organizer_v2",
    }
)
_SESSION_PROPERTIES = frozenset(
    {
        "id",
        "caller",
        "callee",
        "failureInfo",
        "modalities",
        "startDateTime",
        "endDateTime",
        "isTest",
    }
)
_PARTICIPANT_PROPERTIES = frozenset({"id", "identity", "administrativeUnitInfos"})


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


def _stamp(ticks: int) -> str:
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


class _Detail(NamedTuple):
    sessions: list[dict[str, Any]]
    """Every session of the final version (with segments), in order."""
    preliminary: dict[int, dict[str, Any]]
    """Sessions as they read before their ``metric_updated`` change."""


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
        self._details: _Lru[str, _Detail] = _Lru(128)
        self._listings: _Lru[tuple[int, int, int], list[RecordInfo]] = _Lru(16)
        self._people: list[_Person] | None = None

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
            sessions = high
            participants = rng.randint(*self.config.huge_participants)
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
        return RecordInfo(
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
            deleted=start + self.config.retention_days * TICKS_PER_DAY,
        )

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
        low = now - self.config.retention_days * TICKS_PER_DAY
        low = low if start is None else max(start, low)
        high = now + 1 if end is None else min(end, now + 1)
        key = (low, high, now)
        with self._lock:
            cached = self._listings.get(key)
            if cached is None:
                cached = [r for r in self.between(low, high) if r.visible_at(now)]
                self._listings.put(key, cached)
            return cached

    def find(self, record_id: str, now: int) -> RecordInfo | None:
        """The record with ``record_id`` (generating its day if needed and Graph may still
        keep it at ``now``)."""
        with self._lock:
            found = self._by_id.get(record_id.lower())
            if found is None:
                day_index = _day_of(record_id)
                today = now // TICKS_PER_DAY
                if today - self.config.retention_days - 1 <= day_index <= today + 1:
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
            others = rng.sample(people, info.participants - 1)
            parties = [self._party("user", organizer, rng)]
            for person in others:
                draw = rng.random()
                kind = "phone" if draw < 0.06 else "guest" if draw < 0.11 else "user"
                parties.append(self._party(kind, person, rng))
            self._parties.put(info.id, parties)
            return parties

    def _party(self, kind: str, person: _Person, rng: random.Random) -> _Party:
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
            phone = "+1425555" + "".join(rng.choice("0123456789") for _ in range(4))
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
                "startDateTime": _stamp(info.start),
                "endDateTime": _stamp(info.end),
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
            "lastModifiedDateTime": _stamp(info.modified_at(now)),
        }
        record.update((k, v) for k, v in header.items() if k not in record)
        return record

    def _detail(self, info: RecordInfo) -> _Detail:
        with self._lock:
            cached = self._details.get(info.id)
            if cached is None:
                cached = self._build(info)
                self._details.put(info.id, cached)
            return cached

    def _build(self, info: RecordInfo) -> _Detail:
        rng = random.Random(f"{self.seed}:{info.id}:sessions")
        parties = self.parties(info)
        modalities: list[str] = self._header(info)["modalities"]
        span = info.end - info.start
        group = info.type == "groupCall"
        sessions: list[dict[str, Any]] = []
        for number in range(info.sessions):
            if number == 0 or not group:
                start, end = info.start, info.end
            else:
                start = info.start + rng.randrange(max(1, span * 3 // 4))
                end = min(info.end, start + rng.randrange(MINUTE, max(MINUTE + 1, span)))
            caller_party = (
                parties[number % 2 if not group else number]
                if (not group or number < len(parties))
                else rng.choice(parties)
            )
            callee_party = parties[(number + 1) % 2] if not group else None
            chosen = (
                modalities
                if number == 0
                else ["audio"] + [m for m in modalities[1:] if rng.random() < 0.5]
            )
            sessions.append(
                self._session(rng, info, start, end, chosen, caller_party, callee_party)
            )
        order = sorted(range(len(sessions)), key=lambda i: (i != 0, sessions[i]["startDateTime"]))
        sessions = [sessions[i] for i in order]
        preliminary: dict[int, dict[str, Any]] = {}
        for change in info.changes:
            if change.kind == METRIC_UPDATED:
                earlier = orjson.loads(orjson.dumps(sessions[change.session]))
                stream = earlier["segments"][0]["media"][0]["streams"][0]
                loss = stream["averagePacketLossRate"]
                stream["averagePacketLossRate"] = round(loss + 0.05 if loss < 0.05 else loss / 2, 4)
                rtt = "PT0.999S" if stream["averageRoundTripTime"] != "PT0.999S" else "PT0.998S"
                stream["averageRoundTripTime"] = rtt
                preliminary[change.session] = earlier
        return _Detail(sessions, preliminary)

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
        count = rng.randint(3, 5) if info.huge else (2 if rng.random() < 0.15 else 1)
        bounds = sorted(
            [start, end] + [start + rng.randrange(max(1, end - start)) for _ in range(count - 1)]
        )
        segments: list[dict[str, Any]] = []
        for number in range(count):
            segment: dict[str, Any] = {
                "id": _guid(rng),
                "startDateTime": _stamp(bounds[number]),
                "endDateTime": _stamp(bounds[number + 1]),
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
            "startDateTime": _stamp(start),
            "endDateTime": _stamp(end),
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
        detail = self._detail(info)
        visible = info.sessions_at(now)
        stop = visible if count is None else min(visible, start + count)
        pending = {
            c.session: detail.preliminary[c.session]
            for c in info.changes
            if c.kind == METRIC_UPDATED and c.at > now
        }
        found: list[dict[str, Any]] = []
        for number in range(start, stop):
            session = pending.get(number, detail.sessions[number])
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
        "startDateTime": _stamp(start),
        "endDateTime": _stamp(end),
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


# --------------------------------------------------------------------------- limits


class _Limiter:
    """Sliding-window request counts per limit key, in real (monotonic) time."""

    def __init__(self, limits: CallRecordLimits) -> None:
        self.limits = limits
        self._starts: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()
        self._admitted = 0

    def admit(
        self, tenant: str, app: str, record: str | None, later: bool
    ) -> tuple[str, float] | None:
        """None when the request is within every limit (then counted), else the limit it
        exceeds and the seconds until a slot frees."""
        limits = self.limits
        checks: list[tuple[str, tuple[str, ...], int, float]] = []
        if record is not None:
            if later:
                checks.append(
                    (
                        "record_later",
                        ("later", tenant, record),
                        limits.record_later,
                        limits.record_later_period,
                    )
                )
            else:
                checks.append(
                    (
                        "record_first",
                        ("first", tenant, record),
                        limits.record_first,
                        limits.record_first_period,
                    )
                )
        checks.append(("app", ("app", tenant, app), limits.per_app, limits.period))
        checks.append(("tenant", ("tenant", tenant), limits.per_tenant, limits.period))
        now = time.monotonic()
        with self._lock:
            windows: list[deque[float]] = []
            for name, key, limit, period in checks:
                window = self._starts.setdefault(key, deque())
                while window and window[0] <= now - period:
                    window.popleft()
                if len(window) >= limit:
                    return name, window[0] + period - now
                windows.append(window)
            for window in windows:
                window.append(now)
            self._admitted += 1
            if self._admitted % 4096 == 0:  # forget records nobody asks for any more
                longest = max(limits.period, limits.record_first_period, limits.record_later_period)
                self._starts = {
                    k: w for k, w in self._starts.items() if w and w[-1] > now - longest
                }
        return None


# --------------------------------------------------------------------------- HTTP


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_allowed(option: str) -> _Problem:
    return _Problem(
        400,
        "BadRequest",
        f"Query option '{option.lstrip('$').capitalize()}' is not allowed. To allow it, set "
        "the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
    )


def _check_options(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for name in query:
        if name.startswith("$") and name.lower() not in allowed:
            raise _not_allowed(name)


_TIME_CLAUSE = re.compile(r"startDateTime\s+(\w+)\s+(\S+)", re.IGNORECASE)
_PARTICIPANT_CLAUSE = re.compile(
    r"participants_v2/any\(\s*(\w+)\s*:\s*(\w+)/id\s+eq\s+'([^']*)'\s*\)", re.IGNORECASE
)
_DATE_TIME_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)


@dataclass
class Filter:
    """A parsed list ``$filter``: start bounds ``[start, end)`` in ticks, a participant."""

    start: int | None = None
    end: int | None = None
    participant: str | None = None


def parse_filter(text: str) -> Filter:
    """Parse the ``$filter`` Graph supports on call records (raise ``_Problem`` otherwise)."""
    found = Filter()
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        participant = _PARTICIPANT_CLAUSE.fullmatch(clause)
        if participant is not None and participant[1] == participant[2]:
            found.participant = participant[3].lower()
            continue
        match = _TIME_CLAUSE.fullmatch(clause)
        if match is None or match[1].lower() not in _OPERATORS:
            raise _Problem(
                400,
                "BadRequest",
                f"Invalid filter clause: '{clause}'. Only startDateTime (lt, le, gt, ge) and "
                "participants_v2/any(p:p/id eq '…') are supported.",
            )
        operator, literal = match[1].lower(), match[2]
        kind = (
            "Edm.String"
            if literal.startswith("'")
            else "Edm.Date"
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", literal)
            else None
        )
        if kind is not None:
            raise _Problem(
                400,
                "BadRequest",
                "A binary operator with incompatible types was detected. Found operand types "
                f"'Edm.DateTimeOffset' and '{kind}' for operator kind '{_OPERATORS[operator]}'.",
            )
        try:
            if _DATE_TIME_OFFSET.fullmatch(literal) is None:
                raise InstantParseError(literal)
            ticks = parse_ticks(literal)
        except InstantParseError:
            raise _Problem(
                400, "BadRequest", f"Syntax error: '{literal}' is not a valid DateTimeOffset."
            ) from None
        if operator in ("ge", "gt"):
            low = ticks + (operator == "gt")
            found.start = low if found.start is None else max(found.start, low)
        else:
            high = ticks + (operator == "le")
            found.end = high if found.end is None else min(found.end, high)
    return found


def _encode_token(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode_token(token: str, kind: str, record: str | None = None) -> dict[str, Any]:
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        state = None
    if (
        not isinstance(state, dict)
        or state.get("k") != kind
        or (record is not None and state.get("r") != record)
        or not isinstance(state.get("n"), int)
    ):
        raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
    return state


def _select(
    item: dict[str, Any], names: list[str] | None, valid: frozenset[str], type_name: str
) -> dict[str, Any]:
    if names is None:
        return item
    for name in names:
        if name not in valid:
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type '{type_name}'.",
            )
    keep = set(names)
    return {k: v for k, v in item.items() if k in keep or k.split("@", 1)[0] in keep}


def _names(query: Mapping[str, str]) -> list[str] | None:
    text = query.get("$select")
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _link(base: str, path: str, params: list[tuple[str, str]]) -> str:
    text = "&".join(f"{k}={quote(v, safe=':/,()=')}" for k, v in params)
    return f"{base}{path}?{text}"


class CallRecords:
    """The call-records side of a ``GraphSimulator`` (``simulator.call_records``).

    Routes (v1.0 and beta): ``GET /{v}/communications/callRecords`` (list),
    ``…/callRecords/{id}`` (get), ``…/{id}/sessions`` and ``…/{id}/participants_v2`` (pages),
    and the control endpoint ``/_sim/call-records/{now|config|throttle|stats|expected}``.

    Tests set ``now`` (an ISO 8601 string, an aware ``datetime``, ticks, or None for real
    time), knobs (``configure(...)``, the page sizes, ``latency``, ``multi_expand``) and
    limits (``throttle(...)``), and read ``stats``, ``arrivals``, ``expected(...)``,
    ``timeline(...)``. Faults queued on the simulator with ``source="call_records"`` (or
    none) hit these requests too; a fault's ``window`` matches ``"<kind> <path and query>"``,
    kind being ``list``, ``get``, ``sessions`` or ``participants``. Page faults (``empty``,
    ``loop``, ``foreign``, ``corrupt``) change list, sessions and participants pages; on a
    get only ``corrupt`` applies (to the record); ``shift`` does nothing (tokens are keys,
    not offsets).
    """

    def __init__(self, simulator: GraphSimulator) -> None:
        self._sim = simulator
        self.config = CallRecordsConfig()
        self.now: datetime | str | int | None = None
        """The simulated present (None: real time): what is available, changed or deleted."""
        self.list_page_size = LIST_PAGE_SIZE
        self.sessions_page_size = SESSIONS_PAGE_SIZE
        self.participants_page_size = PARTICIPANTS_PAGE_SIZE
        self.multi_expand = False
        """Allow ``$expand=sessions($expand=segments),participants_v2`` (the docs say a get
        expands a single relationship, so it is refused by default)."""
        self.latency = 0.0
        """Seconds each call-record request takes to answer."""
        self.forgotten: set[str] = set()
        """Records listed but no longer readable (``forget``)."""
        self.stats: Counter[str] = Counter()
        self.arrivals: list[tuple[str, str]] = []
        """(kind, path and query) of every call-record request, in arrival order."""
        self.on_request: Callable[[str, int], None] | None = None
        """Called with the kind and running count of call-record requests before each is
        answered."""
        self._sets: dict[tuple[str, int], CallRecordSet] = {}
        self._limiter: _Limiter | None = None
        self._lock = threading.Lock()

    # ---- knobs

    def configure(self, config: CallRecordsConfig | None = None, **changes: Any) -> None:
        """Replace the records' knobs (``records_per_day=…``, ``sessions=(1, 50)``, …); the
        records are generated afresh."""
        with self._lock:
            self.config = replace(config or self.config, **changes)
            self._sets.clear()

    def throttle(
        self,
        scale: float = 1.0,
        *,
        per_app: int = 1_500,
        per_tenant: int = 10_000,
        record_first: int = 10,
        record_later: int = 50,
    ) -> None:
        """Enforce Graph's call-records limits (periods of 20 s and 5 min times ``scale``);
        counting starts afresh."""
        self._limiter = _Limiter(
            CallRecordLimits(
                per_app=per_app,
                per_tenant=per_tenant,
                period=20.0 * scale,
                record_first=record_first,
                record_first_period=20.0 * scale,
                record_later=record_later,
                record_later_period=300.0 * scale,
            )
        )

    def unthrottle(self) -> None:
        """Stop enforcing limits."""
        self._limiter = None

    @property
    def limits(self) -> CallRecordLimits | None:
        """The limits in force (None: none)."""
        return None if self._limiter is None else self._limiter.limits

    def now_ticks(self) -> int:
        """The simulated present in ticks since the epoch."""
        return _ticks(datetime.now(UTC) if self.now is None else self.now)

    def data(self, tenant: str | None = None) -> CallRecordSet:
        """The call records of ``tenant`` (an id the simulator serves; None: the home one)."""
        tenant_id = tenant or TENANT_ID
        seed = self._sim.tenants[tenant_id].seed
        with self._lock:
            found = self._sets.get((tenant_id, seed))
            if found is None:
                found = self._sets[(tenant_id, seed)] = CallRecordSet(seed, tenant_id, self.config)
            return found

    # ---- ground truth for tests

    def timeline(
        self, tenant: str | None, start: str | datetime | int, end: str | datetime | int
    ) -> list[RecordInfo]:
        """Every record starting in ``[start, end)``, whether visible now or not."""
        return self.data(tenant).between(_ticks(start), _ticks(end))

    def expected(
        self,
        tenant: str | None,
        start: str | datetime | int,
        end: str | datetime | int,
        *,
        as_of: str | datetime | int | None = None,
        settled_only: bool = False,
    ) -> list[dict[str, Any]]:
        """What the archive should hold for records starting in ``[start, end)``: each record
        Graph keeps at ``as_of`` (default ``now``), as it reads then, with all its
        ``sessions`` (with ``segments``) and ``participants_v2`` as arrays on it, without
        any ``@odata.context``/``@odata.nextLink`` annotation (``@odata.type``s stay); in
        list order. ``settled_only``: only records that can no longer change."""
        now = self.now_ticks() if as_of is None else _ticks(as_of)
        data = self.data(tenant)
        return [
            data.merged(info, now)
            for info in data.between(_ticks(start), _ticks(end))
            if info.visible_at(now) and (not settled_only or info.settled <= now)
        ]

    # ---- routes

    def add_routes(self, app: web.Application) -> None:
        """Add the call-records routes (before the simulator's catch-all route)."""
        root = r"/{version:v1\.0|beta}/communications/callRecords"
        record = root + "/{id:[^/()]+}"
        app.router.add_get(root, self._list)
        app.router.add_get(record, self._get)
        app.router.add_get(record + "/sessions", self._sessions)
        app.router.add_get(record + "/participants_v2", self._participants)
        app.router.add_route("*", "/_sim/call-records/{action}", self._control)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "list")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "get")

    async def _sessions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "sessions")

    async def _participants(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "participants")

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        record_id = request.match_info.get("id")
        if record_id is not None and _GUID.fullmatch(record_id) is None:
            return await self._sim.handle(request)  # not a record: the call-log functions' path
        request_id = str(uuid.uuid4())
        path_qs = request.rel_url.raw_path_qs
        with self._lock:
            self.stats["requests"] += 1
            self.stats[f"requests:{kind}"] += 1
            running = self.stats["requests"]
            self.arrivals.append((kind, path_qs))
        if self.on_request is not None:
            self.on_request(kind, running)

        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        issued = self._sim.authority.lookup(token)
        tenant_id = TENANT_ID if issued is None else issued.tenant
        app_id = "" if issued is None else issued.client_id or ""
        self._count(f"requests@{tenant_id}")
        limiter = self._limiter
        later = kind in ("sessions", "participants") and "$skiptoken" in request.query
        verdict = None if limiter is None else limiter.admit(tenant_id, app_id, record_id, later)
        if verdict is not None:
            limit, wait = verdict
            self._count("throttled", f"throttled:{limit}", f"throttled@{tenant_id}")
            throttled = graph_error(429, "TooManyRequests", "Too many requests.", request_id)
            throttled.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return throttled
        if self.latency:
            await asyncio.sleep(self.latency)

        fault = self._sim._take_fault(SOURCE, f"{kind} {path_qs}")
        if fault is not None:
            self._count(f"fault:{fault.kind}")
            if fault.kind == "revoke":
                self._sim.authority.revoke_all()
        problem = (
            "no bearer token"
            if not token
            else self._sim.authority.problem(token, self._sim.base_url)
        )
        if problem:
            self._count("unauthorized")
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                f"Access token is invalid: {problem}.",
                request_id,
            )
        if fault is not None and fault.kind not in (
            "empty",
            "loop",
            "foreign",
            "corrupt",
            "shift",
            "revoke",
        ):
            applied = await self._sim._apply(fault, request, request_id)
            if applied is not None:
                return applied

        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
        }
        try:
            if kind == "list":
                body = self._list_page(request, tenant_id, headers)
            elif kind == "get":
                body = self._record(request, tenant_id, headers)
            elif kind == "sessions":
                body = self._sessions_page(request, tenant_id, headers)
            else:
                body = self._participants_page(request, tenant_id, headers)
        except _Problem as refused:
            self._count("not_found" if refused.status == 404 else "bad_request")
            return graph_error(refused.status, refused.code, refused.message, request_id)
        if fault is not None:
            _spoil(body, fault, f"{self._sim.base_url}{path_qs}")
        data = orjson.dumps(body)
        self._count(bytes_served=len(data))
        return web.Response(
            body=data, content_type="application/json", charset="utf-8", headers=headers
        )

    def _count(self, *keys: str, **amounts: int) -> None:
        with self._lock:
            for key in keys:
                self.stats[key] += 1
            for key, amount in amounts.items():
                self.stats[key] += amount

    def _page_size(
        self, request: web.Request, default: int, most: int, headers: dict[str, str]
    ) -> int:
        """The page size: ``Prefer: odata.maxpagesize`` (up to ``most``) or ``default``."""
        found = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", request.headers.get("Prefer", ""))
        if found is None or int(found[1]) < 1:
            return default
        size = min(int(found[1]), max(most, default))
        headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return size

    def forget(self, record_id: str) -> None:
        """Answer 404 for this record from now on while still listing it: Graph deleting a
        record between a client's listing and its read (at the 30-day edge)."""
        self.forgotten.add(record_id)

    def _visible(self, tenant_id: str, record_id: str, now: int) -> RecordInfo:
        info = self.data(tenant_id).find(record_id, now)
        if info is None or not info.visible_at(now) or record_id in self.forgotten:
            raise _Problem(404, "NotFound", f"The call record '{record_id}' was not found.")
        return info

    def _context(self, version: str, tail: str) -> str:
        return f"{self._sim.base_url}/{version}/$metadata#communications/{tail}"

    def _annotated(self, record: dict[str, Any], version: str) -> dict[str, Any]:
        """``record`` with ``organizer_v2@odata.context`` before ``organizer_v2``."""
        result: dict[str, Any] = {}
        for key, value in record.items():
            if key == "organizer_v2":
                result["organizer_v2@odata.context"] = self._context(
                    version, f"callRecords('{record['id']}')/organizer_v2/$entity"
                )
            result[key] = value
        return result

    def _list_page(
        self, request: web.Request, tenant_id: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        query = request.query
        _check_options(query, ("$filter", "$skiptoken", "$select"))
        version = request.match_info["version"]
        wanted = parse_filter(query["$filter"]) if "$filter" in query else Filter()
        names = _names(query)
        now = self.now_ticks()
        data = self.data(tenant_id)
        records = data.listing(wanted.start, wanted.end, now)
        if wanted.participant is not None:
            records = [
                r
                for r in records
                if any(p["id"].lower() == wanted.participant for p in data.participants(r))
            ]
        first = 0
        size = self._page_size(request, self.list_page_size, LIST_PAGE_SIZE, headers)
        if "$skiptoken" in query:
            state = _decode_token(query["$skiptoken"], "l")
            size = state["n"]
            after = (state.get("s"), state.get("i"))
            if not isinstance(after[0], int) or not isinstance(after[1], str):
                raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
            first = bisect_right(records, after, key=lambda r: (r.start, r.id))
        page = records[first : first + size]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, "callRecords"),
            "value": [
                _select(
                    self._annotated(data.record_at(r, now), version),
                    names,
                    _RECORD_PROPERTIES,
                    "microsoft.graph.callRecords.callRecord",
                )
                for r in page
            ],
        }
        if first + size < len(records):
            params = [(k, query[k]) for k in ("$filter", "$select") if k in query]
            token = _encode_token({"k": "l", "s": page[-1].start, "i": page[-1].id, "n": size})
            body["@odata.nextLink"] = _link(
                self._sim.base_url, request.rel_url.raw_path, [*params, ("$skiptoken", token)]
            )
        self._count(records_listed=len(page))
        return body

    def _record(
        self, request: web.Request, tenant_id: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        query = request.query
        _check_options(query, ("$expand", "$select"))
        version = request.match_info["version"]
        record_id = request.match_info["id"]
        now = self.now_ticks()
        info = self._visible(tenant_id, record_id, now)
        data = self.data(tenant_id)
        expand = _parse_expand(query.get("$expand", ""), self.multi_expand)
        body: dict[str, Any] = {
            "@odata.context": self._context(
                version,
                "callRecords(sessions(segments()))/$entity"
                if "segments" in expand
                else "callRecords(participants_v2())/$entity"
                if "participants_v2" in expand
                else "callRecords/$entity",
            )
        }
        body.update(
            _select(
                self._annotated(data.record_at(info, now), version),
                _names(query),
                _RECORD_PROPERTIES,
                "microsoft.graph.callRecords.callRecord",
            )
        )
        record_path = f"/{version}/communications/callRecords/{info.id}"
        body["participants_v2@odata.context"] = self._context(
            version, f"callRecords('{info.id}')/participants_v2/$entity"
        )
        if "participants_v2" in expand:
            size = self._page_size(
                request, self.participants_page_size, PARTICIPANTS_MAX_PAGE_SIZE, headers
            )
            everyone = data.participants(info)
            if size < len(everyone):
                token = _encode_token({"k": "p", "r": info.id, "o": size, "n": size})
                body["participants_v2@odata.nextLink"] = _link(
                    self._sim.base_url, record_path + "/participants_v2", [("$skiptoken", token)]
                )
            body["participants_v2"] = everyone[:size]
            self._count(participants_served=len(body["participants_v2"]))
        if "sessions" in expand:
            segments = "segments" in expand
            size = self._page_size(
                request, self.sessions_page_size, SESSIONS_MAX_PAGE_SIZE, headers
            )
            sessions = data.sessions_at(info, now, 0, size, segments=segments)
            body["sessions"] = sessions
            if size < info.sessions_at(now):
                token = _encode_token({"k": "s", "r": info.id, "o": size, "n": size})
                params = [("$expand", "segments")] if segments else []
                body["sessions@odata.nextLink"] = _link(
                    self._sim.base_url, record_path + "/sessions", [*params, ("$skiptoken", token)]
                )
            self._count(sessions_served=len(sessions))
        self._count(records_served=1)
        return body

    def _sessions_page(
        self, request: web.Request, tenant_id: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        query = request.query
        _check_options(query, ("$expand", "$skiptoken", "$select"))
        expand = query.get("$expand", "").strip()
        if expand not in ("", "segments"):
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a property named '{expand}' on type "
                "'microsoft.graph.callRecords.session'.",
            )
        version = request.match_info["version"]
        now = self.now_ticks()
        info = self._visible(tenant_id, request.match_info["id"], now)
        offset, size = self._offset(
            request, "s", info.id, self.sessions_page_size, SESSIONS_MAX_PAGE_SIZE, headers
        )
        names = _names(query)
        if names is not None and expand:
            names.append("segments")  # an expanded relationship comes whatever is selected
        sessions = [
            _select(
                s, names, _SESSION_PROPERTIES | {"segments"}, "microsoft.graph.callRecords.session"
            )
            for s in self.data(tenant_id).sessions_at(
                info, now, offset, size, segments=bool(expand)
            )
        ]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, f"callRecords('{info.id}')/sessions"),
            "value": sessions,
        }
        if offset + size < info.sessions_at(now):
            token = _encode_token({"k": "s", "r": info.id, "o": offset + size, "n": size})
            params = [(k, query[k]) for k in ("$expand", "$select") if k in query]
            body["@odata.nextLink"] = _link(
                self._sim.base_url, request.rel_url.raw_path, [*params, ("$skiptoken", token)]
            )
        self._count(sessions_served=len(sessions))
        return body

    def _participants_page(
        self, request: web.Request, tenant_id: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        query = request.query
        _check_options(query, ("$skiptoken", "$select"))
        version = request.match_info["version"]
        now = self.now_ticks()
        info = self._visible(tenant_id, request.match_info["id"], now)
        offset, size = self._offset(
            request, "p", info.id, self.participants_page_size, PARTICIPANTS_MAX_PAGE_SIZE, headers
        )
        everyone = self.data(tenant_id).participants(info)
        names = _names(query)
        page = [
            _select(p, names, _PARTICIPANT_PROPERTIES, "microsoft.graph.callRecords.participant")
            for p in everyone[offset : offset + size]
        ]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, f"callRecords('{info.id}')/participants_v2"),
            "value": page,
        }
        if offset + size < len(everyone):
            token = _encode_token({"k": "p", "r": info.id, "o": offset + size, "n": size})
            params = [("$select", query["$select"])] if "$select" in query else []
            body["@odata.nextLink"] = _link(
                self._sim.base_url, request.rel_url.raw_path, [*params, ("$skiptoken", token)]
            )
        self._count(participants_served=len(page))
        return body

    def _offset(
        self,
        request: web.Request,
        kind: str,
        record_id: str,
        default: int,
        most: int,
        headers: dict[str, str],
    ) -> tuple[int, int]:
        if "$skiptoken" in request.query:
            state = _decode_token(request.query["$skiptoken"], kind, record_id)
            offset = state.get("o")
            if not isinstance(offset, int) or offset < 0:
                raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
            return offset, int(state["n"])
        return 0, self._page_size(request, default, most, headers)

    # ---- control endpoint

    async def _control(self, request: web.Request) -> web.Response:
        """``/_sim/call-records/now`` (GET; POST ``{"now": iso | null}``), ``config`` (POST
        knobs: ``CallRecordsConfig`` fields, ``list_page_size``, ``sessions_page_size``,
        ``participants_page_size``, ``latency``, ``multi_expand``), ``throttle`` (POST
        ``{"scale": 1.0, …}`` or ``{"off": true}``), ``stats`` (GET), ``expected`` (GET
        ``?start=…&end=…[&tenant=…]``)."""
        action = request.match_info["action"]
        if action == "now":
            if request.method == "POST":
                self.now = (await request.json()).get("now")
            now = self.now_ticks()
            return web.json_response({"now": None if self.now is None else format_ticks(now)})
        if action == "config" and request.method == "POST":
            spec = dict(await request.json())
            for name in ("list_page_size", "sessions_page_size", "participants_page_size"):
                if name in spec:
                    setattr(self, name, int(spec.pop(name)))
            if "latency" in spec:
                self.latency = float(spec.pop("latency"))
            if "multi_expand" in spec:
                self.multi_expand = bool(spec.pop("multi_expand"))
            known = {f.name for f in fields(CallRecordsConfig)}
            knobs = {
                k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in known
            }
            if knobs:
                self.configure(self.config, **knobs)
            return web.json_response({"ok": True})
        if action == "throttle" and request.method == "POST":
            spec = dict(await request.json())
            if spec.pop("off", False):
                self.unthrottle()
            else:
                self.throttle(**spec)
            return web.json_response({"ok": True})
        if action == "stats":
            with self._lock:
                return web.json_response(dict(self.stats))
        if action == "expected":
            query = request.query
            records = self.expected(query.get("tenant"), query["start"], query["end"])
            return web.Response(body=orjson.dumps(records), content_type="application/json")
        raise web.HTTPNotFound()


def _parse_expand(text: str, multiple: bool) -> set[str]:
    """``$expand`` of a get: ``sessions``, ``sessions($expand=segments)``, ``participants_v2``
    (``organizer_v2`` is expanded anyway)."""
    found: set[str] = set()
    for part in re.split(r",(?![^(]*\))", text.strip()) if text.strip() else []:
        name = part.strip()
        if name == "sessions":
            found.add("sessions")
        elif re.fullmatch(r"sessions\(\s*\$expand\s*=\s*segments\s*\)", name):
            found.update(("sessions", "segments"))
        elif name in ("participants_v2", "organizer_v2"):
            found.add(name)
        else:
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a navigation property named '{name}' on type "
                "'microsoft.graph.callRecords.callRecord'.",
            )
    if not multiple and "sessions" in found and "participants_v2" in found:
        raise _Problem(
            400,
            "BadRequest",
            "Only one relationship can be expanded on a call record: sessions (with segments) "
            "or participants_v2.",
        )
    return found


def _spoil(body: dict[str, Any], fault: Fault, own_url: str) -> None:
    """Apply a page fault to an answer."""
    if fault.kind == "corrupt":
        target = body
        if isinstance(body.get("value"), list):
            if not body["value"]:
                return
            target = body["value"][0] = dict(body["value"][0])
        if fault.value is None:
            target.pop(fault.field or "id", None)
        else:
            target[fault.field or "id"] = fault.value
        return
    if "value" not in body:
        return  # a get: only corrupt applies
    if fault.kind == "empty":
        body["value"] = []
        body["@odata.nextLink"] = (
            f"{own_url}{'&' if '?' in own_url else '?'}e={uuid.uuid4().hex[:8]}"
        )
    elif fault.kind == "loop":
        body["@odata.nextLink"] = own_url
    elif fault.kind == "foreign" and "@odata.nextLink" in body:
        body["@odata.nextLink"] = body["@odata.nextLink"].replace("127.0.0.1", "127.0.0.2")


def _ticks(moment: str | datetime | int) -> int:
    if isinstance(moment, int):
        return moment
    if isinstance(moment, datetime):
        return to_ticks(moment)
    return parse_ticks(moment)
