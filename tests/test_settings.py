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
