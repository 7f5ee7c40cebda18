"""Deterministic synthetic call-log rows of a simulated tenant.

Rows look like Graph's: seven-digit fractions, ``0001-01-01T00:00:00Z`` placeholders,
masked numbers, unicode names, decimal charges, and now and then a property the
collector has never heard of. The same seed always yields the same rows.
"""

from __future__ import annotations

import random
import threading
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.core.sources import SOURCES
from collector.core.timefmt import TICKS_PER_SECOND, parse_ticks, to_ticks

TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
PLACEHOLDER = "0001-01-01T00:00:00Z"

DEFAULT_ROWS_PER_DAY: dict[str, int] = {
    "sms": 400,
    "direct_routing": 2_500,
    "pstn": 1_500,
    "pstn_blocked_users": 6,
}

_PEOPLE = (
    ("Ruwini Perera", "ruwini.perera"),
    ("Richard Malk", "richard.malk"),
    ("Zoë Ångström", "zoe.angstrom"),
    ("Łukasz Żółkiewski", "lukasz.zolkiewski"),
    ("李雷", "li.lei"),
    ("Ngozi Ọkọnkwọ", "ngozi.okonkwo"),
    ("José Müller-Sánchez", "jose.muller"),
    ("Αθηνά Παπαδοπούλου", "athina.p"),
    ("Søren Kierkegård", "soren.k"),
    ("Ольга Иванова", "olga.ivanova"),
    ("O'Brien, Siobhán", "siobhan.obrien"),
    ("🙂 Emoji Person", "emoji.person"),
)
_COUNTRIES = (
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("JP", "Japan"),
    ("BR", "Brazil"),
    ("IN", "India"),
)
_LOCATIONS = ("USWE", "USEA", "EUNO", "EUWE", "APSE", "APJP")
_SIP = (
    (0, "BYE", 540000),
    (487, "Request Terminated", 540487),
    (404, "Not Found", 560404),
    (486, "Busy Here", 540486),
    (503, "Service Unavailable", 560503),
)


def format_ticks(ticks: int, digits: int = 7) -> str:
    """Format ticks since the epoch as Graph does (``digits`` fractional digits, 0 for none)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ticks // TICKS_PER_SECOND)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{ticks % TICKS_PER_SECOND:07d}"[:digits]
    return text + "Z"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _number(rng: random.Random, masked: bool) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(11))
    return "+" + (digits[:8] + "***" if masked else digits)


_USERS = uuid.UUID("5f0c3a52-8d7e-4d43-9a43-3b8f2f9c1e70")
"""Namespace of the people's user ids: each person has one id in every row."""


def _person(rng: random.Random) -> dict[str, Any]:
    name, alias = rng.choice(_PEOPLE)
    _guid(rng)  # drawn as before, so every other property keeps its value for a seed
    return {
        "userId": str(uuid.uuid5(_USERS, alias)),
        "userPrincipalName": f"{alias}@contoso.com",
        "userDisplayName": name,
    }


def _charge(rng: random.Random) -> float:
    return round(rng.random() * rng.choice((0.02, 0.5, 12.0)), 4)


def _sms_row(rng: random.Random, ticks: int, digits: int) -> dict[str, Any]:
    (user_cc, _), (other_cc, other_name) = rng.choice(_COUNTRIES), rng.choice(_COUNTRIES)
    row: dict[str, Any] = {"id": _guid(rng), "smsId": _guid(rng), **_person(rng)}
    row.update(
        {
            "userCountryCode": user_cc,
            "tenantCountryCode": "US",
            "sourceNumber": _number(rng, masked=False),
            "destinationNumber": _number(rng, masked=rng.random() < 0.5),
            "sentDateTime": format_ticks(ticks, digits),
            "callCharge": _charge(rng),
            "currency": "USD",
            "smsType": rng.choice(("sms_in", "sms_out")),
            "destinationContext": "Domestic" if other_cc == user_cc else "International",
            "destinationName": other_name,
            "otherPartyCountryCode": other_cc,
            "licenseCapability": "MCOSMS1",
            "smsUnits": rng.randint(1, 3),
            "administrativeUnitInfos": [{"id": _guid(rng)} for _ in range(rng.randint(0, 2))],
        }
    )
    return row


def _direct_routing_row(rng: random.Random, ticks: int, digits: int) -> dict[str, Any]:
    ok = rng.random() < 0.85
    sip_code, phrase, sub_reason = _SIP[0] if ok else rng.choice(_SIP[1:])
    duration = rng.randint(1, 3600) if ok else 0
    invite = ticks - rng.randint(1, 8) * TICKS_PER_SECOND
    end = ticks + duration * TICKS_PER_SECOND
    row: dict[str, Any] = {"id": _guid(rng), "correlationId": _guid(rng), **_person(rng)}
    row.update(
        {
            "startDateTime": format_ticks(ticks, digits),
            "inviteDateTime": format_ticks(invite, digits),
            "failureDateTime": PLACEHOLDER if ok else format_ticks(ticks + 1, digits),
            "endDateTime": format_ticks(end, digits),
            "duration": duration,
            "callType": rng.choice(
                ("ByotIn", "ByotOut", "ByotOutUserForwarding", "ByotOutUserTransfer")
            ),
            "successfulCall": ok,
            "callerNumber": _number(rng, masked=True),
            "calleeNumber": _number(rng, masked=True),
            "mediaPathLocation": rng.choice(_LOCATIONS),
            "signalingLocation": rng.choice(_LOCATIONS),
            "finalSipCode": sip_code,
            "finalSipCodePhrase": phrase,
            "callEndSubReason": sub_reason,
            "trunkFullyQualifiedDomainName": f"sbc{rng.randint(1, 4):02d}.adatum.biz",
            "mediaBypassEnabled": rng.random() < 0.3,
        }
    )
    return row


def _pstn_row(rng: random.Random, ticks: int, digits: int) -> dict[str, Any]:
    duration = rng.randint(0, 5400)
    (cc, name) = rng.choice(_COUNTRIES)
    row: dict[str, Any] = {
        "id": _guid(rng),
        "callId": str(rng.randint(10**9, 10**10)),
        **_person(rng),
    }
    row.update(
        {
            "startDateTime": format_ticks(ticks, digits),
            "endDateTime": format_ticks(ticks + duration * TICKS_PER_SECOND, digits),
            "duration": duration,
            "charge": _charge(rng),
            "callType": rng.choice(("user_in", "user_out", "emergency_out", "conf_out")),
            "currency": "USD",
            "calleeNumber": _number(rng, masked=True),
            "usageCountryCode": cc,
            "tenantCountryCode": "US",
            "connectionCharge": _charge(rng),
            "callerNumber": _number(rng, masked=True),
            "destinationContext": rng.choice(("Domestic", "International", None)),
            "destinationName": name,
            "conferenceId": None if rng.random() < 0.8 else str(rng.randint(10**6, 10**7)),
            "licenseCapability": rng.choice(("MCOPSTNU", "MCOPSTN1", "MCOPSTN2")),
            "inventoryType": rng.choice(("Subscriber", "Service", "Toll free")),
            "operator": "Microsoft",
            "callDurationSource": rng.choice(("microsoft", "operator")),
        }
    )
    return row


def _blocked_user_row(rng: random.Random, ticks: int, digits: int) -> dict[str, Any]:
    blocked = rng.random() < 0.7
    return {
        "blockDateTime": format_ticks(ticks, digits),
        "blockReason": rng.choice(
            (
                "Suspected toll fraud: unusual international call volume",
                "Blocked by administrator",
                "Calling policy violation",
            )
        )
        if blocked
        else "Unblocked by administrator",
        "remediationId": _guid(rng),
        "userBlockMode": "blocked" if blocked else "unblocked",
        **_person(rng),
        "userTelephoneNumber": _number(rng, masked=False),
    }


_BUILDERS = {
    "sms": _sms_row,
    "direct_routing": _direct_routing_row,
    "pstn": _pstn_row,
    "pstn_blocked_users": _blocked_user_row,
}


def _dialout_report(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Graph's dial-out report over a range's PSTN calls: the audio-conference dial-out
    calls (``conf_out``), counted under the user of the call (the meeting's organizer), per
    usage location, destination context and currency."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for call in calls:
        if call["callType"] == "conf_out":
            group = (
                call["userId"],
                call["userPrincipalName"],
                call["userDisplayName"],
                call["usageCountryCode"],
                call["destinationContext"],
                call["currency"],
            )
            groups.setdefault(group, []).append(call)
    report = [
        {
            "userId": user_id,
            "userPrincipalName": principal,
            "userDisplayName": name,
            "usageLocation": location,
            "destinationContext": context,
            "currency": currency,
            "totalCalls": len(group),
            # Call charges and connection fees, as the docs define the total.
            "totalCallCharge": round(sum(c["charge"] + c["connectionCharge"] for c in group), 4),
            "totalCallSeconds": sum(c["duration"] for c in group),
        }
        for (user_id, principal, name, location, context, currency), group in groups.items()
    ]
    report.sort(
        key=lambda r: (r["userPrincipalName"], r["usageLocation"], str(r["destinationContext"]))
    )
    return report


REPORTS = {"pstn_dialout_report": ("pstn", _dialout_report)}
"""Sources whose rows Graph aggregates from another log's over the range asked for: the
log and the aggregation."""


def row_key(source: str, row: Mapping[str, Any]) -> str:
    """The property that identifies a row of the event log ``source``."""
    return str(row[SOURCES[source].key_fields[0]])


class Tenant:
    """A simulated tenant's call logs, generated lazily per source and UTC day."""

    def __init__(self, seed: int = 1, rows_per_day: Mapping[str, int] | None = None) -> None:
        self.seed = seed
        self.rows_per_day = dict(DEFAULT_ROWS_PER_DAY if rows_per_day is None else rows_per_day)
        self._days: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
        self._extra: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, int, int, int], list[dict[str, Any]]] = {}
        self.retained_from = 0
        """Ticks before which Graph no longer returns rows (its retention ran out)."""

    def _day(self, source: str, day_index: int) -> list[tuple[int, dict[str, Any]]]:
        key = (source, day_index)
        rows = self._days.get(key)
        if rows is None:
            rng = random.Random(f"{self.seed}:{source}:{day_index}")
            base = day_index * TICKS_PER_DAY
            count = self.rows_per_day.get(source, 0)
            # The first row sits exactly on midnight, a window boundary.
            offsets = (
                sorted([0] + [rng.randrange(TICKS_PER_DAY) for _ in range(count - 1)])
                if count
                else []
            )
            build = _BUILDERS[source]
            rows = []
            for offset in offsets:
                digits = 0 if offset == 0 else rng.choice((7, 7, 7, 3))
                row = build(rng, base + offset, digits)
                if rng.random() < 0.03:
                    row["futureProperty"] = {
                        "addedBy": "a later Graph release",
                        "n": rng.randint(0, 9),
                    }
                rows.append((base + offset, row))
            rows.sort(key=lambda item: (item[0], row_key(source, item[1])))  # Graph's order
            self._days[key] = rows
        return rows

    def add_row(self, source: str, when: str) -> dict[str, Any]:
        """Add one extra row stamped exactly at ``when`` and return it."""
        ticks = parse_ticks(when)
        rng = random.Random(f"{self.seed}:{source}:extra:{when}")
        row = _BUILDERS[source](rng, ticks, 7)
        with self._lock:
            self._extra.setdefault(source, []).append((ticks, row))
            self._extra[source].sort(key=lambda item: item[0])
        return row

    def change_row(self, source: str, day: str, field: str, value: Any) -> str:
        """Change one property of a row of ``day`` (``2026-10-20``) as Graph would return it
        from now on; return the row's id."""
        rows = self._day(source, parse_ticks(f"{day}T00:00:00Z") // TICKS_PER_DAY)
        with self._lock:
            row = rows[1][1]
            row[field] = value
        return row_key(source, row)

    def rows(
        self, source: str, start: int, end: int, *, inclusive_end: bool = False
    ) -> list[dict[str, Any]]:
        """Return the rows of ``source`` with event ticks in ``[start, end)`` (``]`` if
        inclusive); of a report, its rows over the events of ``[start, end)``."""
        if source in REPORTS:
            events, aggregate = REPORTS[source]
            return aggregate(self.rows(events, start, end))
        start = max(start, self.retained_from)
        if end < start:
            return []
        last = end if inclusive_end else end - 1
        key = (source, start, last, len(self._extra.get(source, [])))
        with self._lock:
            cached = self._answers.get(key)
            if cached is not None:  # paging asks the same range once per page
                return cached
            found: list[tuple[int, dict[str, Any]]] = []
            for day_index in range(start // TICKS_PER_DAY, last // TICKS_PER_DAY + 1):
                found.extend(_select(self._day(source, day_index), start, last))
            extra = _select(self._extra.get(source, []), start, last)
            if extra:  # days are kept in paging order already
                found.extend(extra)
                found.sort(key=lambda item: (item[0], row_key(source, item[1])))
            answer = [row for _, row in found]
            self._answers[key] = answer
            while len(self._answers) > 32:  # the ranges being paged now; memory stays flat
                del self._answers[next(iter(self._answers))]
            return answer

    def rows_between(self, source: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Return the rows of ``source`` stamped in ``[start, end)`` (ground truth for tests)."""
        return self.rows(source, to_ticks(start), to_ticks(end))


def _select(
    rows: list[tuple[int, dict[str, Any]]], start: int, last: int
) -> list[tuple[int, dict[str, Any]]]:
    keys = [t for t, _ in rows]
    return rows[bisect_left(keys, start) : bisect_right(keys, last)]
