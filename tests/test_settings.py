"""Settings validation (pure) and the guarantee that bad settings change nothing (end to end)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.core.errors import ConfigError
from collector.core.settings import DEFAULTS, SETTING_NAMES, load_settings

from .conftest import Stack

ROOT = Path(__file__).resolve().parent.parent
BASE = {"COLLECTOR_STORAGE": "UseDevelopmentStorage=true"}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.graph_endpoint == "https://graph.microsoft.com"
    assert s.graph_scope == "https://graph.microsoft.com/.default"
    assert [src.name for src in s.sources] == ["sms", "direct_routing"]
    assert s.container == "callrecords"
    assert s.lag == timedelta(minutes=60)
    assert s.start is None
    assert s.schedule == "0 5 * * * *"
    assert s.identity_client_id is None
    assert s.records_period_scale == 1.0
    assert s.revisit_days == (3, 7, 14, 28)
    assert s.record_attempts == 3


def test_everything_set() -> None:
    s = load_settings(
        {
            "GRAPH_ENDPOINT": "https://graph.microsoft.us/",
            "COLLECTOR_SOURCES": "pstn, sms",
            "COLLECTOR_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
            "COLLECTOR_STORAGE__clientId": "11111111-2222-3333-4444-555555555555",
            "AZURE_CLIENT_ID": "aaaaaaaa-2222-3333-4444-555555555555",
            "COLLECTOR_CONTAINER": "call-logs",
            "COLLECTOR_START": "2026-01-01",
            "COLLECTOR_LAG_MINUTES": "0",
            "COLLECTOR_SCHEDULE": "0 */15 * * * *",
        }
    )
    assert s.graph_scope == "https://graph.microsoft.us/.default"
    assert [src.name for src in s.sources] == ["pstn", "sms"]
    assert s.storage.blob_service_uri == "https://acct.blob.core.windows.net"
    assert s.storage.client_id == "11111111-2222-3333-4444-555555555555"
    assert s.start == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("GRAPH_ENDPOINT", "http://graph.microsoft.com", "https URL"),
        ("GRAPH_ENDPOINT", "https://graph.microsoft.com/v1.0", "no path"),
        ("COLLECTOR_SOURCES", "sms,calls", "sms, direct_routing, pstn"),
        ("COLLECTOR_SOURCES", "sms,sms", "distinct"),
        ("COLLECTOR_CONTAINER", "Call_Records", "lowercase"),
        ("COLLECTOR_CONTAINER", "ab", "3-63"),
        ("COLLECTOR_START", "last tuesday", "ISO 8601"),
        ("COLLECTOR_START", "2026-01-01T00:00:00", "ISO 8601"),
        ("COLLECTOR_START", "2010-01-01", "not before 2015"),
        ("COLLECTOR_LAG_MINUTES", "-5", "from 0 to 10080"),
        ("COLLECTOR_LAG_MINUTES", "1h", "whole number"),
        ("COLLECTOR_SCHEDULE", "*/5 * * * *", "six fields"),
        ("GRAPH_TIMEOUT_SECONDS", "0", "from 1 to 600"),
        ("AZURE_CLIENT_ID", "my-identity", "GUID"),
        ("COLLECTOR_STORAGE", "nonsense", "connection string"),
        ("ARCHIVE_DELETE_AFTER_DAYS", "36501", "from 5 "),
        ("ARCHIVE_DELETE_AFTER_DAYS", "-1", "to 36500"),
        ("ARCHIVE_DELETE_AFTER_DAYS", "30d", "whole number of days"),
        ("GRAPH_CALL_RECORDS_PERIOD_SCALE", "0", "above 0 and at most 1"),
        ("GRAPH_CALL_RECORDS_PERIOD_SCALE", "-0.5", "above 0 and at most 1"),
        ("GRAPH_CALL_RECORDS_PERIOD_SCALE", "1.5", "above 0 and at most 1"),
        ("GRAPH_CALL_RECORDS_PERIOD_SCALE", "nan", "above 0 and at most 1"),
        ("GRAPH_CALL_RECORDS_PERIOD_SCALE", "fast", "0.05 turns 20 s into 1 s"),
        ("CALL_RECORDS_REVISIT_DAYS", "3,7,7", "ascending and distinct"),
        ("CALL_RECORDS_REVISIT_DAYS", "7,3", "ascending and distinct"),
        ("CALL_RECORDS_REVISIT_DAYS", "0", "each from 1 "),
        ("CALL_RECORDS_REVISIT_DAYS", "3,29", "to 28 (Graph keeps call records 30 days)"),
        ("CALL_RECORDS_REVISIT_DAYS", "3;7", "comma-separated whole numbers"),
        ("CALL_RECORDS_REVISIT_DAYS", "3,,7", "comma-separated whole numbers"),
        ("CALL_RECORDS_REVISIT_DAYS", "3.5", "empty or 'none': no revisits"),
        ("CALL_RECORDS_ATTEMPTS", "0", "from 1 to 20"),
        ("CALL_RECORDS_ATTEMPTS", "21", "from 1 to 20"),
        ("CALL_RECORDS_ATTEMPTS", "three", "whole number"),
    ],
)
def test_bad_values_name_the_setting_value_and_what_is_allowed(
    name: str, value: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, name: value})
    message = str(caught.value)
    assert caught.value.setting == name
    assert name in message and hint in message
    if name != "COLLECTOR_STORAGE":  # a connection string may hold a key: never echoed
        assert value in message


def test_archive_retention_is_whole_days_and_unset_empty_or_0_mean_blobs_never_expire() -> None:
    assert load_settings(BASE).delete_after is None
    for never in ("", " ", "0"):
        assert load_settings({**BASE, "ARCHIVE_DELETE_AFTER_DAYS": never}).delete_after is None
    for days in (5, 30, 36_500):
        settings = load_settings({**BASE, "ARCHIVE_DELETE_AFTER_DAYS": f" {days} "})
        assert settings.delete_after == timedelta(days=days)


def test_archive_retention_shorter_than_settling_is_refused() -> None:
    # A day settles its lateness and lag after it ends: its first blobs must still be there
    # (48 h + 60 min -> 3 days, and 2 days of slack: at least 5).
    with pytest.raises(ConfigError, match=r"from 5 .*COLLECTOR_LATENESS_HOURS"):
        load_settings({**BASE, "ARCHIVE_DELETE_AFTER_DAYS": "4"})
    quick = {**BASE, "COLLECTOR_LATENESS_HOURS": "6", "COLLECTOR_LAG_MINUTES": "0"}
    assert load_settings({**quick, "ARCHIVE_DELETE_AFTER_DAYS": "3"}).delete_after == (
        timedelta(days=3)
    )
    with pytest.raises(ConfigError, match="from 3 "):
        load_settings({**quick, "ARCHIVE_DELETE_AFTER_DAYS": "2"})


def test_call_records_period_scale_shrinks_graphs_spans_for_a_simulator_scaled_alike() -> None:
    for raw, scale in (("1", 1.0), ("0.05", 0.05), (" 0.5 ", 0.5), ("1e-3", 0.001)):
        settings = load_settings({**BASE, "GRAPH_CALL_RECORDS_PERIOD_SCALE": raw})
        assert settings.records_period_scale == scale
    assert load_settings({**BASE, "GRAPH_CALL_RECORDS_PERIOD_SCALE": ""}).records_period_scale == 1


def test_call_record_attempts_are_a_whole_number_from_1_to_20() -> None:
    for attempts in (1, 5, 20):
        settings = load_settings({**BASE, "CALL_RECORDS_ATTEMPTS": f" {attempts} "})
        assert settings.record_attempts == attempts


def test_revisit_days_are_ascending_days_after_the_first_read_and_empty_means_none() -> None:
    def revisits(value: str, **env: str) -> tuple[int, ...]:
        return load_settings({**BASE, **env, "CALL_RECORDS_REVISIT_DAYS": value}).revisit_days

    assert revisits("3,7,14,28") == (3, 7, 14, 28)
    assert revisits(" 4 , 10,28 ") == (4, 10, 28)
    assert revisits("28") == (28,)
    # Unlike other settings, empty is a value: no revisits (and "none", where an app setting
    # cannot stay empty).
    for never in ("", "  ", "none", "None"):
        assert revisits(never) == ()
    # Checked whatever the sources: call_records is not among the defaults.
    assert "call_records" not in DEFAULTS["COLLECTOR_SOURCES"]
    with pytest.raises(ConfigError, match="CALL_RECORDS_REVISIT_DAYS='30'"):
        revisits("30")


def test_revisit_days_come_after_the_first_read() -> None:
    # A day is first read COLLECTOR_LATENESS_HOURS + COLLECTOR_LAG_MINUTES after it ends:
    # 48 h + 60 min is 2 days and 1 h, so the first revisit is 3 days after, at the earliest.
    def revisits(value: str | None, hours: int, minutes: int, sources: str) -> tuple[int, ...]:
        env = {
            **BASE,
            "COLLECTOR_SOURCES": sources,
            "COLLECTOR_LATENESS_HOURS": str(hours),
            "COLLECTOR_LAG_MINUTES": str(minutes),
        }
        if value is not None:
            env["CALL_RECORDS_REVISIT_DAYS"] = value
        return load_settings(env).revisit_days

    records = "call_records"
    assert revisits("1,2", 6, 0, records) == (1, 2)
    assert revisits("3", 47, 59, records) == (3,)
    with pytest.raises(ConfigError, match="each from 4 "):
        revisits("3,7", 48, 24 * 60, records)  # first read 3 days after: a revisit then is none
    with pytest.raises(ConfigError, match="each from 4 ") as caught:
        revisits("3,7", 72, 0, records)
    assert caught.value.setting == "CALL_RECORDS_REVISIT_DAYS"
    assert "COLLECTOR_LATENESS_HOURS + COLLECTOR_LAG_MINUTES" in caught.value.allowed
    assert revisits("4,7", 72, 0, records) == (4, 7)
    # The call logs alone may wait longer: the default stands, as it did before the setting.
    assert revisits(None, 700, 0, "pstn,direct_routing") == (3, 7, 14, 28)
    with pytest.raises(ConfigError, match="CALL_RECORDS_REVISIT_DAYS='30'"):
        revisits("30", 700, 0, "pstn")  # the range holds whatever the sources
    # First read too late for any revisit (28 days, the most Graph's 30 allow): only none.
    assert revisits("none", 672, 0, records) == ()
    with pytest.raises(ConfigError, match="too late for a revisit by day 28") as caught:
        revisits(None, 672, 0, records)
    assert caught.value.value == "3,7,14,28"


def test_storage_is_required_and_unambiguous() -> None:
    with pytest.raises(ConfigError, match="COLLECTOR_STORAGE=<not set>"):
        load_settings({})
    with pytest.raises(ConfigError, match="use one of the two"):
        load_settings(
            {**BASE, "COLLECTOR_STORAGE__blobServiceUri": "https://a.blob.core.windows.net"}
        )


def test_every_setting_is_documented_in_the_example_and_the_reference() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for name in SETTING_NAMES:
        assert name in example, f"{name} missing from local.settings.example.json"
        assert f"| `{name}` |" in reference, f"{name} missing from docs/configuration.md"
    for name, default in DEFAULTS.items():
        assert f"| `{name}` | `{name}` | `{default}` |" in reference or (
            f"| `{default}` |" in reference
        ), f"default of {name} missing from docs/configuration.md"


def test_bad_setting_stops_the_run_before_any_request(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run("2026-10-23T12:00:00Z", COLLECTOR_LAG_MINUTES="soon") == 2
    err = capsys.readouterr().err
    assert "COLLECTOR_LAG_MINUTES='soon'" in err and "whole number" in err
    assert stack.graph.simulator.stats["requests"] == 0
    assert stack.graph.authority.issued == 0
    assert not stack.container().exists()
