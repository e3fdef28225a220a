//! The connection census: which of the kernel's TCP sockets are ours, and what they say.
//!
//! A [`Sampler`] runs in the background. On every tick it reads the cheap counters
//! (`sockstat`, `snmp`/`netstat`, `file-nr`, this process's descriptors, conntrack, sysctls);
//! every few ticks it walks the whole socket table once (netlink `sock_diag`, `/proc/net/tcp`
//! when refused) and joins each socket to what it was given:
//!
//! - **Our sockets**: this process's socket inodes (`/proc/self/fd`) joined with the walk give
//!   [`CensusSnapshot::process`], our sockets by state.
//! - **Sockets no process holds** (`TIME_WAIT`, and connections not yet accepted) are
//!   attributed by address: on a listener's address they are that listener's (for
//!   `TIME_WAIT`: our server closed first); toward an upstream's destination, that
//!   upstream's (our client closed first). Sockets of other listeners and other destinations
//!   are nobody's. The listeners and upstreams come from [attribution
//!   sources](AttributionSource): the server's `ConnectionRegistry` (feature `server`,
//!   `SamplerBuilder::listener`), the client's `ClientView` (feature `client`,
//!   `SamplerBuilder::client`), or any other ([`SamplerBuilder::source`]).
//! - **Port headroom** per upstream destination and source address: the size of
//!   `ip_local_port_range` minus the sockets already using it, and the time to exhaustion at
//!   the rate seen since the previous walk ([`PortHeadroom`]).
//! - **`CLOSE_WAIT` we hold**, each joined to its listener or upstream and, for a connection
//!   whose response body is still leased, to the line that made the request
//!   ([`CloseWaitEntry::lease_site`]).
//!
//! The host's part of a sample (states, listeners, port use, the findings' input) is taken
//! as the census crate takes it for any host ([`HostWalk`]); the sampler adds its
//! attribution on top, in the same walk.
//!
//! Every sample is judged against [`Thresholds`] (see [`conn_hygiene_census::findings`] for
//! the checks and their defaults; the types a snapshot is made of are re-exported here),
//! published as a [`CensusSnapshot`] and exported as metrics (listed in [`crate::metrics::names`]):
//! sockets by state for the host and the process (all eleven states, 0 when none), per
//! listener and per upstream sockets, queues and port headroom, kernel counters, usage
//! ratios, findings per check and severity, the sampler's own cost per tier
//! (`conn_hygiene_sampler_duration_seconds{tier}`) and what is degraded.
//!
//! When `/proc` or netlink is unavailable (a container, another platform, missing privilege),
//! the sampler logs one warning per unavailable part, marks it in
//! [`CensusSnapshot::degraded`] and `conn_hygiene_census_degraded{part}`, and keeps
//! producing what it can.
//!
//! Memory stays flat in the number of sockets: a walk keeps one small record per listener,
//! per upstream and per (upstream, destination, source address), at most
//! [`MAX_CLOSE_WAIT_ENTRIES`] `CLOSE_WAIT` addresses, and this process's socket inodes.
//!
//! ```no_run
//! # #[cfg(all(feature = "server", feature = "client"))]
//! # mod example {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use conn_hygiene::census::Sampler;
//! use conn_hygiene::client::HygienicClient;
//! use conn_hygiene::server::HygienicListener;
//! use http_body_util::Empty;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! let client = HygienicClient::builder().build::<Empty<Bytes>>()?;
//! let census = Sampler::builder()
//!     .interval(Duration::from_secs(5))
//!     .walk_every(3)
//!     .listener(listener.registry())
//!     .client(client.view())
//!     .spawn()?;
//! let snap = census.sample_now().await;
//! if let Some(api) = snap.listener(listener.registry().name()) {
//!     println!("TIME_WAIT left by our server closing first: {}", api.time_wait);
//! }
//! for cw in &snap.close_wait {
//!     println!("{} -> {} held by {:?}, leased at {:?}", cw.local, cw.remote, cw.owner, cw.lease_site);
//! }
//! println!("{}", snap.report.status());
//! # Ok(()) }
//! # }
//! # fn main() {}
//! ```
//!
//! [`HostWalk`]: conn_hygiene_census::findings::HostWalk

mod attribution;
mod export;
mod join;
mod peers;
mod sample;
mod sampler;
mod snapshot;
#[cfg(any(feature = "server", feature = "client"))]
mod sources;
mod targets;

pub use self::attribution::{AttributionSource, Claim, TrackedConnection};
pub use self::peers::{PeerCensus, PeerKind, MAX_NAMED_REMOTES};
pub use self::sampler::{Sampler, SamplerBuilder, SamplerConfigError, SamplerTask};
pub use self::snapshot::{
    CensusSnapshot, CloseWaitEntry, Counters, Degraded, DegradedPart, ListenerCensus, Owner,
    PortHeadroom, SampleCost, Tier, UpstreamCensus,
};
/// What a snapshot's fields and the sampler's settings are made of, from the kernel-facing
/// census crate: reachable here so a user needs no second dependency.
pub use conn_hygiene_census::{
    findings::{Check, Measure, ThresholdError, ThresholdsBuilder},
    Conntrack, FdUsage, FileNr, Finding, ParseStateError, Report, Severity, Sockstat, StateCounts,
    Sysctls, TcpCounters, TcpState, Thresholds,
};

/// `CLOSE_WAIT` sockets listed one by one in a snapshot; more are only counted.
pub const MAX_CLOSE_WAIT_ENTRIES: usize = 128;
/// (destination, source address) pairs kept per upstream in a snapshot, worst first.
pub const MAX_SOURCES_PER_UPSTREAM: usize = 16;
/// Upstreams followed (over all sources); more are ignored.
pub const MAX_UPSTREAMS: usize = 256;
/// (upstream, destination, source address) pairs counted in one walk.
pub(crate) const MAX_PORT_KEYS: usize = 4096;
/// Listening sockets of the host kept for the listener findings.
pub(crate) const MAX_HOST_LISTENERS: usize = 1024;

/// Takes one full census now, on this thread, of `listeners` and `clients`, with the
/// default thresholds and `/proc`. For more settings, or other sources, use
/// [`SamplerBuilder::sample_once`].
#[cfg(all(feature = "server", feature = "client"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "server", feature = "client"))))]
pub fn sample_once(
    listeners: &[&crate::server::ConnectionRegistry],
    clients: &[crate::client::ClientView],
) -> CensusSnapshot {
    let mut b = Sampler::builder();
    for l in listeners {
        b = b.listener(l);
    }
    for c in clients {
        b = b.client(c.clone());
    }
    b.sample_once()
}
