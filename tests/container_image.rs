//! The built container image, run as deploy/docker-compose.yml and deploy/truenas-custom-app.yaml
//! would run it, against the fake TrueNAS on loopback.
//!
//! `scripts/test-image` builds the image from the Dockerfile, then runs these tests inside a
//! network namespace of their own (containers share it: `--network host`), with
//! `PASSGATE_TEST_IMAGE` naming the image. They are ignored in a plain `cargo test`, which has
//! no image.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "support/samba.rs"]
mod samba;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::deploy_files::{self, Service};
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::libxcrypt_verifies;

/// The image's own user (Dockerfile `USER`), also the compose files' `user:`.
const UID: u32 = 10001;
/// A container start on a busy machine: migrations, key generation, the first NAS call.
const START_DEADLINE: Duration = Duration::from_secs(90);

fn image() -> String {
    std::env::var("PASSGATE_TEST_IMAGE").expect("PASSGATE_TEST_IMAGE names the image to test")
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A container that is removed, with what it made, when the test ends, passed or not.
struct Container {
    name: String,
    cleanup: Vec<Vec<String>>,
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = podman(&["logs", &self.name]);
            eprintln!(
                "--- logs of {}:\n{}{}",
                self.name,
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
        for args in &self.cleanup {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = podman(&args);
        }
    }
}

/// Where the data volume is on this host, to look at what the container wrote.
enum Data {
    Named(String),
    HostPath(PathBuf),
}

/// `podman run` arguments that do what the compose service says. A key this function does not
/// know fails the test, so that a compose file cannot grow a setting the test never ran.
fn run_args(
    service: &Service,
    name: &str,
    fake: &FakeTrueNas,
    dir: &Path,
    extra_env: &[(&str, String)],
) -> (Vec<String>, Data, Vec<Vec<String>>) {
    let host_dir = dir.join("data");
    let mut args: Vec<String> = ["run", "-d", "--name", name, "--network", "host"]
        .map(String::from)
        .to_vec();
    let mut cleanup = Vec::new();
    let mut data = None;
    for key in service.keys() {
        match key.as_str() {
            // The image under test stands for the one named; `build:` made it.
            "image" | "build" => {}
            // Supervision is the engine's job; a test container must not come back.
            "restart" => {}
            // Compared with the image's HEALTHCHECK by tests/deploy.rs; the image's runs here.
            "healthcheck" => {}
            // There is no port mapping on the host network: the test asks the container port.
            "ports" => {}
            "user" => args.extend(["--user".into(), service.str("user").unwrap()]),
            "read_only" => {
                assert_eq!(service.str("read_only").as_deref(), Some("true"));
                args.push("--read-only".into());
            }
            "tmpfs" => {
                for path in service.list("tmpfs") {
                    args.extend(["--tmpfs".into(), path]);
                }
            }
            "cap_drop" => {
                for cap in service.list("cap_drop") {
                    args.extend(["--cap-drop".into(), cap]);
                }
            }
            "security_opt" => {
                for opt in service.list("security_opt") {
                    args.extend(["--security-opt".into(), opt]);
                }
            }
            "volumes" => {
                for (source, target) in service.volumes() {
                    if source.starts_with('/') {
                        // A host path (a TrueNAS dataset): the admin made it and gave it to
                        // the container's user, as the file's comment says.
                        std::fs::create_dir_all(&host_dir).unwrap();
                        std::os::unix::fs::chown(&host_dir, Some(UID), Some(UID)).unwrap();
                        std::fs::set_permissions(&host_dir, PermissionsExt::from_mode(0o700))
                            .unwrap();
                        args.extend(["-v".into(), format!("{}:{target}", host_dir.display())]);
                        data = Some(Data::HostPath(host_dir.clone()));
                    } else {
                        // A named volume: the engine makes it, from the image's /data.
                        let volume = format!("passgate-test-{source}");
                        let _ = podman(&["volume", "rm", "-f", &volume]);
                        args.extend(["-v".into(), format!("{volume}:{target}")]);
                        cleanup.push(vec![
                            "volume".into(),
                            "rm".into(),
                            "-f".into(),
                            volume.clone(),
                        ]);
                        data = Some(Data::Named(volume));
                    }
                }
            }
            "secrets" => {
                for secret in service.secrets() {
                    // Compose mounts a file secret read-only at /run/secrets/NAME, a bind
                    // mount of the file (not a swarm secret); the file is the container user's,
                    // mode 0400, as the compose file asks the admin to make it. (podman's own
                    // `--secret` cannot mount into a read-only root in podman 4.3.)
                    let file = dir.join(format!("secret-{secret}"));
                    std::fs::write(&file, fake.api_key()).unwrap();
                    std::os::unix::fs::chown(&file, Some(UID), Some(UID)).unwrap();
                    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o400)).unwrap();
                    args.extend([
                        "-v".into(),
                        format!("{}:/run/secrets/{secret}:ro", file.display()),
                    ]);
                }
            }
            "environment" => {
                let mut env = environment(service, fake);
                env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
                for (k, v) in env {
                    args.extend(["-e".into(), format!("{k}={v}")]);
                }
            }
            other => panic!(
                "{}: the image test does not know how to run `{other}`; teach run_args",
                service.file
            ),
        }
    }
    args.push(image());
    (args, data.expect("a data volume"), cleanup)
}

/// The service's environment, with the values an admin replaces pointed at the fake TrueNAS.
fn environment(service: &Service, fake: &FakeTrueNas) -> BTreeMap<String, String> {
    let mut env = service.environment();
    env.insert("PASSGATE_TRUENAS__URL".into(), fake.url());
    env.insert(
        "PASSGATE_TRUENAS__TLS_FINGERPRINT".into(),
        fake.fingerprint(),
    );
    assert_eq!(
        env.get("PASSGATE_TRUENAS__API_USER").map(String::as_str),
        Some(fake.api_user()),
        "{}: the API user",
        service.file
    );
    for (k, v) in &env {
        assert!(
            !v.contains("REPLACE_ME"),
            "{}: {k} still to replace",
            service.file
        );
    }
    env
}

/// The data directory's path on this host.
fn data_path(data: &Data) -> PathBuf {
    match data {
        Data::HostPath(p) => p.clone(),
        Data::Named(volume) => PathBuf::from(podman_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Mountpoint}}",
            volume,
        ])),
    }
}

/// The image's own HEALTHCHECK, run as the engine runs it, until it reports healthy.
fn wait_healthy(name: &str) {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let run = podman(&["healthcheck", "run", name]);
        if run.status.success() {
            break;
        }
        let state = podman_ok(&["inspect", "--format", "{{.State.Status}}", name]);
        assert_eq!(state, "running", "the container stopped");
        assert!(
            Instant::now() < deadline,
            "not healthy within {START_DEADLINE:?}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = podman_ok(&["inspect", "--format", "{{.State.Health.Status}}", name]);
    assert_eq!(status, "healthy");
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(port: u16) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn me(&self, token: &str) -> u16 {
        self.http
            .get(format!("{}/api/v1/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("an answer")
            .status()
            .as_u16()
    }

    async fn status(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("an answer")
            .status()
            .as_u16()
    }

    async fn sign_in(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "sign-in of {username}: {body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn change_password(&self, token: &str, current: &str, new: &str) {
        let (status, body) = self
            .post(
                "/api/v1/password",
                Some(token),
                json!({"current_password": current, "new_password": new}),
            )
            .await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("changed")),
            "{body}"
        );
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database and the generated secret are the container user's, and nobody else's.
fn assert_private_data(dir: &Path) {
    let meta = std::fs::metadata(dir).unwrap();
    assert_eq!(meta.uid(), UID, "the data directory's owner");
    assert_eq!(
        mode(dir) & 0o077,
        0,
        "the data directory is {:o}",
        mode(dir)
    );
    for name in ["passgate.db", "secret_key"] {
        let path = dir.join(name);
        assert_eq!(mode(&path), 0o600, "{name}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().uid(),
            UID,
            "{name}'s owner"
        );
    }
}

/// The server process, seen from this host's /proc: not root, no capabilities, no way to
/// gain privileges.
fn assert_unprivileged(name: &str) {
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", name]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {status}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let uid = UID.to_string();
    assert_eq!(
        field("Uid:"),
        vec![uid.clone(); 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(field("Gid:"), vec![uid; 4], "gids");
    for caps in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(field(caps), vec!["0000000000000000"], "{caps}");
    }
    assert_eq!(field("NoNewPrivs:"), vec!["1"]);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).starts_with("/usr/local/bin/passgate"),
        "the container's first process is passgate"
    );
}

/// The port the image serves, from its `ENV`.
fn image_port() -> u16 {
    let stage = deploy_files::runtime_stage();
    let listen = &stage.env["PASSGATE_SERVER__LISTEN"];
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

fn start(
    service: &Service,
    name: &str,
    fake: &FakeTrueNas,
    dir: &Path,
    extra_env: &[(&str, String)],
) -> (Container, Data) {
    let (args, data, cleanup) = run_args(service, name, fake, dir, extra_env);
    let _ = podman(&["rm", "-f", "-t", "0", name]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);
    let container = Container {
        name: name.to_owned(),
        cleanup,
    };
    wait_healthy(name);
    (container, data)
}

/// The image carries what the compose files rely on: checked on the built image, not only on
/// the Dockerfile's text.
#[test]
#[ignore = "needs the image: run scripts/test-image"]
fn the_built_image_is_what_the_compose_files_expect() {
    let inspect: Value = serde_json::from_str(&podman_ok(&["image", "inspect", &image()])).unwrap();
    let config = &inspect[0]["Config"];
    let health = &inspect[0]["Healthcheck"];
    let stage = deploy_files::runtime_stage();
    assert_eq!(config["User"], json!(stage.user));
    let port = image_port();
    assert!(
        config["ExposedPorts"].get(format!("{port}/tcp")).is_some(),
        "{config}"
    );
    // "30s" → nanoseconds, as the engine stores it.
    let nanos = |d: &str| d.strip_suffix('s').unwrap().parse::<u64>().unwrap() * 1_000_000_000;
    for file in deploy_files::COMPOSE_FILES {
        let service = deploy_files::service(file);
        assert_eq!(service.str("user"), Some(stage.user.clone()), "{file}");
        let (_, target) = &service.volumes()[0];
        assert!(config["Volumes"].get(target).is_some(), "{file}: {config}");
        let test: Vec<String> = serde_json::from_value(health["Test"].clone())
            .expect("the image keeps its HEALTHCHECK (docker format)");
        assert_eq!(test, service.healthcheck_test(), "{file}");
        for (ours, theirs) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start_period", "StartPeriod"),
        ] {
            let value = service.healthcheck_option(ours).unwrap();
            assert_eq!(json!(nanos(&value)), health[theirs], "{file}: {ours}");
        }
        assert_eq!(
            service.healthcheck_option("retries"),
            Some(health["Retries"].to_string()),
            "{file}: retries"
        );
    }
    let size: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", &image()])
        .parse()
        .unwrap();
    eprintln!("image size: {} MB", size / 1_000_000);
}

/// deploy/docker-compose.yml: a named volume and a file secret. Sign in, change a password,
/// sign out; then a restart keeps the data: revoked sessions stay revoked, live ones live, and
/// the audit chain verifies.
#[tokio::test]
#[ignore = "needs the image: run scripts/test-image"]
async fn the_image_runs_as_docker_compose_runs_it() {
    let fake = FakeTrueNas::start(
        Flavour::V27,
        vec![
            FakeUser::new("alice", "alice-old-password"),
            FakeUser::new("bob", "bob-password-1"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let service = deploy_files::service("deploy/docker-compose.yml");
    let name = "passgate-test-compose";
    let (_container, data) = start(&service, name, &fake, dir.path(), &[]);
    let client = Client::new(image_port());

    assert_eq!(
        client.status("/readyz").await,
        200,
        "ready: the NAS answers"
    );
    assert_unprivileged(name);

    let signed_out = client.sign_in("bob", "bob-password-1").await;
    let (status, _) = client
        .post("/api/v1/logout", Some(&signed_out), json!({}))
        .await;
    assert!(status < 300, "sign-out: {status}");
    assert_eq!(client.me(&signed_out).await, 401);

    let changed = client.sign_in("alice", "alice-old-password").await;
    client
        .change_password(&changed, "alice-old-password", "alice-new-password-1")
        .await;
    let hash = fake.unixhash("alice").unwrap();
    assert!(libxcrypt_verifies(&hash, "alice-new-password-1"));
    assert_eq!(
        client.me(&changed).await,
        401,
        "a change revokes the sessions"
    );
    let live = client.sign_in("alice", "alice-new-password-1").await;
    assert_eq!(client.me(&live).await, 200);

    assert_private_data(&data_path(&data));

    // SIGTERM and a new start, as `docker compose restart` does.
    podman_ok(&["restart", "-t", "15", name]);
    wait_healthy(name);
    // A new process: the old keep-alive connections are gone, as for any client.
    let client = Client::new(image_port());
    assert_unprivileged(name);
    assert_eq!(
        client.me(&signed_out).await,
        401,
        "signed out before the restart"
    );
    assert_eq!(client.me(&changed).await, 401, "revoked before the restart");
    assert_eq!(
        client.me(&live).await,
        200,
        "a live session survives the restart"
    );

    let verify = podman(&["exec", name, "passgate", "audit", "verify"]);
    let out = String::from_utf8_lossy(&verify.stdout).into_owned()
        + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "audit verify: {out}");
    let list = podman_ok(&[
        "exec", name, "passgate", "audit", "list", "--format", "json",
    ]);
    for event in ["login_succeeded", "password_changed", "logout"] {
        assert!(list.contains(event), "the audit has {event}: {list}");
    }
    assert_private_data(&data_path(&data));
}

/// deploy/truenas-custom-app.yaml: the data on a host path (a dataset) the admin gave to uid
/// 10001, with the API key file in it.
#[tokio::test]
#[ignore = "needs the image: run scripts/test-image"]
async fn the_image_runs_as_the_truenas_app_runs_it() {
    let fake = FakeTrueNas::start(
        Flavour::V25_10,
        vec![FakeUser::new("carol", "carol-old-password")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let service = deploy_files::service("deploy/truenas-custom-app.yaml");
    let env = service.environment();
    let key_file = Path::new(&env["PASSGATE_TRUENAS__API_KEY_FILE"]);
    let (_, target) = &service.volumes()[0];
    let relative = key_file
        .strip_prefix(target)
        .expect("the key is in the data volume");
    // The admin puts the key in the dataset before the first start (README step 2).
    let host_data = dir.path().join("data");
    std::fs::create_dir_all(&host_data).unwrap();
    let host_key = host_data.join(relative);
    std::fs::write(&host_key, fake.api_key()).unwrap();
    std::fs::set_permissions(&host_key, PermissionsExt::from_mode(0o400)).unwrap();
    std::os::unix::fs::chown(&host_key, Some(UID), Some(UID)).unwrap();

    let name = "passgate-test-truenas-app";
    let (_container, data) = start(&service, name, &fake, dir.path(), &[]);
    let client = Client::new(image_port());
    assert_eq!(client.status("/readyz").await, 200);
    assert_unprivileged(name);
    let token = client.sign_in("carol", "carol-old-password").await;
    client
        .change_password(&token, "carol-old-password", "carol-new-password-1")
        .await;
    assert!(libxcrypt_verifies(
        &fake.unixhash("carol").unwrap(),
        "carol-new-password-1"
    ));
    client.sign_in("carol", "carol-new-password-1").await;
    assert_private_data(&data_path(&data));
}

/// The `smb` verifier inside the image, against a real smbd on loopback: libsmbclient and every
/// library it loads are in the minimal runtime, and work with a read-only root and no
/// smb.conf. The fake TrueNAS knows the user with another password, and only `smb` is in the
/// chain, so a sign-in proves that SMB checked it.
#[tokio::test]
#[ignore = "needs the image: run scripts/test-image"]
async fn the_image_verifies_passwords_over_smb() {
    let smbd = samba::SambaServer::start();
    let fake = FakeTrueNas::start(
        Flavour::V27,
        vec![FakeUser::new(smbd.username(), "not-the-smb-password")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let service = deploy_files::service("deploy/docker-compose.yml");
    let name = "passgate-test-smb";
    let extra = [
        ("PASSGATE_AUTH__VERIFIERS", String::from(r#"["smb"]"#)),
        ("PASSGATE_AUTH__SMB_HOST", smbd.host()),
        ("PASSGATE_AUTH__SMB_PORT", smbd.port().to_string()),
    ];
    let (_container, _data) = start(&service, name, &fake, dir.path(), &extra);
    let client = Client::new(image_port());
    let (status, body) = client
        .post(
            "/api/v1/login",
            None,
            json!({"username": smbd.username(), "password": "not-the-smb-password"}),
        )
        .await;
    assert_eq!(
        status, 401,
        "the NAS's own password is not what smb checks: {body}"
    );
    client.sign_in(smbd.username(), smbd.password()).await;
}
