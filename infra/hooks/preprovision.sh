#!/bin/sh
# azd preprovision hook: refuse settings the template would turn into a wrong archive, and
# prepare the subscription, before azd creates or changes anything.
#
# 1. Validates the archive's day counts and VNET_ENABLED, so a typo stops here with the
#    setting's name instead of as an ARM error halfway through a deployment.
# 2. Registers the resource providers the template needs. Microsoft.App above all: a Flex
#    Consumption app with VNet integration fails without it, and ARM does not register it
#    because the template deploys no Microsoft.App resource (Azure/bicep#16340).
# 3. Keeps ARCHIVE_IMMUTABILITY_POLICY_LOCKED (written only by these hooks) in step with the
#    archive account: Storage refuses Unlocked for a locked policy, and creates a new policy
#    only Disabled or Unlocked, so the template must send what the account actually has.
#
# It needs the Azure CLI (az) signed in for 2 and 3; without it, it says what to run and lets
# azd go on (azd itself does not need az, and a prepared subscription deploys fine).
# PROVIDER_POLL_SECONDS (default 10) and PROVIDER_WAIT_SECONDS (default 600) tune the wait.
set -u

PROVIDERS="Microsoft.App Microsoft.Web Microsoft.Storage Microsoft.Network Microsoft.ManagedIdentity Microsoft.OperationalInsights Microsoft.Insights Microsoft.AlertsManagement"
POLL_SECONDS=${PROVIDER_POLL_SECONDS:-10}
WAIT_SECONDS=${PROVIDER_WAIT_SECONDS:-600}

value() {  # an azd environment value: from the hook's environment, else from azd
    eval "current=\${$1:-}"
    if [ -n "$current" ]; then
        printf '%s' "$current"
    else
        azd env get-value "$1" 2>/dev/null
    fi
}

refuse() {  # stop provisioning before anything is created; one line per argument
    {
        printf 'preprovision: %s\n' "$1"
        shift
        if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; fi
    } >&2
    exit 1
}

# --- 1. settings -------------------------------------------------------------------------

whole_days() {  # NAME: the setting as a count of days in $days (unset: 0), or refuse it
    raw=$(value "$1")
    case "$raw" in
        '') days=0 ;;
        *[!0-9]*)
            refuse "$1='$raw' is not a whole number of days (0 or more; 0 turns it off)." \
                "Fix it with 'azd env set $1 <days>', then run azd again."
            ;;
        *)
            # Without its leading zeros, so that the size check counts the digits that matter.
            days=$(printf '%s' "$raw" | sed 's/^0*//')
            days=${days:-0}
            if [ "${#days}" -gt 6 ]; then
                refuse "$1='$raw' is too large for a number of days." \
                    "Fix it with 'azd env set $1 <days>', then run azd again."
            fi
            ;;
    esac
}

whole_days ARCHIVE_IMMUTABILITY_DAYS
immutability=$days
whole_days ARCHIVE_COOL_AFTER_DAYS
cool=$days
whole_days ARCHIVE_DELETE_AFTER_DAYS
delete=$days

if [ "$delete" -gt 0 ] && [ "$delete" -lt "$immutability" ]; then
    refuse "ARCHIVE_DELETE_AFTER_DAYS=$delete is shorter than ARCHIVE_IMMUTABILITY_DAYS=$immutability." \
        "Storage cannot delete a blob version while it is immutable, so blobs would not be deleted" \
        "after $delete days as the setting says, but only after $immutability." \
        "Set ARCHIVE_DELETE_AFTER_DAYS to $immutability or more, or to 0 (never delete):" \
        "  azd env set ARCHIVE_DELETE_AFTER_DAYS $immutability"
fi
# A day settles its lateness and lag after it ends; its first blobs must still be there then,
# or the settle pass fetches their rows from Graph again (collector/core/settings.py
# shortest_retention_days says the same to the app).
lateness_hours=$(value COLLECTOR_LATENESS_HOURS)
lag_minutes=$(value COLLECTOR_LAG_MINUTES)
case "${lateness_hours:-48}${lag_minutes:-60}" in
    *[!0-9]*) ;;  # the app refuses these itself, naming them
    *)
        shortest=$(( (${lateness_hours:-48} * 60 + ${lag_minutes:-60} + 1439) / 1440 + 2 ))
        if [ "$delete" -gt 0 ] && [ "$delete" -lt "$shortest" ]; then
            refuse "ARCHIVE_DELETE_AFTER_DAYS=$delete is shorter than $shortest days: a day is settled COLLECTOR_LATENESS_HOURS" \
                "(${lateness_hours:-48}) + COLLECTOR_LAG_MINUTES (${lag_minutes:-60}) after it ends, and its blobs must still be" \
                "there then (plus 2 days of slack), or expired rows would be read from Graph again." \
                "  azd env set ARCHIVE_DELETE_AFTER_DAYS $shortest"
        fi
        ;;
esac
if [ "$delete" -gt 0 ] && [ "$cool" -gt 0 ] && [ "$delete" -le "$cool" ]; then
    refuse "ARCHIVE_DELETE_AFTER_DAYS=$delete is not later than ARCHIVE_COOL_AFTER_DAYS=$cool:" \
        "blobs would be deleted before they move to the cool tier, so tiering them is pointless." \
        "Set ARCHIVE_DELETE_AFTER_DAYS above $cool, or ARCHIVE_COOL_AFTER_DAYS to 0 (no tiering):" \
        "  azd env set ARCHIVE_COOL_AFTER_DAYS 0"
fi

for name in VNET_ENABLED ARCHIVE_IMMUTABILITY_LOCKED; do
    raw=$(value "$name")
    case "$(printf '%s' "$raw" | tr '[:upper:]' '[:lower:]')" in
        '' | true | false) ;;
        *)
            refuse "$name='$raw' is not valid: true or false (or unset)." \
                "Fix it with 'azd env set $name true' (or false), then run azd again."
            ;;
    esac
done

# Operators given read access: 'none', or object ids (GUIDs) separated by commas. An empty
# entry or an id twice would fail the deployment half-way (a role assignment without a
# principal; the same assignment twice).
readers=$(value ARCHIVE_READER_IDS | tr -d ' ')
case "$(printf '%s' "$readers" | tr '[:upper:]' '[:lower:]')" in
    '' | none) ;;
    *)
        guid='^[0-9a-fA-F]\{8\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{12\}$'
        bad=$(printf '%s\n' "$readers" | tr ',' '\n' | grep -v "$guid")
        twice=$(printf '%s\n' "$readers" | tr ',' '\n' | tr '[:upper:]' '[:lower:]' | sort | uniq -d)
        if [ -n "$bad" ] || [ -z "$(printf '%s' "$readers" | tr -d ',')" ] || [ -n "$twice" ]; then
            refuse "ARCHIVE_READER_IDS='$readers' is not valid: Entra object ids (GUIDs) separated by commas, each once, or none." \
                "  azd env set ARCHIVE_READER_IDS \"<object id>,<object id>\"   (az ad user show --id <name> --query id -o tsv)"
        fi
        case "$readers" in
            ,* | *, | *,,*)
                refuse "ARCHIVE_READER_IDS='$readers' has an empty entry: object ids separated by single commas." ;;
        esac
        ;;
esac

# Zones kept in a hub answer only networks linked to them, and this network is not: it must
# ask the hub's DNS resolver (VNET_DNS_SERVERS) and be peered to the hub.
zones_given=$(value PRIVATE_DNS_ZONE_ID_BLOB)$(value PRIVATE_DNS_ZONE_ID_QUEUE)$(value PRIVATE_DNS_ZONE_ID_TABLE)
if [ -n "$zones_given" ] && [ -z "$(value VNET_DNS_SERVERS)" ]; then
    refuse "PRIVATE_DNS_ZONE_ID_* name existing private DNS zones, but VNET_DNS_SERVERS is empty." \
        "Zones kept in a hub resolve only for networks linked to them; this network must use the hub's" \
        "DNS resolver (and be peered to the hub), or the app would reach storage's refused public address:" \
        "  azd env set VNET_DNS_SERVERS <resolver ip>[,<resolver ip>]"
fi

# The subnets must lie inside the network's address space (a VNET_ADDRESS_PREFIX changed
# alone would leave the default subnets outside it, failing half-way).
vnet=$(value VNET_ADDRESS_PREFIX)
for name in APP_SUBNET_PREFIX PRIVATE_ENDPOINT_SUBNET_PREFIX; do
    range=$(value "$name")
    case "$name" in
        APP_SUBNET_PREFIX) range=${range:-10.0.0.0/24} ;;
        *) range=${range:-10.0.1.0/24} ;;
    esac
    if ! awk -v net="${vnet:-10.0.0.0/16}" -v inner="$range" '
        function parse(cidr, out,   parts, octets, i) {
            if (split(cidr, parts, "/") != 2 || parts[2] !~ /^[0-9]+$/ || parts[2] > 32) return 0
            if (split(parts[1], octets, ".") != 4) return 0
            out["ip"] = 0
            for (i = 1; i <= 4; i++) {
                if (octets[i] !~ /^[0-9]+$/ || octets[i] > 255) return 0
                out["ip"] = out["ip"] * 256 + octets[i]
            }
            out["bits"] = parts[2]
            return 1
        }
        BEGIN {
            if (!parse(net, n) || !parse(inner, s)) exit 1
            size = 2 ^ (32 - n["bits"])
            start = n["ip"] - n["ip"] % size
            exit !(s["bits"] >= n["bits"] && s["ip"] >= start && s["ip"] < start + size)
        }'; then
        refuse "$name='$range' is not inside VNET_ADDRESS_PREFIX='${vnet:-10.0.0.0/16}' (or one of them is not an address range)." \
            "Set both subnets inside the network's space, e.g. for 10.20.0.0/16:" \
            "  azd env set APP_SUBNET_PREFIX 10.20.0.0/24" \
            "  azd env set PRIVATE_ENDPOINT_SUBNET_PREFIX 10.20.1.0/24"
    fi
done

# Flex Consumption's VNet integration needs an app subnet of /27 or larger; a smaller one
# fails only once the network exists, half-way through the deployment.
subnet=$(value APP_SUBNET_PREFIX)
if [ -n "$subnet" ]; then
    bits=${subnet##*/}
    case "$subnet" in
        */*) ;;
        *) bits=x ;;
    esac
    case "$bits" in
        '' | *[!0-9]*)
            refuse "APP_SUBNET_PREFIX='$subnet' is not an address range such as 10.0.0.0/24." \
                "Fix it with 'azd env set APP_SUBNET_PREFIX 10.0.0.0/24', then run azd again."
            ;;
    esac
    if [ "$bits" -gt 27 ]; then
        refuse "APP_SUBNET_PREFIX='$subnet' is too small: the app subnet must be /27 or larger (/26 for several apps)." \
            "Fix it with 'azd env set APP_SUBNET_PREFIX ${subnet%/*}/27' (or a larger range), then run azd again."
    fi
fi

case "$POLL_SECONDS$WAIT_SECONDS" in
    *[!0-9]*) refuse "PROVIDER_POLL_SECONDS and PROVIDER_WAIT_SECONDS must be whole numbers of seconds." ;;
esac

# --- 2. resource providers ---------------------------------------------------------------

subscription=$(value AZURE_SUBSCRIPTION_ID)
if [ -n "$subscription" ] && az account show --subscription "$subscription" --query id -o tsv >/dev/null 2>&1; then
    az_ok=true
else
    az_ok=false
    sub=${subscription:-<subscription id>}
    echo "Could not check the resource providers of subscription $sub: the Azure CLI (az) is not"
    echo "installed, not signed in ('az login'), or cannot see that subscription."
    echo "A subscription that has run Flex Consumption apps before deploys fine. On a new one, an Owner"
    echo "or Contributor of it must first register Microsoft.App (the deployment does not register it):"
    echo "  bash:       az provider register --namespace Microsoft.App --subscription $sub --wait"
    echo "  PowerShell: Register-AzResourceProvider -ProviderNamespace Microsoft.App   (after Set-AzContext -Subscription $sub)"
    echo "and the same for any other the deployment reports as not registered, of:"
    echo "  $PROVIDERS"
    echo "Or sign in with az and run 'azd hooks run preprovision' to have them registered."
fi

if [ "$az_ok" = true ]; then
    already=0
    total=0
    # Counting by at least 1 ends the wait even when polling does not sleep (tests).
    step=$POLL_SECONDS
    [ "$step" -gt 0 ] || step=1
    for ns in $PROVIDERS; do
        total=$((total + 1))
        state=$(az provider show --namespace "$ns" --subscription "$subscription" --query registrationState -o tsv 2>/dev/null)
        if [ "$state" = Registered ]; then
            already=$((already + 1))
            continue
        fi
        printf 'Registering %s in subscription %s ... ' "$ns" "$subscription"
        if ! error=$(az provider register --namespace "$ns" --subscription "$subscription" 2>&1 >/dev/null); then
            echo "refused."
            {
                echo "preprovision: could not register the resource provider $ns in subscription $subscription:"
                printf '%s\n' "$error" | head -n 3 | sed 's/^/  /'
                case "$error" in
                    *AuthorizationFailed* | *register/action*)
                        echo "Registering a provider takes the permission */register/action on the whole subscription." ;;
                esac
                echo "An Owner or Contributor of the subscription must run, once:"
                echo "  bash:       az provider register --namespace $ns --subscription $subscription --wait"
                echo "  PowerShell: Register-AzResourceProvider -ProviderNamespace $ns   (after Set-AzContext -Subscription $subscription)"
                echo "Then run azd provision (or azd up) again."
            } >&2
            exit 1
        fi
        waited=0
        while :; do
            state=$(az provider show --namespace "$ns" --subscription "$subscription" --query registrationState -o tsv 2>/dev/null)
            [ "$state" = Registered ] && break
            if [ "$waited" -ge "$WAIT_SECONDS" ]; then
                echo "not yet."
                {
                    echo "preprovision: $ns is still ${state:-not registered} in subscription $subscription after $waited s."
                    echo "Registration can take several minutes. Check it with"
                    echo "  az provider show --namespace $ns --subscription $subscription --query registrationState -o tsv"
                    echo "and once it says Registered, run azd provision (or azd up) again."
                    echo "(PROVIDER_WAIT_SECONDS, $WAIT_SECONDS now, makes this hook wait longer.)"
                } >&2
                exit 1
            fi
            sleep "$POLL_SECONDS"
            waited=$((waited + step))
        done
        echo "registered (after $waited s)"
    done
    echo "Resource providers: $already of $total were registered already in subscription $subscription."
fi

# --- 3. the immutability policy's lock state ---------------------------------------------

account=$(value AZURE_STORAGE_ACCOUNT_NAME)
group=$(value AZURE_RESOURCE_GROUP)
recorded=$(value ARCHIVE_IMMUTABILITY_POLICY_LOCKED | tr '[:upper:]' '[:lower:]')

record_lock() {  # true|false: write the policy's lock state to the azd environment, or stop
    if ! azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED "$1"; then
        refuse "could not run 'azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED $1': run it, then azd provision again."
    fi
}

policy_state() {  # Locked, Unlocked, Disabled, or nothing when the account has no policy
    az storage account show --name "$account" --resource-group "$group" --subscription "$subscription" \
        --query immutableStorageWithVersioning.immutabilityPolicy.state -o tsv
}

if [ "$immutability" -gt 0 ]; then
    state=unknown
    if [ -z "$account" ] || [ -z "$group" ]; then
        state=new  # a first provisioning: the template creates the account and its policy
    elif [ "$az_ok" = true ]; then
        if state=$(policy_state 2>/dev/null); then
            state=${state:-none}
        else
            error=$(policy_state 2>&1 >/dev/null)
            case "$error" in
                *ResourceNotFound* | *ResourceGroupNotFound* | *"not found"* | *"could not be found"*)
                    state=new ;;  # deleted (azd down): the template creates it anew
                *)
                    state=unknown
                    echo "Could not read the immutability policy of the archive account $account:"
                    printf '%s\n' "$error" | head -n 3 | sed 's/^/  /'
                    ;;
            esac
        fi
    fi
    case "$state" in
        Locked)
            if [ "$recorded" != true ]; then
                record_lock true
                echo "The immutability policy of the archive account $account is locked: ARCHIVE_IMMUTABILITY_POLICY_LOCKED"
                echo "is now true, so the template keeps it Locked (Storage refuses to set a locked policy back to"
                echo "Unlocked); a locked policy can never be unlocked."
                echo "(An older azd may have read its settings before this hook: if this provisioning still fails"
                echo "on the immutability policy, run azd provision again.)"
            fi
            ;;
        unknown)
            if [ "$recorded" != true ]; then
                echo "If the immutability policy of the archive account $account is locked (portal: the account,"
                echo "Data protection), run 'azd env set ARCHIVE_IMMUTABILITY_POLICY_LOCKED true' first, or"
                echo "provisioning fails: Storage refuses to set a locked policy back to Unlocked."
            fi
            ;;
        *)
            # Unlocked, Disabled or a new account: the template must not send Locked, which
            # would lock the policy without the warning of the postprovision hook, or which
            # Storage refuses when it creates a policy.
            if [ "$recorded" = true ]; then
                record_lock false
                echo "The archive account ${account:-(new)} has no locked immutability policy: ARCHIVE_IMMUTABILITY_POLICY_LOCKED"
                echo "is now false. To lock the policy, set ARCHIVE_IMMUTABILITY_LOCKED true (the postprovision hook locks it)."
            fi
            ;;
    esac
fi
exit 0
