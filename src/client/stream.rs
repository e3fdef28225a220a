//! The stream beneath a client connection: the TCP socket, or TLS over it.

use std::{
    fmt,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::transport::Transport;

/// What a [`HygienicClient`](super::HygienicClient)'s connection reads and writes: the TCP
/// stream of an `http://` upstream, TLS over it for an `https://` one, or what a connector of
/// your own ([`ClientBuilder::connector`](super::ClientBuilder::connector)) made. Either way
/// the socket is reachable ([`Transport::socket`]), so policy, FIN order and resets work the
/// same.
pub struct UpstreamIo(Inner);

enum Inner {
    Tcp(TcpStream),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Custom(Box<dyn Transport>),
}

impl UpstreamIo {
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        Self(Inner::Tcp(stream))
    }

    #[cfg(feature = "rustls")]
    pub(crate) fn tls(stream: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self(Inner::Tls(Box::new(stream)))
    }

    pub(crate) fn custom(stream: Box<dyn Transport>) -> Self {
        Self(Inner::Custom(stream))
    }

    /// The protocol the server chose by ALPN (`h2`, `http/1.1`), over the crate's own TLS.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.0 {
            #[cfg(feature = "rustls")]
            Inner::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }
}

impl fmt::Debug for UpstreamIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamIo")
            .field("tls", &Transport::is_tls(self))
            .field("socket", self.socket())
            .finish()
    }
}

impl Transport for UpstreamIo {
    fn socket(&self) -> &TcpStream {
        match &self.0 {
            Inner::Tcp(s) => s,
            #[cfg(feature = "rustls")]
            Inner::Tls(tls) => tls.get_ref().0,
            Inner::Custom(c) => c.socket(),
        }
    }

    fn is_tls(&self) -> bool {
        match &self.0 {
            Inner::Tcp(_) => false,
            #[cfg(feature = "rustls")]
            Inner::Tls(_) => true,
            Inner::Custom(c) => c.is_tls(),
        }
    }

    fn negotiated_h2(&self) -> bool {
        match &self.0 {
            Inner::Tcp(_) => false,
            #[cfg(feature = "rustls")]
            Inner::Tls(tls) => tls.negotiated_h2(),
            Inner::Custom(c) => c.negotiated_h2(),
        }
    }
}

/// Calls `$method` on whichever stream is inside.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.get_mut().0 {
            Inner::Tcp($s) => $call,
            #[cfg(feature = "rustls")]
            Inner::Tls($s) => $call,
            Inner::Custom($s) => $call,
        }
    };
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Inner::Tls(s) => s.is_write_vectored(),
            Inner::Custom(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
