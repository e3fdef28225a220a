//! What the census attributes sockets to: anything that can say, by name, which local
//! addresses and which destinations are its own.

use std::fmt;
use std::net::SocketAddr;
use std::panic::Location;

/// A source of listeners and upstreams whose sockets are ours: the census asks it before every
/// walk what it owns, and attributes the kernel's sockets to those names. See the
/// [module docs](super).
///
/// The server's [`ConnectionRegistry`](crate::server::ConnectionRegistry) (feature `server`)
/// and the client's [`ClientView`](crate::client::ClientView) (feature `client`) are sources;
/// [`SamplerBuilder::source`](super::SamplerBuilder::source) takes any other, such as a pool
/// of another library.
///
/// ```
/// use std::net::SocketAddr;
/// use conn_hygiene::census::{AttributionSource, Claim, Sampler};
///
/// /// A database pool that knows where it connects.
/// #[derive(Debug)]
/// struct Db {
///     addr: SocketAddr,
/// }
///
/// impl AttributionSource for Db {
///     fn claims(&self) -> Vec<Claim> {
///         vec![Claim::upstream("db", self.addr.to_string(), [self.addr])]
///     }
/// }
///
/// // A host recorded in the census crate's fixture, with three sockets toward 127.0.0.1:36067.
/// let recorded = concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/crates/conn-hygiene-census/tests/fixtures/proc"
/// );
/// let db = Db { addr: "127.0.0.1:36067".parse().unwrap() };
/// let census = Sampler::builder().source(db).proc_root(recorded).sample_once();
/// let db = census.upstream("db").unwrap();
/// assert_eq!(db.time_wait, 1);
/// assert_eq!((db.ports[0].used, db.ports[0].time_wait), (3, 1));
/// ```
pub trait AttributionSource: fmt::Debug + Send + Sync {
    /// The listeners and upstreams this source owns now. Called before every full walk;
    /// names should be stable, as they label metrics.
    fn claims(&self) -> Vec<Claim>;

    /// The live connections of the listener or upstream `name` (one of its
    /// [`claims`](Self::claims)), so that a `CLOSE_WAIT` socket of ours on it can be given its
    /// connection id and lease site. Called after a walk, at most once per walk and name, and
    /// only when such a socket was found. Default: none.
    fn connections(&self, name: &str) -> Vec<TrackedConnection> {
        let _ = name;
        Vec::new()
    }
}

/// A listener or an upstream, by name, and the addresses that make a socket its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// A listener: sockets on its address are its own (`TIME_WAIT` left by our server closing
    /// first, half-open and not yet accepted connections, `CLOSE_WAIT` we hold).
    Listener {
        /// The `listener` metric label.
        name: String,
        /// The address it listens on; an unspecified address claims the port on every local
        /// address.
        addr: SocketAddr,
    },
    /// An upstream: sockets toward its destinations are its own (`TIME_WAIT` left by our
    /// client closing first, `CLOSE_WAIT` we hold, local-port use).
    Upstream {
        /// The `upstream` metric label.
        name: String,
        /// `host:port` as requested.
        authority: String,
        /// The addresses connected to. Upstreams of one name are merged over sources.
        destinations: Vec<SocketAddr>,
    },
}

impl Claim {
    /// A listener `name` on `addr`.
    pub fn listener(name: impl Into<String>, addr: SocketAddr) -> Self {
        Claim::Listener {
            name: name.into(),
            addr,
        }
    }

    /// An upstream `name`, requested as `authority`, connected to `destinations`.
    pub fn upstream(
        name: impl Into<String>,
        authority: impl Into<String>,
        destinations: impl IntoIterator<Item = SocketAddr>,
    ) -> Self {
        Claim::Upstream {
            name: name.into(),
            authority: authority.into(),
            destinations: destinations.into_iter().collect(),
        }
    }

    /// The listener's or the upstream's name.
    pub fn name(&self) -> &str {
        match self {
            Claim::Listener { name, .. } | Claim::Upstream { name, .. } => name,
        }
    }
}

/// One live connection of a listener or an upstream, as its source tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackedConnection {
    /// Its id in its registry or upstream.
    pub id: u64,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Where the request it carries was made, while its response is leased.
    pub lease_site: Option<&'static Location<'static>>,
}

impl TrackedConnection {
    /// Connection `id` from `local` to `remote`, not leased.
    pub fn new(id: u64, local: SocketAddr, remote: SocketAddr) -> Self {
        TrackedConnection {
            id,
            local,
            remote,
            lease_site: None,
        }
    }

    /// The connection leased by the request made at `site`.
    pub fn leased_at(mut self, site: impl Into<Option<&'static Location<'static>>>) -> Self {
        self.lease_site = site.into();
        self
    }
}
