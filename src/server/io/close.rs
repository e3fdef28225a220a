//! How a tracked stream ends: who closed first and why, whether with a reset, and the
//! lingering close that keeps unread input from turning our FIN into a reset.

use std::{sync::atomic::Ordering, time::Duration};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{TrackedStream, Transport};
use crate::{
    policy::Linger,
    server::connection::{flags, CloseReason, Closer},
    sys,
};

impl<IO: Transport> TrackedStream<IO> {
    /// True when the peer's FIN arrived before ours (read as EOF, or waiting unread: the kernel
    /// then holds the socket in CLOSE_WAIT).
    pub(super) fn note_fin_order(&mut self) {
        if self.peer_fin_first {
            return;
        }
        self.peer_fin_first = self
            .inner
            .as_ref()
            .is_some_and(|s| sys::peer_sent_fin(s.socket()));
    }

    /// Who closed first and why. On HTTP/2 a close starts with GOAWAY: a peer that sent it
    /// before us closed first, whichever FIN then went out first.
    fn close_info(&self) -> (Closer, CloseReason) {
        let c = self.shared();
        let peer_goaway = self.life.wire.h2().is_some_and(|h| h.peer_goaway_first);
        let explicit = match c.close_reason() {
            None | Some(CloseReason::ServerClosed) if peer_goaway => {
                return (Closer::Peer, CloseReason::PeerClosed)
            }
            r => r,
        };
        let reason = match explicit {
            Some(r) if r.forced_closer().is_some() => r,
            Some(r @ (CloseReason::IdleTimeout | CloseReason::MaxAge)) => r,
            _ if c.is_retiring() => c.retire_reason().unwrap_or(CloseReason::Shutdown),
            Some(r) => r,
            None if self.peer_fin_first => CloseReason::PeerClosed,
            None => CloseReason::ServerClosed,
        };
        let closer = reason.forced_closer().unwrap_or(if self.peer_fin_first {
            Closer::Peer
        } else {
            Closer::Local
        });
        (closer, reason)
    }

    pub(super) fn wants_abort(&self) -> bool {
        self.abort
            || (self.shared().config.policy.linger() == Linger::Abort
                && !self.shared().has(flags::PEER_FIN)
                && self.life.wire.at_boundary())
    }
}

impl<IO: Transport> Drop for TrackedStream<IO> {
    fn drop(&mut self) {
        if !self.shutdown_started {
            self.note_fin_order();
        }
        let (closer, reason) = self.close_info();
        let abort = self.abort || (self.wants_abort() && reason.forced_closer().is_none());
        let c = self.conn.0.clone();
        let mut aborted = false;
        if let Some(stream) = self.inner.take() {
            if abort {
                // Setting SO_LINGER to zero makes close() send RST at once; it never blocks.
                aborted = SockRef::from(stream.socket())
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
                drop(stream);
            } else if let (Linger::Graceful(limit), false) =
                (c.config.policy.linger(), c.has(flags::PEER_FIN))
            {
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(lingering_close(stream, limit));
                    }
                    Err(_) => drop(stream),
                }
            } else {
                drop(stream);
            }
        }
        let wire = &self.life.wire;
        c.requests.store(wire.requests(), Ordering::Release);
        c.answered.store(wire.answered(), Ordering::Release);
        c.observer
            .closed(&c, closer, reason, aborted, wire.unanswered());
    }
}

/// Sends FIN, then reads and discards what the peer still sends until it closes or `limit`
/// passes, so that unread input does not turn our close into a reset.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, limit: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(limit, async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 512];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
