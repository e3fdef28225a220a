// Alerting rules. Two groups:
// - conn-hygiene-host: the field-practice thresholds on the host's TCP state counts, as the
//   connection census samples them (conn_hygiene_host_tcp_sockets{state}; the state label carries
//   the ss names: TIME_WAIT, CLOSE_WAIT, SYN_RECV, FIN_WAIT2, ...). Every instance on a host
//   reports the same host-wide numbers; aggregate by host if you run several.
// - conn-hygiene-service: what only the service itself can tell: CLOSE_WAIT sockets it holds,
//   leaked pool leases, ports left toward an upstream, accept errors, connections cut at
//   shutdown, socket options the kernel refused, descriptors, and whether the census itself can
//   see.
//
// Counters (*_total) are compared with increase() over a window, so a restart does not fire and
// an old event does not keep firing. Every alert links its runbook, docs/runbooks/<alert>.md.
local util = import 'lib/util.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local t = c.thresholds,
    // A metric with the configured selector and these extra matchers.
    local m(name, extra=[]) = name + util.matchers([c.connHygieneSelector] + extra),
    // Each alert gains its runbook link; descriptions are written as text blocks, one line
    // each, whose final newline is dropped.
    local withRunbook(rules) = [
      r {
        annotations+: {
          description: std.rstripChars(super.description, '\n'),
          runbook_url: c.runbookURLBase + r.alert + '.md',
        },
      }
      for r in rules
    ],
    local hostState(state) = m('conn_hygiene_host_tcp_sockets', ['state="%s"' % state]),

    groups+: [
      {
        name: 'conn-hygiene-host',
        rules: withRunbook([
          {
            alert: 'ConnHygieneTimeWaitHigh',
            expr: '%s > %d' % [hostState('TIME_WAIT'), t.timeWaitWarning],
            'for': '5m',
            labels: { severity: 'warning' },
            annotations: {
              summary: '{{ $value }} sockets in TIME_WAIT on {{ $labels.instance }}',
              description: |||
                More than %s TIME_WAIT sockets for 5 minutes. The side that closes first holds TIME_WAIT for 60 s: check conn_hygiene_server_connections_closed_total{closer="local"} and whether clients reuse connections (requests per connection near 1).
              ||| % util.count(t.timeWaitWarning),
            },
          },
          {
            alert: 'ConnHygieneTimeWaitCritical',
            expr: '%s > %d' % [hostState('TIME_WAIT'), t.timeWaitCritical],
            'for': '5m',
            labels: { severity: 'critical' },
            annotations: {
              summary: '{{ $value }} sockets in TIME_WAIT on {{ $labels.instance }}',
              description: |||
                More than %s TIME_WAIT sockets for 5 minutes: local ports toward busy destinations are running out. Reuse connections (keep-alive pools) rather than shortening TIME_WAIT.
              ||| % util.count(t.timeWaitCritical),
            },
          },
          {
            alert: 'ConnHygieneCloseWaitHigh',
            expr: '%s > %d' % [hostState('CLOSE_WAIT'), t.closeWaitHost],
            'for': '10m',
            labels: { severity: 'critical' },
            annotations: {
              summary: '{{ $value }} sockets in CLOSE_WAIT on {{ $labels.instance }}',
              description: |||
                More than %s CLOSE_WAIT sockets for 10 minutes: peers closed and a process on the host never closed its side. This is an application bug (a leaked connection), not a kernel setting; `conn-hygiene who CLOSE_WAIT` names the holder.
              ||| % util.count(t.closeWaitHost),
            },
          },
          {
            alert: 'ConnHygieneSynRecvSpike',
            expr: '%s > %d' % [hostState('SYN_RECV'), t.synRecv],
            'for': '2m',
            labels: { severity: 'warning' },
            annotations: {
              summary: '{{ $value }} half-open connections (SYN_RECV) on {{ $labels.instance }}',
              description: |||
                More than %s SYN_RECV sockets for 2 minutes: a possible SYN flood, or clients that cannot complete the handshake. Check net.ipv4.tcp_syncookies=1 and the listen backlog.
              ||| % util.count(t.synRecv),
            },
          },
          {
            alert: 'ConnHygieneFinWait2PileUp',
            expr: '%s > %d' % [hostState('FIN_WAIT2'), t.finWait2],
            'for': '10m',
            labels: { severity: 'warning' },
            annotations: {
              summary: '{{ $value }} sockets in FIN_WAIT2 on {{ $labels.instance }}',
              description: |||
                More than %s FIN_WAIT2 sockets for 10 minutes: we closed first and peers do not close their side. Check net.ipv4.tcp_fin_timeout and the peers.
              ||| % util.count(t.finWait2),
            },
          },
          {
            alert: 'ConnHygieneListenOverflows',
            expr: 'increase(%s[5m]) > 0' % m('conn_hygiene_host_tcp_listen_overflows_total'),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'Accept queue overflowed on {{ $labels.instance }}',
              description: |||
                The kernel dropped about {{ $value | humanize }} connections in 5 minutes because an accept queue was full (TcpExt ListenOverflows). The service accepts too slowly or the backlog is capped: see conn_hygiene_server_listen_backlog{kind="effective"} and net.core.somaxconn.
              |||,
            },
          },
        ]),
      },
      {
        name: 'conn-hygiene-service',
        rules: withRunbook([
          {
            local closeWait = m('conn_hygiene_process_tcp_sockets', ['state="CLOSE_WAIT"']),
            alert: 'ConnHygieneCloseWaitHeldByService',
            expr: '%s > 0 and deriv(%s[15m]) > 0' % [closeWait, closeWait],
            'for': '5m',
            labels: { severity: 'critical' },
            annotations: {
              summary: '{{ $labels.instance }} holds {{ $value }} CLOSE_WAIT sockets, and growing',
              description: |||
                This service holds CLOSE_WAIT sockets and their number has grown over 15 minutes: it does not close connections its peers closed (a response body never read or dropped, a pooled connection kept on an error path). conn_hygiene_listener_tcp_sockets and conn_hygiene_upstream_tcp_sockets {state="CLOSE_WAIT"} say which listener or upstream; the census log names the lease site.
              |||,
            },
          },
          {
            alert: 'ConnHygieneUpstreamPortsLow',
            expr: '%s < %g' % [m('conn_hygiene_upstream_port_headroom_ratio'), t.portHeadroomWarning],
            'for': '5m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'Upstream {{ $labels.upstream }}: {{ $value | humanizePercentage }} of local ports left',
              description: |||
                Less than %s of ip_local_port_range is left toward upstream {{ $labels.upstream }}: new connections will fail with EADDRNOTAVAIL. Reuse connections (larger idle pool, longer idle timeout), widen the port range, or spread over more source addresses.
              ||| % util.percent(t.portHeadroomWarning),
            },
          },
          {
            alert: 'ConnHygieneUpstreamPortsExhausted',
            expr: '%s < %g' % [m('conn_hygiene_upstream_port_headroom_ratio'), t.portHeadroomCritical],
            'for': '2m',
            labels: { severity: 'critical' },
            annotations: {
              summary: 'Upstream {{ $labels.upstream }}: {{ $value | humanizePercentage }} of local ports left',
              description: |||
                Less than %s of ip_local_port_range is left toward upstream {{ $labels.upstream }}: connection attempts are about to fail.
              ||| % util.percent(t.portHeadroomCritical),
            },
          },
          {
            alert: 'ConnHygieneLeaseLeak',
            expr: 'increase(%s[10m]) > 0' % m('conn_hygiene_lease_leaks_total'),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'Pool {{ $labels.pool }} on {{ $labels.instance }} leaked leases',
              description: |||
                About {{ $value | humanize }} leases of pool {{ $labels.pool }} were held past the leak threshold in the last 10 minutes. The service log has the site each leaked lease was taken at.
              |||,
            },
          },
          {
            alert: 'ConnHygieneShutdownCutConnections',
            expr: 'increase(%s[15m]) > 0' % m('conn_hygiene_server_shutdown_cut_connections_total'),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'Listener {{ $labels.listener }} on {{ $labels.instance }} cut connections at shutdown',
              description: |||
                About {{ $value | humanize }} connections were still active at the graceful-shutdown deadline and were cut: their requests failed. Lengthen the shutdown deadline or the orchestrator's grace period.
              |||,
            },
          },
          {
            alert: 'ConnHygieneAcceptErrors',
            expr: 'increase(%s[5m]) > 0' % m('conn_hygiene_server_accept_errors_total', ['kind=~"emfile|enfile|nomem"']),
            labels: { severity: 'critical' },
            annotations: {
              summary: 'Listener {{ $labels.listener }} on {{ $labels.instance }}: accept() failed with {{ $labels.kind }}',
              description: |||
                accept() failed about {{ $value | humanize }} times in 5 minutes for lack of descriptors or memory; the listener backs off while connections wait in the accept queue. Raise the descriptor limit (LimitNOFILE) or find what holds descriptors.
              |||,
            },
          },
          {
            alert: 'ConnHygieneDescriptorsHigh',
            expr: '%s > %g' % [m('conn_hygiene_process_fd_usage_ratio'), t.descriptorUsage],
            'for': '5m',
            labels: { severity: 'warning' },
            annotations: {
              summary: '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its descriptor limit',
              description: |||
                Open descriptors above %s of the soft limit for 5 minutes; at 100%% accept() fails with EMFILE.
              ||| % util.percent(t.descriptorUsage),
            },
          },
          {
            alert: 'ConnHygieneCensusDegraded',
            // netlink alone is not degraded sight: the census fell back to /proc, slower but
            // still counting.
            expr: '%s == 1' % m('conn_hygiene_census_degraded', ['part!="netlink"']),
            'for': '10m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'The connection census on {{ $labels.instance }} cannot read its {{ $labels.part }}',
              description: |||
                Part {{ $labels.part }} of the census has been unavailable for 10 minutes, so the alerts built on it are blind. The service log says what failed (a /proc mounted without access, a sandbox refusing netlink and /proc/net/tcp).
              |||,
            },
          },
          {
            // The refusal counter appears at the first refusal, so that first one is not seen
            // by increase(); a refused option is refused again on every accepted socket, and
            // those are.
            alert: 'ConnHygieneSocketPolicyRefused',
            expr: 'increase(%s[15m]) > 0' % m('conn_hygiene_socket_policy_refusals_total'),
            labels: { severity: 'info' },
            annotations: {
              summary: 'The kernel refused socket option {{ $labels.option }} on {{ $labels.instance }}',
              description: |||
                The kernel refused {{ $labels.option }} on {{ $labels.side }} sockets about {{ $value | humanize }} times in 15 minutes: the socket policy is not fully in force (a container without the capability, an old kernel, a buffer above the sysctl cap).
              |||,
            },
          },
        ]),
      },
    ],
  },
}
