"""The Bicep templates (parsed offline with pycep) and the deployment package's contents."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pathspec
import pytest
from pycep import BicepParser

from collector.archive import layout
from collector.core.lanes import Lane
from collector.core.settings import DEFAULTS, OPTIONAL_SETTINGS, SETTING_NAMES
from collector.core.sources import SOURCES
from collector.observe import metrics, telemetry
from collector.observe.metrics import FAILED_RUNS_IN_A_ROW, SETTLED_LAG, WATERMARK_LAG
from collector.tenants.fanout import QUEUE
from devstack import bicep_modes

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
}


@functools.cache
def template(name: str) -> Any:
    return BicepParser().parse(file_path=INFRA / name)


def resources(name: str, kind: str) -> list[dict[str, Any]]:
    """The configs of every resource of type ``kind`` (existing ones excluded) in a file."""
    found = template(name)["resources"].values()
    return [r["config"] for r in found if r["type"] == kind and not r["existing"]]


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.bicep"))
)
def test_every_bicep_file_parses(path: str) -> None:
    parsed = template(path)
    assert parsed["resources"] or parsed["modules"]


def test_both_storage_accounts_are_keyless_and_private() -> None:
    for module in ("modules/host-storage.bicep", "modules/archive-storage.bicep"):
        (account,) = resources(module, "Microsoft.Storage/storageAccounts")
        props = account["properties"]
        assert props["allowSharedKeyAccess"] is False, module
        assert props["allowBlobPublicAccess"] is False, module
        assert props["minimumTlsVersion"] == "TLS1_2", module
        assert props["supportsHttpsTrafficOnly"] is True, module
        containers = resources(module, "Microsoft.Storage/storageAccounts/blobServices/containers")
        assert containers and all(c["properties"]["publicAccess"] == "None" for c in containers)


def test_the_archive_account_holds_only_the_archive_and_can_be_recovered() -> None:
    module = "modules/archive-storage.bicep"
    containers = resources(module, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert [c["name"] for c in containers] == ["outputContainerName"]
    (blob,) = resources(module, "Microsoft.Storage/storageAccounts/blobServices")
    assert blob["properties"]["isVersioningEnabled"] is True
    assert blob["properties"]["deleteRetentionPolicy"]["enabled"] is True
    assert blob["properties"]["containerDeleteRetentionPolicy"]["enabled"] is True
    host = resources(
        "modules/host-storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert [c["name"] for c in host] == ["deploymentContainerName"]


def test_archive_immutability_is_an_option_off_by_default_created_unlocked() -> None:
    main = template("main.bicep")
    assert main["parameters"]["archiveImmutabilityDays"]["default"] == 0
    params = main["modules"]["archiveStorage"]["config"]["params"]
    assert params["immutabilityDays"] == "archiveImmutabilityDays"
    text = (INFRA / "modules/archive-storage.bicep").read_text()
    assert "immutableStorageWithVersioning: (immutabilityDays > 0) ? {" in text
    assert "immutabilityPeriodSinceCreationInDays: immutabilityDays" in text
    # Storage creates a policy only Unlocked; the postprovision hook locks it and records so,
    # after which the template must say Locked (Storage refuses Unlocked for a locked one).
    assert "state: immutabilityPolicyLocked ? 'Locked' : 'Unlocked'" in text
    assert main["parameters"]["archiveImmutabilityPolicyLocked"]["default"] is False
    assert params["immutabilityPolicyLocked"] == "archiveImmutabilityPolicyLocked"
    assert "archiveImmutabilityLocked" not in main["parameters"]  # the hook's, not Bicep's
    deploy = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert deploy["archiveImmutabilityDays"]["value"] == "${ARCHIVE_IMMUTABILITY_DAYS=0}"
    assert deploy["archiveImmutabilityPolicyLocked"]["value"] == (
        "${ARCHIVE_IMMUTABILITY_POLICY_LOCKED=false}"
    )


def test_host_storage_and_telemetry_use_the_identity() -> None:
    host = template("modules/function.bicep")["variables"]["hostSettings"]["value"]
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert host["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):  # as the reference templates set them
        uri = host[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert uri == f"${{hostStorage}}.{service}.${{storageSuffix}}", uri
    assert "AzureWebJobsStorage" not in host  # no connection string
    assert host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith("Authorization=AAD")
    (app,) = resources("modules/function.bicep", "Microsoft.Web/sites")
    assert app["identity"]["type"] == "UserAssigned"
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert app["properties"]["httpsOnly"] is True
    (plan,) = resources("modules/function.bicep", "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    policies = resources(
        "modules/function.bicep", "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert sorted(p["name"] for p in policies) == ["ftp", "scm"]
    assert all(p["properties"]["allow"] is False for p in policies)


def test_monitoring_accepts_only_entra_id() -> None:
    (workspace,) = resources("modules/monitoring.bicep", "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    (insights,) = resources("modules/monitoring.bicep", "Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True


ROLE_TABLE = [
    ("Storage Blob Data Contributor", "the archive container (archive account)", "identity"),
    ("Storage Blob Data Owner", "the host account", "identity"),
    ("Storage Queue Data Contributor", "the host account", "identity"),
    ("Storage Table Data Contributor", "the host account", "identity"),
    ("Monitoring Metrics Publisher", "Application Insights", "identity"),
    ("Storage Blob Data Reader", "the archive container (archive account)", "readers"),
]
"""Who may do what, and where: the function's identity, and the operators of
``ARCHIVE_READER_IDS``; docs/deploy.md shows these same tables."""
SCOPES = {
    "outputContainer": "the archive container (archive account)",
    "hostAccount": "the host account",
    "appInsights": "Application Insights",
}
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"


def _role_id(expression: Any, variables: dict[str, Any]) -> str:
    key = expression["operator"]["operands"]["operand_2"]
    return str(variables["roles"]["value"][key])


def _grantee(properties: dict[str, Any]) -> str:
    return "identity" if properties["principalId"] == "principalId" else "readers"


def test_the_identity_and_the_readers_have_exactly_the_roles_of_the_docs_tables() -> None:
    rbac = template("modules/rbac.bicep")
    variables = rbac["variables"]
    granted = []
    for resource in rbac["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = resource["config"]
        if "loop_type" in config:
            loop, body = config["loop_type"]["detail"], config["config"]
            role_id = body["properties"]["roleDefinitionId"]["function"]["parameters"]
            if loop["array_name"] in variables:  # a loop over roles
                items = variables[loop["array_name"]]["value"]
                roles = [ROLE_IDS[_role_id(item, variables)] for item in items]
            else:  # a loop over principals
                assert body["properties"]["principalId"] == loop["item_name"]
                assert loop["array_name"] == "archiveReaderIds"
                roles = [ROLE_IDS[_role_id(role_id["resource_name_1"], variables)]]
                body = {**body, "properties": {"principalId": loop["array_name"]}}
            who = _grantee(body["properties"])
            granted += [(role, SCOPES[body["scope"]], who) for role in roles]
        else:
            operand = config["properties"]["roleDefinitionId"]["function"]["parameters"]
            role = ROLE_IDS[_role_id(operand["resource_name_1"], variables)]
            granted.append((role, SCOPES[config["scope"]], _grantee(config["properties"])))
    assert sorted(granted) == sorted(ROLE_TABLE)
    docs = DEPLOY_DOC.read_text()
    for role, scope, _ in ROLE_TABLE:
        assert f"| {role} | {scope} |" in docs, (role, scope)


def test_archive_readers_default_to_the_deployer_and_can_be_none() -> None:
    main = template("main.bicep")
    assert main["modules"]["rbac"]["config"]["params"]["archiveReaderIds"] == "archiveReaders"
    text = (INFRA / "main.bicep").read_text()
    text = (INFRA / "main.bicep").read_text()
    assert (
        "var archiveReaders = (toLower(archiveReaderIds) == 'none') ? [] : "
        "(empty(archiveReaderIds) ? (empty(principalId) ? [] : [\n  principalId\n]) : "
        "union([], split(toLower(replace(archiveReaderIds, ' ', '')), ',')))" in text
    )
    hook = (INFRA / "hooks" / "preprovision.sh").read_text()
    assert "ARCHIVE_READER_IDS" in hook  # the hook refuses what the union cannot mend
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["principalId"]["value"] == "${AZURE_PRINCIPAL_ID=}"  # azd: the deployer
    assert mapped["archiveReaderIds"]["value"] == "${ARCHIVE_READER_IDS=}"


ALERTS = "modules/alerts.bicep"


def alert_rules() -> dict[str, dict[str, Any]]:
    """Each log alert of the alerts module by symbolic name; a conditional one's condition
    under ``"if"`` (pycep nests its config one level deeper)."""
    rules = {}
    for key, resource in template(ALERTS)["resources"].items():
        if resource["type"] != "Microsoft.Insights/scheduledQueryRules":
            continue
        config = resource["config"]
        if "condition" in config:
            config = {**config["config"], "if": config["condition"]}
        rules[key] = config
    return rules


def _criterion(rule: dict[str, Any]) -> dict[str, Any]:
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    return dict(criterion)


def _query(rule: dict[str, Any]) -> str:
    """The rule's KQL as deployed: Bicep's \\' unescaped, string variables spelled out (other
    interpolations, such as thresholds, stay ``${name}``)."""
    variables = template(ALERTS)["variables"]

    def spell(match: re.Match[str]) -> str:
        value = variables.get(match[1], {}).get("value")
        return value if isinstance(value, str) else match[0]

    query, previous = str(_criterion(rule)["query"]), ""
    while query != previous:
        previous, query = query, re.sub(r"\$\{(\w+)\}", spell, query)
    return query.replace("\\'", "'")


def _names(expression: Any) -> set[str]:
    """Every bare name (parameter, variable) a pycep expression mentions."""
    if isinstance(expression, str):
        return {expression}
    if isinstance(expression, dict):
        expression = list(expression.values())
    if isinstance(expression, list):
        return set[str]().union(*(_names(e) for e in expression))
    return set()


def _limit(query: str, comparison: str) -> str:
    """The name of the variable or parameter a query compares ``value`` with."""
    match = re.search(rf"\| where value {comparison} \$\{{(\w+)\}}", query)
    assert match, query
    return match[1]


def test_alerts_watch_silence_and_repeated_failures() -> None:
    rules = alert_rules()
    silence, failures = _criterion(rules["noSuccess"]), _criterion(rules["repeatedFailures"])
    assert "success == true" in silence["query"]
    assert "success == false" in failures["query"]
    # Both functions count; "a success" is a collection: collect_tenant's in multi-tenant mode.
    text = (INFRA / ALERTS).read_text()
    assert "operation_Name in~ (\\'collect_call_logs\\', \\'collect_tenant\\')" in text
    assert "var collecting = multiTenant ? 'collect_tenant' : 'collect_call_logs'" in text
    assert "operation_Name =~ \\'${collecting}\\' and success == true" in text
    assert template("main.bicep")["modules"]["alerts"]["config"]["params"]["multiTenant"] == (
        "multiTenant"
    )
    assert (failures["operator"], failures["threshold"]) == ("GreaterThanOrEqual", "failureCount")
    assert rules["noSuccess"]["properties"]["windowSize"] == "PT${noSuccessHours}H"
    main = template("main.bicep")
    assert main["parameters"]["noSuccessAlertHours"]["default"] == 3


def test_no_collection_alert_stays_quiet_until_the_first_tick_of_a_deployment() -> None:
    rule = alert_rules()["noSuccess"]
    criterion, query = _criterion(rule), _query(rule)
    # summarize without `by` yields one row (n == 0) even when nothing succeeded.
    assert "success == true | summarize n = count() | where n == 0 and " in query
    assert "now() > todatetime('${deployedAt}') + ${noSuccessGraceHours}h" in query
    assert (criterion["timeAggregation"], criterion["operator"]) == ("Count", "GreaterThan")
    assert criterion["threshold"] == 0
    text = (INFRA / ALERTS).read_text()
    assert "var noSuccessGraceHours = noSuccessHours + 1\n" in text
    main = template("main.bicep")
    default = main["parameters"]["deployedAt"]["default"]
    # utcNow only as a parameter's default; 'u' (2026-10-23 12:30:00Z) is a format KQL reads.
    assert default == {"function": {"type": "utc_now", "parameters": {"format": "u"}}}
    assert main["modules"]["alerts"]["config"]["params"]["deployedAt"] == "deployedAt"
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert "deployedAt" not in params  # always the time of this deployment


def test_metric_alerts_name_the_source_and_fire_on_any_row() -> None:
    rules = alert_rules()
    variables = template(ALERTS)["variables"]
    assert variables["perSource"]["value"] == [
        {"name": "source", "operator": "Include", "values": ["*"]},
        {"name": "tenant", "operator": "Include", "values": ["*"]},
    ]
    for key, metric in (
        ("watermarkLag", WATERMARK_LAG),
        ("daysNotSettled", SETTLED_LAG),
        ("failingSource", FAILED_RUNS_IN_A_ROW),
    ):
        rule = rules[key]
        criterion, query = _criterion(rule), _query(rule)
        assert query.startswith(f"customMetrics | where name == '{metric}' | "), key
        assert (
            "summarize arg_max(timestamp, value) by source = tostring(customDimensions.source), "
            "tenant = tostring(customDimensions.tenant)" in query
        ), key
        assert criterion["dimensions"] == "perSource", key
        assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
            "Count",
            "GreaterThan",
            0,
        ), key
        props = rule["properties"]
        assert props["scopes"] == ["appInsightsId"], key
        assert props["evaluationFrequency"] == "PT1H", key
        assert props["windowSize"] == "PT3H", key  # the latest of at least two hourly runs
        assert "python -m collector status" in props["description"], key


def test_metric_alert_thresholds_follow_the_parameters() -> None:
    rules = alert_rules()
    variables = template(ALERTS)["variables"]
    text = (INFRA / ALERTS).read_text()

    lag = _limit(_query(rules["watermarkLag"]), ">")
    assert {"lagMinutes", "lagAlertHours"} <= _names(variables[lag]["value"])
    assert f"var {lag} = lagMinutes * 60 + lagAlertHours * 3600\n" in text

    settled = _limit(_query(rules["daysNotSettled"]), ">")
    assert {"lagMinutes", "latenessHours"} <= _names(variables[settled]["value"])
    # From the first unsettled day's midnight: the day itself, its lateness, a day of grace.
    assert f"var {settled} = max(lagMinutes * 60, latenessHours * 3600) + 2 * 86400\n" in text
    assert rules["daysNotSettled"]["if"] == {
        "operator": {
            "type": "greater_than",
            "operands": {"operand_1": "latenessHours", "operand_2": 0},
        }
    }
    assert all("if" not in rule for key, rule in rules.items() if key != "daysNotSettled")

    assert _limit(_query(rules["failingSource"]), ">=") == "failedRunsAlertCount"

    main = template("main.bicep")
    params = main["modules"]["alerts"]["config"]["params"]
    for name in ("lagMinutes", "latenessHours", "lagAlertHours", "failedRunsAlertCount"):
        assert params[name] == name
    for name, default in (("lagAlertHours", 3), ("failedRunsAlertCount", 3)):
        param = main["parameters"][name]
        assert (param["type"], param["default"], _decorator(param, "min_value")) == (
            "int",
            default,
            1,
        )
    assert _decorator(main["parameters"]["lagAlertHours"], "description") == (
        "Hours beyond COLLECTOR_LAG_MINUTES a source\\'s watermark may lag before an alert fires."
    )


def test_alerts_query_only_metrics_the_code_emits() -> None:
    emitted = metrics.NAMES  # all recorded by a run: tests/test_metrics.py
    queried = {
        name
        for rule in alert_rules().values()
        for name in re.findall(r"collector\.[a-z_.]+", _query(rule))
    }
    assert queried <= emitted, (
        f"alerts query metrics the collector never records: {queried - emitted}"
    )
    assert {WATERMARK_LAG, SETTLED_LAG, FAILED_RUNS_IN_A_ROW} <= queried


REFERENCE_FLEX_REGIONS = [
    "australiaeast",
    "australiasoutheast",
    "brazilsouth",
    "canadacentral",
    "centralindia",
    "centralus",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "germanywestcentral",
    "italynorth",
    "japaneast",
    "koreacentral",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "southafricanorth",
    "southcentralus",
    "southeastasia",
    "southindia",
    "spaincentral",
    "swedencentral",
    "uaenorth",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westus",
    "westus2",
    "westus3",
]
"""Azure-Samples/functions-quickstart-python-azd-timer's list, less early-access eastus2euap."""


def _decorator(param: dict[str, Any], kind: str) -> Any:
    return next(d["argument"] for d in param["decorators"] if d["type"] == kind)


def test_the_graph_grant_is_left_to_the_postprovision_hook_not_raced_in_the_template() -> None:
    main = template("main.bicep")
    assert "graphPermission" not in main["modules"]
    assert not (INFRA / "modules/graph-permission.bicep").exists()
    assert "grantGraphPermission" not in main["parameters"]
    yaml = (ROOT / "azure.yaml").read_text()
    hook = yaml[yaml.index("hooks:") :]
    assert "postprovision:" in hook
    for platform in ("posix:", "windows:"):  # azd on Windows needs its own block
        block = hook[hook.index(platform) :]
        assert "run: infra/hooks/postprovision.sh" in block and "shell: sh" in block
    # Not interactive, azd shows a hook's output in a preview pane and erases it at the end:
    # the administrator's command would vanish.
    assert hook.count("interactive: true") == 4 and "interactive: false" not in hook
    assert {"AZURE_IDENTITY_PRINCIPAL_ID", "GRAPH_ENDPOINT", "AZURE_TENANT_ID"} <= set(
        main["outputs"]
    )


def test_locations_are_those_that_offer_flex_consumption() -> None:
    location = template("main.bicep")["parameters"]["location"]
    allowed = _decorator(location, "allowed")
    assert allowed == REFERENCE_FLEX_REGIONS
    assert not [r for r in allowed if r.startswith(("usgov", "usdod", "china"))]


def test_graph_follows_the_cloud_deployed_to() -> None:
    main = template("main.bicep")
    assert main["variables"]["graphEndpoints"]["value"] == {
        "AzureCloud": "https://graph.microsoft.com",
        "AzureUSGovernment": "https://graph.microsoft.us",
    }
    text = (INFRA / "main.bicep").read_text()
    assert "var graphEndpoint = graphEndpoints[environment().name]" in text
    assert "graphCloud" not in main["parameters"]
    settings = main["modules"]["function"]["config"]["params"]["collectorSettings"]
    assert settings["GRAPH_ENDPOINT"] == "graphEndpoint"


def test_storage_redundancy_defaults_to_one_every_region_has() -> None:
    main = template("main.bicep")
    redundancy = main["parameters"]["storageRedundancy"]
    assert redundancy["default"] == "Standard_LRS"
    assert "Standard_GRS" in _decorator(redundancy, "allowed")
    assert main["modules"]["archiveStorage"]["config"]["params"]["skuName"] == "storageRedundancy"
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["storageRedundancy"]["value"] == "${STORAGE_REDUNDANCY=Standard_LRS}"


def test_small_first_run_safeguards() -> None:
    alerts = (INFRA / "modules/alerts.bicep").read_text()
    assert "scheduledQueryRules@2023-12-01'" in alerts and "-preview" not in alerts
    host = json.loads((ROOT / "host.json").read_text())
    assert host["logging"]["logLevel"]["Host.Startup"] == "Information"
    for ignore in (".gitignore", ".funcignore"):
        assert ".azure/" in (ROOT / ignore).read_text().split()
    assert 'azd: ">= 1.9.5"' in (ROOT / "azure.yaml").read_text()
    lifecycle = template("modules/archive-storage.bicep")["resources"]["lifecycle"]
    assert lifecycle["config"]["dependsOn"] == ["blobService"]


def test_every_setting_the_code_reads_is_set_by_the_template_or_has_a_default() -> None:
    settings = template("main.bicep")["modules"]["function"]["config"]["params"][
        "collectorSettings"
    ]
    assert set(settings) <= set(SETTING_NAMES), "the template sets a setting the code never reads"
    uncovered = [
        name
        for name in SETTING_NAMES
        if name not in settings and name not in DEFAULTS and name not in OPTIONAL_SETTINGS
    ]
    assert not uncovered, f"settings neither in infra/main.bicep nor defaulted in code: {uncovered}"
    assert "COLLECTOR_STORAGE" not in settings  # keyless in Azure
    assert settings["COLLECTOR_SCHEDULE"] == "collectorSchedule"


def test_outputs_name_what_the_deployer_needs() -> None:
    outputs = template("main.bicep")["outputs"]
    assert {
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "COLLECTOR_CONTAINER",
        "AZURE_IDENTITY_PRINCIPAL_ID",
    } <= set(outputs)


def test_azd_project_points_at_the_function_and_the_templates() -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert "host: function" in text and "language: python" in text and "path: infra" in text
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = template("main.bicep")["parameters"]
    assert set(params) <= set(main)


def test_deployment_package_holds_only_the_app() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    spec = pathspec.PathSpec.from_lines(
        "gitignore", (ROOT / ".funcignore").read_text().splitlines()
    )
    package = {f for f in tracked if not spec.match_file(f)}
    app = {f for f in tracked if f.startswith("collector/")}
    assert app and package == {"function_app.py", "host.json", "requirements.txt"} | app


def test_multi_tenant_mode_creates_a_secretless_multi_tenant_app_trusting_the_identity() -> None:
    module = "modules/multi-tenant-app.bicep"
    (app,) = resources(module, "Microsoft.Graph/applications")
    assert app["signInAudience"] == "AzureADMultipleOrgs"
    (access,) = app["requiredResourceAccess"]
    assert access["resourceAppId"] == "graphAppId"
    assert (
        template(module)["variables"]["graphAppId"]["value"]
        == "00000003-0000-0000-c000-000000000000"
    )
    (role,) = access["resourceAccess"]
    assert role["type"] == "Role" and "CallRecords.Read.All" in json.dumps(role["id"])
    for secret in ("passwordCredentials", "keyCredentials"):
        assert secret not in app  # the federated credential is its only credential
    (credential,) = [
        r["config"]
        for r in template(module)["resources"].values()
        if r["type"].startswith("Microsoft.Graph/applications/federatedIdentityCredentials")
    ]
    assert credential["audiences"] == ["api://AzureADTokenExchange"]
    assert credential["subject"] == "identityPrincipalId"
    assert credential["issuer"] == (
        "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    )
    assert credential["name"].startswith("${uniqueName}/")
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )

    main = template("main.bicep")
    assert main["parameters"]["multiTenant"]["default"] is False  # single-tenant by default
    wired = main["modules"]["multiTenantApp"]
    assert "multiTenant" in json.dumps(wired)  # created only in multi-tenant mode
    principal = json.dumps(wired["config"])
    assert '"identityPrincipalId"' in principal and '"principalId"' in principal
    text = (INFRA / "main.bicep").read_text()
    assert "COLLECTOR_TENANTS: multiTenant ? collectorTenants : ''" in text
    assert "COLLECTOR_APP_CLIENT_ID: multiTenant ? multiTenantApp.outputs.appId : ''" in text
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["multiTenant"]["value"] == "${MULTI_TENANT=false}"
    assert mapped["collectorTenants"]["value"] == "${COLLECTOR_TENANTS=}"


def test_the_tenant_queue_is_in_the_host_account_the_identity_may_use() -> None:
    (queue,) = [
        r
        for r in template("modules/host-storage.bicep")["resources"].values()
        if r["type"] == "Microsoft.Storage/storageAccounts/queueServices/queues"
    ]
    assert queue["config"]["name"] == QUEUE
    roles = (INFRA / "modules/rbac.bicep").read_text()
    assert "storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'" in roles


def test_every_source_is_named_where_a_deployer_chooses_them() -> None:
    param = template("main.bicep")["parameters"]["collectorSources"]
    described = _decorator(param, "description")
    docs = CONFIG_DOC.read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `COLLECTOR_SOURCES` |"))
    for name in SOURCES:
        assert re.search(rf"\b{name}\b", described), name
        assert f"`{name}`" in row, name


NETWORK = "modules/network.bicep"


def _subnets() -> dict[str, dict[str, Any]]:
    """The virtual network's subnets by name (variables spelled out)."""
    variables = template(NETWORK)["variables"]
    (vnet,) = resources(NETWORK, "Microsoft.Network/virtualNetworks")
    return {variables[s["name"]]["value"]: s["properties"] for s in vnet["properties"]["subnets"]}


def test_private_networking_is_one_switch_off_by_default() -> None:
    main = template("main.bicep")
    assert main["parameters"]["vnetEnabled"]["default"] is False
    network = main["modules"]["network"]["config"]
    assert network["condition"] == "vnetEnabled"  # nothing of it exists in public mode
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["vnetEnabled"]["value"] == "${VNET_ENABLED=false}"
    for module in ("hostStorage", "archiveStorage"):
        assert main["modules"][module]["config"]["params"]["privateNetworking"] == "vnetEnabled"
    text = (INFRA / "main.bicep").read_text()
    assert "appSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''" in text


def test_private_mode_has_an_app_subnet_delegated_to_flex_and_an_nsg_on_every_subnet() -> None:
    subnets = _subnets()
    assert set(subnets) == {"app", "private-endpoints"}
    assert not [name for name in subnets if "_" in name]  # Flex refuses underscores
    app, endpoints = subnets["app"], subnets["private-endpoints"]
    assert [d["properties"]["serviceName"] for d in app["delegations"]] == [
        "Microsoft.App/environments"
    ]
    assert app["addressPrefix"] == "appSubnetPrefix"
    assert endpoints["privateEndpointNetworkPolicies"] == "Disabled"
    nsgs = template(NETWORK)["resources"]
    for properties in subnets.values():
        nsg = properties["networkSecurityGroup"]["id"]["operator"]["operands"]["operand_1"]
        assert nsgs[nsg]["type"] == "Microsoft.Network/networkSecurityGroups"
    # Default rules only: a deny between the two subnets stops the Functions host.
    for nsg in resources(NETWORK, "Microsoft.Network/networkSecurityGroups"):
        assert nsg["properties"]["securityRules"] == []
    main = template("main.bicep")
    prefix = main["parameters"]["appSubnetPrefix"]
    assert prefix["default"] == "10.0.0.0/24"
    assert "/27 or larger" in _decorator(prefix, "description")
    assert not resources(NETWORK, "Microsoft.Network/natGateways")  # outbound needs none


def test_private_mode_reaches_every_storage_endpoint_the_app_uses_privately() -> None:
    params = template("main.bicep")["modules"]["network"]["config"]["config"]["params"]
    endpoints = sorted(
        (e["accountName"]["operator"]["operands"]["operand_1"], e["service"])
        for e in params["storageEndpoints"]
    )
    assert endpoints == [
        ("archiveStorage", "blob"),
        ("hostStorage", "blob"),
        ("hostStorage", "queue"),
        ("hostStorage", "table"),
    ]
    (endpoint,) = [
        r["config"]["config"]
        for r in template(NETWORK)["resources"].values()
        if r["type"] == "Microsoft.Network/privateEndpoints"
    ]
    (connection,) = endpoint["properties"]["privateLinkServiceConnections"]
    (group,) = connection["properties"]["groupIds"]
    assert _names(group) == {"property_accessor", "endpoint", "service"}
    text = (INFRA / NETWORK).read_text()
    assert "id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)" in text  # fmt: skip
    assert "privateLinkServiceId: resourceId('Microsoft.Storage/storageAccounts', endpoint.accountName)" in text  # fmt: skip


def test_private_dns_zones_are_created_and_linked_or_taken_by_id() -> None:
    variables = template(NETWORK)["variables"]
    assert variables["services"]["value"] == ["blob", "queue", "table"]
    (zones,) = [
        r["config"]
        for r in template(NETWORK)["resources"].values()
        if r["type"] == "Microsoft.Network/privateDnsZones"
    ]
    assert zones["loop_type"]["detail"]["array_name"] == "zonesToCreate"
    assert zones["config"]["name"] == "privatelink.${service}.${storageSuffix}"
    assert zones["config"]["location"] == "global"
    text = (INFRA / NETWORK).read_text()
    assert "var storageSuffix = environment().suffixes.storage" in text
    assert (
        "var zonesToCreate = filter(services, service => empty(existingDnsZoneIds[service]))"
        in text
    )
    (links,) = [
        r["config"]["config"]
        for r in template(NETWORK)["resources"].values()
        if r["type"] == "Microsoft.Network/privateDnsZones/virtualNetworkLinks"
    ]
    assert links["properties"]["registrationEnabled"] is False
    assert links["parent"]["operator"]["operands"]["operand_1"] == "zones"
    # Each endpoint's zone group names the created zone, or the one passed in.
    assert (
        "privateDnsZoneId: empty(existingDnsZoneIds[endpoint.service]) ? "
        "resourceId('Microsoft.Network/privateDnsZones', "
        "'privatelink.${endpoint.service}.${storageSuffix}') : "
        "existingDnsZoneIds[endpoint.service]" in text
    )
    params = template("main.bicep")["modules"]["network"]["config"]["config"]["params"]
    assert params["existingDnsZoneIds"] == {
        "blob": "privateDnsZoneIdBlob",
        "queue": "privateDnsZoneIdQueue",
        "table": "privateDnsZoneIdTable",
    }
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for service in ("Blob", "Queue", "Table"):
        value = mapped[f"privateDnsZoneId{service}"]["value"]
        assert value == f"${{PRIVATE_DNS_ZONE_ID_{service.upper()}=}}"


def test_in_private_mode_the_accounts_refuse_the_internet_and_the_app_joins_the_subnet() -> None:
    for module in ("modules/host-storage.bicep", "modules/archive-storage.bicep"):
        text = (INFRA / module).read_text()
        private = bicep_modes.resolve(text, private=True)
        public = bicep_modes.resolve(text, private=False)
        assert "publicNetworkAccess: 'Disabled'" in private, module
        assert "defaultAction: 'Deny'" in private and "bypass: 'None'" in private, module
        assert "publicNetworkAccess: 'Enabled'" in public, module
        (account,) = resources(module, "Microsoft.Storage/storageAccounts")
        assert account["properties"]["networkAcls"]["ipRules"] == [], module
        assert "virtualNetworkRules" not in account["properties"]["networkAcls"], module
    (app,) = resources("modules/function.bicep", "Microsoft.Web/sites")
    props = app["properties"]
    # azd deploy publishes through the app's own endpoint: its public access stays on.
    assert props["publicNetworkAccess"] == "Enabled"
    assert props["siteConfig"]["remoteDebuggingEnabled"] is False
    text = (INFRA / "modules/function.bicep").read_text()
    assert "virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId" in text
    assert "vnetRouteAllEnabled" not in text  # Flex routes everything through the subnet


def test_the_app_and_its_first_run_wait_for_the_endpoints_dns() -> None:
    main = template("main.bicep")
    assert main["modules"]["function"]["config"]["dependsOn"] == ["rbac", "network"]
    (groups,) = [
        r["config"]["config"]
        for r in template(NETWORK)["resources"].values()
        if r["type"] == "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
    ]
    assert groups["dependsOn"] == ["zones", "zoneLinks"]
    assert groups["parent"]["operator"]["operands"]["operand_1"] == "endpoints"


def test_checkov_scans_both_modes_with_the_switch_resolved(tmp_path: Path) -> None:
    bicep_modes.write_mode("private", tmp_path / "private")
    main = (tmp_path / "private" / "main.bicep").read_text()
    assert "param vnetEnabled bool = true\n" in main
    assert "appSubnetId: network.outputs.appSubnetId\n" in main
    archive = (tmp_path / "private" / "modules/archive-storage.bicep").read_text()
    assert "checkov:skip=CKV_AZURE_35" not in archive  # private mode must pass it
    assert "checkov:skip=CKV_AZURE_206" in archive
    bicep_modes.write_mode("public", tmp_path / "public")
    public = (tmp_path / "public" / "main.bicep").read_text()
    assert "param vnetEnabled bool = false\n" in public and "appSubnetId: ''\n" in public
    makefile = (ROOT / "Makefile").read_text()
    assert "for mode in public private" in makefile and "devstack.bicep_modes" in makefile
    for module in INFRA.rglob("*.bicep"):  # every skip says why
        for line in module.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV_\w+: \S", line), (module, line)


def test_both_accounts_send_who_read_wrote_or_deleted_blobs_to_the_workspace() -> None:
    (setting,) = resources("modules/access-logs.bicep", "Microsoft.Insights/diagnosticSettings")
    assert setting["scope"] == "blobService"
    assert setting["properties"]["workspaceId"] == "workspaceId"
    assert [(log["category"], log["enabled"]) for log in setting["properties"]["logs"]] == [
        ("StorageRead", True),
        ("StorageWrite", True),
        ("StorageDelete", True),
    ]
    logs = template("main.bicep")["modules"]["accessLogs"]["config"]
    assert logs["loop_type"]["detail"]["array_name"] == ["hostStorageName", "archiveStorageName"]
    for module, name in (("hostStorage", "hostStorageName"), ("archiveStorage", "archiveStorageName")):  # fmt: skip
        assert template("main.bicep")["modules"][module]["config"]["params"]["name"] == name
    assert "monitoring" in json.dumps(logs["config"]["params"]["workspaceId"])
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert "StorageBlobLogs" in docs and "RequesterObjectId" in docs


def test_infrastructure_encryption_is_a_parameter_of_both_accounts() -> None:
    main = template("main.bicep")
    assert main["parameters"]["storageInfrastructureEncryption"]["default"] is False
    for module in ("hostStorage", "archiveStorage"):
        params = main["modules"][module]["config"]["params"]
        assert params["infrastructureEncryption"] == "storageInfrastructureEncryption"
    for module in ("modules/host-storage.bicep", "modules/archive-storage.bicep"):
        (account,) = resources(module, "Microsoft.Storage/storageAccounts")
        encryption = account["properties"]["encryption"]
        assert encryption["requireInfrastructureEncryption"] == "infrastructureEncryption"
    assert "Only when the accounts are created" in CONFIG_DOC.read_text()


def _lifecycle_rules() -> dict[str, Any]:
    variables = template("modules/archive-storage.bicep")["variables"]
    return {
        name: variables[name]["value"] for name in ("expireOldVersions", "coolData", "deleteData")
    }


def test_retention_rules_tier_and_expire_data_and_manifests_never_state() -> None:
    rules = _lifecycle_rules()
    for key in ("coolData", "deleteData"):
        filters = rules[key]["definition"]["filters"]
        assert filters["prefixMatch"] == "dataPrefixes", key
    cool = rules["coolData"]["definition"]["actions"]["baseBlob"]
    assert cool["tierToCool"]["daysAfterCreationGreaterThan"] == "coolAfterDays"
    assert "coolAfterDays" in _names(cool["tierToCold"]["daysAfterCreationGreaterThan"])
    delete = rules["deleteData"]["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterCreationGreaterThan": "deleteAfterDays"}
    text = (INFRA / "modules/archive-storage.bicep").read_text()
    assert (
        "rules: concat([expireOldVersions], (coolAfterDays > 0) ? [coolData] : [], "
        "(deleteAfterDays > 0) ? [deleteData] : [])" in text
    )
    assert "var sourcePrefixes = [for source in sourceNames: '${outputContainerName}/${source}/']" in text  # fmt: skip
    assert (
        "'${outputContainerName}/${MANIFEST_PREFIX}'".replace(
            "${MANIFEST_PREFIX}", layout.MANIFEST_PREFIX
        )
        in text
    )
    assert not layout.MANIFEST_PREFIX.startswith(layout.STATE_PREFIX)
    # The folders the rules name are where layout.py puts each source's rows.
    main = template("main.bicep")
    assert main["variables"]["allSources"]["value"] == list(SOURCES)
    assert main["modules"]["archiveStorage"]["config"]["params"]["sourceNames"] == "allSources"
    for name, source in SOURCES.items():
        lane = Lane(source, None)
        assert layout.day_prefix(lane, date(2026, 1, 1)).startswith(f"{name}/")
        assert layout.manifest_prefix(lane).startswith(layout.MANIFEST_PREFIX)
        assert layout.state_blob_name(lane).startswith(layout.STATE_PREFIX)
    params = main["modules"]["archiveStorage"]["config"]["params"]
    assert params["coolAfterDays"] == "archiveCoolAfterDays"
    assert params["deleteAfterDays"] == "archiveDeleteAfterDays"
    settings = main["modules"]["function"]["config"]["params"]["collectorSettings"]
    assert "archiveDeleteAfterDays" in _names(settings["ARCHIVE_DELETE_AFTER_DAYS"])


def _table(path: Path, heading: str) -> dict[str, list[str]]:
    """The rows of the first table under a heading, by their first cell (backticks off)."""
    text = path.read_text()
    section = text[text.index(f"## {heading}\n") :]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _azd_variables() -> dict[str, tuple[str, str]]:
    """Each azd variable main.parameters.json reads: the Bicep parameter it feeds, and its
    default."""
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    found = {}
    for param, entry in mapped.items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", entry["value"])
        assert match, (param, entry)
        found[match[1]] = (param, match[2] or "")
    return found


def test_every_setting_the_code_reads_reaches_the_app_through_azd_or_the_template() -> None:
    main = template("main.bicep")
    collector = main["modules"]["function"]["config"]["params"]["collectorSettings"]
    host = template("modules/function.bicep")["variables"]["hostSettings"]["value"]
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    variables = _azd_variables()
    reference = _table(CONFIG_DOC, "App settings")
    read = (*SETTING_NAMES, telemetry.CONNECTION_STRING)
    assert set(reference) == set(read), "the reference lists other settings than the code reads"
    assert set(collector) <= set(SETTING_NAMES), "the template sets a setting nobody reads"
    for name in read:
        assert name in example, f"{name} missing from local.settings.example.json"
        azd, default, _ = reference[name]
        if azd.startswith("`"):  # the deployer's choice, through an azd variable
            variable = azd.strip("`")
            param, azd_default = variables[variable]
            assert param in _names(collector[name]), (name, param)
            unset = name in OPTIONAL_SETTINGS and azd_default in ("", "0")  # 0: off
            assert DEFAULTS.get(name, "") == azd_default or unset, (name, azd_default)
        elif azd == "(local only)":
            assert name not in collector and name not in host, name
        else:
            assert azd.startswith("(the template: "), (name, azd)
            assert name in collector or name in host, name
        documented = default.strip("`") if default != "(none)" else ""
        assert documented == DEFAULTS.get(name, "") or name == "AZURE_AUTHORITY_HOST", name


def test_every_azd_variable_is_in_the_reference_and_feeds_a_parameter() -> None:
    variables = _azd_variables()
    main = template("main.bicep")["parameters"]
    app = {row[0].strip("`") for row in _table(CONFIG_DOC, "App settings").values()}
    options = _table(CONFIG_DOC, "Deployment options")
    for variable, (param, default) in variables.items():
        assert param in main, param
        if variable in ("AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"):
            continue  # azd's own
        assert variable in app or variable in options, f"{variable} missing from the reference"
        if variable in options and default:
            assert options[variable][0] == f"`{default}`", (variable, options[variable][0])
    hooks = "\n".join(p.read_text() for p in (INFRA / "hooks").glob("*.sh"))
    for variable in options:  # the rest are read by the hooks
        assert variable in variables or variable in hooks, variable
