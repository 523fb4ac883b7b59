//! TLS failures in plain words, and a one-handshake probe for `check-config --connect`.
//!
//! A refused TrueNAS certificate reaches the portal as reqwest's "error sending request" or a
//! tungstenite I/O error; the reason (self-signed, wrong name, expired, pin) sits several
//! `source()` levels down. TrueNAS' default certificate (truenas_crypto_utils
//! `truenas_crypto_utils/generate_self_signed.py`) is self-signed for `localhost` only, so the
//! usual first failure is "not trusted", then "name mismatch" once it is given as a CA file:
//! the advice here points at `tls_fingerprint`, the fix that works for it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::CertificateError;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::{
    capturing_verifier, client_config_with, fingerprint, pin_text, PinMismatch, TrustMode,
};
use super::NasError;

/// Error chains are short; the cap only guards against a cycle in a foreign `source()`.
const MAX_CHAIN: usize = 32;

/// Why a TLS connection to TrueNAS failed, as an admin would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// No trusted CA vouches for the certificate (self-signed, or a private CA not configured).
    NotTrusted,
    /// The certificate does not name the host connected to. `expected` is that host,
    /// `presented` the names in the certificate (`localhost` for TrueNAS' default one).
    NameMismatch {
        expected: Option<String>,
        presented: Vec<String>,
    },
    Expired {
        not_after: Option<OffsetDateTime>,
    },
    NotValidYet {
        not_before: Option<OffsetDateTime>,
    },
    BadSignature,
    /// The certificate is not meant for a TLS server (extended key usage).
    InvalidPurpose,
    Revoked,
    /// `truenas.tls_fingerprint` is not the SHA-256 of the certificate the server presents.
    PinMismatch {
        presented: [u8; 32],
    },
    /// Any other certificate refusal, in rustls' words.
    Certificate(String),
    /// The port answered, but not with TLS (a plain-HTTP port, or another service).
    NotTls,
    /// The handshake failed for a reason other than the certificate.
    Handshake(String),
    ConnectionRefused,
    TimedOut,
    /// The TCP connection could not be made (name resolution, unreachable network, …).
    Connect(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::NotTrusted => {
                f.write_str("certificate not trusted (self-signed or unknown CA)")
            }
            TlsFailure::NameMismatch {
                expected,
                presented,
            } => {
                f.write_str("certificate name mismatch: ")?;
                if presented.is_empty() {
                    f.write_str("it names no host")?;
                } else {
                    write!(f, "it names {}", presented.join(", "))?;
                }
                match expected {
                    Some(host) => write!(f, ", not {host}"),
                    None => f.write_str(", not the host connected to"),
                }
            }
            TlsFailure::Expired { not_after } => match not_after {
                Some(t) => write!(f, "certificate expired on {}", date(*t)),
                None => f.write_str("certificate expired"),
            },
            TlsFailure::NotValidYet { not_before } => match not_before {
                Some(t) => write!(
                    f,
                    "certificate not valid before {} (check this machine's clock)",
                    date(*t)
                ),
                None => f.write_str("certificate not valid yet (check this machine's clock)"),
            },
            TlsFailure::BadSignature => f.write_str("certificate signature is invalid"),
            TlsFailure::InvalidPurpose => {
                f.write_str("certificate is not for a TLS server (extended key usage)")
            }
            TlsFailure::Revoked => f.write_str("certificate revoked"),
            TlsFailure::PinMismatch { presented } => write!(
                f,
                "pinned fingerprint does not match (server presents {})",
                pin_text(presented)
            ),
            TlsFailure::Certificate(text) => write!(f, "certificate refused: {text}"),
            TlsFailure::NotTls => f.write_str("the server did not answer with TLS"),
            TlsFailure::Handshake(text) => write!(f, "TLS handshake failed: {text}"),
            TlsFailure::ConnectionRefused => f.write_str("connection refused"),
            TlsFailure::TimedOut => f.write_str("timed out"),
            TlsFailure::Connect(text) => write!(f, "cannot connect: {text}"),
        }
    }
}

/// The TLS or connection cause buried in `err`'s chain, if it has one.
pub fn diagnose(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut transport = None;
    walk(err, 0, &mut transport).or(transport)
}

/// `err` in plain words: the TLS or connection cause when one is found, else the whole chain
/// (without reqwest's URL, which the caller's label already names).
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(cause) = diagnose(err) {
        return cause.to_string();
    }
    let mut text = err.to_string();
    if let Some(url) = err
        .downcast_ref::<reqwest::Error>()
        .and_then(reqwest::Error::url)
    {
        text = text.replace(&format!(" for url ({url})"), "");
        text = text.replace(url.as_str(), "");
    }
    let mut source = err.source();
    let mut depth = 0;
    while let Some(s) = source {
        if depth == MAX_CHAIN {
            break;
        }
        text = format!("{text}: {s}");
        source = s.source();
        depth += 1;
    }
    text
}

/// A TLS cause wins over a transport one found higher up, since a refused certificate
/// also surfaces as an I/O error.
fn walk(
    err: &(dyn std::error::Error + 'static),
    depth: usize,
    transport: &mut Option<TlsFailure>,
) -> Option<TlsFailure> {
    let mut current = Some(err);
    let mut depth = depth;
    while let Some(e) = current {
        if depth >= MAX_CHAIN {
            return None;
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(from_rustls(tls));
        }
        if let Some(pin) = e.downcast_ref::<PinMismatch>() {
            return Some(TlsFailure::PinMismatch {
                presented: pin.presented,
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error's `source()` skips the error it wraps, which is where tokio-rustls
            // puts the rustls::Error: look inside it explicitly.
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn std::error::Error + 'static) = inner;
                if let Some(found) = walk(inner, depth + 1, transport) {
                    return Some(found);
                }
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    transport.get_or_insert(TlsFailure::ConnectionRefused);
                }
                std::io::ErrorKind::TimedOut => {
                    transport.get_or_insert(TlsFailure::TimedOut);
                }
                _ => {}
            }
        }
        if e.downcast_ref::<tokio::time::error::Elapsed>().is_some()
            || e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
        {
            transport.get_or_insert(TlsFailure::TimedOut);
        }
        current = e.source();
        depth += 1;
    }
    None
}

fn from_rustls(err: &rustls::Error) -> TlsFailure {
    match err {
        rustls::Error::InvalidCertificate(cert) => from_certificate_error(cert),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            TlsFailure::NotTls
        }
        rustls::Error::AlertReceived(alert) => {
            TlsFailure::Handshake(format!("the server refused the handshake ({alert:?})"))
        }
        other => TlsFailure::Handshake(other.to_string()),
    }
}

fn from_certificate_error(err: &CertificateError) -> TlsFailure {
    match err {
        CertificateError::UnknownIssuer => TlsFailure::NotTrusted,
        CertificateError::NotValidForName => TlsFailure::NameMismatch {
            expected: None,
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => TlsFailure::NameMismatch {
            expected: Some(expected.to_str().into_owned()),
            presented: presented.iter().map(|n| webpki_name(n)).collect(),
        },
        CertificateError::Expired => TlsFailure::Expired { not_after: None },
        CertificateError::ExpiredContext { not_after, .. } => TlsFailure::Expired {
            not_after: datetime(*not_after),
        },
        CertificateError::NotValidYet => TlsFailure::NotValidYet { not_before: None },
        CertificateError::NotValidYetContext { not_before, .. } => TlsFailure::NotValidYet {
            not_before: datetime(*not_before),
        },
        CertificateError::BadSignature => TlsFailure::BadSignature,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            TlsFailure::InvalidPurpose
        }
        CertificateError::Revoked => TlsFailure::Revoked,
        CertificateError::Other(other) => match other.0.downcast_ref::<PinMismatch>() {
            Some(pin) => TlsFailure::PinMismatch {
                presented: pin.presented,
            },
            None => TlsFailure::Certificate(other.to_string()),
        },
        other => TlsFailure::Certificate(other.to_string()),
    }
}

/// webpki reports presented names in Debug form (`DnsName("localhost")`,
/// `IpAddress(192.0.2.1)`); admins know them as the bare name.
fn webpki_name(debug: &str) -> String {
    let inner = |prefix: &str| {
        debug
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(|name| name.trim_matches('"').to_string())
    };
    inner("DnsName(")
        .or_else(|| inner("IpAddress("))
        .or_else(|| inner("UniformResourceIdentifier("))
        .unwrap_or_else(|| debug.to_string())
}

fn datetime(t: UnixTime) -> Option<OffsetDateTime> {
    let secs = i64::try_from(t.as_secs()).ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

fn date(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A name a certificate is valid for (its subjectAltName entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Dns(name) => write!(f, "DNS:{name}"),
            CertName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

impl CertName {
    /// RFC 6125 matching as webpki does it: exact (case-insensitive), or a `*.` wildcard
    /// standing for exactly one left-most label.
    fn matches(&self, host: &str) -> bool {
        match (self, host.parse::<IpAddr>()) {
            (CertName::Ip(ip), Ok(host_ip)) => *ip == host_ip,
            (CertName::Dns(name), Err(_)) => {
                let name = name.to_ascii_lowercase();
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => host
                        .split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                    None => name == host,
                }
            }
            _ => false,
        }
    }
}

/// What the server's end-entity certificate says about itself.
#[derive(Debug, Clone)]
pub struct LeafCert {
    /// Subject in RFC 4514-like form, e.g. `C=US, O=iXsystems Inc. dba TrueNAS, CN=localhost`.
    pub subject: String,
    pub issuer: String,
    /// Issuer and subject are the same name: nobody but the server vouches for it.
    pub self_signed: bool,
    pub names: Vec<CertName>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER certificate, the value `truenas.tls_fingerprint` takes.
    pub sha256: [u8; 32],
    pub der: CertificateDer<'static>,
}

impl LeafCert {
    /// Reads a DER certificate; `None` when x509-parser cannot make sense of it.
    pub fn parse(der: CertificateDer<'static>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        names.push(CertName::Dns((*dns).to_string()))
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        names.extend(ip_from_bytes(bytes).map(CertName::Ip))
                    }
                    _ => {}
                }
            }
        }
        let subject = cert.subject().to_string();
        let issuer = cert.issuer().to_string();
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        drop(cert);
        Some(Self {
            subject,
            issuer,
            self_signed,
            names,
            not_before,
            not_after,
            sha256: fingerprint(der.as_ref()),
            der,
        })
    }

    /// `sha256:<lowercase hex>`.
    pub fn pin(&self) -> String {
        pin_text(&self.sha256)
    }

    /// Would a verifier that trusts this certificate accept it for `host`?
    pub fn names_host(&self, host: &str) -> bool {
        self.names.iter().any(|n| n.matches(host))
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// One TLS handshake's result: the outcome, and the certificate the server showed even when
/// it was refused.
#[derive(Debug, Clone)]
pub struct TlsReport {
    /// The name checked against the certificate (the host of `truenas.url`).
    pub server_name: String,
    pub outcome: Result<(), TlsFailure>,
    /// `None` when no certificate was seen (nothing listening, not TLS, or unparsable).
    pub leaf: Option<LeafCert>,
}

/// What to change, in words, and the config line that does it when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub text: String,
    /// A line for the `[truenas]` table, e.g. `tls_fingerprint = "sha256:…"`.
    pub config_line: Option<String>,
}

impl TlsReport {
    /// The certificate's pin as `sha256:<hex>`, from the certificate seen or the pin error.
    pub fn presented_pin(&self) -> Option<String> {
        match (&self.leaf, &self.outcome) {
            (Some(leaf), _) => Some(leaf.pin()),
            (None, Err(TlsFailure::PinMismatch { presented })) => Some(pin_text(presented)),
            _ => None,
        }
    }

    /// What the admin should do; `None` when the handshake succeeded.
    pub fn advice(&self) -> Option<Advice> {
        let failure = self.outcome.as_ref().err()?;
        let pin_line = self
            .presented_pin()
            .map(|pin| format!("tls_fingerprint = \"{pin}\""));
        let names_host = self
            .leaf
            .as_ref()
            .is_some_and(|leaf| leaf.names_host(&self.server_name));
        let self_signed = self.leaf.as_ref().is_some_and(|leaf| leaf.self_signed);
        let advice = |text: &str, config_line: Option<String>| Advice {
            text: text.to_string(),
            config_line,
        };
        Some(match failure {
            TlsFailure::NotTrusted if names_host && self_signed => advice(
                "pin this self-signed certificate (or save it as PEM and set ca_file)",
                pin_line,
            ),
            TlsFailure::NotTrusted if names_host => advice(
                "set ca_file to the PEM certificate of the CA that signed it, or pin it",
                pin_line,
            ),
            TlsFailure::NotTrusted | TlsFailure::NameMismatch { .. } => advice(
                "pin the certificate: it does not name this host, so ca_file cannot work",
                pin_line,
            ),
            TlsFailure::Expired { .. } | TlsFailure::NotValidYet { .. } => advice(
                "renew the certificate in TrueNAS (Credentials > Certificates) \
                 and check this machine's clock",
                None,
            ),
            TlsFailure::PinMismatch { .. } => advice(
                "the server presents another certificate: if it was replaced on purpose, \
                 update the pin; if not, something may be intercepting the connection",
                pin_line,
            ),
            TlsFailure::BadSignature
            | TlsFailure::InvalidPurpose
            | TlsFailure::Revoked
            | TlsFailure::Certificate(_) => advice(
                "replace the certificate in TrueNAS (Credentials > Certificates), \
                 or pin the one it has",
                pin_line,
            ),
            TlsFailure::NotTls => advice(
                "truenas.url must be https:// on TrueNAS' HTTPS port (443 by default)",
                None,
            ),
            TlsFailure::Handshake(_) => advice(
                "check TrueNAS' UI TLS settings (protocols, ciphers) and its certificate",
                None,
            ),
            TlsFailure::ConnectionRefused | TlsFailure::TimedOut | TlsFailure::Connect(_) => {
                advice(
                    "check the host and port of truenas.url, and that TrueNAS' web \
                     interface listens there",
                    None,
                )
            }
        })
    }
}

impl fmt::Display for TlsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(()) => writeln!(f, "TLS: ok, certificate accepted for {}", self.server_name)?,
            Err(failure) => writeln!(f, "TLS: {failure}")?,
        }
        if let Some(leaf) = &self.leaf {
            writeln!(f, "  subject: {}", leaf.subject)?;
            if leaf.self_signed {
                writeln!(f, "  issuer: the same (self-signed)")?;
            } else {
                writeln!(f, "  issuer: {}", leaf.issuer)?;
            }
            let names: Vec<String> = leaf.names.iter().map(ToString::to_string).collect();
            if names.is_empty() {
                writeln!(f, "  names: (none)")?;
            } else {
                writeln!(f, "  names: {}", names.join(", "))?;
            }
            writeln!(
                f,
                "  valid: {} to {}",
                date(leaf.not_before),
                date(leaf.not_after)
            )?;
        }
        if let Some(pin) = self.presented_pin() {
            writeln!(f, "  pin: {pin}")?;
        }
        if let Some(advice) = self.advice() {
            writeln!(f, "  fix: {}", advice.text)?;
            if let Some(line) = advice.config_line {
                writeln!(f, "  add to [truenas]: {line}")?;
            }
        }
        Ok(())
    }
}

/// Why a probe could not even start; failures of the connection itself are in the report.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Setup(#[from] NasError),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// One TLS handshake with `host:port`, checking the certificate for `server_name` as `trust`
/// says, recording the certificate whatever the verdict.
pub async fn probe(
    host: &str,
    port: u16,
    server_name: &str,
    trust: TrustMode<'_>,
    timeout: Duration,
) -> Result<TlsReport, ProbeError> {
    let bare_name = server_name.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare_name.to_string())
        .map_err(|_| ProbeError::ServerName(server_name.to_string()))?;
    let capture = capturing_verifier(trust)?;
    let connector = TlsConnector::from(client_config_with(capture.clone())?);
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');

    let attempt = async {
        let tcp = TcpStream::connect((bare_host, port)).await?;
        let mut tls = connector.connect(name, tcp).await?;
        // A polite close; the report does not depend on it.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok::<(), std::io::Error>(())
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(TlsFailure::TimedOut),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(diagnose(&e).unwrap_or_else(|| TlsFailure::Connect(describe(&e)))),
    };
    let leaf = capture.take_seen().and_then(LeafCert::parse);
    Ok(TlsReport {
        server_name: bare_name.to_string(),
        outcome,
        leaf,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// An error that wraps another, the way hyper and reqwest layer theirs.
    #[derive(Debug)]
    struct Layer(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    fn wrapped(tls: rustls::Error) -> Layer {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        Layer(
            "error sending request",
            Box::new(Layer("client error", Box::new(io))),
        )
    }

    #[test]
    fn finds_rustls_error_inside_io_error_inside_layers() {
        let err = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(diagnose(&err), Some(TlsFailure::NotTrusted));
        assert_eq!(
            describe(&err),
            "certificate not trusted (self-signed or unknown CA)"
        );
    }

    #[test]
    fn name_mismatch_names_both_sides() {
        let expected = ServerName::try_from("192.168.1.10")
            .expect("valid IP server name")
            .to_owned();
        let err = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected,
                presented: vec![String::from("DnsName(\"localhost\")")],
            },
        ));
        assert_eq!(
            describe(&err),
            "certificate name mismatch: it names localhost, not 192.168.1.10"
        );
    }

    #[test]
    fn expiry_carries_the_date() {
        let err = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            },
        ));
        assert_eq!(
            describe(&err),
            "certificate expired on 2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn pin_mismatch_is_recognised_through_other_error() {
        let err = wrapped(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch {
                presented: [0xab; 32],
            })),
        )));
        assert_eq!(
            diagnose(&err),
            Some(TlsFailure::PinMismatch {
                presented: [0xab; 32]
            })
        );
        assert!(describe(&err).contains(&format!("sha256:{}", "ab".repeat(32))));
    }

    #[test]
    fn refused_and_timed_out_come_from_io_kinds() {
        let refused = Layer(
            "tcp connect error",
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(describe(&refused), "connection refused");
        let timed_out = Layer(
            "client error",
            Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        );
        assert_eq!(diagnose(&timed_out), Some(TlsFailure::TimedOut));
    }

    #[test]
    fn tls_cause_wins_over_a_transport_kind_above_it() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(diagnose(&tls), Some(TlsFailure::NotTrusted));
    }

    #[test]
    fn unknown_chains_are_spelled_out() {
        let err = Layer(
            "error sending request",
            Box::new(std::io::Error::other("no route to host")),
        );
        assert_eq!(diagnose(&err), None);
        assert_eq!(describe(&err), "error sending request: no route to host");
    }

    #[test]
    fn webpki_names_lose_their_debug_wrapping() {
        assert_eq!(webpki_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(webpki_name("IpAddress(192.0.2.1)"), "192.0.2.1");
        assert_eq!(webpki_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn certificate_names_match_like_webpki() {
        let wild = CertName::Dns(String::from("*.nas.example"));
        assert!(wild.matches("truenas.nas.example"));
        assert!(!wild.matches("nas.example"));
        assert!(!wild.matches("a.b.nas.example"));
        assert!(CertName::Dns(String::from("LocalHost")).matches("localhost"));
        assert!(!CertName::Dns(String::from("localhost")).matches("127.0.0.1"));
        assert!(CertName::Ip(IpAddr::from([127, 0, 0, 1])).matches("127.0.0.1"));
    }
}
