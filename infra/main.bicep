// Teams call-log collector: everything `azd up` provisions, in one new resource group.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags the resources.')
param environmentName string

// The regions that offer Flex Consumption, as the official Flex Consumption azd template
// (Azure-Samples/functions-quickstart-python-azd-timer) lists them, less its early-access
// region eastus2euap. Elsewhere the plan fails to create. All are public-cloud regions:
// Azure Government does not offer Flex Consumption (as of mid-2026).
@minLength(1)
@description('Region of all resources: a public-cloud region that offers Flex Consumption (Azure Government does not).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Replication of the archive account (the host account is always locally redundant): Standard_LRS (the default) exists in every allowed region; Standard_ZRS and Standard_GZRS/RAGZRS need a region with availability zones, Standard_GRS/RAGRS/GZRS/RAGZRS a paired region. See the README.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageRedundancy string = 'Standard_LRS'

@description('Days each version of an archive blob stays immutable (version-level WORM with a default retention policy, left unlocked); 0 (the default): off. Only when the archive account is created.')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 0

@description('Set by the hooks, not by hand: true once the archive\'s immutability policy is locked (ARCHIVE_IMMUTABILITY_LOCKED asks the postprovision hook to lock it). The Storage API creates a policy only Unlocked and refuses Unlocked for a locked one.')
param archiveImmutabilityPolicyLocked bool = false

@description('Days after which data blobs and manifests move to Cool (90 days later to Cold); 0 (the default): they stay Hot.')
@minValue(0)
param archiveCoolAfterDays int = 0

@description('Days after which data blobs and manifests are deleted (data-protection law); 0 (the default): never. Not shorter than archiveImmutabilityDays (the preprovision hook refuses it).')
@minValue(0)
@maxValue(36500)
param archiveDeleteAfterDays int = 0

@description('Comma-separated Entra object ids that get Storage Blob Data Reader on the archive container; empty: the deployer (principalId); none: nobody.')
param archiveReaderIds string = ''

@description('The deployer\'s object id (azd sets AZURE_PRINCIPAL_ID): the default archive reader.')
param principalId string = ''

@description('Infrastructure encryption (a second layer of encryption at rest) on both storage accounts. Only when they are created: changing it later fails.')
param storageInfrastructureEncryption bool = false

@description('Private networking: a virtual network, the app on its own subnet, both storage accounts reachable only through private endpoints. Recommended for production.')
param vnetEnabled bool = false

@description('Private networking: the virtual network\'s address space.')
param vnetAddressPrefix string = '10.0.0.0/16'

@description('Private networking: the app subnet, /27 or larger (/26 for several apps); never a subnet another App Service app used.')
param appSubnetPrefix string = '10.0.0.0/24'

@description('Private networking: the subnet of the private endpoints.')
param privateEndpointSubnetPrefix string = '10.0.1.0/24'

@description('Private networking: DNS servers of the network, comma-separated (a hub\'s DNS resolver, needed with existing zones, which answer only networks linked to them); empty: Azure\'s own DNS.')
param vnetDnsServers string = ''

@description('Private networking: resource id of an existing privatelink.blob zone (landing zones keep DNS central); empty: one is created.')
param privateDnsZoneIdBlob string = ''

@description('Private networking: resource id of an existing privatelink.queue zone; empty: one is created.')
param privateDnsZoneIdQueue string = ''

@description('Private networking: resource id of an existing privatelink.table zone; empty: one is created.')
param privateDnsZoneIdTable string = ''

@description('Comma-separated subset of sms, direct_routing, pstn, pstn_blocked_users, pstn_dialout_report, call_records.')
param collectorSources string = 'sms,direct_routing'

@description('Multi-tenant mode: create an app registration whose federated credential trusts the function\'s identity, and collect the tenants of collectorTenants through it (each consents once). Off: the identity\'s own tenant only.')
param multiTenant bool = false

@description('Multi-tenant mode: comma-separated ids of the customer tenants to collect.')
param collectorTenants string = ''

@description('Where sources with no watermark start (ISO 8601 UTC); empty: the day before the first run.')
param collectorStart string = ''

@description('NCRONTAB schedule of the timer (six fields, with seconds).')
param collectorSchedule string = '0 5 * * * *'

@description('Output container of the archive.')
param outputContainerName string = 'callrecords'

@description('Minutes a run stays behind now (COLLECTOR_LAG_MINUTES).')
param lagMinutes int = 60

@description('Allowed lateness in hours before a day is settled; 0 turns settling off.')
param latenessHours int = 48

@description('Seconds after which a run starts no new window (COLLECTOR_TIME_BUDGET_SECONDS).')
param timeBudgetSeconds int = 1200

@description('Length of a source\'s lease in seconds (COLLECTOR_LEASE_SECONDS).')
param leaseSeconds int = 300

@description('Graph requests of one log in any minute (GRAPH_REQUESTS_PER_MINUTE_PER_LOG).')
param graphRequestsPerMinutePerLog int = 50

@description('Graph requests of all logs together in any minute (GRAPH_REQUESTS_PER_MINUTE).')
param graphRequestsPerMinute int = 200

@description('Graph request timeout in seconds (GRAPH_TIMEOUT_SECONDS).')
param graphTimeoutSeconds int = 100

@description('Windows of one source read at once during catch-up (COLLECTOR_WINDOWS_IN_FLIGHT).')
param windowsInFlight int = 16

@description('Graph\'s call-record limit spans (20 s, 5 min) times this, above 0 and at most 1 (GRAPH_CALL_RECORDS_PERIOD_SCALE); 1 in Azure: less is for tests against a simulator scaled alike.')
param graphCallRecordsPeriodScale string = '1'

@description('Days after a day ends at which its call records are listed again for records that changed or appeared (CALL_RECORDS_REVISIT_DAYS): ascending, at most 28; none: no revisits.')
param callRecordsRevisitDays string = '3,7,14,28'

@description('Reads of a call record that keeps failing before it is set aside (CALL_RECORDS_ATTEMPTS).')
@minValue(1)
@maxValue(20)
param callRecordsAttempts int = 3

@description('Hours without a successful collection before an alert fires.')
param noSuccessAlertHours int = 3

@description('Failed runs within 6 hours that fire an alert.')
param failureAlertCount int = 2

@description('Hours beyond COLLECTOR_LAG_MINUTES a source\'s watermark may lag before an alert fires.')
@minValue(1)
param lagAlertHours int = 3

@description('Failed runs of one source one after another that fire an alert.')
@minValue(1)
param failedRunsAlertCount int = 3

@description('When this deployment runs (UTC); leave the default. The "no collection" alert stays quiet until noSuccessAlertHours + 1 h after it.')
param deployedAt string = utcNow('u')

@description('Email for alerts; empty: alerts show in the portal only.')
param alertEmail string = ''

// Graph follows the cloud deployed to (an identity of one cloud gets no tokens for another's
// Graph). Only the public cloud can get here: Flex Consumption is not offered in Azure
// Government, so `location` allows public-cloud regions only and a Government deployment
// stops at parameter validation, before anything is created.
var graphEndpoints = {
  AzureCloud: 'https://graph.microsoft.com'
  AzureUSGovernment: 'https://graph.microsoft.us'
}
var graphEndpoint = graphEndpoints[environment().name]
var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-calllogs-${token}'
var hostStorageName = 'sthost${take(token, 18)}'
var archiveStorageName = 'stcalllogs${take(token, 13)}'
// Every source of collector/core/sources.py (tests/test_infra.py holds the two in step): the
// folders the archive's retention rules act on, configured or not.
var allSources = [
  'sms'
  'direct_routing'
  'pstn'
  'pstn_blocked_users'
  'pstn_dialout_report'
  'call_records'
]
// The preprovision hook refuses empty entries; union() drops an id given twice.
var archiveReaders = (toLower(archiveReaderIds) == 'none') ? [] : (empty(archiveReaderIds) ? (empty(principalId) ? [] : [
  principalId
]) : union([], split(toLower(replace(archiveReaderIds, ' ', '')), ',')))
var deploymentContainerName = 'app-package-${take(token, 12)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-calllogs-${token}'
    location: location
    tags: tags
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'hostStorage'
  scope: rg
  params: {
    name: hostStorageName
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    privateNetworking: vnetEnabled
    infrastructureEncryption: storageInfrastructureEncryption
  }
}

module archiveStorage 'modules/archive-storage.bicep' = {
  name: 'archiveStorage'
  scope: rg
  params: {
    name: archiveStorageName
    location: location
    tags: tags
    outputContainerName: outputContainerName
    skuName: storageRedundancy
    immutabilityDays: archiveImmutabilityDays
    immutabilityPolicyLocked: archiveImmutabilityPolicyLocked
    privateNetworking: vnetEnabled
    infrastructureEncryption: storageInfrastructureEncryption
    coolAfterDays: archiveCoolAfterDays
    deleteAfterDays: archiveDeleteAfterDays
    sourceNames: allSources
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'calllogs-${token}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    dnsServers: empty(vnetDnsServers) ? [] : split(replace(vnetDnsServers, ' ', ''), ',')
    storageEndpoints: [
      {
        accountName: hostStorage.outputs.name
        service: 'blob'
      }
      {
        accountName: hostStorage.outputs.name
        service: 'queue'
      }
      {
        accountName: hostStorage.outputs.name
        service: 'table'
      }
      {
        accountName: archiveStorage.outputs.name
        service: 'blob'
      }
    ]
    existingDnsZoneIds: {
      blob: privateDnsZoneIdBlob
      queue: privateDnsZoneIdQueue
      table: privateDnsZoneIdTable
    }
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-calllogs-${token}'
    appInsightsName: 'appi-calllogs-${token}'
    location: location
    tags: tags
  }
}

// Who read or changed either account's blobs, into the workspace (docs/operations.md).
module accessLogs 'modules/access-logs.bicep' = [for account in [
  hostStorageName
  archiveStorageName
]: {
  name: 'accessLogs-${account}'
  scope: rg
  params: {
    storageAccountName: account
    workspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    hostStorage
    archiveStorage
  ]
}]

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    hostStorageAccountName: hostStorage.outputs.name
    archiveStorageAccountName: archiveStorage.outputs.name
    outputContainerName: outputContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
    archiveReaderIds: archiveReaders
  }
}

module multiTenantApp 'modules/multi-tenant-app.bicep' = if (multiTenant) {
  name: 'multiTenantApp'
  scope: rg
  params: {
    uniqueName: 'calllogs-collector-${token}'
    displayName: 'Teams call-log collector (${environmentName})'
    identityPrincipalId: identity.outputs.principalId
  }
}

module function 'modules/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-calllogs-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    appSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    // Every setting the collector reads (collector/core/settings.py SETTING_NAMES) is set here
    // or has a default in the code; tests/test_infra.py keeps the two in step.
    collectorSettings: {
      GRAPH_ENDPOINT: graphEndpoint
      GRAPH_TIMEOUT_SECONDS: string(graphTimeoutSeconds)
      GRAPH_REQUESTS_PER_MINUTE_PER_LOG: string(graphRequestsPerMinutePerLog)
      GRAPH_REQUESTS_PER_MINUTE: string(graphRequestsPerMinute)
      AZURE_CLIENT_ID: identity.outputs.clientId
      COLLECTOR_SOURCES: collectorSources
      COLLECTOR_STORAGE__blobServiceUri: archiveStorage.outputs.blobEndpoint
      COLLECTOR_STORAGE__clientId: identity.outputs.clientId
      COLLECTOR_CONTAINER: outputContainerName
      COLLECTOR_START: collectorStart
      COLLECTOR_LAG_MINUTES: string(lagMinutes)
      COLLECTOR_LATENESS_HOURS: string(latenessHours)
      COLLECTOR_SCHEDULE: collectorSchedule
      COLLECTOR_TIME_BUDGET_SECONDS: string(timeBudgetSeconds)
      COLLECTOR_LEASE_SECONDS: string(leaseSeconds)
      COLLECTOR_WINDOWS_IN_FLIGHT: string(windowsInFlight)
      GRAPH_CALL_RECORDS_PERIOD_SCALE: graphCallRecordsPeriodScale
      CALL_RECORDS_REVISIT_DAYS: callRecordsRevisitDays
      CALL_RECORDS_ATTEMPTS: string(callRecordsAttempts)
      ARCHIVE_DELETE_AFTER_DAYS: string(archiveDeleteAfterDays)
      COLLECTOR_TENANTS: multiTenant ? collectorTenants : ''
      COLLECTOR_APP_CLIENT_ID: multiTenant ? multiTenantApp.outputs.appId : ''
    }
  }
  // The app and its first run wait for its roles and, in private mode, for the endpoints'
  // DNS zone groups: before those, the accounts' names resolve to refused public addresses.
  dependsOn: [
    rbac
    network
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    appInsightsId: monitoring.outputs.appInsightsId
    functionAppName: function.outputs.name
    location: location
    tags: tags
    noSuccessHours: noSuccessAlertHours
    failureCount: failureAlertCount
    lagMinutes: lagMinutes
    latenessHours: latenessHours
    lagAlertHours: lagAlertHours
    failedRunsAlertCount: failedRunsAlertCount
    deployedAt: deployedAt
    multiTenant: multiTenant
    alertEmail: alertEmail
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = archiveStorage.outputs.name
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output COLLECTOR_CONTAINER string = outputContainerName
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output GRAPH_ENDPOINT string = graphEndpoint
output COLLECTOR_APP_CLIENT_ID string = multiTenant ? multiTenantApp.outputs.appId : ''
output MULTI_TENANT bool = multiTenant
output VNET_ENABLED bool = vnetEnabled
