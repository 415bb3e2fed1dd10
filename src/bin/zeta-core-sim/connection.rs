//! One RPC connection, served as Go's `net/http` server serves it: requests read one after the
//! other (pipelined or kept alive), `Expect: 100-continue`, the body read or left, the answer
//! routed and written, and when the connection is closed.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::SystemTime;

use crate::answers::{http_date, serialize, Answer, Framing};
use crate::http_request::{
    has_token, raw_error, read_body, read_head, BodyError, BodyFraming, Head, ReadHead,
};
use crate::node::Shared;
use crate::routing::{route, Route};
use crate::rpc::{rpc_answer, rpc_outcome};

/// Go discards at most this much of a request body the handler did not read before it gives up
/// on the connection (`maxPostHandlerReadBytes`).
const MAX_POST_HANDLER_READ: usize = 256 << 10;

/// Go tolerates clients that send CR/LF after a POST body: up to four such bytes are skipped
/// before the next request.
fn skip_stray_line_ends<R: BufRead>(reader: &mut R) {
    let skip = match reader.fill_buf() {
        Ok(buffer) => buffer
            .iter()
            .take(4)
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count(),
        Err(_) => 0,
    };
    reader.consume(skip);
}

/// What to do with the connection after an exchange.
#[derive(Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

/// Serves the requests of one connection until either side closes it.
pub(crate) fn serve_connection(shared: &Shared, stream: UnixStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut after_post = false;
    loop {
        if after_post {
            skip_stray_line_ends(&mut reader);
        }
        let head = match read_head(&mut reader) {
            ReadHead::Request(head) => head,
            ReadHead::Closed => return,
            ReadHead::Reject(answer) => {
                if shared.opts.hang_rpc {
                    let _ = io::copy(&mut reader, &mut io::sink());
                } else {
                    let _ = writer.write_all(&answer);
                }
                return;
            }
        };
        after_post = head.method == "POST";
        shared.check_control_dir();
        if shared.opts.hang_rpc {
            // Read the request and the ones after it, never answering.
            if read_body(&mut reader, &head.framing).is_err() {
                let _ = io::copy(&mut reader, &mut io::sink());
                return;
            }
            continue;
        }
        if exchange(shared, &head, &mut reader, &mut writer) == After::Close {
            return;
        }
    }
}

/// Answers one request whose head has been read.
fn exchange<R: BufRead, W: Write>(
    shared: &Shared,
    head: &Head,
    reader: &mut R,
    writer: &mut W,
) -> After {
    let mut framing = Framing::for_request(head);
    let expect = head.header("expect");
    let has_body = head.framing != BodyFraming::Length(0);
    let expect_continue = head.is_http11()
        && has_body
        && expect.is_some_and(|value| has_token(value, "100-continue"));
    if let Some(value) = expect {
        if !value.is_empty() && !has_token(value, "100-continue") {
            let answer = Answer {
                status: 417,
                headers: vec![("Connection", "close".to_string())],
                body: Vec::new(),
                chunked: false,
            };
            write_answer(writer, &answer, framing);
            return After::Close;
        }
    }

    let route = route(head, &shared.opts.http_path);
    let reads_body = route == Route::Rpc;
    let Some((body, malformed)) = request_body(
        head,
        reader,
        writer,
        &mut framing,
        expect_continue,
        reads_body,
    ) else {
        return After::Close;
    };
    if !reads_body && body.len() >= MAX_POST_HANDLER_READ {
        framing.force_close = true;
    }

    if !shared.opts.slow_rpc.is_zero() {
        thread::sleep(shared.opts.slow_rpc);
    }
    let answer = answer_for(shared, head, route, &body, malformed);
    if write_answer(writer, &answer, framing) {
        After::Close
    } else {
        After::KeepAlive
    }
}

/// Reads the request body, first sending "100 Continue" when the client waits for it and the
/// handler reads the body. Returns the body and the chunked-format error that stands in for
/// it, or `None` when the connection is over.
fn request_body<R: BufRead, W: Write>(
    head: &Head,
    reader: &mut R,
    writer: &mut W,
    framing: &mut Framing,
    expect_continue: bool,
    reads_body: bool,
) -> Option<(Vec<u8>, Option<&'static str>)> {
    if expect_continue && !reads_body {
        // The client waits for "100 Continue", which is never sent: answer and hang up.
        framing.force_close = true;
        return Some((Vec::new(), None));
    }
    if expect_continue && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return None;
    }
    match read_body(reader, &head.framing) {
        Ok(body) => Some((body, None)),
        Err(BodyError::Io) => None,
        Err(BodyError::TooLarge) => {
            let _ = writer.write_all(&raw_error(413, None));
            None
        }
        Err(BodyError::Malformed(error)) => {
            framing.force_close = true;
            Some((Vec::new(), Some(error)))
        }
    }
}

/// The answer of the route, as gorilla/mux, gorilla/rpc and the core's method give it.
fn answer_for(
    shared: &Shared,
    head: &Head,
    route: Route,
    body: &[u8],
    malformed: Option<&str>,
) -> Answer {
    match route {
        Route::GlobalOptions => Answer {
            status: 200,
            headers: vec![("Content-Length", "0".to_string())],
            body: Vec::new(),
            chunked: false,
        },
        Route::Redirect(location) => Answer {
            status: 301,
            headers: vec![("Location", location)],
            body: Vec::new(),
            chunked: false,
        },
        Route::NotFound => Answer::not_found(),
        Route::NotPost => Answer::rpc_error(
            405,
            &format!("rpc: POST method required, received {}", head.method),
        ),
        Route::BadContentType(media) => {
            Answer::rpc_error(415, &format!("rpc: unrecognized Content-Type: {media}"))
        }
        Route::Rpc => match malformed {
            Some(error) => Answer::rpc_error(400, error),
            None => {
                let status = shared.status();
                let outcome = rpc_outcome(body, &status, &shared.opts.tag_field);
                rpc_answer(outcome, shared.opts.garble_rpc, shared.opts.chunked_rpc)
            }
        },
    }
}

/// Writes an answer; returns whether the connection must be closed.
fn write_answer<W: Write>(writer: &mut W, answer: &Answer, framing: Framing) -> bool {
    let (pieces, close) = serialize(answer, framing, &http_date(SystemTime::now()));
    for piece in pieces {
        if writer
            .write_all(&piece)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return true;
        }
    }
    close
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Options;
    use crate::http_request::MAX_BODY;
    use crate::test_support::test_shared;
    use std::io::Read;
    use std::sync::Arc;

    /// Sends raw bytes through a served connection and returns everything answered.
    fn converse(opts: Options, input: &[u8]) -> String {
        let (mut client, server) = UnixStream::pair().expect("socket pair");
        let shared = Arc::new(test_shared(opts));
        let worker = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || serve_connection(&shared, server))
        };
        client.write_all(input).expect("write");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut out = String::new();
        client.read_to_string(&mut out).expect("read");
        worker.join().expect("worker");
        out
    }

    #[test]
    fn connections_keep_alive_and_pipeline() {
        let rpc = r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":1}"#;
        let input = format!(
            "POST /rpc HTTP/1.1\r\nHost: u\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{rpc}\r\nGET /nope HTTP/1.1\r\nHost: u\r\n\r\nPOST /rpc HTTP/1.1\r\nHost: u\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{{POST /rpc HTTP/1.1\r\n\r\n",
            rpc.len()
        );
        let out = converse(Options::default(), input.as_bytes());
        assert_eq!(out.matches("HTTP/1.1 ").count(), 3, "{out}");
        assert!(out.contains("\"ReadyToUpgrade\":false},\"error\":null,\"id\":1}\n"));
        assert!(out.contains("404 page not found\n"));
        assert!(
            out.ends_with("Connection: close\r\n\r\nunexpected EOF"),
            "{out}"
        );
    }

    #[test]
    fn expectations() {
        let out = converse(
            Options::default(),
            b"POST /rpc HTTP/1.1\r\nHost: u\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nnull",
        );
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n"),
            "{out}"
        );
        assert!(out.ends_with("rpc: service/method request ill-formed: \"\""));

        let out = converse(
            Options::default(),
            b"POST /nope HTTP/1.1\r\nHost: u\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nnull",
        );
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));

        let out = converse(
            Options::default(),
            b"GET /rpc HTTP/1.1\r\nHost: u\r\nExpect: teapot\r\n\r\n",
        );
        assert!(out.starts_with("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: "));
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let out = converse(
            Options::default(),
            format!(
                "POST /rpc HTTP/1.1\r\nHost: u\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .as_bytes(),
        );
        assert!(
            out.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"),
            "{out}"
        );
    }

    #[test]
    fn hang_mode_never_answers() {
        let opts = Options {
            hang_rpc: true,
            ..Options::default()
        };
        let out = converse(
            opts,
            b"GET /rpc HTTP/1.1\r\nHost: u\r\n\r\nGET /rpc HTTP/1.1\r\n\r\n",
        );
        assert_eq!(out, "");
    }
}
