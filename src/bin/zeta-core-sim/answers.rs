//! Answers as Go's `net/http` server writes them: reason phrases, the headers it adds, the
//! framing (length, chunked, keep-alive or close) and the `Date` header.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http_request::{has_token, Head};

/// The reason phrase Go uses for a status code.
pub(crate) fn status_text(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// An answer as a handler produces it; the framing headers are added when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Headers the handler set, already in Go's order (sorted by canonical name).
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` (HTTP/1.1 only).
    pub(crate) chunked: bool,
}

/// The media type and charset of Go's plain-text answers.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

impl Answer {
    /// gorilla/rpc's `WriteError`: plain text, no trailing newline.
    pub(crate) fn rpc_error(status: u16, message: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type", TEXT_PLAIN.to_string())],
            body: message.as_bytes().to_vec(),
            chunked: false,
        }
    }

    /// `http.NotFound`, which gorilla/mux uses for unknown paths.
    pub(crate) fn not_found() -> Answer {
        Answer {
            status: 404,
            headers: vec![
                ("Content-Type", TEXT_PLAIN.to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
            body: b"404 page not found\n".to_vec(),
            chunked: false,
        }
    }
}

/// How an answer is framed on the connection, from the request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Framing {
    pub(crate) http11: bool,
    pub(crate) head_method: bool,
    pub(crate) wants_close: bool,
    pub(crate) wants_http10_keep_alive: bool,
    /// The server must close the connection after this answer.
    pub(crate) force_close: bool,
}

impl Framing {
    pub(crate) fn for_request(head: &Head) -> Framing {
        Framing {
            http11: head.is_http11(),
            head_method: head.method == "HEAD",
            wants_close: head.wants_close(),
            wants_http10_keep_alive: head.wants_http10_keep_alive(),
            force_close: false,
        }
    }
}

/// Serializes an answer as Go's server writes it. Returns the pieces to write one after the
/// other (several for a chunked body) and whether the connection must be closed afterwards.
pub(crate) fn serialize(answer: &Answer, framing: Framing, date: &str) -> (Vec<Vec<u8>>, bool) {
    let has_header = |name: &str| answer.headers.iter().any(|(n, _)| *n == name);
    let send_body = !framing.head_method;
    let chunked = answer.chunked && framing.http11 && answer.body.len() >= 2 && send_body;
    let mut close = framing.force_close
        || answer
            .headers
            .iter()
            .any(|(n, v)| *n == "Connection" && has_token(v, "close"));
    let mut connection = None;
    if framing.wants_http10_keep_alive && !chunked {
        if !has_header("Connection") {
            connection = Some("keep-alive");
        }
    } else if !framing.http11 || framing.wants_close {
        close = true;
    }
    if close && !has_header("Connection") {
        connection = framing.http11.then_some("close");
    }

    let mut head = format!(
        "HTTP/1.{} {} {}\r\n",
        u8::from(framing.http11),
        answer.status,
        status_text(answer.status)
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Date: {date}\r\n"));
    if !chunked && !has_header("Content-Length") && (send_body || !answer.body.is_empty()) {
        head.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    if let Some(connection) = connection {
        head.push_str(&format!("Connection: {connection}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");

    let mut first = head.into_bytes();
    if !chunked {
        if send_body {
            first.extend_from_slice(&answer.body);
        }
        return (vec![first], close);
    }
    let (a, b) = answer.body.split_at(answer.body.len() / 2);
    let chunk = |data: &[u8]| {
        let mut piece = format!("{:x}\r\n", data.len()).into_bytes();
        piece.extend_from_slice(data);
        piece.extend_from_slice(b"\r\n");
        piece
    };
    first.extend_from_slice(&chunk(a));
    let mut last = chunk(b);
    last.extend_from_slice(b"0\r\n\r\n");
    (vec![first, last], close)
}

/// Formats a time as an HTTP date (`Mon, 02 Jan 2006 15:04:05 GMT`), as Go's `http.TimeFormat`.
pub(crate) fn http_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86400;
    let rem = secs % 86400;
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Civil date from days since 1970-01-01, counting in 400-year eras that start on March 1st.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{rpc_answer, RpcOutcome};
    use crate::test_support::{text, DATE};
    use std::time::Duration;

    #[test]
    fn answer_framing() {
        let http11 = Framing {
            http11: true,
            ..Framing::default()
        };
        let (pieces, close) = serialize(&Answer::not_found(), http11, DATE);
        assert!(!close);
        assert_eq!(
            text(&pieces),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 19\r\n\r\n404 page not found\n"
        );

        let error = Answer::rpc_error(405, "rpc: POST method required, received GET");
        let (pieces, close) = serialize(
            &error,
            Framing {
                wants_close: true,
                ..http11
            },
            DATE,
        );
        assert!(close);
        assert_eq!(
            text(&pieces),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 39\r\nConnection: close\r\n\r\nrpc: POST method required, received GET"
        );

        // HTTP/1.0 closes without saying so, unless it asked for keep-alive.
        let (pieces, close) = serialize(&error, Framing::default(), DATE);
        assert!(close);
        assert!(text(&pieces).starts_with("HTTP/1.0 405 Method Not Allowed\r\n"));
        assert!(!text(&pieces).contains("Connection"));
        let (pieces, close) = serialize(
            &error,
            Framing {
                wants_http10_keep_alive: true,
                ..Framing::default()
            },
            DATE,
        );
        assert!(!close);
        assert!(text(&pieces).contains("Content-Length: 39\r\nConnection: keep-alive\r\n\r\n"));

        // HEAD keeps the length but not the body.
        let (pieces, _) = serialize(
            &error,
            Framing {
                head_method: true,
                ..http11
            },
            DATE,
        );
        assert!(text(&pieces).ends_with("Content-Length: 39\r\n\r\n"));

        // Chunked success bodies come in two chunks and a last one.
        let mut answer = rpc_answer(RpcOutcome::Success(b"0123456789\n".to_vec()), false, true);
        let (pieces, _) = serialize(&answer, http11, DATE);
        assert_eq!(pieces.len(), 2);
        assert_eq!(
            text(&pieces),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n56789\n\r\n0\r\n\r\n"
        );
        // Not for HTTP/1.0.
        answer.chunked = true;
        let (pieces, _) = serialize(&answer, Framing::default(), DATE);
        assert!(text(&pieces).contains("Content-Length: 11\r\n"));
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            DATE
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }
}
