"""The azd postprovision hook that locks the archive's immutability policy when asked, and
grants the identity Graph's permission or prints the one command an administrator must run,
driven with stub ``az`` and ``azd`` on ``PATH`` that log their calls (the preprovision hook's
tests use the same stubs)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
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
"""
# Azure Resource Manager: subscription, resource providers and the archive account. A provider
# in STUB_UNREGISTERED answers NotRegistered until it is registered, then Registering until
# STUB_REGISTERED_AFTER polls have followed the register call.
STUB_AZ += """
  "account show --subscription "*)
    [ "$STUB_SIGNED_IN" = no ] && { echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; }
    echo "$4" ;;
  "provider show --namespace "*)
    case " $STUB_UNREGISTERED " in *" $4 "*) ;; *) echo Registered; exit 0 ;; esac
    grep -q "^provider register --namespace $4 " "$STUB_LOG" || { echo NotRegistered; exit 0; }
    polls=$(awk -v r="provider register --namespace $4 " -v s="provider show --namespace $4 " \\
      'index($0, r) == 1 {on = 1} on && index($0, s) == 1 {n++} END {print n + 0}' "$STUB_LOG")
    if [ "$polls" -ge "$STUB_REGISTERED_AFTER" ]; then echo Registered; else echo Registering; fi ;;
  "provider register "*)
    [ -n "$STUB_REGISTER_ERROR" ] && { printf '%s\\n' "$STUB_REGISTER_ERROR" >&2; exit 1; }
    echo "Registering is still on-going. You can monitor using 'az provider show -n $4'" >&2 ;;
  "storage account "*)
    [ "$STUB_SIGNED_IN" = no ] && { echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; }
    case "$3" in
      show)
        [ -n "$STUB_STORAGE_ERROR" ] && { printf '%s\\n' "$STUB_STORAGE_ERROR" >&2; exit 1; }
        if [ -n "$STUB_POLICY_STATE" ]; then echo "$STUB_POLICY_STATE"; fi ;;
      update)
        [ -n "$STUB_UPDATE_ERROR" ] && { printf '%s\\n' "$STUB_UPDATE_ERROR" >&2; exit 1; }
        echo '{}' ;;
    esac ;;
esac
"""
# azd: logs every call; `env get-value NAME` answers STUB_AZD_<NAME>, or fails as azd does
# for a value the environment lacks.
STUB_AZD = """#!/bin/sh
printf 'azd %s\\n' "$*" >> "$STUB_LOG"
if [ "$1 $2" = "env get-value" ]; then
  eval "answer=\\${STUB_AZD_$3:-}"
  [ -n "$answer" ] || { echo "ERROR: key '$3' not found in the environment values" >&2; exit 1; }
  printf '%s\\n' "$answer"
fi
exit 0
"""
STUB_DEFAULTS = {
    "STUB_ADMIN": "no",
    "STUB_GRANTED": "no",
    "STUB_SIGNED_IN": "yes",
    "STUB_TENANT": TENANT,
    "STUB_NOT_FOUND": "0",
    "STUB_UNREGISTERED": "",
    "STUB_REGISTERED_AFTER": "1",
    "STUB_REGISTER_ERROR": "",
    "STUB_POLICY_STATE": "",
    "STUB_STORAGE_ERROR": "",
    "STUB_UPDATE_ERROR": "",
    "STUB_AZD_GRAPH_ENDPOINT": "https://graph.microsoft.com",
}


def run_script(
    tmp_path: Path, script: Path, env: Mapping[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a hook with ``sh`` (dash here, as on Debian) and the stubs; its calls, in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("az", STUB_AZ), ("azd", STUB_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    done = subprocess.run(
        ["sh", str(script)],
        env={
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
            "STUB_LOG": str(log),
            **STUB_DEFAULTS,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, log.read_text().splitlines()


def run_hook(
    tmp_path: Path,
    *,
    admin: bool,
    granted: bool = False,
    signed_in: bool = True,
    tenant: str = TENANT,
    not_found: int = 0,
    extra: Mapping[str, str] | None = None,
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    return run_script(
        tmp_path,
        HOOK,
        {
            "STUB_ADMIN": "yes" if admin else "no",
            "STUB_GRANTED": "yes" if granted else "no",
            "STUB_SIGNED_IN": "yes" if signed_in else "no",
            "STUB_TENANT": tenant,
            "STUB_NOT_FOUND": str(not_found),
            "GRANT_RETRY_SECONDS": "0",
            "AZURE_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
            "AZURE_TENANT_ID": TENANT,
            **env,
            **(extra or {}),
        },
    )


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


# --- the immutability lock ---------------------------------------------------------------

ACCOUNT = "stcalllogsarchive"
GROUP = "rg-calllogs"
SUBSCRIPTION = "cccccccc-0000-0000-0000-000000000001"
SHOW = (
    f"storage account show --name {ACCOUNT} --resource-group {GROUP} --subscription {SUBSCRIPTION}"
    " --query immutableStorageWithVersioning.immutabilityPolicy.state -o tsv"
)
LOCK = (
    f"storage account update --name {ACCOUNT} --resource-group {GROUP} --subscription {SUBSCRIPTION}"
    " --immutability-state Locked --immutability-period 365 --allow-protected-append-writes false"
)
RECORD = "azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true"


def lock_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The postprovision hook after provisioning a 365-day archive, asked to lock it, by a
    deployer who may grant the Graph permission."""
    return run_hook(
        tmp_path,
        admin=True,
        extra={
            "GRAPH_ENDPOINT": "https://graph.microsoft.com",
            "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
            "AZURE_RESOURCE_GROUP": GROUP,
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "ARCHIVE_IMMUTABILITY_DAYS": "365",
            "ARCHIVE_IMMUTABILITY_LOCKED": "true",
            **env,
        },
    )


def storage_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("storage account")]


def env_sets(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("azd env set")]


def test_an_unlocked_policy_is_locked_after_a_warning_then_recorded_and_the_grant_follows(
    tmp_path: Path,
) -> None:
    done, calls = lock_hook(
        tmp_path, STUB_POLICY_STATE="Unlocked", ARCHIVE_IMMUTABILITY_LOCKED="True"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert storage_calls(calls) == [SHOW, LOCK]
    assert env_sets(calls) == [RECORD]
    assert calls.index(LOCK) < calls.index(RECORD) < calls.index(posts(calls)[0])
    warning = done.stdout[: done.stdout.index("Locked the immutability policy")]
    assert "is final" in warning and "never shortened, unlocked or removed" in warning
    assert "cannot be deleted" in warning and "no command that undoes it" in warning
    assert f"Locked the immutability policy of the archive account {ACCOUNT}" in done.stdout
    assert "Granted CallRecords.Read.All" in done.stdout


def test_a_policy_locked_already_is_not_updated_but_recorded(tmp_path: Path) -> None:
    done, calls = lock_hook(tmp_path, STUB_POLICY_STATE="Locked")
    assert done.returncode == 0 and "locked already" in done.stdout
    assert storage_calls(calls) == [SHOW]
    assert env_sets(calls) == [RECORD]


def test_a_lock_recorded_already_is_not_written_again(tmp_path: Path) -> None:
    done, calls = lock_hook(
        tmp_path, STUB_POLICY_STATE="Locked", ARCHIVE_IMMUTABILITY_POLICY_LOCKED="true"
    )
    assert done.returncode == 0 and "locked already" in done.stdout
    assert env_sets(calls) == []


def test_locking_without_immutability_days_has_nothing_to_lock(tmp_path: Path) -> None:
    done, calls = lock_hook(tmp_path, STUB_POLICY_STATE="Unlocked", ARCHIVE_IMMUTABILITY_DAYS="0")
    assert done.returncode == 0
    assert "ARCHIVE_IMMUTABILITY_DAYS is 0: nothing to lock" in done.stdout
    assert storage_calls(calls) == [] and env_sets(calls) == []
    assert len(posts(calls)) == 1


def test_without_the_lock_setting_the_archive_is_not_touched(tmp_path: Path) -> None:
    done, calls = lock_hook(tmp_path, STUB_POLICY_STATE="Unlocked", ARCHIVE_IMMUTABILITY_LOCKED="")
    assert done.returncode == 0
    assert "azd env get-value ARCHIVE_IMMUTABILITY_LOCKED" in calls  # asked azd, got nothing
    assert storage_calls(calls) == [] and "immutability" not in done.stdout


@pytest.mark.parametrize(
    ("stub", "reason"),
    [
        (
            {"STUB_UPDATE_ERROR": "ERROR: (AuthorizationFailed) no write access"},
            "ERROR: (AuthorizationFailed) no write access",
        ),
        ({"STUB_POLICY_STATE": "Disabled"}, "state: Disabled"),
        ({"ARCHIVE_IMMUTABILITY_DAYS": "1y"}, "ARCHIVE_IMMUTABILITY_DAYS='1y'"),
    ],
)
def test_a_failed_lock_still_grants_then_fails_the_hook_with_the_command_to_run(
    tmp_path: Path, stub: dict[str, str], reason: str
) -> None:
    done, calls = lock_hook(tmp_path, **{"STUB_POLICY_STATE": "Unlocked", **stub})
    assert done.returncode == 1
    assert "Granted CallRecords.Read.All" in done.stdout and len(posts(calls)) == 1
    assert reason in done.stdout and "NOT locked" in done.stdout
    assert "azd hooks run postprovision" in done.stdout
    assert "is not locked" in done.stderr
    assert env_sets(calls) == []


def test_a_failed_lock_prints_the_exact_command_that_locks_it(tmp_path: Path) -> None:
    done, _ = lock_hook(tmp_path, STUB_POLICY_STATE="Unlocked", STUB_UPDATE_ERROR="ERROR: x")
    lines = [x.strip() for x in done.stdout.splitlines()]
    assert f"az {LOCK}" in lines and RECORD.removeprefix("azd ") in " ".join(lines)


def test_an_az_cli_not_signed_in_neither_locks_nor_grants_and_fails_the_hook(
    tmp_path: Path,
) -> None:
    done, calls = lock_hook(tmp_path, STUB_POLICY_STATE="Unlocked", STUB_SIGNED_IN="no")
    assert done.returncode == 1
    assert "Please run 'az login'" in done.stdout and "NOT locked" in done.stdout
    assert "so CallRecords.Read.All was not granted" in done.stdout  # the grant part still ran
    assert storage_calls(calls) == [SHOW, SHOW]  # read, then read again for the error
