//! One socket policy, applied the same way to listening, accepted and outbound sockets.
//!
//! A [`SocketPolicy`] describes the TCP options that decide how a connection behaves when the
//! network or the peer misbehaves: keepalive, `TCP_USER_TIMEOUT`, linger, Nagle, buffer sizes,
//! `SO_REUSEADDR` and the listen backlog. It is validated when built, so a policy that cannot work
//! (a keepalive interval of zero, a user timeout that would cut keepalive short, …) is a
//! [`PolicyError`] naming the setting, never a surprise in production.
//!
//! Applying it returns an [`ApplyReport`]: what was applied and what the kernel refused. Refusals
//! are also logged (once per option and side at `warn`, then at `debug`) and counted in
//! `conn_hygiene_socket_policy_refusals_total`. [`EffectiveOptions::read`] reads the values back
//! with `getsockopt`, so tests and operators can check what the kernel really holds.
//!
//! # The default preset, and why
//!
//! | setting | default | reasoning |
//! |---|---|---|
//! | keepalive | idle 60 s, interval 10 s, 6 probes | A peer that vanished (power loss, a NAT or load balancer that dropped the flow) is noticed within 60 s + 6 × 10 s = 2 min instead of the kernel's 2 h 11 min. 60 s idle also keeps NAT and load-balancer flow entries alive, most of which expire idle flows after 350 s or more. |
//! | user timeout | 120 s | Bounds how long sent data may stay unacknowledged before the connection is dropped (the kernel otherwise retransmits for about 15 min). Equal to the keepalive probing window, so neither cuts the other short. |
//! | nodelay | on | Request/response protocols write small messages; Nagle's algorithm with delayed ACKs adds up to 40 ms per exchange. |
//! | linger | [`Linger::Off`] | `close()` returns at once and the kernel delivers what is queued. [`Linger::Abort`] (RST, no TIME_WAIT) is opt-in and only ever used on a connection idle at a message boundary. |
//! | buffers | kernel autotuning | Setting `SO_RCVBUF`/`SO_SNDBUF` turns autotuning off for the socket; only set them with a measured reason. |
//! | reuse address | on (listeners and bound outbound sockets) | A restarted server can bind its port while old connections sit in TIME_WAIT. |
//! | backlog | 4096 | The accept queue absorbs bursts while the accept loop is busy. The kernel caps it at `net.core.somaxconn` (4096 on Linux 5.4+, 128 before), and the listener reports the effective value. |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use conn_hygiene::policy::{Keepalive, Linger, PolicyError, SocketPolicy};
//!
//! let policy = SocketPolicy::builder()
//!     .keepalive(Some(Keepalive::new(Duration::from_secs(30), Duration::from_secs(5), 4)))
//!     .user_timeout(Some(Duration::from_secs(50)))
//!     .linger(Linger::Abort)
//!     .build()?;
//! assert_eq!(policy.keepalive().unwrap().probing_window(), Duration::from_secs(50));
//!
//! // A user timeout shorter than the probing window would cut keepalive short.
//! let err = SocketPolicy::builder()
//!     .keepalive(Some(Keepalive::new(Duration::from_secs(30), Duration::from_secs(5), 4)))
//!     .user_timeout(Some(Duration::from_secs(10)))
//!     .build()
//!     .unwrap_err();
//! assert!(matches!(err, PolicyError::UserTimeout { .. }));
//! assert!(err.to_string().contains("user_timeout = 10s: expected at least"));
//! # Ok::<(), PolicyError>(())
//! ```

mod apply;
mod error;

use std::time::Duration;

pub use self::apply::{
    ApplyReport, BindError, EffectiveBacklog, EffectiveOptions, ListenerConfigError, Outcome,
    SockOpt, SocketSide,
};
pub use self::error::PolicyError;

#[cfg(feature = "server")]
pub(crate) use self::apply::read_somaxconn;

/// TCP keepalive parameters: how long a connection may sit idle before the kernel probes the
/// peer, how often it probes, and how many unanswered probes drop the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`).
    pub idle: Duration,
    /// Time between probes (`TCP_KEEPINTVL`).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    pub probes: u32,
}

impl Keepalive {
    /// Keepalive with the given idle time, probe interval and probe count.
    pub const fn new(idle: Duration, interval: Duration, probes: u32) -> Self {
        Self {
            idle,
            interval,
            probes,
        }
    }

    /// The longest a dead peer goes unnoticed on an idle connection: `idle + interval * probes`.
    pub fn probing_window(&self) -> Duration {
        self.idle + self.interval.saturating_mul(self.probes)
    }
}

/// What happens to a socket when it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Linger {
    /// The kernel default: `close()` returns at once; queued data is still delivered and the
    /// side that closes first holds TIME_WAIT.
    #[default]
    Off,
    /// Lingering close without blocking a thread: after our FIN, keep reading (and discarding)
    /// what the peer still sends, for up to this long, before the socket is released. This avoids
    /// the reset that closing with unread data would send, which can destroy a response the peer
    /// has not read yet. `SO_LINGER` with a non-zero timeout is never used: it would block the
    /// closing thread.
    Graceful(Duration),
    /// Close with a reset (`SO_LINGER` 0): no FIN handshake and no TIME_WAIT on either side.
    /// Applied only to a connection that is idle at a message boundary; any other close falls
    /// back to an ordinary close, so no response is ever cut.
    Abort,
}

/// The socket options applied to every socket a listener accepts or a client opens.
///
/// Build one with [`SocketPolicy::builder`], or take the field-practice preset with
/// [`SocketPolicy::default`]; see the [module docs](self) for the reasoning behind each value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPolicy {
    keepalive: Option<Keepalive>,
    linger: Linger,
    nodelay: bool,
    user_timeout: Option<Duration>,
    recv_buffer_size: Option<usize>,
    send_buffer_size: Option<usize>,
    reuse_address: bool,
    backlog: u32,
}

impl Default for SocketPolicy {
    fn default() -> Self {
        Self {
            keepalive: Some(Keepalive::new(
                Duration::from_secs(60),
                Duration::from_secs(10),
                6,
            )),
            linger: Linger::Off,
            nodelay: true,
            user_timeout: Some(Duration::from_secs(120)),
            recv_buffer_size: None,
            send_buffer_size: None,
            reuse_address: true,
            backlog: 4096,
        }
    }
}

impl SocketPolicy {
    /// A builder starting from the default preset.
    pub fn builder() -> SocketPolicyBuilder {
        SocketPolicyBuilder {
            policy: Self::default(),
        }
    }

    /// Keepalive parameters, `None` when keepalive is off.
    pub fn keepalive(&self) -> Option<Keepalive> {
        self.keepalive
    }

    /// What happens on close.
    pub fn linger(&self) -> Linger {
        self.linger
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// `TCP_USER_TIMEOUT`, `None` for the kernel default.
    pub fn user_timeout(&self) -> Option<Duration> {
        self.user_timeout
    }

    /// `SO_RCVBUF`, `None` for kernel autotuning.
    pub fn recv_buffer_size(&self) -> Option<usize> {
        self.recv_buffer_size
    }

    /// `SO_SNDBUF`, `None` for kernel autotuning.
    pub fn send_buffer_size(&self) -> Option<usize> {
        self.send_buffer_size
    }

    /// Whether `SO_REUSEADDR` is set on listening and bound outbound sockets.
    pub fn reuse_address(&self) -> bool {
        self.reuse_address
    }

    /// The listen backlog requested from the kernel.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// The longest a dead peer can go unnoticed: the keepalive probing window on an idle
    /// connection, the user timeout when data is unacknowledged; `None` when neither is set.
    pub fn dead_peer_bound(&self) -> Option<Duration> {
        match (
            self.keepalive.map(|k| k.probing_window()),
            self.user_timeout,
        ) {
            (Some(k), Some(u)) => Some(k.max(u)),
            (k, u) => k.or(u),
        }
    }
}

/// Builds a validated [`SocketPolicy`]; every setter starts from the default preset.
#[derive(Debug, Clone)]
pub struct SocketPolicyBuilder {
    policy: SocketPolicy,
}

const MAX_KEEPALIVE_SECS: u64 = 32767;
const MAX_KEEPALIVE_PROBES: u32 = 127;
const MAX_USER_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 3600);
const MAX_LINGER: Duration = Duration::from_secs(300);
const BUFFER_RANGE: std::ops::RangeInclusive<usize> = 1024..=256 * 1024 * 1024;

impl SocketPolicyBuilder {
    /// TCP keepalive; `None` turns it off. Default: idle 60 s, interval 10 s, 6 probes.
    pub fn keepalive(mut self, keepalive: impl Into<Option<Keepalive>>) -> Self {
        self.policy.keepalive = keepalive.into();
        self
    }

    /// Close behaviour. Default: [`Linger::Off`].
    pub fn linger(mut self, linger: Linger) -> Self {
        self.policy.linger = linger;
        self
    }

    /// `TCP_NODELAY`. Default: on.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.policy.nodelay = nodelay;
        self
    }

    /// `TCP_USER_TIMEOUT`; `None` leaves the kernel default. Default: 120 s.
    pub fn user_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.policy.user_timeout = timeout.into();
        self
    }

    /// `SO_RCVBUF` in bytes; `None` keeps kernel autotuning. Default: `None`.
    pub fn recv_buffer_size(mut self, size: impl Into<Option<usize>>) -> Self {
        self.policy.recv_buffer_size = size.into();
        self
    }

    /// `SO_SNDBUF` in bytes; `None` keeps kernel autotuning. Default: `None`.
    pub fn send_buffer_size(mut self, size: impl Into<Option<usize>>) -> Self {
        self.policy.send_buffer_size = size.into();
        self
    }

    /// `SO_REUSEADDR` on listening and bound outbound sockets. Default: on.
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.policy.reuse_address = reuse;
        self
    }

    /// The listen backlog. Default: 4096. The kernel caps it at `net.core.somaxconn`.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.policy.backlog = backlog;
        self
    }

    /// Validates the settings and returns the policy.
    pub fn build(self) -> Result<SocketPolicy, PolicyError> {
        let p = self.policy;
        let whole_secs =
            |d: Duration| d.subsec_nanos() == 0 && (1..=MAX_KEEPALIVE_SECS).contains(&d.as_secs());
        if let Some(k) = p.keepalive {
            if !whole_secs(k.idle) {
                return Err(PolicyError::KeepaliveIdle { value: k.idle });
            }
            if !whole_secs(k.interval) {
                return Err(PolicyError::KeepaliveInterval { value: k.interval });
            }
            if k.probes == 0 || k.probes > MAX_KEEPALIVE_PROBES {
                return Err(PolicyError::KeepaliveProbes { value: k.probes });
            }
        }
        if let Some(t) = p.user_timeout {
            let window = p.keepalive.map(|k| k.probing_window());
            let too_short = window.is_some_and(|w| t < w);
            if t < Duration::from_millis(1) || t > MAX_USER_TIMEOUT || too_short {
                return Err(PolicyError::UserTimeout {
                    value: t,
                    probing_window: window,
                });
            }
        }
        if let Linger::Graceful(t) = p.linger {
            if t < Duration::from_millis(1) || t > MAX_LINGER {
                return Err(PolicyError::LingerTimeout { value: t });
            }
        }
        if let Some(s) = p.recv_buffer_size {
            if !BUFFER_RANGE.contains(&s) {
                return Err(PolicyError::RecvBufferSize { value: s });
            }
        }
        if let Some(s) = p.send_buffer_size {
            if !BUFFER_RANGE.contains(&s) {
                return Err(PolicyError::SendBufferSize { value: s });
            }
        }
        if p.backlog == 0 || p.backlog > 65535 {
            return Err(PolicyError::Backlog { value: p.backlog });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(idle: u64, interval: u64, probes: u32) -> Option<Keepalive> {
        Some(Keepalive::new(
            Duration::from_secs(idle),
            Duration::from_secs(interval),
            probes,
        ))
    }

    #[test]
    fn default_preset_is_valid_and_consistent() {
        let d = SocketPolicy::default();
        let rebuilt = SocketPolicy::builder().build().unwrap();
        assert_eq!(d, rebuilt);
        assert_eq!(
            d.keepalive().unwrap().probing_window(),
            Duration::from_secs(120)
        );
        assert_eq!(d.user_timeout(), Some(Duration::from_secs(120)));
        assert_eq!(d.dead_peer_bound(), Some(Duration::from_secs(120)));
        assert_eq!(d.backlog(), 4096);
    }

    #[test]
    fn each_bad_setting_names_itself_and_its_value() {
        let cases: Vec<(SocketPolicyBuilder, PolicyError, &str)> = vec![
            (
                SocketPolicy::builder().keepalive(ka(0, 10, 3)),
                PolicyError::KeepaliveIdle {
                    value: Duration::ZERO,
                },
                "keepalive.idle = 0ns",
            ),
            (
                SocketPolicy::builder().keepalive(ka(60, 0, 3)),
                PolicyError::KeepaliveInterval {
                    value: Duration::ZERO,
                },
                "keepalive.interval = 0ns",
            ),
            (
                SocketPolicy::builder()
                    .keepalive(ka(60, 10, 0))
                    .user_timeout(None),
                PolicyError::KeepaliveProbes { value: 0 },
                "keepalive.probes = 0",
            ),
            (
                SocketPolicy::builder()
                    .keepalive(ka(60, 10, 500))
                    .user_timeout(None),
                PolicyError::KeepaliveProbes { value: 500 },
                "keepalive.probes = 500",
            ),
            (
                SocketPolicy::builder().keepalive(ka(40000, 10, 3)),
                PolicyError::KeepaliveIdle {
                    value: Duration::from_secs(40000),
                },
                "keepalive.idle = 40000s",
            ),
            (
                SocketPolicy::builder().backlog(0),
                PolicyError::Backlog { value: 0 },
                "backlog = 0",
            ),
            (
                SocketPolicy::builder().recv_buffer_size(Some(0)),
                PolicyError::RecvBufferSize { value: 0 },
                "recv_buffer_size = 0 bytes",
            ),
            (
                SocketPolicy::builder().send_buffer_size(Some(1 << 40)),
                PolicyError::SendBufferSize { value: 1 << 40 },
                "send_buffer_size = 1099511627776 bytes",
            ),
            (
                SocketPolicy::builder().linger(Linger::Graceful(Duration::ZERO)),
                PolicyError::LingerTimeout {
                    value: Duration::ZERO,
                },
                "linger = Graceful(0ns)",
            ),
        ];
        for (builder, expected, text) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err, expected);
            assert!(
                err.to_string().contains(text),
                "{err} should contain {text}"
            );
        }
    }

    #[test]
    fn keepalive_must_be_whole_seconds() {
        let err = SocketPolicy::builder()
            .keepalive(Some(Keepalive::new(
                Duration::from_millis(1500),
                Duration::from_secs(1),
                3,
            )))
            .user_timeout(None)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            PolicyError::KeepaliveIdle {
                value: Duration::from_millis(1500)
            }
        );
    }

    #[test]
    fn user_timeout_shorter_than_probing_window_is_refused() {
        let err = SocketPolicy::builder()
            .keepalive(ka(60, 10, 6))
            .user_timeout(Some(Duration::from_secs(30)))
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            PolicyError::UserTimeout {
                value: Duration::from_secs(30),
                probing_window: Some(Duration::from_secs(120)),
            }
        );
        assert!(err.to_string().contains("probing window"), "{err}");
        // Without keepalive any sane user timeout is fine, zero is not.
        assert!(SocketPolicy::builder()
            .keepalive(None)
            .user_timeout(Some(Duration::from_secs(30)))
            .build()
            .is_ok());
        let zero = SocketPolicy::builder()
            .keepalive(None)
            .user_timeout(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(zero.to_string().contains("user_timeout = 0ns"), "{zero}");
    }
}
