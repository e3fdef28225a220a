//! An axum app served through the hygienic listener and connection layer.
//!
//! ```text
//! cargo run --example axum_server -- [--listen ADDR] [--idle-timeout SECS] [--header-timeout SECS]
//!     [--max-requests N] [--max-age SECS] [--write-timeout SECS] [--shutdown-deadline SECS]
//!     [--sample-interval SECS] [--hyper-loop] [--no-metrics] [--bare] [--bare-hyper]
//!     [--without-layer] [--late-exporter] [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! The first line on stdout is `listening on ADDR`. Routes: `/` (a small body), `/conn` (which
//! connection served the request), `/slow?ms=N` (answers after N ms), `/big?kb=N` (a body of
//! N KiB, at most 64 MiB, for peers that read slowly or not at all), and `/metrics` (the
//! Prometheus page: the example installs the exporter's recorder, as an executable may). With
//! feature `census` the connection census samples every `--sample-interval` seconds (default 5),
//! so `/metrics` also carries the host's and the process's TCP sockets by state, and with
//! feature `page` (a default) `/connections` serves the live connections page (and
//! `/connections.json` its figures) over the same samples. Runs until
//! SIGINT or SIGTERM, then shuts down gracefully and, once every connection is accounted,
//! prints the connection totals to stderr (`unanswered=N`: requests read whose response never
//! ended, cut at the deadline or cancelled by their peer).
//!
//! `--write-timeout SECS` sets the write timeout (pending output that makes no progress that
//! long is cut with a reset); `0` turns it off. Default: the library's, 30 s.
//!
//! `--bare` serves the same routes, without `/metrics`, with plain `axum::serve` on a tokio
//! listener and no recorder or sampler, for comparisons; `--no-metrics` keeps the hygienic
//! listener and layer but installs no recorder and starts no sampler (no `/metrics`), so the
//! crate's metrics go to the facade's no-op default; `--hyper-loop` uses the crate's own
//! serve loop instead of `axum::serve`; `--bare-hyper` is the baseline of that loop: the same
//! routes served by a plain hyper-util accept loop (a tokio listener, hyper-util's `auto`
//! builder with the same timers, one task per connection, hyper-util's graceful shutdown); `--without-layer` serves the hygienic listener with
//! `axum::serve(listener, app)` and no `MakeTrackConnection`: every connection limit still holds
//! (enforced from the listener's own I/O), `/conn` reports no connection, and the registry
//! counts the connections served without the layer (one warning is logged). `--late-exporter`
//! installs the exporter after the listener is bound and the sampler spawned: their metrics
//! are on `/metrics` all the same (the order does not matter).
//!
//! `--tls-cert PEM --tls-key PEM` (feature `rustls`) serves HTTPS: every connection goes
//! through a rustls handshake (HTTP/2 and HTTP/1.1 offered by ALPN) beneath the tracking
//! (`HygienicListener::with_handshake`), in every serve mode but `--bare`; the header timeout
//! bounds the handshake too, and a failed one is counted (`reason="handshake_failed"`).

use std::{collections::HashMap, io::Write, net::SocketAddr, time::Duration};

use axum::{
    extract::{Extension, Query},
    routing::get,
    Router,
};
use conn_hygiene::{
    exporter::PrometheusExporter,
    policy::SocketPolicy,
    server::{
        Closer, ConnectionInfo, ConnectionLimits, ConnectionRegistry, HygienicListener,
        MakeTrackConnection, Server, TrackedListener, TrackedStream,
    },
};

struct Args {
    listen: String,
    idle_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
    max_requests: Option<u64>,
    max_age: Option<Duration>,
    write_timeout: Option<Duration>,
    shutdown_deadline: Duration,
    #[cfg_attr(not(feature = "census"), allow(dead_code))]
    sample_interval: Duration,
    hyper_loop: bool,
    no_metrics: bool,
    bare: bool,
    bare_hyper: bool,
    without_layer: bool,
    late_exporter: bool,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        idle_timeout: ConnectionLimits::default().idle_timeout(),
        header_timeout: ConnectionLimits::default().header_timeout(),
        max_requests: None,
        max_age: None,
        write_timeout: ConnectionLimits::default().write_timeout(),
        shutdown_deadline: Duration::from_secs(10),
        sample_interval: Duration::from_secs(5),
        hyper_loop: false,
        no_metrics: false,
        bare: false,
        bare_hyper: false,
        without_layer: false,
        late_exporter: false,
        tls_cert: None,
        tls_key: None,
    };
    let mut it = std::env::args().skip(1);
    let secs = |flag: &str, v: Option<String>| -> Result<Duration, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        let s: f64 = v
            .parse()
            .map_err(|_| format!("{flag}: {v:?} is not a number of seconds"))?;
        Duration::try_from_secs_f64(s).map_err(|_| format!("{flag}: {v:?} is out of range"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--listen" => args.listen = it.next().ok_or("--listen needs an address")?,
            "--idle-timeout" => args.idle_timeout = Some(secs(&flag, it.next())?),
            "--header-timeout" => args.header_timeout = Some(secs(&flag, it.next())?),
            "--max-age" => args.max_age = Some(secs(&flag, it.next())?),
            "--write-timeout" => {
                args.write_timeout = Some(secs(&flag, it.next())?).filter(|t| !t.is_zero())
            }
            "--shutdown-deadline" => args.shutdown_deadline = secs(&flag, it.next())?,
            "--sample-interval" => args.sample_interval = secs(&flag, it.next())?,
            "--max-requests" => {
                let v = it.next().ok_or("--max-requests needs a value")?;
                args.max_requests = Some(
                    v.parse()
                        .map_err(|_| format!("--max-requests: {v:?} is not a whole number"))?,
                );
            }
            "--hyper-loop" => args.hyper_loop = true,
            "--no-metrics" => args.no_metrics = true,
            "--bare" => args.bare = true,
            "--bare-hyper" => args.bare_hyper = true,
            "--without-layer" => args.without_layer = true,
            "--late-exporter" => args.late_exporter = true,
            "--tls-cert" => args.tls_cert = Some(it.next().ok_or("--tls-cert needs a path")?),
            "--tls-key" => args.tls_key = Some(it.next().ok_or("--tls-key needs a path")?),
            "-h" | "--help" => {
                println!("see the header of examples/axum_server.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if args.tls_cert.is_some() && (args.bare || args.bare_hyper) {
        return Err("--bare and --bare-hyper serve plain HTTP only".into());
    }
    if args.bare && args.bare_hyper {
        return Err("--bare and --bare-hyper are two different baselines: one at a time".into());
    }
    Ok(args)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from conn-hygiene\n" }))
        .route(
            "/conn",
            get(|info: Option<Extension<ConnectionInfo>>| async move {
                match info {
                    Some(Extension(i)) => format!(
                        "connection={} request={} peer={}\n",
                        i.id(),
                        i.request_number(),
                        i.peer_addr()
                    ),
                    None => "untracked\n".to_string(),
                }
            }),
        )
        .route(
            "/slow",
            get(|Query(q): Query<HashMap<String, u64>>| async move {
                let ms = q.get("ms").copied().unwrap_or(100).min(60_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms\n")
            }),
        )
        .route(
            "/big",
            get(|Query(q): Query<HashMap<String, usize>>| async move {
                let kb = q.get("kb").copied().unwrap_or(1024).min(64 * 1024);
                vec![b'x'; kb * 1024]
            }),
        )
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn announce(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

fn print_totals(registry: &ConnectionRegistry) {
    let t = registry.totals();
    eprintln!(
        "connections opened={} closed={} closer: local={} peer={} reset={} error={} timeout={}; requests={} unanswered={}",
        t.opened,
        t.closed,
        t.closed_by(Closer::Local),
        t.closed_by(Closer::Peer),
        t.closed_by(Closer::Reset),
        t.closed_by(Closer::Error),
        t.closed_by(Closer::Timeout),
        t.requests_on_closed,
        t.requests_unanswered,
    );
}

/// Serves in the mode the flags chose, over plain TCP or with a handshake (TLS) beneath.
async fn serve<L>(listener: L, app: Router, args: &Args, registry: &ConnectionRegistry)
where
    L: TrackedListener
        + axum::serve::Listener<Io = TrackedStream<<L as TrackedListener>::Io>, Addr = SocketAddr>,
{
    if args.hyper_loop {
        // A `Router` called as a service per request turns each handler into a route on every
        // call; `with_state` does it once, as `axum::serve` does through its make-service.
        let app = app.with_state(());
        let report = Server::new()
            .serve_with_shutdown(listener, app, shutdown_signal())
            .await;
        eprintln!("shutdown: drained={} cut={}", report.drained, report.cut);
    } else if args.without_layer {
        axum::serve(listener, app)
            .with_graceful_shutdown(registry.graceful_shutdown(shutdown_signal()))
            .await
            .expect("serve");
    } else {
        axum::serve(listener, MakeTrackConnection::new(app))
            .with_graceful_shutdown(registry.graceful_shutdown(shutdown_signal()))
            .await
            .expect("serve");
    }
}

/// The plain hyper-util serve loop the crate's own `Server` is measured against: what a
/// service without this crate would write, with the builder set as `Server::new` sets it.
async fn bare_hyper(listener: tokio::net::TcpListener, app: Router) {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    let app = app.with_state(());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("axum_server: accept: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    graceful.shutdown().await;
}

/// A rustls acceptor for a PEM certificate chain and key, offering HTTP/2 and HTTP/1.1 by ALPN.
#[cfg(feature = "rustls")]
fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let fail = |what: String| -> ! {
        eprintln!("axum_server: {what}");
        std::process::exit(2);
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| fail(format!("--tls-cert {cert}: {e}")));
    let key =
        PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| fail(format!("--tls-key {key}: {e}")));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| fail(format!("--tls-cert/--tls-key: {e}")));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

#[cfg(not(feature = "rustls"))]
fn tls_acceptor(
    _: &str,
    _: &str,
) -> conn_hygiene::server::HandshakeFn<
    fn(tokio::net::TcpStream) -> std::future::Ready<std::io::Result<tokio::net::TcpStream>>,
> {
    eprintln!("axum_server: --tls-cert needs the `rustls` feature");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("axum_server: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    if args.bare || args.bare_hyper {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("axum_server: cannot bind {}: {e}", args.listen);
                std::process::exit(1);
            });
        announce(listener.local_addr().expect("bound address"));
        if args.bare {
            axum::serve(listener, app())
                .with_graceful_shutdown(shutdown_signal())
                .await
                .expect("serve");
        } else {
            bare_hyper(listener, app()).await;
        }
        return;
    }

    // The executable decides to export: the library itself only emits through the facade.
    // Before or after the listener is bound, whichever: metric handles taken before the
    // exporter is installed are bound to it when it is (`--late-exporter` shows it).
    let install = || {
        PrometheusExporter::install().unwrap_or_else(|e| {
            eprintln!("axum_server: {e}");
            std::process::exit(1);
        })
    };
    let mut exporter = (!args.no_metrics && !args.late_exporter).then(install);
    let limits = ConnectionLimits::builder()
        .idle_timeout(args.idle_timeout)
        .header_timeout(args.header_timeout)
        .max_requests(args.max_requests)
        .max_age(args.max_age)
        .write_timeout(args.write_timeout)
        .shutdown_deadline(args.shutdown_deadline)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("axum_server: {e}");
            std::process::exit(2);
        });
    let listener = HygienicListener::builder()
        .name("axum_server")
        .policy(SocketPolicy::default())
        .limits(limits)
        .bind(&args.listen)
        .await
        .unwrap_or_else(|e| {
            // The error says what failed; its source, why.
            let why = std::error::Error::source(&e).map(|s| format!(": {s}"));
            eprintln!("axum_server: {e}{}", why.unwrap_or_default());
            std::process::exit(1);
        });
    let backlog = listener.backlog();
    if backlog.is_capped() {
        eprintln!(
            "axum_server: listen backlog {} capped to {} by net.core.somaxconn",
            backlog.requested, backlog.effective
        );
    }
    let registry = listener.registry().clone();
    // Samples until the handle is dropped at the end of main.
    #[cfg(feature = "census")]
    let _sampler = (!args.no_metrics).then(|| {
        conn_hygiene::census::Sampler::builder()
            .interval(args.sample_interval)
            .listener(&registry)
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("axum_server: {e}");
                std::process::exit(2);
            })
    });
    if !args.no_metrics && args.late_exporter {
        exporter = Some(install());
    }

    let app = match &exporter {
        Some(exporter) => app().merge(exporter.router()),
        None => app(),
    };
    // The live connections page over the sampler's samples and this listener.
    #[cfg(feature = "page")]
    let app = match &_sampler {
        Some(sampler) => app.merge(
            conn_hygiene::page::ConnectionsPage::builder(sampler.clone())
                .listener(&registry)
                .build()
                .router(),
        ),
        None => app,
    };
    announce(listener.local_addr());

    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let listener = listener.with_handshake(tls_acceptor(cert, key));
            serve(listener, app, &args, &registry).await;
        }
        _ => serve(listener, app, &args, &registry).await,
    }
    // axum's serve returns once its connection tasks are done; a connection is accounted when
    // its socket is dropped, which may come just after. Wait for that (bounded), so the totals
    // are exact.
    if tokio::time::timeout(Duration::from_secs(5), registry.closed())
        .await
        .is_err()
    {
        eprintln!("axum_server: {} connections still open", registry.live());
    }
    print_totals(&registry);
}
