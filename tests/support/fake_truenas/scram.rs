//! The server side of TrueNAS' SCRAM-SHA-512 (`auth.login_ex` mechanism `SCRAM`), for the
//! fake middleware. Written apart from the portal's client (src/truenas/scram.rs) so that a
//! shared misreading cannot make both sides agree on something TrueNAS would refuse.
//!
//! It follows truenas_scram `src/scram/*.c` as pam_truenas `src/pam_truenas_auth.c` drives it:
//! the server keeps (salt, iterations, StoredKey, ServerKey) per API key; client-first is
//! `GS2,,n=USER[:KEYID],r=B64(32 bytes)`; server-first is `r=B64(client ‖ 32 server bytes),
//! s=B64(16-byte salt),i=N` with N in 50,000..=5,000,000; client-final is `c=B64("n,,"),r=…,p=…`;
//! the proof is checked as H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey; the
//! server-final is `v=B64(HMAC(ServerKey, AuthMessage))`. Like the C library, AuthMessage is
//! rebuilt from the parsed values, not from the strings received.
//!
//! Differences from TrueNAS, all stricter: no channel binding (`p=…` is refused; TrueNAS 26
//! accepts `tls-server-end-point` over TLS), a gs2 header is required, empty attributes
//! (`a,,b`, which `strtok` would skip) are refused, numbers are decimal only (the C parser
//! also takes `0x…` and octal), and the client-final `r=` must equal the combined nonce (the C
//! library does not compare it, though its AuthMessage then still holds its own server-first).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha512};

type Prf = Hmac<Sha512>;

const MIN_ITERS: u32 = 50_000;
const MAX_ITERS: u32 = 5_000_000;
const NONCE_BYTES: usize = 32;
const SALT_BYTES: usize = 16;
const DIGEST_BYTES: usize = 64;

/// What the fake stores for an API key, like the middleware's `account_api_key` row.
#[derive(Clone)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; DIGEST_BYTES],
    pub server_key: [u8; DIGEST_BYTES],
}

/// Derives the stored credentials for `secret` (for an API key: the part after `ID-`), as
/// middleware `utils/crypto.py` `generate_api_key_auth_data` does.
pub fn scram_credentials(secret: &str, salt: &[u8], iterations: u32) -> ScramCredentials {
    let salted = pbkdf2_sha512_one_block(secret.as_bytes(), salt, iterations);
    credentials_from_salted_password(&salted, salt, iterations)
}

/// The same, from a SaltedPassword already computed (test vectors give one).
pub fn credentials_from_salted_password(
    salted: &[u8],
    salt: &[u8],
    iterations: u32,
) -> ScramCredentials {
    let client_key = mac(salted, &[b"Client Key"]);
    ScramCredentials {
        salt: salt.to_vec(),
        iterations,
        stored_key: Sha512::digest(client_key).into(),
        server_key: mac(salted, &[b"Server Key"]),
    }
}

/// A salt like the middleware's: 16 characters of `[A-Za-z0-9./]`, as bytes.
pub fn new_salt() -> Vec<u8> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";
    let mut rng = rand::rng();
    (0..SALT_BYTES)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())])
        .collect()
}

/// Why the fake refuses an exchange; the caller answers `{"response_type":"AUTH_ERR"}` for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Malformed(&'static str),
    ChannelBinding,
    IterationsOutOfRange,
    NonceMismatch,
    ProofMismatch,
}

/// A parsed client-first; `username` and `api_key_id` (0 when absent) pick the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub username: String,
    pub api_key_id: u32,
    gs2_flag: char,
    nonce: Vec<u8>,
}

/// Reads a client-first `rfc_str`.
pub fn parse_client_first(rfc: &str) -> Result<ClientFirst, Reject> {
    let (gs2, bare) = rfc
        .split_once(",,")
        .ok_or(Reject::Malformed("no gs2 header"))?;
    let gs2_flag = match gs2 {
        "n" => 'n',
        "y" => 'y',
        g if g.starts_with("p=") => return Err(Reject::ChannelBinding),
        _ => return Err(Reject::Malformed("unsupported gs2 header")),
    };
    let fields: Vec<&str> = bare.split(',').collect();
    let [name, nonce] = fields[..] else {
        return Err(Reject::Malformed("client-first is not n=,r="));
    };
    let principal = name.strip_prefix("n=").ok_or(Reject::Malformed("no n="))?;
    let (username, api_key_id) = match principal.split_once(':') {
        None => (principal, 0),
        Some((user, id)) => (user, parse_key_id(id)?),
    };
    let plain = username
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && !matches!(c, ' ' | ',' | '=' | ':'));
    if username.is_empty() || username.len() > 255 || !plain {
        return Err(Reject::Malformed("username"));
    }
    let nonce = unbase64(nonce.strip_prefix("r=").ok_or(Reject::Malformed("no r="))?)?;
    if nonce.len() != NONCE_BYTES {
        return Err(Reject::Malformed("client nonce is not 32 bytes"));
    }
    Ok(ClientFirst {
        username: username.to_owned(),
        api_key_id,
        gs2_flag,
        nonce,
    })
}

fn parse_key_id(id: &str) -> Result<u32, Reject> {
    let digits = !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit());
    match id.parse::<u32>() {
        Ok(n) if digits && (1..=i32::MAX as u32).contains(&n) => Ok(n),
        _ => Err(Reject::Malformed("API key id")),
    }
}

/// How the fake misbehaves on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// Send a well-formed server-final whose signature is wrong, as an impostor would.
    pub wrong_server_signature: bool,
}

/// One exchange after the server-first was sent; consumed by the client-final.
pub struct ServerExchange {
    first: ClientFirst,
    creds: ScramCredentials,
    combined_nonce: Vec<u8>,
    server_first: String,
    options: ServerOptions,
}

impl ServerExchange {
    /// Answers a client-first with a fresh server nonce.
    pub fn server_first(
        first: ClientFirst,
        creds: ScramCredentials,
        options: ServerOptions,
    ) -> Result<(Self, String), Reject> {
        let mut server_nonce = [0u8; NONCE_BYTES];
        rand::rng().fill(&mut server_nonce[..]);
        Self::server_first_with_nonce(first, creds, options, server_nonce)
    }

    /// The same with a chosen server nonce, for fixed test vectors.
    pub fn server_first_with_nonce(
        first: ClientFirst,
        creds: ScramCredentials,
        options: ServerOptions,
        server_nonce: [u8; NONCE_BYTES],
    ) -> Result<(Self, String), Reject> {
        if !(MIN_ITERS..=MAX_ITERS).contains(&creds.iterations) {
            return Err(Reject::IterationsOutOfRange);
        }
        let combined_nonce = [first.nonce.as_slice(), &server_nonce].concat();
        let server_first = format!(
            "r={},s={},i={}",
            B64.encode(&combined_nonce),
            B64.encode(&creds.salt),
            creds.iterations
        );
        let exchange = ServerExchange {
            first,
            creds,
            combined_nonce,
            server_first: server_first.clone(),
            options,
        };
        Ok((exchange, server_first))
    }

    /// Checks the client-final's proof and returns the server-final `rfc_str`.
    pub fn client_final(self, rfc: &str) -> Result<String, Reject> {
        let fields: Vec<&str> = rfc.split(',').collect();
        let [c, r, p] = fields[..] else {
            return Err(Reject::Malformed("client-final is not c=,r=,p="));
        };
        let binding = unbase64(c.strip_prefix("c=").ok_or(Reject::Malformed("no c="))?)?;
        if binding != format!("{},,", self.first.gs2_flag).as_bytes() {
            return Err(Reject::ChannelBinding);
        }
        let nonce = unbase64(r.strip_prefix("r=").ok_or(Reject::Malformed("no r="))?)?;
        if nonce != self.combined_nonce {
            return Err(Reject::NonceMismatch);
        }
        let proof = unbase64(p.strip_prefix("p=").ok_or(Reject::Malformed("no p="))?)?;
        if proof.len() != DIGEST_BYTES {
            return Err(Reject::Malformed("proof is not 64 bytes"));
        }

        let auth_message = self.auth_message();
        let signature = mac(&self.creds.stored_key, &[auth_message.as_bytes()]);
        let claimed_client_key: Vec<u8> = proof.iter().zip(signature).map(|(a, b)| a ^ b).collect();
        let claimed_stored_key = Sha512::digest(&claimed_client_key);
        let difference = claimed_stored_key
            .iter()
            .zip(self.creds.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(Reject::ProofMismatch);
        }

        let mut server_signature = mac(&self.creds.server_key, &[auth_message.as_bytes()]);
        if self.options.wrong_server_signature {
            server_signature[0] ^= 0x80;
        }
        Ok(format!("v={}", B64.encode(server_signature)))
    }

    /// Rebuilt from parsed values, as truenas_scram's `scram_create_auth_message` callers do.
    fn auth_message(&self) -> String {
        let principal = match self.first.api_key_id {
            0 => self.first.username.clone(),
            id => format!("{}:{id}", self.first.username),
        };
        let gs2 = format!("{},,", self.first.gs2_flag);
        format!(
            "n={principal},r={},{},c={},r={}",
            B64.encode(&self.first.nonce),
            self.server_first,
            B64.encode(gs2),
            B64.encode(&self.combined_nonce)
        )
    }
}

fn unbase64(text: &str) -> Result<Vec<u8>, Reject> {
    B64.decode(text).map_err(|_| Reject::Malformed("base64"))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_BYTES] {
    let mut prf = <Prf as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        prf.update(part);
    }
    prf.finalize().into_bytes().into()
}

/// PBKDF2 (RFC 8018 §5.2) for one output block, which is all SCRAM-SHA-512 needs:
/// T1 = U1 ^ … ^ Uc, U1 = PRF(P, S ‖ INT(1)), Ui = PRF(P, Ui-1).
fn pbkdf2_sha512_one_block(password: &[u8], salt: &[u8], rounds: u32) -> [u8; DIGEST_BYTES] {
    let keyed = <Prf as Mac>::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut prf = keyed.clone();
    prf.update(salt);
    prf.update(&1u32.to_be_bytes());
    let mut u: [u8; DIGEST_BYTES] = prf.finalize().into_bytes().into();
    let mut t = u;
    for _ in 1..rounds {
        let mut prf = keyed.clone();
        prf.update(&u);
        u = prf.finalize().into_bytes().into();
        for (acc, byte) in t.iter_mut().zip(u) {
            *acc ^= byte;
        }
    }
    t
}
