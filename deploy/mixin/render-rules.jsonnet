// deploy/prometheus/conn-hygiene.rules.yml: the mixin's alerts and recording rules with the
// default _config, as one rules file. Rendered by scripts/render-mixin.sh (jsonnet -S, which
// ends the output with a newline).
local mixin = import 'mixin.libsonnet';

|||
  # Prometheus rules for services built with conn-hygiene: alerts (each linking its runbook in
  # docs/runbooks/) and the recording rules the Grafana dashboards in deploy/grafana/ read.
  #
  # RENDERED from deploy/mixin/ (the conn-hygiene monitoring mixin) by scripts/render-mixin.sh,
  # with the mixin's default settings: edit the mixin and render again, not this file. The
  # thresholds are the crate's defaults (conn_hygiene_census::findings::Thresholds); what each
  # alert means and what to do is in deploy/mixin/alerts.libsonnet and docs/runbooks/.
  #
  # Load with `rule_files: [conn-hygiene.rules.yml]`. Unit tests: conn-hygiene.rules.test.yml
  # (`promtool test rules conn-hygiene.rules.test.yml`), run by tests/alert_rules.rs.
||| + std.manifestYamlDoc(
  { groups: mixin.prometheusAlerts.groups + mixin.prometheusRules.groups },
  indent_array_in_object=true,
  quote_keys=false,
)
