//! Reading a TrueNAS user object (the same shape from JSON-RPC `user.query` and REST).

use secrecy::SecretString;
use serde_json::Value;

use super::{NasError, NasUser, UserAging};

/// What TrueNAS sends instead of a hash to a session that may not see it.
const MASKED: &str = "********";

/// The entry named exactly `username` in a user query's answer (`what` names the call, for
/// the error), or `None`: an empty list is "no such user", not an error.
pub fn find_user(answer: &Value, username: &str, what: &str) -> Result<Option<NasUser>, NasError> {
    let entries = answer
        .as_array()
        .ok_or_else(|| NasError::Protocol(format!("{what} did not return a list")))?;
    entries
        .iter()
        .find(|u| u.get("username").and_then(Value::as_str) == Some(username))
        .map(parse_user)
        .transpose()
}

/// Every local entry of a user query's answer; entries that cannot be read are skipped.
pub fn local_users(answer: &Value, what: &str) -> Result<Vec<NasUser>, NasError> {
    let entries = answer
        .as_array()
        .ok_or_else(|| NasError::Protocol(format!("{what} did not return a list")))?;
    Ok(entries
        .iter()
        .filter_map(|u| parse_user(u).ok())
        .filter(|u| u.local)
        .collect())
}

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
        aging: parse_aging(value),
        email: text("email")
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
        roles: value
            .get("roles")
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        home: text("home").map(str::to_owned),
        ssh_keys: text("sshpubkey").map(str::to_owned),
    })
}

/// The aging fields, each optional (absent before 25.04.1). TrueNAS encodes datetimes as
/// `{"$date": <milliseconds since the epoch>}` (middlewared_docs query_methods.rst).
fn parse_aging(value: &Value) -> UserAging {
    let last_change_secs = value
        .get("last_password_change")
        .and_then(|d| d.get("$date"))
        .and_then(Value::as_i64)
        .map(|ms| ms.div_euclid(1000));
    UserAging {
        last_change_secs,
        age_days: value
            .get("password_age")
            .and_then(Value::as_i64)
            .filter(|d| *d >= 0),
        change_required: value
            .get("password_change_required")
            .and_then(Value::as_bool),
    }
}

/// `max_password_age` of a `system.security.config` answer (JSON-RPC and REST alike):
/// `null` or missing means aging is off. TrueNAS allows 7 to 365 days
/// (api/v25_10_1/system_security.py); anything else is read as "off" rather than trusted.
pub fn parse_max_password_age(config: &Value) -> Result<Option<i64>, NasError> {
    if !config.is_object() {
        return Err(NasError::Protocol(String::from(
            "system.security.config did not return an object",
        )));
    }
    Ok(config
        .get("max_password_age")
        .and_then(Value::as_i64)
        .filter(|days| (1..=3650).contains(days)))
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

    #[test]
    fn aging_fields_are_optional() {
        let old = parse_user(&json!({"username": "bob", "local": true})).expect("parses");
        assert_eq!(old.aging, UserAging::default());
        let new = parse_user(&json!({
            "username": "bob",
            "last_password_change": {"$date": 1_764_633_600_123_i64},
            "password_age": 12,
            "password_change_required": true,
        }))
        .expect("parses");
        assert_eq!(
            new.aging,
            UserAging {
                last_change_secs: Some(1_764_633_600),
                age_days: Some(12),
                change_required: Some(true),
            }
        );
        let null = parse_user(&json!({
            "username": "bob",
            "last_password_change": null,
            "password_age": null,
            "password_change_required": false,
        }))
        .expect("parses");
        assert_eq!(null.aging.last_change_secs, None);
        assert_eq!(null.aging.age_days, None);
        assert_eq!(null.aging.change_required, Some(false));
    }

    #[test]
    fn max_password_age_null_or_days() {
        let read = |v: Value| parse_max_password_age(&v).expect("object");
        assert_eq!(read(json!({"max_password_age": null})), None);
        assert_eq!(read(json!({"enable_fips": false})), None);
        assert_eq!(read(json!({"max_password_age": 90})), Some(90));
        assert_eq!(read(json!({"max_password_age": 0})), None);
        assert!(parse_max_password_age(&json!([])).is_err());
    }
}
