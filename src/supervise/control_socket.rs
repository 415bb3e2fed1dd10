//! The control socket `HOME/.visor/control` (a UNIX stream socket, mode 0600) and its two
//! ends: the `visor-control` thread of `visor run`, which turns each connection into one
//! request for the coordinator and writes its answers back, and the client used by
//! `visor restart` and `visor switch`.
//!
//! The protocol is lines of text. The client sends one request line, `restart` or
//! `switch TAG`; Visor answers with any number of `progress MESSAGE` lines and one final line,
//! `done MESSAGE`, `refused MESSAGE` (nothing was changed) or `failed MESSAGE`, then closes.
//!
//! The thread decides nothing: the state machine says whether a request is carried out.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::machine::{ControlReply, ControlRequest};

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request line.
const REQUEST_LIMIT: u64 = 1024;
/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 4;

/// A request on its way to the coordinator, with where its answers go.
pub struct ControlMessage {
    pub request: ControlRequest,
    pub replies: Sender<ControlReply>,
}

/// Binds the socket (replacing a stale one left by a Visor that is gone: the caller holds the
/// lock) and starts the thread.
pub fn start(path: &Path, requests: Sender<ControlMessage>) -> Result<(), String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        format!(
            "{}: cannot create the control socket ({e}); remove whatever is there",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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
        let _ = writeln!(&stream, "refused too many requests at once; try again");
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
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new(&stream)
        .take(REQUEST_LIMIT)
        .read_line(&mut line);
    let mut writer = &stream;
    let request = match read.map_err(|e| e.to_string()).and_then(|_| parse(&line)) {
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

/// Sends `request` to the Visor listening on `socket` and returns its final answer, giving
/// each progress line to `progress`. Waits at most `timeout` in all.
pub fn request(
    socket: &Path,
    request: &ControlRequest,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<ControlReply, String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!("{shown}: cannot connect ({e}); is visor run running on this home?")
    })?;
    stream
        .write_all(format!("{}\n", format_request(request)).as_bytes())
        .map_err(|e| format!("{shown}: cannot send the request ({e})"))?;
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no final answer from Visor within {} s; see visor status and Visor's log",
                timeout.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                return Err(format!(
                    "{shown}: Visor closed the connection without a final answer; see its log"
                ))
            }
            Ok(_) => match parse_reply(line.trim_end()) {
                Some(ControlReply::Progress(text)) => progress(&text),
                Some(reply) => return Ok(reply),
                None => return Err(format!("{shown}: unexpected answer {:?}", line.trim_end())),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("{shown}: {e}")),
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
