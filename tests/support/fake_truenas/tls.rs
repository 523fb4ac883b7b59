//! A self-signed certificate, like the one a fresh TrueNAS box serves.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

pub(super) struct TlsMaterial {
    pub acceptor: TlsAcceptor,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// `sha256:<hex>` of the DER certificate.
    pub fingerprint: String,
}

pub(super) fn generate() -> TlsMaterial {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let certified =
        rcgen::generate_simple_self_signed(names).expect("generate a self-signed certificate");
    let cert_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));

    // Explicit provider: the project builds everything on aws-lc-rs and must not depend on a
    // process-wide default being installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .expect("certificate and key match");
    // TrueNAS' nginx offers both; hyper's auto builder serves whichever the client picks.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    TlsMaterial {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(&cert_der))),
        cert_pem: certified.cert.pem(),
        cert_der,
    }
}
