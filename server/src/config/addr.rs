//! `BackendAddr`: the public `parsec://host[:port][?no_ssl=true]` address of this server
//! (`--backend-addr`). It is used to build invitation links, the `/redirect` target and the
//! https enforcement redirect.
//!
//! Parsing follows the reference `BackendAddr.from_url` (Python `urlsplit` + `parse_qs` with
//! `strict_parsing=True`): scheme `parsec` (case-insensitive), a mandatory host (lowercased,
//! user info dropped), an optional numeric port, no path other than `/`, a fragment ignored,
//! unknown query parameters ignored, and `no_ssl` given at most once as `true`/`false`
//! (case-insensitive). A port equal to the scheme default (443, or 80 with `no_ssl=true`) is
//! dropped, as the reference does.
//!
//! One deliberate difference: an IPv6 host keeps its brackets in `netloc()` (`[::1]:6777`);
//! the reference drops them and produces unusable URLs.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

const PARSEC_SCHEME: &str = "parsec";

/// Where clients reach this server. Build it with [`BackendAddr::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendAddr {
    /// Lowercased host name or IP address (IPv6 without brackets).
    pub hostname: String,
    /// Explicit port; `None` when absent or equal to the default port (443, or 80 without SSL).
    pub port: Option<u16>,
    /// `false` when the URL carries `?no_ssl=true`.
    pub use_ssl: bool,
}

impl BackendAddr {
    /// Parses `parsec://host[:port][?no_ssl=true|false]`; the error is a short reason.
    pub fn parse(url: &str) -> Result<Self, String> {
        let split = UrlSplit::new(url)?;
        let no_ssl = parse_no_ssl(split.query)?;
        if split.scheme != PARSEC_SCHEME {
            return Err(format!("Must start with `{PARSEC_SCHEME}://`"));
        }
        let (hostname, raw_port) = split_host_port(split.netloc);
        if hostname.is_empty() {
            return Err("Missing mandatory hostname".to_string());
        }
        if !matches!(split.path, "" | "/") {
            return Err("Cannot have path".to_string());
        }
        let port = parse_port(raw_port)?;
        let use_ssl = !no_ssl;
        let default_port = if use_ssl { 443 } else { 80 };
        Ok(Self {
            hostname: lowercase_host(hostname),
            port: port.filter(|p| *p != default_port),
            use_ssl,
        })
    }

    /// 443 with SSL, 80 without.
    pub fn default_port(&self) -> u16 {
        if self.use_ssl { 443 } else { 80 }
    }

    /// The port clients connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or_else(|| self.default_port())
    }

    /// `host[:port]`, the port omitted when it is the default one.
    pub fn netloc(&self) -> String {
        let host = if self.hostname.contains(':') {
            format!("[{}]", self.hostname)
        } else {
            self.hostname.clone()
        };
        match self.port {
            Some(port) if port != self.default_port() => format!("{host}:{port}"),
            _ => host,
        }
    }

    /// `https://netloc`, or `http://netloc` with `no_ssl=true`.
    pub fn http_url(&self) -> String {
        let scheme = if self.use_ssl { "https" } else { "http" };
        format!("{scheme}://{}", self.netloc())
    }

    /// `parsec://netloc`, plus `?no_ssl=true` without SSL (the reference `to_url`).
    pub fn to_url(&self) -> String {
        let mut url = format!("{PARSEC_SCHEME}://{}", self.netloc());
        let params = self.redirect_query_params();
        for (i, (key, value)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(value);
        }
        url
    }

    /// The query parameters this address contributes to a `parsec://` URL (`no_ssl=true`
    /// without SSL, nothing otherwise).
    pub fn redirect_query_params(&self) -> Vec<(String, String)> {
        if self.use_ssl {
            Vec::new()
        } else {
            vec![("no_ssl".to_string(), "true".to_string())]
        }
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_url())
    }
}

impl FromStr for BackendAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The pieces of Python's `urlsplit` we need (scheme lowercased, the rest raw).
struct UrlSplit<'a> {
    scheme: String,
    netloc: &'a str,
    path: &'a str,
    query: &'a str,
}

impl<'a> UrlSplit<'a> {
    fn new(url: &'a str) -> Result<Self, String> {
        // `from_url` strips whitespace; `urlsplit` then strips leading C0 controls.
        let url = url.trim().trim_start_matches(|c: char| c.is_ascii_control());
        if url.contains(['\t', '\r', '\n']) {
            // `urlsplit` would silently delete them; a pasted value with them is a mistake.
            return Err("Must not contain tabs or newlines".to_string());
        }
        let (scheme, rest) = match url.find(':') {
            Some(i) if i > 0 && is_scheme(&url[..i]) => (url[..i].to_ascii_lowercase(), &url[i + 1..]),
            _ => (String::new(), url),
        };
        let (netloc, rest) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find(['/', '?', '#']).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
            None => ("", rest),
        };
        check_brackets(netloc)?;
        let rest = rest.split_once('#').map_or(rest, |(before, _fragment)| before);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        Ok(Self {
            scheme,
            netloc,
            path,
            query,
        })
    }
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `urlsplit` rejects unbalanced brackets and a bracketed host that is not an IPv6 address.
fn check_brackets(netloc: &str) -> Result<(), String> {
    if netloc.contains('[') != netloc.contains(']') {
        return Err("Invalid IPv6 URL".to_string());
    }
    if let Some((_, after)) = netloc.split_once('[') {
        let inside = after.split_once(']').map_or(after, |(inside, _)| inside);
        let address = inside.split_once('%').map_or(inside, |(address, _zone)| address);
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{inside}' does not appear to be an IPv6 address"));
        }
    }
    Ok(())
}

/// `(host, port text)` out of `[user[:password]@]host[:port]`, as Python's
/// `SplitResult.hostname` / `.port` see them.
fn split_host_port(netloc: &str) -> (&str, &str) {
    let hostinfo = netloc.rsplit_once('@').map_or(netloc, |(_userinfo, host)| host);
    match hostinfo.split_once('[') {
        Some((_, bracketed)) => {
            let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
            let port = after.split_once(':').map_or("", |(_, port)| port);
            (host, port)
        }
        None => hostinfo.split_once(':').unwrap_or((hostinfo, "")),
    }
}

/// Python lowercases the host but not an IPv6 zone (`fe80::1%ETH0`).
fn lowercase_host(host: &str) -> String {
    match host.split_once('%') {
        Some((address, zone)) => format!("{}%{zone}", address.to_lowercase()),
        None => host.to_lowercase(),
    }
}

fn parse_port(raw: &str) -> Result<Option<u16>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Port could not be cast to integer value as '{raw}'"));
    }
    raw.parse::<u16>()
        .map(Some)
        .map_err(|_| "Port out of range 0-65535".to_string())
}

/// `no_ssl` out of a query string parsed like `parse_qs(keep_blank_values=True,
/// strict_parsing=True)`; other parameters are ignored, as in the reference.
fn parse_no_ssl(query: &str) -> Result<bool, String> {
    if query.is_empty() {
        return Ok(false);
    }
    let mut values = Vec::new();
    for field in query.split('&') {
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("bad query field: '{field}'"));
        };
        // Every field is decoded (and may fail), as `parse_qs` does.
        let (name, value) = (unquote_plus(name)?, unquote_plus(value)?);
        if name == "no_ssl" {
            values.push(value);
        }
    }
    match values.as_slice() {
        [] => Ok(false),
        [value] => match value.to_lowercase().as_str() {
            "false" => Ok(false),
            "true" => Ok(true),
            _ => Err("Invalid `no_ssl` param value (must be true or false)".to_string()),
        },
        _ => Err("Multiple values for param `no_ssl`".to_string()),
    }
}

/// Python's `unquote_plus` with strict UTF-8: `+` is a space, `%XX` a byte, a malformed
/// `%` sequence is kept as is.
fn unquote_plus(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex_pair(bytes[i + 1], bytes[i + 2]).is_some() => {
                out.extend(hex_pair(bytes[i + 1], bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "Invalid UTF-8 in percent-encoded query".to_string())
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    u8::try_from(digit(high)? * 16 + digit(low)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(url: &str) -> BackendAddr {
        BackendAddr::parse(url).expect("valid backend addr")
    }

    #[test]
    fn parses_host_port_and_no_ssl() {
        let a = addr("parsec://example.com:1234?no_ssl=true");
        assert_eq!(
            a,
            BackendAddr {
                hostname: "example.com".into(),
                port: Some(1234),
                use_ssl: false
            }
        );
        assert_eq!(a.netloc(), "example.com:1234");
        assert_eq!(a.http_url(), "http://example.com:1234");
        assert_eq!(a.to_url(), "parsec://example.com:1234?no_ssl=true");
        assert_eq!(
            a.redirect_query_params(),
            vec![("no_ssl".to_string(), "true".to_string())]
        );
        assert_eq!(a.port_or_default(), 1234);
    }

    #[test]
    fn ssl_by_default_and_default_ports_dropped() {
        let a = addr("parsec://parsec.example.com");
        assert!(a.use_ssl);
        assert_eq!(a.port, None);
        assert_eq!(a.port_or_default(), 443);
        assert_eq!(a.http_url(), "https://parsec.example.com");
        assert_eq!(a.to_url(), "parsec://parsec.example.com");
        assert!(a.redirect_query_params().is_empty());

        assert_eq!(addr("parsec://h:443").port, None);
        assert_eq!(addr("parsec://h:443").netloc(), "h");
        assert_eq!(addr("parsec://h:80").netloc(), "h:80");
        assert_eq!(addr("parsec://h:80?no_ssl=true").netloc(), "h");
        assert_eq!(addr("parsec://h:80?no_ssl=true").port_or_default(), 80);
        assert_eq!(addr("parsec://h:443?no_ssl=true").netloc(), "h:443");
        assert_eq!(addr("parsec://h:0").netloc(), "h:0");
    }

    #[test]
    fn reference_normalisations() {
        // Scheme and host are case-insensitive, `no_ssl` value too; verified against 2.10.
        assert_eq!(addr("PARSEC://A:80?no_ssl=TRUE").to_url(), "parsec://a?no_ssl=true");
        assert_eq!(addr("parsec://h?no_ssl=false").to_url(), "parsec://h");
        // Surrounding whitespace, trailing `/`, fragment, user info, unknown params: ignored.
        assert_eq!(addr("  parsec://h/ ").to_url(), "parsec://h");
        assert_eq!(addr("parsec://h:1#frag").to_url(), "parsec://h:1");
        assert_eq!(addr("parsec://u:p@h:1").to_url(), "parsec://h:1");
        assert_eq!(addr("parsec://a?foo=bar").to_url(), "parsec://a");
        assert_eq!(
            addr("parsec://a?foo=&no%5Fssl=tr%75e").to_url(),
            "parsec://a?no_ssl=true"
        );
        // Empty port is no port.
        assert_eq!(addr("parsec://a:").port, None);
    }

    #[test]
    fn ipv6_keeps_brackets_in_netloc() {
        let a = addr("parsec://[::1]:6777?no_ssl=true");
        assert_eq!(a.hostname, "::1");
        assert_eq!(a.netloc(), "[::1]:6777");
        assert_eq!(a.http_url(), "http://[::1]:6777");
        assert_eq!(addr("parsec://[FE80::1]").to_url(), "parsec://[fe80::1]");
    }

    #[test]
    fn rejects_what_the_reference_rejects() {
        for (url, reason) in [
            ("http://a", "Must start with `parsec://`"),
            ("a:1", "Must start with `parsec://`"),
            ("parsec://a/b", "Cannot have path"),
            (
                "parsec://a?no_ssl=maybe",
                "Invalid `no_ssl` param value (must be true or false)",
            ),
            (
                "parsec://a?no_ssl=",
                "Invalid `no_ssl` param value (must be true or false)",
            ),
            ("parsec://a?no_ssl", "bad query field: 'no_ssl'"),
            ("parsec://a?no_ssl=true&", "bad query field: ''"),
            (
                "parsec://h?no_ssl=true&no_ssl=false",
                "Multiple values for param `no_ssl`",
            ),
            ("parsec://a:99999", "Port out of range 0-65535"),
            ("parsec://a:abc", "Port could not be cast to integer value as 'abc'"),
            ("parsec://a:+1", "Port could not be cast to integer value as '+1'"),
            ("parsec://a:1:2", "Port could not be cast to integer value as '1:2'"),
            ("parsec://", "Missing mandatory hostname"),
            ("parsec:a", "Missing mandatory hostname"),
            ("parsec:///x", "Missing mandatory hostname"),
            ("parsec://u@:1", "Missing mandatory hostname"),
            ("parsec://[::1", "Invalid IPv6 URL"),
            ("parsec://[zz]:1", "'zz' does not appear to be an IPv6 address"),
            ("parsec://a?x=%FF", "Invalid UTF-8 in percent-encoded query"),
            ("parsec://a\tb", "Must not contain tabs or newlines"),
        ] {
            let err = BackendAddr::parse(url).expect_err(url);
            assert_eq!(err, reason, "{url}");
        }
        // Trailing `/` then a query is fine.
        assert!(!addr("parsec://a/?no_ssl=true").use_ssl);
    }

    #[test]
    fn display_and_from_str() {
        let a: BackendAddr = "parsec://localhost:6777".parse().expect("valid");
        assert_eq!(a.to_string(), "parsec://localhost:6777");
    }
}
