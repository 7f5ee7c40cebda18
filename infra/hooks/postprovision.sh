#!/bin/sh
# azd postprovision hook: lock the archive's immutability policy when asked to, then give
# the collector's identity Microsoft Graph's application permission CallRecords.Read.All, or
# say exactly what an administrator must run.
#
# Locking (ARCHIVE_IMMUTABILITY_LOCKED=true, ARCHIVE_IMMUTABILITY_DAYS > 0) happens here, not
# in the template: Storage creates a policy only Disabled or Unlocked, so it can be locked only
# once it exists, and this is where the irreversible step can be announced. It records the
# locked state in ARCHIVE_IMMUTABILITY_POLICY_LOCKED, which the template reads so that it
# never sends Unlocked to a locked policy. A failed lock does not stop the grant, but the hook
# then exits 1 at the end: the archive is not what was asked for.
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

# --- the immutability lock ---------------------------------------------------------------

lock_failed=

lock_failure() {  # the reason, one line per argument: the grant still runs, the hook fails at the end
    lock_failed=yes
    echo "The immutability policy of the archive was NOT locked:"
    printf '%s\n' "$@" | sed 's/^/  /'
    echo "After fixing that, run 'azd hooks run postprovision', or lock it yourself with"
    echo "  az storage account update --name $lock_account --resource-group $lock_group --subscription $lock_subscription --immutability-state Locked --immutability-period $lock_days --allow-protected-append-writes false"
    echo "  azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true"
    echo
}

policy_state() {  # Locked, Unlocked, Disabled, or nothing when the account has no policy
    az storage account show --name "$lock_account" --resource-group "$lock_group" --subscription "$lock_subscription" \
        --query immutableStorageWithVersioning.immutabilityPolicy.state -o tsv
}

record_locked() {  # so that the template keeps the policy Locked from now on
    if [ "$(value ARCHIVE_IMMUTABILITY_POLICY_LOCKED | tr '[:upper:]' '[:lower:]')" != true ] &&
        ! azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true; then
        echo "Run 'azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true' before the next azd provision"
        echo "(the preprovision hook does it too when az is signed in)."
    fi
}

if [ "$(value ARCHIVE_IMMUTABILITY_LOCKED | tr '[:upper:]' '[:lower:]')" = "true" ]; then
    lock_days=$(value ARCHIVE_IMMUTABILITY_DAYS)
    lock_account=$(value AZURE_STORAGE_ACCOUNT_NAME)
    lock_group=$(value AZURE_RESOURCE_GROUP)
    lock_subscription=$(value AZURE_SUBSCRIPTION_ID)
    case "$lock_days" in
        *[!0-9]*) lock_failure "ARCHIVE_IMMUTABILITY_DAYS='$lock_days' is not a whole number of days." ;;
        '' | *[1-9]*) ;;
        *) lock_days=0 ;;
    esac
    if [ -n "$lock_failed" ]; then
        :
    elif [ "${lock_days:-0}" = 0 ]; then
        echo "ARCHIVE_IMMUTABILITY_LOCKED is true, but ARCHIVE_IMMUTABILITY_DAYS is 0: nothing to lock (there is no immutability policy)."
        echo
    elif [ -z "$lock_account" ] || [ -z "$lock_group" ] || [ -z "$lock_subscription" ]; then
        lock_failure "AZURE_STORAGE_ACCOUNT_NAME, AZURE_RESOURCE_GROUP or AZURE_SUBSCRIPTION_ID is missing: did the provisioning finish?"
    elif ! lock_state=$(policy_state 2>/dev/null); then
        error=$(policy_state 2>&1 >/dev/null)
        lock_failure "Could not read the policy of the archive account $lock_account with the Azure CLI (az):" \
            "$(printf '%s\n' "$error" | head -n 3)"
    elif [ "$lock_state" = Locked ]; then
        record_locked
        echo "The immutability policy of the archive account $lock_account is locked already."
        echo
    elif [ "$lock_state" != Unlocked ]; then
        lock_failure "The archive account $lock_account has no unlocked immutability policy (state: ${lock_state:-none}); only an Unlocked policy can be locked."
    else
        echo "WARNING: locking the immutability policy of the archive account $lock_account is final."
        echo "  - The policy can then only be extended, never shortened, unlocked or removed."
        echo "  - The account and its resource group cannot be deleted until every blob version's"
        echo "    retention ($lock_days days from its creation) has passed."
        echo "  - There is no command that undoes it."
        echo "Locking it now, as ARCHIVE_IMMUTABILITY_LOCKED=true asks ..."
        if error=$(az storage account update --name "$lock_account" --resource-group "$lock_group" --subscription "$lock_subscription" \
            --immutability-state Locked --immutability-period "$lock_days" --allow-protected-append-writes false 2>&1 >/dev/null); then
            record_locked
            echo "Locked the immutability policy of the archive account $lock_account: every blob version is kept $lock_days days."
            echo
        else
            lock_failure "az storage account update failed:" "$(printf '%s\n' "$error" | head -n 3)"
        fi
    fi
fi

finish() {  # the grant's outcome is told; a failed lock still fails the hook, last of all
    if [ -n "$lock_failed" ]; then
        echo
        echo "The archive's immutability policy is not locked, as ARCHIVE_IMMUTABILITY_LOCKED asks (see above)." >&2
        exit 1
    fi
    exit 0
}

# --- the Graph permission -----------------------------------------------------------------

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
    finish
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
    finish
fi
if [ -n "$tenant" ] && [ "$signed_in" != "$tenant" ]; then
    echo "The Azure CLI is signed in to tenant $signed_in, but the deployment is in tenant $tenant."
    echo "Run 'az login --tenant $tenant', then 'azd hooks run postprovision' to grant $ROLE."
    finish
fi

graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv 2>/dev/null)
role_id=$(az ad sp show --id "$GRAPH_APP_ID" --query "appRoles[?value=='$ROLE'].id" -o tsv 2>/dev/null)
if [ -z "$graph_sp" ] || [ -z "$role_id" ]; then
    echo "Could not look up Microsoft Graph's service principal with 'az ad sp show'."
    manual
    finish
fi
body="{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}"

if az rest --method GET --uri "$assignments" --query "value[?appRoleId=='$role_id'].id" -o tsv 2>/dev/null | grep -q .; then
    echo "The identity $principal already has $ROLE."
    finish
fi
if [ "$mode" = auto ]; then
    attempt=1
    while :; do
        if error=$(az rest --method POST --uri "$assignments" --body "$body" 2>&1 >/dev/null); then
            echo "Granted $ROLE to the identity $principal."
            echo "A running app picks it up within 24 h; restart it to apply it at once."
            finish
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
finish
