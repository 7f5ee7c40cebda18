"""Many tenants from one deployment, with no secret: the multi-tenant app signs in to each
customer tenant with the managed identity's token as its federated credential's assertion.

End-to-end tests run the collector in a child process: azure-identity reaches the local
token endpoint over HTTPS only, trusted through ``SSL_CERT_FILE`` (read when the process
starts)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from collector.cli import main
from collector.core.errors import ConfigError
from collector.core.settings import load_settings
from devstack.directory import Directory
from devstack.identity import TENANT_ID
from devstack.synthetic import Tenant

from .conftest import (
    SECOND,
    SECOND_END,
    SMALL_TENANT,
    START,
    Stack,
    assert_archive_matches,
    spawn,
)

APP = "5b7c1c2e-8a4d-4c1e-9f3a-2d6e8b0a1c01"
IDENTITY = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
CONTOSO = "aaaaaaaa-1111-4111-8111-000000000001"
FABRIKAM = "bbbbbbbb-2222-4222-8222-000000000002"
BASE = {"COLLECTOR_STORAGE": "UseDevelopmentStorage=true"}


def customers(
    stack: Stack,
    consented: tuple[str, ...] = (CONTOSO,),
    fabrikam_rows: dict[str, int] = SMALL_TENANT,
) -> Directory:
    """Two customer tenants with their own rows; ``consented`` granted the app."""
    directory = stack.graph.add_directory(
        APP,
        IDENTITY,
        {
            CONTOSO: Tenant(seed=21, rows_per_day=SMALL_TENANT),
            FABRIKAM: Tenant(seed=22, rows_per_day=fabrikam_rows),
        },
        consented,
    )
    stack.env.update(
        stack.graph.env(),
        COLLECTOR_TENANTS=f"{CONTOSO},{FABRIKAM}",
        COLLECTOR_APP_CLIENT_ID=APP,
        AZURE_CLIENT_ID=IDENTITY,
        COLLECTOR_SOURCES="direct_routing,pstn",
    )
    return directory


def run(stack: Stack, as_of: str = SECOND) -> subprocess.CompletedProcess[str]:
    process = spawn(stack, as_of)
    out, err = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_tenant_settings_are_checked_together() -> None:
    settings = load_settings(
        {
            **BASE,
            "COLLECTOR_TENANTS": f" {CONTOSO.upper()} ,{FABRIKAM}",
            "COLLECTOR_APP_CLIENT_ID": APP,
            "AZURE_CLIENT_ID": IDENTITY,
            "COLLECTOR_SOURCES": "sms,pstn",
        }
    )
    assert settings.tenants == (CONTOSO, FABRIKAM) and settings.app_client_id == APP
    assert [lane.name for lane in settings.lanes] == [
        f"sms@{CONTOSO}",
        f"pstn@{CONTOSO}",
        f"sms@{FABRIKAM}",
        f"pstn@{FABRIKAM}",
    ]
    assert [lane.name for lane in load_settings(BASE).lanes] == ["sms", "direct_routing"]
    cases = {
        "not-a-guid": "COLLECTOR_TENANTS='not-a-guid'",
        f"{CONTOSO},{CONTOSO}": "distinct tenant ids",
    }
    for tenants, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_settings({**BASE, "COLLECTOR_TENANTS": tenants, "COLLECTOR_APP_CLIENT_ID": APP})
    with pytest.raises(ConfigError, match="COLLECTOR_APP_CLIENT_ID=<not set>"):
        load_settings({**BASE, "COLLECTOR_TENANTS": CONTOSO, "AZURE_CLIENT_ID": IDENTITY})
    with pytest.raises(ConfigError, match=r"AZURE_CLIENT_ID=<not set>.*federated"):
        load_settings({**BASE, "COLLECTOR_TENANTS": CONTOSO, "COLLECTOR_APP_CLIENT_ID": APP})
    with pytest.raises(ConfigError, match=r"COLLECTOR_TENANTS=<not set>.*multi-tenant mode"):
        load_settings({**BASE, "COLLECTOR_APP_CLIENT_ID": APP})
    with pytest.raises(ConfigError, match="COLLECTOR_APP_CLIENT_ID='app'"):
        load_settings({**BASE, "COLLECTOR_APP_CLIENT_ID": "app"})


def test_consent_url_prints_the_admin_consent_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consent-url", CONTOSO.upper()], {"COLLECTOR_APP_CLIENT_ID": APP}) == 0
    assert capsys.readouterr().out == (
        f"https://login.microsoftonline.com/{CONTOSO}/adminconsent?client_id={APP}\n"
    )
    assert main(["consent-url", CONTOSO], {}) == 2
    assert "COLLECTOR_APP_CLIENT_ID=<not set>" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["consent-url", "contoso.onmicrosoft.com"], {"COLLECTOR_APP_CLIENT_ID": APP})
    assert exit_.value.code == 2


def test_each_consented_tenant_is_archived_in_its_own_folder_and_a_missing_consent_fails_alone(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = customers(stack)
    done = run(stack)
    assert done.returncode == 1, done.stderr  # Fabrikam has not consented
    assert f"pstn@{CONTOSO}: ok" in done.stdout
    assert f"pstn@{FABRIKAM}: failed" in done.stdout and "AADSTS65001" in done.stdout
    blobs = stack.blobs()
    for source in ("direct_routing", "pstn"):
        assert assert_archive_matches(stack, source, START, SECOND_END, blobs, tenant=CONTOSO)
        assert not [n for n in blobs if n.startswith(f"{source}/tenant={FABRIKAM}/")]
        assert not [n for n in blobs if n.startswith(f"{source}/year=")]  # no untenanted rows
        assert f"_state/tenant={CONTOSO}/{source}.json" in blobs
        assert f"_manifests/{source}/tenant={CONTOSO}/2026-10-20.json" in blobs
        manifest = json.loads(blobs[f"_manifests/{source}/tenant={CONTOSO}/2026-10-20.json"])
        assert manifest["tenant"] == CONTOSO and manifest["source"] == source
    simulator = stack.graph.simulator
    assert simulator.stats[f"requests@{CONTOSO}"] > 0
    assert simulator.stats[f"requests@{TENANT_ID}"] == 0  # the home tenant is not collected
    assert directory.issued == {CONTOSO: 1}  # one Graph token, shared by the tenant's lanes

    capsys.readouterr()
    assert main(["status", "--as-of", SECOND, "--json"], stack.env) == 1
    health = {
        (h["source"], h.get("tenant")): h for h in json.loads(capsys.readouterr().out)["sources"]
    }
    assert health[("pstn", CONTOSO)]["fresh"] is True
    link = f"{stack.env['AZURE_AUTHORITY_HOST']}/{FABRIKAM}/adminconsent?client_id={APP}"
    assert (
        f"the tenant has not consented: send its admin {link}"
        in health[("pstn", FABRIKAM)]["problems"]
    )

    directory.consented.add(FABRIKAM)  # the customer's administrator opened the link
    done = run(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    blobs = stack.blobs()
    for source in ("direct_routing", "pstn"):
        assert assert_archive_matches(stack, source, START, SECOND_END, blobs, tenant=FABRIKAM)


def test_an_identity_the_federated_credential_does_not_trust_gets_no_token(stack: Stack) -> None:
    directory = customers(stack, consented=(CONTOSO, FABRIKAM))
    stack.env["AZURE_CLIENT_ID"] = "0b0b0b0b-0000-4000-8000-00000000b0b0"
    done = run(stack)
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if "AADSTS700213" in line]
    assert len(failed) == 4  # every lane of both tenants
    assert directory.issued == {} and stack.graph.simulator.stats["requests"] == 0


def test_a_throttled_tenant_slows_itself_only(stack: Stack) -> None:
    # Fabrikam is busy: its logs need more requests than Graph allows it in a few seconds.
    customers(stack, (CONTOSO, FABRIKAM), {"direct_routing": 6_000, "pstn": 4_000})
    stack.graph.simulator.throttle(per_log=16, per_app=100, period=3.0)
    done = run(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = stack.graph.simulator.stats
    assert stats[f"throttled@{FABRIKAM}"] > 0 and stats[f"throttled@{CONTOSO}"] == 0
    blobs = stack.blobs()
    seconds = {}
    for tenant in (CONTOSO, FABRIKAM):
        for source in ("direct_routing", "pstn"):
            assert assert_archive_matches(stack, source, START, SECOND_END, blobs, tenant=tenant)
        runs = [
            json.loads(blobs[f"_state/tenant={tenant}/{s}.run.json"])
            for s in ("direct_routing", "pstn")
        ]
        assert all(r["outcome"] == "ok" for r in runs)
        seconds[tenant] = max(r["seconds"] for r in runs)
    assert seconds[CONTOSO] < seconds[FABRIKAM], seconds


def test_each_tenant_gets_its_own_daily_dial_out_report(stack: Stack) -> None:
    customers(stack, consented=(CONTOSO, FABRIKAM))
    stack.env.update(COLLECTOR_SOURCES="pstn,pstn_dialout_report")
    done = run(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    blobs = stack.blobs()
    day = datetime(2026, 10, 20, tzinfo=UTC)  # the one day past the 48 h lateness
    reports = {}
    for tenant in (CONTOSO, FABRIKAM):
        folder = f"pstn_dialout_report/tenant={tenant}/year=2026/month=10/day=20/"
        assert [n for n in blobs if n.startswith(f"pstn_dialout_report/tenant={tenant}/")] == [
            f"{folder}settle-2026-10-20.jsonl"
        ]
        served = stack.graph.simulator.tenants[tenant].rows_between(
            "pstn_dialout_report", day, day + timedelta(days=1)
        )
        reports[tenant] = [
            json.loads(x) for x in blobs[f"{folder}settle-2026-10-20.jsonl"].splitlines()
        ]
        assert reports[tenant] == served and served
        manifest = json.loads(
            blobs[f"_manifests/pstn_dialout_report/tenant={tenant}/2026-10-20.json"]
        )
        assert manifest["tenant"] == tenant and manifest["rows"] == len(served)
    assert reports[CONTOSO] != reports[FABRIKAM]  # each tenant's own calls
