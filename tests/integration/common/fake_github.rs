//! Test support: a fake GitHub (API and download host in one) on 127.0.0.1, scripted per test.
//!
//! It is a small HTTP/1.1 server on its own thread: every path is given a list of
//! replies, used in order, the last one repeating (so "500 twice then OK" is three replies),
//! and every request is recorded with its headers so tests can check what Visor sent. Each
//! connection serves one request and is closed. Unknown paths answer GitHub's 404 JSON.
//! [`FakeGithub::start`] speaks plain HTTP; [`FakeGithub::start_tls`] speaks HTTPS with a
//! certificate of a [`TestCa`](super::tls::TestCa), and records only requests whose TLS
//! handshake succeeded.
//!
//! It must stay a test double: no keep-alive, no request bodies.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::tls::TestCa;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a JSON body and extra headers.
    Json {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// 200 with these bytes and this Content-Type.
    Bytes { body: Vec<u8>, content_type: String },
    /// 302 to this Location (absolute or relative).
    Redirect(String),
    /// 200 claiming `claimed` bytes in Content-Length, sending only `body`, then closing.
    Truncated { body: Vec<u8>, claimed: u64 },
    /// 200 with these bytes, of which the second half comes only after a pause.
    Stalled { body: Vec<u8>, pause: Duration },
    /// 200 with no Content-Length and a body of zeros that never ends, until the client
    /// closes the connection or the server stops.
    Endless,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Reply {
        Reply::Json {
            status: 200,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A status with GitHub's error JSON `{"message": ...}`.
    pub fn status(status: u16, message: &str) -> Reply {
        Reply::Json {
            status,
            body: serde_json::json!({ "message": message }).to_string(),
            headers: Vec::new(),
        }
    }

    /// 200 with `application/octet-stream` bytes.
    pub fn bytes(body: &[u8]) -> Reply {
        Reply::Bytes {
            body: body.to_vec(),
            content_type: "application/octet-stream".to_owned(),
        }
    }
}

/// One request as received: header names lowercased.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, VecDeque<Reply>>,
    requests: Vec<Request>,
}

/// The running server; stopped when dropped.
pub struct FakeGithub {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGithub {
    /// A server speaking plain HTTP.
    pub fn start() -> FakeGithub {
        FakeGithub::start_with(None)
    }

    /// A server speaking HTTPS with a certificate for 127.0.0.1 signed by `ca`.
    pub fn start_tls(ca: &TestCa) -> FakeGithub {
        FakeGithub::start_with(Some(ca.server_config()))
    }

    fn start_with(tls: Option<Arc<ServerConfig>>) -> FakeGithub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else {
                        continue;
                    };
                    match &tls {
                        None => serve(Conn::Plain(stream), &state, &stop),
                        Some(config) => {
                            let Ok(server) = ServerConnection::new(Arc::clone(config)) else {
                                continue;
                            };
                            serve(
                                Conn::Tls(Box::new(StreamOwned::new(server, stream))),
                                &state,
                                &stop,
                            );
                        }
                    }
                }
            })
        };
        FakeGithub {
            addr,
            tls: is_tls,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`, or `https://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Scripts the replies for a path (query strings are part of the path).
    pub fn route(&self, path: &str, replies: Vec<Reply>) {
        let mut state = self.state.lock().unwrap();
        state.routes.insert(path.to_owned(), replies.into());
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests for one path.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One accepted connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(stream) => &stream.sock,
        }
    }

    /// Ends the connection: TLS's close_notify first, then the TCP shutdown.
    fn close(&mut self) -> std::io::Result<()> {
        if let Conn::Tls(stream) = self {
            stream.conn.send_close_notify();
            stream.flush()?;
        }
        self.tcp().shutdown(Shutdown::Both)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(stream) => stream.read(buf),
            Conn::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(stream) => stream.write(buf),
            Conn::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(stream) => stream.flush(),
            Conn::Tls(stream) => stream.flush(),
        }
    }
}

/// Reads one request, records it and answers with the next scripted reply. A TLS connection
/// whose handshake fails (a client that refuses the certificate) is dropped unrecorded.
fn serve(mut stream: Conn, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.tcp().set_read_timeout(Some(Duration::from_secs(5)));
    // Requests have no body, so the reader never holds bytes past the headers.
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    drop(reader);
    let reply = {
        let mut state = state.lock().unwrap();
        state.requests.push(Request {
            method,
            path: path.clone(),
            headers,
        });
        match state.routes.get_mut(&path) {
            Some(replies) if replies.len() > 1 => replies.pop_front(),
            Some(replies) => replies.front().cloned(),
            None => None,
        }
    };
    let reply = reply.unwrap_or_else(|| Reply::status(404, "Not Found"));
    let _ = answer(stream, reply, stop);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes the reply; a stall ends early when the server is stopped.
fn answer(mut stream: Conn, reply: Reply, stop: &AtomicBool) -> std::io::Result<()> {
    if let Reply::Endless = reply {
        stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        )?;
        let zeros = vec![0u8; 64 << 10];
        while !stop.load(Ordering::Relaxed) {
            stream.write_all(&zeros)?;
        }
        return stream.close();
    }
    let mut pause = None;
    let (status, content_type, body, length, extra) = match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => {
            let length = body.len() as u64;
            (
                status,
                "application/json; charset=utf-8".to_owned(),
                body.into_bytes(),
                length,
                headers,
            )
        }
        Reply::Bytes { body, content_type } => {
            let length = body.len() as u64;
            (200, content_type, body, length, Vec::new())
        }
        Reply::Redirect(location) => (
            302,
            "text/html; charset=utf-8".to_owned(),
            Vec::new(),
            0,
            vec![("Location".to_owned(), location)],
        ),
        Reply::Stalled { body, pause: wait } => {
            pause = Some(wait);
            let length = body.len() as u64;
            (
                200,
                "application/octet-stream".to_owned(),
                body,
                length,
                Vec::new(),
            )
        }
        Reply::Endless => unreachable!("answered above"),
        Reply::Truncated { body, claimed } => (
            200,
            "application/octet-stream".to_owned(),
            body,
            claimed,
            Vec::new(),
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n",
        reason(status)
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let (first, second) = body.split_at(if pause.is_some() {
        body.len() / 2
    } else {
        body.len()
    });
    stream.write_all(first)?;
    if let Some(pause) = pause {
        stream.flush()?;
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stream.write_all(second)?;
    stream.flush()?;
    stream.close()
}
