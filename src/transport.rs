//! What a tracked connection reads and writes: the TCP stream itself, or a layer over it (TLS)
//! that keeps the socket beneath reachable.

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

/// The byte stream under a tracked connection (a server's
/// [`TrackedStream`](crate::server::TrackedStream), a client's
/// [`UpstreamStream`](crate::client::UpstreamStream)): the [`TcpStream`] itself, or a layer
/// over it such as TLS.
///
/// The tracking sits above the layer, so it follows the HTTP bytes themselves (framing,
/// message boundaries, limits) whatever the layer does to them, while the socket beneath stays
/// reachable for what only it can tell (who sent FIN first, the bytes waiting in its send
/// queue) or do (close with a reset, carry the socket policy). Implemented for `TcpStream`
/// and, with the `rustls` feature, for `tokio_rustls`'s server and client `TlsStream` over any
/// transport; implement it for another TLS library's stream by returning the socket it wraps.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket beneath.
    fn socket(&self) -> &TcpStream;

    /// Whether it runs over TLS. Default: `false`.
    fn is_tls(&self) -> bool {
        false
    }

    /// Whether HTTP/2 was chosen for it by ALPN. A client connection that says so speaks
    /// HTTP/2; the server's side reads the connection's first bytes instead. Default: `false`.
    fn negotiated_h2(&self) -> bool {
        false
    }
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

    fn is_tls(&self) -> bool {
        true
    }

    fn negotiated_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

#[cfg(feature = "rustls")]
impl<IO: Transport> Transport for tokio_rustls::client::TlsStream<IO> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0.socket()
    }

    fn is_tls(&self) -> bool {
        true
    }

    fn negotiated_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn socket(&self) -> &TcpStream {
        (**self).socket()
    }

    fn is_tls(&self) -> bool {
        (**self).is_tls()
    }

    fn negotiated_h2(&self) -> bool {
        (**self).negotiated_h2()
    }
}
