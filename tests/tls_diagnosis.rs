//! TLS failures against real tokio-rustls servers on 127.0.0.1: each test serves one rcgen
//! certificate and checks that the probe, the REST client and a WebSocket connect name the
//! cause in plain words.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use passgate::truenas::rest::RestClient;
use passgate::truenas::tls::{client_config, TrustMode};
use passgate::truenas::tls_diagnosis::{describe, probe, CertName, TlsFailure, TlsReport};
use passgate::truenas::{NasClient, NasError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Generous: the machine is shared; a handshake on loopback normally takes milliseconds.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Cert {
    der: CertificateDer<'static>,
    pem: String,
    key: PrivateKeyDer<'static>,
    not_after: OffsetDateTime,
}

impl Cert {
    fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.der.as_ref()).into()
    }

    fn pin(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256()))
    }
}

/// Like truenas_crypto_utils' generate_self_signed_certificate: RSA 2048, self-signed,
/// CN and SAN `localhost` only, serverAuth.
fn truenas_default_cert() -> Cert {
    let now = OffsetDateTime::now_utc();
    make_cert(
        &["localhost"],
        now - time::Duration::days(1),
        now + time::Duration::days(397),
    )
}

fn make_cert(names: &[&str], not_before: OffsetDateTime, not_after: OffsetDateTime) -> Cert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key generation");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("certificate parameters");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "US");
    dn.push(
        rcgen::DnType::OrganizationName,
        "iXsystems Inc. dba TrueNAS",
    );
    dn.push(rcgen::DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).expect("self-sign");
    Cert {
        der: cert.der().clone(),
        pem: cert.pem(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after,
    }
}

/// A TLS server on 127.0.0.1 that completes (or fails) handshakes until dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(cert: &Cert) -> Server {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .expect("certificate and key match");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    // Answer like a web server so reqwest gets a response when trust passes.
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Server { addr, task }
}

fn pem_file(cert: &Cert) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(cert.pem.as_bytes()).expect("write PEM");
    file
}

async fn probe_at(server: &Server, trust: TrustMode<'_>) -> TlsReport {
    probe("127.0.0.1", server.addr.port(), "127.0.0.1", trust, TIMEOUT)
        .await
        .expect("probe starts")
}

#[tokio::test]
async fn truenas_default_cert_with_system_roots_is_not_trusted() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let report = probe_at(&server, TrustMode::Roots { ca_file: None }).await;

    assert_eq!(report.outcome, Err(TlsFailure::NotTrusted));
    let leaf = report
        .leaf
        .as_ref()
        .expect("the refused certificate is recorded");
    assert!(leaf.self_signed);
    assert_eq!(leaf.names, vec![CertName::Dns(String::from("localhost"))]);
    assert!(leaf.subject.contains("CN=localhost"), "{}", leaf.subject);
    assert_eq!(leaf.sha256, cert.sha256());
    assert_eq!(leaf.der, cert.der);

    // It does not name 127.0.0.1, so a CA file would not help: the advice is the pin.
    let advice = report.advice().expect("a failure has advice");
    let line = format!("tls_fingerprint = \"{}\"", cert.pin());
    assert_eq!(advice.config_line.as_deref(), Some(line.as_str()));
    let text = report.to_string();
    for expected in [
        "TLS: certificate not trusted (self-signed or unknown CA)\n",
        "\n  names: DNS:localhost\n",
        &format!("\n  pin: {}\n", cert.pin()),
        &format!("\n  add to [truenas]: {line}\n"),
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[tokio::test]
async fn same_cert_as_ca_file_is_a_name_mismatch_naming_localhost() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let ca = pem_file(&cert);
    let report = probe_at(
        &server,
        TrustMode::Roots {
            ca_file: Some(ca.path()),
        },
    )
    .await;

    let failure = report.outcome.clone().expect_err("name must not match");
    assert_eq!(
        failure,
        TlsFailure::NameMismatch {
            expected: Some(String::from("127.0.0.1")),
            presented: vec![String::from("localhost")],
        }
    );
    assert_eq!(
        failure.to_string(),
        "certificate name mismatch: it names localhost, not 127.0.0.1"
    );
    assert!(report.to_string().contains(&cert.pin()));
}

#[tokio::test]
async fn trusted_cert_past_its_end_is_expired_with_the_date() {
    let now = OffsetDateTime::now_utc();
    let cert = make_cert(
        &["127.0.0.1"],
        now - time::Duration::days(30),
        now - time::Duration::days(2),
    );
    let server = serve(&cert).await;
    let ca = pem_file(&cert);
    let report = probe_at(
        &server,
        TrustMode::Roots {
            ca_file: Some(ca.path()),
        },
    )
    .await;

    match report.outcome {
        Err(TlsFailure::Expired {
            not_after: Some(at),
        }) => assert_eq!(at.unix_timestamp(), cert.not_after.unix_timestamp()),
        other => panic!("expected Expired with a date, got {other:?}"),
    }
    assert!(report.to_string().contains("TLS: certificate expired on "));
}

#[tokio::test]
async fn wrong_pin_reports_the_pin_the_server_presents() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let report = probe_at(&server, TrustMode::Pinned([0x11; 32])).await;

    assert_eq!(
        report.outcome,
        Err(TlsFailure::PinMismatch {
            presented: cert.sha256()
        })
    );
    assert!(report.to_string().contains(&format!(
        "pinned fingerprint does not match (server presents {})",
        cert.pin()
    )));
}

#[tokio::test]
async fn right_pin_is_ok_whatever_the_name() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let report = probe_at(&server, TrustMode::Pinned(cert.sha256())).await;

    assert_eq!(report.outcome, Ok(()));
    assert!(report.advice().is_none());
    assert_eq!(report.presented_pin(), Some(cert.pin()));
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    let report = probe(
        "127.0.0.1",
        port,
        "127.0.0.1",
        TrustMode::Roots { ca_file: None },
        TIMEOUT,
    )
    .await
    .expect("probe starts");

    assert_eq!(report.outcome, Err(TlsFailure::ConnectionRefused));
    assert!(report.leaf.is_none());
    assert!(report.to_string().starts_with("TLS: connection refused\n"));
}

#[tokio::test]
async fn plain_http_port_is_not_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let report = probe(
        "127.0.0.1",
        port,
        "127.0.0.1",
        TrustMode::Roots { ca_file: None },
        TIMEOUT,
    )
    .await
    .expect("probe starts");
    task.abort();

    assert_eq!(report.outcome, Err(TlsFailure::NotTls));
}

#[tokio::test]
async fn rest_client_error_names_the_tls_cause() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());

    let untrusted = RestClient::new(
        &base,
        client_config(TrustMode::Roots { ca_file: None }).expect("TLS config"),
        SecretString::from("1-key"),
        TIMEOUT,
    )
    .expect("client");
    match untrusted.ping().await {
        Err(NasError::Unavailable(text)) => {
            assert!(
                text.contains("certificate not trusted (self-signed or unknown CA)"),
                "{text}"
            );
            assert!(!text.contains("error sending request"), "{text}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    let wrong_pin = RestClient::new(
        &base,
        client_config(TrustMode::Pinned([0x22; 32])).expect("TLS config"),
        SecretString::from("1-key"),
        TIMEOUT,
    )
    .expect("client");
    match wrong_pin.ping().await {
        Err(NasError::Unavailable(text)) => assert_eq!(
            text,
            format!(
                "GET /core/ping: pinned fingerprint does not match (server presents {})",
                cert.pin()
            )
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// What rpc_conn.rs will get once its connect error goes through `describe`.
#[tokio::test]
async fn websocket_connect_error_names_the_tls_cause() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let ca = pem_file(&cert);
    let tls = client_config(TrustMode::Roots {
        ca_file: Some(ca.path()),
    })
    .expect("TLS config");
    let url = format!("wss://127.0.0.1:{}/api/current", server.addr.port());
    let err = tokio_tungstenite::connect_async_tls_with_config(
        &url,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await
    .expect_err("the name must not match");

    assert_eq!(
        describe(&err),
        "certificate name mismatch: it names localhost, not 127.0.0.1"
    );
}

/// `api = "auto"` first asks `GET /api/versions`: its failure must name the cause too.
#[tokio::test]
async fn auto_api_probe_error_names_the_tls_cause() {
    let cert = truenas_default_cert();
    let server = serve(&cert).await;
    let ca = pem_file(&cert);
    let env = [
        (
            "PASSGATE_TRUENAS__URL",
            format!("https://127.0.0.1:{}", server.addr.port()),
        ),
        ("PASSGATE_TRUENAS__API_KEY", String::from("1-key")),
        ("PASSGATE_TRUENAS__API", String::from("auto")),
        (
            "PASSGATE_TRUENAS__CA_FILE",
            ca.path().to_str().expect("utf-8 temp path").to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let config = passgate::config::Config::load_from(None, env).expect("config");
    let nas = passgate::truenas::connect::build(&config).expect("client");
    match nas.ping().await {
        Err(NasError::Unavailable(text)) => assert_eq!(
            text,
            "GET /api/versions: certificate name mismatch: it names localhost, not 127.0.0.1"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
