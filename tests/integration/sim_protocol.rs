//! Integration tests of the `zeta-core-sim` binary: its admin RPC must answer every request
//! Visor sends as the real core's Go server does, follow its upgrade script, answer the
//! `version` and `network-history` subcommands, and stop cleanly on SIGTERM.
//!
//! Each test runs the built binary in its own folder under the system temporary folder and talks
//! raw HTTP/1.1 to it over the UNIX socket. Waits poll with a deadline; a guard kills the
//! simulator when a test fails.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The simulator built by Cargo for these tests.
const SIM: &str = env!("CARGO_BIN_EXE_zeta-core-sim");

/// How long any wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A well-formed status request.
const STATUS: &str = r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":1}"#;

/// A folder under the system temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "zcs-{}-{name}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns something or the deadline passes.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running simulator, killed when dropped.
struct Sim {
    child: Child,
    socket: PathBuf,
    record: PathBuf,
    /// Holds the simulator's folder until the simulator is gone.
    _dir: TempDir,
}

impl Sim {
    /// Starts `zeta-core-sim --socket S --record R OPTIONS start --home /x`.
    fn start(name: &str, options: &[&str]) -> Sim {
        Sim::start_with(name, options, &["start", "--home", "/x"])
    }

    fn start_with(name: &str, options: &[&str], args: &[&str]) -> Sim {
        let dir = TempDir::new(name);
        let socket = dir.0.join("core.sock");
        let record = dir.0.join("record.jsonl");
        let child = Command::new(SIM)
            .arg("--socket")
            .arg(&socket)
            .arg("--record")
            .arg(&record)
            .args(options)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start zeta-core-sim");
        Sim {
            child,
            socket,
            record,
            _dir: dir,
        }
    }

    /// Waits until the socket accepts connections.
    fn ready(self) -> Sim {
        wait_for("the RPC socket", || {
            UnixStream::connect(&self.socket).ok().map(|_| ())
        });
        self
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the simulator this test started.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill {signal} failed");
    }

    /// Waits for the simulator to exit.
    fn exit_status(&mut self) -> ExitStatus {
        wait_for("the simulator to exit", || {
            self.child.try_wait().expect("wait for the simulator")
        })
    }

    /// The events recorded so far.
    fn records(&self) -> Vec<Value> {
        records(&self.record)
    }

    /// Waits for a recorded event.
    fn wait_event(&self, event: &str) -> Value {
        wait_for(&format!("the {event} event"), || {
            self.records().into_iter().find(|r| r["event"] == event)
        })
    }

    /// Sends one request on a new connection and reads the answer.
    fn send(&self, raw: &str) -> Answer {
        let mut conn = Conn::open(&self.socket);
        conn.send(raw);
        conn.answer()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a record file.
fn records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each record line is JSON"))
        .collect()
}

/// A parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Number of non-empty chunks when the body was chunked.
    chunks: usize,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// A client connection.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn open(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to the simulator");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("set a read timeout");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone the stream")),
            writer: stream,
        }
    }

    fn send(&mut self, raw: &str) {
        self.writer
            .write_all(raw.as_bytes())
            .expect("send the request");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    fn answer(&mut self) -> Answer {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect("a header line");
            headers.push((name.to_string(), value.to_string()));
        }
        let mut answer = Answer {
            status_line,
            status,
            headers,
            body: String::new(),
            chunks: 0,
        };
        let mut body = Vec::new();
        if answer.header("Transfer-Encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("a chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "", "no trailer expected");
                    break;
                }
                answer.chunks += 1;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("read a chunk");
                assert!(chunk.ends_with(b"\r\n"));
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = answer.header("Content-Length") {
            body.resize(length.parse().expect("a length"), 0);
            self.reader.read_exact(&mut body).expect("read the body");
        } else {
            self.reader.read_to_end(&mut body).expect("read to the end");
        }
        answer.body = String::from_utf8(body).expect("a text body");
        answer
    }

    /// Whether the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// A POST to `path` with the given content type (none when empty) and body.
fn post(path: &str, content_type: &str, body: &str) -> String {
    let content_type = if content_type.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: unix\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A status call with the given body.
fn rpc(body: &str) -> String {
    post("/rpc", "application/json", body)
}

/// Checks a gorilla/rpc or net/http plain-text error answer.
fn assert_text_error(answer: &Answer, status: u16, body: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.body, body, "{answer:?}");
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; charset=utf-8"),
        "{answer:?}"
    );
    assert!(answer.header("Date").is_some(), "{answer:?}");
}

#[test]
fn every_row_of_the_spec_table() {
    let sim = Sim::start("table", &[]).ready();

    let answer = sim.send(&rpc(STATUS));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        answer.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        answer.body,
        "{\"result\":{\"AcceptedReleaseInfo\":null,\"ReadyToUpgrade\":false},\"error\":null,\"id\":1}\n"
    );
    assert!(answer.header("Date").is_some());

    let answer = sim.send(&post("/other", "application/json", STATUS));
    assert_text_error(&answer, 404, "404 page not found\n");
    assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));

    let answer = sim.send("GET /rpc HTTP/1.1\r\nHost: unix\r\n\r\n");
    assert_text_error(&answer, 405, "rpc: POST method required, received GET");

    let answer = sim.send(&post("/rpc", "text/plain", STATUS));
    assert_text_error(&answer, 415, "rpc: unrecognized Content-Type: text/plain");
    let answer = sim.send(&post("/rpc", "", STATUS));
    assert_text_error(&answer, 415, "rpc: unrecognized Content-Type: ");
    // Parameters after `;` are ignored, and the media type is compared without case.
    let answer = sim.send(&post("/rpc", "Application/JSON; charset=UTF-8", STATUS));
    assert_eq!(answer.status, 200, "{answer:?}");

    let answer = sim.send(&rpc("xyz"));
    assert_text_error(
        &answer,
        400,
        "invalid character 'x' looking for beginning of value",
    );
    let answer = sim.send(&rpc(""));
    assert_text_error(&answer, 400, "EOF");

    let answer = sim.send(&rpc(
        r#"{"method":"protocolupgrade.Nope","params":[null],"id":1}"#,
    ));
    assert_text_error(
        &answer,
        400,
        "rpc: can't find method \"protocolupgrade.Nope\"",
    );
    let answer = sim.send(&rpc(r#"{"method":"Nope","params":[null],"id":1}"#));
    assert_text_error(
        &answer,
        400,
        "rpc: service/method request ill-formed: \"Nope\"",
    );

    for body in [
        r#"{"method":"protocolupgrade.UpgradeStatus","id":1}"#,
        r#"{"method":"protocolupgrade.UpgradeStatus","params":null,"id":1}"#,
    ] {
        let answer = sim.send(&rpc(body));
        assert_text_error(
            &answer,
            400,
            "rpc: method request ill-formed: missing params field",
        );
    }

    for body in [
        r#"{"method":"protocolupgrade.UpgradeStatus","params":[null]}"#,
        r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":null}"#,
    ] {
        let answer = sim.send(&rpc(body));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, "");
        assert_eq!(answer.header("Content-Type"), None);
        assert_eq!(answer.header("Content-Length"), Some("0"));
    }

    // The id comes back as given (compacted, as Go re-encodes it).
    let answer = sim.send(&rpc(
        r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":"abc"}"#,
    ));
    assert_eq!(answer.json()["id"], "abc");

    // No Host header: Go's raw answer, then the connection is closed.
    let mut conn = Conn::open(&sim.socket);
    conn.send(&format!(
        "POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STATUS}",
        STATUS.len()
    ));
    let answer = conn.answer();
    assert_eq!(
        answer.status_line,
        "HTTP/1.1 400 Bad Request: missing required Host header"
    );
    assert_eq!(answer.body, "400 Bad Request: missing required Host header");
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(conn.closed());
}

#[test]
fn connections_are_kept_alive() {
    let sim = Sim::start("keepalive", &[]).ready();
    let mut conn = Conn::open(&sim.socket);
    conn.send(&rpc(STATUS));
    assert_eq!(conn.answer().status, 200);
    conn.send(&rpc(STATUS));
    let answer = conn.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Connection"), None);

    // Connection: close is honoured and announced.
    conn.send(&format!(
        "POST /rpc HTTP/1.1\r\nHost: unix\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STATUS}",
        STATUS.len()
    ));
    let answer = conn.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(conn.closed());

    // HTTP/1.0 closes after one answer.
    let mut conn = Conn::open(&sim.socket);
    conn.send(&format!(
        "POST /rpc HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STATUS}",
        STATUS.len()
    ));
    let answer = conn.answer();
    assert_eq!(answer.status_line, "HTTP/1.0 200 OK");
    assert!(conn.closed());
}

#[test]
fn announced_release_becomes_ready_on_schedule() {
    let sim = Sim::start(
        "schedule",
        &[
            "--announce",
            "v1.3.0@1200000",
            "--announce-after",
            "200ms",
            "--ready-after",
            "600ms",
        ],
    )
    .ready();
    let mut seen = Vec::new();
    let result = wait_for("ReadyToUpgrade", || {
        let result = sim.send(&rpc(STATUS)).json()["result"].clone();
        let state = match (&result["AcceptedReleaseInfo"], &result["ReadyToUpgrade"]) {
            (Value::Null, Value::Bool(false)) => 0,
            (Value::Object(_), Value::Bool(false)) => 1,
            (Value::Object(_), Value::Bool(true)) => 2,
            other => panic!("unexpected status {other:?}"),
        };
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        (state == 2).then_some(result)
    });
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "states went back: {seen:?}"
    );
    assert_eq!(
        result["AcceptedReleaseInfo"],
        serde_json::json!({"VegaReleaseTag": "v1.3.0", "UpgradeBlockHeight": 1_200_000u64})
    );
    let start = sim.wait_event("start");
    let ready = sim.wait_event("ready");
    let after = ready["t_ns"].as_u64().expect("t_ns") - start["t_ns"].as_u64().expect("t_ns");
    assert!(after >= 600_000_000, "ready after {after} ns");
}

#[test]
fn control_folder_drives_the_upgrade() {
    let control = TempDir::new("control");
    let control_dir = control.0.to_str().expect("UTF-8 path");
    let mut sim = Sim::start("control", &["--control-dir", control_dir]).ready();
    let status = |sim: &Sim| sim.send(&rpc(STATUS)).json()["result"].clone();
    assert_eq!(status(&sim)["AcceptedReleaseInfo"], Value::Null);

    fs::write(control.0.join("announce"), "v2.0.0@500\n").expect("write announce");
    let result = status(&sim);
    assert_eq!(result["AcceptedReleaseInfo"]["VegaReleaseTag"], "v2.0.0");
    assert_eq!(result["AcceptedReleaseInfo"]["UpgradeBlockHeight"], 500);
    assert_eq!(result["ReadyToUpgrade"], false);

    fs::write(control.0.join("ready"), "").expect("write ready");
    assert_eq!(status(&sim)["ReadyToUpgrade"], true);
    sim.wait_event("ready");

    fs::write(control.0.join("crash"), "").expect("write crash");
    let mut conn = Conn::open(&sim.socket);
    conn.send(&rpc(STATUS));
    assert!(conn.closed());
    assert_eq!(sim.exit_status().code(), Some(3));
    assert!(!control.0.join("crash").exists());
    let exit = sim.wait_event("exit");
    assert_eq!(exit["reason"], "crash");
    assert_eq!(exit["code"], 3);
}

#[test]
fn tag_field_can_be_named_zeta() {
    let sim = Sim::start(
        "zetatag",
        &["--announce", "v1.3.0@7", "--tag-field", "ZetaReleaseTag"],
    )
    .ready();
    let result = sim.send(&rpc(STATUS)).json();
    assert_eq!(
        result["result"]["AcceptedReleaseInfo"],
        serde_json::json!({"ZetaReleaseTag": "v1.3.0", "UpgradeBlockHeight": 7})
    );
}

#[test]
fn chunked_answers() {
    let sim = Sim::start("chunked", &["--chunked-rpc", "--announce", "v1@1"]).ready();
    let mut conn = Conn::open(&sim.socket);
    conn.send(&rpc(STATUS));
    let answer = conn.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(answer.header("Content-Length"), None);
    assert!(answer.chunks >= 2, "{answer:?}");
    assert_eq!(
        answer.json()["result"]["AcceptedReleaseInfo"]["VegaReleaseTag"],
        "v1"
    );
    // The connection stays usable after a chunked answer.
    conn.send(&rpc(STATUS));
    assert_eq!(conn.answer().status, 200);

    // Chunked requests are read too.
    let body = STATUS;
    let (a, b) = body.split_at(10);
    conn.send(&format!(
        "POST /rpc HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    ));
    assert_eq!(conn.answer().status, 200);
}

#[test]
fn faulty_rpc_modes() {
    let sim = Sim::start("garble", &["--garble-rpc"]).ready();
    let answer = sim.send(&rpc(STATUS));
    assert_eq!(answer.status, 200);
    assert!(serde_json::from_str::<Value>(&answer.body).is_err());

    let sim = Sim::start("slow", &["--slow-rpc", "300ms"]).ready();
    let start = Instant::now();
    assert_eq!(sim.send(&rpc(STATUS)).status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    let sim = Sim::start("hang", &["--hang-rpc"]).ready();
    let mut conn = Conn::open(&sim.socket);
    conn.writer
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set a read timeout");
    conn.send(&rpc(STATUS));
    let mut byte = [0u8; 1];
    let error = conn.reader.read(&mut byte).expect_err("no answer expected");
    assert!(matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
}

#[test]
fn socket_is_bound_late_with_rpc_after() {
    let sim = Sim::start("late", &["--rpc-after", "400ms"]).ready();
    let start = sim.wait_event("start");
    let listening = sim.wait_event("listening");
    assert_eq!(
        listening["socket"],
        sim.socket.to_str().expect("UTF-8 path")
    );
    let after = listening["t_ns"].as_u64().expect("t_ns") - start["t_ns"].as_u64().expect("t_ns");
    assert!(after >= 400_000_000, "bound after {after} ns");
}

#[test]
fn start_is_recorded_with_the_passed_arguments() {
    let sim = Sim::start_with(
        "args",
        &["--sim-version", "v2"],
        &[
            "start",
            "--home",
            "/x",
            "--snapshot.load-from-block-height",
            "120",
        ],
    )
    .ready();
    let start = sim.wait_event("start");
    assert_eq!(start["mode"], "core");
    assert_eq!(start["version"], "v2");
    assert_eq!(start["pid"], sim.pid());
    assert!(start["pgid"].is_i64() && start["ppid"].is_i64());
    assert_eq!(
        start["args"],
        serde_json::json!([
            "start",
            "--home",
            "/x",
            "--snapshot.load-from-block-height",
            "120"
        ])
    );
    assert!(start["t_ns"].as_u64().expect("t_ns") > 1_600_000_000_000_000_000);
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut sim = Sim::start("sigterm", &[]).ready();
    assert!(sim.socket.exists());
    sim.signal(libc::SIGTERM);
    let status = sim.exit_status();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!sim.socket.exists());
    let events: Vec<Value> = sim
        .records()
        .into_iter()
        .map(|r| r["event"].clone())
        .collect();
    assert_eq!(events, ["start", "listening", "signal", "exit"]);
    let exit = sim.wait_event("exit");
    assert_eq!(exit["reason"], "sigterm");
    assert_eq!(exit["code"], 0);
}

#[test]
fn ignored_sigterm_needs_sigkill() {
    let mut sim = Sim::start("ignore", &["--ignore-sigterm"]).ready();
    sim.signal(libc::SIGTERM);
    let signal = sim.wait_event("signal");
    assert_eq!(signal["signal"], "TERM");
    // Still serving after the signal was handled.
    assert_eq!(sim.send(&rpc(STATUS)).status, 200);
    assert!(sim.child.try_wait().expect("wait").is_none());
    sim.signal(libc::SIGKILL);
    assert_eq!(sim.exit_status().signal(), Some(libc::SIGKILL));
}

#[test]
fn crash_once_crashes_only_the_first_time() {
    let marker_dir = TempDir::new("marker");
    let marker = marker_dir.0.join("crashed");
    let marker_arg = marker.to_str().expect("UTF-8 path");
    let options = [
        "--crash-after",
        "100ms",
        "--exit-code",
        "5",
        "--crash-once",
        marker_arg,
    ];
    let mut first = Sim::start("crash1", &options);
    assert_eq!(first.exit_status().code(), Some(5));
    assert!(marker.exists());
    let exit = first.wait_event("exit");
    assert_eq!(exit["reason"], "crash");

    let mut second = Sim::start("crash2", &options).ready();
    // The crash timer has fired by the time a request is answered after 300 ms.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(second.send(&rpc(STATUS)).status, 200);
    assert!(second.child.try_wait().expect("wait").is_none());
    second.signal(libc::SIGTERM);
    assert_eq!(second.exit_status().code(), Some(0));
}

#[test]
fn datanode_lives_until_sigterm() {
    let mut sim = Sim::start_with(
        "datanode",
        &["--exit-delay", "100ms"],
        &["datanode", "start", "--home", "/d"],
    );
    let start = sim.wait_event("start");
    assert_eq!(start["mode"], "datanode");
    assert_eq!(
        start["args"],
        serde_json::json!(["datanode", "start", "--home", "/d"])
    );
    sim.signal(libc::SIGTERM);
    assert_eq!(sim.exit_status().code(), Some(0));
    assert!(!sim.socket.exists());
    assert_eq!(sim.wait_event("exit")["reason"], "sigterm");
}

/// Runs the simulator to completion.
fn run(args: &[&str]) -> Output {
    Command::new(SIM)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zeta-core-sim")
}

#[test]
fn version_subcommand() {
    let dir = TempDir::new("version");
    let record = dir.0.join("record.jsonl");
    let out = run(&[
        "--sim-version",
        "v1.3.0",
        "--record",
        record.to_str().expect("UTF-8 path"),
        "version",
        "--output",
        "json",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"version\":\"v1.3.0\",\"hash\":\"sim\"}\n"
    );
    let events = records(&record);
    assert_eq!(events[0]["mode"], "version");
    assert_eq!(
        events[0]["args"],
        serde_json::json!(["version", "--output", "json"])
    );

    let out = run(&["version", "--output", "json"]);
    let version: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(version["version"], "v0.0.0");
}

#[test]
fn network_history_subcommand() {
    let out = run(&[
        "--segment-height",
        "5000",
        "datanode",
        "network-history",
        "latest-history-segment",
        "--output",
        "json",
        "--home",
        "/d",
    ]);
    assert!(out.status.success());
    let segment: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(segment["LatestSegment"]["to_height"], 5000);
    assert_eq!(segment["LatestSegment"]["from_height"], 4001);
    assert!(segment["LatestSegment"]["history_segment_id"]
        .as_str()
        .expect("an id")
        .starts_with("Qm"));

    let out = run(&[
        "--no-segments",
        "network-history",
        "latest-history-segment",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no history segments found"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no history segments found"));
}

#[test]
fn bad_command_lines_exit_2_naming_the_problem() {
    for (args, needle) in [
        (&["--bogus", "start"][..], "--bogus"),
        (&["--crash-after", "soon", "start"][..], "--crash-after"),
        (&["start"][..], "--socket"),
        (&["frobnicate"][..], "frobnicate"),
        (&[][..], "subcommand"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
