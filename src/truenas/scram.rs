//! The client side of TrueNAS' SCRAM-SHA-512 login (`auth.login_ex` mechanism `SCRAM`, 26.0+),
//! used to prove the portal's API key without ever sending it. Pure: no I/O, no clock; the
//! caller carries the `rfc_str` values over the JSON-RPC connection and runs [`ScramClient::respond`]
//! (a PBKDF2 of up to millions of rounds on a cache miss) off the async runtime.
//!
//! # Facts this follows (read from the TrueNAS sources; paths in the named repositories)
//!
//! Wire shape (middleware `plugins/auth.py` `login_ex`, `plugins/auth_/login_ex_impl.py`
//! `login_ex_scram`, `api/v26_0_0/auth.py` `AuthSCRAM`/`AuthRespScram`; absent from TS-25.10):
//! - `{"mechanism":"SCRAM","scram_type":"CLIENT_FIRST_MESSAGE","rfc_str":CF}` answers
//!   `{"response_type":"SCRAM_RESPONSE","scram_type":"SERVER_FIRST_RESPONSE","rfc_str":SF,"user_info":null}`;
//!   then `CLIENT_FINAL_MESSAGE` answers `SERVER_FINAL_RESPONSE` with `rfc_str` `v=…` and
//!   `user_info` (`auth.me`), and only then is the connection logged in (`session_manager.login`).
//!   Any failure of either step is `{"response_type":"AUTH_ERR"}`; a final message without a
//!   first one is a CallError "SCRAM authentication is not in progress".
//!
//! Messages (truenas_scram `src/scram/scram_client_first.c`, `scram_server_first.c`,
//! `scram_client_final.c`, `scram_server_final.c`, `scram_attr_parse.c`):
//! - client-first `n,,n=USER:ID,r=NONCE`: gs2 header `n` (no channel binding) when none is
//!   given; `:ID` is appended only for a non-zero API key id (1..=i32::MAX, `scram_parse_principal`).
//!   No RFC 5802 `=2C`/`=3D` escaping: the server splits on `,` and the first `:`, and refuses a
//!   name that SASLprep would change.
//! - Nonces are 32 raw random bytes (`SCRAM_NONCE_SIZE`), sent as padded standard base64
//!   (OpenSSL `EVP_EncodeBlock`). The server's combined nonce is base64(client bytes ‖ 32 server
//!   bytes): its text does **not** start with the client's base64 text (32 bytes end in `=`
//!   padding), so the prefix check is done on the decoded bytes.
//! - server-first is exactly `r=…,s=…,i=…` in that order; `s` decodes to exactly 16 bytes
//!   (`SCRAM_DEFAULT_SALT_SZ`); proofs and signatures decode to exactly 64 bytes; unknown
//!   attributes (`m`, extensions) are refused by the parser.
//! - Iterations are accepted only in 50,000..=5,000,000 (`SCRAM_MIN_ITERS`/`SCRAM_MAX_ITERS` in
//!   `truenas_scram.h`; `scram_hi` refuses to run outside it, pam_truenas `src/json.c` refuses to
//!   load a key outside it). The middleware creates keys with 500,000 (`utils/crypto.py`
//!   `generate_api_key_auth_data`, `SCRAM_DEFAULT_ITERS`).
//! - client-final `c=biws,r=COMBINED,p=PROOF` (`biws` = base64 of `n,,`); server-final `v=SIG`.
//! - The server rebuilds AuthMessage by re-serialising what it parsed, so only canonical
//!   messages (as produced here) verify.
//! - SHA-512 throughout: SaltedPassword = PBKDF2-HMAC-SHA512(secret, salt, i, 64 bytes)
//!   (`scram_utils.c` `scram_hi`), ClientKey = HMAC(SP, "Client Key"), StoredKey = SHA-512(ClientKey),
//!   ServerKey = HMAC(SP, "Server Key"), proof and signature as RFC 5802.
//!
//! API keys (middleware `plugins/api_key/crud.py` `do_create`, `convert_raw_key`; pam_truenas
//! `src/pam_truenas_auth.c`, `src/keyring.c`, `tests/conftest.py`):
//! - The key shown to the user is `ID-KEY`, KEY being 64 random letters and digits. The SCRAM
//!   secret is KEY only, the part after the first `-` (checked against the pam_truenas test
//!   vector: PBKDF2 of the part after `2-` gives its `salted_password_b64`).
//! - `n=` carries the **owner's username** and the key id: `n=bob:2`. pam_truenas looks the key
//!   up by id in that user's keyring, which holds `iterations`, base64 `salt`, `stored_key`,
//!   `server_key` (never the key, never ClientKey).
//! - The middleware's salt is 16 random characters from `[A-Za-z0-9./]` (as bytes).
//!
//! Channel binding: TS-26.0.0-BETA.3 and later accept an optional `p=tls-server-end-point`
//! gs2 header over TLS (middleware `utils/account/authenticator.py` `ScramPamAuthenticator`,
//! pam_truenas `_ptn_verify_client_final`). Not used here: the header is always `n,,`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::CtOutput;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha512};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

type HmacSha512 = Hmac<Sha512>;

/// Raw bytes of each side's nonce (`SCRAM_NONCE_SIZE`).
pub const NONCE_LEN: usize = 32;
/// Raw bytes of a TrueNAS SCRAM salt (`SCRAM_DEFAULT_SALT_SZ`).
pub const SALT_LEN: usize = 16;
/// Fewer rounds than TrueNAS itself accepts would only come from an impostor, who could then
/// brute-force the key from our proof far more cheaply.
pub const MIN_ITERATIONS: u64 = 50_000;
/// More rounds than TrueNAS itself accepts would only come from an impostor trying to pin
/// our CPU; 5,000,000 SHA-512 PBKDF2 rounds is already seconds of work.
pub const MAX_ITERATIONS: u64 = 5_000_000;

const KEY_LEN: usize = 64;
const GS2_HEADER: &str = "n,,";
/// base64 of [`GS2_HEADER`], with no channel-binding data after it.
const CHANNEL_BINDING: &str = "biws";
/// `SCRAM_MAX_USERNAME_LEN` (256) includes the C string's terminating NUL.
const MAX_USERNAME_BYTES: usize = 255;
/// The server parses the key id as 1..=INT32_MAX (`scram_parse_principal`).
const MAX_API_KEY_ID: u64 = 2_147_483_647;
/// Far above any real message (a server-first is about 150 bytes): bounds parsing work.
const MAX_MESSAGE_LEN: usize = 1024;
/// Longest server error code (`e=…`) kept for the error value.
const MAX_ERROR_CODE_LEN: usize = 64;
/// One entry per (key, salt, iterations) in use; a handful covers key rotation.
const KEY_CACHE_CAP: usize = 4;

/// Why a SCRAM exchange could not go on. Messages never carry a secret, a proof or any
/// server-sent text other than a sanitised `e=` code.
#[derive(Debug, Error)]
pub enum ScramError {
    #[error("username cannot be used for TrueNAS SCRAM: {0}")]
    InvalidUsername(&'static str),
    #[error("API key is not in TrueNAS' ID-KEY form: {0}")]
    InvalidApiKey(&'static str),
    #[error("malformed SCRAM server message: {0}")]
    Malformed(&'static str),
    #[error("the server requires a SCRAM extension (m=) this client does not support")]
    UnsupportedExtension,
    #[error("the server's nonce does not extend the client's nonce")]
    NonceMismatch,
    #[error(
        "the server asked for {0} PBKDF2 iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
    )]
    IterationsOutOfRange(u64),
    #[error("the server reported SCRAM error {0:?}")]
    ServerError(String),
    #[error("the server could not prove it knows the API key (server signature mismatch)")]
    ServerSignatureMismatch,
    #[error("the system random number generator failed")]
    Random,
}

/// First half of an exchange: what was sent, kept to check and answer the server-first.
pub struct ScramClient {
    client_nonce: [u8; NONCE_LEN],
    /// Kept as a field so channel binding can later change it in one place.
    gs2_header: &'static str,
    client_first_bare: String,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `username` without a key id (TrueNAS' planned SCRAM for user
    /// passwords). For an API key use [`ScramClient::start_api_key`].
    pub fn start(username: &str) -> Result<(Self, String), ScramError> {
        check_username(username)?;
        Self::with_principal(username.to_owned(), random_nonce()?)
    }

    /// Starts an exchange for API key `key_id` owned by `owner`: `n=owner:key_id`.
    pub fn start_api_key(owner: &str, key_id: u64) -> Result<(Self, String), ScramError> {
        check_username(owner)?;
        if !(1..=MAX_API_KEY_ID).contains(&key_id) {
            return Err(ScramError::InvalidApiKey("id must be 1..=2147483647"));
        }
        Self::with_principal(format!("{owner}:{key_id}"), random_nonce()?)
    }

    fn with_principal(
        principal: String,
        client_nonce: [u8; NONCE_LEN],
    ) -> Result<(Self, String), ScramError> {
        let client_first_bare = format!("n={principal},r={}", STANDARD.encode(client_nonce));
        let gs2_header = GS2_HEADER;
        let client_first = format!("{gs2_header}{client_first_bare}");
        let client = ScramClient {
            client_nonce,
            gs2_header,
            client_first_bare,
        };
        Ok((client, client_first))
    }

    /// Checks the server-first, computes the proof and the signature the server must answer
    /// with. `keys` caches SaltedPassword-derived keys by (secret, salt, iterations), so a
    /// reconnect does not pay PBKDF2 again. CPU-heavy on a cache miss: call it from a
    /// blocking thread.
    pub fn respond(
        self,
        server_first: &str,
        secret: &SecretString,
        keys: &KeyCache,
    ) -> Result<(ScramFinal, String), ScramError> {
        let parsed = self.parse_server_first(server_first)?;
        let derived = keys.get_or_derive(secret, &parsed.salt, parsed.iterations);
        Ok(self.finish(server_first, parsed.nonce_b64, &derived))
    }

    fn parse_server_first<'a>(&self, server_first: &'a str) -> Result<ServerFirst<'a>, ScramError> {
        if server_first.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::Malformed("server-first is too long"));
        }
        if server_first.starts_with("m=") {
            return Err(ScramError::UnsupportedExtension);
        }
        let mut parts = server_first.split(',');
        let nonce_b64 = attribute(parts.next(), 'r')?;
        let salt_b64 = attribute(parts.next(), 's')?;
        let iterations = attribute(parts.next(), 'i')?;
        if parts.next().is_some() {
            return Err(ScramError::Malformed("unexpected attribute after i="));
        }

        let nonce = decode(nonce_b64, "nonce is not canonical base64")?;
        if nonce.len() <= NONCE_LEN || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        if nonce.len() != 2 * NONCE_LEN {
            return Err(ScramError::Malformed("combined nonce is not 64 bytes"));
        }
        let salt = decode(salt_b64, "salt is not canonical base64")?;
        if salt.len() != SALT_LEN {
            return Err(ScramError::Malformed("salt is not 16 bytes"));
        }
        let iterations = parse_iterations(iterations)?;
        Ok(ServerFirst {
            nonce_b64,
            salt,
            iterations,
        })
    }

    fn finish(
        self,
        server_first: &str,
        nonce_b64: &str,
        keys: &DerivedKeys,
    ) -> (ScramFinal, String) {
        debug_assert_eq!(self.gs2_header, GS2_HEADER, "c= below encodes exactly n,,");
        let without_proof = format!("c={CHANNEL_BINDING},r={nonce_b64}");
        let auth_message = Zeroizing::new(format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare
        ));

        let stored_key: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(Sha512::digest(keys.client_key).into());
        let mut proof = Zeroizing::new(hmac_sha512(&stored_key, auth_message.as_bytes()));
        for (p, k) in proof.iter_mut().zip(keys.client_key.iter()) {
            *p ^= k;
        }
        let client_final = format!("{without_proof},p={}", STANDARD.encode(&proof[..]));

        let expected = keyed(&keys.server_key)
            .chain_update(auth_message.as_bytes())
            .finalize();
        (ScramFinal { expected }, client_final)
    }
}

#[derive(Debug)]
struct ServerFirst<'a> {
    nonce_b64: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

/// Second half: the server signature the server-final must carry.
pub struct ScramFinal {
    /// `CtOutput` compares in constant time.
    expected: CtOutput<HmacSha512>,
}

impl fmt::Debug for ScramFinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramFinal { .. }")
    }
}

impl ScramFinal {
    /// Checks the server-final `v=…`; `e=…` becomes [`ScramError::ServerError`].
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        if server_final.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::Malformed("server-final is too long"));
        }
        if let Some(code) = server_final.strip_prefix("e=") {
            return Err(ScramError::ServerError(sanitise_error_code(code)));
        }
        let signature = server_final
            .strip_prefix("v=")
            .ok_or(ScramError::Malformed("server-final has no v="))?;
        if signature.contains(',') {
            return Err(ScramError::Malformed("unexpected attribute after v="));
        }
        let signature: [u8; KEY_LEN] = decode(signature, "signature is not canonical base64")?
            .try_into()
            .map_err(|_| ScramError::Malformed("signature is not 64 bytes"))?;
        let received = CtOutput::<HmacSha512>::new(signature.into());
        if received == self.expected {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

/// Splits a TrueNAS API key `ID-KEY` into its id and the SCRAM secret (KEY). Surrounding
/// whitespace is ignored, as the middleware strips it too.
pub fn api_key_secret(api_key: &SecretString) -> Result<(u64, SecretString), ScramError> {
    let (id, material) =
        api_key
            .expose_secret()
            .trim()
            .split_once('-')
            .ok_or(ScramError::InvalidApiKey(
                "no '-' between the id and the key",
            ))?;
    let well_formed_id = !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit());
    let id = well_formed_id
        .then(|| id.parse::<u64>().ok())
        .flatten()
        .filter(|id| (1..=MAX_API_KEY_ID).contains(id))
        .ok_or(ScramError::InvalidApiKey(
            "the id is not a number in 1..=2147483647",
        ))?;
    if material.is_empty() {
        return Err(ScramError::InvalidApiKey("the key after the id is empty"));
    }
    if material
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ScramError::InvalidApiKey(
            "the key contains spaces or control characters",
        ));
    }
    Ok((id, SecretString::from(material.to_owned())))
}

/// Caches ClientKey and ServerKey per (secret, salt, iterations). Never holds the secret or
/// SaltedPassword; entries are zeroised when dropped or evicted.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<VecDeque<CacheEntry>>,
    derivations: AtomicU64,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("derivations", &self.derivations())
            .finish_non_exhaustive()
    }
}

struct CacheEntry {
    /// A hash of the secret, so entries of a rotated key never answer for the new one.
    secret_tag: [u8; KEY_LEN],
    salt: Vec<u8>,
    iterations: u32,
    keys: DerivedKeys,
}

impl Drop for CacheEntry {
    fn drop(&mut self) {
        self.secret_tag.zeroize();
    }
}

#[derive(Clone)]
struct DerivedKeys {
    client_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl Drop for DerivedKeys {
    fn drop(&mut self) {
        self.client_key.zeroize();
        self.server_key.zeroize();
    }
}

impl KeyCache {
    /// How many PBKDF2 derivations this cache has run (cache misses).
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    fn get_or_derive(&self, secret: &SecretString, salt: &[u8], iterations: u32) -> DerivedKeys {
        let secret = secret.expose_secret().as_bytes();
        let mut secret_tag: [u8; KEY_LEN] = Sha512::new()
            .chain_update(b"passgate SCRAM key cache\0")
            .chain_update(secret)
            .finalize()
            .into();
        let found = self.lock().iter().find_map(|entry| {
            (entry.secret_tag == secret_tag && entry.salt == salt && entry.iterations == iterations)
                .then(|| entry.keys.clone())
        });
        if let Some(keys) = found {
            secret_tag.zeroize();
            return keys;
        }

        // Derived without the lock held: a slow PBKDF2 must not block other lookups.
        self.derivations.fetch_add(1, Ordering::Relaxed);
        let mut salted = Zeroizing::new([0u8; KEY_LEN]);
        pbkdf2::pbkdf2_hmac::<Sha512>(secret, salt, iterations, &mut salted[..]);
        let keys = DerivedKeys {
            client_key: hmac_sha512(&salted, b"Client Key"),
            server_key: hmac_sha512(&salted, b"Server Key"),
        };

        let mut entries = self.lock();
        if entries.len() >= KEY_CACHE_CAP {
            entries.pop_front();
        }
        entries.push_back(CacheEntry {
            secret_tag,
            salt: salt.to_vec(),
            iterations,
            keys: keys.clone(),
        });
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<CacheEntry>> {
        // A panic while holding the lock cannot leave an entry half-written (push/pop are
        // the only mutations), so a poisoned cache is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn check_username(username: &str) -> Result<(), ScramError> {
    if username.is_empty() {
        return Err(ScramError::InvalidUsername("it is empty"));
    }
    if username.len() > MAX_USERNAME_BYTES {
        return Err(ScramError::InvalidUsername("it is longer than 255 bytes"));
    }
    // Printable ASCII is left unchanged by SASLprep, which the server insists on; `,`, `=`
    // and `:` would be read as separators, since TrueNAS does not unescape =2C/=3D.
    if !username
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'=' | b':'))
    {
        return Err(ScramError::InvalidUsername(
            "only printable ASCII without spaces, ',', '=' or ':' is supported",
        ));
    }
    Ok(())
}

fn random_nonce() -> Result<[u8; NONCE_LEN], ScramError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| ScramError::Random)?;
    Ok(nonce)
}

/// The value of `name=value`, where the part must be present and non-empty.
fn attribute(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let value = part
        .and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(ScramError::Malformed(
            "attributes are not r=,s=,i= in that order",
        ))?;
    if value.is_empty() {
        return Err(ScramError::Malformed("an attribute is empty"));
    }
    Ok(value)
}

/// Standard alphabet with canonical padding: the server re-encodes what it parsed, so any
/// other spelling would give both sides different AuthMessages.
fn decode(value: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    STANDARD
        .decode(value)
        .map_err(|_| ScramError::Malformed(what))
}

/// Plain decimal only: the server prints the count with `%lu`, so anything else would not
/// match its AuthMessage.
fn parse_iterations(value: &str) -> Result<u32, ScramError> {
    let canonical = value.len() <= 20
        && value.bytes().all(|b| b.is_ascii_digit())
        && !(value.len() > 1 && value.starts_with('0'));
    let count: u64 =
        canonical
            .then(|| value.parse().ok())
            .flatten()
            .ok_or(ScramError::Malformed(
                "iteration count is not a decimal number",
            ))?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&count) {
        return Err(ScramError::IterationsOutOfRange(count));
    }
    u32::try_from(count).map_err(|_| ScramError::IterationsOutOfRange(count))
}

/// Keeps a server-sent code fit for a log line: printable ASCII, bounded.
fn sanitise_error_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_ERROR_CODE_LEN)
        .collect()
}

/// HMAC-SHA512 keyed with a 64-byte key. HMAC zero-pads keys shorter than the hash's
/// 128-byte block, so padding here gives the same MAC through the infallible constructor.
fn keyed(key: &[u8; KEY_LEN]) -> HmacSha512 {
    let mut block = Zeroizing::new([0u8; 128]);
    block[..KEY_LEN].copy_from_slice(key);
    <HmacSha512 as KeyInit>::new(&(*block).into())
}

fn hmac_sha512(key: &[u8; KEY_LEN], data: &[u8]) -> [u8; KEY_LEN] {
    keyed(key).chain_update(data).finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // pam_truenas tests/conftest.py `pytest_sessionstart`: a real middleware-made key.
    const RAW_KEY: &str = "2-DJpfT7q7dHu6RRfeMwP8aJlGeUOmRWbDKnnzxnsc8F1YAsDNbl8aDM4X1cYwPmcC";
    const SALT: &[u8] = b"KCwXnX9l35e0ndOu";
    const SALTED_PASSWORD: &str =
        "sljMczeiN9kEqyOIrjoQ1QiBhnrmL++DtRdeyv+DHmQkkzoypbkzHIVA1iM/NVviC50dVpDKKlD3L2pv9KDdfw==";
    // Derived from SALTED_PASSWORD with Python's hashlib/hmac (an independent implementation).
    const CLIENT_KEY: &str =
        "zCpv5T7AUb3lrbMIeOrpNh2AmqkUPOJ4O4W536vwkudwxeyZEdW/WGQcSAstDZEX9qjeIGLnUWw5Z3BXKkV5xg==";
    const SERVER_KEY: &str =
        "uThGm5iYErrlwLhk6KmdYVgQ0PZT6RIaTHEK02Z5e3QwR0ygEoRFMffKOVkyMIRFNwoOB8Man9OS+SYXViEdiQ==";
    // A whole exchange for that key as bob:2, client nonce bytes 0..32, server nonce 32..64,
    // computed with Python's hashlib/hmac: truenas_scram's own tests use random nonces only.
    const CLIENT_FIRST: &str = "n,,n=bob:2,r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const SERVER_FIRST: &str = "r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==,s=S0N3WG5YOWwzNWUwbmRPdQ==,i=500000";
    const CLIENT_FINAL: &str = "c=biws,r=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==,p=VPfUTkxYHhHc97cETIX0iBG6SbMZzfkMuupoQFz3sv+IkwqbCkscug6K6ewEKDX7FWM0JTmA98Ta2K7cye0wxg==";
    const SERVER_FINAL: &str = "v=u/jqWQen1/QaxNpktgm1dGMisGG4qJjMgLDfm+lUhD/FXdY3P1sestxvn9GWE19Zk19AzqCFVjh1vnMs11oBXw==";

    fn b64_64(value: &str) -> [u8; KEY_LEN] {
        STANDARD
            .decode(value)
            .expect("test constant is base64")
            .try_into()
            .expect("test constant is 64 bytes")
    }

    fn vector_keys() -> DerivedKeys {
        let salted = b64_64(SALTED_PASSWORD);
        DerivedKeys {
            client_key: hmac_sha512(&salted, b"Client Key"),
            server_key: hmac_sha512(&salted, b"Server Key"),
        }
    }

    fn vector_client() -> ScramClient {
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| u8::try_from(i).expect("< 32"));
        let (client, first) =
            ScramClient::with_principal("bob:2".to_owned(), nonce).expect("fixed nonce");
        assert_eq!(first, CLIENT_FIRST);
        client
    }

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    /// A server-first for `client` with a server nonce of `fill` bytes.
    fn server_first_for(client: &ScramClient, salt: &[u8], iterations: &str) -> String {
        let mut nonce = client.client_nonce.to_vec();
        nonce.extend_from_slice(&[7u8; NONCE_LEN]);
        format!(
            "r={},s={},i={iterations}",
            STANDARD.encode(nonce),
            STANDARD.encode(salt)
        )
    }

    #[test]
    fn key_derivation_matches_the_pam_truenas_vector() {
        let (id, material) = api_key_secret(&secret(RAW_KEY)).expect("real key");
        assert_eq!(id, 2);
        let keys = KeyCache::default().get_or_derive(&material, SALT, 500_000);
        assert_eq!(keys.client_key, b64_64(CLIENT_KEY));
        assert_eq!(keys.server_key, b64_64(SERVER_KEY));
        assert_eq!(vector_keys().client_key, b64_64(CLIENT_KEY));
    }

    #[test]
    fn whole_exchange_matches_the_vector() {
        let client = vector_client();
        let parsed = client.parse_server_first(SERVER_FIRST).expect("valid");
        assert_eq!(parsed.iterations, 500_000);
        assert_eq!(parsed.salt, SALT);
        let (fin, client_final) = client.finish(SERVER_FIRST, parsed.nonce_b64, &vector_keys());
        assert_eq!(client_final, CLIENT_FINAL);
        fin.verify(SERVER_FINAL)
            .expect("the vector's server signature");
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let client = vector_client();
        let parsed = client.parse_server_first(SERVER_FIRST).expect("valid");
        let (fin, _) = client.finish(SERVER_FIRST, parsed.nonce_b64, &vector_keys());
        let mut signature = b64_64(&SERVER_FINAL[2..]);
        signature[63] ^= 1;
        let wrong = format!("v={}", STANDARD.encode(signature));
        assert!(matches!(
            fin.verify(&wrong),
            Err(ScramError::ServerSignatureMismatch)
        ));
    }

    #[test]
    fn server_final_errors_and_garbage() {
        let client = vector_client();
        let parsed = client.parse_server_first(SERVER_FIRST).expect("valid");
        let (fin, _) = client.finish(SERVER_FIRST, parsed.nonce_b64, &vector_keys());
        match fin.verify("e=invalid-proof\n") {
            Err(ScramError::ServerError(code)) => assert_eq!(code, "invalid-proof"),
            other => panic!("expected ServerError, got {other:?}"),
        }
        for garbage in [
            "",
            "v=",
            "v=AAAA",
            &SERVER_FINAL[..SERVER_FINAL.len() - 4],
            &format!("{SERVER_FINAL},x=1"),
            &SERVER_FINAL[2..],
            "v=***",
        ] {
            assert!(
                matches!(fin.verify(garbage), Err(ScramError::Malformed(_))),
                "{garbage:?} must be malformed"
            );
        }
    }

    #[test]
    fn api_key_principal_and_nonce_shape() {
        let (a, first) = ScramClient::start_api_key("truenas_admin", 12345).expect("valid");
        let nonce_b64 = first
            .strip_prefix("n,,n=truenas_admin:12345,r=")
            .expect("gs2 header, owner:id, nonce");
        assert_eq!(STANDARD.decode(nonce_b64).expect("base64"), a.client_nonce);
        let (b, _) = ScramClient::start_api_key("truenas_admin", 12345).expect("valid");
        assert_ne!(a.client_nonce, b.client_nonce, "nonces are random");
        let (_, first) = ScramClient::start("bob").expect("valid");
        assert!(first.starts_with("n,,n=bob,r="));
        for id in [0, MAX_API_KEY_ID + 1] {
            assert!(matches!(
                ScramClient::start_api_key("bob", id),
                Err(ScramError::InvalidApiKey(_))
            ));
        }
    }

    #[test]
    fn usernames_the_server_would_misread_are_refused() {
        let long = "a".repeat(256);
        for name in [
            "",
            "a,b",
            "a=b",
            "a:b",
            "a b",
            "b\u{f6}b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    ScramClient::start(name),
                    Err(ScramError::InvalidUsername(_))
                ),
                "{name:?}"
            );
        }
        ScramClient::start(&"a".repeat(255)).expect("255 bytes fit");
        ScramClient::start("DOMAIN\\bob").expect("directory-style name");
    }

    #[test]
    fn a_nonce_that_does_not_extend_ours_is_refused() {
        let (client, _) = ScramClient::start("bob").expect("valid");
        let mut other = client.client_nonce;
        other[0] ^= 1;
        let mut combined = other.to_vec();
        combined.extend_from_slice(&[7u8; NONCE_LEN]);
        let salt = STANDARD.encode(SALT);
        let foreign = format!("r={},s={salt},i=500000", STANDARD.encode(&combined));
        let echoed = format!(
            "r={},s={salt},i=500000",
            STANDARD.encode(client.client_nonce)
        );
        let short = format!("r={},s={salt},i=500000", STANDARD.encode(&combined[..20]));
        for server_first in [foreign, echoed, short] {
            assert!(matches!(
                client.parse_server_first(&server_first),
                Err(ScramError::NonceMismatch)
            ));
        }
        let mut long = client.client_nonce.to_vec();
        long.extend_from_slice(&[7u8; 40]);
        let long = format!("r={},s={salt},i=500000", STANDARD.encode(long));
        assert!(matches!(
            client.parse_server_first(&long),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn iteration_counts_outside_truenas_limits_are_refused() {
        let (client, _) = ScramClient::start("bob").expect("valid");
        for ok in ["50000", "500000", "5000000"] {
            client
                .parse_server_first(&server_first_for(&client, SALT, ok))
                .expect(ok);
        }
        for (count, value) in [
            ("4096", 4096),
            ("49999", 49_999),
            ("5000001", 5_000_001),
            ("0", 0),
        ] {
            match client.parse_server_first(&server_first_for(&client, SALT, count)) {
                Err(ScramError::IterationsOutOfRange(got)) => assert_eq!(got, value),
                other => panic!("{count}: expected IterationsOutOfRange, got {other:?}"),
            }
        }
        for bad in [
            "0x10000",
            "0500000",
            "+500000",
            "-1",
            "5e5",
            " 500000",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(
                    client.parse_server_first(&server_first_for(&client, SALT, bad)),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_first_structure_is_strict() {
        let (client, _) = ScramClient::start("bob").expect("valid");
        let good = server_first_for(&client, SALT, "500000");
        client.parse_server_first(&good).expect("valid");
        assert!(matches!(
            client.parse_server_first(&format!("m=ext,{good}")),
            Err(ScramError::UnsupportedExtension)
        ));
        let (r, rest) = good.split_once(',').expect("r,s,i");
        let (s, i) = rest.split_once(',').expect("s,i");
        let short_salt = server_first_for(&client, &SALT[..15], "500000");
        let unpadded = good.replace("==", "");
        for bad in [
            format!("{good},x=1"),
            format!("{s},{r},{i}"),
            format!("{r},{i},{s}"),
            format!("{r},{s}"),
            format!("{r},s=,{i}"),
            short_salt,
            unpadded,
            good[..good.len() - 1].replace("i=", "j="),
            String::new(),
            "x".repeat(MAX_MESSAGE_LEN + 1),
        ] {
            assert!(
                matches!(
                    client.parse_server_first(&bad),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn api_key_split() {
        let (id, material) = api_key_secret(&secret(" 17-abcDEF123\n")).expect("valid");
        assert_eq!(id, 17);
        assert_eq!(material.expose_secret(), "abcDEF123");
        let (_, material) = api_key_secret(&secret("3-ab-cd")).expect("valid");
        assert_eq!(
            material.expose_secret(),
            "ab-cd",
            "split on the first '-' only"
        );
        for bad in [
            "abcdef",
            "-abcdef",
            "0-abcdef",
            "x-abcdef",
            "+3-abcdef",
            "2147483648-abcdef",
            "99999999999999999999-abcdef",
            "3-",
            "3-ab cd",
            "3-ab\u{7}cd",
        ] {
            let err = api_key_secret(&secret(bad)).expect_err(bad);
            assert!(matches!(err, ScramError::InvalidApiKey(_)), "{bad:?}");
            assert!(
                !err.to_string().contains("abcdef"),
                "error text leaks the key"
            );
        }
    }

    #[test]
    fn key_cache_derives_once_per_secret_salt_and_count() {
        let cache = KeyCache::default();
        let first = cache.get_or_derive(&secret("key-a"), SALT, 2);
        let again = cache.get_or_derive(&secret("key-a"), SALT, 2);
        assert_eq!(cache.derivations(), 1);
        assert_eq!(first.client_key, again.client_key);
        let other_secret = cache.get_or_derive(&secret("key-b"), SALT, 2);
        assert_ne!(other_secret.client_key, first.client_key);
        cache.get_or_derive(&secret("key-a"), b"another-salt-16b", 2);
        cache.get_or_derive(&secret("key-a"), SALT, 3);
        assert_eq!(cache.derivations(), 4);
        cache.get_or_derive(&secret("key-c"), SALT, 2);
        assert_eq!(cache.lock().len(), KEY_CACHE_CAP, "bounded");
        cache.get_or_derive(&secret("key-a"), SALT, 2);
        assert_eq!(cache.derivations(), 6, "the oldest entry was evicted");
    }

    #[test]
    fn debug_output_carries_no_key_material() {
        let cache = KeyCache::default();
        let keys = cache.get_or_derive(&secret("key-a"), SALT, 2);
        let client = vector_client();
        let parsed = client.parse_server_first(SERVER_FIRST).expect("valid");
        let (fin, _) = client.finish(SERVER_FIRST, parsed.nonce_b64, &keys);
        let shown = format!("{cache:?} {fin:?} {:?}", vector_client());
        for secret_bytes in [keys.client_key, keys.server_key] {
            assert!(!shown.contains(&STANDARD.encode(secret_bytes)));
            assert!(!shown.contains(&hex::encode(secret_bytes)));
        }
        assert!(!shown.contains("key-a"));
        assert!(!shown.contains(&format!("{:?}", keys.client_key[0..4].to_vec())));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(input in ".{0,300}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let client = vector_client();
            let _ = client.parse_server_first(&input);
            let parsed = client.parse_server_first(SERVER_FIRST).expect("valid");
            let (fin, _) = client.finish(SERVER_FIRST, parsed.nonce_b64, &vector_keys());
            let _ = fin.verify(&input);
            let lossy = String::from_utf8_lossy(&raw);
            let _ = fin.verify(&format!("v={lossy}"));
            let _ = fin.verify(&format!("e={lossy}"));
            let _ = vector_client().parse_server_first(&format!("r={lossy},s={lossy},i={lossy}"));
            let _ = api_key_secret(&secret(&input));
        }

        #[test]
        fn whatever_server_first_passes_is_canonical(pos in 0usize..SERVER_FIRST.len(), byte in any::<u8>()) {
            // The server re-serialises what it parsed for its AuthMessage, so anything this
            // parser accepts must print back to the very same text.
            let mut bytes = SERVER_FIRST.as_bytes().to_vec();
            bytes[pos] = byte;
            if let Ok(mutated) = String::from_utf8(bytes) {
                if let Ok(parsed) = vector_client().parse_server_first(&mutated) {
                    let reprinted = format!(
                        "r={},s={},i={}",
                        parsed.nonce_b64,
                        STANDARD.encode(&parsed.salt),
                        parsed.iterations
                    );
                    prop_assert_eq!(reprinted, mutated);
                }
            }
        }
    }
}
