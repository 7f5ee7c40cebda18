"""The Bicep templates (parsed offline with pycep) and the deployment package's contents."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pathspec
import pytest
from pycep import BicepParser

from collector import metrics
from collector.fanout import QUEUE
from collector.metrics import FAILED_RUNS_IN_A_ROW, SETTLED_LAG, WATERMARK_LAG
from collector.settings import DEFAULTS, OPTIONAL_SETTINGS, SETTING_NAMES
from collector.sources import SOURCES

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
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


def test_archive_immutability_is_an_option_off_by_default() -> None:
    main = template("main.bicep")
    assert main["parameters"]["archiveImmutabilityDays"]["default"] == 0
    params = main["modules"]["archiveStorage"]["config"]["params"]
    assert params["immutabilityDays"] == "archiveImmutabilityDays"
    text = (INFRA / "modules/archive-storage.bicep").read_text()
    assert "immutableStorageWithVersioning: (immutabilityDays > 0) ? {" in text
    assert "immutabilityPeriodSinceCreationInDays: immutabilityDays" in text
    assert "state: immutabilityLocked ? 'Locked' : 'Unlocked'" in text
    assert main["parameters"]["archiveImmutabilityLocked"]["default"] is False
    deploy = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert deploy["archiveImmutabilityDays"]["value"] == "${ARCHIVE_IMMUTABILITY_DAYS=0}"


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
    ("Storage Blob Data Contributor", "the archive container (archive account)"),
    ("Storage Blob Data Owner", "the host account"),
    ("Storage Queue Data Contributor", "the host account"),
    ("Storage Table Data Contributor", "the host account"),
    ("Monitoring Metrics Publisher", "Application Insights"),
]
"""What the function's identity may do, and where: the README shows this same table."""
SCOPES = {
    "outputContainer": "the archive container (archive account)",
    "hostAccount": "the host account",
    "appInsights": "Application Insights",
}


def _role_id(expression: Any, variables: dict[str, Any]) -> str:
    key = expression["operator"]["operands"]["operand_2"]
    return str(variables["roles"]["value"][key])


def test_the_identity_has_exactly_the_roles_of_the_readme_table() -> None:
    rbac = template("modules/rbac.bicep")
    variables = rbac["variables"]
    granted = []
    for resource in rbac["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = resource["config"]
        if "loop_type" in config:
            items = variables[config["loop_type"]["detail"]["array_name"]]["value"]
            scope = config["config"]["scope"]
            granted += [(ROLE_IDS[_role_id(item, variables)], SCOPES[scope]) for item in items]
        else:
            operand = config["properties"]["roleDefinitionId"]["function"]["parameters"]
            role = ROLE_IDS[_role_id(operand["resource_name_1"], variables)]
            granted.append((role, SCOPES[config["scope"]]))
    assert sorted(granted) == sorted(ROLE_TABLE)
    readme = (ROOT / "README.md").read_text()
    for role, scope in ROLE_TABLE:
        assert f"| {role} | {scope} |" in readme, (role, scope)


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
    assert hook.count("interactive: true") == 2 and "interactive: false" not in hook
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
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `COLLECTOR_SOURCES` |"))
    for name in SOURCES:
        assert re.search(rf"\b{name}\b", described), name
        assert f"`{name}`" in row, name
