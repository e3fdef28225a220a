//! Every metric the crate emits, through the [`metrics`] facade.
//!
//! The library never installs a recorder; install one in your executable (for example
//! `metrics-exporter-prometheus`) and call [`describe`] once to publish units and help texts.
//! Labels come from closed sets: the listener name you chose, a connection state, who closed
//! first, a close reason, an option name. Never a peer address or anything a peer controls, so
//! the number of series stays bounded whatever peers do.

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
    /// Gauge `{listener, state}`: live connections by state.
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
}
