//! Redis connections whose TCP socket the crate opens itself (redis 0.32, tokio), for deadpool
//! and bb8.
//!
//! A [`RedisManager`] resolves the server's address, connects the socket, applies the
//! [`SocketPolicy`] to it, records its local and peer addresses, and builds the redis crate's
//! protocol over that stream ([`MultiplexedConnection::new_with_config`]). With the feature
//! `deadpool` it is a `deadpool::managed::Manager`, with `bb8` a `bb8::ManageConnection`; the
//! [`RedisConnection`] it makes shows its socket ([`ConnectionSocket`]), so a
//! [`TrackedDeadpool`](super::TrackedDeadpool) or [`TrackedBb8`](super::TrackedBb8) of them
//! lists every checkout with its socket, and the census joins a `CLOSE_WAIT` socket of ours to
//! the line that holds its connection.
//!
//! A [`RedisConnection`] is used by one holder at a time, as a pool hands it out, and reads
//! from its socket only while a command waits for its reply: when the server closes an idle
//! connection (Redis's `timeout`), the socket stays in `CLOSE_WAIT` until the connection is
//! used again or dropped, as with any exclusive connection. A pool finds it closed when it
//! checks it (deadpool's recycle, bb8's `is_valid`) and drops it; a connection that is never
//! given back, a leak, keeps its `CLOSE_WAIT` socket, which the census then traces to the
//! checkout's line.

use std::{fmt, future::Future, io, net::SocketAddr, pin::Pin, sync::Mutex, time::Duration};

use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, RedisFuture, RedisResult, Value,
};
use socket2::SockRef;
use tokio::net::TcpStream;

use super::view::ConnectionSocket;
use crate::policy::{SocketPolicy, SocketSide};

/// Default [`RedisManager::connect_timeout`]: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens [`RedisConnection`]s to one Redis server over TCP sockets of its own, with the
/// crate's [`SocketPolicy`] applied. See the [module docs](self).
///
/// ```no_run
/// # #[cfg(feature = "deadpool")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use conn_hygiene::lease::LeaseTracker;
/// use conn_hygiene::pools::{redis::RedisManager, TrackedDeadpool};
/// use redis::AsyncCommands;
///
/// let manager = RedisManager::new("redis://127.0.0.1:6379/0")?;
/// let pool = deadpool::managed::Pool::builder(manager).max_size(8).build()?;
/// let pool = TrackedDeadpool::new(pool, LeaseTracker::new("cache"));
///
/// let mut conn = pool.get().await?; // this line is the lease's site
/// let _: () = conn.set("greeting", "hello").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisManager {
    host: String,
    port: u16,
    redis: RedisConnectionInfo,
    policy: SocketPolicy,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
}

/// Why a [`RedisManager`] cannot be made from the connection information it was given.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL or connection information did not parse.
    Invalid(RedisError),
    /// A Unix socket path: the manager connects TCP sockets only.
    Unix {
        /// The socket's path.
        path: std::path::PathBuf,
    },
    /// `rediss://` (TLS): the manager connects plain TCP only.
    Tls {
        /// The server's host.
        host: String,
        /// The server's port.
        port: u16,
    },
}

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConfigError::Invalid(e) => write!(f, "invalid redis connection info: {e}"),
            RedisConfigError::Unix { path } => write!(
                f,
                "redis address is the unix socket {}: the redis manager connects over TCP only",
                path.display()
            ),
            RedisConfigError::Tls { host, port } => write!(
                f,
                "redis address {host}:{port} uses TLS (rediss://): the redis manager connects \
                 plain TCP only"
            ),
        }
    }
}

impl std::error::Error for RedisConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisConfigError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl RedisManager {
    /// A manager for the server at `info` (`redis://[user:password@]host:port[/db]`, or the
    /// redis crate's `ConnectionInfo`), with the default socket policy, a connect timeout of
    /// [`DEFAULT_CONNECT_TIMEOUT`] and no response timeout.
    pub fn new(info: impl IntoConnectionInfo) -> Result<Self, RedisConfigError> {
        let info = info
            .into_connection_info()
            .map_err(RedisConfigError::Invalid)?;
        let (host, port) = match info.addr {
            ConnectionAddr::Tcp(host, port) => (host, port),
            ConnectionAddr::TcpTls { host, port, .. } => {
                return Err(RedisConfigError::Tls { host, port })
            }
            ConnectionAddr::Unix(path) => return Err(RedisConfigError::Unix { path }),
        };
        Ok(RedisManager {
            host,
            port,
            redis: info.redis,
            policy: SocketPolicy::default(),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            response_timeout: None,
        })
    }

    /// The socket policy applied to every connection's socket (outbound side). Default:
    /// [`SocketPolicy::default`].
    pub fn policy(mut self, policy: SocketPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long resolving the host and connecting may take, over all its addresses. Default:
    /// [`DEFAULT_CONNECT_TIMEOUT`]; `None` waits as long as the kernel does.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// How long a command may wait for its reply before it fails. Default: `None`, no limit.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// `host:port` as given.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens a connection: resolves the host, connects to its addresses in turn, applies the
    /// policy, and runs the redis handshake (authentication, database selection) over the
    /// socket.
    pub async fn connect(&self) -> RedisResult<RedisConnection> {
        let connect = self.connect_socket();
        let stream = match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connecting to redis at {} took longer than {limit:?}",
                        self.authority()
                    ),
                )
            })??,
            None => connect.await?,
        };
        let local = stream.local_addr()?;
        let peer = stream.peer_addr()?;
        let mut config = AsyncConnectionConfig::new();
        if let Some(t) = self.response_timeout {
            config = config.set_response_timeout(t);
        }
        let (conn, driver) =
            MultiplexedConnection::new_with_config(&self.redis, stream, config).await?;
        Ok(RedisConnection {
            conn,
            driver: Mutex::new(Some(Box::pin(driver))),
            local,
            peer,
            db: self.redis.db,
        })
    }

    async fn connect_socket(&self) -> io::Result<TcpStream> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port)).await?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Every option is tuning: refusals are reported by `apply` and the
                    // socket works without them.
                    let _ = self
                        .policy
                        .apply(SockRef::from(&stream), SocketSide::Outbound);
                    return Ok(stream);
                }
                Err(e) => {
                    last = Some(io::Error::new(
                        e.kind(),
                        format!("connecting to redis at {addr}: {e}"),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("redis host {} resolved to no address", self.host),
            )
        }))
    }
}

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection to Redis over a socket the crate opened: the redis crate's protocol, the
/// socket's addresses, and whether the server closed it. Made by [`RedisManager::connect`].
///
/// Implements redis's [`ConnectionLike`], so `redis::AsyncCommands` work on it (and on a
/// tracked pool's checkout of it). Reads its socket only while a command waits for its reply;
/// see the [module docs](self).
pub struct RedisConnection {
    conn: MultiplexedConnection,
    /// Reads replies and writes commands; polled only while a command is in flight, and
    /// `None` once it ended (the server closed the connection, or it failed). Behind a mutex
    /// only to be `Sync`: it is reached through `&mut self`, without locking.
    driver: Mutex<Option<Driver>>,
    local: SocketAddr,
    peer: SocketAddr,
    db: i64,
}

impl RedisConnection {
    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection was found closed (by the server, or after an error) while a
    /// command was in flight. An idle connection the server closed since is found so by its
    /// next command.
    pub fn is_closed(&mut self) -> bool {
        self.driver().is_none()
    }

    fn driver(&mut self) -> &mut Option<Driver> {
        self.driver.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `request` while polling the driver, which does the reading and writing.
    async fn drive<T>(
        driver: &mut Option<Driver>,
        request: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let mut request = std::pin::pin!(request);
        if let Some(d) = driver.as_mut() {
            tokio::select! {
                biased;
                done = &mut request => return done,
                () = d.as_mut() => {}
            }
            // The connection ended. Dropping the driver drops its queue, so the request
            // fails at once, unless its reply came first.
            *driver = None;
        }
        request.await
    }

    /// Sends `PING` and expects `PONG`: what the pools' health checks run.
    pub async fn ping(&mut self) -> RedisResult<()> {
        let pong: String = redis::cmd("PING").query_async(self).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RedisError::from((
                redis::ErrorKind::ResponseError,
                "unexpected reply to PING",
                pong,
            )))
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let RedisConnection { conn, driver, .. } = self;
            let driver = driver.get_mut().unwrap_or_else(|e| e.into_inner());
            Self::drive(driver, conn.send_packed_command(cmd)).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let RedisConnection { conn, driver, .. } = self;
            let driver = driver.get_mut().unwrap_or_else(|e| e.into_inner());
            Self::drive(driver, conn.send_packed_commands(cmd, offset, count)).await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

impl ConnectionSocket for RedisConnection {
    fn socket_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((self.local, self.peer))
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Connections are made by [`RedisManager::connect`]; one is recycled when it is still open
/// and answers `PING`.
#[cfg(feature = "deadpool")]
impl deadpool::managed::Manager for RedisManager {
    type Type = RedisConnection;
    type Error = RedisError;

    async fn create(&self) -> RedisResult<RedisConnection> {
        self.connect().await
    }

    async fn recycle(
        &self,
        conn: &mut RedisConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        if conn.is_closed() {
            return Err(deadpool::managed::RecycleError::message(
                "redis connection closed",
            ));
        }
        conn.ping()
            .await
            .map_err(deadpool::managed::RecycleError::Backend)
    }
}

/// Connections are made by [`RedisManager::connect`], checked with `PING`, and broken once
/// found closed.
#[cfg(feature = "bb8")]
impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConnection;
    type Error = RedisError;

    async fn connect(&self) -> RedisResult<RedisConnection> {
        RedisManager::connect(self).await
    }

    async fn is_valid(&self, conn: &mut RedisConnection) -> RedisResult<()> {
        conn.ping().await
    }

    fn has_broken(&self, conn: &mut RedisConnection) -> bool {
        conn.is_closed()
    }
}

/// Redis commands on a checkout, as on its connection.
#[cfg(feature = "deadpool")]
impl<M> ConnectionLike for super::DeadpoolCheckout<M>
where
    M: deadpool::managed::Manager,
    M::Type: ConnectionLike + Send,
{
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        (**self).req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        (**self).req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        (**self).get_db()
    }
}

/// Redis commands on a checkout, as on its connection.
#[cfg(feature = "bb8")]
impl<M> ConnectionLike for super::Bb8Checkout<'_, M>
where
    M: bb8::ManageConnection,
    M::Connection: ConnectionLike,
{
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        (**self).req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        (**self).req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        (**self).get_db()
    }
}
