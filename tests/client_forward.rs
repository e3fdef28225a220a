//! An axum handler forwards its streaming request body upstream through the client, without
//! buffering it: the upstream sees the first chunk while the caller has not sent the second.
//! Such a request (its body cannot be copied) is sent once, never retried.
#![cfg(all(feature = "client", feature = "axum"))]

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Request, State},
    routing::post,
    Router,
};
use bytes::Bytes;
use conn_hygiene::client::{HygienicClient, UpstreamConfig};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, Notify};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_forwards_its_request_body_as_it_arrives() {
    // The upstream: counts the bytes of a POST body, and says when the first chunk came.
    let first_chunk = Arc::new(Notify::new());
    let upstream = Router::new()
        .route(
            "/sink",
            post(
                |State(first): State<Arc<Notify>>, req: Request| async move {
                    let mut body = req.into_body();
                    let mut n = 0;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.unwrap().into_data() {
                            if n == 0 {
                                first.notify_one();
                            }
                            n += data.len();
                        }
                    }
                    format!("{n}")
                },
            ),
        )
        .with_state(first_chunk.clone());
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(up, upstream).await });

    // The service: forwards its request body upstream as it is, an axum `Body`.
    let client: HygienicClient<Body> = HygienicClient::builder()
        .default_upstream(UpstreamConfig::new())
        .build()
        .unwrap();
    let target = format!("http://{up_addr}/sink");
    let front = Router::new().route(
        "/forward",
        post(move |req: Request| {
            let client = client.clone();
            let target = target.clone();
            async move {
                let upstream_req = http::Request::post(target).body(req.into_body()).unwrap();
                let res = client.request(upstream_req).await.expect("upstream");
                let bytes = res.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }),
    );
    let fr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fr_addr = fr.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(fr, front).await });

    // The caller streams its body in two chunks, the second only once the upstream has the
    // first: if anything on the way buffered the whole body, the upstream would never see it.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::io::Error>(http_body::Frame::data(b)), rx))
        },
    )));
    let caller = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{fr_addr}/forward"))
        .body(body)
        .unwrap();
    let call = tokio::spawn(async move { caller.request(req).await });
    tx.send(Bytes::from(vec![b'a'; 1000])).await.unwrap();
    tokio::time::timeout(LIMIT, first_chunk.notified())
        .await
        .expect("the upstream got the first chunk before the caller sent the rest");
    tx.send(Bytes::from(vec![b'b'; 500])).await.unwrap();
    drop(tx);
    let res = tokio::time::timeout(LIMIT, call)
        .await
        .expect("answered in time")
        .unwrap()
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1500");
}
