//! Invitation e-mails (http.md §7): building them, and sending them through
//! a [`Mailer`].
//!
//! Two mailers, chosen by `--email-host`:
//! - [`MockedMailer`] (`MOCKED`): each e-mail is written, as the complete
//!   MIME message, to a new file of a temporary folder created at start, and
//!   two lines on stderr say where (cli.md §1.1). Always `SUCCESS`.
//! - [`SmtpMailer`]: one SMTP session per e-mail, implicit TLS
//!   (`--email-use-ssl`) or STARTTLS (`--email-use-tls`), login when both a
//!   user and a password are set. A refused recipient is `BAD_RECIPIENT`,
//!   anything else that goes wrong (connection, TLS, login, sender refused,
//!   timeout) is `NOT_AVAILABLE`. The whole session is bounded by a timeout,
//!   so a dead SMTP server never holds `invite_new` for long.
//!
//! Neither ever fails the command: the invitation exists whatever happens to
//! its e-mail. Addresses and bodies are never logged (only the outcome).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Address, Message};
use parsec_protocol::types::*;
use rand::Rng;

/// `From:` of the MOCKED mailer when no `--email-sender` is given.
pub const DEFAULT_SENDER: &str = "no-reply@parsec.com";
/// Where the e-mails point to download the client.
const DOWNLOAD_URL: &str = "https://parsec.cloud/get-parsec";
const DOCUMENTATION_URL: &str = "https://docs.parsec.cloud";

// ------------------------------------------------------------------ settings

/// `--email-*`: who sends, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// `From:` (`--email-sender`): `addr@host` or `Name <addr@host>`.
    pub sender: String,
    pub transport: EmailTransport,
}

impl Default for EmailConfig {
    /// What `--dev` configures: MOCKED, `no-reply@parsec.com`.
    fn default() -> Self {
        Self {
            sender: DEFAULT_SENDER.into(),
            transport: EmailTransport::Mocked,
        }
    }
}

impl EmailConfig {
    /// Startup check: the sender must be an address (mail would otherwise
    /// fail one by one with `NOT_AVAILABLE`).
    pub fn validate(&self) -> Result<(), String> {
        self.sender
            .parse::<Mailbox>()
            .map(|_| ())
            .map_err(|e| format!("--email-sender {:?} is not an e-mail address: {e}", self.sender))
    }
}

/// `--email-host MOCKED`, or an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailTransport {
    Mocked,
    Smtp(SmtpConfig),
}

/// An SMTP server (`--email-host`, `--email-port`, …).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// Login happens only when both user and password are set.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `--email-use-ssl`: TLS from the first byte (SMTPS, usually port 465).
    pub use_ssl: bool,
    /// `--email-use-tls`: STARTTLS after connecting; ignored with `use_ssl`.
    pub use_tls: bool,
    /// Bound on one whole SMTP session (connect to QUIT).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Bound on one SMTP session unless configured otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

    /// Plain SMTP, no login, default timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            user: None,
            password: None,
            use_ssl: false,
            use_tls: false,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// The password never reaches a log.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("use_ssl", &self.use_ssl)
            .field("use_tls", &self.use_tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What invitation links need of `--backend-addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddr {
    /// `host[:port]`, the port omitted when it is the scheme's default.
    pub netloc: String,
    /// `?no_ssl=true`: links use `http://` instead of `https://`.
    pub no_ssl: bool,
}

impl Default for BackendAddr {
    /// What `--dev` configures: `parsec://localhost:6777` (so `https://`
    /// links, although the dev server speaks plain HTTP, as the reference).
    fn default() -> Self {
        Self {
            netloc: "localhost:6777".into(),
            no_ssl: false,
        }
    }
}

impl BackendAddr {
    /// `http(s)://<netloc>`, no trailing slash.
    pub fn http_url(&self) -> String {
        let scheme = if self.no_ssl { "http" } else { "https" };
        format!("{scheme}://{}", self.netloc)
    }

    /// The link of an invitation e-mail: the server's `/redirect` route,
    /// which turns it into the `parsec://` URL (without `no_ssl`, which the
    /// redirect adds back).
    pub fn invitation_url(&self, org: &OrganizationId, kind: InvitationType, token: Uuid) -> String {
        let action = match kind {
            InvitationType::User => "claim_user",
            InvitationType::Device => "claim_device",
        };
        format!(
            "{}/redirect/{}?action={action}&token={}",
            self.http_url(),
            quote_plus(org.as_str()),
            token.simple()
        )
    }
}

/// Python's `quote_plus` with nothing safe: organization ids are `[\w-]`, so
/// only non-ASCII letters get percent-encoded (as UTF-8).
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ------------------------------------------------------------------ building

/// What an invitation e-mail says.
#[derive(Debug, Clone)]
pub struct InvitationEmail {
    /// Recipient: the claimer (USER) or the greeter itself (DEVICE).
    pub to: String,
    /// USER: the greeter's label, else its user id. `None`: DEVICE.
    pub greeter_name: Option<String>,
    /// USER: the greeter, when it has a human handle.
    pub reply_to: Option<HumanHandle>,
    pub org: OrganizationId,
    /// See [`BackendAddr::invitation_url`].
    pub invitation_url: String,
    /// See [`BackendAddr::http_url`] (for the logo).
    pub backend_url: String,
}

/// Why an e-mail could not go out.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The recipient is not an address, or the SMTP server refused it.
    #[error("recipient refused")]
    BadRecipient,
    #[error("e-mail not available: {0}")]
    NotAvailable(String),
}

impl SendError {
    /// The `email_sent` status of `invite_new`.
    pub fn status(&self) -> InvitationEmailSentStatus {
        match self {
            SendError::BadRecipient => InvitationEmailSentStatus::BadRecipient,
            SendError::NotAvailable(_) => InvitationEmailSentStatus::NotAvailable,
        }
    }
}

impl InvitationEmail {
    /// `[Parsec] Alice invited you to CoolOrg` / `[Parsec] New device invitation to CoolOrg`.
    pub fn subject(&self) -> String {
        match &self.greeter_name {
            Some(greeter) => format!("[Parsec] {greeter} invited you to {}", self.org),
            None => format!("[Parsec] New device invitation to {}", self.org),
        }
    }

    /// The `text/plain` part.
    pub fn text(&self) -> String {
        let (org, url) = (&self.org, &self.invitation_url);
        match &self.greeter_name {
            Some(greeter) => format!(
                "{greeter} invites you to join the {org} organization on Parsec.\n\
                 \n\
                 1. Install the Parsec client if you do not have it yet: {DOWNLOAD_URL}\n\
                 2. Open this link to start joining {org}:\n\
                 \n\
                 {url}\n\
                 \n\
                 3. Contact {greeter}: you will check each other's identity together,\n\
                 \x20  following the steps shown by the Parsec client.\n\
                 \n\
                 Parsec documentation: {DOCUMENTATION_URL}\n"
            ),
            None => format!(
                "A new device is about to join the {org} organization on Parsec for you.\n\
                 \n\
                 1. On the new device, install the Parsec client if needed: {DOWNLOAD_URL}\n\
                 2. Open this link on that device:\n\
                 \n\
                 {url}\n\
                 \n\
                 3. On a device already part of {org}, start greeting the new device,\n\
                 \x20  then follow the steps shown by the Parsec client on both devices.\n\
                 \n\
                 Parsec documentation: {DOCUMENTATION_URL}\n"
            ),
        }
    }

    /// The `text/html` part.
    pub fn html(&self) -> String {
        let org = html_escape(self.org.as_str());
        let url = html_escape(&self.invitation_url);
        let logo = html_escape(&format!("{}/static/parsec-vert.png", self.backend_url));
        let (title, contact) = match &self.greeter_name {
            Some(greeter) => {
                let greeter = html_escape(greeter);
                (
                    format!(
                        "<strong>{greeter}</strong> invites you to join the <strong>{org}</strong> organization on Parsec."
                    ),
                    format!(
                        "Then contact {greeter}: you will check each other's identity together, following the steps shown by the Parsec client."
                    ),
                )
            }
            None => (
                format!("A new device is about to join the <strong>{org}</strong> organization on Parsec for you."),
                format!(
                    "Then, on a device already part of {org}, start greeting the new device and follow the steps shown by the Parsec client on both devices."
                ),
            ),
        };
        format!(
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Parsec</title></head>\n\
             <body style=\"font-family: sans-serif; max-width: 40em; margin: auto;\">\n\
             <p><img src=\"{logo}\" alt=\"Parsec\" height=\"60\"></p>\n\
             <p>{title}</p>\n\
             <p>Install the Parsec client if you do not have it yet: <a href=\"{DOWNLOAD_URL}\">{DOWNLOAD_URL}</a></p>\n\
             <p><a href=\"{url}\" style=\"display: inline-block; padding: 0.6em 1.2em; background: #0070dd; color: #ffffff; text-decoration: none; border-radius: 4px;\">Join {org}</a></p>\n\
             <p>If the button does not work, open this link: <a href=\"{url}\">{url}</a></p>\n\
             <p>{contact}</p>\n\
             <p style=\"color: #777777;\">Parsec documentation: <a href=\"{DOCUMENTATION_URL}\">{DOCUMENTATION_URL}</a></p>\n\
             </body>\n</html>\n"
        )
    }

    /// The complete message: `multipart/alternative`, text then HTML.
    pub fn build(&self, sender: &str) -> Result<Message, SendError> {
        let from: Mailbox = sender
            .parse()
            .map_err(|e| SendError::NotAvailable(format!("sender is not an address: {e}")))?;
        let to: Address = self.to.trim().parse().map_err(|_| SendError::BadRecipient)?;
        let mut builder = Message::builder()
            .from(from)
            .to(Mailbox::new(None, to))
            .subject(self.subject())
            .message_id(None);
        // A greeter's address that is not one is left out, not fatal.
        if let Some(h) = &self.reply_to
            && let Ok(address) = h.email.parse::<Address>()
        {
            builder = builder.reply_to(Mailbox::new(Some(h.label.clone()), address));
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(self.text()))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(self.html()));
        builder
            .multipart(body)
            .map_err(|e| SendError::NotAvailable(format!("cannot build the message: {e}")))
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ------------------------------------------------------------------- sending

/// Sends one e-mail. Never blocks the caller's thread.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, message: Message) -> Result<(), SendError>;
}

/// The mailer of a configuration (creates the MOCKED folder now).
pub fn mailer(config: &EmailTransport) -> std::sync::Arc<dyn Mailer> {
    match config {
        EmailTransport::Mocked => std::sync::Arc::new(MockedMailer::new()),
        EmailTransport::Smtp(smtp) => std::sync::Arc::new(SmtpMailer::new(smtp.clone())),
    }
}

/// Builds and sends an invitation e-mail; the `email_sent` of `invite_new`.
pub async fn send_invitation(mailer: &dyn Mailer, sender: &str, email: &InvitationEmail) -> InvitationEmailSentStatus {
    let sent = match email.build(sender) {
        Ok(message) => mailer.send(message).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => InvitationEmailSentStatus::Success,
        Err(e) => {
            log::warn!("org={}: invitation e-mail not sent: {e}", email.org);
            e.status()
        }
    }
}

/// Random `[a-z0-9_]{8}`, as Python's `tempfile` names.
fn random_name(prefix: &str, suffix: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let mut rng = rand::thread_rng();
    let tail: String = (0..8).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect();
    format!("{prefix}{tail}{suffix}")
}

/// `--email-host MOCKED`: see the module documentation.
#[derive(Debug)]
pub struct MockedMailer {
    /// `None` until created (creation is retried at the next e-mail if the
    /// system temp folder refused it at start).
    folder: Mutex<Option<PathBuf>>,
}

impl Default for MockedMailer {
    fn default() -> Self {
        Self::new()
    }
}

impl MockedMailer {
    /// Creates the `tmp-email-folder-XXXXXXXX` folder in the system temp folder.
    pub fn new() -> Self {
        let folder = match Self::create_folder() {
            Ok(path) => Some(path),
            Err(e) => {
                log::error!("cannot create the mocked e-mail folder: {e}");
                None
            }
        };
        Self {
            folder: Mutex::new(folder),
        }
    }

    fn create_folder() -> std::io::Result<PathBuf> {
        let base = std::env::temp_dir();
        loop {
            let path = base.join(random_name("tmp-email-folder-", ""));
            match std::fs::create_dir(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                other => return other.map(|()| path),
            }
        }
    }

    /// Where the e-mails go (`None` if it could not be created).
    pub fn folder(&self) -> Option<PathBuf> {
        self.folder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(folder: &Path, message: &[u8]) -> std::io::Result<PathBuf> {
        loop {
            let path = folder.join(random_name("tmp-email-", ".html"));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
                Ok(mut file) => {
                    std::io::Write::write_all(&mut file, message)?;
                    return Ok(path);
                }
            }
        }
    }
}

/// An unused folder goes away with the server (tests start many); one
/// holding e-mails stays for whoever wants to read them, as the reference's.
impl Drop for MockedMailer {
    fn drop(&mut self) {
        if let Some(folder) = self.folder() {
            let _ = std::fs::remove_dir(folder); // refused unless empty
        }
    }
}

#[async_trait]
impl Mailer for MockedMailer {
    async fn send(&self, message: Message) -> Result<(), SendError> {
        let folder = match self.folder() {
            Some(folder) => folder,
            None => {
                let created = tokio::task::spawn_blocking(Self::create_folder)
                    .await
                    .map_err(|e| SendError::NotAvailable(e.to_string()))?
                    .map_err(|e| SendError::NotAvailable(format!("cannot create the mocked e-mail folder: {e}")))?;
                self.folder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(created)
                    .clone()
            }
        };
        let to = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let formatted = message.formatted();
        let path = tokio::task::spawn_blocking(move || Self::write(&folder, &formatted))
            .await
            .map_err(|e| SendError::NotAvailable(e.to_string()))?
            .map_err(|e| SendError::NotAvailable(format!("cannot write the mocked e-mail: {e}")))?;
        // The documented output of the MOCKED mode (cli.md §1.1), for whoever
        // runs a dev server and wants to follow the link.
        eprintln!(
            "A request to send an e-mail to {to} has been triggered and mocked.\nThe mail file can be found here: {}",
            path.display()
        );
        Ok(())
    }
}

/// An SMTP server: see the module documentation.
#[derive(Debug)]
pub struct SmtpMailer {
    config: SmtpConfig,
}

impl SmtpMailer {
    pub fn new(config: SmtpConfig) -> Self {
        Self { config }
    }

    /// One SMTP session, step by step, so that a refusal of the recipient
    /// (`RCPT TO`) can be told apart from every other failure.
    async fn session(c: &SmtpConfig, message: &Message) -> Result<(), SendError> {
        let unavailable =
            |step: &str, e: lettre::transport::smtp::Error| SendError::NotAvailable(format!("{step}: {e}"));
        let tls = || TlsParameters::new(c.host.clone()).map_err(|e| unavailable("TLS setup", e));
        let hello = ClientId::default();
        let implicit_tls = if c.use_ssl { Some(tls()?) } else { None };
        let mut conn =
            AsyncSmtpConnection::connect_tokio1((c.host.as_str(), c.port), Some(c.timeout), &hello, implicit_tls, None)
                .await
                .map_err(|e| unavailable("connect", e))?;
        if c.use_tls && !c.use_ssl {
            // Not inside `outcome`: when the TLS handshake fails, lettre
            // leaves the connection without a stream, and a QUIT on it
            // panics in debug builds. Dropping it just closes the socket.
            conn.starttls(tls()?, &hello)
                .await
                .map_err(|e| unavailable("STARTTLS", e))?;
        }
        let outcome = async {
            if let (Some(user), Some(password)) = (&c.user, &c.password) {
                let credentials = Credentials::new(user.clone(), password.clone());
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                    .await
                    .map_err(|e| unavailable("login", e))?;
            }
            let envelope = message.envelope();
            let formatted = message.formatted();
            let mut params = Vec::new();
            let non_ascii_address = envelope
                .from()
                .into_iter()
                .chain(envelope.to())
                .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
            if non_ascii_address && conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                params.push(MailParameter::SmtpUtfEight);
            }
            if !formatted.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
                params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            conn.command(Mail::new(envelope.from().cloned(), params))
                .await
                .map_err(|e| unavailable("MAIL FROM", e))?;
            for to in envelope.to() {
                conn.command(Rcpt::new(to.clone(), vec![]))
                    .await
                    .map_err(|_| SendError::BadRecipient)?;
            }
            conn.command(Data).await.map_err(|e| unavailable("DATA", e))?;
            conn.message(&formatted).await.map_err(|e| unavailable("message", e))?;
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                // Delivered: a failing QUIT changes nothing.
                let _ = conn.quit().await;
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: Message) -> Result<(), SendError> {
        let config = self.config.clone();
        // A task of its own: a panic in the SMTP client (lettre has debug
        // assertions on broken connections) ends this e-mail, not the
        // arbiter running the invite actor.
        let session = tokio::spawn(async move {
            let timeout = config.timeout;
            match tokio::time::timeout(timeout, Self::session(&config, &message)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(SendError::NotAvailable(format!("no answer within {timeout:?}"))),
            }
        });
        session
            .await
            .unwrap_or_else(|e| Err(SendError::NotAvailable(format!("SMTP session failed: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> OrganizationId {
        OrganizationId::parse("CoolOrg").unwrap()
    }

    fn user_email() -> InvitationEmail {
        let addr = BackendAddr {
            netloc: "parsec.example.com".into(),
            no_ssl: false,
        };
        let token = Uuid::parse_str("3a50b191-122b-480e-bb11-3b10216ef343").unwrap();
        InvitationEmail {
            to: "bob@example.com".into(),
            greeter_name: Some("Alice & Co".into()),
            reply_to: Some(HumanHandle::new("alice@example.com", "Alice").unwrap()),
            org: org(),
            invitation_url: addr.invitation_url(&org(), InvitationType::User, token),
            backend_url: addr.http_url(),
        }
    }

    /// The message as sent, with quoted-printable soft breaks undone.
    fn decoded(message: &Message) -> String {
        String::from_utf8(message.formatted())
            .unwrap()
            .replace("=\r\n", "")
            .replace("=3D", "=")
            .replace("=26", "&")
    }

    #[test]
    fn invitation_urls() {
        let token = Uuid::parse_str("3a50b191-122b-480e-bb11-3b10216ef343").unwrap();
        let tls = BackendAddr {
            netloc: "parsec.example.com".into(),
            no_ssl: false,
        };
        assert_eq!(tls.http_url(), "https://parsec.example.com");
        assert_eq!(
            tls.invitation_url(&org(), InvitationType::User, token),
            "https://parsec.example.com/redirect/CoolOrg?action=claim_user&token=3a50b191122b480ebb113b10216ef343"
        );
        let plain = BackendAddr {
            netloc: "127.0.0.1:6777".into(),
            no_ssl: true,
        };
        assert_eq!(
            plain.invitation_url(&OrganizationId::parse("Café-1").unwrap(), InvitationType::Device, token),
            "http://127.0.0.1:6777/redirect/Caf%C3%A9-1?action=claim_device&token=3a50b191122b480ebb113b10216ef343"
        );
    }

    #[test]
    fn user_invitation_message() {
        let mail = user_email();
        assert_eq!(mail.subject(), "[Parsec] Alice & Co invited you to CoolOrg");
        let message = mail.build("Parsec <no-reply@parsec.com>").unwrap();
        assert_eq!(message.envelope().to(), ["bob@example.com".parse::<Address>().unwrap()]);
        assert_eq!(
            message.envelope().from().map(ToString::to_string).as_deref(),
            Some("no-reply@parsec.com")
        );
        let raw = decoded(&message);
        assert!(raw.contains("From: Parsec <no-reply@parsec.com>\r\n"), "{raw}");
        assert!(raw.contains("To: bob@example.com\r\n"), "{raw}");
        assert!(raw.contains("Reply-To: Alice <alice@example.com>\r\n"), "{raw}");
        assert!(
            raw.contains("Subject: [Parsec] Alice & Co invited you to CoolOrg\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Content-Type: multipart/alternative;"), "{raw}");
        let text_at = raw.find("Content-Type: text/plain").unwrap();
        let html_at = raw.find("Content-Type: text/html").unwrap();
        assert!(text_at < html_at, "text part first");
        let url =
            "https://parsec.example.com/redirect/CoolOrg?action=claim_user&token=3a50b191122b480ebb113b10216ef343";
        assert!(raw[text_at..html_at].contains(url), "{raw}");
        assert!(raw[text_at..html_at].contains(DOWNLOAD_URL));
        let html = &raw[html_at..];
        assert!(html.contains(&url.replace('&', "&amp;")), "{raw}");
        assert!(
            html.contains("https://parsec.example.com/static/parsec-vert.png"),
            "{raw}"
        );
        assert!(html.contains("Alice &amp; Co"), "{raw}");
    }

    #[test]
    fn device_invitation_message() {
        let addr = BackendAddr {
            netloc: "localhost:6777".into(),
            no_ssl: false,
        };
        let mail = InvitationEmail {
            to: "alice@example.com".into(),
            greeter_name: None,
            reply_to: None,
            org: org(),
            invitation_url: addr.invitation_url(&org(), InvitationType::Device, Uuid::nil()),
            backend_url: addr.http_url(),
        };
        assert_eq!(mail.subject(), "[Parsec] New device invitation to CoolOrg");
        let raw = decoded(&mail.build(DEFAULT_SENDER).unwrap());
        assert!(!raw.contains("Reply-To:"), "{raw}");
        assert!(
            raw.contains("action=claim_device&token=00000000000000000000000000000000"),
            "{raw}"
        );
        assert!(raw.contains("new device"), "{raw}");
    }

    #[test]
    fn non_ascii_headers_are_encoded() {
        let mut mail = user_email();
        mail.greeter_name = Some("Zoé".into());
        mail.reply_to = Some(HumanHandle::new("zoe@example.com", "Zoé").unwrap());
        let message = mail.build(DEFAULT_SENDER).unwrap();
        assert!(message.formatted().is_ascii());
    }

    #[test]
    fn unusable_addresses() {
        let mut mail = user_email();
        mail.to = "not an address".into();
        assert!(matches!(mail.build(DEFAULT_SENDER), Err(SendError::BadRecipient)));
        let mail = user_email();
        assert!(matches!(mail.build("nobody"), Err(SendError::NotAvailable(_))));
        assert!(EmailConfig::default().validate().is_ok());
        assert!(
            EmailConfig {
                sender: "nope".into(),
                transport: EmailTransport::Mocked
            }
            .validate()
            .is_err()
        );
        let smtp = SmtpConfig {
            password: Some("hunter2".into()),
            ..SmtpConfig::new("smtp.example.com", 25)
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
    }

    #[test]
    fn unused_mocked_folder_goes_away() {
        let mailer = MockedMailer::new();
        let folder = mailer.folder().unwrap();
        assert!(folder.is_dir());
        drop(mailer);
        assert!(!folder.exists());
    }

    #[actix_web::test]
    async fn mocked_mailer_writes_the_whole_message() {
        let mailer = MockedMailer::new();
        let folder = mailer.folder().unwrap();
        let name = folder.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("tmp-email-folder-") && name.len() == "tmp-email-folder-".len() + 8,
            "{name}"
        );
        let message = user_email().build(DEFAULT_SENDER).unwrap();
        let expected = message.formatted();
        assert_eq!(
            send_invitation(&mailer, DEFAULT_SENDER, &user_email()).await,
            InvitationEmailSentStatus::Success
        );
        let files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let file = files[0].file_name().unwrap().to_str().unwrap();
        assert!(
            file.starts_with("tmp-email-") && file.ends_with(".html") && file.len() == 23,
            "{file}"
        );
        let written = std::fs::read(&files[0]).unwrap();
        // Same message but for its Date and Message-ID headers.
        let strip = |raw: &[u8]| -> String {
            String::from_utf8_lossy(raw)
                .lines()
                .filter(|l| !l.starts_with("Date:") && !l.starts_with("Message-ID:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (a, b) = (strip(&written), strip(&expected));
        // Multipart boundaries are random too: compare the shape only.
        assert_eq!(a.lines().count(), b.lines().count());
        assert!(a.contains("Subject: [Parsec] Alice & Co invited you to CoolOrg"));
        std::fs::remove_dir_all(folder).unwrap();
    }
}
