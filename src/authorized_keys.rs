//! The SSH public keys a user may store in TrueNAS (`sshpubkey`, written to
//! `~/.ssh/authorized_keys`).
//!
//! TrueNAS writes whatever it is given, options such as `command=` and garbage included
//! (truenas-api.md, "SSH keys"), so every line a user submits is parsed here with the `ssh-key`
//! crate, held to the policy, and what is stored is re-serialised from the parsed keys, one per
//! line, never the raw input.

use std::collections::HashMap;

use ssh_key::{Algorithm, Certificate, EcdsaCurve, HashAlg, PublicKey};

/// At most this much input, and this much stored: a few keys are a few hundred bytes each.
pub const MAX_TOTAL_BYTES: usize = 16 * 1024;
/// RSA below this is refused (NIST SP 800-57: 3072 bits for security beyond 2030).
pub const MIN_RSA_BITS: usize = 3072;

#[derive(Clone, Copy, Debug)]
pub struct KeyPolicy {
    pub max_keys: usize,
    pub allow_certificates: bool,
}

/// A key that passed every rule, as it will be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, … (a certificate's own type name).
    pub algorithm: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub comment: String,
    /// RSA modulus size; `None` for the other types.
    pub bits: Option<usize>,
    /// The line to store: type, base64 and comment, re-encoded from the parsed key.
    line: String,
}

impl AcceptedKey {
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// Why a line was refused. Each maps to a message in both languages (views).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `command=`, `from=`, … before the key: they change what the key may do.
    Options,
    /// A private key, or part of one, was pasted.
    PrivateKey,
    Certificate,
    /// A certificate valid "forever" (ssh-keygen's default without `-V`): a key that can never
    /// expire defeats the point of a certificate, and ssh-key 0.6 cannot represent it either.
    CertificateWithoutExpiry,
    /// Same key material as an earlier line (1-based line number).
    Duplicate {
        first_line: usize,
    },
    /// Same key material as a key already stored (and kept).
    AlreadyStored,
    /// Beyond `ssh_keys.max_keys`.
    TooMany {
        max: usize,
    },
    /// The whole input is over [`MAX_TOTAL_BYTES`] (reported once, on line 0).
    TooLarge,
    /// Control or bidirectional-override characters.
    NonPrintable,
    /// A key type that is not allowed (`ssh-dss`, say).
    Algorithm {
        name: String,
    },
    RsaTooShort {
        bits: usize,
    },
    /// Not a public key at all.
    Unreadable,
}

impl Refusal {
    /// The stable name of the rule, for the API and the audit detail.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Options => "options",
            Refusal::PrivateKey => "private_key",
            Refusal::Certificate => "certificate",
            Refusal::CertificateWithoutExpiry => "certificate_without_expiry",
            Refusal::Duplicate { .. } => "duplicate",
            Refusal::AlreadyStored => "already_stored",
            Refusal::TooMany { .. } => "too_many",
            Refusal::TooLarge => "too_large",
            Refusal::NonPrintable => "non_printable",
            Refusal::Algorithm { .. } => "algorithm",
            Refusal::RsaTooShort { .. } => "rsa_too_short",
            Refusal::Unreadable => "unreadable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRefusal {
    /// 1-based; 0 for the input as a whole.
    pub line: usize,
    pub reason: Refusal,
}

/// Every non-empty line must be an allowed key; otherwise every refused line is reported, so
/// that the user can fix them all at once. Blank lines and `#` comments are dropped.
pub fn parse_keys(input: &str, policy: KeyPolicy) -> Result<Vec<AcceptedKey>, Vec<LineRefusal>> {
    parse_added(&[], input, policy)
}

/// [`parse_keys`] for lines added to keys that stay (`kept`, first in the result): those
/// count toward `max_keys` and the byte cap, and a line repeating one of them is refused.
pub fn parse_added(
    kept: &[AcceptedKey],
    input: &str,
    policy: KeyPolicy,
) -> Result<Vec<AcceptedKey>, Vec<LineRefusal>> {
    let kept_bytes: usize = kept.iter().map(|k| k.line.len() + 1).sum();
    if input.len().saturating_add(kept_bytes) > MAX_TOTAL_BYTES {
        return Err(vec![LineRefusal {
            line: 0,
            reason: Refusal::TooLarge,
        }]);
    }
    let mut accepted: Vec<AcceptedKey> = kept.to_vec();
    let mut refused = Vec::new();
    // Line 0: a kept key.
    let mut seen: HashMap<String, usize> =
        kept.iter().map(|k| (k.fingerprint.clone(), 0)).collect();
    // A pasted private key is many lines; one refusal for the block is enough.
    let mut in_private_block = false;
    for (index, raw) in input.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if in_private_block {
            if line.starts_with("-----END") {
                in_private_block = false;
            }
            continue;
        }
        if looks_private(line) {
            in_private_block = line.starts_with("-----BEGIN");
            refused.push(LineRefusal {
                line: number,
                reason: Refusal::PrivateKey,
            });
            continue;
        }
        let key = match parse_line(line, policy) {
            Ok(key) => key,
            Err(reason) => {
                refused.push(LineRefusal {
                    line: number,
                    reason,
                });
                continue;
            }
        };
        if let Some(first) = seen.get(&key.fingerprint) {
            let reason = match *first {
                0 => Refusal::AlreadyStored,
                first_line => Refusal::Duplicate { first_line },
            };
            refused.push(LineRefusal {
                line: number,
                reason,
            });
            continue;
        }
        if accepted.len() >= policy.max_keys {
            refused.push(LineRefusal {
                line: number,
                reason: Refusal::TooMany {
                    max: policy.max_keys,
                },
            });
            continue;
        }
        seen.insert(key.fingerprint.clone(), number);
        accepted.push(key);
    }
    if refused.is_empty() {
        Ok(accepted)
    } else {
        Err(refused)
    }
}

/// What TrueNAS holds, listed for the user. Lines this portal would refuse (written by an admin,
/// or before passgate) are kept apart, so that the page can show them without claiming they are
/// valid.
pub fn read_stored(stored: &str) -> (Vec<AcceptedKey>, usize) {
    let lenient = KeyPolicy {
        max_keys: usize::MAX,
        allow_certificates: true,
    };
    let mut keys = Vec::new();
    let mut other = 0;
    for line in stored.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, lenient) {
            Ok(key) => keys.push(key),
            Err(_) => other += 1,
        }
    }
    (keys, other)
}

/// The `sshpubkey` value to send: one key per line.
pub fn render(keys: &[AcceptedKey]) -> String {
    keys.iter()
        .map(|k| k.line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn looks_private(line: &str) -> bool {
    line.contains("PRIVATE KEY")
        || line.starts_with("PuTTY-User-Key-File-")
        || line.starts_with("b3BlbnNzaC1rZXktdjE") // base64 of "openssh-key-v1", the body's start
}

/// Type names start a key; anything before the first one is options.
fn is_type_name(token: &str) -> bool {
    token.starts_with("ssh-") || token.starts_with("ecdsa-") || token.starts_with("sk-")
}

fn printable(line: &str) -> bool {
    !line.chars().any(|c| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    })
}

fn parse_line(line: &str, policy: KeyPolicy) -> Result<AcceptedKey, Refusal> {
    if !printable(line) {
        return Err(Refusal::NonPrintable);
    }
    let first = line.split_whitespace().next().unwrap_or_default();
    if !is_type_name(first) {
        return Err(if line.split_whitespace().skip(1).any(is_type_name) {
            Refusal::Options
        } else {
            Refusal::Unreadable
        });
    }
    // The crate splits on single spaces; tabs and runs of spaces are normalised first.
    let mut parts = line.split_whitespace();
    let type_name = parts.next().unwrap_or_default();
    let body = parts.next().ok_or(Refusal::Unreadable)?;
    let comment = parts.collect::<Vec<_>>().join(" ");
    let normalised = format!("{type_name} {body}");
    if type_name.ends_with("-cert-v01@openssh.com") {
        if !policy.allow_certificates {
            return Err(Refusal::Certificate);
        }
        let with_comment = format!("{normalised} {comment}");
        let cert = Certificate::from_openssh(with_comment.trim_end()).map_err(|e| match e {
            ssh_key::Error::Time => Refusal::CertificateWithoutExpiry,
            _ => Refusal::Unreadable,
        })?;
        let key = PublicKey::from(cert.public_key().clone());
        let mut accepted = check_key(&key)?;
        accepted.algorithm = type_name.to_owned();
        accepted.comment = comment;
        accepted.line = cert.to_openssh().map_err(|_| Refusal::Unreadable)?;
        return Ok(accepted);
    }
    let mut key = PublicKey::from_openssh(&normalised).map_err(|_| Refusal::Unreadable)?;
    if key.algorithm().as_str() != type_name {
        // The base64 encodes another type than its label says.
        return Err(Refusal::Unreadable);
    }
    key.set_comment(&comment);
    check_key(&key)
}

fn check_key(key: &PublicKey) -> Result<AcceptedKey, Refusal> {
    let algorithm = key.algorithm();
    let mut bits = None;
    match &algorithm {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {}
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => {}
        Algorithm::Rsa { .. } => {
            let n = key
                .key_data()
                .rsa()
                .and_then(|rsa| rsa.n.as_positive_bytes())
                .ok_or(Refusal::Unreadable)?;
            let size = rsa_bits(n);
            if size < MIN_RSA_BITS {
                return Err(Refusal::RsaTooShort { bits: size });
            }
            bits = Some(size);
        }
        other => {
            return Err(Refusal::Algorithm {
                name: other.as_str().to_owned(),
            })
        }
    }
    Ok(AcceptedKey {
        algorithm: algorithm.as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: key.comment().to_owned(),
        bits,
        line: key.to_openssh().map_err(|_| Refusal::Unreadable)?,
    })
}

/// Bits of a big-endian modulus without leading zero bytes.
fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests;
