//! The sampler's view of this process's own connections by endpoint, with the kernel's detail:
//! the clients of our listener grouped under its name, the client's upstream under its name, a
//! connection no wrapper made under its address; which have a keepalive timer armed, as `ss`
//! would show; and the `keepalive_missing` finding naming the endpoint without one.
#![cfg(all(feature = "census", feature = "axum", feature = "client"))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use conn_hygiene::{
    census::{Check, PeerKind, Sampler, Severity, TcpState},
    client::{HygienicClient, UpstreamConfig},
    server::HygienicListener,
};
use http_body_util::{BodyExt, Empty};
use support::{start, Mode};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_connections_by_endpoint_with_their_keepalive_timers() {
    let server = start(Mode::Axum, HygienicListener::builder().name("api")).await;
    // The pooled client, toward our own server: an upstream named "self".
    let client = HygienicClient::builder()
        .upstream(
            server.addr.to_string(),
            UpstreamConfig::new().name("self").max_idle(4),
        )
        .build::<Empty<Bytes>>()
        .unwrap();
    let res = tokio::time::timeout(LIMIT, client.get(server.url("/").parse().unwrap()))
        .await
        .expect("response in time")
        .expect("response");
    res.into_body().collect().await.unwrap();
    // A connection no wrapper made, toward a listener of no one's: no keepalive.
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bare = std::net::TcpStream::connect(stranger.local_addr().unwrap()).unwrap();
    let (accepted, _) = stranger.accept().unwrap();

    let sampler = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .listener(&server.registry)
        .client(client.view())
        .spawn()
        .expect("sampler");
    let snap = sampler.sample_now().await;
    let group = |kind: PeerKind, endpoint: &str| {
        snap.peers
            .iter()
            .find(|p| p.kind == kind && p.endpoint == endpoint)
            .unwrap_or_else(|| panic!("{kind:?} {endpoint} in {:#?}", snap.peers))
            .clone()
    };
    let upstream = group(PeerKind::Upstream, "self");
    assert_eq!(upstream.states[TcpState::Established], 1, "{upstream:?}");
    assert_eq!(
        upstream.without_keepalive, 0,
        "the policy arms keepalive: {upstream:?}"
    );
    let listener = group(PeerKind::Listener, "api");
    assert_eq!(listener.states[TcpState::Established], 1, "{listener:?}");
    assert_eq!(listener.without_keepalive, 0, "{listener:?}");
    assert!(
        listener.idle_max.is_some(),
        "tcp_info came with the walk: {listener:?}"
    );
    let remote = stranger.local_addr().unwrap();
    let stray = group(PeerKind::Remote, &remote.to_string());
    assert_eq!(stray.states[TcpState::Established], 1, "{stray:?}");
    assert_eq!(stray.without_keepalive, 1, "{stray:?}");

    // The finding names the endpoint without keepalive, and none of ours.
    let missing: Vec<_> = snap.report.of(Check::KeepaliveMissing).collect();
    let named = missing
        .iter()
        .find(|f| f.subject.as_deref() == Some(remote.to_string().as_str()))
        .unwrap_or_else(|| panic!("a finding about {remote}: {missing:?}"));
    assert_eq!(named.severity, Severity::Warning);
    let ours = server.addr.to_string();
    assert!(
        missing
            .iter()
            .all(|f| f.subject.as_deref() != Some(ours.as_str())),
        "our own upstream has keepalive: {missing:?}"
    );
    sampler.stop();
    drop((bare, accepted, client));
    server.stop().await;
}
