"""The azd postprovision hook that grants the identity Graph's permission, or prints the one
command an administrator must run, driven with stub ``az`` and ``azd`` on ``PATH``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "infra" / "hooks" / "postprovision.sh"
PRINCIPAL = "11111111-2222-3333-4444-555555555555"
GRAPH_SP = "99999999-0000-0000-0000-000000000001"
ROLE_ID = "45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8"
TENANT = "aaaaaaaa-0000-0000-0000-000000000001"

STUB_AZ = f"""#!/bin/sh
printf '%s\\n' "$*" >> "$STUB_LOG"
case "$*" in
  "account show --query tenantId -o tsv")
    [ "$STUB_SIGNED_IN" = no ] && exit 1
    echo "$STUB_TENANT" ;;
  "ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv") echo {GRAPH_SP} ;;
  "ad sp show --id 00000003-0000-0000-c000-000000000000 --query appRoles"*) echo {ROLE_ID} ;;
  "rest --method GET"*) [ "$STUB_GRANTED" = yes ] && echo assignment-1 ;;
  "rest --method POST"*)
    posts=$(grep -c "^rest --method POST" "$STUB_LOG")
    if [ "$posts" -le "$STUB_NOT_FOUND" ]; then
      echo 'ERROR: Not Found({{"error":{{"code":"Request_ResourceNotFound","message":"Resource does not exist"}}}})' >&2
      exit 1
    fi
    if [ "$STUB_ADMIN" = yes ]; then echo '{{}}'; exit 0; fi
    echo 'ERROR: Forbidden({{"error":{{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}}})' >&2
    exit 1 ;;
esac
"""
STUB_AZD = """#!/bin/sh
printf 'azd %s\\n' "$*" >> "$STUB_LOG"
[ "$*" = "env get-value GRAPH_ENDPOINT" ] && echo https://graph.microsoft.com
exit 0
"""


def run_hook(
    tmp_path: Path,
    *,
    admin: bool,
    granted: bool = False,
    signed_in: bool = True,
    tenant: str = TENANT,
    not_found: int = 0,
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("az", STUB_AZ), ("azd", STUB_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    done = subprocess.run(
        ["sh", str(HOOK)],
        env={
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
            "STUB_LOG": str(log),
            "STUB_ADMIN": "yes" if admin else "no",
            "STUB_GRANTED": "yes" if granted else "no",
            "STUB_SIGNED_IN": "yes" if signed_in else "no",
            "STUB_TENANT": tenant,
            "STUB_NOT_FOUND": str(not_found),
            "GRANT_RETRY_SECONDS": "0",
            "AZURE_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
            "AZURE_TENANT_ID": TENANT,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, log.read_text().splitlines()


def posts(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("rest --method POST")]


def test_a_deployer_who_may_grant_gets_the_grant(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, admin=True)
    assert done.returncode == 0, done.stderr
    assert f"Granted CallRecords.Read.All to the identity {PRINCIPAL}" in done.stdout
    (post,) = posts(calls)
    uri = f"https://graph.microsoft.com/v1.0/servicePrincipals/{PRINCIPAL}/appRoleAssignments"
    body = json.loads(post.split("--body ", 1)[1])
    assert post.startswith(f"rest --method POST --uri {uri} ")
    assert body == {"principalId": PRINCIPAL, "resourceId": GRAPH_SP, "appRoleId": ROLE_ID}
    assert "azd env get-value GRAPH_ENDPOINT" in calls  # not in the environment: asked azd


def test_a_deployer_who_may_not_gets_a_working_deployment_and_the_admins_command(
    tmp_path: Path,
) -> None:
    done, calls = run_hook(tmp_path, admin=False, GRAPH_ENDPOINT="https://graph.microsoft.com")
    assert done.returncode == 0  # the deployment is not failed for it
    assert "Insufficient privileges" in done.stdout and TENANT in done.stdout
    (line,) = [x.strip() for x in done.stdout.splitlines() if x.strip().startswith("az rest")]
    argv = shlex.split(line)
    assert argv[:5] == ["az", "rest", "--method", "POST", "--uri"]
    assert argv[5].endswith(f"/servicePrincipals/{PRINCIPAL}/appRoleAssignments")
    assert json.loads(argv[7]) == {
        "principalId": PRINCIPAL,
        "resourceId": GRAPH_SP,
        "appRoleId": ROLE_ID,
    }
    (pwsh,) = [x.strip() for x in done.stdout.splitlines() if x.strip().startswith("New-Mg")]
    assert pwsh.split()[1:] == [
        "-ServicePrincipalId", PRINCIPAL, "-PrincipalId", PRINCIPAL,
        "-ResourceId", GRAPH_SP, "-AppRoleId", ROLE_ID,
    ]  # fmt: skip
    assert len(posts(calls)) == 1


def test_a_new_identity_not_yet_replicated_is_granted_on_a_retry(tmp_path: Path) -> None:
    done, calls = run_hook(
        tmp_path, admin=True, not_found=2, GRAPH_ENDPOINT="https://graph.microsoft.com"
    )
    assert done.returncode == 0 and "Granted CallRecords.Read.All" in done.stdout
    assert len(posts(calls)) == 3


def test_an_az_cli_not_signed_in_gets_a_command_that_looks_the_ids_up(tmp_path: Path) -> None:
    done, calls = run_hook(
        tmp_path, admin=True, signed_in=False, GRAPH_ENDPOINT="https://graph.microsoft.com"
    )
    assert done.returncode == 0 and "az login --tenant" in done.stdout
    (line,) = [x.strip() for x in done.stdout.splitlines() if x.strip().startswith("az rest")]
    assert "$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv)" in line
    assert not posts(calls)


def test_an_az_cli_in_another_tenant_is_told_so_before_anything_is_looked_up(
    tmp_path: Path,
) -> None:
    done, calls = run_hook(
        tmp_path, admin=True, tenant="bbbbbbbb-0000", GRAPH_ENDPOINT="https://graph.microsoft.com"
    )
    assert done.returncode == 0
    assert (
        f"az login --tenant {TENANT}" in done.stdout
        and "azd hooks run postprovision" in done.stdout
    )
    assert not [c for c in calls if c.startswith(("ad sp", "rest"))]


def test_grant_off_only_prints_the_command(tmp_path: Path) -> None:
    done, calls = run_hook(
        tmp_path,
        admin=True,
        GRANT_GRAPH_PERMISSION="false",
        GRAPH_ENDPOINT="https://graph.microsoft.us",
    )
    assert done.returncode == 0
    assert "az rest --method POST --uri https://graph.microsoft.us/v1.0/" in done.stdout
    assert not posts(calls)


def test_an_existing_grant_is_left_alone(tmp_path: Path) -> None:
    done, calls = run_hook(
        tmp_path, admin=True, granted=True, GRAPH_ENDPOINT="https://graph.microsoft.com"
    )
    assert done.returncode == 0 and "already has CallRecords.Read.All" in done.stdout
    assert not posts(calls)


def test_the_grant_setting_is_read_regardless_of_case(tmp_path: Path) -> None:
    done, calls = run_hook(
        tmp_path, admin=True, GRANT_GRAPH_PERMISSION="False", GRAPH_ENDPOINT="https://x"
    )
    assert done.returncode == 0 and not posts(calls)


@pytest.mark.parametrize("value", ["yes", "maybe"])
def test_a_bad_grant_setting_is_refused(tmp_path: Path, value: str) -> None:
    done, _ = run_hook(
        tmp_path, admin=True, GRANT_GRAPH_PERMISSION=value, GRAPH_ENDPOINT="https://x"
    )
    assert done.returncode == 2 and "GRANT_GRAPH_PERMISSION" in done.stderr


def test_multi_tenant_mode_grants_the_identity_nothing_and_says_how_tenants_consent(
    tmp_path: Path,
) -> None:
    app = "5b7c1c2e-8a4d-4c1e-9f3a-2d6e8b0a1c01"
    done, calls = run_hook(tmp_path, admin=True, MULTI_TENANT="True", COLLECTOR_APP_CLIENT_ID=app)
    assert done.returncode == 0, done.stderr
    assert posts(calls) == []
    assert f"/<tenant id>/adminconsent?client_id={app}" in done.stdout
