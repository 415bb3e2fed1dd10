//! The control socket `HOME/.visor/control` (a UNIX stream socket, mode 0600) and its two
//! ends: the `visor-control` thread of `visor run`, which turns each connection into one
//! request for the coordinator and writes its answers back, and the client used by
//! `visor restart` and `visor switch`.
//!
//! The protocol is lines of text. The client sends one request line, `restart` or
//! `switch TAG`, within [`REQUEST_TIMEOUT`] in all; Visor answers with any number of
//! `progress MESSAGE` lines and one final line, `done MESSAGE`, `refused MESSAGE` (nothing was
//! changed) or `failed MESSAGE`, then closes. While [`MAX_CONNECTIONS`] connections are being
//! served, a new one is answered `busy MESSAGE` before anything is read, and closed.
//!
//! The thread decides nothing: the state machine says whether a request is carried out.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::home::supervise_folder::ControlAddress;
use crate::machine::{ControlReply, ControlRequest};

/// How long a client may take to send its whole request line: one deadline, however the
/// bytes trickle in.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request line.
const REQUEST_LIMIT: u64 = 1024;
/// Connections served at once; more are answered `busy`.
const MAX_CONNECTIONS: usize = 4;
/// The line a connection gets while every slot is taken.
const BUSY_LINE: &str =
    "busy Visor is busy serving other control connections; try again in a few seconds";

/// A request on its way to the coordinator, with where its answers go.
pub struct ControlMessage {
    pub request: ControlRequest,
    pub replies: Sender<ControlReply>,
}

/// Binds the socket (replacing a stale one left by a Visor that is gone: the caller holds the
/// lock) and starts the thread.
pub fn start(socket: &ControlAddress, requests: Sender<ControlMessage>) -> Result<(), String> {
    let (path, address) = (socket.path(), socket.address());
    if let Ok(meta) = std::fs::symlink_metadata(address) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(address);
        }
    }
    let listener = UnixListener::bind(address).map_err(|e| {
        format!(
            "{}: cannot create the control socket ({e}); remove whatever is there",
            path.display()
        )
    })?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: cannot set mode 0600 ({e})", path.display()))?;
    std::thread::Builder::new()
        .name("visor-control".into())
        .stack_size(crate::process::SMALL_STACK)
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => accept(stream, &requests, &active),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|e| format!("cannot start the visor-control thread ({e})"))?;
    Ok(())
}

/// Serves a connection on a thread of its own, so a request under way does not hold the next
/// one back (the machine refuses a second request while one runs); at most
/// [`MAX_CONNECTIONS`] at once.
fn accept(stream: UnixStream, requests: &Sender<ControlMessage>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::SeqCst);
        // Answered before anything is read, without waiting: a fresh socket's buffer takes
        // one short line.
        let _ = stream.set_nonblocking(true);
        let _ = writeln!(&stream, "{BUSY_LINE}");
        return;
    }
    let requests = requests.clone();
    let done = active.clone();
    let started = std::thread::Builder::new()
        .name("visor-control-request".into())
        .stack_size(crate::process::SMALL_STACK)
        .spawn(move || {
            serve(stream, &requests);
            done.fetch_sub(1, Ordering::SeqCst);
        });
    if started.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection; false when the coordinator is gone.
fn serve(stream: UnixStream, requests: &Sender<ControlMessage>) -> bool {
    // A client that stops reading cannot hold the thread in a write either.
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut writer = &stream;
    let request = match read_request(&stream, Instant::now() + REQUEST_TIMEOUT)
        .and_then(|line| parse(&line))
    {
        Ok(request) => request,
        Err(why) => {
            let _ = writeln!(writer, "refused {why}");
            return true;
        }
    };
    let (replies, answers) = unbounded();
    if requests.send(ControlMessage { request, replies }).is_err() {
        let _ = writeln!(writer, "failed Visor is exiting");
        return false;
    }
    // Every answer until the final one; a client that went away only loses them.
    while let Ok(reply) = answers.recv() {
        let _ = writeln!(writer, "{}", format_reply(&reply));
        if reply.is_final() {
            break;
        }
    }
    true
}

/// The request line (up to its newline, at most [`REQUEST_LIMIT`] bytes) if it has all come
/// by `deadline`: the deadline is for the whole line, so a client sending a byte now and then
/// is cut at it all the same.
fn read_request(mut stream: &UnixStream, deadline: Instant) -> Result<String, String> {
    let mut line = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no whole request line within {} s; send restart or switch TAG and a newline",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(n) => {
                let got = &buffer[..n];
                if let Some(end) = got.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&got[..=end]);
                    if line.len() as u64 > REQUEST_LIMIT {
                        break;
                    }
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
                line.extend_from_slice(got);
                if line.len() as u64 > REQUEST_LIMIT {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "request line longer than {REQUEST_LIMIT} bytes; send restart or switch TAG"
    ))
}

/// A request line.
pub fn parse(line: &str) -> Result<ControlRequest, String> {
    let line = line.trim_end_matches(['\n', '\r']);
    match line.split_once(' ') {
        None if line == "restart" => Ok(ControlRequest::Restart),
        Some(("switch", tag)) if !tag.is_empty() => Ok(ControlRequest::Switch {
            tag: tag.to_string(),
        }),
        _ => Err(format!(
            "unknown request {:?}; send restart or switch TAG",
            line
        )),
    }
}

fn format_request(request: &ControlRequest) -> String {
    match request {
        ControlRequest::Restart => "restart".into(),
        ControlRequest::Switch { tag } => format!("switch {tag}"),
    }
}

/// An answer line, without its newline (messages are one line: newlines become spaces).
pub fn format_reply(reply: &ControlReply) -> String {
    let (word, text) = match reply {
        ControlReply::Progress(t) => ("progress", t),
        ControlReply::Done(t) => ("done", t),
        ControlReply::Refused(t) => ("refused", t),
        ControlReply::Failed(t) => ("failed", t),
    };
    format!("{word} {}", text.replace(['\n', '\r'], " "))
}

fn parse_reply(line: &str) -> Option<ControlReply> {
    let (word, text) = line.split_once(' ').unwrap_or((line, ""));
    let text = text.to_string();
    Some(match word {
        "progress" => ControlReply::Progress(text),
        "done" => ControlReply::Done(text),
        "refused" => ControlReply::Refused(text),
        "failed" => ControlReply::Failed(text),
        _ => return None,
    })
}

/// Why [`request`] got no final answer.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Visor answered `busy`: every connection slot is taken; nothing was asked.
    Busy(String),
    /// Anything else, with its message.
    Failed(String),
}

/// Sends `request` to the Visor listening at `socket` and returns its final answer, giving
/// each progress line to `progress`. Waits at most `timeout` in all.
pub fn request(
    socket: &ControlAddress,
    request: &ControlRequest,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<ControlReply, RequestError> {
    let shown = socket.path().display();
    let failed = |text: String| RequestError::Failed(text);
    let mut stream = UnixStream::connect(socket.address()).map_err(|e| {
        failed(format!(
            "{shown}: cannot connect ({e}); is visor run running on this home?"
        ))
    })?;
    // A busy Visor answers and closes without reading, so the request may not go out; its
    // answer is still there to read.
    let sent = stream.write_all(format!("{}\n", format_request(request)).as_bytes());
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| failed(e.to_string()))?);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed(format!(
                "no final answer from Visor within {} s; see visor status and Visor's log",
                timeout.as_secs()
            )));
        }
        let _ = stream.set_read_timeout(Some(left));
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                return Err(failed(match &sent {
                    Err(e) => format!("{shown}: cannot send the request ({e})"),
                    Ok(()) => format!(
                        "{shown}: Visor closed the connection without a final answer; see its log"
                    ),
                }))
            }
            Ok(_) => {
                let line = line.trim_end();
                if let Some(text) = line.strip_prefix("busy ") {
                    return Err(RequestError::Busy(text.to_string()));
                }
                match parse_reply(line) {
                    Some(ControlReply::Progress(text)) => progress(&text),
                    Some(reply) => return Ok(reply),
                    None => return Err(failed(format!("{shown}: unexpected answer {line:?}"))),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                return Err(failed(match &sent {
                    Err(send) => format!("{shown}: cannot send the request ({send})"),
                    Ok(()) => format!("{shown}: {e}"),
                }))
            }
        }
    }
}

/// The receiving end the coordinator selects on, and the sending end for the thread.
pub fn channel() -> (Sender<ControlMessage>, Receiver<ControlMessage>) {
    unbounded()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_junk_is_refused() {
        assert_eq!(parse("restart\n"), Ok(ControlRequest::Restart));
        assert_eq!(
            parse("switch v1.2.4\n"),
            Ok(ControlRequest::Switch {
                tag: "v1.2.4".into()
            })
        );
        assert!(parse("switch \n").is_err());
        assert!(parse("reboot\n").unwrap_err().contains("unknown request"));
    }

    #[test]
    fn the_request_line_has_one_deadline_however_its_bytes_trickle_in() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            // A byte every 100 ms: each read is quick, the line never complete.
            for _ in 0..10 {
                if client.write_all(b"r").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let deadline = start + Duration::from_millis(350);
        let refused = read_request(&server, deadline).unwrap_err();
        assert!(
            refused.contains("no whole request line within"),
            "{refused}"
        );
        let took = start.elapsed();
        assert!(took < Duration::from_millis(900), "{took:?}");
        drop(server);
        writer.join().unwrap();

        let (server, mut client) = UnixStream::pair().unwrap();
        client.write_all(b"switch v2\nextra").unwrap();
        let line = read_request(&server, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(
            parse(&line),
            Ok(ControlRequest::Switch { tag: "v2".into() })
        );

        let (server, mut client) = UnixStream::pair().unwrap();
        client.write_all(&[b'x'; 2000]).unwrap();
        let refused = read_request(&server, Instant::now() + Duration::from_secs(5)).unwrap_err();
        assert!(refused.contains("longer than 1024 bytes"), "{refused}");
    }

    #[test]
    fn replies_round_trip_on_one_line() {
        for reply in [
            ControlReply::Progress("stopping v1".into()),
            ControlReply::Done("v2 answers".into()),
            ControlReply::Refused("no\nnewline".into()),
            ControlReply::Failed("x".into()),
        ] {
            let line = format_reply(&reply);
            assert!(!line.contains('\n'));
            let back = parse_reply(&line).unwrap();
            assert_eq!(back.is_final(), reply.is_final());
        }
    }
}
