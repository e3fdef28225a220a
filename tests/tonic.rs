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
    // One HTTP/2 connection carried all three calls, each tracked by the layer.
    let snap = registry.snapshot();
    assert_eq!(snap.connections.len(), 1, "{snap:?}");
    let conn = &snap.connections[0];
    assert_eq!(conn.requests, 3);
    assert_eq!(conn.in_flight, 0);
    assert_eq!(conn.state, ConnState::Idle);
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
