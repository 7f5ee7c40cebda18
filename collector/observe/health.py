"""Pure judgement of a source's health, for ``python -m collector status``: how far it lags,
whether its last run failed, and a strip of the last days' coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ..archive.state import SourceState
from ..core.errors import InstantParseError
from ..core.lanes import Lane
from ..core.timefmt import format_instant, parse_instant

SETTLED, PROVISIONAL, EMPTY, AHEAD, EXPIRED = "S", "p", ".", "-", "x"
"""One character a day: final (manifest written), archived but still provisional, read with
nothing archived, not read yet, and past the retention rule's age without a manifest (its
blobs may have been deleted: ``windows.expiry_horizon``)."""
NO_CONSENT = ("AADSTS65001", "AADSTS700016")
"""Entra ID's answers when a tenant never consented to the app, or withdrew it (its service
principal is gone)."""
LEGEND = (
    f"{SETTLED} settled  {PROVISIONAL} provisional  {EMPTY} nothing archived  "
    f"{AHEAD} not yet reached  {EXPIRED} expired"
)


@dataclass
class SourceHealth:
    """What ``status`` says of one lane (a source, of one tenant in multi-tenant mode)."""

    lane: Lane
    state: SourceState
    last_run: dict[str, Any] | None
    strip: str
    first_day: date
    now: datetime
    max_lag: timedelta
    problems: list[str] = field(default_factory=list)
    revisions: int = 0
    """Records a revisit found changed and archived again, over the days shown (call
    records)."""

    @property
    def name(self) -> str:
        """The lane's name: ``pstn``, or ``pstn@<tenant>``."""
        return self.lane.name

    def last_ok(self) -> datetime | None:
        """When the lane's last run ended well (None: its last run did not, or none ran)."""
        run = self.last_run
        if run is None or run.get("outcome") != "ok" or not run.get("at"):
            return None
        try:
            return parse_instant(str(run["at"]))
        except InstantParseError:
            return None

    @property
    def fresh(self) -> bool:
        """True when nothing is wrong with the source."""
        return not self.problems

    def lag(self) -> timedelta | None:
        """How far the watermark is behind ``now`` (None: never collected)."""
        return None if self.state.watermark is None else self.now - self.state.watermark

    def settled_lag(self) -> timedelta | None:
        """How far the settled watermark is behind ``now``."""
        return None if self.state.settled is None else self.now - self.state.settled

    def to_json(self) -> dict[str, Any]:
        """The same as ``lines``, for scripts."""
        state = self.state
        lag, settled_lag = self.lag(), self.settled_lag()
        return {
            "source": self.lane.source.name,
            **({"tenant": self.lane.tenant} if self.lane.tenant else {}),
            "fresh": self.fresh,
            "problems": self.problems,
            "watermark": _stamp(state.watermark),
            "lagSeconds": None if lag is None else int(lag.total_seconds()),
            "settled": _stamp(state.settled),
            "settledLagSeconds": None if settled_lag is None else int(settled_lag.total_seconds()),
            "claims": [
                {"kind": c.kind, "start": _stamp(c.window.start), "end": _stamp(c.window.end)}
                for c in state.claims
            ],
            "lease": None
            if state.owner is None
            else {
                "owner": state.owner,
                "until": None
                if state.lease_until is None
                else format_instant(datetime.fromtimestamp(state.lease_until, self.now.tzinfo)),
            },
            "lastRun": self.last_run,
            **(
                {
                    "revisions": self.revisions,
                    "setAside": [r.document() for r in state.set_aside],
                }
                if self.lane.source.versioned
                else {}
            ),
            "coverage": {
                "from": self.first_day.isoformat(),
                "days": self.strip,
                "expired": [
                    (self.first_day + timedelta(days=i)).isoformat()
                    for i, mark in enumerate(self.strip)
                    if mark == EXPIRED
                ],
            },
        }

    def lines(self) -> list[str]:
        """Lines for a terminal."""
        state, lag, settled_lag = self.state, self.lag(), self.settled_lag()
        verdict = "fresh" if self.fresh else "NOT FRESH: " + "; ".join(self.problems)
        out = [f"{self.name}: {verdict}"]
        out.append(
            f"  watermark {_stamp(state.watermark) or 'none'} ({_ago(lag)}), "
            f"settled {_stamp(state.settled) or 'none'} ({_ago(settled_lag)})"
        )
        if state.claims:
            out.append(
                f"  {len(state.claims)} window(s) claimed: "
                + ", ".join(f"{c.kind} {c.window}" for c in state.claims)
            )
        if state.owner is not None and state.lease_until is not None:
            until = datetime.fromtimestamp(state.lease_until, self.now.tzinfo)
            held = "held" if until > self.now else "lapsed"
            out.append(f"  lease {held} by run {state.owner} until {format_instant(until)}")
        run = self.last_run
        if run is None:
            out.append("  last run: none recorded")
        else:
            line = (
                f"  last run {run.get('at')}: {run.get('outcome')}, rows={run.get('rows')} "
                f"requests={run.get('requests')} throttled={run.get('throttled')} "
                f"({run.get('seconds')}s)"
            )
            out.append(line + (f" error: {run['error']}" if run.get("error") else ""))
        if self.lane.source.versioned:
            out.append(
                f"  {self.revisions} revision(s) archived by revisits since "
                f"{self.first_day.isoformat()}, {len(state.set_aside)} record(s) set aside"
            )
            out.extend(
                f"    set aside: {r.id} of {r.day.isoformat()} after {r.attempts} read(s): {r.error}"
                for r in state.set_aside
            )
        out.append(f"  {self.first_day.isoformat()} {self.strip} {self.now.date().isoformat()}")
        return out


def judge(
    lane: Lane,
    state: SourceState,
    last_run: dict[str, Any] | None,
    days: dict[date, str],
    now: datetime,
    max_lag: timedelta,
    consent: str | None = None,
) -> SourceHealth:
    """Judge one lane from its state, its last run and what each of the last days holds
    (``days``: the day's character, for the days archived or settled; others are derived).
    ``consent``: the admin-consent link of the lane's tenant (multi-tenant mode)."""
    first = min(days) if days else now.date()
    strip = "".join(
        days.get(first + timedelta(days=i), AHEAD) for i in range((now.date() - first).days + 1)
    )
    health = SourceHealth(lane, state, last_run, strip, first, now, max_lag)
    if state.set_aside:
        health.problems.append(
            f"{len(state.set_aside)} call record(s) set aside after failing every read (each "
            "day's revisits try them again while Graph keeps them)"
        )
    lag = health.lag()
    if lag is None:
        health.problems.append("never collected")
    elif lag > max_lag:
        health.problems.append(f"watermark {_ago(lag)}, more than {_duration(max_lag)}")
    if last_run is not None and last_run.get("outcome") == "failed":
        times = int(last_run.get("failedInARow") or 1)
        runs = f" ({times} runs in a row)" if times > 1 else ""
        health.problems.append(f"last run failed{runs}: {last_run.get('error')}")
        if consent is not None and any(c in str(last_run.get("error")) for c in NO_CONSENT):
            health.problems.append(f"the tenant has not consented: send its admin {consent}")
    return health


def day_marks(
    first: date,
    last: date,
    settled_days: set[date],
    archived_days: set[date],
    watermark: datetime | None,
    expired_before: date | None = None,
) -> dict[date, str]:
    """The coverage character of each day from ``first`` to ``last``; days before
    ``expired_before`` (``windows.expiry_horizon``) are in the retention rule's expiry zone."""
    marks: dict[date, str] = {}
    for i in range((last - first).days + 1):
        day = first + timedelta(days=i)
        read = (
            watermark is not None
            and datetime.combine(day, datetime.min.time(), watermark.tzinfo) < watermark
        )
        if day in settled_days:
            # The manifest is there: the day is final (verify tells whether blobs it lists
            # expired already; the manifest, written last, is the last to go).
            marks[day] = SETTLED
        elif expired_before is not None and day < expired_before and (read or day in archived_days):
            # A missing manifest or missing blobs may be the retention rule's doing here, so
            # the day is neither "provisional" nor "nothing archived": it is expired.
            marks[day] = EXPIRED
        elif day in archived_days:
            marks[day] = PROVISIONAL
        elif read:
            marks[day] = EMPTY
        else:
            marks[day] = AHEAD
    return marks


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m"


def _ago(span: timedelta | None) -> str:
    return "never" if span is None else f"{_duration(span)} behind"
