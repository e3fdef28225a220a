use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

/// Who closes an idle pooled connection first, and so who holds its TIME_WAIT.
///
/// | order | who closes idle connections | TIME_WAIT | keep-alive race |
/// |---|---|---|---|
/// | [`ClientFirst`](CloseOrder::ClientFirst) | the client, before the server's keep-alive timeout | on the client, spread over its ephemeral ports (one per closed connection) | avoided: the connection is retired before the server could close it; a server that closes earlier anyway is handled as below |
/// | [`AbortOnIdle`](CloseOrder::AbortOnIdle) | the client, with a reset (`SO_LINGER` 0) | none, on either side | avoided, as above |
/// | [`ServerFirst`](CloseOrder::ServerFirst) | the server, at its keep-alive timeout | on the server, on its listening port | handled: a replayable request that fails on a reused connection before any response byte is retried once |
///
/// `AbortOnIdle` trades the safety TIME_WAIT gives (late segments of the old connection cannot
/// corrupt a new one with the same 4-tuple) for port headroom. It only ever resets a connection
/// that is idle at a message boundary, so no request or response is cut; use it for busy
/// upstreams where TIME_WAIT would exhaust ephemeral ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseOrder {
    /// Close idle connections before the server would (default).
    #[default]
    ClientFirst,
    /// Like `ClientFirst`, but close with a reset so no TIME_WAIT is left anywhere.
    AbortOnIdle,
    /// Keep connections longer than the server's keep-alive and let it close first.
    ServerFirst,
}

impl CloseOrder {
    /// The name used on the command line and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseOrder::ClientFirst => "client-first",
            CloseOrder::AbortOnIdle => "abort",
            CloseOrder::ServerFirst => "server-first",
        }
    }
}

impl std::str::FromStr for CloseOrder {
    type Err = ParseCloseOrderError;

    /// `client-first`, `abort` or `server-first` ([`CloseOrder::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client-first" => Ok(Self::ClientFirst),
            "abort" => Ok(Self::AbortOnIdle),
            "server-first" => Ok(Self::ServerFirst),
            other => Err(ParseCloseOrderError {
                input: other.into(),
            }),
        }
    }
}

/// The text given to [`CloseOrder::from_str`](std::str::FromStr::from_str) names no close
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCloseOrderError {
    input: Box<str>,
}

impl ParseCloseOrderError {
    /// The text that was given.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseCloseOrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "close_order = {:?}: expected client-first, abort or server-first",
            self.input
        )
    }
}

impl std::error::Error for ParseCloseOrderError {}

/// Pool settings for one upstream (or the default for all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) close_order: CloseOrder,
    pub(crate) idle_timeout: Duration,
    pub(crate) server_keep_alive: Option<Duration>,
    pub(crate) max_idle: usize,
    pub(crate) max_connections: Option<usize>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    pub(crate) local_addrs: Vec<IpAddr>,
    pub(crate) leak_threshold: Option<Duration>,
    pub(crate) backtraces: bool,
    pub(crate) response_head_timeout: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
}

/// How long the response head may take by default: nginx's `proxy_read_timeout`, the field's
/// usual bound on an upstream that accepted a request and then said nothing.
pub const DEFAULT_RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            name: None,
            close_order: CloseOrder::ClientFirst,
            idle_timeout: Duration::from_secs(50),
            server_keep_alive: None,
            max_idle: 32,
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Some(Duration::from_secs(3)),
            max_age: None,
            write_timeout: Some(crate::conn::write_watch::DEFAULT_WRITE_TIMEOUT),
            max_requests: None,
            local_addrs: Vec::new(),
            leak_threshold: Some(Duration::from_secs(30)),
            backtraces: false,
            response_head_timeout: Some(DEFAULT_RESPONSE_HEAD_TIMEOUT),
            timeout: None,
        }
    }
}

impl UpstreamConfig {
    /// The defaults: client closes first, 50 s idle timeout, 32 idle connections, no cap on open
    /// connections, 5 s acquire timeout, 3 s connect timeout, 30 s leak threshold.
    pub fn new() -> Self {
        Self::default()
    }

    /// The upstream's name, used as the `upstream` metric label. Default: `host:port`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Who closes idle connections first. Default: [`CloseOrder::ClientFirst`].
    pub fn close_order(mut self, order: CloseOrder) -> Self {
        self.close_order = order;
        self
    }

    /// Close a connection idle this long. With `ClientFirst` and `AbortOnIdle` the effective
    /// value is also kept below the server's keep-alive (learned from `Keep-Alive: timeout=N` or
    /// set with [`server_keep_alive`](Self::server_keep_alive)); with `ServerFirst` set it above
    /// the server's. Default: 50 s.
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// The server's keep-alive timeout when known and not advertised in `Keep-Alive` headers
    /// (nginx's `keepalive_timeout`, for instance). Default: learned from the first response
    /// on each connection (a server changes it on restart or reload, which new connections
    /// see).
    pub fn server_keep_alive(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.server_keep_alive = t.into();
        self
    }

    /// Idle connections kept per upstream; more are closed as they become idle. Default: 32.
    pub fn max_idle(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }

    /// Cap on open connections; beyond it, connection attempts wait (counted as pending) up to
    /// the acquire timeout. Default: no cap.
    pub fn max_connections(mut self, n: impl Into<Option<usize>>) -> Self {
        self.max_connections = n.into();
        self
    }

    /// How long a connection attempt may wait for a slot under `max_connections`. Default: 5 s.
    pub fn acquire_timeout(mut self, t: Duration) -> Self {
        self.acquire_timeout = t;
        self
    }

    /// TCP connect timeout. Default: 3 s.
    pub fn connect_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = t.into();
        self
    }

    /// Retire connections older than this at their next message boundary. Default: off.
    pub fn max_age(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.max_age = t.into();
        self
    }

    /// Close a connection whose pending output (a request, its body) makes no progress for
    /// this long: an upstream that stopped reading. The connection is reset, which frees its
    /// send buffer at once, the request fails, and the close is counted with
    /// [`CloseReason::WriteTimeout`](super::CloseReason::WriteTimeout). Cut between
    /// one and one and a quarter timeouts after the last progress. Default: 30 s, as the
    /// server's (`DEFAULT_WRITE_TIMEOUT`).
    pub fn write_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = t.into();
        self
    }

    /// Retire connections after this many requests. Default: off.
    pub fn max_requests(mut self, n: impl Into<Option<u64>>) -> Self {
        self.max_requests = n.into();
        self
    }

    /// Local source addresses to spread connections over, round-robin: each adds a full
    /// ephemeral port range of headroom toward a busy upstream. Default: none (the kernel picks).
    pub fn local_addrs(mut self, addrs: Vec<IpAddr>) -> Self {
        self.local_addrs = addrs;
        self
    }

    /// Report a lease (a request whose response body is not yet read or dropped) held longer
    /// than this as a leak. Default: 30 s. `None` turns leak detection off.
    pub fn leak_threshold(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.leak_threshold = t.into();
        self
    }

    /// How long a request may wait for its response head, from the call (a wait for a
    /// connection slot and the connect included, retries too). A request that times out fails
    /// with [`Error::is_timeout`](super::Error::is_timeout), its lease ends, and it is counted
    /// once in [`UpstreamTotals::timeouts`](super::UpstreamTotals::timeouts); its connection,
    /// left mid-response, is closed rather than reused. Overridden per request by a
    /// [`Timeouts`](super::Timeouts) extension. Default: [`DEFAULT_RESPONSE_HEAD_TIMEOUT`],
    /// 60 s; `None` waits as long as the connection lives.
    pub fn response_head_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.response_head_timeout = t.into();
        self
    }

    /// How long a request may take in all, from the call to the end of its response body
    /// (read by the caller). When it passes during the body, the body's next read fails with
    /// [`BodyError::is_timeout`](super::BodyError::is_timeout). Counted and ended as the
    /// response head timeout. Overridden per request by a [`Timeouts`](super::Timeouts)
    /// extension. Default: none (as hyper's, reqwest's and Go's clients: bodies may stream
    /// for as long as they need; set it where a whole exchange has a known bound).
    pub fn timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.timeout = t.into();
        self
    }

    /// Capture a full backtrace where each lease is taken (costly). Default: off.
    pub fn backtraces(mut self, on: bool) -> Self {
        self.backtraces = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ClientConfigError> {
        let ms = Duration::from_millis(1);
        if let Some(value) = self.response_head_timeout.filter(|t| *t < ms) {
            return Err(ClientConfigError::ResponseHeadTimeout { value });
        }
        if let Some(value) = self.timeout.filter(|t| *t < ms) {
            return Err(ClientConfigError::Timeout { value });
        }
        if self.idle_timeout < ms {
            return Err(ClientConfigError::IdleTimeout {
                value: self.idle_timeout,
            });
        }
        if let Some(t) = self.server_keep_alive.filter(|t| *t < ms) {
            return Err(ClientConfigError::ServerKeepAlive { value: t });
        }
        if self.max_connections == Some(0) {
            return Err(ClientConfigError::MaxConnections { value: 0 });
        }
        if self.acquire_timeout < ms {
            return Err(ClientConfigError::AcquireTimeout {
                value: self.acquire_timeout,
            });
        }
        if let Some(t) = self.connect_timeout.filter(|t| *t < ms) {
            return Err(ClientConfigError::ConnectTimeout { value: t });
        }
        if let Some(t) = self.max_age.filter(|t| *t < ms) {
            return Err(ClientConfigError::MaxAge { value: t });
        }
        if let Some(t) = self.write_timeout.filter(|t| *t < ms) {
            return Err(ClientConfigError::WriteTimeout { value: t });
        }
        if self.max_requests == Some(0) {
            return Err(ClientConfigError::MaxRequests { value: 0 });
        }
        if let Some(t) = self.leak_threshold.filter(|t| *t < ms) {
            return Err(ClientConfigError::LeakThreshold { value: t });
        }
        Ok(())
    }

    /// The idle timeout in force, given what is known of the server's keep-alive.
    pub(crate) fn effective_idle_timeout(&self, learned: Option<Duration>) -> Duration {
        let server = self.server_keep_alive.or(learned);
        match (self.close_order, server) {
            (CloseOrder::ServerFirst, _) | (_, None) => self.idle_timeout,
            (_, Some(ka)) => {
                // Close well before the server would: a quarter of its timeout, at most 1 s.
                let margin = (ka / 4).min(Duration::from_secs(1));
                self.idle_timeout.min(ka.saturating_sub(margin))
            }
        }
    }
}

/// A client setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// `idle_timeout` below 1 ms.
    IdleTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `server_keep_alive` below 1 ms.
    ServerKeepAlive {
        /// The rejected value.
        value: Duration,
    },
    /// A response head timeout under 1 ms.
    ResponseHeadTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// A total timeout under 1 ms.
    Timeout {
        /// The rejected value.
        value: Duration,
    },
    /// `max_connections` of 0.
    MaxConnections {
        /// The rejected value.
        value: usize,
    },
    /// `acquire_timeout` below 1 ms.
    AcquireTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `connect_timeout` below 1 ms.
    ConnectTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `max_age` below 1 ms.
    MaxAge {
        /// The rejected value.
        value: Duration,
    },
    /// `write_timeout` below 1 ms.
    WriteTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `max_requests` of 0.
    MaxRequests {
        /// The rejected value.
        value: u64,
    },
    /// `leak_threshold` below 1 ms.
    LeakThreshold {
        /// The rejected value.
        value: Duration,
    },
    /// An upstream key that is not `host:port`.
    Upstream {
        /// The rejected value.
        value: String,
    },
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = "invalid client configuration:";
        match self {
            Self::IdleTimeout { value } => {
                write!(f, "{p} idle_timeout = {value:?}: expected at least 1ms")
            }
            Self::ServerKeepAlive { value } => write!(
                f,
                "{p} server_keep_alive = {value:?}: expected at least 1ms, or None to learn it"
            ),
            Self::MaxConnections { value } => write!(
                f,
                "{p} max_connections = {value}: expected at least 1, or None for no cap"
            ),
            Self::ResponseHeadTimeout { value } => write!(
                f,
                "{p} response_head_timeout = {value:?}: expected at least 1ms, or None"
            ),
            Self::Timeout { value } => {
                write!(f, "{p} timeout = {value:?}: expected at least 1ms, or None")
            }
            Self::AcquireTimeout { value } => {
                write!(f, "{p} acquire_timeout = {value:?}: expected at least 1ms")
            }
            Self::ConnectTimeout { value } => write!(
                f,
                "{p} connect_timeout = {value:?}: expected at least 1ms, or None"
            ),
            Self::MaxAge { value } => {
                write!(f, "{p} max_age = {value:?}: expected at least 1ms, or None")
            }
            Self::WriteTimeout { value } => {
                write!(
                    f,
                    "{p} write_timeout = {value:?}: expected at least 1ms, or None"
                )
            }
            Self::MaxRequests { value } => write!(
                f,
                "{p} max_requests = {value}: expected at least 1, or None"
            ),
            Self::LeakThreshold { value } => write!(
                f,
                "{p} leak_threshold = {value:?}: expected at least 1ms, or None"
            ),
            Self::Upstream { value } => write!(f, "{p} upstream = {value:?}: expected host:port"),
        }
    }
}

impl std::error::Error for ClientConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_orders_parse_by_name_and_anything_else_is_a_typed_error() {
        for order in [
            CloseOrder::ClientFirst,
            CloseOrder::AbortOnIdle,
            CloseOrder::ServerFirst,
        ] {
            assert_eq!(order.as_str().parse::<CloseOrder>(), Ok(order));
        }
        let err = "server_first".parse::<CloseOrder>().unwrap_err();
        assert_eq!(err.input(), "server_first");
        assert_eq!(
            err.to_string(),
            r#"close_order = "server_first": expected client-first, abort or server-first"#
        );
    }

    #[test]
    fn client_first_stays_below_the_server_keep_alive() {
        let c = UpstreamConfig::new().idle_timeout(Duration::from_secs(50));
        assert_eq!(c.effective_idle_timeout(None), Duration::from_secs(50));
        assert_eq!(
            c.effective_idle_timeout(Some(Duration::from_secs(5))),
            Duration::from_secs(4)
        );
        assert_eq!(
            c.effective_idle_timeout(Some(Duration::from_secs(1))),
            Duration::from_millis(750)
        );
        let s = c.clone().close_order(CloseOrder::ServerFirst);
        assert_eq!(
            s.effective_idle_timeout(Some(Duration::from_secs(1))),
            Duration::from_secs(50)
        );
        let known = c.server_keep_alive(Some(Duration::from_secs(2)));
        assert_eq!(
            known.effective_idle_timeout(Some(Duration::from_secs(75))),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn bad_settings_name_themselves() {
        let e = UpstreamConfig::new()
            .max_connections(Some(0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("max_connections = 0"), "{e}");
        let e = UpstreamConfig::new()
            .idle_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("idle_timeout = 0ns"), "{e}");
        assert_eq!("abort".parse::<CloseOrder>(), Ok(CloseOrder::AbortOnIdle));
        assert_eq!("later".parse::<CloseOrder>().unwrap_err().input(), "later");
    }
}

/// Timeouts for one request, overriding its upstream's
/// ([`response_head_timeout`](UpstreamConfig::response_head_timeout),
/// [`timeout`](UpstreamConfig::timeout)) for the fields set: put it in the request's
/// extensions (`req.extensions_mut().insert(Timeouts::new().total(d))`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub(crate) response_head: Option<Duration>,
    pub(crate) total: Option<Duration>,
}

impl Timeouts {
    /// Nothing overridden.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long this request may wait for its response head.
    pub fn response_head(mut self, t: Duration) -> Self {
        self.response_head = Some(t);
        self
    }

    /// How long this request may take in all, its response body included.
    pub fn total(mut self, t: Duration) -> Self {
        self.total = Some(t);
        self
    }
}
