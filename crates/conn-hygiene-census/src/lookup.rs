//! Lookups made once per socket of a walk, where a walk may hand over hundreds of thousands:
//! a port set that answers with one bit test, and an address map that passes over most
//! sockets on their port alone and scans a short list before it hashes.
//!
//! ```
//! use conn_hygiene_census::lookup::{AddrMap, PortSet};
//!
//! let mut ports = PortSet::new();
//! ports.insert(8080);
//! assert!(ports.contains(8080) && !ports.contains(8081));
//!
//! let mut upstreams = AddrMap::new();
//! upstreams.insert("10.0.0.5:5432".parse()?, 0usize);
//! assert_eq!(upstreams.get(&"10.0.0.5:5432".parse()?), Some(&0));
//! assert_eq!(upstreams.get(&"10.0.0.5:5433".parse()?), None);
//! # Ok::<(), std::net::AddrParseError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

/// A set of TCP ports: 8 KiB of bits.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    len: usize,
}

impl PortSet {
    /// An empty set.
    pub fn new() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
            len: 0,
        }
    }

    /// Adds a port; `false` if it was there.
    pub fn insert(&mut self, port: u16) -> bool {
        let (word, bit) = (usize::from(port >> 6), 1u64 << (port & 63));
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.len += usize::from(fresh);
        fresh
    }

    /// Whether the port is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1u64 << (port & 63)) != 0
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = (0..=u16::MAX).filter(|p| self.contains(*p));
        f.debug_set().entries(ports).finish()
    }
}

/// Up to this many entries, an [`AddrMap`] scans a list instead of hashing.
const SCAN_UP_TO: usize = 16;

/// A map keyed by socket address, for lookups of every socket of a walk against a few
/// addresses (listeners, upstream destinations): a socket whose port is no key's costs one bit
/// test; a short map is scanned; a long one hashed. Keys compare as given: canonicalise them
/// ([`canonical_addr`](crate::canonical_addr)) on both sides.
#[derive(Debug, Clone)]
pub struct AddrMap<V> {
    ports: PortSet,
    list: Vec<(SocketAddr, V)>,
    /// Each key of `list` as one number ([`v4_key`]; none for an IPv6 key), scanned for an
    /// IPv4 address without comparing whole socket addresses.
    v4_keys: Vec<u64>,
    /// Positions in `list`, once it is longer than [`SCAN_UP_TO`].
    index: Option<HashMap<SocketAddr, usize>>,
}

/// An IPv4 socket address as one number: the address, then the port. Never [`NOT_V4`].
#[inline(always)]
fn v4_key(addr: &std::net::SocketAddrV4) -> u64 {
    (u64::from(addr.ip().to_bits()) << 16) | u64::from(addr.port())
}

/// What [`AddrMap::v4_keys`] holds for an IPv6 key: above any [`v4_key`].
const NOT_V4: u64 = u64::MAX;

impl<V> AddrMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        AddrMap {
            ports: PortSet::new(),
            list: Vec::new(),
            v4_keys: Vec::new(),
            index: None,
        }
    }

    /// Inserts `value` at `addr` unless there is one already; returns whether it did.
    pub fn insert(&mut self, addr: SocketAddr, value: V) -> bool {
        if self.get(&addr).is_some() {
            return false;
        }
        self.ports.insert(addr.port());
        self.list.push((addr, value));
        self.v4_keys.push(match &addr {
            SocketAddr::V4(v4) => v4_key(v4),
            SocketAddr::V6(_) => NOT_V4,
        });
        let at = self.list.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(addr, at);
            }
            None if self.list.len() > SCAN_UP_TO => {
                self.index = Some(
                    self.list
                        .iter()
                        .enumerate()
                        .map(|(i, (a, _))| (*a, i))
                        .collect(),
                );
            }
            None => {}
        }
        true
    }

    /// The value at `addr`.
    ///
    /// Inlined to its port test, which passes over most sockets of a walk; the lookup
    /// proper is a call.
    #[inline(always)]
    pub fn get(&self, addr: &SocketAddr) -> Option<&V> {
        if !self.ports.contains(addr.port()) {
            return None;
        }
        self.position(addr).map(|at| &self.list[at].1)
    }

    /// The value at `addr`, to change.
    #[inline(always)]
    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut V> {
        if !self.ports.contains(addr.port()) {
            return None;
        }
        let at = self.position(addr)?;
        Some(&mut self.list[at].1)
    }

    /// Where `addr` is among the entries (their insertion order), for
    /// [`value_at_mut`](Self::value_at_mut): a caller that meets one key many times in a row
    /// keeps its place rather than looking it up again.
    #[inline(always)]
    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        if !self.ports.contains(addr.port()) {
            return None;
        }
        self.position(addr)
    }

    /// The value of the entry at `index` ([`index_of`](Self::index_of)), to change.
    ///
    /// # Panics
    ///
    /// When `index` is not below [`len`](Self::len).
    #[inline]
    pub fn value_at_mut(&mut self, index: usize) -> &mut V {
        &mut self.list[index].1
    }

    /// Where `addr` is in the list, once its port is known to be a key's.
    #[inline]
    fn position(&self, addr: &SocketAddr) -> Option<usize> {
        match (&self.index, addr) {
            (None, SocketAddr::V4(v4)) => {
                let key = v4_key(v4);
                self.v4_keys.iter().position(|&k| k == key)
            }
            _ => self.position_hashed_or_v6(addr),
        }
    }

    #[inline(never)]
    fn position_hashed_or_v6(&self, addr: &SocketAddr) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(addr).copied(),
            None => self.list.iter().position(|(a, _)| a == addr),
        }
    }

    /// Whether a key has this port: a socket whose port is no key's matches none.
    #[inline]
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.contains(port)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &V)> {
        self.list.iter().map(|(a, v)| (a, v))
    }

    /// The values, in insertion order.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.list.into_iter().map(|(_, v)| v)
    }
}

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_edges() {
        let mut s = PortSet::new();
        assert!(s.is_empty());
        for p in [0, 63, 64, 65535] {
            assert!(s.insert(p));
            assert!(!s.insert(p));
        }
        assert_eq!(s.len(), 4);
        for p in [0, 63, 64, 65535] {
            assert!(s.contains(p));
        }
        for p in [1, 62, 65, 65534] {
            assert!(!s.contains(p));
        }
        assert_eq!(format!("{s:?}"), "{0, 63, 64, 65535}");
    }

    #[test]
    fn addr_map_scans_then_hashes_and_agrees() {
        let mut m = AddrMap::new();
        let addr = |i: u16| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000 + i % 7));
        for i in 0..100u16 {
            assert!(m.insert(addr(i), i));
            assert!(!m.insert(addr(i), 9999), "first value kept");
            // Every key so far is found, and nothing else, before and after the switch.
            for j in 0..=i {
                assert_eq!(m.get(&addr(j)), Some(&j));
            }
            assert_eq!(m.get(&addr(i + 1)), None);
            assert_eq!(m.get(&SocketAddr::from(([10, 0, 0, 0], 2000))), None);
        }
        *m.get_mut(&addr(42)).unwrap() += 1000;
        assert_eq!(m.get(&addr(42)), Some(&1042));
        assert_eq!(m.len(), 100);
        assert!(m.has_port(1000) && !m.has_port(999));
        assert_eq!(m.iter().next(), Some((&addr(0), &0)));
        assert_eq!(m.into_values().count(), 100);
    }

    /// IPv4 keys are scanned as numbers, IPv6 ones as addresses: keys of both families on one
    /// port, an IPv4 address that is an IPv6 key's low bits, and the IPv4-mapped form of an
    /// IPv4 key (a different key: keys compare as given) are each found as themselves only.
    #[test]
    fn addr_map_keys_of_both_families_on_one_port() {
        let v4: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let v4b: SocketAddr = "0.0.0.1:443".parse().unwrap();
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:443".parse().unwrap();
        let other_port: SocketAddr = "10.0.0.1:444".parse().unwrap();
        let mut m = AddrMap::new();
        assert!(m.insert(v6, "v6"));
        assert!(m.insert(v4, "v4"));
        assert_eq!(m.get(&v4), Some(&"v4"));
        assert_eq!(m.get(&v6), Some(&"v6"));
        assert_eq!(
            m.get(&v4b),
            None,
            "the IPv6 key's low bits are not an IPv4 key"
        );
        assert_eq!(m.get(&mapped), None, "keys compare as given");
        assert_eq!(m.get(&other_port), None);
        assert!(m.insert(mapped, "mapped"));
        assert_eq!(m.get(&mapped), Some(&"mapped"));
        assert_eq!(m.get(&v4), Some(&"v4"));
        assert_eq!(m.index_of(&v4), Some(1));
        assert_eq!(m.index_of(&mapped), Some(2));
        assert_eq!(m.index_of(&other_port), None);
        *m.value_at_mut(1) = "changed";
        assert_eq!(m.get(&v4), Some(&"changed"));
        assert_eq!(
            m.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            ["v6", "changed", "mapped"]
        );
    }
}
