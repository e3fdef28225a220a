// The conn-hygiene monitoring mixin: alerts, recording rules and Grafana dashboards for services
// built with conn-hygiene, in plain jsonnet (no libraries; Debian's `jsonnet` renders it).
//
//   _config             selectors, thresholds, the runbook base URL (config.libsonnet)
//   prometheusAlerts    alerting rules, each with a runbook_url (alerts.libsonnet)
//   prometheusRules     recording rules the dashboards read (rules.libsonnet)
//   grafanaDashboards   dashboards by file name (dashboards/)
//
// scripts/render-mixin.sh renders it into deploy/prometheus/ and deploy/grafana/.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
