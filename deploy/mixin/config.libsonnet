// Settings of the conn-hygiene mixin. Override any of them when importing the mixin:
//
//   (import 'conn-hygiene/deploy/mixin/mixin.libsonnet') + {
//     _config+:: { connHygieneSelector: 'job="checkout"', thresholds+: { timeWaitWarning: 80000 } },
//   }
//
// The defaults are the crate's own (conn_hygiene_census::findings::Thresholds); the rendered
// files in deploy/ use them, and deploy/prometheus/conn-hygiene.rules.test.yml tests them.
{
  _config+:: {
    // Label matchers added to every alert, recording rule and dashboard query, without braces,
    // e.g. 'job="checkout"' or 'job=~"checkout|billing",env="prod"'. Empty: every series of
    // these metric names.
    connHygieneSelector: '',

    // Alerts link here: runbookURLBase + alert name + '.md'. The default points at this
    // repository's docs/runbooks/; point it at your own copy if you keep one.
    runbookURLBase: 'https://github.com/conn-hygiene/conn-hygiene/blob/main/docs/runbooks/',

    thresholds: {
      // Host-wide TCP sockets by state (conn_hygiene_host_tcp_sockets).
      timeWaitWarning: 50000,
      timeWaitCritical: 100000,
      closeWaitHost: 1000,
      synRecv: 1000,
      finWait2: 500,
      // Share of ip_local_port_range left toward an upstream.
      portHeadroomWarning: 0.2,
      portHeadroomCritical: 0.05,
      // Open descriptors over the soft limit.
      descriptorUsage: 0.8,
    },

    // Dashboards.
    dashboardTags: ['conn-hygiene'],
    dashboardUIDPrefix: 'conn-hygiene',
    dashboardRefresh: '30s',
    dashboardTimeFrom: 'now-3h',
  },
}
