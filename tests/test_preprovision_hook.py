"""The azd preprovision hook: it refuses settings that would make a wrong archive before anything
is created, registers the resource providers a fresh subscription lacks, and keeps the recorded
lock state of the immutability policy in step with the archive account. Driven with the stub
``az`` and ``azd`` of the postprovision hook's tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.test_deploy_hook import run_script

HOOK = Path(__file__).resolve().parent.parent / "infra" / "hooks" / "preprovision.sh"
SUBSCRIPTION = "cccccccc-0000-0000-0000-000000000001"
ACCOUNT = "stcalllogsarchive"
GROUP = "rg-calllogs"
PROVIDERS = [
    "Microsoft.App",
    "Microsoft.Web",
    "Microsoft.Storage",
    "Microsoft.Network",
    "Microsoft.ManagedIdentity",
    "Microsoft.OperationalInsights",
    "Microsoft.Insights",
    "Microsoft.AlertsManagement",
]
SET_LOCKED = "azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true"
SET_UNLOCKED = "azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED false"


def run_pre(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    return run_script(
        tmp_path,
        HOOK,
        {"AZURE_SUBSCRIPTION_ID": SUBSCRIPTION, "PROVIDER_POLL_SECONDS": "0", **env},
    )


def az_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.startswith("azd ")]


def shows(calls: list[str], namespace: str) -> list[str]:
    return [c for c in calls if c.startswith(f"provider show --namespace {namespace} ")]


def registers(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("provider register ")]


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param(
            {"ARCHIVE_IMMUTABILITY_DAYS": "365", "ARCHIVE_DELETE_AFTER_DAYS": "30"},
            ["ARCHIVE_DELETE_AFTER_DAYS=30", "ARCHIVE_IMMUTABILITY_DAYS=365", "cannot delete"],
            id="delete-before-immutability-ends",
        ),
        pytest.param(
            # Read from azd, not the hook's environment: the same refusal.
            {
                "STUB_AZD_ARCHIVE_IMMUTABILITY_DAYS": "90",
                "STUB_AZD_ARCHIVE_DELETE_AFTER_DAYS": "89",
            },
            ["ARCHIVE_DELETE_AFTER_DAYS=89", "ARCHIVE_IMMUTABILITY_DAYS=90"],
            id="delete-before-immutability-ends-from-azd",
        ),
        pytest.param(
            {"ARCHIVE_COOL_AFTER_DAYS": "30", "ARCHIVE_DELETE_AFTER_DAYS": "30"},
            ["ARCHIVE_DELETE_AFTER_DAYS=30", "ARCHIVE_COOL_AFTER_DAYS=30", "pointless"],
            id="delete-when-cooling",
        ),
        pytest.param(
            {"ARCHIVE_COOL_AFTER_DAYS": "90", "ARCHIVE_DELETE_AFTER_DAYS": "60"},
            ["ARCHIVE_DELETE_AFTER_DAYS=60", "ARCHIVE_COOL_AFTER_DAYS=90"],
            id="delete-before-cooling",
        ),
        pytest.param(
            {"ARCHIVE_IMMUTABILITY_DAYS": "1y"},
            ["ARCHIVE_IMMUTABILITY_DAYS='1y'", "azd env set ARCHIVE_IMMUTABILITY_DAYS"],
            id="not-a-number",
        ),
        pytest.param(
            {"ARCHIVE_COOL_AFTER_DAYS": "-5"}, ["ARCHIVE_COOL_AFTER_DAYS='-5'"], id="negative"
        ),
        pytest.param(
            {"ARCHIVE_DELETE_AFTER_DAYS": "3650000"},
            ["ARCHIVE_DELETE_AFTER_DAYS='3650000'", "too large"],
            id="too-large",
        ),
        pytest.param(
            {"VNET_ENABLED": "yes"}, ["VNET_ENABLED='yes'", "true or false"], id="vnet-yes"
        ),
        pytest.param(
            {"APP_SUBNET_PREFIX": "10.0.0.0/28"},
            ["APP_SUBNET_PREFIX='10.0.0.0/28'", "/27 or larger", "10.0.0.0/27"],
            id="app-subnet-too-small",
        ),
        pytest.param(
            {"APP_SUBNET_PREFIX": "10.0.0.0"},
            ["APP_SUBNET_PREFIX='10.0.0.0'", "address range"],
            id="app-subnet-without-length",
        ),
        pytest.param(
            {"ARCHIVE_DELETE_AFTER_DAYS": "4"},
            ["ARCHIVE_DELETE_AFTER_DAYS=4 is shorter than 5 days", "COLLECTOR_LATENESS_HOURS"],
            id="delete-before-settling",
        ),
        pytest.param(
            {"ARCHIVE_READER_IDS": "alice@contoso.com"},
            ["ARCHIVE_READER_IDS='alice@contoso.com'", "GUIDs"],
            id="reader-not-an-id",
        ),
        pytest.param(
            {
                "ARCHIVE_READER_IDS": "11111111-2222-3333-4444-555555555555,,aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
            },
            ["empty entry"],
            id="reader-empty-entry",
        ),
        pytest.param(
            {
                "ARCHIVE_READER_IDS": "11111111-2222-3333-4444-555555555555,11111111-2222-3333-4444-555555555555"
            },
            ["each once"],
            id="reader-twice",
        ),
        pytest.param(
            {"PRIVATE_DNS_ZONE_ID_BLOB": "/subscriptions/s/resourceGroups/hub/providers/x"},
            ["VNET_DNS_SERVERS is empty", "peered"],
            id="hub-zones-without-hub-dns",
        ),
        pytest.param(
            {"VNET_ADDRESS_PREFIX": "10.20.0.0/16"},
            ["APP_SUBNET_PREFIX='10.0.0.0/24' is not inside VNET_ADDRESS_PREFIX='10.20.0.0/16'"],
            id="subnets-outside-a-changed-network",
        ),
        pytest.param(
            {
                "VNET_ADDRESS_PREFIX": "10.20.0.0/16",
                "APP_SUBNET_PREFIX": "10.20.0.0/24",
                "PRIVATE_ENDPOINT_SUBNET_PREFIX": "10.21.1.0/24",
            },
            ["PRIVATE_ENDPOINT_SUBNET_PREFIX='10.21.1.0/24' is not inside"],
            id="endpoint-subnet-outside",
        ),
        pytest.param(
            {"ARCHIVE_IMMUTABILITY_LOCKED": "ture"},
            ["ARCHIVE_IMMUTABILITY_LOCKED='ture'"],
            id="lock-typo",
        ),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_called(
    tmp_path: Path, env: dict[str, str], named: list[str]
) -> None:
    done, calls = run_pre(tmp_path, **env)
    assert done.returncode == 1
    for text in named:
        assert text in done.stderr
    assert az_calls(calls) == []
    assert not [c for c in calls if c.startswith("azd env set")]


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="all-unset"),
        pytest.param(
            {"ARCHIVE_IMMUTABILITY_DAYS": "365", "ARCHIVE_DELETE_AFTER_DAYS": "365"},
            id="delete-when-immutability-ends",
        ),
        pytest.param(
            {"ARCHIVE_COOL_AFTER_DAYS": "30", "ARCHIVE_DELETE_AFTER_DAYS": "31"},
            id="delete-after-cooling",
        ),
        pytest.param(
            {"ARCHIVE_COOL_AFTER_DAYS": "400", "ARCHIVE_DELETE_AFTER_DAYS": "0"},
            id="cooling-without-deleting",
        ),
        # Leading zeros neither count as digits of a too large number nor change the value.
        pytest.param(
            {"ARCHIVE_IMMUTABILITY_DAYS": "0000090", "ARCHIVE_DELETE_AFTER_DAYS": "90"},
            id="leading-zeros",
        ),
        pytest.param({"VNET_ENABLED": "True", "ARCHIVE_IMMUTABILITY_LOCKED": "FALSE"}, id="case"),
        pytest.param(
            {
                "VNET_ADDRESS_PREFIX": "10.1.0.0/16",
                "APP_SUBNET_PREFIX": "10.1.0.0/27",
                "PRIVATE_ENDPOINT_SUBNET_PREFIX": "10.1.1.0/24",
            },
            id="app-subnet-27",
        ),
        pytest.param(
            {
                "COLLECTOR_LATENESS_HOURS": "6",
                "COLLECTOR_LAG_MINUTES": "0",
                "ARCHIVE_DELETE_AFTER_DAYS": "3",
            },
            id="short-retention-with-short-lateness",
        ),
        pytest.param({"ARCHIVE_READER_IDS": "NONE"}, id="readers-none"),
        pytest.param(
            {
                "ARCHIVE_READER_IDS": "11111111-2222-3333-4444-555555555555, aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
            },
            id="readers-two",
        ),
        pytest.param(
            {"PRIVATE_DNS_ZONE_ID_BLOB": "/subscriptions/s/x", "VNET_DNS_SERVERS": "10.0.0.4"},
            id="hub-zones-with-hub-dns",
        ),
        pytest.param(
            {"VNET_ADDRESS_PREFIX": "10.0.0.0/8", "APP_SUBNET_PREFIX": "10.1.0.0/16"},
            id="app-subnet-16",
        ),
    ],
)
def test_good_settings_pass_on_to_the_providers(tmp_path: Path, env: dict[str, str]) -> None:
    done, calls = run_pre(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(shows(calls, "Microsoft.App")) == 1


# --- resource providers ------------------------------------------------------------------


def test_a_subscription_with_every_provider_registered_registers_nothing(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path)
    assert done.returncode == 0, done.stderr
    assert az_calls(calls) == [
        f"account show --subscription {SUBSCRIPTION} --query id -o tsv",
        *(
            f"provider show --namespace {ns} --subscription {SUBSCRIPTION}"
            " --query registrationState -o tsv"
            for ns in PROVIDERS
        ),
    ]
    assert done.stdout.splitlines() == [
        f"Resource providers: 8 of 8 were registered already in subscription {SUBSCRIPTION}."
    ]


def test_an_unregistered_microsoft_app_is_registered_and_waited_for(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path, STUB_UNREGISTERED="Microsoft.App", STUB_REGISTERED_AFTER="3")
    assert done.returncode == 0, done.stderr
    assert registers(calls) == [
        f"provider register --namespace Microsoft.App --subscription {SUBSCRIPTION}"
    ]
    app = shows(calls, "Microsoft.App")
    assert len(app) == 1 + 3  # the check, then polls until the third says Registered
    assert calls.index(app[-1]) < calls.index(shows(calls, "Microsoft.Web")[0])  # waited first
    assert (
        f"Registering Microsoft.App in subscription {SUBSCRIPTION} ... registered (after 2 s)"
        in done.stdout.splitlines()
    )
    assert "7 of 8 were registered already" in done.stdout


def test_a_provider_that_stays_unregistered_stops_provisioning_after_the_wait(
    tmp_path: Path,
) -> None:
    done, calls = run_pre(
        tmp_path,
        STUB_UNREGISTERED="Microsoft.App",
        STUB_REGISTERED_AFTER="1000",
        PROVIDER_WAIT_SECONDS="5",
    )
    assert done.returncode == 1
    assert "Microsoft.App is still Registering" in done.stderr
    assert (
        f"az provider show --namespace Microsoft.App --subscription {SUBSCRIPTION}" in done.stderr
    )
    assert 2 < len(shows(calls, "Microsoft.App")) < 10
    assert not shows(calls, "Microsoft.Web")  # stopped there


def test_a_refused_registration_stops_provisioning_with_the_command_for_an_owner(
    tmp_path: Path,
) -> None:
    error = (
        "ERROR: (AuthorizationFailed) The client 'dev@contoso.com' with object id '1234' does not"
        " have authorization to perform action 'Microsoft.App/register/action' over scope"
        f" '/subscriptions/{SUBSCRIPTION}' or the scope is invalid."
    )
    done, calls = run_pre(tmp_path, STUB_UNREGISTERED="Microsoft.App", STUB_REGISTER_ERROR=error)
    assert done.returncode == 1
    assert "could not register the resource provider Microsoft.App" in done.stderr
    assert "(AuthorizationFailed)" in done.stderr and "*/register/action" in done.stderr
    assert "An Owner or Contributor of the subscription must run" in done.stderr
    lines = [x.strip() for x in done.stderr.splitlines()]
    assert (
        f"bash:       az provider register --namespace Microsoft.App --subscription {SUBSCRIPTION} --wait"
        in lines
    )
    assert any(
        x.startswith("PowerShell: Register-AzResourceProvider -ProviderNamespace Microsoft.App")
        for x in lines
    )
    assert len(shows(calls, "Microsoft.App")) == 1  # no waiting for a registration refused


def test_an_az_cli_not_signed_in_lets_azd_go_on_and_prints_the_commands(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path, STUB_SIGNED_IN="no")
    assert done.returncode == 0
    assert "Could not check the resource providers" in done.stdout
    assert (
        f"az provider register --namespace Microsoft.App --subscription {SUBSCRIPTION} --wait"
        in done.stdout
    )
    assert "Register-AzResourceProvider -ProviderNamespace Microsoft.App" in done.stdout
    assert az_calls(calls) == [f"account show --subscription {SUBSCRIPTION} --query id -o tsv"]


def test_without_a_subscription_nothing_is_checked_and_azd_goes_on(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path, AZURE_SUBSCRIPTION_ID="")
    assert done.returncode == 0
    assert "<subscription id>" in done.stdout
    assert az_calls(calls) == []


# --- the immutability policy's lock state -------------------------------------------------

PROVISIONED = {
    "ARCHIVE_IMMUTABILITY_DAYS": "365",
    "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
    "AZURE_RESOURCE_GROUP": GROUP,
}
SHOW_STATE = (
    f"storage account show --name {ACCOUNT} --resource-group {GROUP} --subscription {SUBSCRIPTION}"
    " --query immutableStorageWithVersioning.immutabilityPolicy.state -o tsv"
)


def test_a_policy_locked_outside_the_hooks_is_recorded_before_provisioning(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path, STUB_POLICY_STATE="Locked", **PROVISIONED)
    assert done.returncode == 0, done.stderr
    assert SHOW_STATE in calls
    assert [c for c in calls if c.startswith("azd env set")] == [SET_LOCKED]
    assert f"archive account {ACCOUNT} is locked" in done.stdout


def test_a_lock_recorded_already_is_left_alone(tmp_path: Path) -> None:
    done, calls = run_pre(
        tmp_path,
        STUB_POLICY_STATE="Locked",
        ARCHIVE_IMMUTABILITY_POLICY_LOCKED="true",
        **PROVISIONED,
    )
    assert done.returncode == 0 and SHOW_STATE in calls
    assert not [c for c in calls if c.startswith("azd env set")]


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"STUB_POLICY_STATE": "Unlocked", **PROVISIONED}, id="unlocked"),
        pytest.param({"ARCHIVE_IMMUTABILITY_DAYS": "365"}, id="first-provisioning"),
        pytest.param(
            {
                "STUB_STORAGE_ERROR": "ERROR: (ResourceNotFound) The Resource"
                f" 'Microsoft.Storage/storageAccounts/{ACCOUNT}' under resource group"
                f" '{GROUP}' was not found.",
                **PROVISIONED,
            },
            id="account-deleted",
        ),
    ],
)
def test_a_lock_recorded_for_a_policy_not_locked_is_withdrawn(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Else the template would send Locked: locking an unlocked policy without the
    # postprovision hook's warning, or asking Storage for a new policy Locked, which it refuses.
    done, calls = run_pre(tmp_path, ARCHIVE_IMMUTABILITY_POLICY_LOCKED="true", **env)
    assert done.returncode == 0, done.stderr
    assert [c for c in calls if c.startswith("azd env set")] == [SET_UNLOCKED]


def test_an_unlocked_policy_with_nothing_recorded_changes_nothing(tmp_path: Path) -> None:
    done, calls = run_pre(tmp_path, STUB_POLICY_STATE="Unlocked", **PROVISIONED)
    assert done.returncode == 0 and SHOW_STATE in calls
    assert not [c for c in calls if c.startswith("azd env set")]


def test_without_immutability_the_account_is_not_read(tmp_path: Path) -> None:
    env = {**PROVISIONED, "ARCHIVE_IMMUTABILITY_DAYS": "0"}
    done, calls = run_pre(tmp_path, STUB_POLICY_STATE="Locked", **env)
    assert done.returncode == 0
    assert SHOW_STATE not in calls and not [c for c in calls if c.startswith("azd env set")]


def test_a_policy_that_cannot_be_read_changes_nothing_and_says_what_to_set(tmp_path: Path) -> None:
    done, calls = run_pre(
        tmp_path, STUB_STORAGE_ERROR="ERROR: (AuthorizationFailed) no read access", **PROVISIONED
    )
    assert done.returncode == 0
    assert "(AuthorizationFailed) no read access" in done.stdout
    assert "run 'azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true' first" in done.stdout
    assert not [c for c in calls if c.startswith("azd env set")]
