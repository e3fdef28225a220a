//! TLS, or any handshake, beneath the tracking: a listener that hands each accepted socket to a
//! [`Handshake`] and tracks the stream it yields, so that framing, limits and close accounting
//! follow the HTTP bytes, not the encrypted ones.

use std::{fmt, future::Future, io, net::SocketAddr, sync::Arc};

use tokio::{net::TcpStream, sync::OwnedSemaphorePermit, task::JoinSet};

use super::{
    connection::{flags, CloseReason, Closer, ConnShared},
    io::{TrackedStream, Transport},
    listener::HygienicListener,
    registry::ConnectionRegistry,
};

/// Turns an accepted socket into the stream the HTTP stack reads: a TLS handshake.
///
/// Implemented for `tokio_rustls::TlsAcceptor` with the `rustls` feature; any other with
/// [`handshake_fn`]. The listener runs each handshake in a task of its own, bounded by the
/// header timeout (a handshake is part of what comes before the first request head), so a slow
/// or silent client never holds up the next accept.
pub trait Handshake: Send + Sync + 'static {
    /// The stream a completed handshake yields; the socket stays reachable beneath it.
    type Io: Transport;
    /// The handshake in progress.
    type Future: Future<Output = io::Result<Self::Io>> + Send + 'static;

    /// Starts the handshake on an accepted socket (the listener's socket policy applied).
    fn handshake(&self, socket: TcpStream) -> Self::Future;
}

#[cfg(feature = "rustls")]
impl Handshake for tokio_rustls::TlsAcceptor {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Future = tokio_rustls::Accept<TcpStream>;

    fn handshake(&self, socket: TcpStream) -> Self::Future {
        self.accept(socket)
    }
}

/// A [`Handshake`] from a function of the accepted socket; see [`handshake_fn`].
#[derive(Clone, Copy)]
pub struct HandshakeFn<F>(F);

impl<F> fmt::Debug for HandshakeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeFn").finish_non_exhaustive()
    }
}

/// A [`Handshake`] from a function of the accepted socket, for a TLS library other than
/// rustls (or anything else that wraps the socket).
pub fn handshake_fn<F, Fut, IO>(f: F) -> HandshakeFn<F>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: Transport,
{
    HandshakeFn(f)
}

impl<F, Fut, IO> Handshake for HandshakeFn<F>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: Transport,
{
    type Io = IO;
    type Future = Fut;

    fn handshake(&self, socket: TcpStream) -> Fut {
        (self.0)(socket)
    }
}

/// A [`HygienicListener`] whose connections go through a [`Handshake`] (TLS) before they are
/// served, tracked above it. From [`HygienicListener::with_handshake`].
///
/// A connection is tracked from accept: while its handshake runs it counts as `new`, and one
/// that fails is closed and counted (`handshake_failed`; `header_timeout` when it took longer
/// than the header timeout; `peer_closed` or `peer_reset` when the peer went away). Handshakes
/// in progress are bounded by the listener's `max_connections`, like every connection.
pub struct HandshakeListener<H: Handshake> {
    listener: HygienicListener,
    handshake: Arc<H>,
    pending: JoinSet<Option<(TrackedStream<H::Io>, SocketAddr)>>,
}

impl<H: Handshake> fmt::Debug for HandshakeListener<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeListener")
            .field("listener", &self.listener)
            .field("handshakes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl HygienicListener {
    /// Runs `handshake` (a `tokio_rustls::TlsAcceptor`, or [`handshake_fn`]) on every accepted
    /// connection, and tracks the stream it yields: the tracking sits above TLS, so every
    /// limit and count holds exactly as over plain TCP, while the socket policy, FIN order,
    /// resets and the census still work on the socket beneath.
    pub fn with_handshake<H: Handshake>(self, handshake: H) -> HandshakeListener<H> {
        HandshakeListener {
            listener: self,
            handshake: Arc::new(handshake),
            pending: JoinSet::new(),
        }
    }
}

impl<H: Handshake> HandshakeListener<H> {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The registry of this listener's connections.
    pub fn registry(&self) -> &ConnectionRegistry {
        self.listener.registry()
    }

    /// Handshakes in progress.
    pub fn handshakes(&self) -> usize {
        self.pending.len()
    }

    /// The next connection whose handshake completed. Accepts while handshakes run, each in a
    /// task of its own; never fails (see [`HygienicListener::accept`]).
    pub async fn accept(&mut self) -> (TrackedStream<H::Io>, SocketAddr) {
        loop {
            tokio::select! {
                biased;
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Ok(Some(ready)) = done {
                        return ready;
                    }
                }
                (socket, conn, permit, peer) = self.listener.accept_socket() => {
                    let handshake = self.handshake.handshake(socket);
                    self.pending.spawn(complete::<H>(handshake, conn, permit, peer));
                }
            }
        }
    }

    /// The connections as a stream, for servers that take one (tonic's
    /// `serve_with_incoming`). Never yields an error.
    pub fn into_incoming(
        self,
    ) -> impl futures_util::Stream<Item = io::Result<TrackedStream<H::Io>>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.accept().await;
            Some((Ok(stream), listener))
        })
    }
}

/// Waits for a handshake within the header timeout, or until the listener shuts down; the
/// tracked stream, or the close accounted.
async fn complete<H: Handshake>(
    handshake: H::Future,
    conn: Arc<ConnShared>,
    permit: Option<OwnedSemaphorePermit>,
    peer: SocketAddr,
) -> Option<(TrackedStream<H::Io>, SocketAddr)> {
    let deadline = conn.config.limits.header_timeout().map(|t| conn.opened + t);
    let ended = tokio::select! {
        res = handshake => match res {
            Ok(io) => return Some((TrackedStream::new(io, conn, permit), peer)),
            Err(e) => failed(&e),
        },
        () = sleep_until(deadline) => (Closer::Timeout, CloseReason::HeaderTimeout),
        reason = retired(&conn) => (Closer::Local, reason),
    };
    let (closer, reason) = ended;
    tracing::debug!(%peer, reason = reason.as_str(), "connection closed before its handshake completed");
    conn.observer.closed(&conn, closer, reason, false, 0);
    None
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the connection is retired (shutdown) or cut before it could serve anything.
async fn retired(conn: &ConnShared) -> CloseReason {
    loop {
        let notified = conn.driver.notified();
        if conn.has(flags::CUT) {
            return CloseReason::ShutdownDeadline;
        }
        if conn.is_retiring() {
            return conn.retire_reason().unwrap_or(CloseReason::Shutdown);
        }
        notified.await;
    }
}

/// Who closed first and why, from the error a handshake ended with.
fn failed(e: &io::Error) -> (Closer, CloseReason) {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => (Closer::Peer, CloseReason::PeerClosed),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            (Closer::Reset, CloseReason::PeerReset)
        }
        _ => (Closer::Error, CloseReason::HandshakeFailed),
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::HygienicListener {}
    impl<H: super::Handshake> Sealed for super::HandshakeListener<H> {}
}

/// A listener whose connections come out tracked: a [`HygienicListener`], or one with a
/// [handshake](HygienicListener::with_handshake). What [`Server`](super::Server) serves.
pub trait TrackedListener: sealed::Sealed + Send + 'static {
    /// What the tracked streams read and write.
    type Io: Transport;

    /// The next connection, tracked (see [`HygienicListener::accept`]).
    fn accept(&mut self) -> impl Future<Output = (TrackedStream<Self::Io>, SocketAddr)> + Send;

    /// The registry of the listener's connections.
    fn registry(&self) -> &ConnectionRegistry;
}

impl TrackedListener for HygienicListener {
    type Io = TcpStream;

    fn accept(&mut self) -> impl Future<Output = (TrackedStream, SocketAddr)> + Send {
        HygienicListener::accept(self)
    }

    fn registry(&self) -> &ConnectionRegistry {
        HygienicListener::registry(self)
    }
}

impl<H: Handshake> TrackedListener for HandshakeListener<H> {
    type Io = H::Io;

    fn accept(&mut self) -> impl Future<Output = (TrackedStream<H::Io>, SocketAddr)> + Send {
        HandshakeListener::accept(self)
    }

    fn registry(&self) -> &ConnectionRegistry {
        HandshakeListener::registry(self)
    }
}
