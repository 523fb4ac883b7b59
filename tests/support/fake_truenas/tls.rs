//! The certificate a fresh TrueNAS box serves.
//!
//! truenas_crypto_utils generate_self_signed.py `generate_self_signed_certificate` (with
//! generate_utils.py `generate_builder`): self-signed, RSA 2048, SHA-256, subject = issuer
//! C=US, O=iXsystems Inc. dba TrueNAS, CN=localhost, emailAddress=info@truenas.com,
//! ST=Tennessee, L=Maryville; a random serial in 1000..2^30; valid from now for
//! `DEFAULT_LIFETIME_DAYS` (397); extensions SAN `DNS:localhost` and EKU serverAuth, both
//! non-critical, nothing else (no BasicConstraints, no key identifiers).

use std::sync::{Arc, OnceLock};

use rand::Rng;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    RsaKeySize, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::options::CertKind;

/// truenas_crypto_utils/utils.py `DEFAULT_LIFETIME_DAYS`.
const LIFETIME_DAYS: i64 = 397;
/// `NameOID.EMAIL_ADDRESS` (1.2.840.113549.1.9.1).
const EMAIL_ADDRESS_OID: &[u64] = &[1, 2, 840, 113_549, 1, 9, 1];

pub(super) struct TlsMaterial {
    pub acceptor: TlsAcceptor,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// `sha256:<hex>` of the DER certificate.
    pub fingerprint: String,
}

/// One RSA key per test process: generating 2048-bit keys is slow, and every fake of a test
/// binary sharing one key changes nothing a test can observe.
fn rsa_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            .expect("aws-lc-rs generates RSA 2048 keys")
            .serialize_der()
    })
}

pub(super) fn generate(kind: CertKind) -> TlsMaterial {
    let key_der = rsa_key().to_vec();
    let key_pair = KeyPair::try_from(key_der.as_slice()).expect("the cached key parses");

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, "iXsystems Inc. dba TrueNAS");
    name.push(DnType::CommonName, "localhost");
    name.push(
        DnType::CustomDnType(EMAIL_ADDRESS_OID.to_vec()),
        DnValue::Ia5String("info@truenas.com".try_into().expect("ASCII address")),
    );
    name.push(DnType::StateOrProvinceName, "Tennessee");
    name.push(DnType::LocalityName, "Maryville");
    params.distinguished_name = name;
    params.is_ca = IsCa::NoCa;
    params.serial_number = Some(SerialNumber::from(
        rand::rng().random_range(1000u64..=(1 << 30)),
    ));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(LIFETIME_DAYS);
    params.subject_alt_names = vec![SanType::DnsName(
        "localhost".try_into().expect("valid DNS name"),
    )];
    if kind == CertKind::LoopbackIp {
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key_pair)
        .expect("self-sign the certificate");
    let cert_der = cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));

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
        cert_pem: cert.pem(),
        cert_der,
    }
}
