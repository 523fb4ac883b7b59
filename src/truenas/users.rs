//! Reading a TrueNAS user object (the same shape from JSON-RPC `user.query` and REST).

use secrecy::SecretString;
use serde_json::Value;

use super::{NasError, NasUser};

/// What TrueNAS sends instead of a hash to a session that may not see it.
const MASKED: &str = "********";

pub fn parse_user(value: &Value) -> Result<NasUser, NasError> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
    let username = text("username")
        .ok_or_else(|| NasError::Protocol(String::from("user entry without username")))?
        .to_string();
    let unixhash = text("unixhash")
        .filter(|h| *h != MASKED)
        .map(|h| SecretString::from(h.to_string()));
    Ok(NasUser {
        id: value.get("id").and_then(Value::as_i64).unwrap_or(-1),
        uid: value.get("uid").and_then(Value::as_i64).unwrap_or(-1),
        full_name: text("full_name").unwrap_or_default().to_string(),
        username,
        // Absent flags are read in the safe direction: not local means refused.
        local: value.get("local").and_then(Value::as_bool).unwrap_or(false),
        locked: flag("locked"),
        password_disabled: flag("password_disabled"),
        smb: flag("smb"),
        builtin: flag("builtin"),
        twofactor: flag("twofactor_auth_configured"),
        groups: value
            .get("groups")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default(),
        unixhash,
    })
}

/// The names of `group.query` entries (or the REST group list) whose id is in `ids`.
pub fn group_names(entries: &Value, ids: &[i64]) -> Result<Vec<String>, NasError> {
    let list = entries
        .as_array()
        .ok_or_else(|| NasError::Protocol(String::from("group query did not return a list")))?;
    Ok(list
        .iter()
        .filter(|g| {
            g.get("id")
                .and_then(Value::as_i64)
                .is_some_and(|id| ids.contains(&id))
        })
        .filter_map(|g| g.get("group").and_then(Value::as_str).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masked_hash_is_none_and_missing_local_is_refusing() {
        let u =
            parse_user(&json!({"id": 3, "uid": 3000, "username": "bob", "unixhash": "********"}))
                .expect("parses");
        assert!(u.unixhash.is_none());
        assert!(!u.local);
        let u = parse_user(&json!({"username": "bob", "local": true, "unixhash": "$6$x$y"}))
            .expect("parses");
        assert!(u.unixhash.is_some());
        assert!(u.local);
        assert!(parse_user(&json!({"id": 1})).is_err());
    }
}
