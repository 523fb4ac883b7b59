use std::fmt;
use std::sync::RwLock;

use serde_json::Value;

/// A TrueNAS release, as far as passgate needs it: major and minor (`25.10`, `26.04`, `27.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// From 26.0 on, `auth.login_ex` answers `DENIED` for a correct password without API
    /// access, so `AUTH_ERR` really means "wrong". Before that it does not.
    pub fn auth_err_is_definite(self) -> bool {
        self.major >= 26
    }

    /// Parses the forms TrueNAS uses: `25.10.1`, `TrueNAS-SCALE-25.10.1`, `v25.10.1`,
    /// `26.04.0-MASTER-20260101`, `27.0.0-BETA.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        let mut parts = text[start..].split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        // TrueNAS majors are two-digit years; anything else is not a version string.
        (10..100).contains(&major).then_some(Self { major, minor })
    }

    /// The `version` of a `system.info` answer (JSON-RPC and REST send the same object).
    pub fn from_system_info(info: &Value) -> Option<Self> {
        info.get("version")
            .and_then(Value::as_str)
            .and_then(Self::parse)
    }
}

/// The version a client has learned, read by every request and written once it is known.
pub struct VersionSlot(RwLock<Option<ServerVersion>>);

impl VersionSlot {
    pub fn new(hint: Option<ServerVersion>) -> Self {
        Self(RwLock::new(hint))
    }

    pub fn get(&self) -> Option<ServerVersion> {
        self.0.read().ok().and_then(|v| *v)
    }

    /// Stores `v`; true when it was not known before, so the caller logs a detection once.
    pub fn record(&self, v: ServerVersion) -> bool {
        match self.0.write() {
            Ok(mut slot) => slot.replace(v) != Some(v),
            Err(_) => false,
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_truenas_uses() {
        let cases = [
            ("25.10.1", Some((25, 10))),
            ("TrueNAS-SCALE-25.04.2", Some((25, 4))),
            ("v26.04.0", Some((26, 4))),
            ("27.0.0-BETA.1", Some((27, 0))),
            ("nothing", None),
            ("1.2", None),
        ];
        for (text, expected) in cases {
            let expected = expected.map(|(major, minor)| ServerVersion::new(major, minor));
            assert_eq!(ServerVersion::parse(text), expected, "{text}");
        }
    }

    #[test]
    fn auth_err_is_definite_only_from_26() {
        assert!(!ServerVersion::new(25, 10).auth_err_is_definite());
        assert!(ServerVersion::new(26, 4).auth_err_is_definite());
        assert!(ServerVersion::new(27, 0).auth_err_is_definite());
    }
}
