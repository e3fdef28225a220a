//! A tonic (gRPC, HTTP/2) server served through the hygienic listener with
//! `serve_with_incoming`, its requests tracked by the connection layer.

use std::time::Duration;

use conn_hygiene::server::{CloseReason, ConnState, HygienicListener, TrackConnectionLayer};
use conn_hygiene_test_support::eventually;
use tonic_health::{
    pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest},
    server::health_reporter,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_serves_through_the_hygienic_listener() {
    let listener = HygienicListener::builder()
        .name("grpc")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let (reporter, health) = health_reporter();
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::Serving)
        .await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(TrackConnectionLayer::new())
            .add_service(health)
            .serve_with_incoming_shutdown(listener.into_incoming(), async {
                let _ = stop_rx.await;
            }),
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for _ in 0..3 {
        let res = client
            .check(HealthCheckRequest {
                service: "svc".into(),
            })
            .await
            .unwrap();
        assert_eq!(res.into_inner().status, ServingStatus::Serving as i32);
    }
    // One HTTP/2 connection carried all three calls, each tracked by the layer. The last
    // call's response ends on the server (its trailers written, the body dropped) a moment
    // after the client has it: wait for that.
    eventually(
        "the last call to end on the server",
        Duration::from_secs(10),
        || {
            registry
                .snapshot()
                .connections
                .first()
                .is_some_and(|c| c.in_flight == 0 && c.state == ConnState::Idle)
        },
    )
    .await;
    let snap = registry.snapshot();
    assert_eq!(snap.connections.len(), 1, "{snap:?}");
    let conn = &snap.connections[0];
    assert_eq!(conn.requests, 3);
    assert!(
        conn.bytes_in > 24,
        "the HTTP/2 preface and three calls were counted"
    );

    drop(client);
    eventually(
        "the server to see the client's close",
        Duration::from_secs(10),
        || registry.totals().closed >= 1,
    )
    .await;
    let t = registry.totals();
    assert_eq!(t.closed_for(CloseReason::PeerClosed), 1, "{t:?}");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// A tonic channel built on the client's connector: its HTTP/2 connection is the client's,
/// with the socket policy applied, tracked, and listed in the client's snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_on_the_clients_connector_is_tracked_by_the_client() {
    use conn_hygiene::client::{HygienicClient, UpstreamConfig};
    let listener = HygienicListener::builder()
        .name("grpc")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let (reporter, health) = health_reporter();
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::Serving)
        .await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(listener.into_incoming(), async {
                let _ = stop_rx.await;
            }),
    );
    let keepalive =
        conn_hygiene::policy::Keepalive::new(Duration::from_secs(17), Duration::from_secs(3), 4);
    let policy = conn_hygiene::policy::SocketPolicy::builder()
        .keepalive(keepalive)
        .user_timeout(Duration::from_secs(29))
        .build()
        .unwrap();
    let client = HygienicClient::builder()
        .policy(policy)
        .http2_only(true)
        .upstream(addr.to_string(), UpstreamConfig::new().name("health"))
        .build::<http_body_util::Empty<bytes::Bytes>>()
        .unwrap();
    let view = client.view();
    // The client's connector, with a look at each socket it hands tonic: its options as the
    // kernel holds them (getsockopt).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let connector = {
        let (connector, seen) = (view.connector(), seen.clone());
        tower::service_fn(move |uri: http::Uri| {
            let (mut connector, seen) = (connector.clone(), seen.clone());
            async move {
                use conn_hygiene::Transport;
                let io = tower::Service::call(&mut connector, uri).await?;
                let socket = io.inner().get_ref().socket();
                seen.lock().unwrap().push(
                    conn_hygiene::policy::EffectiveOptions::read(socket2::SockRef::from(socket))
                        .expect("getsockopt"),
                );
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(io)
            }
        })
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    let mut health_client = HealthClient::new(channel);
    for _ in 0..3 {
        let res = health_client
            .check(HealthCheckRequest {
                service: "svc".into(),
            })
            .await
            .unwrap();
        assert_eq!(res.into_inner().status, ServingStatus::Serving as i32);
    }
    let snaps = view.snapshot();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let up = &snaps[0];
    assert_eq!(up.name, "health");
    assert_eq!(
        up.open, 1,
        "one HTTP/2 connection carried the calls: {up:?}"
    );
    let conn = &up.connections[0];
    assert_eq!(conn.peer_addr, addr);
    assert_eq!(conn.requests, 3, "each call's stream counted: {conn:?}");
    // The socket policy was applied to it, as getsockopt reads it back.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one connection: {seen:?}");
    assert_eq!(seen[0].keepalive, Some(keepalive), "{seen:?}");
    assert_eq!(
        seen[0].user_timeout,
        Some(Duration::from_secs(29)),
        "{seen:?}"
    );
    assert!(seen[0].nodelay, "{seen:?}");
    // The census attributes the channel's connection to the client's upstream: a port in use
    // from this host toward the server's address.
    #[cfg(feature = "census")]
    {
        let sampler = conn_hygiene::census::Sampler::builder()
            .interval(Duration::from_secs(3600))
            .client(view.clone())
            .spawn()
            .expect("valid sampler settings");
        let snap = sampler.sample_now().await;
        let census = snap
            .upstreams
            .iter()
            .find(|u| u.name == "health")
            .unwrap_or_else(|| panic!("the upstream in the census: {:?}", snap.upstreams));
        assert!(
            census
                .ports
                .iter()
                .any(|p| p.destination == addr && p.used >= 1),
            "{census:?}"
        );
        sampler.stop();
    }
    // The server shuts down: its GOAWAY comes before any FIN, so the server closed first.
    let _ = stop_tx.send(());
    eventually(
        "the client to see the server's close",
        Duration::from_secs(10),
        || view.snapshot()[0].totals.closed >= 1,
    )
    .await;
    let t = view.snapshot()[0].totals.clone();
    assert_eq!(t.closed_by(conn_hygiene::client::Closer::Peer), 1, "{t:?}");
    drop(health_client);
    let _ = server.await;
}
