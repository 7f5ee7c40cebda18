#!/bin/sh
# azd postprovision hook: give the collector's identity Microsoft Graph's application
# permission CallRecords.Read.All, or say exactly what an administrator must run.
#
# It runs once the whole deployment has finished, minutes after the identity was created,
# so the grant does not race the identity's replication in Entra ID (a grant made in the
# same template fails on first deployments: microsoftgraph/msgraph-bicep-types#193).
# Granting needs Privileged Role Administrator or Global Administrator; without it the
# deployment still succeeds, and this prints the command to hand to an administrator.
#
# GRANT_GRAPH_PERMISSION (azd env): auto (default: try, else print), false (only print).
# MULTI_TENANT=true: no grant; it says how customer tenants consent to the app instead.
set -u

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
ROLE=CallRecords.Read.All
RETRIES=${GRANT_RETRIES:-3}
RETRY_SECONDS=${GRANT_RETRY_SECONDS:-20}

value() {  # an azd environment value: from the hook's environment, else from azd
    eval "current=\${$1:-}"
    if [ -n "$current" ]; then
        printf '%s' "$current"
    else
        azd env get-value "$1" 2>/dev/null
    fi
}

principal=$(value AZURE_IDENTITY_PRINCIPAL_ID)
graph=$(value GRAPH_ENDPOINT)
tenant=$(value AZURE_TENANT_ID)
mode=$(value GRANT_GRAPH_PERMISSION | tr '[:upper:]' '[:lower:]')
case "${mode:-auto}" in
    auto | true) mode=auto ;;
    false) mode=false ;;
    *)
        echo "GRANT_GRAPH_PERMISSION='$mode' is not valid: auto (the default) or false" >&2
        exit 2
        ;;
esac
if [ "$(value MULTI_TENANT | tr '[:upper:]' '[:lower:]')" = "true" ]; then
    # The identity only signs the multi-tenant app in; each customer tenant grants the app.
    app=$(value COLLECTOR_APP_CLIENT_ID)
    echo "Multi-tenant mode: the identity gets no Graph permission of its own. Each customer"
    echo "tenant's administrator grants $ROLE to the app $app once, by opening"
    echo "  https://login.microsoftonline.com/<tenant id>/adminconsent?client_id=$app"
    echo "(python -m collector consent-url <tenant id> prints it for one tenant)."
    exit 0
fi
if [ -z "$principal" ] || [ -z "$graph" ]; then
    echo "postprovision: AZURE_IDENTITY_PRINCIPAL_ID or GRAPH_ENDPOINT is missing: did the provisioning finish?" >&2
    exit 1
fi
assignments="$graph/v1.0/servicePrincipals/$principal/appRoleAssignments"

manual() {  # what to run when this hook cannot look things up itself
    echo "Grant $ROLE to the managed identity $principal by hand. In bash (or Azure Cloud Shell,"
    echo "Bash), signed in to tenant ${tenant:-of the deployment} with a role that may grant app permissions:"
    echo
    echo "  az rest --method POST --uri $assignments --body \"{\\\"principalId\\\":\\\"$principal\\\",\\\"resourceId\\\":\\\"\$(az ad sp show --id $GRAPH_APP_ID --query id -o tsv)\\\",\\\"appRoleId\\\":\\\"\$(az ad sp show --id $GRAPH_APP_ID --query \"appRoles[?value=='$ROLE'].id\" -o tsv)\\\"}\""
}

signed_in=$(az account show --query tenantId -o tsv 2>/dev/null)
if [ -z "$signed_in" ]; then
    echo "The Azure CLI is not signed in ('az login --tenant ${tenant:-<tenant>}'), so $ROLE was not granted."
    manual
    exit 0
fi
if [ -n "$tenant" ] && [ "$signed_in" != "$tenant" ]; then
    echo "The Azure CLI is signed in to tenant $signed_in, but the deployment is in tenant $tenant."
    echo "Run 'az login --tenant $tenant', then 'azd hooks run postprovision' to grant $ROLE."
    exit 0
fi

graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv 2>/dev/null)
role_id=$(az ad sp show --id "$GRAPH_APP_ID" --query "appRoles[?value=='$ROLE'].id" -o tsv 2>/dev/null)
if [ -z "$graph_sp" ] || [ -z "$role_id" ]; then
    echo "Could not look up Microsoft Graph's service principal with 'az ad sp show'."
    manual
    exit 0
fi
body="{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}"

if az rest --method GET --uri "$assignments" --query "value[?appRoleId=='$role_id'].id" -o tsv 2>/dev/null | grep -q .; then
    echo "The identity $principal already has $ROLE."
    exit 0
fi
if [ "$mode" = auto ]; then
    attempt=1
    while :; do
        if error=$(az rest --method POST --uri "$assignments" --body "$body" 2>&1 >/dev/null); then
            echo "Granted $ROLE to the identity $principal."
            echo "A running app picks it up within 24 h; restart it to apply it at once."
            exit 0
        fi
        case "$error" in
            # A new identity can take a while to reach every replica of Entra ID.
            *Request_ResourceNotFound* | *"does not exist"*)
                if [ "$attempt" -lt "$RETRIES" ]; then
                    attempt=$((attempt + 1))
                    sleep "$RETRY_SECONDS"
                    continue
                fi
                echo "Entra ID does not know the identity $principal yet:"
                ;;
            *Authorization_RequestDenied* | *"Insufficient privileges"*)
                echo "Could not grant $ROLE yourself (it takes Privileged Role Administrator or Global Administrator):"
                ;;
            *) echo "Could not grant $ROLE:" ;;
        esac
        printf '  %s\n' "$error" | head -n 3
        break
    done
fi
echo
echo "The deployment is complete, but the collector cannot read call logs until an administrator"
echo "of tenant ${tenant:-of the deployment} grants the permission. Send them one of these commands:"
echo
echo "bash or Azure Cloud Shell (Bash), Azure CLI signed in to that tenant:"
echo "  az rest --method POST --uri $assignments --body '$body'"
echo
echo "PowerShell, Microsoft Graph module (Connect-MgGraph -TenantId ${tenant:-<tenant>} -Scopes AppRoleAssignment.ReadWrite.All):"
echo "  New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $principal -PrincipalId $principal -ResourceId $graph_sp -AppRoleId $role_id"
echo
echo "Until then every run logs HTTP 403 Authorization_RequestDenied from Graph."
exit 0
