//! The one rule for the URLs Visor fetches from: `https://` to any host, `http://` only to a
//! loopback host (127.0.0.0/8, [::1], localhost), so a token never crosses a network in the
//! clear. config.toml's `apiUrl` is checked with it, and the GitHub client checks every hop of
//! every request (redirects included) with it.
//!
//! It parses and decides; the wording of a refusal is the caller's (the `Display` of
//! [`Refusal`] is the client's).
//!
//! It also owns [`redact_credentials`], the one function that takes the user name and
//! password out of every URL in a text before it is shown: the log writes every line through
//! it, and so do the commands' output and `status.json`.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ureq::http::Uri;

/// The scheme, host and port of a URL: what decides where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It holds whitespace or control characters.
    Unprintable,
    /// It has no scheme, or no valid host and port.
    NotAbsolute,
    /// `http://` to a host that is not a loopback host.
    PlainHttp { host: String },
    /// A scheme other than http and https.
    Scheme { scheme: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unprintable => {
                f.write_str("the URL contains whitespace or control characters")
            }
            Refusal::NotAbsolute => f.write_str("not an absolute http(s) URL"),
            Refusal::PlainHttp { host } => {
                write!(f, "plain http:// to {host}, which is not a loopback host")
            }
            Refusal::Scheme { scheme } => write!(f, "the scheme {scheme} is not http(s)"),
        }
    }
}

/// What stands for the credentials of a URL in any text Visor shows.
pub const REDACTED: &str = "***";

/// `text` with the user information of every URL in it (`scheme://user:password@host`, or
/// `scheme://token@host`) replaced by [`REDACTED`]: `https://***@host/path`. The user name goes
/// too, because a token is often given as the user name alone.
///
/// The user information is everything between `://` and the last `@` before the end of the
/// authority, which ends at a `/`, whitespace, a quote or another character a URL cannot hold
/// raw; `?` and `#` do not end it here, so a password holding one (which the URL parser would
/// refuse) is hidden too. Text without `://` is returned as it is.
pub fn redact_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let ends_authority = |c: char| {
        c == '/'
            || c.is_whitespace()
            || c.is_control()
            || matches!(c, '"' | '<' | '>' | '\\' | '`' | '{' | '}' | '|' | '^')
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        out.push_str(before);
        let authority_end = after.find(ends_authority).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                rest = &after[at..];
                changed = true;
            }
            None => rest = after,
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Checks that a URL may be fetched: `https://` to any host, `http://` only to a loopback host
/// (127.0.0.0/8, ::1, localhost). Returns its origin, or why it is refused.
pub fn check_url(url: &str) -> Result<Origin, Refusal> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Refusal::Unprintable);
    }
    let Some(origin) = origin(url) else {
        return Err(Refusal::NotAbsolute);
    };
    match origin.scheme.as_str() {
        "https" => Ok(origin),
        "http" if is_loopback(&origin.host) => Ok(origin),
        "http" => Err(Refusal::PlainHttp { host: origin.host }),
        other => Err(Refusal::Scheme {
            scheme: other.to_owned(),
        }),
    }
}

/// The origin of a URL (host lowercased, without the brackets of an IPv6 literal; the
/// scheme's port when none is given), or None when it has no scheme or no valid host and port.
/// The URL is parsed as the HTTP client parses it, and its authority checked further.
pub fn origin(url: &str) -> Option<Origin> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?.as_str();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let (host, port) = split_authority(host_and_port)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase();
    // A port beyond 65535 is left for the connection to refuse.
    let port = match (port.and_then(|p| p.parse::<u16>().ok()), scheme.as_str()) {
        (Some(port), _) => port,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, _) => 0,
    };
    Some(Origin { scheme, host, port })
}

/// The host (an IPv6 literal keeps its brackets) and port digits of an authority without user
/// info, or None when it is malformed: an empty host, an IPv6 literal that does not parse, a
/// port that is empty or not digits.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        if rest.is_empty() {
            (host, None)
        } else {
            (host, Some(rest.strip_prefix(':')?))
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = match port {
        Some(port) => !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()),
        None => true,
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains(['[', ']', ':']),
    };
    (port_ok && host_ok).then_some((host, port))
}

/// Tells whether a host (without brackets) is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_over_http_only_to_loopback() {
        for good in [
            "https://api.github.com/repos",
            "https://objects.githubusercontent.com/x?y=1",
            "http://127.0.0.1:8080/x",
            "http://127.9.9.9/x",
            "http://[::1]:9/x",
            "http://LOCALHOST/x",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("http://example.com/x", "not a loopback host"),
            ("http://10.0.0.1/x", "not a loopback host"),
            ("http://[::2]/x", "not a loopback host"),
            ("http://localhost.example.com/x", "not a loopback host"),
            ("ftp://127.0.0.1/x", "not http(s)"),
            ("/relative", "not an absolute"),
            ("https://", "not an absolute"),
            ("https://host:port/x", "not an absolute"),
            ("https://host:/x", "not an absolute"),
            ("https://[zzz]/x", "not an absolute"),
            ("https://:80/x", "not an absolute"),
            ("https://host/a b", "whitespace"),
        ] {
            let error = check_url(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn credentials_in_urls_are_redacted_wherever_they_are_in_a_text() {
        for (text, shown) in [
            (
                "http://user:secret@127.0.0.1:8080/zeta.zip",
                "http://***@127.0.0.1:8080/zeta.zip",
            ),
            (
                "https://ghp_token@github.com/o/r",
                "https://***@github.com/o/r",
            ),
            ("https://u:p@[::1]:9", "https://***@[::1]:9"),
            (
                "release v2 from http://u:s%40cr3t@h/x: cannot reach http://u:s%40cr3t@h/x (x)",
                "release v2 from http://***@h/x: cannot reach http://***@h/x (x)",
            ),
            ("url=\"https://a:b@h\" next", "url=\"https://***@h\" next"),
            ("--from http://u:se#cr?et@h/x", "--from http://***@h/x"),
            ("http://a:b@h/p?mail=x@y", "http://***@h/p?mail=x@y"),
        ] {
            assert_eq!(redact_credentials(text), shown, "{text}");
        }
        for unchanged in [
            "https://api.github.com/repos/o/r",
            "no url at all, but a@b",
            "http://h/path/a@b",
            "://",
            "",
        ] {
            assert!(
                matches!(redact_credentials(unchanged), Cow::Borrowed(_)),
                "{unchanged}"
            );
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let api = origin("https://api.github.com");
        assert_eq!(origin("https://API.github.com:443/repos/x"), api);
        assert_eq!(origin("https://user@api.github.com/x"), api);
        assert_ne!(origin("https://github.com/x"), api);
        assert_ne!(origin("http://api.github.com/x"), api);
        assert_eq!(
            origin("http://[::1]:8080/x"),
            Some(Origin {
                scheme: "http".into(),
                host: "::1".into(),
                port: 8080
            })
        );
        assert_eq!(origin("not a url"), None);
    }
}
