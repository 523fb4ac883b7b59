//! The server secret and the keys derived from it (session signing, CSRF tokens, TOTP
//! secret encryption).
//!
//! When no secret is configured, one is generated on first start and kept in
//! `<data_dir>/secret_key` (mode 0600), so sessions survive a restart.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};
use sha2::Sha256;
use thiserror::Error;

const SECRET_FILE: &str = "secret_key";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

pub struct Keys {
    jwt: SecretBox<[u8; 32]>,
    csrf: SecretBox<[u8; 32]>,
    audit: SecretBox<[u8; 32]>,
    totp: SecretBox<[u8; 32]>,
    reset: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Derives independent keys, so a CSRF token can never be replayed as a signature.
    pub fn derive(secret: &SecretString) -> Self {
        Self {
            jwt: SecretBox::new(Box::new(hmac_label(secret, b"passgate session jwt v1"))),
            csrf: SecretBox::new(Box::new(hmac_label(secret, b"passgate csrf v1"))),
            audit: SecretBox::new(Box::new(hmac_label(secret, crate::audit::chain::KEY_LABEL))),
            totp: hkdf_key(secret, b"passgate totp secret encryption v1"),
            reset: hkdf_key(secret, b"passgate reset token mac v1"),
        }
    }

    pub fn jwt_key(&self) -> &[u8; 32] {
        self.jwt.expose_secret()
    }

    /// Encrypts TOTP secrets at rest (XChaCha20-Poly1305, see `crate::totp`).
    pub fn totp_key(&self) -> &[u8; 32] {
        self.totp.expose_secret()
    }

    /// Signs the audit chain's head and prune anchors.
    pub fn audit_key(&self) -> [u8; 32] {
        *self.audit.expose_secret()
    }

    /// HMAC-SHA256 of `data` under the CSRF key.
    /// The only form in which a reset token is stored: whoever reads the database cannot
    /// turn it back into a working link.
    pub fn reset_token_mac(&self, token: &[u8]) -> [u8; 32] {
        mac(self.reset.expose_secret(), token)
    }

    pub fn csrf_mac(&self, data: &[u8]) -> [u8; 32] {
        mac(self.csrf.expose_secret(), data)
    }

    /// Constant-time check of a CSRF MAC.
    pub fn csrf_verify(&self, data: &[u8], tag: &[u8]) -> bool {
        match <Hmac<Sha256> as Mac>::new_from_slice(self.csrf.expose_secret()) {
            Ok(mut m) => {
                m.update(data);
                m.verify_slice(tag).is_ok()
            }
            Err(_) => false,
        }
    }
}

fn hmac_label(secret: &SecretString, label: &[u8]) -> [u8; 32] {
    mac(secret.expose_secret().as_bytes(), label)
}

/// HKDF-SHA256 (RFC 5869) of the server secret, expanded straight into the box so no copy of
/// the key is left on the stack.
#[expect(
    clippy::expect_used,
    reason = "HKDF-SHA256 expands up to 8160 bytes: 32 cannot fail"
)]
fn hkdf_key(secret: &SecretString, info: &[u8]) -> SecretBox<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"passgate"), secret.expose_secret().as_bytes());
    let mut key = SecretBox::new(Box::new([0u8; 32]));
    hk.expand(info, key.expose_secret_mut())
        .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
    key
}

#[expect(
    clippy::expect_used,
    reason = "HMAC accepts keys of any length: new_from_slice cannot fail"
)]
fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The configured secret, or the one kept in `data_dir` (created on first use).
pub fn load_or_create_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> Result<SecretString, KeyError> {
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join(SECRET_FILE);
    let file_err = |message: String| KeyError::File {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the secret key file is readable by others; chmod 600 it");
            }
            let secret = text.trim_end_matches(['\n', '\r']).to_string();
            if secret.len() < 32 {
                return Err(file_err(String::from(
                    "holds fewer than 32 characters; delete it to generate a new one",
                )));
            }
            Ok(SecretString::from(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(data_dir).map_err(|e| KeyError::File {
                path: data_dir.to_path_buf(),
                message: format!("cannot create the data directory: {e}"),
            })?;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let secret = hex::encode(bytes);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| file_err(format!("cannot create: {e}")))?;
            file.write_all(secret.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| file_err(format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "generated a new server secret key");
            Ok(SecretString::from(secret))
        }
        Err(e) => Err(file_err(format!("cannot read: {e}"))),
    }
}

pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = load_or_create_secret(None, &data).expect("created");
        let mode = std::fs::metadata(data.join(SECRET_FILE))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load_or_create_secret(None, &data).expect("reused");
        assert_eq!(first.expose_secret(), second.expose_secret());
    }

    #[test]
    fn derived_keys_differ_and_csrf_verifies() {
        let keys = Keys::derive(&SecretString::from("x".repeat(40)));
        assert_ne!(keys.jwt_key(), &keys.csrf_mac(b"passgate session jwt v1"));
        let tag = keys.csrf_mac(b"abc");
        assert!(keys.csrf_verify(b"abc", &tag));
        assert!(!keys.csrf_verify(b"abd", &tag));
        assert!(!format!("{keys:?}").contains(&hex::encode(keys.jwt_key())));
    }

    #[test]
    fn totp_key_is_hkdf_sha256() {
        let secret = SecretString::from("x".repeat(40));
        let keys = Keys::derive(&secret);
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"passgate"), "x".repeat(40).as_bytes())
            .expand(b"passgate totp secret encryption v1", &mut expected)
            .expect("expand");
        assert_eq!(keys.totp_key(), &expected);
        assert_ne!(keys.totp_key(), keys.jwt_key());
        assert!(!format!("{keys:?}").contains(&hex::encode(keys.totp_key())));
    }
}
