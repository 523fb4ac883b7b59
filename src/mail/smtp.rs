//! Mail through an SMTP server of passgate's own (`mail.transport = "smtp"`).
//!
//! Always over TLS, and the server's certificate is always verified (system roots plus
//! `mail.smtp_ca_file`): a reset mail carries a link that is as good as the password, so there
//! is neither a plain fallback nor an option to skip verification. `smtp://` is STARTTLS, and
//! a server that does not offer it gets no mail; `smtps://` is TLS from the first byte.
//!
//! Each mail opens its own connection (lettre without its pool): passgate sends a few mails an
//! hour, and a kept connection would mostly be found closed by the server.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret;

use super::{Mail, MailError, Mailer};
use crate::config::MailConfig;

/// Port 587 (submission) for STARTTLS and 465 (submissions, RFC 8314) for implicit TLS.
const STARTTLS_PORT: u16 = 587;
const IMPLICIT_TLS_PORT: u16 = 465;

/// How the TLS session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://`: plain greeting, then STARTTLS, which must succeed before anything else.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// What `mail.smtp_url` says.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// For connecting and for the certificate check: a name or a bare IP (no brackets).
    host: String,
    port: u16,
    security: Security,
    /// Percent-decoded, so `smtp://nas%40example.org@host` signs in as `nas@example.org`.
    user: Option<String>,
    /// `smtp://host:587 (STARTTLS)`, for the admin and for error texts.
    label: String,
}

fn not_configured(message: impl Into<String>) -> MailError {
    MailError::NotConfigured(message.into())
}

impl Endpoint {
    fn parse(text: &str) -> Result<Endpoint, MailError> {
        let url = crate::config::parse_smtp_url(text).map_err(|e| not_configured(e.to_string()))?;
        // lettre's own URL form puts options in the query (`?tls=opportunistic`); ignoring
        // one silently would let an admin believe a weaker setting is in force.
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(not_configured(
                "mail.smtp_url must be just smtp://[user@]host[:port] or smtps://[user@]host[:port], \
                 without a path, query or fragment",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(not_configured("mail.smtp_url has no host")),
        };
        let (security, default_port, tls_name) = match url.scheme() {
            "smtps" => (Security::Implicit, IMPLICIT_TLS_PORT, "implicit TLS"),
            _ => (Security::StartTls, STARTTLS_PORT, "STARTTLS"),
        };
        let port = url.port().unwrap_or(default_port);
        let user = match url.username() {
            "" => None,
            encoded => Some(
                percent_encoding::percent_decode_str(encoded)
                    .decode_utf8()
                    .map_err(|_| not_configured("the user in mail.smtp_url is not valid UTF-8"))?
                    .into_owned(),
            ),
        };
        let label = format!(
            "{}://{}:{port} ({tls_name})",
            url.scheme(),
            url.host_str().unwrap_or(&host)
        );
        Ok(Endpoint {
            host,
            port,
            security,
            user,
            label,
        })
    }
}

/// Both halves or neither: a user without a password (or the reverse) is a configuration slip
/// that would otherwise surface only as refused mail.
fn credentials(user: Option<&str>, config: &MailConfig) -> Result<Option<Credentials>, MailError> {
    match (user, config.smtp_password.as_ref()) {
        (Some(user), Some(password)) => Ok(Some(Credentials::new(
            user.to_owned(),
            password.expose_secret().to_owned(),
        ))),
        (None, None) => Ok(None),
        (Some(user), None) => Err(not_configured(format!(
            "mail.smtp_url signs in as {user:?} but mail.smtp_password (or smtp_password_file) \
             is not set"
        ))),
        (None, Some(_)) => Err(not_configured(
            "mail.smtp_password is set but mail.smtp_url names no user: write \
             smtp://USER@host (percent-encode an @ in the user as %40)",
        )),
    }
}

fn parse_from(config: &MailConfig) -> Result<Mailbox, MailError> {
    let text = config
        .from
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| not_configured("mail.transport = \"smtp\" needs mail.from"))?;
    text.trim().parse().map_err(|e| {
        not_configured(format!(
            "mail.from {text:?} is not a sender address (\"Name <addr@example.org>\" or \
             addr@example.org): {e}"
        ))
    })
}

/// Every certificate in the PEM file; a file without one is an error, not an empty addition.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<Certificate>, MailError> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| not_configured(format!("mail.smtp_ca_file {shown}: {e}")))?;
    let ders = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_configured(format!("mail.smtp_ca_file {shown}: {e}")))?;
    if ders.is_empty() {
        return Err(not_configured(format!(
            "mail.smtp_ca_file {shown} holds no PEM certificate"
        )));
    }
    ders.into_iter()
        .map(|der| {
            Certificate::from_der(der.to_vec())
                .map_err(|e| not_configured(format!("mail.smtp_ca_file {shown}: {e}")))
        })
        .collect()
}

/// `Auto-Submitted: auto-generated` (RFC 3834), so that vacation responders and mailing lists
/// leave passgate's notices alone.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), String::from("auto-generated"))
    }
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    endpoint: Endpoint,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.endpoint.label)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Checks everything that can be checked without connecting: the URL, the credentials,
    /// the sender and the CA file.
    pub fn new(config: &MailConfig) -> Result<SmtpMailer, MailError> {
        let url = config
            .smtp_url
            .as_deref()
            .ok_or_else(|| not_configured("mail.transport = \"smtp\" needs mail.smtp_url"))?;
        let endpoint = Endpoint::parse(url)?;
        let credentials = credentials(endpoint.user.as_deref(), config)?;
        let from = parse_from(config)?;
        let timeout = Duration::from_secs(config.timeout_secs.max(1));

        // lettre's default store with the rustls-native-certs feature: the system roots.
        let mut tls = TlsParameters::builder(endpoint.host.clone());
        if let Some(path) = &config.smtp_ca_file {
            for cert in ca_certificates(path)? {
                tls = tls.add_root_certificate(cert);
            }
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| not_configured(format!("TLS setup for {}: {e}", endpoint.label)))?;
        let tls = match endpoint.security {
            Security::StartTls => Tls::Required(tls),
            Security::Implicit => Tls::Wrapper(tls),
        };

        // "dangerous" only because this builder starts without TLS; `tls` is set right here.
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.clone())
                .port(endpoint.port)
                .tls(tls)
                .timeout(Some(timeout));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
            endpoint,
            timeout,
        })
    }

    fn message(&self, mail: &Mail) -> Result<Message, MailError> {
        let to: Mailbox = mail.to.trim().parse().map_err(|e| {
            MailError::Failed(format!(
                "recipient {:?} is not a mail address: {e}",
                mail.to
            ))
        })?;
        // The sender's domain rather than this machine's name, which in a container is a
        // random id that says nothing and may look like spam to filters.
        let message_id = format!(
            "<{:032x}@{}>",
            rand::random::<u128>(),
            self.from.email.domain()
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .date_now()
            .message_id(Some(message_id))
            .header(AutoSubmitted)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .map_err(|e| MailError::Failed(format!("the message could not be built: {e}")))
    }

    /// The SMTP server's refusals are the server's business ([`MailError::Failed`]);
    /// everything before a reply (connection, TLS, STARTTLS missing, timeouts) means it
    /// could not be used ([`MailError::Unavailable`]).
    fn error(&self, e: &lettre::transport::smtp::Error, body: Option<&str>) -> MailError {
        let mut text = format!("{}: {e}", self.endpoint.label);
        if let Some(body) = body {
            text = redact(&text, body);
        }
        if e.is_permanent() || e.is_transient() {
            MailError::Failed(text)
        } else {
            MailError::Unavailable(text)
        }
    }

    fn timed_out(&self) -> MailError {
        MailError::Unavailable(format!(
            "{}: no answer within {} s",
            self.endpoint.label,
            self.timeout.as_secs()
        ))
    }
}

/// A server's reply may quote what it was sent (a content filter naming the offending link);
/// the error ends up in logs and the audit trail, where a reset link must never be. Drops
/// every longer body line and every long body word (links, tokens) from `text`.
fn redact(text: &str, body: &str) -> String {
    // Short pieces ("Hello", "password") are too common to say anything and would only
    // garble the server's own words.
    let lines = body
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().count() >= 12);
    let words = body.split_whitespace().filter(|w| w.chars().count() >= 16);
    let mut pieces: Vec<&str> = lines.chain(words).collect();
    // Longest first, so a line goes whole before its words are looked at.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pieces.dedup();
    let mut out = text.to_owned();
    for piece in pieces {
        if out.contains(piece) {
            out = out.replace(piece, "[…]");
        }
    }
    out
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.message(mail)?;
        // lettre's timeout bounds each step; this bounds the whole exchange, as
        // `mail.timeout_secs` promises.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error(&e, Some(&mail.text))),
            Err(_) => Err(self.timed_out()),
        }
    }

    async fn check(&self) -> Result<String, MailError> {
        // Connects, runs STARTTLS, verifies the certificate and signs in, sending nothing.
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => {
                let user = match &self.endpoint.user {
                    Some(user) => format!(", signed in as {user:?}"),
                    None => String::new(),
                };
                Ok(format!(
                    "Mail: passgate sends through {}{user}, from {}",
                    self.endpoint.label, self.from
                ))
            }
            Ok(Ok(false)) => Err(MailError::Unavailable(format!(
                "{}: the server stopped answering",
                self.endpoint.label
            ))),
            Ok(Err(e)) => Err(self.error(&e, None)),
            Err(_) => Err(self.timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MailTransportChoice;
    use secrecy::SecretString;

    fn config(url: &str) -> MailConfig {
        MailConfig {
            transport: MailTransportChoice::Smtp,
            smtp_url: Some(url.to_owned()),
            from: Some("NAS passwords <nas@example.org>".to_owned()),
            ..MailConfig::default()
        }
    }

    fn not_configured_text(result: Result<SmtpMailer, MailError>) -> String {
        match result {
            Err(MailError::NotConfigured(text)) => text,
            Err(other) => panic!("expected NotConfigured, got {other:?}"),
            Ok(mailer) => panic!("expected an error, got {mailer:?}"),
        }
    }

    #[test]
    fn smtp_is_starttls_on_587_and_smtps_implicit_on_465() {
        let e = Endpoint::parse("smtp://mail.example.org").unwrap();
        assert_eq!(e.host, "mail.example.org");
        assert_eq!((e.port, e.security), (587, Security::StartTls));
        assert_eq!(e.label, "smtp://mail.example.org:587 (STARTTLS)");
        assert_eq!(e.user, None);

        let e = Endpoint::parse("smtps://mail.example.org").unwrap();
        assert_eq!((e.port, e.security), (465, Security::Implicit));
        assert_eq!(e.label, "smtps://mail.example.org:465 (implicit TLS)");

        let e = Endpoint::parse("smtp://mail.example.org:2525/").unwrap();
        assert_eq!((e.port, e.security), (2525, Security::StartTls));
    }

    #[test]
    fn ip_hosts_are_bare_for_tls_and_bracketed_for_people() {
        let e = Endpoint::parse("smtps://[::1]:4650").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.label, "smtps://[::1]:4650 (implicit TLS)");
        let e = Endpoint::parse("smtp://127.0.0.1").unwrap();
        assert_eq!(e.host, "127.0.0.1");
    }

    #[test]
    fn the_user_is_percent_decoded() {
        let e = Endpoint::parse("smtp://nas%40example.org@mail.example.org").unwrap();
        assert_eq!(e.user.as_deref(), Some("nas@example.org"));
        let e = Endpoint::parse("smtp://J%C3%BCrgen@mail.example.org").unwrap();
        assert_eq!(e.user.as_deref(), Some("Jürgen"));
        assert!(Endpoint::parse("smtp://%FF@mail.example.org").is_err());
    }

    #[test]
    fn urls_that_would_mean_something_else_are_refused() {
        for url in [
            "http://mail.example.org",
            "smtp://nas:secret@mail.example.org",
            "smtp://mail.example.org?tls=opportunistic",
            "smtp://mail.example.org/relay",
            "smtp://mail.example.org#x",
            "smtp://",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn user_and_password_come_together_or_not_at_all() {
        let mut both = config("smtp://nas@mail.example.org");
        both.smtp_password = Some(SecretString::from("pw"));
        assert!(SmtpMailer::new(&both).is_ok());

        assert!(SmtpMailer::new(&config("smtp://mail.example.org")).is_ok());

        let text = not_configured_text(SmtpMailer::new(&config("smtp://nas@mail.example.org")));
        assert!(text.contains("smtp_password"), "{text}");

        let mut password_only = config("smtp://mail.example.org");
        password_only.smtp_password = Some(SecretString::from("pw"));
        let text = not_configured_text(SmtpMailer::new(&password_only));
        assert!(text.contains("names no user"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn from_must_be_a_mailbox() {
        for from in ["NAS passwords <nas@example.org>", "nas@example.org"] {
            let mut c = config("smtp://mail.example.org");
            c.from = Some(from.to_owned());
            let mailer = SmtpMailer::new(&c).unwrap();
            assert_eq!(mailer.from.email.to_string(), "nas@example.org");
        }
        for from in ["", "nas", "NAS <nas@>", "a@b@c"] {
            let mut c = config("smtp://mail.example.org");
            c.from = Some(from.to_owned());
            let text = not_configured_text(SmtpMailer::new(&c));
            assert!(text.contains("mail.from"), "{from}: {text}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let mut c = config("smtp://mail.example.org");
        c.smtp_ca_file = Some(empty);
        let text = not_configured_text(SmtpMailer::new(&c));
        assert!(text.contains("no PEM certificate"), "{text}");

        c.smtp_ca_file = Some(dir.path().join("missing.pem"));
        let text = not_configured_text(SmtpMailer::new(&c));
        assert!(text.contains("missing.pem"), "{text}");
    }

    fn mail(to: &str, subject: &str, text: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
        }
    }

    fn formatted(mailer: &SmtpMailer, mail: &Mail) -> String {
        String::from_utf8(mailer.message(mail).unwrap().formatted()).unwrap()
    }

    #[test]
    fn the_message_is_plain_utf8_text_with_the_usual_headers() {
        let mailer = SmtpMailer::new(&config("smtp://mail.example.org")).unwrap();
        let mail = mail(
            "Jürgen <juergen@example.org>",
            "Passwort zurücksetzen",
            "Hallo,\nbitte öffnen Sie den Link.\n",
        );
        let text = formatted(&mailer, &mail);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        for header in [
            "From: \"NAS passwords\" <nas@example.org>",
            "Date: ",
            "Auto-Submitted: auto-generated",
            "Content-Type: text/plain; charset=utf-8",
        ] {
            assert!(head.contains(header), "{header} missing in\n{head}");
        }
        assert!(head.contains("juergen@example.org>"), "{head}");
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap();
        assert!(id.starts_with('<') && id.ends_with("@example.org>"), "{id}");
        // RFC 2047 and a transfer encoding: the head and body are 7-bit on the wire.
        assert!(text.is_ascii(), "{text}");
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap();
        assert!(subject.contains("=?utf-8?"), "{subject}");
        assert!(!body.is_empty());
        assert_ne!(
            id,
            formatted(&mailer, &mail)
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap()
        );
    }

    #[test]
    fn a_subject_cannot_add_headers() {
        let mailer = SmtpMailer::new(&config("smtp://mail.example.org")).unwrap();
        let mail = mail("user@example.org", "Hi\r\nBcc: evil@example.org", "x");
        let text = formatted(&mailer, &mail);
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            !head.lines().any(|l| l.starts_with("Bcc:")),
            "header injected:\n{head}"
        );
    }

    #[test]
    fn a_bad_recipient_fails_without_connecting() {
        let mailer = SmtpMailer::new(&config("smtp://mail.example.org")).unwrap();
        let mail = mail("not an address", "s", "secret link");
        match mailer.message(&mail) {
            Err(MailError::Failed(text)) => assert!(!text.contains("secret"), "{text}"),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn redact_drops_body_lines_and_long_words() {
        let body =
            "Hello,\nopen https://nas.example.org/reset/abcdefghijklmnop within 15 minutes.\n";
        let reply = "550 rejected: contains https://nas.example.org/reset/abcdefghijklmnop";
        let out = redact(reply, body);
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
        assert!(out.starts_with("550 rejected"), "{out}");
        // Short words (and so ordinary reply text) stay.
        assert_eq!(redact("550 user unknown", "Hello user"), "550 user unknown");
    }

    #[test]
    fn the_name_is_smtp() {
        let mailer = SmtpMailer::new(&config("smtps://mail.example.org")).unwrap();
        assert_eq!(mailer.name(), "smtp");
    }
}
