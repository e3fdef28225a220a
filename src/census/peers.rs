//! Our own connections by endpoint, with the kernel's detail (keepalive timers, idle times,
//! retransmissions), under labels that stay bounded whatever peers do: each upstream and
//! listener by name, then the first few remote endpoints seen by address, then `other`.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use conn_hygiene_census::{
    canonical_addr as canon,
    peers::{Peer, SockDetail, Timer},
    SockInfo, StateCounts, TcpState,
};

/// Remote endpoints (neither an upstream's destination nor a listener's client) ever named by
/// address in a sampler's metrics; later ones count as `other`, so series never grow past it.
pub const MAX_NAMED_REMOTES: usize = 10;
/// Remote endpoints told apart within one walk, for the findings; beyond it they go to
/// `other` (memory stays bounded whatever the process holds).
const MAX_REMOTES_PER_WALK: usize = 4096;

/// What a group of our connections is toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PeerKind {
    /// An upstream's destinations, by its name.
    Upstream,
    /// The clients of one of our listeners, by its name.
    Listener,
    /// One remote endpoint, by address.
    Remote,
    /// Every other remote endpoint.
    Other,
}

impl PeerKind {
    /// The `kind` label: `upstream`, `listener`, `remote`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerKind::Upstream => "upstream",
            PeerKind::Listener => "listener",
            PeerKind::Remote => "remote",
            PeerKind::Other => "other",
        }
    }
}

/// Our connections toward one endpoint group, as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCensus {
    /// What the group is.
    pub kind: PeerKind,
    /// The upstream's or listener's name, the remote `ip:port`, or `other`.
    pub endpoint: String,
    /// Our sockets in it by state.
    pub states: StateCounts,
    /// Of those, the ones with no keepalive timer armed.
    pub without_keepalive: u64,
    /// The longest time any of them has sent and received nothing.
    pub idle_max: Option<Duration>,
    /// Retransmitted segments over the open sockets' lives.
    pub retransmits: u64,
}

impl PeerCensus {
    fn new(kind: PeerKind, endpoint: String) -> Self {
        PeerCensus {
            kind,
            endpoint,
            states: StateCounts::new(),
            without_keepalive: 0,
            idle_max: None,
            retransmits: 0,
        }
    }

    fn add(&mut self, info: &SockInfo, d: &SockDetail) {
        self.states.record(info.state);
        if d.timer != Timer::Keepalive {
            self.without_keepalive += 1;
        }
        if let Some(idle) = d.idle() {
            self.idle_max = Some(self.idle_max.map_or(idle, |m| m.max(idle)));
        }
        self.retransmits += u64::from(d.total_retrans.unwrap_or(0));
    }

    /// Our sockets in it.
    pub fn sockets(&self) -> u64 {
        self.states.total()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Upstream(usize),
    Listener(usize),
    Remote(SocketAddr),
    Other,
}

/// Remote endpoints named so far, kept across walks: a name once given keeps its series.
#[derive(Debug, Default)]
pub(crate) struct NamedRemotes(Vec<SocketAddr>);

/// One walk's grouping of our sockets.
pub(crate) struct PeerWalk {
    groups: HashMap<Key, PeerCensus>,
    /// By remote endpoint, for the findings (which name endpoints, ten at most); endpoints
    /// past the bound are left unjudged.
    by_remote: HashMap<SocketAddr, Peer>,
}

impl PeerWalk {
    pub(crate) fn new() -> Self {
        PeerWalk {
            groups: HashMap::new(),
            by_remote: HashMap::new(),
        }
    }

    /// Counts one socket this process holds: `upstream` and `listener` are what the join
    /// found it belongs to.
    pub(crate) fn visit(
        &mut self,
        s: &SockInfo,
        detail: Option<&SockDetail>,
        upstream: Option<usize>,
        listener: Option<usize>,
        named: &mut NamedRemotes,
    ) {
        if matches!(s.state, TcpState::Listen | TcpState::TimeWait) {
            return;
        }
        let d = detail.unwrap_or(&SockDetail::UNKNOWN);
        let remote = canon(s.remote);
        let key = match (upstream, listener) {
            (Some(u), _) => Key::Upstream(u),
            (None, Some(l)) => Key::Listener(l),
            _ if named.0.contains(&remote) => Key::Remote(remote),
            _ if named.0.len() < MAX_NAMED_REMOTES => {
                named.0.push(remote);
                Key::Remote(remote)
            }
            _ => Key::Other,
        };
        self.groups
            .entry(key)
            .or_insert_with(|| PeerCensus::new(PeerKind::Other, String::new()))
            .add(s, d);
        let len = self.by_remote.len();
        match self.by_remote.get_mut(&remote) {
            Some(p) => p.add(s, d),
            None if len < MAX_REMOTES_PER_WALK => {
                let mut p = Peer::new(remote);
                p.add(s, d);
                self.by_remote.insert(remote, p);
            }
            None => {}
        }
    }

    /// The groups, named (upstreams and listeners by `names`), most sockets first; and the
    /// endpoints for the findings.
    pub(crate) fn finish(
        self,
        upstream_names: &[String],
        listener_names: &[String],
    ) -> (Vec<PeerCensus>, Vec<Peer>) {
        let mut groups: Vec<PeerCensus> = self
            .groups
            .into_iter()
            .map(|(key, mut g)| {
                (g.kind, g.endpoint) = match key {
                    Key::Upstream(i) => (PeerKind::Upstream, upstream_names[i].clone()),
                    Key::Listener(i) => (PeerKind::Listener, listener_names[i].clone()),
                    Key::Remote(a) => (PeerKind::Remote, a.to_string()),
                    Key::Other => (PeerKind::Other, "other".to_owned()),
                };
                g
            })
            .collect();
        groups.sort_by(|a, b| {
            b.sockets()
                .cmp(&a.sockets())
                .then_with(|| (a.kind, &a.endpoint).cmp(&(b.kind, &b.endpoint)))
        });
        (groups, self.by_remote.into_values().collect())
    }
}
