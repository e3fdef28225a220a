// The service's own connections: per listener (accepted, live by state, closes by who closed
// first and why, requests per connection, queues), per upstream (pool, connects, closes, retries,
// timeouts), leases and leaks per pool, and socket options the kernel refused.
local g = import '../lib/grafana.libsonnet';
local util = import '../lib/util.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local base = [c.connHygieneSelector, 'job=~"$job"', 'instance=~"$instance"'],
    local sel(extra=[]) = util.matchers(base + extra),
    local listener = 'listener=~"$listener"',
    local upstream = 'upstream=~"$upstream"',
    local pool = 'pool=~"$pool"',
    // sum by (by) (rate(metric{selector}[$__rate_interval])), or increase().
    local sumRate(by, metric, extra=[], fn='rate') =
      'sum by (%s) (%s(%s%s[$__rate_interval]))' % [by, fn, metric, sel(extra)],
    local quantile(q, by, metric, extra) =
      'histogram_quantile(%g, sum by (le, %s) (rate(%s_bucket%s[$__rate_interval])))' % [q, by, metric, sel(extra)],
    local mean(by, metric, extra) =
      '%s / %s' % [sumRate(by, metric + '_sum', extra), sumRate(by, metric + '_count', extra)],
    // The recorded close rates already carry the configured selector and keep only job,
    // instance, the listener or upstream, and closer.
    local recorded(name, extra=[]) =
      name + util.matchers(['job=~"$job"', 'instance=~"$instance"'] + extra),
    local listenerCloses = 'listener_closer:conn_hygiene_server_connections_closed:rate5m',
    local upstreamCloses = 'upstream_closer:conn_hygiene_client_connections_closed:rate5m',
    local localShare(name, by, extra) =
      'sum by (%s) (%s) / sum by (%s) (%s)'
      % [by, recorded(name, extra + ['closer="local"']), by, recorded(name, extra)],
    // Any series of a listener, an upstream or a pool.
    local serviceSeries(extra) =
      util.matchers(['__name__=~"conn_hygiene_(server|client|leases?)_.+"', c.connHygieneSelector] + extra),

    'conn-hygiene-connections.json': g.dashboard(
      c,
      uid='connections',
      title='conn-hygiene / Listeners, upstreams and leases',
      description="The service's own connections: per listener and per upstream, opened, live, closed by who closed first and why, requests per connection; leases and leaks per pool; socket options the kernel refused. Alerts: deploy/prometheus/conn-hygiene.rules.yml; runbooks: docs/runbooks/.",
      variables=[
        g.queryVariable('job', 'Job', serviceSeries([]), includeAll=false),
        g.queryVariable('instance', 'Instance', serviceSeries(['job=~"$job"'])),
        g.queryVariable('listener', 'Listener', 'conn_hygiene_server_connections_opened_total' + sel()),
        g.queryVariable('upstream', 'Upstream', 'conn_hygiene_client_connects_total' + sel()),
        g.queryVariable('pool', 'Pool', 'conn_hygiene_leases_acquired_total' + sel()),
      ],
      sections=[
        {
          title: 'Listeners',
          panels: [
            g.timeseries(
              'Live connections by state',
              'Connections each hygienic listener holds, by state: new (no request yet), active, idle between requests, half_closed (the peer sent FIN), closing.',
              [g.target('sum by (instance, listener, state) (conn_hygiene_server_connections%s)' % sel([listener]), '{{instance}} {{listener}} {{state}}')],
              stack=true,
            ),
            g.timeseries(
              'Connections accepted per second',
              'Connections accepted by each listener. Compare with requests: many connections for few requests each means clients do not reuse them, and every close leaves a TIME_WAIT on the side that closed first.',
              [g.target(sumRate('instance, listener', 'conn_hygiene_server_connections_opened_total', [listener]), '{{instance}} {{listener}}')],
              unit='cps',
            ),
            g.timeseries(
              'Closes by who closed first',
              'Connections closed per second (5 minute rate), by who closed first: local (this service, which then keeps the TIME_WAIT), peer, reset, error, timeout.',
              [g.target('sum by (instance, listener, closer) (%s)' % recorded(listenerCloses, [listener]), '{{instance}} {{listener}} {{closer}}')],
              unit='cps',
            ),
            g.timeseries(
              'Share of closes this service started',
              'Closes where this service closed first, over all closes (5 minute rates): that share of connections leaves its TIME_WAIT here, on the server.',
              [g.target(localShare(listenerCloses, 'instance, listener', [listener]), '{{instance}} {{listener}}')],
              unit='percentunit',
            ),
            g.timeseries(
              'Closes by reason',
              'Connections closed per second by reason (idle_timeout, peer_closed, header_timeout, shutdown_deadline, ...).',
              [g.target(sumRate('instance, listener, reason', 'conn_hygiene_server_connections_closed_total', [listener]), '{{instance}} {{listener}} {{reason}}')],
              unit='cps',
            ),
            g.timeseries(
              'Requests per connection',
              'Requests served on a connection, recorded at its close: mean and median. Near 1, clients open a connection per request.',
              [
                g.target(mean('instance, listener', 'conn_hygiene_server_requests_per_connection', [listener]), '{{instance}} {{listener}} mean'),
                g.target(quantile(0.5, 'instance, listener', 'conn_hygiene_server_requests_per_connection', [listener]), '{{instance}} {{listener}} p50'),
              ],
            ),
            g.timeseries(
              'Connection lifetime',
              'From accept to close: median and 99th percentile.',
              [
                g.target(quantile(0.5, 'instance, listener', 'conn_hygiene_server_connection_duration_seconds', [listener]), '{{instance}} {{listener}} p50'),
                g.target(quantile(0.99, 'instance, listener', 'conn_hygiene_server_connection_duration_seconds', [listener]), '{{instance}} {{listener}} p99'),
              ],
              unit='s',
            ),
            g.timeseries(
              'Accept queue and its maximum',
              'Connections waiting in the accept queue, and its maximum, the effective backlog: min(requested backlog, net.core.somaxconn). A full queue drops connections (ListenOverflows).',
              [
                g.target('conn_hygiene_listener_accept_queue%s' % sel([listener]), '{{instance}} {{listener}} queued'),
                g.target('conn_hygiene_server_listen_backlog%s' % sel([listener, 'kind="effective"']), '{{instance}} {{listener}} maximum'),
              ],
            ),
            g.timeseries(
              "Sockets on the listener's address",
              'TIME_WAIT left by closes this server started, SYN_RECV (handshakes not completed), and CLOSE_WAIT the service holds, on each listener\'s address (`conn-hygiene who STATE` for the whole host).',
              [g.target('conn_hygiene_listener_tcp_sockets%s' % sel([listener]), '{{instance}} {{listener}} {{state}}')],
            ),
            g.timeseries(
              'Accept errors, shutdown cuts, half-closes in flight',
              'Per interval: accept() errors by kind (emfile, enfile and nomem page; connection is a peer that gave up in the queue), connections cut at the shutdown deadline, peers that half-closed while their request was in flight.',
              [
                g.target(sumRate('instance, listener, kind', 'conn_hygiene_server_accept_errors_total', [listener], 'increase'), '{{instance}} {{listener}} accept error {{kind}}'),
                g.target(sumRate('instance, listener', 'conn_hygiene_server_shutdown_cut_connections_total', [listener], 'increase'), '{{instance}} {{listener}} cut at shutdown'),
                g.target(sumRate('instance, listener', 'conn_hygiene_server_peer_half_closed_in_flight_total', [listener], 'increase'), '{{instance}} {{listener}} half-closed in flight'),
              ],
            ),
          ],
        },
        {
          title: 'Upstreams',
          panels: [
            g.timeseries(
              'Pooled connections and waiting requests',
              'Open connections toward each upstream, idle in the pool or leased to a request, and requests waiting for a slot (max_connections reached).',
              [
                g.target('sum by (instance, upstream, state) (conn_hygiene_client_connections%s)' % sel([upstream]), '{{instance}} {{upstream}} {{state}}'),
                g.target('sum by (instance, upstream) (conn_hygiene_client_pending_acquisitions%s)' % sel([upstream]), '{{instance}} {{upstream}} waiting'),
              ],
            ),
            g.timeseries(
              'Connects and failed connects per second',
              'Connections opened toward each upstream, and failed attempts by kind (refused, timeout, acquire_timeout, tls, other). Connects close to the request rate mean the pool is not reused.',
              [
                g.target(sumRate('instance, upstream', 'conn_hygiene_client_connects_total', [upstream]), '{{instance}} {{upstream}} connects'),
                g.target(sumRate('instance, upstream, kind', 'conn_hygiene_client_connect_errors_total', [upstream]), '{{instance}} {{upstream}} failed {{kind}}'),
              ],
              unit='cps',
            ),
            g.timeseries(
              'Closes by who closed first',
              'Outbound connections closed per second (5 minute rate), by who closed first: local (this client, which then keeps the TIME_WAIT and its local port), peer, reset, error, timeout.',
              [g.target('sum by (instance, upstream, closer) (%s)' % recorded(upstreamCloses, [upstream]), '{{instance}} {{upstream}} {{closer}}')],
              unit='cps',
            ),
            g.timeseries(
              'Share of closes this client started',
              'Closes where this client closed first, over all closes toward the upstream (5 minute rates): that share leaves TIME_WAIT here, holding a local port toward the upstream for 60 s.',
              [g.target(localShare(upstreamCloses, 'instance, upstream', [upstream]), '{{instance}} {{upstream}}')],
              unit='percentunit',
            ),
            g.timeseries(
              'Requests per connection',
              'Requests sent on a connection, recorded at its close: mean and median.',
              [
                g.target(mean('instance, upstream', 'conn_hygiene_client_requests_per_connection', [upstream]), '{{instance}} {{upstream}} mean'),
                g.target(quantile(0.5, 'instance, upstream', 'conn_hygiene_client_requests_per_connection', [upstream]), '{{instance}} {{upstream}} p50'),
              ],
            ),
            g.timeseries(
              'Retries and timeouts per second',
              'Replayable requests sent again after a reused connection turned out closed, and requests that timed out (once per request).',
              [
                g.target(sumRate('instance, upstream', 'conn_hygiene_client_retries_total', [upstream]), '{{instance}} {{upstream}} retries'),
                g.target(sumRate('instance, upstream', 'conn_hygiene_client_timeouts_total', [upstream]), '{{instance}} {{upstream}} timeouts'),
              ],
              unit='cps',
            ),
            g.timeseries(
              'Sockets toward the upstream',
              'TIME_WAIT left by closes this client started, and CLOSE_WAIT it holds (the upstream closed, the service did not: a leaked connection), toward each upstream\'s destinations.',
              [g.target('conn_hygiene_upstream_tcp_sockets%s' % sel([upstream]), '{{instance}} {{upstream}} {{state}}')],
            ) { width:: 24 },
          ],
        },
        {
          title: 'Leases and leaks',
          panels: [
            g.timeseries(
              'Leases outstanding',
              "Leases taken and not returned, per pool (an HTTP client's upstream is a pool too, kind upstream). A count that only grows is a leak.",
              [g.target('sum by (instance, pool, kind) (conn_hygiene_leases_outstanding%s)' % sel([pool]), '{{instance}} {{kind}} {{pool}}')],
            ),
            g.timeseries(
              'Leases taken per second',
              'Leases taken from each pool.',
              [g.target(sumRate('instance, pool, kind', 'conn_hygiene_leases_acquired_total', [pool]), '{{instance}} {{kind}} {{pool}}')],
              unit='cps',
            ),
            g.timeseries(
              'Leaks, slow waits, leaks returned, untracked',
              'Per interval: leases held past the leak threshold (the service log names the line that took each), requests that waited longer than it for their response (not leaks), leaked leases returned afterwards, leases past max_tracked (counted, not listed).',
              [
                g.target(sumRate('instance, pool, kind', 'conn_hygiene_lease_leaks_total', [pool], 'increase'), '{{instance}} {{kind}} {{pool}} leaked'),
                g.target(sumRate('instance, pool, kind', 'conn_hygiene_lease_slow_waits_total', [pool], 'increase'), '{{instance}} {{kind}} {{pool}} slow waits'),
                g.target(sumRate('instance, pool, kind', 'conn_hygiene_lease_leaks_returned_total', [pool], 'increase'), '{{instance}} {{kind}} {{pool}} leaks returned'),
                g.target(sumRate('instance, pool, kind', 'conn_hygiene_leases_untracked_total', [pool], 'increase'), '{{instance}} {{kind}} {{pool}} untracked'),
              ],
            ),
            g.timeseries(
              'Lease hold time',
              'How long leases were held, recorded when returned: median and 99th percentile.',
              [
                g.target(quantile(0.5, 'instance, pool, kind', 'conn_hygiene_lease_duration_seconds', [pool]), '{{instance}} {{kind}} {{pool}} p50'),
                g.target(quantile(0.99, 'instance, pool, kind', 'conn_hygiene_lease_duration_seconds', [pool]), '{{instance}} {{kind}} {{pool}} p99'),
              ],
              unit='s',
            ),
          ],
        },
        {
          title: 'Socket policy',
          panels: [
            g.timeseries(
              'Socket options the kernel refused',
              'Per interval, by option and side (listener, accepted, outbound): the socket works without it, but the policy is not fully in force. The series exists only once the kernel has refused an option.',
              [g.target(sumRate('instance, option, side', 'conn_hygiene_socket_policy_refusals_total', [], 'increase'), '{{instance}} {{option}} {{side}}')],
            ) { width:: 24 },
          ],
        },
      ],
    ),
  },
}
