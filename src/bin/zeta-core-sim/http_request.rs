//! Reading HTTP/1.x requests as Go's `net/http` server does: the request line and headers with
//! Go's limits and refusals, the request target, and bodies with a length or chunked.

use std::io::{self, BufRead, Read};

use crate::answers::status_text;

/// The largest request body the simulator accepts (the real server has no limit).
pub(crate) const MAX_BODY: u64 = 1 << 20;

/// Go's default header limit: `DefaultMaxHeaderBytes` plus the 4096 bytes of slack it allows.
const MAX_HEAD: u64 = (1 << 20) + 4096;

/// Go's limit on a chunk-size line of a chunked body.
const MAX_CHUNK_LINE: u64 = 4096;

/// How the request body is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Length(u64),
    Chunked,
}

/// The parts of the request target that routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestUrl {
    /// `scheme://authority` of an absolute-form target, empty for origin form.
    pub(crate) prefix: String,
    /// The percent-decoded path.
    pub(crate) path: String,
    /// The raw query; `Some("")` for a target ending in a lone `?`.
    pub(crate) query: Option<String>,
    /// The target was `*`.
    pub(crate) star: bool,
}

/// A request line and its headers.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The minor version of HTTP/1.x.
    pub(crate) minor: u8,
    /// Header names in lower case, with trimmed values, in the order received.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) url: RequestUrl,
    pub(crate) framing: BodyFraming,
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub(crate) fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|part| part.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
}

impl Head {
    /// The first value of a header.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_http11(&self) -> bool {
        self.minor >= 1
    }

    /// Go's `Request.wantsClose`.
    pub(crate) fn wants_close(&self) -> bool {
        let close = self.values("connection").any(|v| has_token(v, "close"));
        if self.is_http11() {
            close
        } else {
            close
                || !self
                    .values("connection")
                    .any(|v| has_token(v, "keep-alive"))
        }
    }

    /// Go's `Request.wantsHttp10KeepAlive`.
    pub(crate) fn wants_http10_keep_alive(&self) -> bool {
        self.minor == 0 && has_token(self.header("connection").unwrap_or(""), "keep-alive")
    }
}

/// The result of reading a request head.
#[derive(Debug)]
pub(crate) enum ReadHead {
    Request(Box<Head>),
    /// The peer closed the connection (or it failed) between requests.
    Closed,
    /// The request is refused with this raw answer, after which the connection is closed.
    Reject(Vec<u8>),
}

/// One line read with a byte budget.
enum Line {
    Text(Vec<u8>),
    Eof,
    TooLong,
}

/// Reads one line ending in LF (a CR before it is dropped), spending from `budget`.
fn read_line<R: BufRead>(reader: &mut R, budget: &mut u64) -> io::Result<Line> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        return Ok(match (n, *budget) {
            (_, 0) => Line::TooLong,
            (0, _) => Line::Eof,
            _ => Line::Text(line),
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Text(line))
}

/// Go's answer to a request it cannot parse, written straight to the connection.
pub(crate) fn raw_error(code: u16, detail: Option<&str>) -> Vec<u8> {
    let public = match detail {
        Some(detail) => format!("{code} {}: {detail}", status_text(code)),
        None => format!("{code} {}", status_text(code)),
    };
    format!(
        "HTTP/1.1 {public}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{public}"
    )
    .into_bytes()
}

/// Go's answer to a transfer coding other than `chunked` (it does not echo the coding back).
const UNSUPPORTED_TRANSFER_ENCODING: &[u8] = b"HTTP/1.1 501 Not Implemented\r\n\
    Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n\
    Unsupported transfer encoding";

/// Whether a byte may appear in an HTTP token (method, header name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a byte may appear in a Host header (Go's `httpguts.ValidHostHeader`).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=[]_~".contains(&b)
}

/// Go's `http.ParseHTTPVersion` for the fixed `HTTP/X.Y` form.
fn parse_http_version(proto: &str) -> Option<(u8, u8)> {
    let b = proto.as_bytes();
    if b.len() != 8 || !proto.starts_with("HTTP/") || b[6] != b'.' {
        return None;
    }
    if !b[5].is_ascii_digit() || !b[7].is_ascii_digit() {
        return None;
    }
    Some((b[5] - b'0', b[7] - b'0'))
}

/// Percent-decodes a path as Go's `url.PathUnescape` does (`+` stays).
fn percent_decode(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `url.ParseRequestURI`, reduced to what routing needs.
fn parse_request_uri(raw: &str) -> Option<RequestUrl> {
    if raw.is_empty() || raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    if raw == "*" {
        return Some(RequestUrl {
            prefix: String::new(),
            path: "*".to_string(),
            query: None,
            star: true,
        });
    }
    // A scheme is letters followed by letters, digits, `+`, `-` or `.`, then a colon.
    let mut scheme = None;
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => {
                scheme = Some(raw[..i].to_ascii_lowercase());
                break;
            }
            _ => break,
        }
    }
    let rest = match &scheme {
        Some(s) => &raw[s.len() + 1..],
        None => raw,
    };
    let (rest, query) = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        (&rest[..rest.len() - 1], Some(String::new()))
    } else {
        match rest.split_once('?') {
            Some((path, query)) => (path, (!query.is_empty()).then(|| query.to_string())),
            None => (rest, None),
        }
    };
    let (prefix, path) = match scheme {
        None if rest.starts_with('/') => (String::new(), rest),
        None => return None,
        Some(s) if !rest.starts_with('/') => (format!("{s}:{rest}"), ""),
        Some(s) => match rest.strip_prefix("//") {
            Some(authority) => {
                let cut = authority.find('/').unwrap_or(authority.len());
                (format!("{s}://{}", &authority[..cut]), &authority[cut..])
            }
            None => (format!("{s}:"), rest),
        },
    };
    Some(RequestUrl {
        prefix,
        path: percent_decode(path)?,
        query,
        star: false,
    })
}

/// Go's plain refusal of a request head it cannot parse.
fn bad_request() -> ReadHead {
    ReadHead::Reject(raw_error(400, None))
}

/// Go's refusal of a request head over its size limit.
fn too_large() -> ReadHead {
    ReadHead::Reject(raw_error(431, None))
}

/// The parts of a request line.
struct RequestLine {
    method: String,
    major: u8,
    minor: u8,
    url: RequestUrl,
}

/// Reads a request line and headers and checks them as Go's server does.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> ReadHead {
    match parse_head(reader) {
        Ok(head) => ReadHead::Request(Box::new(head)),
        Err(refused) => refused,
    }
}

/// The steps of `read_head`, in Go's order; `Err` is the end of the connection or a refusal.
fn parse_head<R: BufRead>(reader: &mut R) -> Result<Head, ReadHead> {
    let mut budget = MAX_HEAD;
    let RequestLine {
        method,
        major,
        minor,
        url,
    } = read_request_line(reader, &mut budget)?;
    let (headers, bad_value) = read_headers(reader, &mut budget)?;
    let count = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
    if count("host") > 1 {
        return Err(bad_request());
    }
    let framing = body_framing(&headers, major, minor)?;
    if major != 1 {
        return Err(ReadHead::Reject(raw_error(
            505,
            Some("unsupported protocol version"),
        )));
    }
    if minor >= 1 && count("host") == 0 && method != "CONNECT" {
        return Err(ReadHead::Reject(raw_error(
            400,
            Some("missing required Host header"),
        )));
    }
    if let Some((_, host)) = headers.iter().find(|(n, _)| n == "host") {
        if !host.bytes().all(is_host_byte) {
            return Err(ReadHead::Reject(raw_error(
                400,
                Some("malformed Host header"),
            )));
        }
    }
    if bad_value {
        return Err(ReadHead::Reject(raw_error(
            400,
            Some("invalid header value"),
        )));
    }
    Ok(Head {
        method,
        minor,
        headers,
        url,
        framing,
    })
}

/// Reads the request line and checks its method, target and version.
fn read_request_line<R: BufRead>(
    reader: &mut R,
    budget: &mut u64,
) -> Result<RequestLine, ReadHead> {
    let line = match read_line(reader, budget) {
        Ok(Line::Text(line)) => line,
        Ok(Line::TooLong) => return Err(too_large()),
        Ok(Line::Eof) | Err(_) => return Err(ReadHead::Closed),
    };
    let line = String::from_utf8_lossy(&line).into_owned();
    let Some((method, rest)) = line.split_once(' ') else {
        return Err(bad_request());
    };
    let Some((target, proto)) = rest.split_once(' ') else {
        return Err(bad_request());
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(bad_request());
    }
    let Some((major, minor)) = parse_http_version(proto) else {
        return Err(bad_request());
    };
    let Some(url) = parse_request_uri(target) else {
        return Err(bad_request());
    };
    Ok(RequestLine {
        method: method.to_string(),
        major,
        minor,
        url,
    })
}

/// Reads the header lines up to the empty one: names in lower case, values trimmed, folded
/// lines joined. Also says whether a value holds a control character, which Go refuses only
/// after its other checks.
fn read_headers<R: BufRead>(
    reader: &mut R,
    budget: &mut u64,
) -> Result<(Vec<(String, String)>, bool), ReadHead> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut bad_value = false;
    loop {
        let line = match read_line(reader, budget) {
            Ok(Line::Text(line)) => line,
            Ok(Line::TooLong) => return Err(too_large()),
            // Go answers a request cut short after its first line.
            Ok(Line::Eof) => return Err(bad_request()),
            Err(_) => return Err(ReadHead::Closed),
        };
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if line[0] == b' ' || line[0] == b'\t' {
            // A folded continuation of the previous header line.
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(text.trim_matches([' ', '\t']));
                    continue;
                }
                None => return Err(bad_request()),
            }
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(bad_request());
        };
        if name.is_empty() {
            continue;
        }
        if !name.bytes().all(is_token_byte) {
            return Err(bad_request());
        }
        let value = value.trim_matches([' ', '\t']);
        bad_value |= value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    Ok((headers, bad_value))
}

/// How the body is delimited: `Transfer-Encoding: chunked` (HTTP/1.1 and later only), else
/// `Content-Length` (all copies equal), else no body.
fn body_framing(
    headers: &[(String, String)],
    major: u8,
    minor: u8,
) -> Result<BodyFraming, ReadHead> {
    let mut framing = BodyFraming::Length(0);
    let transfer_encodings: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    let chunked = major == 1 && minor >= 1 && !transfer_encodings.is_empty();
    if chunked {
        if transfer_encodings.len() > 1 || !transfer_encodings[0].eq_ignore_ascii_case("chunked") {
            return Err(ReadHead::Reject(UNSUPPORTED_TRANSFER_ENCODING.to_vec()));
        }
        framing = BodyFraming::Chunked;
    } else {
        let lengths: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_str())
            .collect();
        if let Some(first) = lengths.first() {
            if lengths.iter().any(|l| l != first) {
                return Err(bad_request());
            }
            if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_request());
            }
            match first.parse::<u64>() {
                Ok(n) if n < 1 << 63 => framing = BodyFraming::Length(n),
                _ => return Err(bad_request()),
            }
        }
    }
    Ok(framing)
}

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the simulator's limit of `MAX_BODY`.
    TooLarge,
    /// A chunked body that does not follow the format, with Go's error text.
    Malformed(&'static str),
    /// The connection failed or ended early.
    Io,
}

/// Reads a whole request body.
pub(crate) fn read_body<R: BufRead>(
    reader: &mut R,
    framing: &BodyFraming,
) -> Result<Vec<u8>, BodyError> {
    match *framing {
        BodyFraming::Length(n) => {
            if n > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            let mut body = vec![0; n as usize];
            reader.read_exact(&mut body).map_err(|_| BodyError::Io)?;
            Ok(body)
        }
        BodyFraming::Chunked => read_chunked(reader),
    }
}

/// Reads a chunked body and its trailer.
fn read_chunked<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_CHUNK_LINE;
        let line = match read_line(reader, &mut budget) {
            Ok(Line::Text(line)) => line,
            Ok(Line::TooLong) => return Err(BodyError::Malformed("header line too long")),
            Ok(Line::Eof) | Err(_) => return Err(BodyError::Io),
        };
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let end = size_text
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let size_text = &size_text[..end];
        if size_text.is_empty() {
            return Err(BodyError::Malformed("empty hex number for chunk length"));
        }
        if size_text.len() > 16 {
            return Err(BodyError::Malformed("http chunk length too large"));
        }
        if !size_text.iter().all(u8::is_ascii_hexdigit) {
            return Err(BodyError::Malformed("invalid byte in chunk length"));
        }
        let text = std::str::from_utf8(size_text).unwrap_or("0");
        let size = u64::from_str_radix(text, 16)
            .map_err(|_| BodyError::Malformed("invalid byte in chunk length"))?;
        if size == 0 {
            // The trailer: header lines up to an empty line.
            loop {
                let mut budget = MAX_CHUNK_LINE;
                match read_line(reader, &mut budget) {
                    Ok(Line::Text(line)) if line.is_empty() => return Ok(body),
                    Ok(Line::Text(_)) => {}
                    Ok(Line::TooLong) => return Err(BodyError::Malformed("header line too long")),
                    Ok(Line::Eof) | Err(_) => return Err(BodyError::Io),
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| BodyError::Io)?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|_| BodyError::Io)?;
        if &crlf != b"\r\n" {
            return Err(BodyError::Malformed("malformed chunked encoding"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{head_of, request};
    use std::io::Cursor;

    fn rejected(raw: &str) -> String {
        match head_of(raw) {
            ReadHead::Reject(answer) => String::from_utf8(answer).expect("answer is text"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn request_heads() {
        let head = request("POST /rpc?x=1 HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nX-Folded: a\r\n  b\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(head.method, "POST");
        assert_eq!(head.minor, 1);
        assert_eq!(head.url.path, "/rpc");
        assert_eq!(head.url.query.as_deref(), Some("x=1"));
        assert_eq!(head.header("content-type"), Some("application/json"));
        assert_eq!(head.header("x-folded"), Some("a b"));
        assert_eq!(head.framing, BodyFraming::Length(12));
        assert!(!head.wants_close());

        // Bare LF line ends are accepted, as Go does.
        let head = request("GET /a%20b HTTP/1.0\n\n");
        assert_eq!(head.url.path, "/a b");
        assert!(head.wants_close());
        let head = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(head.wants_http10_keep_alive() && !head.wants_close());
        let head = request("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n");
        assert!(head.wants_close());
        let head = request("POST http://unix/rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(head.url.prefix, "http://unix");
        assert_eq!(head.url.path, "/rpc");
        assert_eq!(head.framing, BodyFraming::Chunked);
        // HTTP/1.0 ignores Transfer-Encoding.
        let head =
            request("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(5));

        assert!(matches!(head_of(""), ReadHead::Closed));
    }

    #[test]
    fn rejected_heads() {
        assert_eq!(
            rejected("POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"),
            "HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header"
        );
        let generic = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";
        for raw in [
            "GARBAGE\r\n\r\n",
            "GET /\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.10\r\nHost: x\r\n\r\n",
            "GET rpc HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n Host: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost x\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(rejected(raw), generic, "{raw:?}");
        }
        assert!(rejected("GET / HTTP/2.0\r\nHost: x\r\n\r\n").starts_with(
            "HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\n"
        ));
        assert!(
            rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
                .ends_with("\r\n\r\nUnsupported transfer encoding")
        );
        assert!(rejected("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
            .ends_with("400 Bad Request: malformed Host header"));
        assert!(rejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\u{1}b\r\n\r\n")
            .ends_with("400 Bad Request: invalid header value"));
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD as usize)
        );
        assert!(rejected(&huge).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn bodies() {
        let mut input =
            Cursor::new(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec());
        assert_eq!(
            read_body(&mut input, &BodyFraming::Chunked),
            Ok(b"hello world".to_vec())
        );
        let mut rest = String::new();
        input.read_to_string(&mut rest).expect("in memory");
        assert_eq!(rest, "NEXT");

        let chunked = |raw: &[u8]| read_body(&mut Cursor::new(raw.to_vec()), &BodyFraming::Chunked);
        assert_eq!(
            chunked(b"zz\r\n"),
            Err(BodyError::Malformed("invalid byte in chunk length"))
        );
        assert_eq!(
            chunked(b"2\r\nabXX"),
            Err(BodyError::Malformed("malformed chunked encoding"))
        );
        assert_eq!(chunked(b"5\r\nab"), Err(BodyError::Io));
        assert_eq!(chunked(b"200000\r\n"), Err(BodyError::TooLarge));

        let length =
            |raw: &[u8], n| read_body(&mut Cursor::new(raw.to_vec()), &BodyFraming::Length(n));
        assert_eq!(length(b"abcdef", 3), Ok(b"abc".to_vec()));
        assert_eq!(length(b"ab", 3), Err(BodyError::Io));
        assert_eq!(length(b"", MAX_BODY + 1), Err(BodyError::TooLarge));
    }
}
