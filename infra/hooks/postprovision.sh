#!/bin/sh
# azd postprovision hook: give the collector's identity Microsoft Graph's application
# permission CallRecords.Read.All, or say exactly what an administrator must run.
#
# It runs once the whole deployment has finished, minutes after the identity was created,
# so the grant does not race the identity's replication in Entra ID (a grant made in the
# same template fails on first deployments: microsoftgraph/msgraph-bicep-types#193).
# Granting needs Privileged Role Administrator or Global Administrator; without it the
# deployment still succeeds, and this prints the one command to hand to an administrator.
#
# GRANT_GRAPH_PERMISSION (azd env): auto (default: try, else print), false (only print).
set -u

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
ROLE=CallRecords.Read.All

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
mode=$(value GRANT_GRAPH_PERMISSION)
case "${mode:-auto}" in
    auto | true) mode=auto ;;
    false) mode=false ;;
    *)
        echo "GRANT_GRAPH_PERMISSION='$mode' is not valid: auto (the default) or false" >&2
        exit 2
        ;;
esac
if [ -z "$principal" ] || [ -z "$graph" ]; then
    echo "postprovision: AZURE_IDENTITY_PRINCIPAL_ID or GRAPH_ENDPOINT is missing: did the provisioning finish?" >&2
    exit 1
fi

graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv 2>/dev/null)
role_id=$(az ad sp show --id "$GRAPH_APP_ID" --query "appRoles[?value=='$ROLE'].id" -o tsv 2>/dev/null)
if [ -z "$graph_sp" ] || [ -z "$role_id" ]; then
    echo "Could not look up Microsoft Graph's service principal with 'az ad sp show' (is 'az login' done?)."
    echo "Grant $ROLE to the managed identity $principal by hand: see the README, 'Graph permission'."
    exit 0
fi
assignments="$graph/v1.0/servicePrincipals/$principal/appRoleAssignments"
body="{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}"
command="az rest --method POST --uri $assignments --body '$body'"

if az rest --method GET --uri "$assignments" --query "value[?appRoleId=='$role_id'].id" -o tsv 2>/dev/null | grep -q .; then
    echo "The identity $principal already has $ROLE."
    exit 0
fi
if [ "$mode" = auto ]; then
    if error=$(az rest --method POST --uri "$assignments" --body "$body" 2>&1 >/dev/null); then
        echo "Granted $ROLE to the identity $principal."
        echo "A running app picks it up within 24 h; restart it to apply it at once."
        exit 0
    fi
    echo "Could not grant $ROLE yourself (it takes Privileged Role Administrator or Global Administrator):"
    printf '  %s\n' "$error" | head -n 3
fi
echo
echo "The deployment is complete, but the collector cannot read call logs until an administrator"
echo "of this tenant grants the permission. Send them this one command (Azure CLI, signed in to this tenant):"
echo
echo "  $command"
echo
echo "Until then every run logs HTTP 403 Authorization_RequestDenied from Graph."
exit 0
