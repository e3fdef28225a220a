use std::{fmt, time::Duration};

/// What to do when the peer half-closes (sends FIN) while a request is in flight.
///
/// On an idle connection a FIN always closes the connection at once, so no CLOSE_WAIT is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HalfClose {
    /// Let the handler finish and send its response, then close. Nothing the peer asked for is
    /// lost; a client may legitimately shut down its sending side after the request.
    #[default]
    Finish,
    /// Cancel the handler (its future is dropped) and close.
    Cancel,
}

/// Limits a listener enforces on each connection.
///
/// Every setting is validated by [`ConnectionLimitsBuilder::build`]; `None` turns a limit off.
///
/// # Close ordering
///
/// The side that closes first holds TIME_WAIT. With the idle timeout advertised in
/// `Keep-Alive: timeout=N` (the default), a well-behaved pooled client closes idle connections
/// before the server does, and TIME_WAIT lands on the client, spread over its ephemeral ports.
/// Connections the server ends (idle timeout, header timeout, max age, max requests, shutdown)
/// leave TIME_WAIT here, on the server's port, where it does not consume ephemeral ports but does
/// count against `net.ipv4.tcp_max_tw_buckets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) header_timeout: Option<Duration>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    pub(crate) half_close: HalfClose,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) goaway_grace: Duration,
    pub(crate) advertise_keep_alive: bool,
    pub(crate) max_tracked: usize,
    pub(crate) shutdown_deadline: Duration,
}

/// How long an HTTP/2 connection that sent GOAWAY stays open with no stream open, by default:
/// Envoy's `drain_timeout` for the same wait.
pub const DEFAULT_GOAWAY_GRACE: Duration = crate::conn::lifecycle::GOAWAY_GRACE;

/// How long a graceful shutdown waits by default for what is in flight before it cuts what is
/// still open (and counts it): below the 30 s an orchestrator commonly leaves between SIGTERM
/// and SIGKILL (Kubernetes' default `terminationGracePeriodSeconds`), so that the cut, and the
/// report of it, are the server's own rather than the kill's.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(25);

/// The write timeout by default: pending output that makes no progress for this long is cut.
/// Long enough for a congested mobile link to recover from a stall of several RTOs, short
/// enough that a peer that stopped reading does not pin send buffers for minutes (nginx's
/// `send_timeout` is 60 s, HAProxy's `timeout client`/`server` commonly 30 s). The client's
/// upstreams take the same default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = crate::conn::write_watch::DEFAULT_WRITE_TIMEOUT;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(75)),
            header_timeout: Some(Duration::from_secs(10)),
            max_age: None,
            max_requests: None,
            half_close: HalfClose::Finish,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            goaway_grace: DEFAULT_GOAWAY_GRACE,
            advertise_keep_alive: true,
            max_tracked: 262_144,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }
}

impl ConnectionLimits {
    /// A builder starting from the defaults.
    pub fn builder() -> ConnectionLimitsBuilder {
        ConnectionLimitsBuilder {
            limits: Self::default(),
        }
    }

    /// The keep-alive idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The header-read timeout.
    pub fn header_timeout(&self) -> Option<Duration> {
        self.header_timeout
    }

    /// The maximum connection age.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The maximum number of requests per connection.
    pub fn max_requests(&self) -> Option<u64> {
        self.max_requests
    }

    /// What a half-close during a request does.
    pub fn half_close(&self) -> HalfClose {
        self.half_close
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// How long a graceful shutdown lets what is in flight finish before it cuts the rest.
    pub fn shutdown_deadline(&self) -> Duration {
        self.shutdown_deadline
    }

    /// How long an HTTP/2 connection that sent GOAWAY stays open with no stream open.
    pub fn goaway_grace(&self) -> Duration {
        self.goaway_grace
    }

    /// The limits as the connection core takes them.
    pub(crate) fn core(&self) -> crate::conn::lifecycle::Limits {
        crate::conn::lifecycle::Limits {
            header: self.header_timeout,
            idle: self.idle_timeout,
            max_age: self.max_age,
            max_requests: self.max_requests,
            write: self.write_timeout,
            finish_half_closed: self.half_close == HalfClose::Finish,
            goaway_grace: self.goaway_grace,
        }
    }

    /// The `Keep-Alive` header value advertised on HTTP/1.1 responses, if any.
    pub fn keep_alive_header(&self) -> Option<String> {
        match (self.advertise_keep_alive, self.idle_timeout) {
            (true, Some(t)) if t.as_secs() >= 1 => Some(format!("timeout={}", t.as_secs())),
            _ => None,
        }
    }
}

/// Builds validated [`ConnectionLimits`].
#[derive(Debug, Clone)]
pub struct ConnectionLimitsBuilder {
    limits: ConnectionLimits,
}

impl ConnectionLimitsBuilder {
    /// Close a keep-alive connection idle this long. Default: 75 s, longer than the 60 s idle
    /// timeout common to load balancers, so a load balancer's pool closes first.
    pub fn idle_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.limits.idle_timeout = t.into();
        self
    }

    /// Close a connection whose request header (or, on a new connection, whose first bytes and
    /// protocol preface) takes longer than this. Default: 10 s, which cuts slowloris peers while
    /// leaving room for slow mobile links.
    pub fn header_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.limits.header_timeout = t.into();
        self
    }

    /// Retire a connection older than this at its next message boundary, so load spreads again
    /// after a scale-out. Default: off.
    pub fn max_age(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.limits.max_age = t.into();
        self
    }

    /// Retire a connection after this many requests. Default: off.
    pub fn max_requests(mut self, n: impl Into<Option<u64>>) -> Self {
        self.limits.max_requests = n.into();
        self
    }

    /// Close a connection whose pending output makes no progress for this long: a peer that
    /// stopped reading (its receive window stays closed while it still acknowledges probes, so
    /// neither keepalive nor the user timeout ever fires), or an HTTP/2 response stalled on the
    /// peer's flow control. The connection is reset, which frees its send buffer at once, and
    /// counted with [`CloseReason::WriteTimeout`](super::CloseReason::WriteTimeout). The send
    /// queue is looked at four times per timeout while output is pending, so the cut comes
    /// between one and one and a quarter timeouts after the last progress. Default:
    /// [`DEFAULT_WRITE_TIMEOUT`] (30 s).
    pub fn write_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.limits.write_timeout = t.into();
        self
    }

    /// How long a graceful shutdown ([`ConnectionRegistry::shutdown`](super::ConnectionRegistry::shutdown),
    /// [`graceful_shutdown`](super::ConnectionRegistry::graceful_shutdown),
    /// [`Server::serve_with_shutdown`](super::Server::serve_with_shutdown)) lets responses in
    /// flight finish; what is still open then is cut and counted
    /// ([`CloseReason::ShutdownDeadline`](super::CloseReason::ShutdownDeadline)). Zero cuts at
    /// once. Default: [`DEFAULT_SHUTDOWN_DEADLINE`], 25 s.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.limits.shutdown_deadline = deadline;
        self
    }

    /// How long an HTTP/2 connection stays open after it sent GOAWAY once no stream is open,
    /// for the peer to answer the GOAWAY's PING or close; then it is closed and counted in
    /// [`RegistryTotals::goaway_grace_expired`](super::RegistryTotals::goaway_grace_expired).
    /// Default: [`DEFAULT_GOAWAY_GRACE`] (5 s).
    pub fn goaway_grace(mut self, t: Duration) -> Self {
        self.limits.goaway_grace = t;
        self
    }

    /// What a peer half-close during a request does. Default: [`HalfClose::Finish`].
    pub fn half_close(mut self, h: HalfClose) -> Self {
        self.limits.half_close = h;
        self
    }

    /// Advertise the idle timeout with `Keep-Alive: timeout=N` on HTTP/1.1 responses, so pooled
    /// clients close idle connections first. Default: on.
    pub fn advertise_keep_alive(mut self, on: bool) -> Self {
        self.limits.advertise_keep_alive = on;
        self
    }

    /// Hard bound on connections listed in registry snapshots; connections beyond it are still
    /// served, retired and cut by shutdown, and counted (`untracked`), but not listed.
    /// Default: 262144.
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.limits.max_tracked = n;
        self
    }

    /// Validates and returns the limits.
    pub fn build(self) -> Result<ConnectionLimits, LimitsError> {
        let l = self.limits;
        let ms = Duration::from_millis(1);
        if let Some(v) = l.idle_timeout.filter(|t| *t < ms) {
            return Err(LimitsError::IdleTimeout { value: v });
        }
        if let Some(v) = l.header_timeout.filter(|t| *t < ms) {
            return Err(LimitsError::HeaderTimeout { value: v });
        }
        if let Some(v) = l.max_age.filter(|t| *t < ms) {
            return Err(LimitsError::MaxAge { value: v });
        }
        if let Some(v) = l.write_timeout.filter(|t| *t < ms) {
            return Err(LimitsError::WriteTimeout { value: v });
        }
        if let Some(0) = l.max_requests {
            return Err(LimitsError::MaxRequests { value: 0 });
        }
        if l.max_tracked == 0 {
            return Err(LimitsError::MaxTracked { value: 0 });
        }
        Ok(l)
    }
}

/// A [`ConnectionLimits`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitsError {
    /// `idle_timeout` below 1 ms (use `None` to turn it off).
    IdleTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `header_timeout` below 1 ms (use `None` to turn it off).
    HeaderTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `max_age` below 1 ms (use `None` to turn it off).
    MaxAge {
        /// The rejected value.
        value: Duration,
    },
    /// `write_timeout` below 1 ms (use `None` to turn it off).
    WriteTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `max_requests` of 0 (use `None` to turn it off).
    MaxRequests {
        /// The rejected value.
        value: u64,
    },
    /// `max_tracked` of 0.
    MaxTracked {
        /// The rejected value.
        value: usize,
    },
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdleTimeout { value } => write!(
                f,
                "invalid connection limits: idle_timeout = {value:?}: expected at least 1ms, or None to turn it off"
            ),
            Self::HeaderTimeout { value } => write!(
                f,
                "invalid connection limits: header_timeout = {value:?}: expected at least 1ms, or None to turn it off"
            ),
            Self::MaxAge { value } => write!(
                f,
                "invalid connection limits: max_age = {value:?}: expected at least 1ms, or None to turn it off"
            ),
            Self::WriteTimeout { value } => write!(
                f,
                "invalid connection limits: write_timeout = {value:?}: expected at least 1ms, or None to turn it off"
            ),
            Self::MaxRequests { value } => write!(
                f,
                "invalid connection limits: max_requests = {value}: expected at least 1, or None to turn it off"
            ),
            Self::MaxTracked { value } => write!(
                f,
                "invalid connection limits: max_tracked = {value}: expected at least 1"
            ),
        }
    }
}

impl std::error::Error for LimitsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_name_the_setting() {
        let err = ConnectionLimits::builder()
            .max_requests(Some(0))
            .build()
            .unwrap_err();
        assert_eq!(err, LimitsError::MaxRequests { value: 0 });
        assert!(err.to_string().contains("max_requests = 0"));
        let err = ConnectionLimits::builder()
            .idle_timeout(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("idle_timeout = 0ns"), "{err}");
        let err = ConnectionLimits::builder()
            .header_timeout(Some(Duration::from_micros(10)))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("header_timeout = 10µs"), "{err}");
    }

    #[test]
    fn keep_alive_header_follows_idle_timeout() {
        let l = ConnectionLimits::default();
        assert_eq!(l.keep_alive_header().as_deref(), Some("timeout=75"));
        let l = ConnectionLimits::builder()
            .advertise_keep_alive(false)
            .build()
            .unwrap();
        assert_eq!(l.keep_alive_header(), None);
        let l = ConnectionLimits::builder()
            .idle_timeout(None)
            .build()
            .unwrap();
        assert_eq!(l.keep_alive_header(), None);
    }
}
