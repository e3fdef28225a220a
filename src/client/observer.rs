//! What an outbound connection knows of its upstream: the settings it reads and the observer
//! it reports to. The upstream implements it; a connection never reaches into the upstream.

use std::{panic::Location, time::Duration};

use super::{
    config::UpstreamConfig,
    conn::{ClientConn, CloseReason, ConnState},
};
use crate::{close::Closer, policy::SocketPolicy};

/// The upstream side of one outbound connection.
pub(crate) trait ConnObserver: Send + Sync {
    /// The upstream's name.
    fn name(&self) -> &str;
    /// The upstream's settings.
    fn config(&self) -> &UpstreamConfig;
    /// The socket policy of its connections.
    fn policy(&self) -> &SocketPolicy;
    /// The idle timeout in force: the configured one, or below a keep-alive timeout learned
    /// from the server.
    fn idle_timeout(&self) -> Duration;
    /// Idle connections of the upstream now.
    fn idle_count(&self) -> usize;
    /// Where the lease in the tracker's `slot` with `id` was taken, if it is still there.
    fn lease_site(&self, slot: usize, id: u64) -> Option<&'static Location<'static>>;
    /// The connection moved from one state to another.
    fn transition(&self, from: ConnState, to: ConnState);
    /// The connection closed: who closed first, why, and whether with a reset.
    fn closed(&self, conn: &ClientConn, closer: Closer, reason: CloseReason, aborted: bool);
}
