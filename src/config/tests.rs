use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

#[test]
fn defaults_match_the_public_contract() {
    let c = Config::load_from(None, env(&[])).expect("defaults load");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.data_dir, PathBuf::from("./data"));
    assert_eq!(c.server.session_ttl_secs, 600);
    assert_eq!(c.truenas.api, ApiChoice::Auto);
    assert!(!c.truenas.insecure_skip_verify);
    assert_eq!(
        c.auth.verifiers,
        vec![
            VerifierName::Truenas,
            VerifierName::Smb,
            VerifierName::Unixhash
        ]
    );
    assert_eq!(c.auth.smb_port, 445);
    assert_eq!(c.auth.smb_share, "IPC$");
    assert_eq!(c.policy.min_length, 8);
}

#[test]
fn unknown_keys_are_errors_in_file_and_env() {
    let f = file("[truenas]\nurll = \"https://nas\"\n");
    let err = Config::load_from(Some(f.path()), env(&[])).expect_err("typo must fail");
    assert!(err.to_string().contains("urll"), "{err}");
    let f = file("[nonsense]\nx = 1\n");
    assert!(Config::load_from(Some(f.path()), env(&[])).is_err());
    let err = Config::load_from(None, env(&[("PASSGATE_TRUENAS__URLX", "https://nas")]))
        .expect_err("env typo must fail");
    assert!(err.to_string().contains("urlx"), "{err}");
}

#[test]
fn env_overrides_file() {
    let f = file("[truenas]\nurl = \"https://file.example\"\n[policy]\nmin_length = 10\n");
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("PASSGATE_TRUENAS__URL", "https://env.example:8443"),
            ("PASSGATE_AUTH__VERIFIERS", "[\"smb\", \"unixhash\"]"),
            (
                "PASSGATE_SERVER__SECRET_KEY",
                "12345678901234567890123456789012345",
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(c.truenas.url.as_deref(), Some("https://env.example:8443"));
    assert_eq!(c.policy.min_length, 10);
    assert_eq!(
        c.auth.verifiers,
        vec![VerifierName::Smb, VerifierName::Unixhash]
    );
    assert_eq!(
        c.server
            .secret_key
            .as_ref()
            .map(|s| s.expose_secret().to_string()),
        Some("12345678901234567890123456789012345".to_string()),
        "an all-digit secret stays text"
    );
}

#[test]
fn flask_variables_are_mapped() {
    let c = Config::load_from(
        None,
        env(&[
            ("TRUENAS_HOST", "192.0.2.10"),
            ("TRUENAS_PORT", "8443"),
            ("TRUENAS_API_KEY", "1-abc"),
            ("SECRET_KEY", "a-long-enough-flask-secret-key-0123456789"),
        ]),
    )
    .expect("loads");
    assert_eq!(c.truenas.url.as_deref(), Some("https://192.0.2.10:8443"));
    assert!(c.truenas.api_key.is_some());
    assert!(c.server.secret_key.is_some());
}

#[test]
fn api_key_over_plain_http_is_refused_with_the_reason() {
    let err = Config::load_from(
        None,
        env(&[
            ("TRUENAS_HOST", "nas"),
            ("TRUENAS_USE_SSL", "false"),
            ("TRUENAS_API_KEY", "1-abc"),
        ]),
    )
    .expect_err("must refuse");
    assert!(err.to_string().contains("revokes"), "{err}");
}

#[test]
fn secret_files_are_read_and_conflicts_refused() {
    let key = file("1-from-file\n");
    let c = Config::load_from(
        None,
        env(&[
            ("PASSGATE_TRUENAS__URL", "https://nas"),
            (
                "PASSGATE_TRUENAS__API_KEY_FILE",
                key.path().to_str().expect("utf8"),
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(
        c.truenas
            .api_key
            .as_ref()
            .map(|s| s.expose_secret().to_string()),
        Some("1-from-file".to_string())
    );
    let err = Config::load_from(
        None,
        env(&[
            ("PASSGATE_TRUENAS__API_KEY", "x"),
            (
                "PASSGATE_TRUENAS__API_KEY_FILE",
                key.path().to_str().expect("utf8"),
            ),
        ]),
    )
    .expect_err("both set");
    assert!(err.to_string().contains("keep only one"), "{err}");
}

#[test]
fn short_secret_key_and_bad_fingerprint_are_refused() {
    assert!(Config::load_from(None, env(&[("SECRET_KEY", "short")])).is_err());
    assert!(Config::load_from(None, env(&[("PASSGATE_TRUENAS__TLS_FINGERPRINT", "abc")])).is_err());
    let fp = format!("sha256:{}", "AB:".repeat(31) + "AB");
    let c =
        Config::load_from(None, env(&[("PASSGATE_TRUENAS__TLS_FINGERPRINT", &fp)])).expect("ok");
    assert_eq!(c.tls_fingerprint().expect("parses"), Some([0xAB; 32]));
}

#[test]
fn masked_rendering_never_shows_secrets() {
    let c = Config::load_from(
        None,
        env(&[
            ("PASSGATE_TRUENAS__URL", "https://nas"),
            ("PASSGATE_TRUENAS__API_KEY", "1-topsecretkey"),
            (
                "PASSGATE_SERVER__SECRET_KEY",
                "another-top-secret-value-0123456789",
            ),
        ]),
    )
    .expect("loads");
    let shown = c.render_masked();
    assert!(!shown.contains("topsecret"), "{shown}");
    assert!(!shown.contains("another-top-secret"), "{shown}");
    assert!(shown.contains("********"));
    assert!(!format!("{c:?}").contains("topsecret"));
}

#[test]
fn url_forms() {
    let load = |u: &str| Config::load_from(None, env(&[("PASSGATE_TRUENAS__URL", u)]));
    let c = load("https://[::1]:9443").expect("v6");
    let e = c.truenas_endpoint().expect("ok").expect("some");
    assert_eq!(e.ws_base(), "wss://[::1]:9443");
    assert!(load("ftp://nas").is_err());
    assert!(load("https://nas/api").is_err());
    assert!(load("https://user:pw@nas").is_err());
}

#[test]
fn passgate_log_and_passgate_config_are_not_configuration_keys() {
    let c = Config::load_from(
        None,
        env(&[
            ("PASSGATE_LOG", "debug"),
            ("PASSGATE_CONFIG", "/nonexistent.toml"),
            ("PASSGATE_LOG__SYSLOG", "off"),
        ]),
    )
    .expect("PASSGATE_LOG is log verbosity, not the [log] section");
    assert_eq!(c.log.syslog, "off");
}

#[test]
fn edge_keys_have_safe_defaults_and_show_in_check_config() {
    let c = Config::load_from(None, env(&[])).expect("defaults load");
    let s = &c.server;
    assert_eq!(s.header_timeout_secs, 10);
    assert_eq!(s.body_timeout_secs, 20);
    assert_eq!(s.idle_timeout_secs, 60);
    assert_eq!(s.max_connections, 10_000);
    assert_eq!(s.max_connections_per_ip, 256);
    assert_eq!(s.shutdown_grace_secs, 10);
    let shown = c.render_masked();
    for key in [
        "header_timeout_secs = 10",
        "body_timeout_secs = 20",
        "idle_timeout_secs = 60",
        "max_connections = 10000",
        "max_connections_per_ip = 256",
        "shutdown_grace_secs = 10",
    ] {
        assert!(shown.contains(key), "{key} missing from:\n{shown}");
    }
}

#[test]
fn zero_edge_timeouts_and_caps_are_refused_with_the_reason() {
    for key in [
        "HEADER_TIMEOUT_SECS",
        "BODY_TIMEOUT_SECS",
        "IDLE_TIMEOUT_SECS",
        "SHUTDOWN_GRACE_SECS",
    ] {
        let name = format!("PASSGATE_SERVER__{key}");
        let err = Config::load_from(None, env(&[(&name, "0")])).expect_err("0 must be refused");
        let text = err.to_string();
        assert!(
            text.contains(&key.to_ascii_lowercase()) && text.contains("turn the deadline off"),
            "{text}"
        );
    }
    for key in ["MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_IP"] {
        let name = format!("PASSGATE_SERVER__{key}");
        let err = Config::load_from(None, env(&[(&name, "0")])).expect_err("0 must be refused");
        assert!(err.to_string().contains("refuse every connection"), "{err}");
    }
    let f = file("[server]\nmax_connections = 100\nmax_connections_per_ip = 101\n");
    let err = Config::load_from(Some(f.path()), env(&[])).expect_err("per-IP above total");
    assert!(err.to_string().contains("must not be above"), "{err}");
    let f = file("[server]\nheader_timeout_secs = 2\nmax_connections_per_ip = 3\n");
    let c = Config::load_from(Some(f.path()), env(&[])).expect("small values are fine");
    assert_eq!(c.server.header_timeout_secs, 2);
    assert_eq!(c.server.max_connections_per_ip, 3);
}

/// The README's table and the example file are the manual: every key must be in both, and
/// the example must load as it is.
#[test]
fn every_key_is_in_the_readme_and_the_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../../config/passgate.example.toml");
    let defaults = serde_json::to_value(Config::default()).expect("serialize");
    let mut missing = Vec::new();
    for (section, keys) in defaults.as_object().expect("sections") {
        let start = example
            .find(&format!("\n[{section}]\n"))
            .unwrap_or_else(|| panic!("no [{section}] in the example"));
        let body = &example[start + section.len() + 3..];
        let body = &body[..body.find("\n[").unwrap_or(body.len())];
        for key in keys.as_object().expect("keys").keys() {
            let name = format!("{section}.{key}");
            if !readme.contains(&format!("`{name}`")) {
                missing.push(format!("README: {name}"));
            }
            let listed =
                body.contains(&format!("\n{key} =")) || body.contains(&format!("\n# {key} ="));
            if !listed {
                missing.push(format!("example: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:#?}");
    let f = file(example);
    Config::load_from(Some(f.path()), env(&[])).expect("the example loads");
}
