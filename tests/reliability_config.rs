//! Every configuration value is validated: each builder, given a bad value for each of its
//! settings, returns a typed error whose message names the setting and the value.
#![cfg(all(
    feature = "server",
    feature = "client",
    feature = "exporter",
    feature = "census"
))]

use std::time::Duration;

use bytes::Bytes;
use conn_hygiene::census::{ThresholdError, Thresholds};
use conn_hygiene::{
    client::{ClientConfigError, HygienicClient, UpstreamConfig},
    exporter::{ExporterBuilder, ExporterError, Matcher},
    lease::{LeaseConfigError, LeaseTracker},
    policy::{Keepalive, Linger, ListenerConfigError, PolicyError, SocketPolicy},
    server::{ConnectionLimits, HygienicListener, LimitsError},
};
use http_body_util::Empty;

/// Asserts that `err` is the expected variant and that its message carries every fragment
/// (the setting's name, the bad value).
fn check<E: std::fmt::Display + std::fmt::Debug + PartialEq>(
    err: E,
    expected: E,
    fragments: &[&str],
) {
    assert_eq!(err, expected);
    let msg = err.to_string();
    for f in fragments {
        assert!(msg.contains(f), "{msg:?} should name {f:?}");
    }
    // One shape for every builder: "invalid <what>: <setting> = <value>: expected <...>".
    assert!(
        msg.starts_with("invalid ") && msg.contains(" = ") && msg.contains(": expected "),
        "{msg:?} is not in the shape `invalid <what>: <setting> = <value>: expected <...>`"
    );
}

fn ka(idle: Duration, interval: Duration, probes: u32) -> Option<Keepalive> {
    Some(Keepalive::new(idle, interval, probes))
}

#[test]
fn socket_policy_names_each_bad_setting_and_value() {
    let s = Duration::from_secs;
    let b = SocketPolicy::builder;
    let cases: Vec<(_, PolicyError, &[&str])> = vec![
        (
            b().keepalive(ka(Duration::from_millis(500), s(1), 3)),
            PolicyError::KeepaliveIdle {
                value: Duration::from_millis(500),
            },
            &["keepalive.idle", "500ms"],
        ),
        (
            b().keepalive(ka(s(10), s(40_000), 3)),
            PolicyError::KeepaliveInterval { value: s(40_000) },
            &["keepalive.interval", "40000s"],
        ),
        (
            b().keepalive(ka(s(10), s(1), 128)).user_timeout(None),
            PolicyError::KeepaliveProbes { value: 128 },
            &["keepalive.probes", "128"],
        ),
        (
            b().keepalive(None).user_timeout(Some(s(30 * 24 * 3600))),
            PolicyError::UserTimeout {
                value: s(30 * 24 * 3600),
                probing_window: None,
            },
            &["user_timeout", "2592000s"],
        ),
        (
            b().keepalive(ka(s(10), s(5), 2)).user_timeout(Some(s(19))),
            PolicyError::UserTimeout {
                value: s(19),
                probing_window: Some(s(20)),
            },
            &["user_timeout", "19s", "20s"],
        ),
        (
            b().linger(Linger::Graceful(s(301))),
            PolicyError::LingerTimeout { value: s(301) },
            &["linger", "301s"],
        ),
        (
            b().recv_buffer_size(Some(512)),
            PolicyError::RecvBufferSize { value: 512 },
            &["recv_buffer_size", "512"],
        ),
        (
            b().send_buffer_size(Some(0)),
            PolicyError::SendBufferSize { value: 0 },
            &["send_buffer_size", "0"],
        ),
        (
            b().backlog(70_000),
            PolicyError::Backlog { value: 70_000 },
            &["backlog", "70000"],
        ),
    ];
    for (builder, expected, fragments) in cases {
        check(builder.build().unwrap_err(), expected, fragments);
    }
}

#[test]
fn connection_limits_name_each_bad_setting_and_value() {
    let tiny = Duration::from_micros(999);
    let b = ConnectionLimits::builder;
    let cases: Vec<(_, LimitsError, &[&str])> = vec![
        (
            b().idle_timeout(Some(tiny)),
            LimitsError::IdleTimeout { value: tiny },
            &["idle_timeout", "999µs"],
        ),
        (
            b().header_timeout(Some(Duration::ZERO)),
            LimitsError::HeaderTimeout {
                value: Duration::ZERO,
            },
            &["header_timeout", "0ns"],
        ),
        (
            b().max_age(Some(tiny)),
            LimitsError::MaxAge { value: tiny },
            &["max_age", "999µs"],
        ),
        (
            b().max_requests(Some(0)),
            LimitsError::MaxRequests { value: 0 },
            &["max_requests", "0"],
        ),
        (
            b().max_tracked(0),
            LimitsError::MaxTracked { value: 0 },
            &["max_tracked", "0"],
        ),
    ];
    for (builder, expected, fragments) in cases {
        check(builder.build().unwrap_err(), expected, fragments);
    }
}

#[tokio::test]
async fn listener_refuses_a_zero_connection_cap() {
    // A cap of zero would accept nothing, ever: refused when binding, naming the setting.
    let err = HygienicListener::builder()
        .max_connections(Some(0))
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    let expected = ListenerConfigError::MaxConnections { value: 0 };
    assert_eq!(err.invalid_setting(), Some(&expected));
    check(
        err.to_string(),
        expected.to_string(),
        &["max_connections = 0"],
    );
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = HygienicListener::builder()
        .max_connections(Some(0))
        .from_std(std)
        .unwrap_err();
    assert_eq!(err.invalid_setting(), Some(&expected));
}

#[test]
fn client_names_each_bad_setting_and_value() {
    let tiny = Duration::from_micros(10);
    let u = UpstreamConfig::new;
    let cases: Vec<(_, ClientConfigError, &[&str])> = vec![
        (
            u().idle_timeout(tiny),
            ClientConfigError::IdleTimeout { value: tiny },
            &["idle_timeout", "10µs"],
        ),
        (
            u().server_keep_alive(Some(tiny)),
            ClientConfigError::ServerKeepAlive { value: tiny },
            &["server_keep_alive", "10µs"],
        ),
        (
            u().max_connections(Some(0)),
            ClientConfigError::MaxConnections { value: 0 },
            &["max_connections", "0"],
        ),
        (
            u().acquire_timeout(Duration::ZERO),
            ClientConfigError::AcquireTimeout {
                value: Duration::ZERO,
            },
            &["acquire_timeout", "0ns"],
        ),
        (
            u().connect_timeout(Some(tiny)),
            ClientConfigError::ConnectTimeout { value: tiny },
            &["connect_timeout", "10µs"],
        ),
        (
            u().max_age(Some(tiny)),
            ClientConfigError::MaxAge { value: tiny },
            &["max_age", "10µs"],
        ),
        (
            u().max_requests(Some(0)),
            ClientConfigError::MaxRequests { value: 0 },
            &["max_requests", "0"],
        ),
        (
            u().leak_threshold(Some(tiny)),
            ClientConfigError::LeakThreshold { value: tiny },
            &["leak_threshold", "10µs"],
        ),
    ];
    for (config, expected, fragments) in cases {
        // As the default and as one upstream's settings.
        let err = HygienicClient::builder()
            .default_upstream(config.clone())
            .build::<Empty<Bytes>>()
            .unwrap_err();
        check(err, expected.clone(), fragments);
        let err = HygienicClient::builder()
            .upstream("127.0.0.1:80", config)
            .build::<Empty<Bytes>>()
            .unwrap_err();
        check(err, expected, fragments);
    }
    let err = HygienicClient::builder()
        .upstream("no-port", UpstreamConfig::new())
        .build::<Empty<Bytes>>()
        .unwrap_err();
    check(
        err,
        ClientConfigError::Upstream {
            value: "no-port".into(),
        },
        &["upstream", "no-port"],
    );
}

#[test]
fn lease_tracker_names_each_bad_setting_and_value() {
    let err = LeaseTracker::builder("pool")
        .leak_threshold(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    check(
        err,
        LeaseConfigError::LeakThreshold {
            value: Duration::ZERO,
        },
        &["leak_threshold", "0ns", "at least 1ms"],
    );
    // The same bound as a client upstream's leak threshold: below 1 ms is refused.
    let err = LeaseTracker::builder("pool")
        .leak_threshold(Some(Duration::from_micros(999)))
        .build()
        .unwrap_err();
    check(
        err,
        LeaseConfigError::LeakThreshold {
            value: Duration::from_micros(999),
        },
        &["leak_threshold", "999µs"],
    );
    let err = LeaseTracker::builder("pool")
        .max_tracked(0)
        .build()
        .unwrap_err();
    check(
        err,
        LeaseConfigError::MaxTracked { value: 0 },
        &["max_tracked", "0"],
    );
}

#[test]
fn census_thresholds_name_each_bad_setting_and_value() {
    let b = Thresholds::builder;
    let cases: Vec<(_, ThresholdError, &[&str])> = vec![
        (
            b().time_wait(200, 100),
            ThresholdError::TimeWait {
                warning: 200,
                critical: 100,
            },
            &["time_wait", "200", "100"],
        ),
        (
            b().port_headroom_percent(5.0, 20.0),
            ThresholdError::PortHeadroom {
                warning: 5.0,
                critical: 20.0,
            },
            &["port_headroom_percent", "5", "20"],
        ),
        (
            b().fd_usage_percent(80.0, 150.0),
            ThresholdError::FdUsage {
                warning: 80.0,
                critical: 150.0,
            },
            &["fd_usage_percent", "150"],
        ),
        (
            b().conntrack_percent(-1.0, 95.0),
            ThresholdError::Conntrack {
                warning: -1.0,
                critical: 95.0,
            },
            &["conntrack_percent", "-1"],
        ),
        (
            b().min_port_range_width(70_000),
            ThresholdError::MinPortRangeWidth(70_000),
            &["min_port_range_width", "70000"],
        ),
        (
            b().close_wait_age_secs(600, 60),
            ThresholdError::CloseWaitAge {
                warning: 600,
                critical: 60,
            },
            &["close_wait_age_secs", "600", "60"],
        ),
    ];
    for (builder, expected, fragments) in cases {
        check(builder.build().unwrap_err(), expected, fragments);
    }
}

#[test]
fn exporter_names_each_bad_setting_and_value() {
    let m = || Matcher::Full("conn_hygiene_x_seconds".into());
    let err = ExporterBuilder::default()
        .buckets(m(), &[])
        .build()
        .unwrap_err();
    check(
        err,
        ExporterError::EmptyBuckets { matcher: m() },
        &[
            "buckets",
            "conn_hygiene_x_seconds",
            "= []",
            "at least one bound",
        ],
    );
    let err = ExporterBuilder::default()
        .buckets(m(), &[1.0, 0.5])
        .build()
        .unwrap_err();
    check(
        err,
        ExporterError::InvalidBuckets {
            matcher: m(),
            bounds: vec![1.0, 0.5],
        },
        &["buckets", "conn_hygiene_x_seconds", "[1.0, 0.5]"],
    );
    let err = ExporterBuilder::default()
        .buckets(m(), &[0.1, f64::NAN])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    let err = ExporterBuilder::default()
        .upkeep_interval(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    check(
        err,
        ExporterError::ZeroUpkeepInterval,
        &["upkeep_interval", "0s"],
    );
}

#[test]
fn sampler_names_each_bad_setting_and_value() {
    use conn_hygiene::census::{Sampler, SamplerConfigError};

    let err = Sampler::builder()
        .interval(Duration::from_micros(500))
        .spawn()
        .unwrap_err();
    check(
        err,
        SamplerConfigError::Interval {
            value: Duration::from_micros(500),
        },
        &["interval", "500µs", "at least 1ms"],
    );
    let err = Sampler::builder().walk_every(0).spawn().unwrap_err();
    check(
        err,
        SamplerConfigError::WalkEvery { value: 0 },
        &["walk_every", "0", "at least 1"],
    );
}
