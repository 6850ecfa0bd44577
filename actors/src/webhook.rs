//! `--organization-bootstrap-webhook` (http.md §6): after every successful
//! `organization_bootstrap`, and before the client gets its `ok`, the server
//! POSTs a JSON summary of the new organization to the configured URL.
//!
//! As in the reference (`backend/webhooks.py`): 30 s timeout, and a failing
//! webhook (network error, timeout, non-2xx reply) is only logged; the
//! bootstrap result is unaffected. The body is byte for byte what the
//! reference's `json.dumps` produces: sorted keys, `", "` and `": "`
//! separators, non-ASCII escaped as `\uXXXX`.
//!
//! Logs never show the URL's query string nor credentials (they often carry
//! a secret), nor the payload's personal data: only the organization, the
//! device and the webhook's host.

use std::time::Duration;

use parsec_protocol::types::{DeviceId, DeviceLabel, HumanHandle, OrganizationId};

/// Bound on one webhook call, connection included (reference: 30 s).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A configured bootstrap webhook.
#[derive(Clone)]
pub struct BootstrapWebhook {
    url: String,
    /// `scheme://host[:port]`, for logs.
    display: String,
}

/// Shows the host only: the path and query may hold a secret.
impl std::fmt::Debug for BootstrapWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BootstrapWebhook").field(&self.display).finish()
    }
}

impl BootstrapWebhook {
    /// Checks the URL once at start: an `http` or `https` URL with a host
    /// (the reference would fail every bootstrap on anything else).
    pub fn new(url: &str) -> Result<Self, String> {
        let uri: awc::http::Uri = url
            .parse()
            .map_err(|e| format!("invalid organization bootstrap webhook URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("the organization bootstrap webhook URL must start with http:// or https://".into());
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("the organization bootstrap webhook URL has no host")?;
        let display = match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(Self {
            url: url.to_string(),
            display,
        })
    }

    /// Sends the notification of a bootstrapped organization; never fails.
    pub async fn organization_bootstrapped(
        &self,
        org: &OrganizationId,
        device_id: &DeviceId,
        device_label: Option<&DeviceLabel>,
        human_handle: Option<&HumanHandle>,
    ) {
        let body = bootstrap_payload(org, device_id, device_label, human_handle);
        let started = std::time::Instant::now();
        match post(&self.url, body).await {
            Ok(status) if status.is_success() => log::info!(
                "org={org}: bootstrap webhook {} answered {} in {}ms",
                self.display,
                status.as_u16(),
                started.elapsed().as_millis()
            ),
            Ok(status) => log::warn!(
                "org={org} device={device_id}: bootstrap webhook {} bad return status {}",
                self.display,
                status.as_u16()
            ),
            Err(e) => log::warn!(
                "org={org} device={device_id}: bootstrap webhook {} failure: {e}",
                self.display
            ),
        }
    }
}

async fn post(url: &str, body: String) -> Result<awc::http::StatusCode, String> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().timeout(TIMEOUT))
        .timeout(TIMEOUT)
        .disable_redirects()
        .finish();
    let request = client
        .post(url)
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .send_body(body);
    let call = async {
        let mut response = request.await.map_err(|e| e.to_string())?;
        // Read (and drop) the body so that the exchange completes, as urllib does.
        let _ = response.body().limit(64 * 1024).await;
        Ok(response.status())
    };
    actix_web::rt::time::timeout(TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
}

/// The body of the bootstrap webhook (http.md §6), as the reference's
/// `json.dumps` writes it.
pub fn bootstrap_payload(
    org: &OrganizationId,
    device_id: &DeviceId,
    device_label: Option<&DeviceLabel>,
    human_handle: Option<&HumanHandle>,
) -> String {
    // Keys in sorted order, as the reference's serializer emits them.
    let fields: [(&str, Option<&str>); 5] = [
        ("device_id", Some(device_id.as_str())),
        ("device_label", device_label.map(|l| l.as_str())),
        ("human_email", human_handle.map(|h| h.email.as_str())),
        ("human_label", human_handle.map(|h| h.label.as_str())),
        ("organization_id", Some(org.as_str())),
    ];
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        python_json_string(&mut out, key);
        out.push_str(": ");
        match value {
            Some(v) => python_json_string(&mut out, v),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// A JSON string as Python's `json.dumps` (with `ensure_ascii`) writes it.
fn python_json_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_what_the_reference_writes() {
        let org = OrganizationId::parse("Org1").unwrap();
        let device = DeviceId::parse("alice@dev1").unwrap();
        let label = DeviceLabel::parse("My dév1").unwrap();
        let human = HumanHandle {
            email: "alice@example.com".into(),
            label: "Alïce \"q\" 😀".into(),
        };
        // Output of the reference's organization_bootstrap_webhook_serializer.
        assert_eq!(
            bootstrap_payload(&org, &device, Some(&label), Some(&human)),
            r#"{"device_id": "alice@dev1", "device_label": "My d\u00e9v1", "human_email": "alice@example.com", "human_label": "Al\u00efce \"q\" \ud83d\ude00", "organization_id": "Org1"}"#
        );
        assert_eq!(
            bootstrap_payload(&org, &device, None, None),
            r#"{"device_id": "alice@dev1", "device_label": null, "human_email": null, "human_label": null, "organization_id": "Org1"}"#
        );
        let mut s = String::new();
        python_json_string(&mut s, "a\\b\n\u{1}\u{7f}");
        assert_eq!(s, r#""a\\b\n\u0001\u007f""#);
    }

    #[test]
    fn urls_are_checked_and_logged_without_secrets() {
        let hook = BootstrapWebhook::new("https://user:pw@hooks.example.com:8443/x?token=SECRET").unwrap();
        assert_eq!(hook.display, "https://hooks.example.com:8443");
        assert!(!format!("{hook:?}").contains("SECRET"));
        assert!(!format!("{hook:?}").contains("pw"));
        assert!(BootstrapWebhook::new("http://127.0.0.1:1/hook").is_ok());
        assert!(BootstrapWebhook::new("hook").is_err());
        assert!(BootstrapWebhook::new("ftp://example.com/").is_err());
        assert!(BootstrapWebhook::new("").is_err());
    }
}
