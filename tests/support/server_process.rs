//! A real `passgate serve` process against a fake TrueNAS: a TOML configuration in a temp
//! directory, started from the built binary, ready once `/healthz` answers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::fake_truenas::FakeTrueNas;

/// How long a start may take on a busy machine (migrations, key generation, first login).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What to change in the configuration the process gets.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Extra `key = value` lines for the `[server]` section (`header_timeout_secs = 2`).
    pub server: Vec<String>,
    /// Serve HTTPS with this PEM certificate and key.
    pub tls: Option<(String, String)>,
    /// Also open `server.metrics_listen` on a free loopback port.
    pub metrics_listener: bool,
    /// Value of `PASSGATE_LOG` (default `warn`).
    pub log: Option<String>,
    /// More environment variables (`PASSGATE_LOG__FORMAT=json`, say).
    pub env: Vec<(String, String)>,
}

impl ServeOptions {
    pub fn server_key(mut self, line: &str) -> Self {
        self.server.push(line.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub struct ServerProcess {
    child: Child,
    options: ServeOptions,
    port: u16,
    metrics_port: Option<u16>,
    tls: bool,
    dir: tempfile::TempDir,
}

/// A port that was free a moment ago (the process binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl ServerProcess {
    /// Writes the configuration, starts the process and waits until `/healthz` answers.
    /// The rate limits are lifted so that tests measure the edge, not the limiter.
    pub async fn start(fake: &FakeTrueNas, options: ServeOptions) -> ServerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let metrics_port = options.metrics_listener.then(free_port);
        let data = dir.path().join("data");
        let mut server = vec![
            format!("listen = \"127.0.0.1:{port}\""),
            format!("data_dir = {:?}", data.display().to_string()),
        ];
        if let Some(m) = metrics_port {
            server.push(format!("metrics_listen = \"127.0.0.1:{m}\""));
        }
        if let Some((cert, key)) = &options.tls {
            let cert_path = dir.path().join("cert.pem");
            let key_path = dir.path().join("key.pem");
            std::fs::write(&cert_path, cert).expect("write cert");
            std::fs::write(&key_path, key).expect("write key");
            server.push(format!("tls_cert = {:?}", cert_path.display().to_string()));
            server.push(format!("tls_key = {:?}", key_path.display().to_string()));
        }
        server.extend(options.server.iter().cloned());
        let config = dir.path().join("passgate.toml");
        let mut file = std::fs::File::create(&config).expect("config");
        write!(
            file,
            r#"[server]
{server}
[truenas]
url = "{url}"
api_key = "{key}"
api_user = "{user}"
api = "jsonrpc"
tls_fingerprint = "{fp}"
[auth]
verifiers = ["truenas"]
[rate_limit]
login_attempts = 100000
user_failures = 100000
global_per_second = 100000
global_burst = 100000
[log]
syslog = "off"
"#,
            server = server.join("\n"),
            url = fake.url(),
            key = fake.api_key(),
            user = fake.api_user(),
            fp = fake.fingerprint(),
        )
        .expect("write config");
        let child = spawn(dir.path(), &options);
        let tls = options.tls.is_some();
        let mut process = ServerProcess {
            child,
            options,
            port,
            metrics_port,
            tls,
            dir,
        };
        process.wait_ready().await;
        process
    }

    /// Starts the same configuration again (same port, same data) after the process exited,
    /// as a supervisor would after a crash.
    pub async fn restart(&mut self) {
        assert!(
            self.child.try_wait().expect("try_wait").is_some(),
            "restart only after the process exited"
        );
        self.child = spawn(self.dir.path(), &self.options);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        // Readiness only: the certificate is the test's own, checked by the test's client.
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let url = format!("{}/healthz", self.base_url());
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "passgate exited with {status} before serving:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "passgate did not serve /healthz within {START_DEADLINE:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` when serving TLS (the name the
    /// test certificate is for; resolve it to 127.0.0.1 in the client).
    pub fn base_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir().join("passgate.db")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Resident memory in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    pub fn sigkill(&self) {
        self.signal("KILL");
    }

    /// Waits (polling) for the process to exit; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of one `/metrics` sample (`name{labels}` exactly as rendered), read from the
    /// metrics listener; 0 when the sample is not there yet.
    pub async fn metric(&self, sample: &str) -> f64 {
        let port = self.metrics_port.expect("started with metrics_listener");
        let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        body.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// `passgate serve` on the configuration in `dir`, standard error appended to its log.
fn spawn(dir: &Path, options: &ServeOptions) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .expect("stderr log");
    Command::new(env!("CARGO_BIN_EXE_passgate"))
        .args(["serve", "--config"])
        .arg(dir.join("passgate.toml"))
        .env("PASSGATE_LOG", options.log.as_deref().unwrap_or("warn"))
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start passgate")
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
