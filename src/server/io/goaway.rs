//! The GOAWAY a tracked stream writes itself, for an HTTP/2 connection that retires where no
//! connection driver sends one (under `axum::serve`): closing without it would drop requests
//! the peer sent before it learned of the close.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::AsyncWrite;

/// GOAWAY, last stream `2^31 - 1`, `NO_ERROR`: "no new streams, please", as a graceful
/// shutdown starts (RFC 9113 section 6.8). Every stream the peer opens before it reads this is
/// still served; the connection closes once none is open and the grace has passed.
pub(super) const GOAWAY: [u8; 17] = [
    0, 0, 8, 7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0,
];

/// The part of our own frame not written yet: it goes out before any byte of the stack's.
#[derive(Debug, Default)]
pub(super) struct OwnFrame {
    buf: [u8; GOAWAY.len()],
    at: u8,
    len: u8,
}

impl OwnFrame {
    /// Writes GOAWAY now, as far as the stream takes it; the rest is kept for
    /// [`poll_flush`](Self::poll_flush). False when nothing could be written.
    pub(super) fn write_goaway<W: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        cx: &mut Context<'_>,
    ) -> bool {
        match Pin::new(&mut *stream).poll_write(cx, &GOAWAY) {
            Poll::Ready(Ok(n)) if n > 0 => {
                // A layer that buffers (TLS) sends what it took now if it can.
                let _ = Pin::new(&mut *stream).poll_flush(cx);
                let rest = &GOAWAY[n..];
                self.buf[..rest.len()].copy_from_slice(rest);
                self.at = 0;
                self.len = rest.len() as u8;
                true
            }
            _ => false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.at == self.len
    }

    /// Writes what is left of the frame.
    pub(super) fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let rest = &self.buf[usize::from(self.at)..usize::from(self.len)];
            match Pin::new(&mut *socket).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.at += n as u8,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}
