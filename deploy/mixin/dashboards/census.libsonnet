// The host and what the census sees: TCP states, kernel counters, port headroom toward each
// upstream, findings, this process's connections by endpoint, and what sampling costs.
local g = import '../lib/grafana.libsonnet';
local util = import '../lib/util.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local t = c.thresholds,
    // The configured selector, the dashboard's job and instance, and extra matchers.
    local sel(extra=[]) =
      util.matchers([c.connHygieneSelector, 'job=~"$job"', 'instance=~"$instance"'] + extra),
    local rate(metric) = 'rate(%s%s[$__rate_interval])' % [metric, sel()],

    'conn-hygiene-census.json': g.dashboard(
      c,
      uid='census',
      title='conn-hygiene / Host and census',
      description='TCP states of the host, kernel counters, port headroom toward upstreams, the census findings, this process\'s connections by endpoint, and what sampling costs. Alerts: deploy/prometheus/conn-hygiene.rules.yml; runbooks: docs/runbooks/.',
      variables=[
        g.queryVariable('job', 'Job', 'conn_hygiene_census_walk_period_ticks' + util.matchers([c.connHygieneSelector]), includeAll=false),
        g.queryVariable('instance', 'Instance', 'conn_hygiene_census_walk_period_ticks' + util.matchers([c.connHygieneSelector, 'job=~"$job"'])),
      ],
      sections=[
        {
          title: 'Host TCP states',
          panels: [
            g.timeseries(
              'TCP sockets by state (host)',
              'Every TCP socket of the network namespace by state, as the census counts them (conn_hygiene_host_tcp_sockets; the same numbers as `conn-hygiene states`). Every instance on a host reports the same host-wide numbers.',
              [g.target('max by (instance, state) (conn_hygiene_host_tcp_sockets%s)' % sel(), '{{instance}} {{state}}')],
            ),
            g.stat(
              'States the alerts watch',
              'The largest count of each watched state across the selected instances, coloured at the alert thresholds: TIME_WAIT %s / %s, CLOSE_WAIT %s, SYN_RECV %s, FIN_WAIT2 %s.' % [util.count(t.timeWaitWarning), util.count(t.timeWaitCritical), util.count(t.closeWaitHost), util.count(t.synRecv), util.count(t.finWait2)],
              [g.target('max by (state) (conn_hygiene_host_tcp_sockets%s)' % sel(['state=~"TIME_WAIT|CLOSE_WAIT|SYN_RECV|FIN_WAIT2"']), '{{state}}')],
              overrides=[
                { name: 'TIME_WAIT', thresholds: [[t.timeWaitWarning, 'orange'], [t.timeWaitCritical, 'red']] },
                { name: 'CLOSE_WAIT', thresholds: [[t.closeWaitHost, 'red']] },
                { name: 'SYN_RECV', thresholds: [[t.synRecv, 'orange']] },
                { name: 'FIN_WAIT2', thresholds: [[t.finWait2, 'orange']] },
              ],
            ),
            g.timeseries(
              'TCP sockets this process holds',
              'TCP sockets the service holds a descriptor for, by state (conn_hygiene_process_tcp_sockets; `conn-hygiene states --pid PID`). CLOSE_WAIT here that keeps growing is a connection the service never closed.',
              [g.target('conn_hygiene_process_tcp_sockets%s' % sel(), '{{instance}} {{state}}')],
            ),
            g.timeseries(
              'Kernel TCP counters',
              'Per second: connections dropped because an accept queue was full (ListenOverflows, ListenDrops), TIME_WAIT sockets the kernel could not keep (TCPTimeWaitOverflow), resets sent, established connections reset, segments retransmitted.',
              [
                g.target(rate('conn_hygiene_host_tcp_listen_overflows_total'), '{{instance}} listen overflows'),
                g.target(rate('conn_hygiene_host_tcp_listen_drops_total'), '{{instance}} listen drops'),
                g.target(rate('conn_hygiene_host_tcp_time_wait_overflows_total'), '{{instance}} TIME_WAIT overflows'),
                g.target(rate('conn_hygiene_host_tcp_resets_sent_total'), '{{instance}} resets sent'),
                g.target(rate('conn_hygiene_host_tcp_established_resets_total'), '{{instance}} established resets'),
                g.target(rate('conn_hygiene_host_tcp_retransmitted_segments_total'), '{{instance}} retransmitted segments'),
              ],
              unit='cps',
            ),
            g.timeseries(
              'Descriptors and kernel tables in use',
              'Open descriptors over the process\'s soft limit (at 100%% accept() fails with EMFILE; the alert fires above %s), file handles over fs.file-max, tracked connections over nf_conntrack_max (only where conntrack is loaded).' % util.percent(t.descriptorUsage),
              [
                g.target('conn_hygiene_process_fd_usage_ratio%s' % sel(), '{{instance}} descriptors'),
                g.target('conn_hygiene_host_file_usage_ratio%s' % sel(), '{{instance}} file handles'),
                g.target('conn_hygiene_host_conntrack_usage_ratio%s' % sel(), '{{instance}} conntrack'),
              ],
              unit='percentunit',
              thresholds=[[t.descriptorUsage, 'orange']],
            ) { width:: 24 },
          ],
        },
        {
          title: 'Port headroom toward upstreams',
          panels: [
            g.timeseries(
              'Local ports left toward each upstream',
              'Share of ip_local_port_range still free toward the upstream\'s busiest destination and source address (TIME_WAIT included). Below %s the ports-low alert fires, below %s the exhausted one; then connects fail with EADDRNOTAVAIL.' % [util.percent(t.portHeadroomWarning), util.percent(t.portHeadroomCritical)],
              [g.target('conn_hygiene_upstream_port_headroom_ratio%s' % sel(), '{{instance}} {{upstream}}')],
              unit='percentunit',
              thresholds=[[t.portHeadroomCritical, 'orange'], [t.portHeadroomWarning, 'green']],
              base='red',
            ),
            g.timeseries(
              'Time until no local port is left',
              'At the current rate of ports taken toward the upstream, seconds until none is left. +Inf (not drawn) while the count is not growing.',
              [g.target('conn_hygiene_upstream_port_exhaustion_seconds%s' % sel(), '{{instance}} {{upstream}}')],
              unit='s',
            ),
          ],
        },
        {
          title: 'Findings',
          panels: [
            g.stateTimeline(
              'Findings by check',
              'The worst severity each census check found in each sample (conn_hygiene_census_check_severity), across the selected instances; `conn-hygiene doctor --pid PID` gives the value, threshold and recommendation of each.',
              [g.target('max by (check) (conn_hygiene_census_check_severity%s)' % sel(), '{{check}}')],
              [[-1, 'UNKNOWN', 'purple'], [0, 'OK', 'green'], [1, 'WARNING', 'orange'], [2, 'CRITICAL', 'red']],
            ) { width:: 16, height:: 14 },
            g.timeseries(
              'Census parts unavailable',
              '1 while a part of the census cannot be read (counters, walk, process, netlink): the alerts built on it are blind. netlink alone means the census fell back to /proc/net/tcp.',
              [g.target('max by (instance, part) (conn_hygiene_census_degraded%s)' % sel(), '{{instance}} {{part}}')],
            ) { width:: 8, height:: 14 },
          ],
        },
        {
          title: "This process's connections by endpoint",
          panels: [
            g.timeseries(
              'Connections by endpoint',
              'The service\'s own connections by endpoint group: an upstream or listener by name, the first ten other remote addresses, and other (`conn-hygiene peers --pid PID` lists every endpoint).',
              [g.target('conn_hygiene_peer_connections%s' % sel(), '{{instance}} {{kind}} {{endpoint}}')],
            ),
            g.timeseries(
              'CLOSE_WAIT by endpoint',
              'Of those, connections the peer closed and the service has not: which upstream or listener leaks.',
              [g.target('conn_hygiene_peer_close_wait%s' % sel(), '{{instance}} {{kind}} {{endpoint}}')],
            ),
            g.timeseries(
              'Without a keepalive timer',
              'Connections with no keepalive timer armed: a peer that vanishes holds them until something is written.',
              [g.target('conn_hygiene_peer_without_keepalive%s' % sel(), '{{instance}} {{kind}} {{endpoint}}')],
            ) { width:: 8 },
            g.timeseries(
              'Longest idle by endpoint',
              'The longest any connection of the group has sent and received nothing. Past 240 s common load balancers and NATs may have forgotten the flow.',
              [g.target('conn_hygiene_peer_idle_max_seconds%s' % sel(), '{{instance}} {{kind}} {{endpoint}}')],
              unit='s',
              thresholds=[[240, 'orange']],
            ) { width:: 8 },
            g.timeseries(
              'Retransmitted segments on open connections',
              'Segments retransmitted over the lives of the open connections of each group (falls when connections close).',
              [g.target('conn_hygiene_peer_retransmitted_segments%s' % sel(), '{{instance}} {{kind}} {{endpoint}}')],
            ) { width:: 8 },
          ],
        },
        {
          title: 'Sampler cost',
          panels: [
            g.timeseries(
              'Time one sample takes',
              'What the census costs, by tier: counters (every tick) and full (a walk of the socket table): median, 99th percentile and mean.',
              [
                g.target('histogram_quantile(0.5, sum by (le, instance, tier) (%s))' % rate('conn_hygiene_sampler_duration_seconds_bucket'), '{{instance}} {{tier}} p50'),
                g.target('histogram_quantile(0.99, sum by (le, instance, tier) (%s))' % rate('conn_hygiene_sampler_duration_seconds_bucket'), '{{instance}} {{tier}} p99'),
                g.target('sum by (instance, tier) (%s) / sum by (instance, tier) (%s)' % [rate('conn_hygiene_sampler_duration_seconds_sum'), rate('conn_hygiene_sampler_duration_seconds_count')], '{{instance}} {{tier}} mean'),
              ],
              unit='s',
            ),
            g.timeseries(
              'Ticks between full walks',
              'How many sampler ticks pass between two walks of the socket table, after the sampler stretched the period to bound its own cost.',
              [g.target('conn_hygiene_census_walk_period_ticks%s' % sel(), '{{instance}}')],
            ),
          ],
        },
      ],
    ),
  },
}
