//! What a connection knows of the listener it belongs to: the settings every connection of the
//! listener shares, and an observer it reports to. The registry implements the observer; a
//! connection never reaches into it.

use std::sync::{atomic::AtomicBool, Mutex, PoisonError};

use super::{
    connection::{CloseReason, Closer, ConnShared, ConnState},
    limits::ConnectionLimits,
};
use crate::{conn::lifecycle, policy::SocketPolicy};

/// The settings every connection of one listener shares.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    pub(crate) limits: ConnectionLimits,
    pub(crate) policy: SocketPolicy,
    /// The limits as the connection core takes them.
    pub(crate) core: lifecycle::Limits,
    /// `Keep-Alive: timeout=N`, when advertised.
    pub(crate) keep_alive_value: Option<http::HeaderValue>,
    /// Whether connections report every state change to the observer (someone subscribed to
    /// the listener's events); otherwise only their close. Set once, never cleared.
    pub(crate) report_transitions: AtomicBool,
}

impl ConnConfig {
    pub(crate) fn new(limits: ConnectionLimits, policy: SocketPolicy) -> Self {
        Self {
            core: limits.core(),
            keep_alive_value: limits.keep_alive_header().and_then(|v| static_value(&v)),
            limits,
            policy,
            report_transitions: AtomicBool::new(false),
        }
    }
}

/// Most distinct values [`static_value`] keeps for the life of the process; past them, values
/// are made the ordinary way.
const MAX_STATIC_VALUES: usize = 64;

/// `v` as a header value whose bytes are `'static`: cloning it for every response is a copy of
/// a pointer and a length, where a value made from a `String` shares its bytes under an atomic
/// count (an increment per clone, a decrement per drop). Each distinct value is made once per
/// process and kept for its life: a listener's `Keep-Alive` value is `timeout=N` for its idle
/// timeout in seconds, and a process uses a handful of them; at most [`MAX_STATIC_VALUES`] are
/// kept, so a process that makes listeners with ever new timeouts holds a bounded few bytes. A
/// value past that bound, or valid but refused by `HeaderValue::from_static` (bytes past
/// ASCII), is made as before, its bytes shared under a count. `None` when `v` is not a valid
/// header value.
fn static_value(v: &str) -> Option<http::HeaderValue> {
    static MADE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let value = http::HeaderValue::from_str(v).ok()?;
    // What `from_static` takes (it panics on anything else): visible ASCII and tabs.
    if !v.bytes().all(|b| b == b'\t' || (32..127).contains(&b)) {
        return Some(value);
    }
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    let s = match made.iter().find(|s| **s == v) {
        Some(s) => *s,
        None if made.len() < MAX_STATIC_VALUES => {
            let s: &'static str = Box::leak(v.into());
            made.push(s);
            s
        }
        None => return Some(value),
    };
    Some(http::HeaderValue::from_static(s))
}

/// What a connection reports, and the one thing it asks (whether the listener is shutting
/// down).
pub(crate) trait ConnObserver: Send + Sync {
    /// The connection moved from one state to another; reported only while
    /// [`ConnConfig::report_transitions`] is set.
    fn transition(&self, conn: &ConnShared, from: ConnState, to: ConnState);
    /// The connection closed: who closed first, why, whether with a reset, and how many
    /// requests read were never answered.
    fn closed(
        &self,
        conn: &ConnShared,
        closer: Closer,
        reason: CloseReason,
        aborted: bool,
        unanswered: u64,
    );
    /// The peer half-closed while requests it sent were unanswered.
    fn half_closed_in_flight(&self);
    /// An HTTP/2 connection was closed after the GOAWAY grace.
    fn goaway_grace_expired(&self);
    /// A connection answered a request that never passed through the layer
    /// ([`TrackConnection`](super::TrackConnection)): its limits hold, request-level tracking
    /// does not.
    fn served_without_layer(&self);
    /// The listener is shutting down: every connection retires.
    fn is_shutting_down(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_values_are_made_once_each_and_refuse_what_a_header_cannot_hold() {
        let a = static_value("timeout=75").unwrap();
        let b = static_value("timeout=75").unwrap();
        assert_eq!(a, "timeout=75");
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "made once");
        assert_eq!(static_value("timeout=5").unwrap(), "timeout=5");
        assert!(static_value("a\nb").is_none());
        // Valid, but not for `from_static`: made the other way, not a panic.
        assert_eq!(
            static_value("timeout=5, é").unwrap().as_bytes(),
            "timeout=5, é".as_bytes()
        );
        // However many distinct values come, the kept ones stay bounded, and every value is
        // still right.
        for n in 0..(MAX_STATIC_VALUES as u32 * 3) {
            let v = format!("timeout={}", 1_000_000 + n);
            assert_eq!(static_value(&v).unwrap(), v.as_str());
        }
        let first = static_value("timeout=75").unwrap();
        assert_eq!(
            first.as_bytes().as_ptr(),
            a.as_bytes().as_ptr(),
            "still kept"
        );
        let late = format!("timeout={}", 1_000_000 + MAX_STATIC_VALUES as u32 * 3 - 1);
        let (x, y) = (static_value(&late).unwrap(), static_value(&late).unwrap());
        assert_ne!(
            x.as_bytes().as_ptr(),
            y.as_bytes().as_ptr(),
            "past the bound: not kept"
        );
    }
}
