//! The rustls client configuration used for every TrueNAS connection (WebSocket and REST).
//!
//! TrueNAS boxes usually carry self-signed certificates, so besides the system roots an admin
//! can add a CA file or pin the server certificate's SHA-256. Skipping verification is an
//! explicit opt-in that is logged loudly at every start.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use super::NasError;

/// How the TrueNAS server certificate is checked.
#[derive(Debug, Clone, Copy)]
pub enum TrustMode<'a> {
    /// System roots plus an optional extra CA file; hostname checked.
    Roots { ca_file: Option<&'a Path> },
    /// Accept exactly the certificate whose DER SHA-256 is this; hostname not checked,
    /// because self-signed NAS certificates rarely name the address used to reach them.
    Pinned([u8; 32]),
    /// No verification at all.
    Insecure,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn client_config(mode: TrustMode<'_>) -> Result<Arc<ClientConfig>, NasError> {
    let verifier = server_verifier(mode)?;
    client_config_with(verifier)
}

/// A client configuration around a verifier, so `tls_diagnosis::probe` can pass a capturing one.
pub(crate) fn client_config_with(
    verifier: Arc<NasVerifier>,
) -> Result<Arc<ClientConfig>, NasError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NasError::Unavailable(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate check `mode` asks for.
pub fn server_verifier(mode: TrustMode<'_>) -> Result<Arc<NasVerifier>, NasError> {
    NasVerifier::new(mode, None)
}

/// The same check, keeping the end-entity certificate it is shown, refused or not, so
/// `tls_diagnosis::probe` can describe it.
pub(crate) fn capturing_verifier(mode: TrustMode<'_>) -> Result<Arc<NasVerifier>, NasError> {
    NasVerifier::new(mode, Some(Mutex::new(None)))
}

impl NasVerifier {
    fn new(
        mode: TrustMode<'_>,
        seen: Option<Mutex<Option<CertificateDer<'static>>>>,
    ) -> Result<Arc<Self>, NasError> {
        let provider = provider();
        let check = match mode {
            TrustMode::Roots { ca_file } => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A single unparsable system certificate must not disable all the others.
                    let _ = roots.add(cert);
                }
                if let Some(path) = ca_file {
                    add_ca_file(&mut roots, path)?;
                }
                if roots.is_empty() {
                    // webpki refuses an empty store at build time; a machine without system roots
                    // must still start (plain ws:// test setups, pinned-only images) and fail each
                    // TLS handshake as "not trusted" instead.
                    CertCheck::NoTrustAnchors
                } else {
                    let webpki = WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| NasError::Unavailable(format!("TLS setup: {e}")))?;
                    CertCheck::WebPki(webpki)
                }
            }
            TrustMode::Pinned(pin) => CertCheck::Pinned(pin),
            TrustMode::Insecure => CertCheck::Any,
        };
        Ok(Arc::new(Self {
            check,
            provider,
            seen,
        }))
    }

    /// The certificate a capturing verifier was last shown.
    pub(crate) fn take_seen(&self) -> Option<CertificateDer<'static>> {
        self.seen
            .as_ref()?
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
    }
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), NasError> {
    let bad = |e: &dyn std::fmt::Display| {
        NasError::Unavailable(format!("truenas.ca_file {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&e))?;
        roots.add(cert).map_err(|e| bad(&e))?;
        added += 1;
    }
    if added == 0 {
        return Err(NasError::Unavailable(format!(
            "truenas.ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
}

/// `sha256:<lowercase hex>`, the form `truenas.tls_fingerprint` accepts.
pub fn pin_text(pin: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(pin))
}

/// Why the pinned verifier refused a certificate. It travels inside
/// `CertificateError::Other` so `tls_diagnosis` can find it in an error chain and show the
/// pin the server really presents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TrueNAS certificate {} does not match truenas.tls_fingerprint", pin_text(.presented))]
pub struct PinMismatch {
    /// SHA-256 of the DER certificate the server presented.
    pub presented: [u8; 32],
}

/// SHA-256 of a DER certificate, as `truenas.tls_fingerprint` expects it.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

#[derive(Debug)]
enum CertCheck {
    WebPki(Arc<WebPkiServerVerifier>),
    Pinned([u8; 32]),
    /// Roots mode with an empty trust store: every certificate is from an unknown issuer.
    NoTrustAnchors,
    Any,
}

/// The one verifier of TrueNAS certificates: the check `TrustMode` asks for, and the
/// handshake signature always checked with the provider's algorithms (as webpki does), so a
/// pin proves the certificate and the signature proves the peer holds its key.
#[derive(Debug)]
pub struct NasVerifier {
    check: CertCheck,
    provider: Arc<CryptoProvider>,
    /// Where `tls_diagnosis::probe` keeps the certificate, refused or not, to describe it.
    seen: Option<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for NasVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(Ok(mut slot)) = self.seen.as_ref().map(Mutex::lock) {
            *slot = Some(end_entity.clone().into_owned());
        }
        let refused = |cause| Err(rustls::Error::InvalidCertificate(cause));
        match &self.check {
            CertCheck::WebPki(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            CertCheck::Pinned(pin) => {
                let presented = fingerprint(end_entity.as_ref());
                // Not secret, so an ordinary comparison is fine.
                if presented == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    refused(CertificateError::Other(OtherError(Arc::new(PinMismatch {
                        presented,
                    }))))
                }
            }
            CertCheck::NoTrustAnchors => refused(CertificateError::UnknownIssuer),
            CertCheck::Any => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
