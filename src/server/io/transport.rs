//! What a tracked stream reads and writes: the accepted TCP stream itself, or a layer over it
//! (TLS) that keeps the socket beneath reachable.

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

/// The byte stream under a [`TrackedStream`](super::TrackedStream): the accepted
/// [`TcpStream`], or a layer over it such as TLS.
///
/// The tracking sits above the layer, so it follows the HTTP bytes themselves (framing,
/// request boundaries, limits) whatever the layer does to them, while the socket beneath stays
/// reachable for what only it can tell (who sent FIN first, the bytes waiting in its send
/// queue) or do (close with a reset). Implemented for `TcpStream` and, with the `rustls`
/// feature, for `tokio_rustls::server::TlsStream` over any transport; implement it for another
/// TLS library's stream by returning the socket it wraps.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket beneath.
    fn socket(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

#[cfg(feature = "rustls")]
impl<IO: Transport> Transport for tokio_rustls::server::TlsStream<IO> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0.socket()
    }
}
