// Alerts on the timer's invocations in Application Insights: silence and repeated failures.
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
var invocations = 'requests | where cloud_RoleName =~ \'${functionAppName}\' and operation_Name =~ \'collect_call_logs\''

resource noSuccess 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'no-successful-collection-${functionAppName}'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call-log collector: no successful collection for ${noSuccessHours} h'
    description: 'No timer invocation of collect_call_logs succeeded in the window: the archive is falling behind.'
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
          query: '${invocations} and success == true'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
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
    description: 'collect_call_logs failed repeatedly; its log lines name the source, the Graph error and request-id.'
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
