// Grants the identity Microsoft Graph's CallRecords.Read.All application permission.
// Needs a deployer allowed to grant app roles (Privileged Role Administrator, or
// AppRoleAssignment.ReadWrite.All); main.bicep makes this module optional.
extension microsoftGraphV1

param principalId string

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource callRecordsRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: graph.id
  appRoleId: filter(graph.appRoles, role => role.value == 'CallRecords.Read.All')[0].id
}
