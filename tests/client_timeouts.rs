//! Client timeouts: a response head that does not come within the response head timeout, a
//! body still streaming when the total timeout passes, and a per-request override. Each
//! request that times out fails once with its own predicate, is counted once, and leaves no
//! lease and no leak behind. Real sockets, paused time.
#![cfg(all(feature = "client", feature = "axum"))]

mod support;

use std::time::Duration;

use axum::{body::Body, routing::get, Router};
use bytes::Bytes;
use conn_hygiene::client::{HygienicClient, Timeouts, UpstreamConfig};
use http_body_util::{BodyExt, Empty};
use support::*;

type Client = HygienicClient<Empty<Bytes>>;

fn client(config: UpstreamConfig) -> Client {
    HygienicClient::builder()
        .default_upstream(config)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_times_out_every_request_with_no_lease_left_and_no_leak() {
    let server = start(
        Mode::Axum,
        conn_hygiene::server::HygienicListener::builder(),
    )
    .await;
    let client = client(
        UpstreamConfig::new()
            .response_head_timeout(Duration::from_millis(500))
            .leak_threshold(Some(Duration::from_millis(100))),
    );
    let url = server.url("/slow?ms=3000");
    for _ in 0..5 {
        let err = client.get(url.parse().unwrap()).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(
            !err.is_connect() && !err.is_closed_before_response(),
            "{err:?}"
        );
    }
    let up = &client.view().snapshot()[0];
    assert_eq!(
        up.totals.timeouts, 5,
        "counted once per request: {:?}",
        up.totals
    );
    conn_hygiene::testing::assert_no_client_leases(&client);
    // Waiting is never a leak, even past the leak threshold.
    let tracker = &client.view().lease_trackers()[0];
    tracker.check_leaks();
    let leases = tracker.snapshot();
    assert_eq!(leases.totals.leaks_detected, 0, "{leases:?}");
    // A request within the timeout still succeeds.
    let res = client
        .get(server.url("/slow?ms=100").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_overrides_its_upstreams_timeouts() {
    let server = start(
        Mode::Axum,
        conn_hygiene::server::HygienicListener::builder(),
    )
    .await;
    let client = client(UpstreamConfig::new());
    let mut req = http::Request::get(server.url("/slow?ms=3000"))
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(Timeouts::new().response_head(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    let err = client.request(req).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_eq!(client.view().snapshot()[0].totals.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_cuts_a_body_still_streaming() {
    // A body whose first chunk comes at once and whose rest never does in time.
    let app = Router::new().route(
        "/trickle",
        get(|| async {
            let chunks = futures_util::stream::unfold(0u8, |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                (n < 2).then(|| {
                    (
                        Ok::<_, std::io::Error>(Bytes::from_static(b"chunk\n")),
                        n + 1,
                    )
                })
            });
            Body::from_stream(chunks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = client(UpstreamConfig::new().timeout(Duration::from_secs(1)));
    let res = client
        .get(format!("http://{addr}/trickle").parse().unwrap())
        .await
        .expect("the head comes at once");
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"chunk\n"));
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(body.frame().await.is_none(), "nothing after the timeout");
    drop(body);
    let up = &client.view().snapshot()[0];
    assert_eq!(up.totals.timeouts, 1, "{:?}", up.totals);
    conn_hygiene::testing::assert_no_client_leases(&client);
}

#[test]
fn timeouts_below_a_millisecond_are_refused_by_name() {
    use conn_hygiene::client::ClientConfigError;
    let tiny = Duration::from_micros(10);
    let err = HygienicClient::builder()
        .default_upstream(UpstreamConfig::new().response_head_timeout(tiny))
        .build::<Empty<Bytes>>()
        .unwrap_err();
    assert_eq!(err, ClientConfigError::ResponseHeadTimeout { value: tiny });
    assert!(
        err.to_string()
            .contains("response_head_timeout = 10µs: expected"),
        "{err}"
    );
    let err = HygienicClient::builder()
        .default_upstream(UpstreamConfig::new().timeout(tiny))
        .build::<Empty<Bytes>>()
        .unwrap_err();
    assert_eq!(err, ClientConfigError::Timeout { value: tiny });
}
