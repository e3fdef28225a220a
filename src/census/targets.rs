//! What the attribution sources claim, gathered for one walk: the listeners in order, the
//! upstreams merged by name, and, after the walk, their connections on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use conn_hygiene_census::canonical_addr as canon;

use super::attribution::{AttributionSource, Claim, TrackedConnection};
use super::join::OwnerIdx;
use super::snapshot::Owner;
use super::MAX_UPSTREAMS;

/// A listener claimed by `sources[source]`.
#[derive(Debug)]
pub(crate) struct ListenerTarget {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    source: usize,
}

/// An upstream, merged over the sources claiming its name.
#[derive(Debug)]
pub(crate) struct UpstreamTarget {
    pub(crate) name: String,
    pub(crate) authority: String,
    /// Canonical, sorted, without duplicates.
    pub(crate) dests: Vec<SocketAddr>,
    sources: Vec<usize>,
}

/// The claims of every source at the start of a walk.
#[derive(Debug)]
pub(crate) struct Targets<'a> {
    sources: &'a [Arc<dyn AttributionSource>],
    pub(crate) listeners: Vec<ListenerTarget>,
    /// At most [`MAX_UPSTREAMS`].
    pub(crate) upstreams: Vec<UpstreamTarget>,
    /// Connections asked for, by owner, once per walk.
    connections: HashMap<OwnerIdx, Vec<TrackedConnection>>,
}

impl<'a> Targets<'a> {
    /// Asks every source what it claims now.
    pub(crate) fn gather(sources: &'a [Arc<dyn AttributionSource>]) -> Self {
        let mut listeners = Vec::new();
        let mut upstreams: Vec<UpstreamTarget> = Vec::new();
        for (source, s) in sources.iter().enumerate() {
            for claim in s.claims() {
                match claim {
                    Claim::Listener { name, addr } => {
                        listeners.push(ListenerTarget { name, addr, source })
                    }
                    Claim::Upstream {
                        name,
                        authority,
                        destinations,
                    } => {
                        let dests = destinations.into_iter().map(canon);
                        let full = upstreams.len() >= MAX_UPSTREAMS;
                        match upstreams.iter_mut().find(|t| t.name == name) {
                            Some(t) => {
                                t.dests.extend(dests);
                                t.sources.push(source);
                            }
                            None if !full => upstreams.push(UpstreamTarget {
                                name,
                                authority,
                                dests: dests.collect(),
                                sources: vec![source],
                            }),
                            None => {}
                        }
                    }
                }
            }
        }
        for t in &mut upstreams {
            t.dests.sort();
            t.dests.dedup();
            t.sources.dedup();
        }
        Targets {
            sources,
            listeners,
            upstreams,
            connections: HashMap::new(),
        }
    }

    pub(crate) fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    pub(crate) fn upstream_dests(&self) -> Vec<Vec<SocketAddr>> {
        self.upstreams.iter().map(|u| u.dests.clone()).collect()
    }

    /// The owner, by name.
    pub(crate) fn owner(&self, owner: OwnerIdx) -> Owner {
        match owner {
            OwnerIdx::Listener(l) => Owner::Listener(self.listeners[l].name.clone()),
            OwnerIdx::Upstream(u) => Owner::Upstream(self.upstreams[u].name.clone()),
            OwnerIdx::Untracked => Owner::Untracked,
        }
    }

    /// The connection `owner` tracks from `local` to `remote` (both canonical), asking its
    /// sources the first time only.
    pub(crate) fn connection(
        &mut self,
        owner: OwnerIdx,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<TrackedConnection> {
        let (name, sources) = match owner {
            OwnerIdx::Listener(l) => {
                let t = &self.listeners[l];
                (&t.name, std::slice::from_ref(&t.source))
            }
            OwnerIdx::Upstream(u) => {
                let t = &self.upstreams[u];
                (&t.name, t.sources.as_slice())
            }
            OwnerIdx::Untracked => return None,
        };
        let all = self.sources;
        self.connections
            .entry(owner)
            .or_insert_with(|| {
                sources
                    .iter()
                    .flat_map(|s| all[*s].connections(name))
                    .collect()
            })
            .iter()
            .find(|c| canon(c.local) == local && canon(c.remote) == remote)
            .copied()
    }
}
