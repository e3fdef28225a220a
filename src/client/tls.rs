//! TLS for `https://` upstreams: rustls between the tracked stream and the socket.

use std::{fmt, io, path::Path, sync::Arc};

use tokio::net::TcpStream;
use tokio_rustls::{
    client::TlsStream,
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, ServerName},
        RootCertStore,
    },
    TlsConnector,
};

/// The ALPN identifier of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How a [`HygienicClient`](super::HygienicClient) speaks TLS to `https://` upstreams, given to
/// [`ClientBuilder::tls`](super::ClientBuilder::tls).
///
/// TLS sits beneath the tracking: the client connects, applies its socket policy to the TCP
/// socket, then runs the handshake (bounded by the upstream's connect timeout), so policy,
/// tracking, who closed first (a server's `close_notify` or FIN counts as the server closing)
/// and census attribution are the same as over plain TCP.
///
/// Without one, a client built with the `webpki-roots` feature trusts Mozilla's roots, and
/// with `native-roots` alone the system's; HTTP/2 and HTTP/1.1 are offered by ALPN and the
/// server chooses.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use conn_hygiene::client::{ClientTls, HygienicClient};
/// use http_body_util::Empty;
///
/// # let dir = std::env::temp_dir().join(format!("conn-hygiene-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("ca.pem");
/// # let key = rcgen::KeyPair::generate()?;
/// # let ca = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])?.self_signed(&key)?;
/// # std::fs::write(&path, ca.pem())?;
/// // Trust a private CA (a PEM file), beside nothing else.
/// let tls = ClientTls::builder().add_ca_file(&path)?.build()?;
/// let client = HygienicClient::builder().tls(tls).build::<Empty<Bytes>>()?;
/// # drop(client);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alpn: Vec<_> = self
            .config
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        f.debug_struct("ClientTls")
            .field("alpn", &alpn)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// A builder: choose the roots to trust and what to offer by ALPN.
    pub fn builder() -> ClientTlsBuilder {
        ClientTlsBuilder {
            roots: RootCertStore::empty(),
            offer_http2: true,
        }
    }

    /// A rustls configuration of your own (client certificates, pinned roots, another crypto
    /// provider), used as it is: offer HTTP/2 by putting `h2` in its `alpn_protocols`.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(config.clone()),
            config,
        }
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// What a client uses when it was given none: Mozilla's roots (`webpki-roots`), else the
    /// system's (`native-roots`); `None` without either feature.
    pub(crate) fn default_roots() -> Option<Self> {
        #[allow(unused_mut)]
        let mut builder = Self::builder();
        #[cfg(feature = "webpki-roots")]
        {
            builder = builder.webpki_roots();
        }
        #[cfg(all(feature = "native-roots", not(feature = "webpki-roots")))]
        {
            builder = match builder.native_roots() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "no system root certificates for https upstreams");
                    return None;
                }
            };
        }
        builder.build().ok()
    }

    /// Runs the handshake over `tcp` with the server named by `host` (a DNS name or an IP
    /// address, IPv6 with or without brackets).
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a TLS server name: {e}"),
            )
        })?;
        self.connector.connect(name, tcp).await
    }
}

/// Builds a [`ClientTls`]. Roots add up: any of Mozilla's, the system's and your own CAs.
#[derive(Debug, Clone)]
pub struct ClientTlsBuilder {
    roots: RootCertStore,
    offer_http2: bool,
}

impl ClientTlsBuilder {
    /// Trust Mozilla's root certificates, compiled in (feature `webpki-roots`).
    #[cfg(feature = "webpki-roots")]
    pub fn webpki_roots(mut self) -> Self {
        self.roots
            .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        self
    }

    /// Trust the operating system's root certificates (feature `native-roots`; on Linux the
    /// files `SSL_CERT_FILE` / `SSL_CERT_DIR` name, or the distribution's bundle). Fails only
    /// when none could be loaded.
    #[cfg(feature = "native-roots")]
    pub fn native_roots(mut self) -> Result<Self, TlsConfigError> {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = self.roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(TlsConfigError::NativeRoots { why });
        }
        Ok(self)
    }

    /// Trust the CA certificates of a PEM file (one or more `CERTIFICATE` blocks), such as a
    /// private CA's, or a server's own self-signed certificate.
    pub fn add_ca_file(self, path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let path = path.as_ref();
        let setting = || format!("add_ca_file = {}", path.display());
        let pem = std::fs::read(path).map_err(|e| TlsConfigError::Ca {
            setting: setting(),
            why: e.to_string(),
        })?;
        self.add_ca(&pem, setting)
    }

    /// Trust the CA certificates of PEM text (one or more `CERTIFICATE` blocks).
    pub fn add_ca_pem(self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        self.add_ca(pem, || format!("add_ca_pem = <{} bytes>", pem.len()))
    }

    fn add_ca(mut self, pem: &[u8], setting: impl Fn() -> String) -> Result<Self, TlsConfigError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsConfigError::Ca {
                setting: setting(),
                why: format!("unreadable PEM: {e}"),
            })?;
            self.roots.add(cert).map_err(|e| TlsConfigError::Ca {
                setting: setting(),
                why: format!("not a usable CA certificate: {e}"),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsConfigError::Ca {
                setting: setting(),
                why: "no CERTIFICATE block found".to_owned(),
            });
        }
        Ok(self)
    }

    /// Whether HTTP/2 is offered by ALPN beside HTTP/1.1. Default: `true` (the server
    /// chooses, as browsers and curl let it); `false` offers HTTP/1.1 alone.
    pub fn offer_http2(mut self, on: bool) -> Self {
        self.offer_http2 = on;
        self
    }

    /// Builds the configuration (rustls with the process's default crypto provider, else
    /// ring; TLS 1.3 and 1.2).
    pub fn build(self) -> Result<ClientTls, TlsConfigError> {
        if self.roots.is_empty() {
            return Err(TlsConfigError::NoRoots);
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Provider { why: e.to_string() })?
            .with_root_certificates(self.roots)
            .with_no_client_auth();
        config.alpn_protocols = if self.offer_http2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()]
        } else {
            vec![ALPN_HTTP1.to_vec()]
        };
        Ok(ClientTls::from_config(Arc::new(config)))
    }
}

/// A [`ClientTlsBuilder`] setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A CA file or PEM text gave no usable certificate.
    Ca {
        /// The setting and its value (`add_ca_file = PATH`).
        setting: String,
        /// What was wrong with it.
        why: String,
    },
    /// No system root certificate could be loaded.
    NativeRoots {
        /// The first error met.
        why: String,
    },
    /// No root to trust was given.
    NoRoots,
    /// The crypto provider supports no safe protocol version.
    Provider {
        /// rustls's error.
        why: String,
    },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Ca { setting, why } => write!(
                f,
                "invalid client TLS: {setting}: expected a readable PEM file of CA \
                 certificates ({why})"
            ),
            TlsConfigError::NativeRoots { why } => write!(
                f,
                "invalid client TLS: native_roots: expected the system's root certificates \
                 ({why})"
            ),
            TlsConfigError::NoRoots => f.write_str(
                "invalid client TLS: roots = none: expected at least one root to trust \
                 (webpki_roots, native_roots, add_ca_file or add_ca_pem)",
            ),
            TlsConfigError::Provider { why } => write!(
                f,
                "invalid client TLS: crypto provider: expected TLS 1.3 or 1.2 support ({why})"
            ),
        }
    }
}

impl std::error::Error for TlsConfigError {}
