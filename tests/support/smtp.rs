//! A real SMTP server for integration tests: aiosmtpd (PyPI, installed by
//! `scripts/install-deps test`) running tests/support/smtp_server.py on 127.0.0.1, on a port
//! the system picks and the script prints once it listens. Every accepted message lands as a
//! JSON line in a file of the server's temp dir. Stopped on drop.
//!
//! A missing python3 or aiosmtpd is a test FAILURE, not a skip: a skipped mail test would
//! prove nothing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde::Deserialize;

/// Python starts, imports aiosmtpd and binds in well under a second; this is for a machine
/// busy compiling.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A throwaway CA and a server certificate it signed, in PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    /// The usual one: the server certificate names `localhost` and 127.0.0.1.
    pub fn localhost() -> TestPki {
        TestPki::for_names(vec![
            SanType::DnsName("localhost".try_into().expect("a DNS name")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ])
    }

    pub fn for_names(names: Vec<SanType>) -> TestPki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "passgate test mail CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(Vec::<String>::new()).expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "passgate test mail server");
        server.subject_alt_names = names;
        let cert = server.signed_by(&key, &ca).expect("server certificate");
        TestPki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// STARTTLS offered and required before MAIL.
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// No TLS at all; STARTTLS is not offered.
    Plain,
}

/// What the server is to do besides accepting mail.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
    /// Refuse every message with a 550 quoting the body.
    pub reject: bool,
}

/// One message as the server got it.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The raw message, as sent.
    pub content: String,
    /// Decoded by Python's email package: lower-case name → values.
    pub headers: HashMap<String, Vec<String>>,
    /// The text body, transfer encoding and charset decoded.
    pub body: String,
}

impl Received {
    /// The only value of a header; fails the test when it is missing or repeated.
    pub fn header(&self, name: &str) -> &str {
        match self
            .headers
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
        {
            Some([value]) => value,
            other => panic!("header {name}: expected one value, got {other:?}"),
        }
    }
}

pub struct SmtpServer {
    // Before `dir`, so the process is gone before its files are.
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py")
}

impl SmtpServer {
    pub fn start(mode: Mode, pki: &TestPki, options: Options) -> SmtpServer {
        let dir = tempfile::Builder::new()
            .prefix("passgate-smtp-")
            .tempdir()
            .expect("tempdir");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, &pki.cert_pem).expect("write cert");
        std::fs::write(&key, &pki.key_pem).expect("write key");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");

        let mode_arg = match mode {
            Mode::StartTls => "starttls",
            Mode::Implicit => "implicit",
            Mode::Plain => "plain",
        };
        let mut command = Command::new("python3");
        command
            .arg(script())
            .args(["--mode", mode_arg, "--mails"])
            .arg(dir.path().join("mails.jsonl"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key);
        if let Some((user, password)) = &options.auth {
            command.args(["--user", user, "--password", password]);
        }
        if options.reject {
            command.arg("--reject");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 (scripts/install-deps test): {e}"));

        // The first stdout line is the port, printed once the socket listens. Read on a
        // thread so a server that hangs before printing fails the test instead of hanging it.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = SmtpServer {
            child,
            port: 0,
            dir,
        };
        let line = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
            panic!(
                "the SMTP server printed no port within {START_DEADLINE:?}:\n{}",
                server.stderr()
            )
        });
        server.port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the SMTP server did not start (is aiosmtpd installed? scripts/install-deps \
                 test):\nstdout: {line:?}\n{}",
                server.stderr()
            )
        });
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.dir.path().join("mails.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line from smtp_server.py"))
            .collect()
    }

    /// What the server wrote to standard error (Python tracebacks, aiosmtpd's warnings).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
