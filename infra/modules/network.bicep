// Private networking (vnetEnabled): the function app joins a subnet of its own and reaches
// both storage accounts only through private endpoints, as Microsoft's Flex Consumption azd
// templates (functions-quickstart-python-azd-timer) do it. Outbound calls to Graph, Entra ID
// and Application Insights leave through the delegated subnet's own gateways: no NAT gateway.
param name string
param location string
param tags object
@description('Address space of the virtual network.')
param addressPrefix string
@description('The app subnet (delegated to Microsoft.App/environments): /27 or larger.')
param appSubnetPrefix string
@description('The subnet the private endpoints take their addresses from.')
param privateEndpointSubnetPrefix string
@description('DNS servers of the network (a hub\'s resolver, which can answer from zones linked to the hub); empty: Azure\'s own DNS, which answers from zones linked to this network.')
param dnsServers array
@description('Storage endpoints to reach privately: objects { accountName, service } with service blob, queue or table.')
param storageEndpoints array
@description('Existing private DNS zones by service ({ blob, queue, table }: resource ids; an empty one is created here and linked to the network). Landing zones keep DNS central and pass theirs in.')
param existingDnsZoneIds object

var storageSuffix = environment().suffixes.storage
var services = [
  'blob'
  'queue'
  'table'
]
// Subnet names take no underscore (Flex Consumption refuses them).
var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'

// An NSG on every subnet (landing-zone policy Deny-Subnet-Without-Nsg). Only the default
// rules: a rule blocking the app subnet from the endpoints' subnet stops the Functions host.
resource appNsg 'Microsoft.Network/networkSecurityGroups@2025-09-01' = {
  name: 'nsg-${name}-app'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2025-09-01' = {
  name: 'nsg-${name}-pe'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

// Subnets inline, not as child resources: a redeployment would otherwise remove a subnet the
// vnet's own definition does not list.
resource vnet 'Microsoft.Network/virtualNetworks@2025-09-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    dhcpOptions: empty(dnsServers) ? null : {
      dnsServers: dnsServers
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: appNsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

// The zones nobody passed in: created here, linked to the network.
var zonesToCreate = filter(services, service => empty(existingDnsZoneIds[service]))

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for service in zonesToCreate: {
  name: 'privatelink.${service}.${storageSuffix}'
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (service, i) in zonesToCreate: {
  parent: zones[i]
  name: vnet.name
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2025-09-01' = [for endpoint in storageEndpoints: {
  name: 'pe-${endpoint.accountName}-${endpoint.service}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)
    }
    privateLinkServiceConnections: [
      {
        name: '${endpoint.accountName}-${endpoint.service}'
        properties: {
          privateLinkServiceId: resourceId('Microsoft.Storage/storageAccounts', endpoint.accountName)
          groupIds: [
            endpoint.service
          ]
        }
      }
    ]
  }
}]

// The zone group writes the endpoint's A record: until it exists, the account's name still
// resolves to its public address, which refuses the app. main.bicep makes the app wait for it.
resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2025-09-01' = [for (endpoint, i) in storageEndpoints: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.service
        properties: {
          privateDnsZoneId: empty(existingDnsZoneIds[endpoint.service]) ? resourceId('Microsoft.Network/privateDnsZones', 'privatelink.${endpoint.service}.${storageSuffix}') : existingDnsZoneIds[endpoint.service]
        }
      }
    ]
  }
  dependsOn: [
    zones
    zoneLinks
  ]
}]

output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output vnetId string = vnet.id
