// Multi-tenant mode (MULTI_TENANT): the app registration customer tenants consent to. Its
// only credential is a federated identity credential trusting the function's user-assigned
// identity, so no secret or certificate exists to leak or expire. It asks for Graph's
// CallRecords.Read.All application permission, which each customer's administrator grants
// by consenting (python -m collector consent-url <tenant>).
// Needs a deployer allowed to create app registrations (Application Developer, or the
// default "users can register applications").
extension microsoftGraphV1

@description('Stable unique name of the app registration (Graph uniqueName).')
param uniqueName string
param displayName string
@description('Principal (object) id of the user-assigned identity the credential trusts.')
param identityPrincipalId string

var graphAppId = '00000003-0000-0000-c000-000000000000'

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: [
        {
          id: filter(graph.appRoles, role => role.value == 'CallRecords.Read.All')[0].id
          type: 'Role'
        }
      ]
    }
  ]

  resource trustsIdentity 'federatedIdentityCredentials@v1.0' = {
    name: '${uniqueName}/function-identity'
    description: 'The collector function\'s user-assigned managed identity: its token for api://AzureADTokenExchange is this app\'s client assertion.'
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: identityPrincipalId
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

output appId string = app.appId
