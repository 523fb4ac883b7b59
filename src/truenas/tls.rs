//! The rustls client configuration used for every TrueNAS connection (WebSocket and REST).
//!
//! TrueNAS boxes usually carry self-signed certificates, so besides the system roots an admin
//! can add a CA file or pin the server certificate's SHA-256. Skipping verification is an
//! explicit opt-in that is logged loudly at every start.

use std::path::Path;
use std::sync::Arc;

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

/// A client configuration around any verifier, so `tls_diagnosis::probe` can wrap the real one
/// and still see the certificate when it is refused.
pub(crate) fn client_config_with(
    verifier: Arc<dyn ServerCertVerifier>,
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
pub fn server_verifier(mode: TrustMode<'_>) -> Result<Arc<dyn ServerCertVerifier>, NasError> {
    let provider = provider();
    Ok(match mode {
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
                return Ok(Arc::new(NoTrustAnchors(NoVerifier { provider })));
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| NasError::Unavailable(format!("TLS setup: {e}")))?
        }
        TrustMode::Pinned(pin) => Arc::new(PinnedVerifier { pin, provider }),
        TrustMode::Insecure => Arc::new(NoVerifier { provider }),
    })
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
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        // Not secret, so an ordinary comparison is fine.
        if seen == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { presented: seen })),
            )))
        }
    }

    // The handshake signature is still checked: the pin proves the certificate, the
    // signature proves the peer holds its key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct NoVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Roots mode with an empty trust store: every certificate is from an unknown issuer.
#[derive(Debug)]
struct NoTrustAnchors(NoVerifier);

impl ServerCertVerifier for NoTrustAnchors {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
