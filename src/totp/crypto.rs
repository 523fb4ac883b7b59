//! TOTP secrets at rest: XChaCha20-Poly1305 under `Keys::totp_key()`.
//!
//! Blob: version byte 1 ‖ 24-byte random nonce ‖ ciphertext+tag. The associated data binds
//! a blob to its user and its column, so a blob moved to another row or from pending to
//! active does not decrypt: whoever can write to the database still cannot choose a secret.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::TotpError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Which column a blob belongs to (part of the associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Active,
    Pending,
}

impl Slot {
    fn label(self) -> &'static [u8] {
        match self {
            Slot::Active => b"active",
            Slot::Pending => b"pending",
        }
    }
}

/// Holds the key; the cipher zeroizes it on drop.
pub(crate) struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl SecretCipher {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    pub(crate) fn seal(
        &self,
        username: &str,
        slot: Slot,
        secret: &[u8],
    ) -> Result<Vec<u8>, TotpError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| TotpError::Crypto("the system random number generator failed"))?;
        let aad = aad(username, slot);
        let sealed = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| TotpError::Crypto("cannot encrypt the TOTP secret"))?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Fails closed: a wrong version, a truncated blob, another user's or column's blob, or a
    /// different server secret are all the same error.
    pub(crate) fn open(
        &self,
        username: &str,
        slot: Slot,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TotpError> {
        const FAILED: TotpError = TotpError::Crypto("cannot decrypt the stored TOTP secret");
        let Some((&VERSION, rest)) = blob.split_first() else {
            return Err(FAILED);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(FAILED);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| FAILED)?;
        let aad = aad(username, slot);
        self.aead
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| FAILED)
    }
}

/// `passgate-totp-v1 \0 column \0 username`: the NULs keep the parts unambiguous (neither
/// the label nor a username contains one).
fn aad(username: &str, slot: Slot) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + username.len());
    aad.extend_from_slice(b"passgate-totp-v1\0");
    aad.extend_from_slice(slot.label());
    aad.push(0);
    aad.extend_from_slice(username.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = SecretCipher::new(&[7u8; 32]);
        let blob = c
            .seal("alice", Slot::Active, b"0123456789abcdefghij")
            .expect("seal");
        assert_eq!(blob.len(), 1 + NONCE_LEN + 20 + TAG_LEN);
        assert_eq!(blob[0], VERSION);
        assert_eq!(
            c.open("alice", Slot::Active, &blob)
                .expect("open")
                .as_slice(),
            b"0123456789abcdefghij"
        );
        // Fresh nonce per write.
        assert_ne!(
            blob,
            c.seal("alice", Slot::Active, b"0123456789abcdefghij")
                .expect("seal")
        );
        assert!(c.open("bob", Slot::Active, &blob).is_err());
        assert!(c.open("alice", Slot::Pending, &blob).is_err());
        assert!(SecretCipher::new(&[8u8; 32])
            .open("alice", Slot::Active, &blob)
            .is_err());
        let mut flipped = blob.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(c.open("alice", Slot::Active, &flipped).is_err());
        let mut other_version = blob.clone();
        other_version[0] = 2;
        assert!(c.open("alice", Slot::Active, &other_version).is_err());
        assert!(c.open("alice", Slot::Active, &blob[..20]).is_err());
        assert!(c.open("alice", Slot::Active, &[]).is_err());
    }
}
