// Alerts in Application Insights: on the timer's invocations (silence, repeated failures) and
// on the metrics each source's run exports (collector/observe/metrics.py): watermark lag, a day left
// unsettled, failed runs in a row.
param appInsightsId string
param functionAppName string
param location string
param tags object
@description('Hours without one successful collection before the "no collection" alert fires.')
@minValue(1)
@maxValue(48)
param noSuccessHours int
@description('Failed invocations within 6 hours that fire the "repeated failures" alert.')
@minValue(1)
param failureCount int
@description('Minutes a run stays behind now (COLLECTOR_LAG_MINUTES).')
param lagMinutes int
@description('Allowed lateness in hours before a day is settled (COLLECTOR_LATENESS_HOURS); 0: settling is off and so is its alert.')
param latenessHours int
@description('Hours beyond lagMinutes a source\'s watermark may lag before the "watermark lag" alert fires.')
@minValue(1)
param lagAlertHours int
@description('Failed runs of one source one after another that fire the "failing source" alert.')
@minValue(1)
param failedRunsAlertCount int
@description('When the deployment ran (UTC, yyyy-MM-dd HH:mm:ssZ): the "no collection" alert stays quiet until noSuccessHours + 1 h after it.')
param deployedAt string
@description('Multi-tenant mode: the tenants are collected by collect_tenant, not the timer.')
param multiTenant bool
@description('Email that receives the alerts; empty: alerts show in the portal only.')
param alertEmail string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${functionAppName}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'calllogs'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [actionGroup.id]
// Single-tenant mode collects in the timer; multi-tenant mode in collect_tenant, one
// invocation per tenant (the timer only queues them, and succeeds when every tenant fails).
var collecting = multiTenant ? 'collect_tenant' : 'collect_call_logs'
var invocations = 'requests | where cloud_RoleName =~ \'${functionAppName}\' and operation_Name in~ (\'collect_call_logs\', \'collect_tenant\')'

// The run metrics land in customMetrics (name, value, customDimensions.source and, in
// multi-tenant mode, customDimensions.tenant), recorded once per lane and run. No
// cloud_RoleName filter: this Application Insights resource serves this app alone, and the
// metric exporter does not set the Functions host's role name. Each query returns one row per
// offending lane (its latest value in the window, which spans at least two hourly runs), split
// by source and tenant (empty in single-tenant mode) so the alert names them; the rule fires
// on any row.
var latestPerSource = 'summarize arg_max(timestamp, value) by source = tostring(customDimensions.source), tenant = tostring(customDimensions.tenant)'
var perSource = [
  {
    name: 'source'
    operator: 'Include'
    values: [
      '*'
    ]
  }
  {
    name: 'tenant'
    operator: 'Include'
    values: [
      '*'
    ]
  }
]
var watermarkLagLimit = lagMinutes * 60 + lagAlertHours * 3600
// The settled lag runs from the first unsettled midnight. Runs settle up to the midnight
// before now - max(lag, lateness), so the lag normally stays under max(lag, lateness) + 1 day
// (+ the hour between runs); a day still unsettled a day later is past + 2 days.
var settledLagLimit = max(lagMinutes * 60, latenessHours * 3600) + 2 * 86400
// Quiet until a fresh deployment's first hourly tick has had noSuccessHours to succeed.
var noSuccessGraceHours = noSuccessHours + 1

resource noSuccess 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'no-successful-collection-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: no successful collection for ${noSuccessHours} h'
    description: 'No collection succeeded in the window (collect_call_logs; in multi-tenant mode collect_tenant) (quiet for ${noSuccessGraceHours} h after a deployment): the archive is falling behind. Check the function is running, then run `python -m collector status`.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT${noSuccessHours}H'
    criteria: {
      allOf: [
        {
          // One row (n == 0) when nothing succeeded: summarize without `by` yields a row even
          // over no input. Not before the deployment is noSuccessGraceHours old.
          query: '${invocations} and operation_Name =~ \'${collecting}\' and success == true | summarize n = count() | where n == 0 and now() > todatetime(\'${deployedAt}\') + ${noSuccessGraceHours}h'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actions
    }
  }
}

resource repeatedFailures 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'repeated-collection-failures-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: ${failureCount}+ failed runs in 6 h'
    description: 'collect_call_logs or collect_tenant failed repeatedly (in multi-tenant mode one tenant that fails every time, e.g. without consent, keeps this firing until fixed), whatever the cause (also failures before any source ran, such as bad settings, which the per-source alert does not see); its log lines name the source, the Graph error and request-id.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT6H'
    criteria: {
      allOf: [
        {
          query: '${invocations} and success == false'
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: failureCount
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actions
    }
  }
}

resource watermarkLag 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'watermark-lag-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: a source\'s watermark lags more than ${lagMinutes} min + ${lagAlertHours} h'
    description: 'A source\'s watermark (collector.watermark.lag) is more than ${lagMinutes} min + ${lagAlertHours} h behind: its newest records are not archived. The alert names the source; run `python -m collector status` for its last run and error, and look for Graph throttling (429s) or failures in its log lines.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT3H'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == \'collector.watermark.lag\' | ${latestPerSource} | where value > ${watermarkLagLimit} | extend lagHours = round(value / 3600.0, 1)'
          timeAggregation: 'Count'
          dimensions: perSource
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actions
    }
  }
}

// Settling off (latenessHours 0) leaves nothing to watch: the collector refuses a daily report
// without a lateness.
resource daysNotSettled 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (latenessHours > 0) {
  name: 'day-not-settled-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: a day is not settled a day after its ${latenessHours} h lateness'
    description: 'A source\'s settled watermark (collector.settled.lag) is a day behind its lateness horizon: a day that should be final (or, for a daily report such as pstn_dialout_report, reported) has no manifest yet. The alert names the source; run `python -m collector status` (the settled watermark and the day strip) and check its runs\' settle windows in the log lines.'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT3H'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == \'collector.settled.lag\' | ${latestPerSource} | where value > ${settledLagLimit} | extend settledLagHours = round(value / 3600.0, 1)'
          timeAggregation: 'Count'
          dimensions: perSource
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actions
    }
  }
}

resource failingSource 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'source-failing-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: a source failed ${failedRunsAlertCount}+ runs in a row'
    description: 'A source\'s latest runs all failed (collector.failed_runs_in_a_row); it clears with the next successful run. The alert names the source; run `python -m collector status` for the last error, and see the run\'s log lines for the Graph error and request-id.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT3H'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == \'collector.failed_runs_in_a_row\' | ${latestPerSource} | where value >= ${failedRunsAlertCount}'
          timeAggregation: 'Count'
          dimensions: perSource
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actions
    }
  }
}
