//! Routing as the core's gorilla/mux router and gorilla/rpc server do it: the cleaned-path
//! redirect, the RPC path, the POST method and the JSON content type.

use crate::http_request::Head;

/// Where gorilla/mux sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `OPTIONS *`, answered by Go's server itself.
    GlobalOptions,
    /// A path that is not in canonical form: 301 to the cleaned one.
    Redirect(String),
    NotFound,
    /// The RPC path, with a method other than POST.
    NotPost,
    /// The RPC path with an unknown content type (the media type before any `;`).
    BadContentType(String),
    Rpc,
}

/// Go's `path.Clean` for a rooted path.
fn clean_rooted(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// gorilla/mux's `cleanPath`.
fn mux_clean_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let rooted = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut cleaned = clean_rooted(&rooted);
    if rooted.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// Go's escaping of a URL path (`url.PathEscape` rules, `/` kept).
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Routes a request as the core's gorilla/mux router and gorilla/rpc server do.
pub(crate) fn route(head: &Head, http_path: &str) -> Route {
    if head.url.star && head.method == "OPTIONS" {
        return Route::GlobalOptions;
    }
    let cleaned = mux_clean_path(&head.url.path);
    if cleaned != head.url.path {
        let mut location = format!("{}{}", head.url.prefix, escape_path(&cleaned));
        if let Some(query) = &head.url.query {
            location.push('?');
            location.push_str(query);
        }
        return Route::Redirect(location);
    }
    if head.url.path != http_path {
        return Route::NotFound;
    }
    if head.method != "POST" {
        return Route::NotPost;
    }
    let content_type = head.header("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return Route::BadContentType(media.to_string());
    }
    Route::Rpc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::request;

    #[test]
    fn routing() {
        let route_of = |raw: &str| route(&request(raw), "/rpc");
        assert_eq!(
            route_of("POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=utf-8\r\n\r\n"),
            Route::Rpc
        );
        assert_eq!(
            route_of("POST /rp%63 HTTP/1.1\r\nHost: x\r\nContent-Type: Application/JSON\r\n\r\n"),
            Route::Rpc
        );
        assert_eq!(
            route_of("POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json ; x\r\n\r\n"),
            Route::BadContentType("application/json ".into())
        );
        assert_eq!(
            route_of("POST /rpc HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::BadContentType(String::new())
        );
        assert_eq!(
            route_of(
                "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            ),
            Route::BadContentType("text/plain".into())
        );
        assert_eq!(
            route_of("GET /rpc HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::NotPost
        );
        assert_eq!(
            route_of("POST /other HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(
            route_of("POST /rpc/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(
            route_of("POST //rpc?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Redirect("/rpc?a=1".into())
        );
        assert_eq!(
            route_of("POST /x/../rpc HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Redirect("/rpc".into())
        );
        assert_eq!(
            route_of("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::GlobalOptions
        );
        assert_eq!(
            route_of("GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Redirect("/%2A".into())
        );
    }
}
