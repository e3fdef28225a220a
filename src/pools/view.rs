//! What a tracked pool shares with its checkouts and with the census: the lease tracker, the
//! destinations seen, and the connections checked out now with their sockets and sites.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    panic::Location,
    sync::{Arc, Mutex, MutexGuard, Weak},
};

use crate::lease::{Lease, LeaseTracker};

/// Destinations a pool's view keeps (configured and seen on checkouts); later ones are not
/// claimed. A pool connects to one service, seldom more than a handful of addresses.
pub const MAX_DESTINATIONS: usize = 16;

/// What a pool says about itself at one moment, as its own statistics give it
/// ([`PoolView::stats`]); the same figures as the `conn_hygiene_pool_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections held, idle and checked out.
    pub size: u64,
    /// Idle connections.
    pub idle: u64,
    /// The most connections it may hold.
    pub max_size: u64,
    /// Checkouts waiting for a connection.
    pub waiters: u64,
    /// Checkouts that timed out, when the pool counts them itself (cumulative).
    pub timeouts: Option<u64>,
}

/// Reads a pool's statistics.
pub(crate) trait ReadStats: Send + Sync + 'static {
    fn read(&self) -> PoolStats;
}

/// What a pooled connection shows of its TCP socket, so that its checkout can be joined to the
/// kernel's socket (a `CLOSE_WAIT` socket of ours, to the line that holds its connection).
///
/// Implemented for tokio's and std's `TcpStream` and, with the feature `redis`, for
/// [`RedisConnection`](super::redis::RedisConnection). A connection that does not show its
/// socket (most database clients do not) returns `None`: its checkouts are tracked all the
/// same, leak reports name their lines, and the census attributes its sockets by destination
/// only.
pub trait ConnectionSocket {
    /// `(local, peer)`: our address and the peer's, or `None` when the connection does not
    /// show its socket.
    fn socket_addrs(&self) -> Option<(SocketAddr, SocketAddr)>;
}

impl ConnectionSocket for tokio::net::TcpStream {
    fn socket_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.local_addr().ok().zip(self.peer_addr().ok())
    }
}

impl ConnectionSocket for std::net::TcpStream {
    fn socket_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.local_addr().ok().zip(self.peer_addr().ok())
    }
}

/// A pool's tracking, seen from outside: its lease tracker, the destinations it connects to,
/// and the connections checked out now. Made by each adapter's `view()`; cheap to clone.
///
/// With the feature `census` it is an
/// [`AttributionSource`](crate::census::AttributionSource): give it to
/// [`SamplerBuilder::source`](crate::census::SamplerBuilder::source) and the census claims the
/// sockets toward the pool's destinations as the upstream named after the pool, and joins a
/// `CLOSE_WAIT` socket of ours to the checkout holding it, and so to the line that took it
/// ([`CloseWaitEntry::lease_site`](crate::census::CloseWaitEntry::lease_site)). The view
/// does not keep the pool alive.
#[derive(Clone)]
pub struct PoolView {
    shared: Arc<ViewShared>,
}

struct ViewShared {
    tracker: LeaseTracker,
    /// The adapter's statistics exporter; gone with the adapter.
    stats: Option<Weak<dyn ReadStats>>,
    state: Mutex<ViewState>,
}

#[derive(Default)]
struct ViewState {
    authority: Option<String>,
    destinations: Vec<SocketAddr>,
    /// By lease id: at most one entry per connection checked out, so bounded by the pool's
    /// size.
    checked_out: HashMap<u64, CheckedOut>,
}

#[derive(Clone, Copy)]
struct CheckedOut {
    site: &'static Location<'static>,
    socket: Option<(SocketAddr, SocketAddr)>,
}

/// One connection checked out of a tracked pool, as listed by [`PoolView::checkouts`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckoutInfo {
    /// The id of its lease in the pool's [`LeaseTracker`].
    pub lease_id: u64,
    /// Where it was checked out. Displays as `file:line:column`.
    pub site: &'static Location<'static>,
    /// Our end of its socket, when the connection shows it ([`ConnectionSocket`]).
    pub local: Option<SocketAddr>,
    /// The peer's end of its socket, when the connection shows it.
    pub peer: Option<SocketAddr>,
}

impl PoolView {
    #[cfg(test)]
    pub(crate) fn new(tracker: LeaseTracker) -> Self {
        Self::with_stats(tracker, None)
    }

    /// A view that reads the pool's statistics from `stats` while the adapter lives.
    pub(crate) fn with_stats(tracker: LeaseTracker, stats: Option<Weak<dyn ReadStats>>) -> Self {
        PoolView {
            shared: Arc::new(ViewShared {
                tracker,
                stats,
                state: Mutex::new(ViewState::default()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ViewState> {
        // Nothing panics while holding this lock; recover anyway rather than spread a panic.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's name: its lease tracker's, the `pool` label of its metrics and the census's
    /// upstream name.
    pub fn name(&self) -> &str {
        self.shared.tracker.pool()
    }

    /// The pool's lease tracker: outstanding checkouts, leak reports, snapshots.
    pub fn tracker(&self) -> &LeaseTracker {
        &self.shared.tracker
    }

    /// `host:port` as the pool was told to reach it (its authority in the census), when known.
    pub fn authority(&self) -> Option<String> {
        self.lock().authority.clone()
    }

    /// The destinations claimed: those given to the adapter, then the peers of the connections
    /// checked out so far, at most [`MAX_DESTINATIONS`].
    pub fn destinations(&self) -> Vec<SocketAddr> {
        self.lock().destinations.clone()
    }

    /// The connections checked out now, by lease id.
    pub fn checkouts(&self) -> Vec<CheckoutInfo> {
        let mut out: Vec<CheckoutInfo> = self
            .lock()
            .checked_out
            .iter()
            .map(|(&lease_id, c)| CheckoutInfo {
                lease_id,
                site: c.site,
                local: c.socket.map(|s| s.0),
                peer: c.socket.map(|s| s.1),
            })
            .collect();
        out.sort_unstable_by_key(|c| c.lease_id);
        out
    }

    /// The pool's own statistics now (size, idle, waiters…); `None` for a view without them, or
    /// once the tracked pool is dropped.
    pub fn stats(&self) -> Option<PoolStats> {
        self.shared
            .stats
            .as_ref()
            .and_then(Weak::upgrade)
            .map(|s| s.read())
    }

    /// Sets the authority, if none was set.
    pub(crate) fn set_authority(&self, authority: String) {
        self.lock().authority.get_or_insert(authority);
    }

    /// Adds a destination, if not known yet and there is room.
    pub(crate) fn add_destination(&self, addr: SocketAddr) {
        add_destination(&mut self.lock(), addr);
    }

    /// Records a checkout made at `site`: takes its lease and lists it with its socket, until
    /// the returned [`Seat`] is dropped.
    pub(crate) fn seat(
        &self,
        site: &'static Location<'static>,
        socket: Option<(SocketAddr, SocketAddr)>,
    ) -> Seat {
        let lease = self.shared.tracker.lease_at(site);
        {
            let mut state = self.lock();
            if let Some((_, peer)) = socket {
                add_destination(&mut state, peer);
            }
            state
                .checked_out
                .insert(lease.id(), CheckedOut { site, socket });
        }
        Seat {
            view: self.clone(),
            lease,
        }
    }
}

fn add_destination(state: &mut ViewState, addr: SocketAddr) {
    if state.destinations.len() < MAX_DESTINATIONS && !state.destinations.contains(&addr) {
        state.destinations.push(addr);
    }
}

impl fmt::Debug for PoolView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("PoolView")
            .field("pool", &self.name())
            .field("authority", &state.authority)
            .field("destinations", &state.destinations)
            .field("checked_out", &state.checked_out.len())
            .finish()
    }
}

/// A checkout's place in its pool's view: its lease, and its entry in the list of connections
/// checked out. Dropping it removes the entry, then ends the lease.
pub(crate) struct Seat {
    view: PoolView,
    lease: Lease,
}

impl Seat {
    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.view.lock().checked_out.remove(&self.lease.id());
        // The lease ends when its field is dropped, right after.
    }
}

impl fmt::Debug for Seat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seat")
            .field("pool", &self.view.name())
            .field("lease", &self.lease)
            .finish()
    }
}

/// The pool as an upstream of its name, toward the destinations it connects to; its checkouts
/// with a known socket as its connections, each with the line that checked it out.
#[cfg(feature = "census")]
impl crate::census::AttributionSource for PoolView {
    fn claims(&self) -> Vec<crate::census::Claim> {
        let state = self.lock();
        let authority = state
            .authority
            .clone()
            .or_else(|| state.destinations.first().map(ToString::to_string))
            .unwrap_or_else(|| self.name().to_owned());
        vec![crate::census::Claim::upstream(
            self.name(),
            authority,
            state.destinations.iter().copied(),
        )]
    }

    fn connections(&self, name: &str) -> Vec<crate::census::TrackedConnection> {
        if name != self.name() {
            return Vec::new();
        }
        self.lock()
            .checked_out
            .iter()
            .filter_map(|(&id, c)| {
                let (local, peer) = c.socket?;
                Some(crate::census::TrackedConnection::new(id, local, peer).leased_at(c.site))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_list_checkouts_until_dropped_and_destinations_stay_bounded() {
        let view = PoolView::new(LeaseTracker::new("cache"));
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let here = Location::caller();
        let a = view.seat(here, Some((local, peer)));
        let b = view.seat(here, None);
        assert_eq!(view.tracker().outstanding(), 2);
        let listed = view.checkouts();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].local, listed[0].peer), (Some(local), Some(peer)));
        assert_eq!((listed[1].local, listed[1].peer), (None, None));
        assert_eq!(listed[0].lease_id, a.lease().id());
        assert_eq!(view.destinations(), vec![peer]);
        drop(a);
        assert_eq!(view.checkouts().len(), 1);
        assert_eq!(view.tracker().outstanding(), 1);
        drop(b);
        assert!(view.checkouts().is_empty());
        assert_eq!(view.tracker().outstanding(), 0);

        for port in 0..100 {
            view.add_destination(SocketAddr::from(([127, 0, 0, 2], port)));
        }
        assert_eq!(view.destinations().len(), MAX_DESTINATIONS);
        assert_eq!(view.destinations()[0], peer);
    }
}
