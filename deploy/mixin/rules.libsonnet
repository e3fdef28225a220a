// Recording rules, only where they save a repeated query: the close rates by who closed first
// are each read by two dashboard panels (closes by closer, and the share we closed first, the
// side that keeps TIME_WAIT). Everything else is queried once, straight from the metrics.
local util = import 'lib/util.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    local m(name) = name + util.matchers([c.connHygieneSelector]),

    groups+: [
      {
        name: 'conn-hygiene-recording',
        rules: [
          {
            record: 'listener_closer:conn_hygiene_server_connections_closed:rate5m',
            expr: 'sum by (job, instance, listener, closer) (rate(%s[5m]))'
                  % m('conn_hygiene_server_connections_closed_total'),
          },
          {
            record: 'upstream_closer:conn_hygiene_client_connections_closed:rate5m',
            expr: 'sum by (job, instance, upstream, closer) (rate(%s[5m]))'
                  % m('conn_hygiene_client_connections_closed_total'),
          },
        ],
      },
    ],
  },
}
