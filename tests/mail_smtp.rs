//! `SmtpMailer` against a real SMTP server (aiosmtpd, tests/support/smtp.rs): STARTTLS and
//! implicit TLS deliver intact UTF-8 mail; an untrusted or misnamed certificate, a server
//! without STARTTLS and a wrong password deliver nothing; error texts never carry the body.
//!
//! Needs python3 with aiosmtpd (`scripts/install-deps test`); without it these tests fail on
//! purpose.

// Test code: a failed unwrap, expect or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "support/smtp.rs"]
mod smtp;

use std::path::PathBuf;

use passgate::config::{MailConfig, MailTransportChoice};
use passgate::mail::smtp::SmtpMailer;
use passgate::mail::{Mail, MailError, Mailer};
use rcgen::SanType;
use secrecy::SecretString;
use smtp::{Mode, Options, SmtpServer, TestPki};

const FROM: &str = "NAS-Passwörter <nas@example.org>";
const TO: &str = "juergen@example.org";
const SUBJECT: &str = "Passwort zurücksetzen";
/// Non-ASCII, a long line and a link that stands for a reset token: what must arrive intact
/// and must never show up in an error text.
const LINK: &str = "https://nas.example.org/reset/Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA";

fn body() -> String {
    format!(
        "Hallo Jürgen,\n\nPasswort zurücksetzen: öffnen Sie diesen Link innerhalb von 15 Minuten, \
         dann wählen Sie ein neues Passwort – es gilt sofort für alle Freigaben des NAS.\n\n\
         {LINK}\n\nGrüße, passgate\n"
    )
}

fn mail() -> Mail {
    Mail {
        to: TO.to_owned(),
        subject: SUBJECT.to_owned(),
        text: body(),
    }
}

/// A configuration for `url`, trusting `ca` (a PEM file) when given.
fn config(url: String, ca: Option<PathBuf>) -> MailConfig {
    MailConfig {
        transport: MailTransportChoice::Smtp,
        smtp_url: Some(url),
        smtp_ca_file: ca,
        from: Some(FROM.to_owned()),
        timeout_secs: 10,
        ..MailConfig::default()
    }
}

/// The CA in a file of its own temp dir, as an admin would point `mail.smtp_ca_file` at it.
struct CaFile {
    dir: tempfile::TempDir,
}

impl CaFile {
    fn new(pki: &TestPki) -> CaFile {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).expect("write CA");
        CaFile { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// The error's text, after checking it is of the expected kind and carries nothing of the
/// body.
fn refused(result: Result<(), MailError>, unavailable: bool) -> String {
    let error = result.expect_err("the send was expected to fail");
    let text = error.to_string();
    match (&error, unavailable) {
        (MailError::Unavailable(_), true) | (MailError::Failed(_), false) => {}
        _ => panic!(
            "expected {}, got {error:?}",
            if unavailable { "Unavailable" } else { "Failed" }
        ),
    }
    assert_no_body(&text);
    text
}

fn assert_no_body(text: &str) {
    assert!(!text.contains(LINK), "the link leaked into {text:?}");
    assert!(!text.contains("Zm9vYmFy"), "the token leaked into {text:?}");
    for line in body().lines().filter(|l| l.len() > 10) {
        assert!(!text.contains(line), "a body line leaked into {text:?}");
    }
}

/// The one message the server got, checked against `mail()`.
fn assert_delivered(server: &SmtpServer) {
    let received = server.received();
    assert_eq!(received.len(), 1, "{received:#?}\n{}", server.stderr());
    let got = &received[0];
    assert_eq!(got.mail_from, "nas@example.org");
    assert_eq!(got.rcpt_tos, vec![TO.to_owned()]);
    assert_eq!(got.header("From"), FROM);
    assert_eq!(got.header("To"), TO);
    assert_eq!(got.header("Subject"), SUBJECT);
    assert_eq!(got.header("Auto-Submitted"), "auto-generated");
    assert!(got.header("Date").contains(':'), "{:?}", got.header("Date"));
    let id = got.header("Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@example.org>"), "{id}");
    assert_eq!(got.header("Content-Type"), "text/plain; charset=\"utf-8\"");
    // lettre picks a 7-bit transfer encoding for non-ASCII text, so no relay can mangle it.
    let encoding = got.header("Content-Transfer-Encoding");
    assert!(
        matches!(encoding, "quoted-printable" | "base64"),
        "{encoding}"
    );
    assert!(
        got.content.is_ascii(),
        "8-bit on the wire:\n{}",
        got.content
    );
    // The message ends with a line break of its own before SMTP's final dot.
    assert_eq!(got.body.replace("\r\n", "\n").trim_end(), body().trim_end());
}

#[tokio::test]
async fn starttls_with_the_ca_file_delivers_intact_utf8() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::StartTls, &pki, Options::default());
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();
    assert_eq!(mailer.name(), "smtp");

    let check = mailer.check().await.unwrap();
    assert!(
        check.contains(&format!("smtp://127.0.0.1:{} (STARTTLS)", server.port())),
        "{check}"
    );
    assert!(server.received().is_empty(), "check() sent mail");

    mailer.send(&mail()).await.unwrap();
    assert_delivered(&server);
}

#[tokio::test]
async fn implicit_tls_delivers_intact_utf8() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::Implicit, &pki, Options::default());
    // By name this time: the certificate names both.
    let url = format!("smtps://localhost:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();

    let check = mailer.check().await.unwrap();
    assert!(check.contains("(implicit TLS)"), "{check}");

    mailer.send(&mail()).await.unwrap();
    assert_delivered(&server);
}

#[tokio::test]
async fn an_untrusted_certificate_delivers_nothing() {
    let pki = TestPki::localhost();
    for mode in [Mode::StartTls, Mode::Implicit] {
        let server = SmtpServer::start(mode, &pki, Options::default());
        let scheme = if mode == Mode::StartTls {
            "smtp"
        } else {
            "smtps"
        };
        let url = format!("{scheme}://127.0.0.1:{}", server.port());
        // No smtp_ca_file: only the system roots, which do not know the test CA.
        let mailer = SmtpMailer::new(&config(url, None)).unwrap();

        let text = refused(mailer.send(&mail()).await, true);
        assert!(text.contains("certificate"), "{mode:?}: {text}");
        assert!(
            matches!(mailer.check().await, Err(MailError::Unavailable(_))),
            "{mode:?}: check() passed"
        );
        assert!(server.received().is_empty(), "{mode:?}: a mail arrived");
    }
}

#[tokio::test]
async fn a_certificate_for_another_name_delivers_nothing() {
    let pki = TestPki::for_names(vec![SanType::DnsName(
        "mail.example.org".try_into().unwrap(),
    )]);
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::StartTls, &pki, Options::default());
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();

    let text = refused(mailer.send(&mail()).await, true);
    assert!(text.contains("certificate"), "{text}");
    assert!(server.received().is_empty(), "a mail arrived");
}

#[tokio::test]
async fn a_server_without_starttls_gets_nothing_in_plain() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::Plain, &pki, Options::default());
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();

    let text = refused(mailer.send(&mail()).await, true);
    assert!(text.contains("STARTTLS"), "{text}");
    assert!(mailer.check().await.is_err(), "check() passed without TLS");
    assert!(server.received().is_empty(), "a mail arrived in plain text");
}

#[tokio::test]
async fn auth_with_the_right_password_delivers_and_a_wrong_one_does_not() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let user = "nas@example.org";
    let password = "Grüße, geheim 1!";
    let server = SmtpServer::start(
        Mode::StartTls,
        &pki,
        Options {
            auth: Some((user.to_owned(), password.to_owned())),
            reject: false,
        },
    );
    // The @ of the user percent-encoded, as the URL syntax needs.
    let url = format!("smtp://nas%40example.org@127.0.0.1:{}", server.port());

    let mut wrong = config(url.clone(), Some(ca.path()));
    wrong.smtp_password = Some(SecretString::from("Grüße, geheim 2!"));
    let mailer = SmtpMailer::new(&wrong).unwrap();
    let text = refused(mailer.send(&mail()).await, false);
    assert!(
        !text.contains("geheim"),
        "the password leaked into {text:?}"
    );
    assert!(
        matches!(mailer.check().await, Err(MailError::Failed(_))),
        "check() passed with a wrong password"
    );
    assert!(server.received().is_empty(), "a mail arrived");

    // Without signing in at all, the server's "authentication required" is a refusal too.
    let anonymous = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(anonymous, Some(ca.path()))).unwrap();
    refused(mailer.send(&mail()).await, false);
    assert!(
        server.received().is_empty(),
        "a mail arrived unauthenticated"
    );

    let mut right = config(url, Some(ca.path()));
    right.smtp_password = Some(SecretString::from(password));
    let mailer = SmtpMailer::new(&right).unwrap();
    let check = mailer.check().await.unwrap();
    assert!(check.contains("nas@example.org"), "{check}");
    mailer.send(&mail()).await.unwrap();
    assert_delivered(&server);
}

#[tokio::test]
async fn a_refusal_that_quotes_the_body_is_reported_without_it() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(
        Mode::StartTls,
        &pki,
        Options {
            auth: None,
            reject: true,
        },
    );
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();

    let text = refused(mailer.send(&mail()).await, false);
    // The server's own words and code stay, so the admin sees why.
    assert!(text.contains("550"), "{text}");
    assert!(text.contains("Refused, it contains"), "{text}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: connections to the port are refused.
    let mailer = SmtpMailer::new(&config(format!("smtps://127.0.0.1:{port}"), None)).unwrap();
    let text = refused(mailer.send(&mail()).await, true);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test]
async fn an_invalid_recipient_fails_before_connecting() {
    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::StartTls, &pki, Options::default());
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let mailer = SmtpMailer::new(&config(url, Some(ca.path()))).unwrap();
    let mut bad = mail();
    bad.to = "juergen at example.org".to_owned();
    refused(mailer.send(&bad).await, false);
    assert!(server.received().is_empty());
}

/// The whole path with `mail.transport = "smtp"`: a reset request to the portal, the link
/// through a real SMTP server (STARTTLS), and the link works. The fake TrueNAS has no mail
/// relay, so nothing can have gone through `mail.send`.
#[tokio::test]
async fn a_reset_link_reaches_the_user_through_passgates_own_smtp_server() {
    use serde_json::json;
    use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};

    let pki = TestPki::localhost();
    let ca = CaFile::new(&pki);
    let server = SmtpServer::start(Mode::StartTls, &pki, Options::default());
    let mut user = FakeUser::new("jonas", "jonas-old-pass-1");
    user.email = Some("jonas@example.org".into());
    let fake = FakeTrueNas::start(Flavour::V26, vec![user]).await;
    let url = format!("smtp://localhost:{}", server.port());
    let ca_path = ca.path();
    let portal = support::portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[
            ("PASSGATE_RESET__ENABLED", "true"),
            ("PASSGATE_SERVER__PUBLIC_URL", "https://nas.example"),
            ("PASSGATE_MAIL__TRANSPORT", "smtp"),
            ("PASSGATE_MAIL__SMTP_URL", &url),
            (
                "PASSGATE_MAIL__SMTP_CA_FILE",
                ca_path.to_str().expect("utf8"),
            ),
            ("PASSGATE_MAIL__FROM", "NAS <nas@example.org>"),
        ],
    )
    .await;
    let (status, _) = portal
        .json("/api/v1/reset", None, json!({"username": "jonas"}))
        .await;
    assert_eq!(status, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let received = loop {
        if let Some(m) = server.received().into_iter().next() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(received.rcpt_tos, ["jonas@example.org"]);
    assert_eq!(received.header("Subject"), "Reset your NAS password");
    let start = received
        .body
        .find("https://nas.example/reset/")
        .expect("link")
        + "https://nas.example/reset/".len();
    let token = &received.body[start..start + 43];
    assert!(fake.sent_mail().is_empty(), "nothing went through TrueNAS");
    let (status, body) = portal
        .json(
            "/api/v1/reset/confirm",
            None,
            json!({"token": token, "new_password": "Quiet-River-Copper-58"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
