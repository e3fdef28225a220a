//! How a request finds its upstream: by `host:port` in [`Upstreams`], or, for a request
//! hyper-util hands back to the connector, by the pool key of a [`Route`].

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, OnceLock, RwLock, Weak},
};

use super::{
    config::{ClientConfigError, UpstreamConfig},
    upstream::{Upstream, MAX_UPSTREAMS},
};
use crate::{metrics::Collect, policy::SocketPolicy};

/// The client's upstreams, by `host:port`.
pub(crate) struct Upstreams {
    /// The pool-wide idle cap given to hyper-util (the largest of the upstreams').
    pub(crate) pool_max_idle: usize,
    pub(crate) policy: SocketPolicy,
    pub(crate) default: UpstreamConfig,
    pub(crate) overrides: HashMap<String, UpstreamConfig>,
    pub(crate) map: RwLock<UpstreamMap>,
    /// The first upstream found by its key, with the key (see `find`).
    pub(crate) primary: OnceLock<(String, Arc<Upstream>)>,
    /// Upstreams with a [`Route`], by route index.
    pub(crate) routed: RwLock<Vec<Arc<Upstream>>>,
    /// Requests go to hyper-util with their upstream's pool key (see [`Route`]).
    pub(crate) route_requests: bool,
    pub(crate) http2_only: bool,
    /// A connector of the user's, in place of the crate's TCP (and TLS) connect.
    pub(crate) custom: Option<super::connector::CustomConnector>,
    /// TLS for `https://` upstreams: the client's own, or the default roots.
    #[cfg(feature = "rustls")]
    pub(crate) tls: Option<super::tls::ClientTls>,
}

impl Upstreams {
    /// The upstream already known by this key, if any.
    ///
    /// The first upstream found is kept aside as the primary: a client that talks to one
    /// upstream (the common case) finds it with a string comparison, without the map's lock.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Upstream>> {
        if let Some((primary, up)) = self.primary.get() {
            if primary == key {
                return Some(up.clone());
            }
        }
        let found = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()?;
        if self.primary.get().is_none() {
            let _ = self.primary.set((key.to_owned(), found.clone()));
        }
        Some(found)
    }

    /// The upstream of a normalised `host:port`, made on first use.
    pub(crate) fn get(&self, authority: &str) -> Result<Arc<Upstream>, ClientConfigError> {
        if let Some(u) = self.find(authority) {
            return Ok(u);
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = map.get(authority) {
            return Ok(u.clone());
        }
        let (key, config) = match self.overrides.get(authority) {
            Some(c) => (authority.to_owned(), c.clone()),
            None if map.len() >= MAX_UPSTREAMS => {
                if let Some(u) = map.get("other") {
                    return Ok(u.clone());
                }
                ("other".to_owned(), self.default.clone().name("other"))
            }
            None => (authority.to_owned(), self.default.clone()),
        };
        let mut up = Upstream::new(key.clone(), config, self.policy.clone())?;
        let mut routed = self.routed.write().unwrap_or_else(|e| e.into_inner());
        if self.route_requests && key != "other" {
            up.route = Route::new(routed.len(), &key);
        }
        let up = Arc::new(up);
        crate::metrics::register_collector(Arc::downgrade(&up) as Weak<dyn Collect>);
        if up.route.is_some() {
            routed.push(up.clone());
        }
        map.insert(key, up.clone());
        Ok(up)
    }

    /// The upstream a pool key made by [`Route`] stands for; `None` for any other authority.
    pub(crate) fn routed(&self, uri: &http::Uri) -> Option<Arc<Upstream>> {
        let index = Route::index_of(uri)?;
        self.routed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Upstream>> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Route keys: `"00:0"` to `"ff:0"`, four bytes each, back to back (see [`Route`]).
static ROUTE_KEYS: [u8; 4 * MAX_UPSTREAMS] = route_keys();

const fn route_keys() -> [u8; 4 * MAX_UPSTREAMS] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut keys = [0u8; 4 * MAX_UPSTREAMS];
    let mut i = 0;
    while i < MAX_UPSTREAMS {
        keys[4 * i] = HEX[i >> 4];
        keys[4 * i + 1] = HEX[i & 15];
        keys[4 * i + 2] = b':';
        keys[4 * i + 3] = b'0';
        i += 1;
    }
    keys
}

/// How an upstream's HTTP/1 requests address hyper-util's pool.
///
/// hyper-util keys its pool by a request's scheme and authority, and hashes the authority
/// byte by byte (SipHash, case-folded) and compares it several times per request. A request
/// to a routed upstream goes to hyper-util with the upstream's four-byte key (`"0a:0"`) as its
/// authority and its real `Host` header already set; the connector maps the key back to the
/// upstream and connects to its real address. On the wire nothing changes: an HTTP/1 request
/// carries its path and its `Host` header, never the authority given to the pool. Port 0
/// marks the key: no server listens on it, and a request to port 0 that is not routed is
/// refused as an invalid URI, so no real authority reaches the connector looking like a key.
/// Only `http` requests are routed: HTTP/2 sends the authority itself (`:authority`),
/// and `CONNECT` sends it in the request line.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The authority hyper-util's pool sees.
    pub(crate) key: http::uri::Authority,
    /// The `Host` header hyper-util would have written: the host, and the port unless 80.
    pub(crate) host: http::HeaderValue,
    /// Where the connector really connects: `http://host:port`.
    pub(crate) origin: http::Uri,
}

impl Route {
    fn new(index: usize, authority: &str) -> Option<Self> {
        let bytes = ROUTE_KEYS.get(4 * index..4 * index + 4)?;
        let key = http::uri::Authority::from_static(std::str::from_utf8(bytes).ok()?);
        let origin: http::Uri = format!("http://{authority}").parse().ok()?;
        let host = origin.host()?;
        let host = match origin.port_u16()? {
            80 => http::HeaderValue::from_str(host),
            _ => http::HeaderValue::from_str(authority),
        }
        .ok()?;
        Some(Self { key, host, origin })
    }

    /// The route index a pool key stands for.
    fn index_of(uri: &http::Uri) -> Option<usize> {
        if uri.port_u16() != Some(0) {
            return None;
        }
        match uri.host()?.as_bytes() {
            &[hi, lo] => {
                let digit = |b: u8| (b as char).to_digit(16).filter(|_| !b.is_ascii_uppercase());
                Some(usize::try_from(digit(hi)? * 16 + digit(lo)?).ok()?)
            }
            _ => None,
        }
    }
}

/// Upstreams by `host:port`, looked up on every request: a short key, hashed with FNV-1a
/// rather than SipHash. Flooding does not apply: the map never holds more than
/// [`MAX_UPSTREAMS`] entries, whatever the keys.
pub(crate) type UpstreamMap = HashMap<String, Arc<Upstream>, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `host:port` of a URI, with the scheme's default port.
pub(crate) fn authority_of(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_keys_the_pool_by_index_and_keeps_host_and_origin() {
        let r = Route::new(0, "127.0.0.1:8080").unwrap();
        assert_eq!(r.key.as_str(), "00:0");
        assert_eq!(r.host, "127.0.0.1:8080");
        assert_eq!(r.origin, "http://127.0.0.1:8080/");
        // The Host header hyper-util would write: no port when it is http's default.
        let r = Route::new(10, "example.com:80").unwrap();
        assert_eq!(
            (r.key.as_str(), r.host.to_str().unwrap()),
            ("0a:0", "example.com")
        );
        assert_eq!(Route::new(255, "[::1]:80").unwrap().host, "[::1]");
        assert_eq!(Route::new(1, "[::1]:81").unwrap().host, "[::1]:81");
        assert_eq!(
            Route::new(1, "example.com:443").unwrap().host,
            "example.com:443"
        );
        // Beyond the key table, or an authority that is no origin: no route.
        assert!(Route::new(MAX_UPSTREAMS, "example.com:80").is_none());
        assert!(Route::new(1, "example.com:http").is_none());
    }

    #[test]
    fn only_a_route_key_maps_back_to_a_route_index() {
        let index = |s: &str| Route::index_of(&s.parse().unwrap());
        for i in 0..MAX_UPSTREAMS {
            let key = Route::new(i, "example.com:80").unwrap().key;
            assert_eq!(index(&format!("http://{key}")), Some(i));
        }
        assert_eq!(&ROUTE_KEYS[4 * 255..], b"ff:0");
        for not_a_key in [
            "http://0a:1",
            "http://0a",
            "http://0A:0",
            "http://+a:0",
            "http://a:0",
            "http://0ab:0",
            "http://example.com:0",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(index(not_a_key), None, "{not_a_key}");
        }
    }

    #[test]
    fn authority_has_a_port() {
        let a = |s: &str| authority_of(&s.parse().unwrap());
        assert_eq!(a("http://example.com/x").as_deref(), Some("example.com:80"));
        assert_eq!(
            a("http://127.0.0.1:8080/").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(a("http://[::1]:81/").as_deref(), Some("[::1]:81"));
        assert_eq!(a("/relative"), None);
    }

    /// `HygienicClient::request` looks the authority up as written before normalising it: that
    /// is only right if an authority as written is either its own normalised key or can be no
    /// upstream's key at all (no `:port`, or user info).
    #[test]
    fn an_authority_as_written_is_its_key_or_no_key() {
        let is_key_shaped = |k: &str| {
            !k.contains('@')
                && k.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit())
                        && (!host.contains(':') || host.starts_with('['))
                })
        };
        for uri in [
            "http://example.com/",
            "https://example.com/",
            "http://example.com:8080/",
            "https://Example.COM:443/x",
            "http://user:pw@example.com:80/",
            "http://user@example.com/",
            "http://[::1]/",
            "http://[::1]:8080/",
            "http://127.0.0.1:9/",
            "http://other/",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            let written = uri.authority().unwrap().as_str();
            let key = authority_of(&uri).unwrap();
            assert!(is_key_shaped(&key), "{uri}: key {key:?}");
            assert!(
                written == key || !is_key_shaped(written),
                "{uri}: {written:?} looks like a key but is not its own ({key:?})"
            );
        }
    }
}
