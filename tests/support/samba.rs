//! A real, throwaway Samba server for integration tests.
//!
//! Debian's `smbd` with its own smb.conf in a temp dir (every state, lock, cache, pid and
//! private dir under it, its own tdbsam passdb), listening on loopback on a free port, plus a
//! throwaway unix user with an SMB password. The user is in no share's `valid users`: the one
//! share belongs to a name that does not exist, so anything that works for this user works
//! through `IPC$` alone, as for a TrueNAS user who owns no share.
//!
//! Needs root (useradd, smbd) and the `samba` package. Missing either is a test FAILURE, not
//! a skip: CI installs samba, and a silently skipped SMB test would prove nothing.
//!
//! Drop stops every process started from this server's smb.conf and deletes the unix user.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the server is set up; `Default` is the TrueNAS-like, strict configuration.
#[derive(Debug, Clone)]
pub struct SambaConfig {
    /// The only address smbd listens on (`interfaces` + `bind interfaces only`).
    pub bind: IpAddr,
    /// smb.conf `map to guest`. TrueNAS uses `Never`; `Bad Password` and `Bad User` exist to
    /// prove a guest session is never taken for a verified password.
    pub map_to_guest: &'static str,
}

impl Default for SambaConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            map_to_guest: "Never",
        }
    }
}

pub struct SambaServer {
    // Field order matters for Drop: processes stop and the user goes (in drop()) before the
    // TempDir field removes the directory.
    dir: tempfile::TempDir,
    conf: PathBuf,
    bind: IpAddr,
    port: u16,
    user: String,
    password: String,
    user_created: bool,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

impl SambaServer {
    pub fn start() -> Self {
        Self::start_with(SambaConfig::default())
    }

    pub fn start_with(config: SambaConfig) -> Self {
        require_root();
        let smbd = require_tool("smbd");
        let smbpasswd = require_tool("smbpasswd");
        require_tool("useradd");
        require_tool("userdel");

        let dir = tempfile::Builder::new()
            .prefix("passgate-samba-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for smbd: {e}"));
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        // useradd allows 32 characters; pid + instance keeps parallel test binaries apart.
        let user = format!("pgt{}x{n}", std::process::id());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Non-ASCII and spaces on purpose: the NT hash is over UTF-16, so a charset slip
        // anywhere between Rust, libsmbclient and smbd would show up as a failed login.
        let password = format!("Grüße, Smb {nanos:08x}!");

        let mut server = SambaServer {
            conf: dir.path().join("smb.conf"),
            dir,
            bind: config.bind,
            port: 0,
            user,
            password,
            user_created: false,
        };
        // From here on a panic drops `server`, which undoes whatever was done.
        // smb.conf needs a real port even for smbpasswd (`smb ports = 0` crashes testparm).
        server.port = free_port(server.bind);
        server.create_user(&smbpasswd, &config);
        server.launch(&smbd, &config);
        server
    }

    pub fn host(&self) -> String {
        self.bind.to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn username(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of smbd's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("log.smbd")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops smbd (and samba-dcerpcd, and any child) now; the user stays until drop.
    /// Afterwards nothing listens on `port()`.
    pub fn stop(&mut self) {
        let ours = self.own_processes();
        for pid in &ours {
            signal(*pid, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ours.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in ours.iter().filter(|pid| alive(**pid)) {
            signal(*pid, "KILL");
        }
        // Children forked between the scan and the signals: one more sweep.
        for pid in self.own_processes() {
            signal(pid, "KILL");
        }
    }

    fn create_user(&mut self, smbpasswd: &Path, config: &SambaConfig) {
        let out = run(Command::new("useradd").args(["-M", "-s", "/usr/sbin/nologin", &self.user]));
        assert!(
            out.status.success(),
            "useradd {}: {}",
            self.user,
            text(&out)
        );
        self.user_created = true;

        let root = self.dir.path().to_path_buf();
        for sub in [
            "private", "lock", "state", "cache", "pid", "ncalrpc", "share",
        ] {
            fs::create_dir_all(root.join(sub))
                .unwrap_or_else(|e| panic!("creating {}: {e}", root.join(sub).display()));
        }
        // smbpasswd reads the passdb location from smb.conf.
        self.write_conf(config);

        let mut child = Command::new(smbpasswd)
            .args(["-c"])
            .arg(&self.conf)
            .args(["-s", "-a", &self.user])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running smbpasswd: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            write!(stdin, "{0}\n{0}\n", self.password)
                .unwrap_or_else(|e| panic!("writing to smbpasswd: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for smbpasswd: {e}"));
        assert!(
            out.status.success(),
            "smbpasswd -a {}: {}",
            self.user,
            text(&out)
        );
    }

    fn launch(&mut self, smbd: &Path, config: &SambaConfig) {
        // A port found free can be taken before smbd binds it; try a few.
        for attempt in 0..3 {
            if attempt > 0 {
                self.port = free_port(self.bind);
                self.write_conf(config);
            }
            let out = run(Command::new(smbd).arg("-D").arg("-s").arg(&self.conf));
            assert!(
                out.status.success(),
                "smbd -D failed: {}\n{}",
                text(&out),
                self.log_tail()
            );
            if self.wait_until_listening() {
                return;
            }
            self.stop();
        }
        panic!(
            "smbd never listened on {}:{}; log:\n{}",
            self.bind,
            self.port,
            self.log_tail()
        );
    }

    fn wait_until_listening(&self) -> bool {
        let addr = SocketAddr::new(self.bind, self.port);
        let started = Instant::now();
        while started.elapsed() < STARTUP_TIMEOUT {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            // smbd -D returns before it binds; once it has had time to, no process left
            // means it gave up (typically: the port was taken meanwhile).
            if started.elapsed() > Duration::from_secs(2) && self.own_processes().is_empty() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn write_conf(&self, config: &SambaConfig) {
        let d = self.dir.path().display();
        let conf = format!(
            "[global]
  server role = standalone server
  workgroup = WORKGROUP
  netbios name = PGTEST
  smb ports = {port}
  interfaces = {bind}
  bind interfaces only = yes
  disable netbios = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  passdb backend = tdbsam:{d}/passdb.tdb
  map to guest = {guest}
  log file = {d}/log.smbd
  log level = 1 auth_audit:2
  max log size = 0
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  usershare max shares = 0

# The only share, for a user that does not exist: the test user owns no share.
[restricted]
  path = {d}/share
  valid users = nobody-{pid}
  read only = yes
",
            port = self.port,
            bind = self.bind,
            guest = config.map_to_guest,
            pid = std::process::id(),
        );
        fs::write(&self.conf, conf)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.conf.display()));
    }

    /// Every process whose command line names this server's smb.conf: smbd, its children,
    /// samba-dcerpcd and its rpcd workers. The temp path is unique, so nothing else matches.
    fn own_processes(&self) -> Vec<u32> {
        let needle = self.conf.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmdline).contains(&needle) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for SambaServer {
    fn drop(&mut self) {
        self.stop();
        if self.user_created {
            let out = run(Command::new("userdel").arg(&self.user));
            if !out.status.success() {
                eprintln!("warning: userdel {} failed: {}", self.user, text(&out));
            }
        }
    }
}

fn require_root() {
    let out = run(Command::new("id").arg("-u"));
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        uid, "0",
        "the Samba tests need root (useradd, smbd); run them as root, e.g. in the CI container"
    );
}

fn require_tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: the SMB tests need a real Samba server. Install it with \
                 `apt-get install -y --no-install-recommends samba smbclient` (CI does). \
                 This is a failure, not a skip."
            )
        })
}

fn free_port(bind: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(bind, 0))
        .unwrap_or_else(|e| panic!("finding a free port on {bind}: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("reading the free port: {e}"))
        .port()
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry but is gone for our purposes.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    // Failure is fine: the process may have exited in between.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
