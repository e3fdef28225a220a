//! TLS for tests: a self-signed certificate for `localhost` and `127.0.0.1` made at test time
//! (rcgen), a rustls acceptor serving it, and a rustls connector trusting it.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Once};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A certificate and both ends of TLS built on it.
pub struct TestTls {
    /// Serves the certificate, offering `h2` and `http/1.1` by ALPN.
    pub acceptor: TlsAcceptor,
    /// Trusts the certificate (no ALPN).
    pub connector: TlsConnector,
    /// The certificate, PEM: a client's CA file.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// A fresh certificate and its acceptor and connector.
pub fn test_tls() -> TestTls {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let der = CertificateDer::from(cert.der().to_vec());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key_der)
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
