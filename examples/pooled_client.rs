//! A load of requests through the hygienic pooled client.
//!
//! ```text
//! cargo run --example pooled_client -- --url URL --requests N --concurrency C
//!     [--interval-ms MS] [--close-order client-first|abort|server-first]
//!     [--server-keep-alive SECS] [--idle-timeout SECS] [--max-idle N] [--timeout-ms N]
//!     [--ca-file PATH]
//! ```
//!
//! An `https://` URL offers HTTP/2 and HTTP/1.1 by ALPN (the server chooses) and trusts
//! Mozilla's roots; `--ca-file PATH` trusts the CA certificates of a PEM file beside them (a
//! private CA, or a self-signed server certificate, one issued to an IP address such as
//! 127.0.0.1 included).
//!
//! Each of the C workers sends its share of the N requests, waiting MS between its requests.
//! `--timeout-ms N` is each request's total timeout (response head and body). Progress goes to
//! stderr; the last line on stdout is one JSON object with `requests`, `ok`, `failed`,
//! `connections_opened`, `retries`, `leases_outstanding`, the close counts, `timeouts`
//! (requests that timed out, once per request however many attempts) and `leaks_detected`
//! (leases reported as leaked).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use conn_hygiene::client::{CloseOrder, Closer, HygienicClient, UpstreamConfig};
use http_body_util::{BodyExt, Empty};

struct Args {
    url: http::Uri,
    requests: u64,
    concurrency: u64,
    interval: Duration,
    close_order: CloseOrder,
    server_keep_alive: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_idle: Option<usize>,
    timeout: Option<Duration>,
    ca_file: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut args = Args {
        url: http::Uri::from_static("http://127.0.0.1/"),
        requests: 100,
        concurrency: 4,
        interval: Duration::ZERO,
        close_order: CloseOrder::ClientFirst,
        server_keep_alive: None,
        idle_timeout: None,
        max_idle: None,
        timeout: None,
        ca_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a whole number"))
        };
        let secs = |v: String| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("{flag}: {v:?} is not a number of seconds"))
        };
        match flag.as_str() {
            "--url" => {
                let v = value()?;
                url = Some(v.parse().map_err(|e| format!("--url {v:?}: {e}"))?);
            }
            "--requests" => args.requests = number(value()?)?,
            "--concurrency" => args.concurrency = number(value()?)?.max(1),
            "--interval-ms" => args.interval = Duration::from_millis(number(value()?)?),
            "--close-order" => {
                args.close_order = value()?
                    .parse()
                    .map_err(|e| format!("--close-order: {e}"))?
            }
            "--server-keep-alive" => args.server_keep_alive = Some(secs(value()?)?),
            "--idle-timeout" => args.idle_timeout = Some(secs(value()?)?),
            "--max-idle" => args.max_idle = Some(number(value()?)? as usize),
            "--timeout-ms" => {
                args.timeout = Some(Duration::from_millis(number(value()?)?));
            }
            "--ca-file" => args.ca_file = Some(value()?.into()),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    args.url = url.ok_or("--url is required")?;
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pooled_client: {e}");
            std::process::exit(2);
        }
    };
    let mut upstream = UpstreamConfig::new()
        .name("target")
        .close_order(args.close_order)
        .server_keep_alive(args.server_keep_alive);
    if let Some(t) = args.idle_timeout {
        upstream = upstream.idle_timeout(t);
    }
    if let Some(n) = args.max_idle {
        upstream = upstream.max_idle(n);
    }
    if let Some(t) = args.timeout {
        upstream = upstream.timeout(t);
    }
    let builder = match with_ca_file(HygienicClient::builder(), args.ca_file.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pooled_client: --ca-file: {e}");
            std::process::exit(2);
        }
    };
    let client = match builder.default_upstream(upstream).build::<Empty<Bytes>>() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pooled_client: {e}");
            std::process::exit(2);
        }
    };
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let share =
            args.requests / args.concurrency + u64::from(w < args.requests % args.concurrency);
        let (client, url, ok, failed) =
            (client.clone(), args.url.clone(), ok.clone(), failed.clone());
        let interval = args.interval;
        workers.push(tokio::spawn(async move {
            for i in 0..share {
                if i > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let result = async {
                    let res = client.get(url.clone()).await?;
                    let status = res.status();
                    res.into_body().collect().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                }
                .await;
                match result {
                    Ok(s) if s.is_success() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(s) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("worker {w}: status {s}");
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("worker {w}: {}", chain(&*e));
                    }
                }
            }
        }));
    }
    let progress = {
        let (ok, failed) = (ok.clone(), failed.clone());
        let total = args.requests;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "progress: {}/{} ok, {} failed",
                    ok.load(Ordering::Relaxed),
                    total,
                    failed.load(Ordering::Relaxed)
                );
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    let snap = client.view().snapshot();
    let sum = |f: &dyn Fn(&conn_hygiene::client::UpstreamSnapshot) -> u64| -> u64 {
        snap.iter().map(f).sum()
    };
    let connections_opened = sum(&|u| u.totals.connects);
    let retries = sum(&|u| u.totals.retries);
    let leases_outstanding = sum(&|u| u.leases.outstanding());
    let closed_local = sum(&|u| u.totals.closed_by(Closer::Local));
    let closed_peer = sum(&|u| u.totals.closed_by(Closer::Peer));
    let timeouts = sum(&|u| u.totals.timeouts);
    let leaks_detected = sum(&|u| u.leases.totals.leaks_detected);
    eprintln!(
        "done in {:.2}s: {} connections for {} requests",
        started.elapsed().as_secs_f64(),
        connections_opened,
        args.requests
    );
    println!(
        "{{\"requests\":{},\"ok\":{},\"failed\":{},\"connections_opened\":{},\"retries\":{},\"leases_outstanding\":{},\"closed_by_client\":{},\"closed_by_server\":{},\"close_order\":\"{}\",\"timeouts\":{},\"leaks_detected\":{}}}",
        args.requests,
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        connections_opened,
        retries,
        leases_outstanding,
        closed_local,
        closed_peer,
        args.close_order.as_str(),
        timeouts,
        leaks_detected,
    );
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Trusts the CA certificates of `path` for `https://` URLs, beside the default roots.
#[cfg(feature = "rustls")]
fn with_ca_file(
    builder: conn_hygiene::client::ClientBuilder,
    path: Option<&std::path::Path>,
) -> Result<conn_hygiene::client::ClientBuilder, String> {
    let Some(path) = path else {
        return Ok(builder);
    };
    let tls = conn_hygiene::client::ClientTls::builder();
    #[cfg(feature = "webpki-roots")]
    let tls = tls.webpki_roots();
    let tls = tls
        .add_ca_file(path)
        .and_then(|t| t.build())
        .map_err(|e| e.to_string())?;
    Ok(builder.tls(tls))
}

#[cfg(not(feature = "rustls"))]
fn with_ca_file(
    builder: conn_hygiene::client::ClientBuilder,
    path: Option<&std::path::Path>,
) -> Result<conn_hygiene::client::ClientBuilder, String> {
    match path {
        None => Ok(builder),
        Some(_) => Err("built without the rustls feature".to_owned()),
    }
}
