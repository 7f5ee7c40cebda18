"""The command line as a user runs it: a separate process, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from collector.core.sources import SOURCES
from collector.core.timefmt import parse_instant
from devstack.azurite import Azurite
from devstack.graph_simulator import Fault

from .conftest import Stack, assert_archive_matches, data_rows

ROOT = Path(__file__).resolve().parent.parent


def collector(stack: Stack, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env, **overrides}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_exits_0_and_prints_one_line_per_source(stack: Stack) -> None:
    done = collector(stack, "run", "--as-of", "2026-10-21T06:00:00Z")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sms", "direct_routing", "pstn"]
    assert all(" ok " in line for line in lines)
    assert "window 2/2" in done.stderr  # progress is logged per window
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, "2026-10-20T00:00:00Z", "2026-10-21T05:00:00Z")


def test_failed_source_exits_1_others_complete(stack: Stack) -> None:
    stack.graph.simulator.add_fault(
        Fault("status", count=-1, source="pstn", status=404, code="NotFound")
    )
    done = collector(stack, "run", "--as-of", "2026-10-21T06:00:00Z")
    assert done.returncode == 1
    assert "pstn: failed" in done.stdout and "HTTP 404 NotFound" in done.stdout
    assert "sms: ok" in done.stdout and "direct_routing: ok" in done.stdout


def test_config_error_exits_2_naming_the_setting(stack: Stack) -> None:
    done = collector(stack, "run", COLLECTOR_SOURCES="sms,voicemail")
    assert done.returncode == 2
    assert "COLLECTOR_SOURCES='sms,voicemail'" in done.stderr and "direct_routing" in done.stderr
    assert stack.graph.simulator.stats["requests"] == 0


def test_bad_as_of_is_a_usage_error(stack: Stack) -> None:
    done = collector(stack, "run", "--as-of", "tomorrow")
    assert done.returncode == 2 and "--as-of" in done.stderr


@pytest.fixture(scope="module")
def azurite_oauth() -> Iterator[Azurite]:
    """Azurite over HTTPS that accepts only bearer tokens' audience/issuer/lifetime checks."""
    emulator = Azurite(oauth=True)
    emulator.start()
    yield emulator
    emulator.stop()


def test_keyless_storage_with_a_user_assigned_managed_identity(
    stack: Stack, azurite_oauth: Azurite
) -> None:
    client_id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    env = {k: v for k, v in stack.env.items() if k != "COLLECTOR_STORAGE"}
    env.update(
        COLLECTOR_STORAGE__blobServiceUri=azurite_oauth.blob_service_uri,
        COLLECTOR_STORAGE__clientId=client_id,
        COLLECTOR_SOURCES="sms",
        SSL_CERT_FILE=str(azurite_oauth.cert_file),  # trust Azurite's self-signed certificate
    )
    done = subprocess.run(
        [sys.executable, "-m", "collector", "run", "--as-of", "2026-10-21T06:00:00Z"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stack.graph.authority.issued_for["https://storage.azure.com"] == 1
    # What landed, read back with the account key over the same HTTPS endpoint.
    container = BlobServiceClient.from_connection_string(
        azurite_oauth.connection_string, connection_verify=str(azurite_oauth.cert_file)
    ).get_container_client(stack.env["COLLECTOR_CONTAINER"])
    blobs = {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}
    expected = stack.tenant.rows_between(
        "sms", parse_instant("2026-10-20T00:00:00Z"), parse_instant("2026-10-21T05:00:00Z")
    )
    assert sorted(r["id"] for _, r in data_rows(blobs, "sms")) == sorted(r["id"] for r in expected)


def test_storage_rejects_a_run_without_a_valid_identity(
    stack: Stack, azurite_oauth: Azurite
) -> None:
    # Sanity check of the emulator: the same request with a shared-key-less, token-less
    # client is refused, so the test above really authenticated with the identity's token.
    container = BlobServiceClient(
        azurite_oauth.blob_service_uri, connection_verify=str(azurite_oauth.cert_file)
    ).get_container_client("anything")
    with pytest.raises(HttpResponseError):
        container.create_container()


def test_demo_runs_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "every row exactly once" in done.stdout
    assert "settle-" in done.stdout and "part-" in done.stdout and "_manifests/" in done.stdout
    assert "python -m collector status" in done.stdout
    assert done.stdout.count(": fresh") == len(SOURCES)  # every log, every one healthy
    assert "pstn_dialout_report/year=" in done.stdout  # a whole day past the lateness


def test_as_of_in_the_future_is_refused(stack: Stack) -> None:
    done = collector(stack, "run", "--as-of", "2099-01-01T00:00:00Z")
    assert done.returncode == 2 and "is in the future" in done.stderr
    assert stack.graph.simulator.stats["requests"] == 0
