use std::{
    fmt, io,
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use super::{Keepalive, SocketPolicy};
use crate::metrics::names;

/// A socket option the policy manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockOpt {
    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`.
    Keepalive,
    /// `SO_LINGER`.
    Linger,
    /// `TCP_NODELAY`.
    NoDelay,
    /// `TCP_USER_TIMEOUT`.
    UserTimeout,
    /// `SO_RCVBUF`.
    RecvBuffer,
    /// `SO_SNDBUF`.
    SendBuffer,
    /// `SO_REUSEADDR`.
    ReuseAddress,
}

impl SockOpt {
    /// Every option, in report order.
    pub const ALL: [SockOpt; 7] = [
        SockOpt::Keepalive,
        SockOpt::Linger,
        SockOpt::NoDelay,
        SockOpt::UserTimeout,
        SockOpt::RecvBuffer,
        SockOpt::SendBuffer,
        SockOpt::ReuseAddress,
    ];

    /// The option's name as used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            SockOpt::Keepalive => "keepalive",
            SockOpt::Linger => "linger",
            SockOpt::NoDelay => "nodelay",
            SockOpt::UserTimeout => "user_timeout",
            SockOpt::RecvBuffer => "recv_buffer",
            SockOpt::SendBuffer => "send_buffer",
            SockOpt::ReuseAddress => "reuse_address",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SockOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of socket a policy was applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketSide {
    /// A listening socket.
    Listener,
    /// A socket returned by `accept`.
    Accepted,
    /// A socket opened by a client.
    Outbound,
}

impl SocketSide {
    /// The side's name as used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            SocketSide::Listener => "listener",
            SocketSide::Accepted => "accepted",
            SocketSide::Outbound => "outbound",
        }
    }
}

/// What became of one option when a policy was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// The policy leaves this option alone on this side.
    #[default]
    NotRequested,
    /// The kernel accepted the value.
    Applied,
    /// The kernel refused it, with this OS error number (`errno`).
    Refused(i32),
}

/// What [`SocketPolicy::apply`] did: one [`Outcome`] per [`SockOpt`]. Plain data, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyReport {
    outcomes: [Outcome; 7],
}

impl ApplyReport {
    /// The outcome for one option.
    pub fn get(&self, opt: SockOpt) -> Outcome {
        self.outcomes[opt.index()]
    }

    /// Options the kernel applied.
    pub fn applied(&self) -> impl Iterator<Item = SockOpt> + '_ {
        SockOpt::ALL
            .into_iter()
            .filter(|o| self.get(*o) == Outcome::Applied)
    }

    /// Options the kernel refused, with the OS error of each.
    pub fn refused(&self) -> impl Iterator<Item = (SockOpt, io::Error)> + '_ {
        SockOpt::ALL.into_iter().filter_map(|o| match self.get(o) {
            Outcome::Refused(errno) => Some((o, io::Error::from_raw_os_error(errno))),
            _ => None,
        })
    }

    /// True when nothing was refused.
    pub fn is_clean(&self) -> bool {
        self.refused().next().is_none()
    }

    fn set(&mut self, opt: SockOpt, result: io::Result<()>) {
        self.outcomes[opt.index()] = match result {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Refused(e.raw_os_error().unwrap_or(libc::EINVAL)),
        };
    }
}

/// Socket options as the kernel holds them, read back with `getsockopt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveOptions {
    /// Keepalive parameters, `None` when `SO_KEEPALIVE` is off.
    pub keepalive: Option<Keepalive>,
    /// `SO_LINGER`: `None` when off, `Some(ZERO)` for abort-on-close.
    pub linger: Option<Duration>,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `TCP_USER_TIMEOUT`, `None` when 0 (kernel default).
    pub user_timeout: Option<Duration>,
    /// `SO_RCVBUF` as reported (Linux reports twice the value set, for bookkeeping overhead).
    pub recv_buffer_size: usize,
    /// `SO_SNDBUF` as reported (Linux reports twice the value set).
    pub send_buffer_size: usize,
    /// `SO_REUSEADDR`.
    pub reuse_address: bool,
}

impl EffectiveOptions {
    /// Reads the options of a socket (`SockRef::from(&stream)` for any std or tokio socket).
    pub fn read(sock: SockRef<'_>) -> io::Result<Self> {
        let keepalive = if sock.keepalive()? {
            Some(Keepalive::new(
                sock.tcp_keepalive_time()?,
                sock.tcp_keepalive_interval()?,
                sock.tcp_keepalive_retries()?,
            ))
        } else {
            None
        };
        Ok(Self {
            keepalive,
            linger: sock.linger()?,
            nodelay: sock.tcp_nodelay()?,
            user_timeout: user_timeout(&sock)?,
            recv_buffer_size: sock.recv_buffer_size()?,
            send_buffer_size: sock.send_buffer_size()?,
            reuse_address: sock.reuse_address()?,
        })
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn user_timeout(sock: &SockRef<'_>) -> io::Result<Option<Duration>> {
    sock.tcp_user_timeout()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn user_timeout(_sock: &SockRef<'_>) -> io::Result<Option<Duration>> {
    Ok(None)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(sock: &SockRef<'_>, t: Option<Duration>) -> io::Result<()> {
    sock.set_tcp_user_timeout(t)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_sock: &SockRef<'_>, _t: Option<Duration>) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// One bit per (side, option): set once the first refusal was logged at `warn`.
static WARNED: AtomicU32 = AtomicU32::new(0);

impl SocketPolicy {
    /// Applies the policy to a socket and reports each option's outcome.
    ///
    /// Refusals are logged and counted in `conn_hygiene_socket_policy_refusals_total{option,side}`;
    /// they never fail the socket, because every option here is tuning: the socket works without
    /// it. Linger is always left off here: [`Linger::Abort`](super::Linger::Abort) and
    /// [`Linger::Graceful`](super::Linger::Graceful) act at close time, when it is known whether
    /// the connection is idle at a message boundary.
    pub fn apply(&self, sock: SockRef<'_>, side: SocketSide) -> ApplyReport {
        let mut report = ApplyReport::default();
        match self.keepalive {
            Some(k) => {
                let params = TcpKeepalive::new()
                    .with_time(k.idle)
                    .with_interval(k.interval)
                    .with_retries(k.probes);
                report.set(SockOpt::Keepalive, sock.set_tcp_keepalive(&params));
            }
            None => report.set(SockOpt::Keepalive, sock.set_keepalive(false)),
        }
        if side != SocketSide::Listener {
            report.set(SockOpt::Linger, sock.set_linger(None));
            report.set(SockOpt::NoDelay, sock.set_tcp_nodelay(self.nodelay));
            report.set(
                SockOpt::UserTimeout,
                set_user_timeout(&sock, self.user_timeout),
            );
        }
        if let Some(size) = self.recv_buffer_size {
            report.set(SockOpt::RecvBuffer, sock.set_recv_buffer_size(size));
        }
        if let Some(size) = self.send_buffer_size {
            report.set(SockOpt::SendBuffer, sock.set_send_buffer_size(size));
        }
        if side != SocketSide::Accepted {
            report.set(
                SockOpt::ReuseAddress,
                sock.set_reuse_address(self.reuse_address),
            );
        }
        for (opt, err) in report.refused() {
            record_refusal(opt, side, &err);
        }
        report
    }
}

fn record_refusal(opt: SockOpt, side: SocketSide, err: &io::Error) {
    metrics::counter!(names::SOCKET_POLICY_REFUSALS_TOTAL,
        "option" => opt.as_str(), "side" => side.as_str())
    .increment(1);
    let bit = 1u32 << (side as u32 * 8 + opt.index() as u32);
    if WARNED.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        tracing::warn!(option = opt.as_str(), side = side.as_str(), error = %err,
            "kernel refused socket option; the socket works without it (further refusals logged at debug)");
    } else {
        tracing::debug!(option = opt.as_str(), side = side.as_str(), error = %err,
            "kernel refused socket option");
    }
}

/// The accept queue a listener really has: `min(backlog, net.core.somaxconn)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveBacklog {
    /// The backlog passed to `listen()`.
    pub requested: u32,
    /// `net.core.somaxconn` of the listener's network namespace, when it could be read.
    pub somaxconn: Option<u32>,
    /// The accept queue the kernel enforces.
    pub effective: u32,
}

impl EffectiveBacklog {
    /// Combines the requested backlog with the kernel cap.
    pub fn new(requested: u32, somaxconn: Option<u32>) -> Self {
        let effective = somaxconn.map_or(requested, |s| requested.min(s));
        Self {
            requested,
            somaxconn,
            effective,
        }
    }

    /// True when the kernel silently lowered the requested backlog.
    pub fn is_capped(&self) -> bool {
        self.effective < self.requested
    }
}

/// Reads `net.core.somaxconn` for the caller's network namespace.
pub(crate) fn read_somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Why a listener could not be bound: a setting it refuses, or a step of binding the system
/// refused.
///
/// Only steps without which a listener cannot work end up here; refused tuning options are
/// reported in the [`ApplyReport`] instead.
#[derive(Debug)]
pub struct BindError {
    step: &'static str,
    addr: Option<SocketAddr>,
    source: BindSource,
}

#[derive(Debug)]
enum BindSource {
    Io(io::Error),
    // Only a listener has settings to refuse.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Setting(ListenerConfigError),
}

/// A listener setting that cannot work, refused when binding (or adopting a bound listener).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerConfigError {
    /// `max_connections` of 0: nothing would ever be accepted.
    MaxConnections {
        /// The rejected value.
        value: usize,
    },
}

impl fmt::Display for ListenerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaxConnections { value } => write!(
                f,
                "invalid listener: max_connections = {value}: expected at least 1, or None for \
                 no cap"
            ),
        }
    }
}

impl std::error::Error for ListenerConfigError {}

impl BindError {
    pub(crate) fn new(step: &'static str, addr: SocketAddr, source: io::Error) -> Self {
        Self {
            step,
            addr: Some(addr),
            source: BindSource::Io(source),
        }
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn resolve(source: io::Error) -> Self {
        Self {
            step: "resolve the listen address",
            addr: None,
            source: BindSource::Io(source),
        }
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn setting(source: ListenerConfigError) -> Self {
        Self {
            step: "check the listener settings",
            addr: None,
            source: BindSource::Setting(source),
        }
    }

    /// True when the address is already in use.
    pub fn is_addr_in_use(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::AddrInUse)
    }

    /// True when the process may not bind this address (a privileged port, say).
    pub fn is_permission_denied(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::PermissionDenied)
    }

    /// The setting refused, when that is why.
    pub fn invalid_setting(&self) -> Option<&ListenerConfigError> {
        match &self.source {
            BindSource::Setting(e) => Some(e),
            BindSource::Io(_) => None,
        }
    }

    /// The address that was being bound, when it got that far.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    fn io_kind(&self) -> Option<io::ErrorKind> {
        match &self.source {
            BindSource::Io(e) => Some(e.kind()),
            BindSource::Setting(_) => None,
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.addr) {
            (BindSource::Setting(e), _) => fmt::Display::fmt(e, f),
            (BindSource::Io(_), Some(addr)) => write!(f, "failed to {} for {addr}", self.step),
            (BindSource::Io(_), None) => write!(f, "failed to {}", self.step),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            BindSource::Io(e) => Some(e),
            BindSource::Setting(_) => None,
        }
    }
}

impl SocketPolicy {
    /// Creates a non-blocking listening socket with this policy: options set before `bind`
    /// (so buffer sizes shape the window scale the kernel offers), then `listen` with the
    /// policy's backlog. Returns the socket, what the kernel did with each option, and the
    /// effective accept queue; a warning is logged when `net.core.somaxconn` caps it.
    ///
    /// For servers other than the crate's own: `tokio::net::TcpListener::from_std(listener)`.
    pub fn bind_std(
        &self,
        addr: SocketAddr,
    ) -> Result<(std::net::TcpListener, ApplyReport, EffectiveBacklog), BindError> {
        bind_listener(self, addr)
    }
}

fn bind_listener(
    policy: &SocketPolicy,
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, ApplyReport, EffectiveBacklog), BindError> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| BindError::new("create the listening socket", addr, e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| BindError::new("make the listening socket non-blocking", addr, e))?;
    let report = policy.apply(SockRef::from(&socket), SocketSide::Listener);
    socket
        .bind(&addr.into())
        .map_err(|e| BindError::new("bind", addr, e))?;
    let backlog = EffectiveBacklog::new(policy.backlog, read_somaxconn());
    socket
        .listen(policy.backlog as i32)
        .map_err(|e| BindError::new("listen", addr, e))?;
    if backlog.is_capped() {
        tracing::warn!(
            %addr,
            requested = backlog.requested,
            somaxconn = backlog.somaxconn,
            effective = backlog.effective,
            "listen backlog exceeds net.core.somaxconn: the kernel caps the accept queue at \
             {}; raise net.core.somaxconn to get the {} requested",
            backlog.effective,
            backlog.requested
        );
    }
    Ok((socket.into(), report, backlog))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Linger;

    #[test]
    fn applied_values_read_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let policy = SocketPolicy::builder()
            .keepalive(Some(Keepalive::new(
                Duration::from_secs(7),
                Duration::from_secs(3),
                4,
            )))
            .user_timeout(Some(Duration::from_secs(19)))
            .recv_buffer_size(Some(64 * 1024))
            .linger(Linger::Abort)
            .build()
            .unwrap();
        let report = policy.apply(SockRef::from(&stream), SocketSide::Outbound);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.get(SockOpt::SendBuffer), Outcome::NotRequested);
        let eff = EffectiveOptions::read(SockRef::from(&stream)).unwrap();
        assert_eq!(
            eff.keepalive,
            Some(Keepalive::new(
                Duration::from_secs(7),
                Duration::from_secs(3),
                4
            ))
        );
        assert_eq!(eff.user_timeout, Some(Duration::from_secs(19)));
        assert!(eff.nodelay);
        // Abort is applied at close time, never at setup.
        assert_eq!(eff.linger, None);
        assert_eq!(eff.recv_buffer_size, 2 * 64 * 1024);
        assert!(eff.reuse_address);
    }

    #[test]
    fn refusals_are_reported_and_counted() {
        use metrics_util::debugging::DebuggingRecorder;
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A UDP socket refuses the TCP-level options.
        let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let report = metrics::with_local_recorder(&recorder, || {
            SocketPolicy::default().apply(SockRef::from(&udp), SocketSide::Outbound)
        });
        let refused: Vec<SockOpt> = report.refused().map(|(o, _)| o).collect();
        assert!(refused.contains(&SockOpt::NoDelay), "{report:?}");
        assert!(!report.is_clean());
        let snapshot = snapshotter.snapshot().into_vec();
        let nodelay = snapshot
            .iter()
            .find(|(k, ..)| {
                k.key().name() == names::SOCKET_POLICY_REFUSALS_TOTAL
                    && k.key().labels().any(|l| l.value() == "nodelay")
            })
            .expect("refusal counted");
        assert_eq!(nodelay.3, metrics_util::debugging::DebugValue::Counter(1));
    }

    #[test]
    fn effective_backlog_is_min_of_request_and_somaxconn() {
        let b = EffectiveBacklog::new(65535, Some(4096));
        assert_eq!(b.effective, 4096);
        assert!(b.is_capped());
        let b = EffectiveBacklog::new(100, Some(4096));
        assert_eq!(b.effective, 100);
        assert!(!b.is_capped());
        assert_eq!(EffectiveBacklog::new(100, None).effective, 100);
    }

    #[test]
    fn bind_reports_the_failing_step() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let policy = SocketPolicy::builder()
            .reuse_address(false)
            .build()
            .unwrap();
        let err = policy.bind_std(addr).unwrap_err();
        assert!(err.is_addr_in_use(), "{err}");
        assert!(
            err.to_string().starts_with("failed to bind for 127.0.0.1:"),
            "{err}"
        );
    }
}
