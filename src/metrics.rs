//! Every metric the crate emits, through the [`metrics`] facade. The reference table (name,
//! type, labels, meaning, when it is absent) is `docs/metrics.md`.
//!
//! The library never installs a recorder; install one in your executable (for example
//! `metrics-exporter-prometheus`) and call [`describe`] once to publish units and help texts.
//! Before or after building listeners, clients, lease trackers and samplers: the handles they
//! take while no recorder is installed keep what they count (a counter's increments, a gauge's
//! value, up to 1024 histogram samples each) and are bound to the recorder when the crate's
//! exporter installs itself, or when [`bind_deferred`] is called after installing another.
//! (Whether one is installed is read from the facade's current recorder; a recorder of your own
//! with no state at all, a zero-sized type, is taken for none.)
//! Labels come from closed sets: the listener name you chose, a connection state, who closed
//! first, a close reason, an option name. Never a peer address or anything a peer controls, so
//! the number of series stays bounded whatever peers do.

// With no part of the crate that owns collected gauges, nothing registers a collector.
#[cfg_attr(
    not(any(
        feature = "server",
        feature = "client",
        feature = "lease",
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx"
    )),
    allow(dead_code)
)]
mod collect;
// With no part of the crate that takes metric handles, nothing defers them.
#[cfg_attr(
    not(any(
        feature = "server",
        feature = "client",
        feature = "lease",
        feature = "census"
    )),
    allow(dead_code)
)]
mod deferred;

#[cfg(any(
    feature = "server",
    feature = "client",
    feature = "lease",
    feature = "deadpool",
    feature = "bb8",
    feature = "sqlx"
))]
pub(crate) use collect::{register as register_collector, Collect, CollectedGauge, Sums};
#[cfg_attr(
    not(any(
        feature = "server",
        feature = "client",
        feature = "lease",
        feature = "census"
    )),
    allow(unused_imports)
)]
pub(crate) use deferred::resolve;

/// Sets the gauges that are read from live state rather than moved on every change (a
/// listener's and an upstream's connections by state, leases outstanding, a pool's statistics)
/// to what they are now: owners of one name add up into one series, and the series of owners
/// gone since the last collection read zero. The crate's exporter does this
/// before every render and a running census sampler at every tick: call it before rendering
/// when you scrape a recorder of your own without either.
pub fn collect() {
    collect::collect_all();
}

/// Binds the metric handles taken while no recorder was installed (by listeners, clients,
/// lease trackers and samplers built first) to the recorder installed now, with what they
/// counted meanwhile. The crate's exporter does this when it installs itself: call it after
/// installing a recorder of your own. Does nothing when none is installed.
pub fn bind_deferred() {
    deferred::bind_all();
}

/// Metric names, each with the `conn_hygiene_` prefix and a Prometheus unit suffix.
pub mod names {
    /// Counter `{option, side}`: socket options the kernel refused.
    pub const SOCKET_POLICY_REFUSALS_TOTAL: &str = "conn_hygiene_socket_policy_refusals_total";
    /// Counter `{listener}`: connections accepted.
    pub const SERVER_CONNECTIONS_OPENED_TOTAL: &str =
        "conn_hygiene_server_connections_opened_total";
    /// Counter `{listener, closer, reason}`: connections closed, by who closed first and why.
    pub const SERVER_CONNECTIONS_CLOSED_TOTAL: &str =
        "conn_hygiene_server_connections_closed_total";
    /// Gauge `{listener, state}`: live connections by state, counted when metrics are
    /// collected (see [`collect`](super::collect)).
    pub const SERVER_CONNECTIONS: &str = "conn_hygiene_server_connections";
    /// Histogram `{listener}`: requests served per connection, recorded at close.
    pub const SERVER_REQUESTS_PER_CONNECTION: &str = "conn_hygiene_server_requests_per_connection";
    /// Histogram `{listener}`: connection lifetime, recorded at close.
    pub const SERVER_CONNECTION_DURATION_SECONDS: &str =
        "conn_hygiene_server_connection_duration_seconds";
    /// Counter `{listener, kind}`: accept errors (`emfile`, `enfile`, `nomem`, `connection`, `other`).
    pub const SERVER_ACCEPT_ERRORS_TOTAL: &str = "conn_hygiene_server_accept_errors_total";
    /// Counter `{listener}`: connections still active at the shutdown deadline, and cut.
    pub const SERVER_SHUTDOWN_CUT_TOTAL: &str =
        "conn_hygiene_server_shutdown_cut_connections_total";
    /// Counter `{listener}`: peers that half-closed while a request was in flight.
    pub const SERVER_HALF_CLOSED_IN_FLIGHT_TOTAL: &str =
        "conn_hygiene_server_peer_half_closed_in_flight_total";
    /// Gauge `{listener, kind}`: listen backlog, `requested` and `effective` (capped by somaxconn).
    pub const SERVER_LISTEN_BACKLOG: &str = "conn_hygiene_server_listen_backlog";

    /// Gauge `{upstream, state}`: open outbound connections by state (`idle`, `leased`),
    /// counted when metrics are collected (see [`collect`](super::collect)).
    pub const CLIENT_CONNECTIONS: &str = "conn_hygiene_client_connections";
    /// Gauge `{upstream}`: acquisitions waiting for a connection slot.
    pub const CLIENT_PENDING_ACQUISITIONS: &str = "conn_hygiene_client_pending_acquisitions";
    /// Counter `{upstream}`: connections opened.
    pub const CLIENT_CONNECTS_TOTAL: &str = "conn_hygiene_client_connects_total";
    /// Counter `{upstream, kind}`: failed connection attempts (`refused`, `timeout`,
    /// `acquire_timeout`, `other`).
    pub const CLIENT_CONNECT_ERRORS_TOTAL: &str = "conn_hygiene_client_connect_errors_total";
    /// Counter `{upstream, closer, reason}`: connections closed, by who closed first and why.
    pub const CLIENT_CONNECTIONS_CLOSED_TOTAL: &str =
        "conn_hygiene_client_connections_closed_total";
    /// Histogram `{upstream}`: requests served per connection, recorded at close.
    pub const CLIENT_REQUESTS_PER_CONNECTION: &str = "conn_hygiene_client_requests_per_connection";
    /// Counter `{upstream}`: replayable requests retried after a reused connection failed.
    pub const CLIENT_RETRIES_TOTAL: &str = "conn_hygiene_client_retries_total";
    /// Counter `{upstream}`: requests that timed out (response head or total), once each.
    pub const CLIENT_TIMEOUTS_TOTAL: &str = "conn_hygiene_client_timeouts_total";

    /// Gauge `{pool, kind}`: leases outstanding (`kind`: `pool`, or `upstream` for an HTTP
    /// client's upstream), counted when metrics are collected (see [`collect`](super::collect)).
    pub const LEASES_OUTSTANDING: &str = "conn_hygiene_leases_outstanding";
    /// Counter `{pool, kind}`: leases taken.
    pub const LEASES_ACQUIRED_TOTAL: &str = "conn_hygiene_leases_acquired_total";
    /// Histogram `{pool, kind}`: how long leases were held.
    pub const LEASE_DURATION_SECONDS: &str = "conn_hygiene_lease_duration_seconds";
    /// Counter `{pool, kind}`: leases reported as leaked (held longer than the leak threshold).
    pub const LEASE_LEAKS_TOTAL: &str = "conn_hygiene_lease_leaks_total";
    /// Counter `{pool, kind}`: leases that waited for their response longer than the leak threshold
    /// (a slow peer, not a leak: reported once each, apart from leaks).
    pub const LEASE_SLOW_WAITS_TOTAL: &str = "conn_hygiene_lease_slow_waits_total";
    /// Counter `{pool, kind}`: leaked leases that were eventually returned.
    pub const LEASE_LEAKS_RETURNED_TOTAL: &str = "conn_hygiene_lease_leaks_returned_total";
    /// Counter `{pool, kind}`: leases not listed because the tracker's bound was reached.
    pub const LEASES_UNTRACKED_TOTAL: &str = "conn_hygiene_leases_untracked_total";

    /// Gauge `{state}`: TCP sockets of the network namespace by state (all eleven, `ss` names).
    pub const HOST_TCP_SOCKETS: &str = "conn_hygiene_host_tcp_sockets";
    /// Gauge `{state}`: TCP sockets this process holds, by state (nine states: no descriptor
    /// holds a `TIME_WAIT` or `SYN_RECV` socket).
    pub const PROCESS_TCP_SOCKETS: &str = "conn_hygiene_process_tcp_sockets";
    /// Gauge `{listener, state}`: sockets on a listener's address the process holds no
    /// descriptor for or cannot close (`TIME_WAIT`: our server closed first; `SYN_RECV`;
    /// `CLOSE_WAIT` held by us).
    pub const LISTENER_TCP_SOCKETS: &str = "conn_hygiene_listener_tcp_sockets";
    /// Gauge `{listener}`: connections waiting in a listener's accept queue (its maximum is
    /// [`SERVER_LISTEN_BACKLOG`] `{kind="effective"}`).
    pub const LISTENER_ACCEPT_QUEUE: &str = "conn_hygiene_listener_accept_queue";
    /// Gauge `{upstream, state}`: sockets toward an upstream's destinations (`TIME_WAIT`: our
    /// client closed first; `CLOSE_WAIT` held by us).
    pub const UPSTREAM_TCP_SOCKETS: &str = "conn_hygiene_upstream_tcp_sockets";
    /// Gauge `{upstream}`: local ports left over the port range size, worst destination and
    /// source address.
    pub const UPSTREAM_PORT_HEADROOM_RATIO: &str = "conn_hygiene_upstream_port_headroom_ratio";
    /// Gauge `{upstream}`: seconds until no local port is left at the current rate (`+Inf` when
    /// not growing).
    pub const UPSTREAM_PORT_EXHAUSTION_SECONDS: &str =
        "conn_hygiene_upstream_port_exhaustion_seconds";
    /// Counter: `TcpExt ListenOverflows` of the network namespace.
    pub const HOST_TCP_LISTEN_OVERFLOWS_TOTAL: &str =
        "conn_hygiene_host_tcp_listen_overflows_total";
    /// Counter: `TcpExt ListenDrops`.
    pub const HOST_TCP_LISTEN_DROPS_TOTAL: &str = "conn_hygiene_host_tcp_listen_drops_total";
    /// Counter: `TcpExt TCPTimeWaitOverflow`.
    pub const HOST_TCP_TIME_WAIT_OVERFLOWS_TOTAL: &str =
        "conn_hygiene_host_tcp_time_wait_overflows_total";
    /// Counter: `Tcp OutRsts`, resets sent.
    pub const HOST_TCP_RESETS_SENT_TOTAL: &str = "conn_hygiene_host_tcp_resets_sent_total";
    /// Counter: `Tcp EstabResets`, connections reset in `ESTABLISHED` or `CLOSE_WAIT`.
    pub const HOST_TCP_ESTABLISHED_RESETS_TOTAL: &str =
        "conn_hygiene_host_tcp_established_resets_total";
    /// Counter: `Tcp RetransSegs`.
    pub const HOST_TCP_RETRANSMITTED_SEGMENTS_TOTAL: &str =
        "conn_hygiene_host_tcp_retransmitted_segments_total";
    /// Gauge: this process's open descriptors over its soft limit.
    pub const PROCESS_FD_USAGE_RATIO: &str = "conn_hygiene_process_fd_usage_ratio";
    /// Gauge: the host's allocated file handles over `fs.file-max`.
    pub const HOST_FILE_USAGE_RATIO: &str = "conn_hygiene_host_file_usage_ratio";
    /// Gauge: tracked connections over `nf_conntrack_max`.
    pub const HOST_CONNTRACK_USAGE_RATIO: &str = "conn_hygiene_host_conntrack_usage_ratio";
    /// Gauge `{check}`: the worst severity among a census check's findings in the latest
    /// sample: 0 OK, 1 WARNING, 2 CRITICAL, -1 when nothing it looked at could be measured.
    pub const CENSUS_CHECK_SEVERITY: &str = "conn_hygiene_census_check_severity";
    /// Histogram `{tier}`: what one census sample cost (`counters`, `full`).
    pub const SAMPLER_DURATION_SECONDS: &str = "conn_hygiene_sampler_duration_seconds";
    /// Gauge `{part}`: 1 while a part of the census is unavailable (`counters`, `walk`,
    /// `process`, `netlink`).
    pub const CENSUS_DEGRADED: &str = "conn_hygiene_census_degraded";
    /// Gauge: ticks between full walks, after adaptive stretching.
    pub const CENSUS_WALK_PERIOD_TICKS: &str = "conn_hygiene_census_walk_period_ticks";
    /// Gauge `{kind, endpoint}`: this process's connections toward an endpoint group (an
    /// upstream or a listener by name, a few remote endpoints by address, `other`).
    pub const PEER_CONNECTIONS: &str = "conn_hygiene_peer_connections";
    /// Gauge `{kind, endpoint}`: of those, in `CLOSE_WAIT` (the peer closed, we did not).
    pub const PEER_CLOSE_WAIT: &str = "conn_hygiene_peer_close_wait";
    /// Gauge `{kind, endpoint}`: of those, with no keepalive timer armed.
    pub const PEER_WITHOUT_KEEPALIVE: &str = "conn_hygiene_peer_without_keepalive";
    /// Gauge `{kind, endpoint}`: the longest time any of them has sent and received nothing.
    pub const PEER_IDLE_MAX_SECONDS: &str = "conn_hygiene_peer_idle_max_seconds";
    /// Gauge `{kind, endpoint}`: segments retransmitted over the open connections' lives.
    pub const PEER_RETRANSMITTED_SEGMENTS: &str = "conn_hygiene_peer_retransmitted_segments";
    /// Gauge `{pool}`: connections a pool holds (idle and checked out), by its own count, read
    /// when metrics are collected.
    pub const POOL_CONNECTIONS: &str = "conn_hygiene_pool_connections";
    /// Gauge `{pool}`: idle connections a pool holds, by its own count.
    pub const POOL_IDLE_CONNECTIONS: &str = "conn_hygiene_pool_idle_connections";
    /// Gauge `{pool}`: the most connections a pool may hold.
    pub const POOL_MAX_CONNECTIONS: &str = "conn_hygiene_pool_max_connections";
    /// Gauge `{pool}`: checkouts waiting for a connection.
    pub const POOL_WAITERS: &str = "conn_hygiene_pool_waiters";
    /// Counter `{pool}`: checkouts that timed out waiting for a connection.
    pub const POOL_GET_TIMEOUTS_TOTAL: &str = "conn_hygiene_pool_get_timeouts_total";
}

/// Publishes the unit and help text of every metric to the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        SOCKET_POLICY_REFUSALS_TOTAL,
        Unit::Count,
        "Socket options the kernel refused, by option and socket side."
    );
    describe_counter!(
        SERVER_CONNECTIONS_OPENED_TOTAL,
        Unit::Count,
        "Connections accepted by a hygienic listener."
    );
    describe_counter!(
        SERVER_CONNECTIONS_CLOSED_TOTAL,
        Unit::Count,
        "Connections closed, by who closed first (local, peer, reset, error, timeout) and reason."
    );
    describe_gauge!(
        SERVER_CONNECTIONS,
        Unit::Count,
        "Live connections by state (new, active, idle, half_closed, closing)."
    );
    describe_histogram!(
        SERVER_REQUESTS_PER_CONNECTION,
        Unit::Count,
        "Requests served on a connection, recorded when it closes."
    );
    describe_histogram!(
        SERVER_CONNECTION_DURATION_SECONDS,
        Unit::Seconds,
        "Connection lifetime from accept to close."
    );
    describe_counter!(
        SERVER_ACCEPT_ERRORS_TOTAL,
        Unit::Count,
        "Errors returned by accept(), by kind; the listener backs off and keeps serving."
    );
    describe_counter!(
        SERVER_SHUTDOWN_CUT_TOTAL,
        Unit::Count,
        "Connections still active at the graceful-shutdown deadline, and cut."
    );
    describe_counter!(
        SERVER_HALF_CLOSED_IN_FLIGHT_TOTAL,
        Unit::Count,
        "Peers that half-closed their side while a request was in flight."
    );
    describe_gauge!(
        SERVER_LISTEN_BACKLOG,
        Unit::Count,
        "Listen backlog: requested, and effective after the net.core.somaxconn cap."
    );
    describe_gauge!(
        CLIENT_CONNECTIONS,
        Unit::Count,
        "Open outbound connections by upstream and state (idle, leased)."
    );
    describe_gauge!(
        CLIENT_PENDING_ACQUISITIONS,
        Unit::Count,
        "Acquisitions waiting for a connection slot of an upstream."
    );
    describe_counter!(
        CLIENT_CONNECTS_TOTAL,
        Unit::Count,
        "Outbound connections opened."
    );
    describe_counter!(
        CLIENT_CONNECT_ERRORS_TOTAL,
        Unit::Count,
        "Failed outbound connection attempts, by kind."
    );
    describe_counter!(
        CLIENT_CONNECTIONS_CLOSED_TOTAL,
        Unit::Count,
        "Outbound connections closed, by who closed first and reason."
    );
    describe_histogram!(
        CLIENT_REQUESTS_PER_CONNECTION,
        Unit::Count,
        "Requests served on an outbound connection, recorded when it closes."
    );
    describe_counter!(
        CLIENT_RETRIES_TOTAL,
        Unit::Count,
        "Replayable requests retried once after a reused connection failed before any response byte."
    );
    describe_counter!(
        CLIENT_TIMEOUTS_TOTAL,
        Unit::Count,
        "Requests that timed out waiting for the response head or within their total timeout."
    );
    describe_gauge!(
        LEASES_OUTSTANDING,
        Unit::Count,
        "Leases outstanding, by pool."
    );
    describe_counter!(LEASES_ACQUIRED_TOTAL, Unit::Count, "Leases taken, by pool.");
    describe_histogram!(
        LEASE_DURATION_SECONDS,
        Unit::Seconds,
        "How long leases were held before being returned."
    );
    describe_counter!(
        LEASE_LEAKS_TOTAL,
        Unit::Count,
        "Leases held longer than the leak threshold (reported once each)."
    );
    describe_counter!(
        LEASE_SLOW_WAITS_TOTAL,
        Unit::Count,
        "Leases that waited for their response longer than the leak threshold (reported once \
         each; a wait is never a leak)."
    );
    describe_counter!(
        LEASE_LEAKS_RETURNED_TOTAL,
        Unit::Count,
        "Leases reported as leaked that were eventually returned."
    );
    describe_counter!(
        LEASES_UNTRACKED_TOTAL,
        Unit::Count,
        "Leases not listed in snapshots because the tracker's bound was reached."
    );
    describe_gauge!(
        HOST_TCP_SOCKETS,
        Unit::Count,
        "TCP sockets of the network namespace by state."
    );
    describe_gauge!(
        PROCESS_TCP_SOCKETS,
        Unit::Count,
        "TCP sockets this process holds a descriptor for, by state."
    );
    describe_gauge!(
        LISTENER_TCP_SOCKETS,
        Unit::Count,
        "Sockets on a listener's address: TIME_WAIT (server closed first), SYN_RECV, CLOSE_WAIT held by us."
    );
    describe_gauge!(
        LISTENER_ACCEPT_QUEUE,
        Unit::Count,
        "Connections waiting in a listener's accept queue (its maximum: conn_hygiene_server_listen_backlog{kind=\"effective\"})."
    );
    describe_gauge!(
        UPSTREAM_TCP_SOCKETS,
        Unit::Count,
        "Sockets toward an upstream: TIME_WAIT (client closed first), CLOSE_WAIT held by us."
    );
    describe_gauge!(
        UPSTREAM_PORT_HEADROOM_RATIO,
        "Local ports left toward an upstream over the port range size, worst destination and source."
    );
    describe_gauge!(
        UPSTREAM_PORT_EXHAUSTION_SECONDS,
        Unit::Seconds,
        "Time until no local port is left toward an upstream at the current rate (+Inf when not growing)."
    );
    describe_counter!(
        HOST_TCP_LISTEN_OVERFLOWS_TOTAL,
        Unit::Count,
        "Completed connections dropped because an accept queue was full (TcpExt ListenOverflows)."
    );
    describe_counter!(
        HOST_TCP_LISTEN_DROPS_TOTAL,
        Unit::Count,
        "Connection requests dropped by listeners (TcpExt ListenDrops)."
    );
    describe_counter!(
        HOST_TCP_TIME_WAIT_OVERFLOWS_TOTAL,
        Unit::Count,
        "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached."
    );
    describe_counter!(
        HOST_TCP_RESETS_SENT_TOTAL,
        Unit::Count,
        "TCP resets sent (Tcp OutRsts)."
    );
    describe_counter!(
        HOST_TCP_ESTABLISHED_RESETS_TOTAL,
        Unit::Count,
        "Connections reset in ESTABLISHED or CLOSE_WAIT (Tcp EstabResets)."
    );
    describe_counter!(
        HOST_TCP_RETRANSMITTED_SEGMENTS_TOTAL,
        Unit::Count,
        "TCP segments retransmitted (Tcp RetransSegs)."
    );
    describe_gauge!(
        PROCESS_FD_USAGE_RATIO,
        "This process's open descriptors over its soft RLIMIT_NOFILE."
    );
    describe_gauge!(
        HOST_FILE_USAGE_RATIO,
        "Allocated file handles over fs.file-max."
    );
    describe_gauge!(
        HOST_CONNTRACK_USAGE_RATIO,
        "Tracked connections over nf_conntrack_max."
    );
    describe_gauge!(
        CENSUS_CHECK_SEVERITY,
        "Worst severity of a census check's findings in the latest sample: 0 OK, 1 WARNING, \
         2 CRITICAL, -1 UNKNOWN (nothing it looked at could be measured)."
    );
    describe_histogram!(
        SAMPLER_DURATION_SECONDS,
        Unit::Seconds,
        "Cost of one census sample, by tier (counters, full walk)."
    );
    describe_gauge!(
        CENSUS_DEGRADED,
        "1 while a part of the census is unavailable (counters, walk, process, netlink)."
    );
    describe_gauge!(
        CENSUS_WALK_PERIOD_TICKS,
        Unit::Count,
        "Sampler ticks between full socket walks, after adaptive stretching."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Connections a tracked pool holds, idle and checked out, by the pool's own count."
    );
    describe_gauge!(
        POOL_IDLE_CONNECTIONS,
        Unit::Count,
        "Idle connections a tracked pool holds, by the pool's own count."
    );
    describe_gauge!(
        POOL_MAX_CONNECTIONS,
        Unit::Count,
        "The most connections a tracked pool may hold."
    );
    describe_gauge!(
        POOL_WAITERS,
        Unit::Count,
        "Checkouts of a tracked pool waiting for a connection."
    );
    describe_counter!(
        POOL_GET_TIMEOUTS_TOTAL,
        Unit::Count,
        "Checkouts of a tracked pool that timed out waiting for a connection."
    );
}
