//! The client that asks the core node for its protocol-upgrade status.
//!
//! This module owns one thing: a `protocolupgrade.UpgradeStatus` call in the JSON-RPC 1.0 shape
//! of the Gorilla codec, sent as HTTP/1.1 over the core's UNIX stream socket, together with the
//! one keep-alive connection it reuses between calls. It answers "this call succeeded with this
//! status" or "this call failed with this error", and nothing more. It must not log, spawn
//! threads, sleep, retry beyond the single reconnect described on [`CoreClient`], validate
//! release tags, or decide what a status means for the node: the caller does all of that.
//!
//! The HTTP/1.1 framing comes from `ureq-proto`, the sans-IO protocol layer under `ureq` 3. A
//! `ureq_proto::client::Call` writes the request into a buffer and, fed the bytes read from the
//! socket, parses the status line and headers (skipping interim 1xx answers), picks the body
//! framing (Content-Length, repeated values included and conflicting ones refused; chunked; read
//! until close; none for 1xx, 204 and 304), reads a Content-Length or close-delimited body, reads
//! the chunk data of a chunked body, the line end after each chunk and the trailer section, and
//! says whether the connection may carry the next call (not after `Connection: close`, an
//! HTTP/1.0 answer without keep-alive, or a body read until close). `ureq` itself is not used: it
//! would need a custom `Connector` and `Transport` over `UnixStream`, and its per-phase timeouts
//! would still have to be mapped onto the one deadline.
//!
//! What stays here is the IO and the limits: the connect, every write and read on the
//! `UnixStream` against one overall deadline of 5 s across connect, write and read, a 16 KiB cap
//! on the status line and headers, on a chunk-size line and on the trailer section, the hard
//! 64 KiB cap on the answer body (a larger Content-Length is refused before reading, any other
//! body as soon as it grows past the cap), the one reconnect, and three small pieces ureq-proto
//! 0.7.1 cannot do:
//!
//! - The request target. `http::Uri` refuses the bytes a URI cannot carry instead of encoding
//!   them, and cuts the path at `#`, so the configured path is percent-encoded here first.
//! - Chunk-size lines. ureq-proto's de-chunker refuses a chunk-size line of more than 20 bytes,
//!   so a chunk extension such as `;name=value;other="x"` breaks it, and it never tells the size
//!   it read, so the body cap could only apply once the announced data had arrived. Each size
//!   line is therefore read and checked against the cap here, and ureq-proto gets the bare size.
//! - Transfer codings. ureq-proto reads any `Transfer-Encoding` that names `chunked` as plain
//!   chunked (`gzip, chunked` too) and ignores the header on HTTP/1.0, so anything but plain
//!   `chunked` on HTTP/1.1 is refused here as a bad answer.
//!
//! Two properties of the platform are relied on. Connecting a UNIX stream socket completes at
//! once unless the listener's backlog is full; std has no connect timeout for UNIX sockets, and
//! a client that holds at most one connection cannot fill a backlog by itself. Writing to a
//! socket whose peer has closed raises SIGPIPE, which the Rust runtime sets to be ignored before
//! `main` runs, so the write fails with `EPIPE` instead of killing the process; the program must
//! not restore the default SIGPIPE action.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use ureq_proto::client::state::{Cleanup, RecvBody, RecvResponse};
use ureq_proto::client::{header_raw, Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http::{header, Request, Response, Version};
use ureq_proto::BodyMode;

/// The whole deadline of one call: connect, write and read together.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer body accepted, after de-chunking.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The largest status line and header section accepted, and the largest trailer section.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How many bytes one read asks the socket for.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// How many characters of an error text are kept in an [`RpcError`].
const MAX_ERROR_TEXT_CHARS: usize = 200;

/// The release the core has accepted for a protocol upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRelease {
    /// The release tag exactly as the core sent it; the caller validates it.
    pub tag: String,
    /// The block height at which the upgrade happens.
    pub height: u64,
}

/// The answer to one `protocolupgrade.UpgradeStatus` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeStatus {
    /// The accepted release, or `None` while no upgrade is accepted.
    pub accepted: Option<AcceptedRelease>,
    /// Whether the core has stopped at the upgrade block and waits to be replaced.
    pub ready: bool,
}

/// Why one call failed.
///
/// `Display` gives a one-line message without a trailing period. Only `Connect` names the
/// socket; the caller prefixes the other messages with whatever context it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The socket could not be connected; the message names the socket.
    Connect(String),
    /// Writing the request or reading the answer failed, or the connection closed early.
    Io(String),
    /// No full answer arrived within the deadline.
    Timeout,
    /// The answer had a status other than 200; the body is kept as one line of at most 200
    /// characters.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The answer body as one line, truncated to 200 characters.
        body: String,
    },
    /// The answer body is larger than [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// The answer is not a well-formed HTTP answer carrying an `UpgradeStatus` result for this
    /// request; the message says why.
    BadAnswer(String),
    /// The core answered with a non-null `error`, kept as one line of at most 200 characters.
    Remote(String),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Connect(message) | RpcError::Io(message) | RpcError::BadAnswer(message) => {
                f.write_str(message)
            }
            // Production calls always use CALL_TIMEOUT, so the message names it; shorter
            // deadlines exist only in tests.
            RpcError::Timeout => write!(f, "no full answer within {} s", CALL_TIMEOUT.as_secs()),
            RpcError::Http { status, body } if body.is_empty() => write!(f, "HTTP {status}"),
            RpcError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            RpcError::TooLarge => write!(f, "answer larger than {MAX_ANSWER_BYTES} bytes"),
            RpcError::Remote(message) => write!(f, "core returned error: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// A client for one socket; keeps one keep-alive connection open between calls and reconnects
/// when the server closed it (a failed write/read on a REUSED connection that had been idle is
/// retried once on a fresh connection, within the same deadline). Ids are increasing u64.
///
/// The retry happens only for an I/O failure before any byte of an answer arrived, which is
/// what a server that closed the idle connection looks like; the retry sends the same request
/// with the same id. Every failed call drops its connection, and only a connection whose answer
/// was complete, clean and kept alive by the server is reused.
#[derive(Debug)]
pub struct CoreClient {
    socket_path: PathBuf,
    http_path: String,
    /// The connection kept alive after the last successful call, if the server allowed it.
    connection: Option<UnixStream>,
    /// The id of the next request.
    next_id: u64,
}

impl CoreClient {
    /// Creates a client for the socket at `socket_path` that posts to `http_path`; it does not
    /// connect yet.
    #[must_use]
    pub fn new(socket_path: PathBuf, http_path: String) -> Self {
        CoreClient {
            socket_path,
            http_path,
            connection: None,
            next_id: 1,
        }
    }

    /// The socket this client talks to.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// One `protocolupgrade.UpgradeStatus` call with [`CALL_TIMEOUT`] as the whole deadline.
    ///
    /// # Errors
    ///
    /// Any failure of the call, as described on [`RpcError`].
    pub fn upgrade_status(&mut self) -> Result<UpgradeStatus, RpcError> {
        self.upgrade_status_within(CALL_TIMEOUT)
    }

    /// Same with a given deadline (tests use short ones).
    ///
    /// # Errors
    ///
    /// Any failure of the call, as described on [`RpcError`]; `Timeout` when no full answer
    /// arrived within `timeout`.
    pub fn upgrade_status_within(&mut self, timeout: Duration) -> Result<UpgradeStatus, RpcError> {
        let deadline = deadline_after(timeout);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let (request, call) = build_request(&self.http_path, id)?;

        // Taking the connection out means that every early return below drops it, so a
        // connection in an unknown state is never reused.
        let (stream, answer) = match self.connection.take() {
            Some(mut stream) => match exchange(&mut stream, &request, call, deadline) {
                Ok(answer) => (stream, answer),
                Err(failure) if failure.server_closed_idle_connection() => {
                    drop(stream);
                    // The same bytes again, with a fresh call to read their answer.
                    let (_, call) = build_request(&self.http_path, id)?;
                    self.exchange_on_fresh_connection(&request, call, deadline)?
                }
                Err(failure) => return Err(failure.error),
            },
            None => self.exchange_on_fresh_connection(&request, call, deadline)?,
        };

        if answer.status != 200 {
            return Err(RpcError::Http {
                status: answer.status,
                body: one_line(&String::from_utf8_lossy(&answer.body), MAX_ERROR_TEXT_CHARS),
            });
        }
        let status = parse_status_answer(&answer.body, id)?;
        if answer.reusable {
            self.connection = Some(stream);
        }
        Ok(status)
    }

    /// Connects a new stream and runs one exchange on it.
    fn exchange_on_fresh_connection(
        &self,
        request: &[u8],
        call: Call<RecvResponse>,
        deadline: Instant,
    ) -> Result<(UnixStream, Answer), RpcError> {
        let mut stream = UnixStream::connect(&self.socket_path).map_err(|error| {
            RpcError::Connect(format!("connect {}: {error}", self.socket_path.display()))
        })?;
        let answer =
            exchange(&mut stream, request, call, deadline).map_err(|failure| failure.error)?;
        Ok((stream, answer))
    }
}

/// Pure parser of a full answer body (already de-chunked), used by the client and by fuzz tests
/// later.
///
/// # Errors
///
/// `BadAnswer` when the body is empty, is not this JSON or answers another id, and `Remote`
/// when the core reported an error.
pub fn parse_status_answer(body: &[u8], expected_id: u64) -> Result<UpgradeStatus, RpcError> {
    if body.trim_ascii().is_empty() {
        return Err(RpcError::BadAnswer(
            "empty answer body (the answer to a JSON-RPC notification)".to_string(),
        ));
    }
    let envelope: Value = serde_json::from_slice(body).map_err(not_a_status)?;
    let Value::Object(fields) = envelope else {
        return Err(not_a_status("the body is not a JSON object"));
    };

    let id = fields.get("id").unwrap_or(&Value::Null);
    if id.as_u64() != Some(expected_id) {
        return Err(RpcError::BadAnswer(format!(
            "answer id {} does not match request id {expected_id}",
            one_line(&id.to_string(), 40)
        )));
    }

    match fields.get("error") {
        None | Some(Value::Null) => {}
        Some(Value::String(message)) => {
            return Err(RpcError::Remote(one_line(message, MAX_ERROR_TEXT_CHARS)));
        }
        Some(other) => {
            return Err(RpcError::Remote(one_line(
                &other.to_string(),
                MAX_ERROR_TEXT_CHARS,
            )));
        }
    }

    let result = match fields.get("result") {
        None | Some(Value::Null) => return Err(not_a_status("result is null and error is null")),
        Some(result) => result,
    };
    let wire = WireStatus::deserialize(result).map_err(not_a_status)?;
    let accepted = match wire.accepted_release_info {
        None => None,
        Some(info) => {
            let Some(tag) = info.zeta_release_tag.or(info.vega_release_tag) else {
                return Err(not_a_status(
                    "AcceptedReleaseInfo has neither ZetaReleaseTag nor VegaReleaseTag",
                ));
            };
            Some(AcceptedRelease {
                tag,
                height: info.upgrade_block_height,
            })
        }
    };
    Ok(UpgradeStatus {
        accepted,
        ready: wire.ready_to_upgrade,
    })
}

/// The `result` object as the core sends it; unknown fields are ignored.
#[derive(Deserialize)]
struct WireStatus {
    /// Required even when null: `Option::deserialize` turns off serde's default for a missing
    /// `Option` field, so an answer without the field is refused instead of read as "none".
    #[serde(
        rename = "AcceptedReleaseInfo",
        deserialize_with = "Option::deserialize"
    )]
    accepted_release_info: Option<WireRelease>,
    #[serde(rename = "ReadyToUpgrade")]
    ready_to_upgrade: bool,
}

/// The accepted release as the core sends it, under either name for the tag.
#[derive(Deserialize)]
struct WireRelease {
    #[serde(rename = "VegaReleaseTag", default)]
    vega_release_tag: Option<String>,
    #[serde(rename = "ZetaReleaseTag", default)]
    zeta_release_tag: Option<String>,
    #[serde(rename = "UpgradeBlockHeight")]
    upgrade_block_height: u64,
}

/// Builds the `BadAnswer` for a body that is not an `UpgradeStatus` answer.
fn not_a_status(reason: impl fmt::Display) -> RpcError {
    RpcError::BadAnswer(format!(
        "answer is not an UpgradeStatus result: {}",
        one_line(&reason.to_string(), 300)
    ))
}

/// Makes `text` one line of at most `max_chars` characters: surrounding whitespace is trimmed
/// and every control character becomes a space.
fn one_line(text: &str, max_chars: usize) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect()
}

/// The instant `timeout` from now, or a far but representable instant for absurd timeouts.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// The time left before `deadline`, or `Timeout` when none is left.
fn remaining(deadline: Instant) -> Result<Duration, RpcError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(RpcError::Timeout)
    } else {
        Ok(left)
    }
}

/// Whether an I/O error means that a socket timeout expired.
fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Builds the request for one call with `id` and runs its sending half through ureq-proto.
/// Returns the exact bytes to write (`POST <target> HTTP/1.1`, `Host: unix`,
/// `Content-Type: application/json`, `Content-Length`, then the JSON body) and the call that
/// reads the answer to them.
///
/// # Errors
///
/// `Io` when no request can be built, which only a request target over 64 KiB can cause.
fn build_request(http_path: &str, id: u64) -> Result<(Vec<u8>, Call<RecvResponse>), RpcError> {
    let body = format!(r#"{{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":{id}}}"#);
    let target = request_target(http_path);
    // `header_raw` keeps the casing of the names, which the http crate would lower-case. Host
    // and Content-Length set here keep ureq-proto from adding its own.
    let builder = header_raw(Request::post(target.as_str()), "Host", b"unix");
    let builder = header_raw(builder, "Content-Type", b"application/json");
    let builder = header_raw(builder, "Content-Length", body.len().to_string().as_bytes());
    let request = builder.body(()).map_err(|error| unbuildable(&error))?;
    let mut call = Call::new(request)
        .map_err(|error| unbuildable(&error))?
        .proceed();
    // The request line is the longest line, and ureq-proto writes whole lines only. On the
    // stack for the usual short path: a heap buffer of this size, freed at every poll, made
    // musl's allocator map and unmap a page twice a second.
    let needed = target.len() + 1024;
    let mut on_stack = [0u8; 2048];
    let mut on_heap = Vec::new();
    let scratch: &mut [u8] = match on_stack.get_mut(..needed) {
        Some(buffer) => buffer,
        None => {
            on_heap.resize(needed, 0);
            &mut on_heap
        }
    };
    let mut bytes = Vec::new();
    while !call.can_proceed() {
        let used = call.write(scratch).map_err(|error| unbuildable(&error))?;
        bytes.extend_from_slice(scratch.get(..used).unwrap_or_default());
    }
    let Ok(Some(SendRequestResult::SendBody(mut call))) = call.proceed() else {
        return Err(unbuildable(&"ureq-proto has no body to send"));
    };
    let mut input = body.as_bytes();
    while !call.can_proceed() {
        let (input_used, output_used) = call
            .write(input, scratch)
            .map_err(|error| unbuildable(&error))?;
        if input_used == 0 && output_used == 0 {
            return Err(unbuildable(&"ureq-proto took no more of the body"));
        }
        bytes.extend_from_slice(scratch.get(..output_used).unwrap_or_default());
        input = input.get(input_used..).unwrap_or_default();
    }
    let call = call
        .proceed()
        .ok_or_else(|| unbuildable(&"ureq-proto did not take the whole body"))?;
    Ok((bytes, call))
}

/// Builds the `Io` error for a request that cannot be built.
fn unbuildable(reason: &dyn fmt::Display) -> RpcError {
    RpcError::Io(format!(
        "build request: {}",
        one_line(&reason.to_string(), MAX_ERROR_TEXT_CHARS)
    ))
}

/// The digits of upper-case hexadecimal, for percent-encoding.
const HEX_DIGITS: [u8; 16] = *b"0123456789ABCDEF";

/// Turns the configured HTTP path into a request target that cannot break the request line and
/// that `http::Uri` takes as it is: spaces, control characters, non-ASCII bytes and the five
/// characters `"`, `#`, `<`, `>` and `` ` `` are percent-encoded (`http::Uri` refuses the others
/// and cuts the path at `#`), an empty path becomes `/`, and a path that does not start with `/`
/// gets one.
fn request_target(http_path: &str) -> String {
    let mut target = String::with_capacity(http_path.len() + 1);
    if !http_path.starts_with('/') {
        target.push('/');
    }
    for byte in http_path.bytes() {
        if byte.is_ascii_graphic() && !b"\"#<>`".contains(&byte) {
            target.push(char::from(byte));
        } else {
            target.push('%');
            target.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            target.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
    }
    target
}

/// A complete answer read from the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// Whether the connection may carry the next call.
    reusable: bool,
}

/// A failed exchange, and whether any byte of an answer had arrived before it failed.
struct Failure {
    error: RpcError,
    received_any: bool,
}

impl Failure {
    /// Whether the failure looks like a server that had closed an idle connection before it
    /// saw the request: an I/O failure with not one byte of an answer received.
    fn server_closed_idle_connection(&self) -> bool {
        matches!(self.error, RpcError::Io(_)) && !self.received_any
    }
}

/// Writes `request` on `stream` and reads the answer to it through `call`, all before
/// `deadline`.
fn exchange(
    stream: &mut UnixStream,
    request: &[u8],
    call: Call<RecvResponse>,
    deadline: Instant,
) -> Result<Answer, Failure> {
    if let Err(error) = write_all_before(stream, request, deadline) {
        return Err(Failure {
            error,
            received_any: false,
        });
    }
    let mut reader = AnswerReader::new(stream, deadline);
    match reader.read_answer(call) {
        Ok(answer) => Ok(answer),
        Err(error) => Err(Failure {
            error,
            received_any: reader.received_any,
        }),
    }
}

/// Writes all of `bytes` before `deadline`.
fn write_all_before(
    stream: &mut UnixStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> Result<(), RpcError> {
    while !bytes.is_empty() {
        let left = remaining(deadline)?;
        stream
            .set_write_timeout(Some(left))
            .map_err(|error| RpcError::Io(format!("set write timeout: {error}")))?;
        match stream.write(bytes) {
            Ok(0) => {
                return Err(RpcError::Io(
                    "write request: the connection accepts no more data".to_string(),
                ))
            }
            Ok(written) => bytes = bytes.get(written..).unwrap_or_default(),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if is_timeout(error.kind()) => return Err(RpcError::Timeout),
            Err(error) => return Err(RpcError::Io(format!("write request: {error}"))),
        }
    }
    Ok(())
}

/// Builds the `BadAnswer` for an answer that ureq-proto refused.
fn malformed(error: &ureq_proto::Error) -> RpcError {
    RpcError::BadAnswer(format!(
        "malformed HTTP answer: {}",
        one_line(&error.to_string(), MAX_ERROR_TEXT_CHARS)
    ))
}

/// Parses the status line and headers at the start of `input` through `call`. Returns how many
/// bytes it used and, once a final answer's head is complete, its status; bytes used without a
/// status were an interim 1xx answer, which ureq-proto skips.
fn parse_head(
    call: &mut Call<RecvResponse>,
    input: &[u8],
) -> Result<(usize, Option<u16>), RpcError> {
    let (used, response) = call
        .try_response(input, false)
        .map_err(|error| malformed(&error))?;
    let Some(response) = response else {
        return Ok((used, None));
    };
    check_transfer_coding(&response)?;
    Ok((used, Some(response.status().as_u16())))
}

/// Refuses a Transfer-Encoding other than plain `chunked` on HTTP/1.1: ureq-proto reads any
/// list that names `chunked` (`gzip, chunked` too) as plain chunked, and on HTTP/1.0 it ignores
/// the header and reads the chunk framing as body.
fn check_transfer_coding(response: &Response<()>) -> Result<(), RpcError> {
    let mut codings: Vec<String> = Vec::new();
    for value in response.headers().get_all(header::TRANSFER_ENCODING) {
        codings.extend(
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|coding| coding.trim().to_ascii_lowercase())
                .filter(|coding| !coding.is_empty() && coding != "identity"),
        );
    }
    let http_1_1 = response.version() == Version::HTTP_11;
    if codings.is_empty() || (http_1_1 && codings == ["chunked"]) {
        return Ok(());
    }
    let on = if http_1_1 { "" } else { " on HTTP/1.0" };
    Err(RpcError::BadAnswer(format!(
        "unsupported answer Transfer-Encoding{on}: {}",
        one_line(&codings.join(", "), 80)
    )))
}

/// Parses a chunk-size line, ignoring chunk extensions. A size too large for `u64` becomes
/// `u64::MAX`, which is refused as too large anyway.
fn parse_chunk_size(line: &[u8]) -> Result<u64, RpcError> {
    let end = line
        .iter()
        .position(|&byte| byte == b';')
        .unwrap_or(line.len());
    let digits = line.get(..end).unwrap_or_default().trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(RpcError::BadAnswer(format!(
            "malformed chunk size line: {}",
            one_line(&String::from_utf8_lossy(line), 80)
        )));
    }
    let mut size: u64 = 0;
    for &digit in digits {
        let value = char::from(digit).to_digit(16).unwrap_or(0);
        size = match size
            .checked_mul(16)
            .and_then(|shifted| shifted.checked_add(u64::from(value)))
        {
            Some(next) => next,
            None => return Ok(u64::MAX),
        };
    }
    Ok(size)
}

/// Reads one answer from a stream through a buffer, never past the deadline, and hands the
/// bytes to a ureq-proto call.
struct AnswerReader<'a> {
    stream: &'a mut UnixStream,
    deadline: Instant,
    /// Bytes received and not yet consumed start at `start`.
    buffer: Vec<u8>,
    start: usize,
    /// Whether any byte has arrived on this exchange.
    received_any: bool,
}

impl<'a> AnswerReader<'a> {
    fn new(stream: &'a mut UnixStream, deadline: Instant) -> Self {
        AnswerReader {
            stream,
            deadline,
            buffer: Vec::new(),
            start: 0,
            received_any: false,
        }
    }

    /// The received bytes not yet consumed.
    fn pending(&self) -> &[u8] {
        self.buffer.get(self.start..).unwrap_or_default()
    }

    /// Marks `count` pending bytes as consumed.
    fn consume(&mut self, count: usize) {
        self.start = self.start.saturating_add(count).min(self.buffer.len());
    }

    /// Reads more bytes into the buffer; returns false when the server has closed.
    fn fill(&mut self) -> Result<bool, RpcError> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            let left = remaining(self.deadline)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|error| RpcError::Io(format!("set read timeout: {error}")))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(count) => {
                    self.received_any = true;
                    self.buffer
                        .extend_from_slice(chunk.get(..count).unwrap_or_default());
                    return Ok(true);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if is_timeout(error.kind()) => return Err(RpcError::Timeout),
                Err(error) => return Err(RpcError::Io(format!("read answer: {error}"))),
            }
        }
    }

    /// Reads more bytes, treating the end of the stream as an answer cut short.
    fn fill_or_fail(&mut self) -> Result<(), RpcError> {
        if self.fill()? {
            Ok(())
        } else {
            Err(RpcError::Io(
                "the connection closed before a full answer".to_string(),
            ))
        }
    }

    /// Reads the whole answer through `call`: the head, the body, and whether the connection
    /// may carry the next call.
    fn read_answer(&mut self, mut call: Call<RecvResponse>) -> Result<Answer, RpcError> {
        let status = self.read_head(&mut call)?;
        let (body, cleanup) = match call.proceed() {
            Some(RecvResponseResult::RecvBody(call)) => self.read_body(call)?,
            Some(RecvResponseResult::Redirect(call)) => (Vec::new(), call.proceed()),
            Some(RecvResponseResult::Cleanup(call)) => (Vec::new(), call),
            None => return Err(RpcError::BadAnswer("incomplete answer head".to_string())),
        };
        // Bytes beyond the answer mean the connection is in a state we do not understand.
        let reusable = !cleanup.must_close_connection() && self.pending().is_empty();
        Ok(Answer {
            status,
            body,
            reusable,
        })
    }

    /// Reads the status line and headers of the final answer; returns its status.
    fn read_head(&mut self, call: &mut Call<RecvResponse>) -> Result<u16, RpcError> {
        loop {
            let window = self.pending();
            let window = window.get(..MAX_HEAD_BYTES).unwrap_or(window);
            let (used, status) = parse_head(call, window)?;
            self.consume(used);
            match status {
                Some(status) => return Ok(status),
                None if used > 0 => {}
                None if self.pending().len() >= MAX_HEAD_BYTES => {
                    return Err(RpcError::BadAnswer(format!(
                        "answer status line and headers larger than {MAX_HEAD_BYTES} bytes"
                    )));
                }
                None => self.fill_or_fail()?,
            }
        }
    }

    /// Reads the body through `call`; returns it and the call's last state.
    fn read_body(
        &mut self,
        mut call: Call<RecvBody>,
    ) -> Result<(Vec<u8>, Call<Cleanup>), RpcError> {
        let mut body = Vec::new();
        match call.body_mode() {
            BodyMode::NoBody => {}
            BodyMode::LengthDelimited(length) => {
                if usize::try_from(length).map_or(true, |length| length > MAX_ANSWER_BYTES) {
                    return Err(RpcError::TooLarge);
                }
                while !call.can_proceed() {
                    if !self.decode(&mut call, &mut body)? {
                        self.fill_or_fail()?;
                    }
                }
            }
            BodyMode::Chunked => self.read_chunked(&mut call, &mut body)?,
            BodyMode::CloseDelimited => loop {
                while self.decode(&mut call, &mut body)? {}
                if !self.fill()? {
                    break;
                }
            },
        }
        match call.proceed() {
            Some(RecvBodyResult::Cleanup(call)) => Ok((body, call)),
            Some(RecvBodyResult::Redirect(call)) => Ok((body, call.proceed())),
            None => Err(RpcError::BadAnswer("incomplete answer body".to_string())),
        }
    }

    /// Hands the pending bytes to `call` and appends what it decoded to `body`, refusing a body
    /// larger than [`MAX_ANSWER_BYTES`]; returns whether the call used or gave any byte.
    fn decode(&mut self, call: &mut Call<RecvBody>, body: &mut Vec<u8>) -> Result<bool, RpcError> {
        let mut output = [0u8; READ_CHUNK_BYTES];
        let (used, decoded) = call
            .read(self.pending(), &mut output)
            .map_err(|error| malformed(&error))?;
        self.consume(used);
        body.extend_from_slice(output.get(..decoded).unwrap_or_default());
        if body.len() > MAX_ANSWER_BYTES {
            return Err(RpcError::TooLarge);
        }
        Ok(used > 0 || decoded > 0)
    }

    /// Reads a chunked body: each chunk-size line here, the chunk data, the line end after it,
    /// and the trailer section through `call`.
    fn read_chunked(
        &mut self,
        call: &mut Call<RecvBody>,
        body: &mut Vec<u8>,
    ) -> Result<(), RpcError> {
        // Every read then stops where a chunk-size line starts.
        call.stop_on_chunk_boundary(true);
        loop {
            if call.is_on_chunk_boundary() {
                if self.next_chunk_size(call, body.len())? == 0 {
                    return self.read_trailers(call);
                }
            } else if !self.decode(call, body)? {
                // Only a missing line end after chunk data leaves pending bytes unused.
                if self.pending().len() >= MAX_HEAD_BYTES {
                    return Err(RpcError::BadAnswer(
                        "chunk data not followed by a line end".to_string(),
                    ));
                }
                self.fill_or_fail()?;
            }
        }
    }

    /// Reads the chunk-size line that starts the pending bytes and hands `call` the size alone,
    /// refusing a chunk that would take the body over [`MAX_ANSWER_BYTES`] before reading it.
    fn next_chunk_size(
        &mut self,
        call: &mut Call<RecvBody>,
        body_len: usize,
    ) -> Result<usize, RpcError> {
        let line = self.read_line(MAX_HEAD_BYTES, "chunk size line")?;
        let room = MAX_ANSWER_BYTES.saturating_sub(body_len);
        let size = match usize::try_from(parse_chunk_size(&line)?) {
            Ok(size) if size <= room => size,
            _ => return Err(RpcError::TooLarge),
        };
        let bare = format!("{size:x}\r\n");
        let (used, _) = call
            .read(bare.as_bytes(), &mut [])
            .map_err(|error| malformed(&error))?;
        if used != bare.len() {
            return Err(RpcError::BadAnswer(
                "ureq-proto did not take a chunk size".to_string(),
            ));
        }
        Ok(size)
    }

    /// Reads the trailer section after the last chunk through `call`; its fields are not used.
    fn read_trailers(&mut self, call: &mut Call<RecvBody>) -> Result<(), RpcError> {
        let too_large = || {
            RpcError::BadAnswer(format!(
                "answer trailer section larger than {MAX_HEAD_BYTES} bytes"
            ))
        };
        let mut trailer_bytes = 0usize;
        let mut none = Vec::new();
        while !call.can_proceed() {
            let before = self.pending().len();
            if self.decode(call, &mut none)? {
                trailer_bytes += before.saturating_sub(self.pending().len());
                if trailer_bytes > MAX_HEAD_BYTES {
                    return Err(too_large());
                }
            } else if trailer_bytes.saturating_add(before) >= MAX_HEAD_BYTES {
                return Err(too_large());
            } else {
                self.fill_or_fail()?;
            }
        }
        Ok(())
    }

    /// Reads one line of at most `limit` bytes including its end; returns it without the end.
    fn read_line(&mut self, limit: usize, what: &str) -> Result<Vec<u8>, RpcError> {
        loop {
            let window = self.pending();
            let window = window.get(..limit).unwrap_or(window);
            if let Some(newline) = window.iter().position(|&byte| byte == b'\n') {
                let line = window.get(..newline).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.consume(newline + 1);
                return Ok(line);
            }
            if self.pending().len() >= limit {
                return Err(RpcError::BadAnswer(format!(
                    "{what} longer than {limit} bytes"
                )));
            }
            self.fill_or_fail()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::{self, JoinHandle};

    const VEGA_RESULT: &str = r#"{"AcceptedReleaseInfo":{"VegaReleaseTag":"v1.3.0","UpgradeBlockHeight":1200000},"ReadyToUpgrade":false}"#;
    const ZETA_RESULT: &str = r#"{"AcceptedReleaseInfo":{"ZetaReleaseTag":"v2.0.0","UpgradeBlockHeight":77},"ReadyToUpgrade":true}"#;
    const NONE_RESULT: &str = r#"{"AcceptedReleaseInfo":null,"ReadyToUpgrade":false}"#;

    fn vega_status() -> UpgradeStatus {
        UpgradeStatus {
            accepted: Some(AcceptedRelease {
                tag: "v1.3.0".to_string(),
                height: 1_200_000,
            }),
            ready: false,
        }
    }

    /// A folder under the system temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "zeta-visor-rpc-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A UNIX socket server that runs `handler(connection_index, stream)` on a thread of its
    /// own for every accepted connection and counts the accepts.
    struct TestServer {
        path: PathBuf,
        accepts: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        _dir: TempDir,
    }

    impl TestServer {
        fn start(handler: impl Fn(usize, UnixStream) + Send + Sync + 'static) -> Self {
            let dir = TempDir::new();
            let path = dir.0.join("core.sock");
            let listener = UnixListener::bind(&path).expect("bind test socket");
            let accepts = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let handler = Arc::new(handler);
            let thread = {
                let accepts = Arc::clone(&accepts);
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let index = accepts.fetch_add(1, Ordering::SeqCst);
                        let handler = Arc::clone(&handler);
                        thread::spawn(move || handler(index, stream));
                    }
                })
            };
            TestServer {
                path,
                accepts,
                stop,
                thread: Some(thread),
                _dir: dir,
            }
        }

        fn client(&self) -> CoreClient {
            CoreClient::new(self.path.clone(), "/rpc".to_string())
        }

        fn accepts(&self) -> usize {
            self.accepts.load(Ordering::SeqCst)
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so that it sees the stop flag.
            let _ = UnixStream::connect(&self.path);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Reads one request (head and Content-Length body); `None` when the client closed.
    fn read_request(stream: &mut UnixStream) -> Option<Vec<u8>> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| {
                value.trim().parse().expect("request Content-Length")
            });
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok()?;
        request.extend_from_slice(&body);
        Some(request)
    }

    /// The id of a request read by `read_request`.
    fn request_id(request: &[u8]) -> u64 {
        let start = request
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("request head end")
            + 4;
        let body: Value = serde_json::from_slice(&request[start..]).expect("request body JSON");
        body["id"].as_u64().expect("request id")
    }

    /// A 200 answer with Content-Length, shaped like the core's.
    fn ok_answer(id: u64, result: &str) -> Vec<u8> {
        let body = format!(r#"{{"result":{result},"error":null,"id":{id}}}"#) + "\n";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A plain-text answer with the given status, shaped like the core's error answers.
    fn text_answer(status: u16, reason: &str, text: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .into_bytes()
    }

    /// A handler that answers every request on a connection with `answer(id)` until the client
    /// closes.
    fn answering(
        answer: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static,
    ) -> impl Fn(usize, UnixStream) + Send + Sync + 'static {
        move |_, mut stream| {
            while let Some(request) = read_request(&mut stream) {
                if stream.write_all(&answer(request_id(&request))).is_err() {
                    return;
                }
            }
        }
    }

    /// A handler that reads one request, writes `bytes`, and then waits for the client to close
    /// without ever finishing the answer.
    fn answering_once_then_hanging(
        bytes: Vec<u8>,
    ) -> impl Fn(usize, UnixStream) + Send + Sync + 'static {
        move |_, mut stream| {
            if read_request(&mut stream).is_some() {
                let _ = stream.write_all(&bytes);
                let _ = read_request(&mut stream);
            }
        }
    }

    #[test]
    fn success_with_content_length_and_exact_request() {
        let (sender, receiver) = mpsc::channel();
        let server = TestServer::start(move |_, mut stream| {
            while let Some(request) = read_request(&mut stream) {
                let id = request_id(&request);
                let _ = sender.send(request);
                let _ = stream.write_all(&ok_answer(id, VEGA_RESULT));
            }
        });
        let mut client = server.client();
        assert_eq!(client.socket_path(), server.path.as_path());
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        let first = receiver.recv().expect("first request");
        let second = receiver.recv().expect("second request");
        let expected = |id: u64| {
            let body = format!(
                r#"{{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":{id}}}"#
            );
            format!(
                "POST /rpc HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        assert_eq!(String::from_utf8_lossy(&first), expected(1));
        assert_eq!(String::from_utf8_lossy(&second), expected(2));
    }

    #[test]
    fn chunked_answer_with_extension_and_trailer() {
        let server = TestServer::start(answering(|id| {
            let body = format!(r#"{{"result":{VEGA_RESULT},"error":null,"id":{id}}}"#) + "\n";
            let (first, rest) = body.split_at(10);
            let (second, third) = rest.split_at(40);
            format!(
                "HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: Chunked\r\ncontent-type: application/json\r\n\r\n\
                 {:x}\r\n{first}\r\n{:X};name=value;other=\"x\"\r\n{second}\r\n{:x}\r\n{third}\r\n\
                 0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n",
                first.len(),
                second.len(),
                third.len()
            )
            .into_bytes()
        }));
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        // The chunked answer left the connection clean, so it is reused.
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(server.accepts(), 1);
    }

    #[test]
    fn read_until_close_answer() {
        let server = TestServer::start(|_, mut stream| {
            if let Some(request) = read_request(&mut stream) {
                let body = format!(
                    r#"{{"result":{VEGA_RESULT},"error":null,"id":{}}}"#,
                    request_id(&request)
                );
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{body}\n");
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(server.accepts(), 2);
    }

    #[test]
    fn both_tag_names_and_null_release() {
        let server = TestServer::start(answering(|id| {
            let results = [VEGA_RESULT, ZETA_RESULT, NONE_RESULT];
            let index = usize::try_from(id.saturating_sub(1)).unwrap_or(0) % results.len();
            ok_answer(id, results[index])
        }));
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(
            client.upgrade_status(),
            Ok(UpgradeStatus {
                accepted: Some(AcceptedRelease {
                    tag: "v2.0.0".to_string(),
                    height: 77
                }),
                ready: true,
            })
        );
        assert_eq!(
            client.upgrade_status(),
            Ok(UpgradeStatus {
                accepted: None,
                ready: false
            })
        );
    }

    #[test]
    fn keep_alive_reuses_one_connection() {
        let server = TestServer::start(answering(|id| ok_answer(id, VEGA_RESULT)));
        let mut client = server.client();
        for _ in 0..3 {
            assert_eq!(client.upgrade_status(), Ok(vega_status()));
        }
        assert_eq!(server.accepts(), 1);
    }

    #[test]
    fn reconnects_after_server_closed_idle_connection() {
        let (closed_sender, closed_receiver) = mpsc::channel();
        let server = TestServer::start(move |index, mut stream| {
            if index == 0 {
                if let Some(request) = read_request(&mut stream) {
                    let _ = stream.write_all(&ok_answer(request_id(&request), VEGA_RESULT));
                }
                drop(stream);
                let _ = closed_sender.send(());
            } else {
                answering(|id| ok_answer(id, NONE_RESULT))(index, stream);
            }
        });
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        closed_receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("server closed the first connection");
        assert_eq!(
            client.upgrade_status(),
            Ok(UpgradeStatus {
                accepted: None,
                ready: false
            })
        );
        assert_eq!(server.accepts(), 2);
    }

    #[test]
    fn failure_on_fresh_connection_is_not_retried() {
        let server = TestServer::start(|_, mut stream| {
            let _ = read_request(&mut stream);
        });
        let mut client = server.client();
        let error = client.upgrade_status().expect_err("no answer");
        assert!(matches!(error, RpcError::Io(_)), "{error:?}");
        assert_eq!(server.accepts(), 1);
    }

    #[test]
    fn connection_close_is_honoured() {
        // The server would happily answer again on the same connection, so a client that
        // ignored `Connection: close` would be caught by the accept count.
        let server = TestServer::start(answering(|id| {
            let mut answer = ok_answer(id, VEGA_RESULT);
            let text = String::from_utf8_lossy(&answer).replacen(
                "HTTP/1.1 200 OK\r\n",
                "HTTP/1.1 200 OK\r\nConnection: Close\r\n",
                1,
            );
            answer = text.into_bytes();
            answer
        }));
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(server.accepts(), 2);
    }

    #[test]
    fn http_1_0_status_line_is_tolerated_and_not_reused() {
        let server = TestServer::start(answering(|id| {
            let text = String::from_utf8_lossy(&ok_answer(id, VEGA_RESULT))
                .replacen("HTTP/1.1", "HTTP/1.0", 1);
            text.into_bytes()
        }));
        let mut client = server.client();
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(server.accepts(), 2);
    }

    #[test]
    fn error_answers_become_http_errors() {
        let cases: [(u16, &str, &str); 5] = [
            (404, "Not Found", "404 page not found\n"),
            (
                405,
                "Method Not Allowed",
                "rpc: POST method required, received GET",
            ),
            (
                415,
                "Unsupported Media Type",
                "rpc: unrecognized Content-Type: text/plain",
            ),
            (400, "Bad Request", "rpc: can't find method \"x.Y\""),
            (500, "Internal Server Error", ""),
        ];
        let server = TestServer::start(move |index, stream| {
            let (status, reason, text) = cases[index % cases.len()];
            answering(move |_| text_answer(status, reason, text))(index, stream);
        });
        let mut client = server.client();
        for (status, _, text) in cases {
            let error = client.upgrade_status().expect_err("error answer");
            assert_eq!(
                error,
                RpcError::Http {
                    status,
                    body: text.trim().to_string()
                }
            );
        }
        // Every error dropped its connection.
        assert_eq!(server.accepts(), cases.len());
        assert_eq!(
            RpcError::Http {
                status: 415,
                body: "rpc: unrecognized Content-Type: text/plain".to_string()
            }
            .to_string(),
            "HTTP 415: rpc: unrecognized Content-Type: text/plain"
        );
    }

    #[test]
    fn long_error_body_is_truncated_to_one_line() {
        let text = format!("line one\r\nline two {}", "x".repeat(1000));
        let server = TestServer::start(answering(move |_| text_answer(502, "Bad Gateway", &text)));
        let Err(RpcError::Http { status, body }) = server.client().upgrade_status() else {
            panic!("expected an HTTP error");
        };
        assert_eq!(status, 502);
        assert_eq!(body.chars().count(), 200);
        assert!(body.starts_with("line one  line two xxx"), "{body}");
    }

    #[test]
    fn id_mismatch_is_a_bad_answer() {
        let server = TestServer::start(answering(|id| ok_answer(id + 1, VEGA_RESULT)));
        let error = server.client().upgrade_status().expect_err("wrong id");
        assert_eq!(
            error,
            RpcError::BadAnswer("answer id 2 does not match request id 1".to_string())
        );
    }

    #[test]
    fn remote_error_is_reported() {
        let server = TestServer::start(answering(|id| {
            let body =
                format!(r#"{{"result":null,"error":"upgrade status unavailable","id":{id}}}"#);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }));
        let error = server.client().upgrade_status().expect_err("remote error");
        assert_eq!(
            error,
            RpcError::Remote("upgrade status unavailable".to_string())
        );
        assert_eq!(
            error.to_string(),
            "core returned error: upgrade status unavailable"
        );
    }

    #[test]
    fn notification_answer_is_a_bad_answer() {
        let server = TestServer::start(answering(|_| {
            b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"
                .to_vec()
        }));
        let error = server.client().upgrade_status().expect_err("empty body");
        assert!(matches!(error, RpcError::BadAnswer(_)), "{error:?}");
    }

    #[test]
    fn garbage_body_is_a_bad_answer_and_drops_the_connection() {
        let server = TestServer::start(answering(|id| {
            if id == 1 {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<html".to_vec()
            } else {
                ok_answer(id, VEGA_RESULT)
            }
        }));
        let mut client = server.client();
        let error = client.upgrade_status().expect_err("garbage");
        let RpcError::BadAnswer(message) = &error else {
            panic!("expected BadAnswer, got {error:?}");
        };
        assert!(
            message.starts_with("answer is not an UpgradeStatus result: "),
            "{message}"
        );
        assert_eq!(client.upgrade_status(), Ok(vega_status()));
        assert_eq!(server.accepts(), 2);
    }

    #[test]
    fn malformed_http_is_a_bad_answer() {
        let answers: [&[u8]; 7] = [
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        ];
        let server = TestServer::start(move |index, stream| {
            let answer = answers[index % answers.len()].to_vec();
            answering_once_then_hanging(answer)(index, stream);
        });
        let mut client = server.client();
        for _ in answers {
            let error = client
                .upgrade_status_within(Duration::from_secs(2))
                .expect_err("malformed");
            assert!(matches!(error, RpcError::BadAnswer(_)), "{error:?}");
        }
    }

    #[test]
    fn oversized_head_is_a_bad_answer() {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nX-Filler: {}\r\nContent-Length: 2\r\n\r\n{{}}",
            "a".repeat(20_000)
        );
        let server = TestServer::start(answering_once_then_hanging(answer.into_bytes()));
        let error = server
            .client()
            .upgrade_status_within(Duration::from_secs(2))
            .expect_err("head too large");
        assert_eq!(
            error,
            RpcError::BadAnswer(
                "answer status line and headers larger than 16384 bytes".to_string()
            )
        );
    }

    #[test]
    fn oversized_bodies_are_refused_without_reading_them() {
        // Each server sends less than it announces and then waits, so a client that tried to
        // read everything would time out instead of answering TooLarge.
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{\"result\":".to_vec();
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\n".to_vec();
        chunked.extend(std::iter::repeat_n(b' ', 0xffff));
        chunked.extend_from_slice(b"\r\n2\r\n");
        let mut until_close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        until_close.extend(std::iter::repeat_n(b' ', 70_000));
        let answers = [by_length, chunked, until_close];
        let count = answers.len();
        let server = TestServer::start(move |index, stream| {
            answering_once_then_hanging(answers[index % count].clone())(index, stream);
        });
        let mut client = server.client();
        for _ in 0..count {
            assert_eq!(
                client.upgrade_status_within(Duration::from_secs(3)),
                Err(RpcError::TooLarge)
            );
        }
        assert_eq!(
            RpcError::TooLarge.to_string(),
            "answer larger than 65536 bytes"
        );
    }

    #[test]
    fn body_of_exactly_the_limit_is_accepted() {
        let server = TestServer::start(answering(|id| {
            let mut body = format!(r#"{{"result":{VEGA_RESULT},"error":null,"id":{id}}}"#);
            body.push_str(&" ".repeat(MAX_ANSWER_BYTES - body.len()));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }));
        assert_eq!(server.client().upgrade_status(), Ok(vega_status()));
    }

    #[test]
    fn silent_server_times_out_within_the_deadline() {
        let server = TestServer::start(|_, mut stream| {
            let _ = read_request(&mut stream);
            let _ = read_request(&mut stream);
        });
        let started = Instant::now();
        let result = server
            .client()
            .upgrade_status_within(Duration::from_millis(300));
        assert_eq!(result, Err(RpcError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(RpcError::Timeout.to_string(), "no full answer within 5 s");
    }

    #[test]
    fn answer_cut_short_times_out_within_the_deadline() {
        let server = TestServer::start(answering_once_then_hanging(
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"result\":".to_vec(),
        ));
        let started = Instant::now();
        let result = server
            .client()
            .upgrade_status_within(Duration::from_millis(300));
        assert_eq!(result, Err(RpcError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn missing_socket_is_a_connect_error_naming_it() {
        let dir = TempDir::new();
        let path = dir.0.join("missing.sock");
        let mut client = CoreClient::new(path.clone(), "/rpc".to_string());
        let Err(RpcError::Connect(message)) = client.upgrade_status() else {
            panic!("expected a connect error");
        };
        assert!(
            message.starts_with(&format!("connect {}: ", path.display())),
            "{message}"
        );
        assert!(message.contains("os error 2"), "{message}");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let server = TestServer::start(answering(|id| {
            let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            answer.extend(ok_answer(id, VEGA_RESULT));
            answer
        }));
        assert_eq!(server.client().upgrade_status(), Ok(vega_status()));
    }

    #[test]
    fn request_target_cannot_break_the_request_line() {
        assert_eq!(request_target("/rpc"), "/rpc");
        assert_eq!(request_target(""), "/");
        assert_eq!(request_target("/a b\r\nX: y"), "/a%20b%0D%0AX:%20y");
        assert_eq!(request_target("/é"), "/%C3%A9");
        assert_eq!(request_target("/a#b<c>`\"d\""), "/a%23b%3Cc%3E%60%22d%22");
        assert_eq!(
            request_target("/a?b=[c]&d={e}|f^g\\h%20"),
            "/a?b=[c]&d={e}|f^g\\h%20"
        );
        assert_eq!(request_target("rpc"), "/rpc");
        // Past the stack buffer (a path of more than 1 KiB): the heap takes over.
        let long = format!("/{}", "p".repeat(3000));
        for (path, target) in [
            ("/rpc", "/rpc"),
            ("/a b#c", "/a%20b%23c"),
            ("", "/"),
            (long.as_str(), long.as_str()),
        ] {
            let (request, _) = build_request(path, 42).expect("request");
            let body = r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":42}"#;
            assert_eq!(
                String::from_utf8_lossy(&request),
                format!(
                    "POST {target} HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            );
        }
    }

    /// A flat table of answers and what each gives, longer than 80 lines on purpose: one row
    /// per case reads better than many small tests.
    #[test]
    fn parse_status_answer_table() {
        let ok = |accepted: Option<(&str, u64)>, ready: bool| {
            Ok(UpgradeStatus {
                accepted: accepted.map(|(tag, height)| AcceptedRelease {
                    tag: tag.to_string(),
                    height,
                }),
                ready,
            })
        };
        let cases: Vec<(&str, Result<UpgradeStatus, RpcError>)> = vec![
            (
                r#"{"result":{"AcceptedReleaseInfo":{"VegaReleaseTag":"v1.3.0","UpgradeBlockHeight":1200000},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("v1.3.0", 1_200_000)), false),
            ),
            (
                "{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":\"v1.3.0\",\"UpgradeBlockHeight\":1200000},\"ReadyToUpgrade\":true},\"error\":null,\"id\":7}\n",
                ok(Some(("v1.3.0", 1_200_000)), true),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"ZetaReleaseTag":"v2.0.0","UpgradeBlockHeight":5},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("v2.0.0", 5)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"VegaReleaseTag":"old","ZetaReleaseTag":"new","UpgradeBlockHeight":5},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("new", 5)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"ZetaReleaseTag":"new","VegaReleaseTag":"old","UpgradeBlockHeight":5},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("new", 5)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"VegaReleaseTag":"v1","ZetaReleaseTag":null,"UpgradeBlockHeight":5},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("v1", 5)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"VegaReleaseTag":"","UpgradeBlockHeight":0},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(Some(("", 0)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"VegaReleaseTag":"../x","UpgradeBlockHeight":18446744073709551615,"Extra":1},"ReadyToUpgrade":false,"More":[1]},"id":7}"#,
                ok(Some(("../x", u64::MAX)), false),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":null,"ReadyToUpgrade":false},"error":null,"id":7}"#,
                ok(None, false),
            ),
            (
                r#"{"result":null,"error":"boom","id":7}"#,
                Err(RpcError::Remote("boom".to_string())),
            ),
            (
                r#"{"result":null,"error":{"code":1,"message":"x"},"id":7}"#,
                Err(RpcError::Remote(r#"{"code":1,"message":"x"}"#.to_string())),
            ),
            (
                r#"{"result":null,"error":"two\nlines","id":7}"#,
                Err(RpcError::Remote("two lines".to_string())),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":null,"ReadyToUpgrade":false},"error":null,"id":8}"#,
                Err(RpcError::BadAnswer(
                    "answer id 8 does not match request id 7".to_string(),
                )),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":null,"ReadyToUpgrade":false},"error":null,"id":"7"}"#,
                Err(RpcError::BadAnswer(
                    r#"answer id "7" does not match request id 7"#.to_string(),
                )),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":null,"ReadyToUpgrade":false},"error":null}"#,
                Err(RpcError::BadAnswer(
                    "answer id null does not match request id 7".to_string(),
                )),
            ),
            (
                r#"{"result":null,"error":"boom","id":6}"#,
                Err(RpcError::BadAnswer(
                    "answer id 6 does not match request id 7".to_string(),
                )),
            ),
            (
                r#"{"result":null,"error":null,"id":7}"#,
                Err(RpcError::BadAnswer(
                    "answer is not an UpgradeStatus result: result is null and error is null"
                        .to_string(),
                )),
            ),
            (
                r#"{"result":{"AcceptedReleaseInfo":{"UpgradeBlockHeight":5},"ReadyToUpgrade":false},"error":null,"id":7}"#,
                Err(RpcError::BadAnswer(
                    "answer is not an UpgradeStatus result: AcceptedReleaseInfo has neither ZetaReleaseTag nor VegaReleaseTag".to_string(),
                )),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_status_answer(body.as_bytes(), 7), expected, "{body}");
        }

        let bad_answers: [&[u8]; 14] = [
            b"",
            b" \n",
            b"<html>",
            b"[1,2]",
            b"null",
            b"{\"result\":{\"AcceptedReleaseInfo\":null,\"ReadyToUpgrade\":false},\"id\":7} x",
            b"{\"result\":{\"ReadyToUpgrade\":false},\"error\":null,\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":null},\"error\":null,\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":null,\"ReadyToUpgrade\":\"no\"},\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":\"v1\",\"UpgradeBlockHeight\":-1},\"ReadyToUpgrade\":false},\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":\"v1\",\"UpgradeBlockHeight\":\"5\"},\"ReadyToUpgrade\":false},\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":\"v1\"},\"ReadyToUpgrade\":false},\"id\":7}",
            b"{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":5,\"UpgradeBlockHeight\":5},\"ReadyToUpgrade\":false},\"id\":7}",
            b"\xff\xfe{\"id\":7}",
        ];
        for body in bad_answers {
            let result = parse_status_answer(body, 7);
            assert!(
                matches!(result, Err(RpcError::BadAnswer(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Runs `text` and the empty line after it through the head parser of a fresh call, interim
    /// answers included; returns the final status and the body framing ureq-proto picked.
    fn head(text: &str) -> Result<(u16, BodyMode), RpcError> {
        let (_, mut call) = build_request("/rpc", 1).expect("request");
        let input = format!("{text}\r\n\r\n");
        let mut rest = input.as_bytes();
        let status = loop {
            let (used, status) = parse_head(&mut call, rest)?;
            rest = &rest[used..];
            match status {
                Some(status) => break status,
                None => assert!(used > 0, "no full head in {text:?}"),
            }
        };
        assert!(rest.is_empty(), "{text:?}");
        let mode = match call.proceed() {
            Some(RecvResponseResult::RecvBody(call)) => call.body_mode(),
            Some(RecvResponseResult::Cleanup(_) | RecvResponseResult::Redirect(_)) => {
                BodyMode::NoBody
            }
            None => panic!("no answer after a full head: {text:?}"),
        };
        Ok((status, mode))
    }

    /// Whether a 200 answer with the head `text` and no body leaves the connection reusable.
    fn keeps_alive(text: &str) -> bool {
        let (_, mut call) = build_request("/rpc", 1).expect("request");
        let input = format!("{text}\r\nContent-Length: 0\r\n\r\n");
        let (_, status) = parse_head(&mut call, input.as_bytes()).expect("a valid head");
        assert_eq!(status, Some(200));
        let Some(RecvResponseResult::Cleanup(call)) = call.proceed() else {
            panic!("expected no body: {text:?}");
        };
        !call.must_close_connection()
    }

    #[test]
    fn head_table() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-LENGTH: 5"),
            Ok((200, BodyMode::LengthDelimited(5)))
        );
        assert_eq!(
            head("HTTP/1.1 200\r\nContent-Length: 5, 5\r\nContent-Length: 5"),
            Ok((200, BodyMode::LengthDelimited(5)))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 5"),
            Ok((200, BodyMode::Chunked))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, Chunked"),
            Ok((200, BodyMode::Chunked))
        );
        assert_eq!(
            head("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive"),
            Ok((200, BodyMode::LengthDelimited(5)))
        );
        assert_eq!(head("HTTP/1.1 204 No Content"), Ok((204, BodyMode::NoBody)));
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 5"),
            Ok((304, BodyMode::NoBody))
        );
        assert_eq!(head("HTTP/1.1 200 OK"), Ok((200, BodyMode::CloseDelimited)));
        assert_eq!(
            head("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1"),
            Ok((200, BodyMode::LengthDelimited(1)))
        );

        assert!(keeps_alive("HTTP/1.1 200 OK"));
        assert!(keeps_alive("HTTP/1.0 200 OK\r\nConnection: Keep-Alive"));
        assert!(!keeps_alive(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, close"
        ));
        assert!(!keeps_alive("HTTP/1.1 200 OK\r\nConnection: Close"));
        assert!(!keeps_alive("HTTP/1.0 200 OK"));

        for bad in [
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 099 X",
            "HTTP/1.1 200OK",
            "HTTP/1.1 200 OK\r\nno colon",
            "HTTP/1.1 200 OK\r\n: empty name",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded",
            "HTTP/1.1 200 OK\r\nContent-Length: -1",
            "HTTP/1.1 200 OK\r\nContent-Length:",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: br",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked",
            "HTTP/1.1 100 Continue\r\nX: y",
        ] {
            assert!(
                matches!(head(bad), Err(RpcError::BadAnswer(_))),
                "{bad:?}: {:?}",
                head(bad)
            );
        }
    }

    #[test]
    fn chunk_size_table() {
        assert_eq!(parse_chunk_size(b"0"), Ok(0));
        assert_eq!(parse_chunk_size(b"1aF"), Ok(0x1af));
        assert_eq!(parse_chunk_size(b"10 ; name=value"), Ok(16));
        assert_eq!(parse_chunk_size(b"000000000000000000000001"), Ok(1));
        assert_eq!(parse_chunk_size(b"fffffffffffffffffff"), Ok(u64::MAX));
        for bad in [&b""[..], b";x", b"g", b"-1", b"0x10"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\":,0123456789 \r\n;abcdefHTTP/1. -nulltrue\xff";
        for _ in 0..5_000 {
            let length = usize::try_from(next() % 64).unwrap_or(0);
            let bytes: Vec<u8> = (0..length)
                .map(|_| alphabet[usize::try_from(next()).unwrap_or(0) % alphabet.len()])
                .collect();
            let _ = parse_status_answer(&bytes, 1);
            let (_, mut call) = build_request("/rpc", 1).expect("request");
            let _ = parse_head(&mut call, &bytes);
            let _ = parse_chunk_size(&bytes);
        }
    }

    #[test]
    fn display_messages_are_single_lines_without_periods() {
        let errors = [
            RpcError::Connect(
                "connect /run/zeta.sock: No such file or directory (os error 2)".to_string(),
            ),
            RpcError::Io("read answer: Connection reset by peer (os error 104)".to_string()),
            RpcError::Timeout,
            RpcError::Http {
                status: 404,
                body: String::new(),
            },
            RpcError::TooLarge,
            RpcError::BadAnswer("answer id 2 does not match request id 1".to_string()),
            RpcError::Remote("boom".to_string()),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n') && !text.ends_with('.'), "{text}");
        }
        assert_eq!(
            RpcError::Http {
                status: 404,
                body: String::new()
            }
            .to_string(),
            "HTTP 404"
        );
    }
}
