//! The running core or data node: the state its threads share, the scripted and control-folder
//! upgrade status, the signal and timer threads, crashes and clean stops, and binding the RPC
//! socket.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use signal_hook::consts::SIGTERM;
use signal_hook::iterator::Signals;

use crate::cli::{parse_announce, Announce, Options};
use crate::connection::serve_connection;
use crate::record::{lock, Recorder};
use crate::rpc::UpgradeStatus;
use crate::PROG;

/// Upgrade state changed by the control folder.
#[derive(Debug, Default)]
struct ControlState {
    /// The release announced through `DIR/announce`.
    announce: Option<Announce>,
    /// `DIR/ready` has been seen (it stays true).
    ready: bool,
    /// The `ready` event has been recorded.
    ready_recorded: bool,
    /// The last unusable content of `DIR/announce`, to warn about it once.
    bad_announce: Option<String>,
    /// Status requests answered so far, for `--flap`.
    answered: usize,
}

/// Everything the node's threads share.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    started: Instant,
    recorder: Option<Recorder>,
    control: Mutex<ControlState>,
    /// The device and inode of the socket file this process bound, to remove it at exit.
    bound: Mutex<Option<(u64, u64)>>,
    exiting: AtomicBool,
}

impl Shared {
    /// The state of a node started at `started`, before any request or signal.
    pub(crate) fn new(opts: Options, started: Instant, recorder: Option<Recorder>) -> Shared {
        Shared {
            opts,
            started,
            recorder,
            control: Mutex::new(ControlState::default()),
            bound: Mutex::new(None),
            exiting: AtomicBool::new(false),
        }
    }

    fn record(&self, fields: &[(&str, Value)]) {
        if let Some(recorder) = &self.recorder {
            recorder.event(fields);
        }
    }

    /// The upgrade status now; records `ready` the first time it is true.
    pub(crate) fn status(&self) -> UpgradeStatus {
        let elapsed = self.started.elapsed();
        let mut control = lock(&self.control);
        if !self.opts.flap.is_empty() {
            let turn = control.answered % self.opts.flap.len();
            control.answered += 1;
            return UpgradeStatus {
                accepted: self.opts.flap[turn].clone(),
                ready: false,
            };
        }
        let accepted = control.announce.clone().or_else(|| {
            self.opts
                .announce
                .clone()
                .filter(|_| elapsed >= self.opts.announce_after)
        });
        let ready = accepted.is_some()
            && (control.ready || self.opts.ready_after.is_some_and(|after| elapsed >= after));
        if ready && !control.ready_recorded {
            control.ready_recorded = true;
            self.record(&[("event", "ready".into())]);
        }
        UpgradeStatus { accepted, ready }
    }

    /// Looks at the control folder, as done on every request.
    pub(crate) fn check_control_dir(&self) {
        let Some(dir) = &self.opts.control_dir else {
            return;
        };
        // Only the process that removes the file crashes, should several share the folder.
        if fs::remove_file(dir.join("crash")).is_ok() {
            self.crash(self.opts.exit_code);
        }
        let mut control = lock(&self.control);
        if let Ok(text) = fs::read_to_string(dir.join("announce")) {
            match parse_announce(text.trim()) {
                Ok(announce) => {
                    control.announce = Some(announce);
                    control.bad_announce = None;
                }
                Err(error) => {
                    if control.bad_announce.as_deref() != Some(text.as_str()) {
                        eprintln!(
                            "{PROG}: ignoring {}: {error}",
                            dir.join("announce").display()
                        );
                        control.bad_announce = Some(text);
                    }
                }
            }
        }
        if dir.join("ready").exists() {
            control.ready = true;
        }
    }

    /// Exits with a crash status, leaving the socket file behind as a crashed process would.
    fn crash(&self, code: i32) -> ! {
        self.record(&[
            ("event", "exit".into()),
            ("reason", "crash".into()),
            ("code", code.into()),
        ]);
        process::exit(code);
    }

    /// Removes the socket file if it is still the one this process bound.
    fn remove_socket(&self) {
        let (Some(path), Some((dev, ino))) = (&self.opts.socket, *lock(&self.bound)) else {
            return;
        };
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.dev() == dev && meta.ino() == ino {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Stops after a signal: removes the socket file and exits 0.
    fn stop(&self, reason: &str) -> ! {
        self.remove_socket();
        self.record(&[
            ("event", "exit".into()),
            ("reason", reason.into()),
            ("code", 0.into()),
        ]);
        process::exit(0);
    }
}

/// Spawns a thread, reporting a failure instead of panicking.
fn spawn<F: FnOnce() + Send + 'static>(name: &str, stack: usize, body: F) -> bool {
    match thread::Builder::new()
        .name(name.to_string())
        .stack_size(stack)
        .spawn(body)
    {
        Ok(_) => true,
        Err(error) => {
            eprintln!("{PROG}: cannot start the {name} thread: {error}");
            false
        }
    }
}

/// Stack size of the small helper threads.
const SMALL_STACK: usize = 128 << 10;

/// Handles SIGTERM and SIGINT: each is recorded; the first one not ignored stops the process
/// after `--exit-delay`.
fn start_signal_thread(shared: &Arc<Shared>, mut signals: Signals) {
    let shared = Arc::clone(shared);
    let started = spawn("signals", SMALL_STACK, move || {
        for signal in signals.forever() {
            let (name, reason) = if signal == SIGTERM {
                ("TERM", "sigterm")
            } else {
                ("INT", "sigint")
            };
            shared.record(&[("event", "signal".into()), ("signal", name.into())]);
            if signal == SIGTERM && shared.opts.ignore_sigterm {
                continue;
            }
            if shared.exiting.swap(true, Ordering::SeqCst) {
                continue;
            }
            let stopper = Arc::clone(&shared);
            let delay = shared.opts.exit_delay;
            if delay.is_zero() {
                stopper.stop(reason);
            }
            spawn("stop", SMALL_STACK, move || {
                thread::sleep(delay);
                stopper.stop(reason);
            });
        }
    });
    if !started {
        process::exit(2);
    }
}

/// Starts the timers: `--crash-after`, and the moment `--ready-after` makes the core ready.
fn start_timers(shared: &Arc<Shared>) {
    if let Some(after) = shared.opts.crash_after {
        let shared = Arc::clone(shared);
        spawn("crash-timer", SMALL_STACK, move || {
            thread::sleep(after);
            if let Some(marker) = &shared.opts.crash_once {
                if marker.exists() {
                    return;
                }
                if let Err(error) = File::create(marker) {
                    eprintln!(
                        "{PROG}: cannot create the --crash-once file {}: {error}",
                        marker.display()
                    );
                }
            }
            shared.crash(shared.opts.exit_code);
        });
    }
    if let (Some(_), Some(ready_after)) = (&shared.opts.announce, shared.opts.ready_after) {
        let at = ready_after.max(shared.opts.announce_after);
        let shared = Arc::clone(shared);
        spawn("ready-timer", SMALL_STACK, move || {
            thread::sleep(at.saturating_sub(shared.started.elapsed()));
            shared.status();
        });
    }
}

/// Blocks the calling thread for good; the process ends from another thread.
fn park_forever() -> ! {
    loop {
        thread::park();
    }
}

/// Binds the RPC socket (after `--rpc-after`) and serves connections, one thread each.
fn serve(shared: &Arc<Shared>) -> ! {
    let Some(path) = shared.opts.socket.clone() else {
        park_forever();
    };
    thread::sleep(
        shared
            .opts
            .rpc_after
            .saturating_sub(shared.started.elapsed()),
    );
    // Like the core, remove a stale socket file first.
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => eprintln!(
            "{PROG}: cannot remove the old socket file {}: {error}",
            path.display()
        ),
    }
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "{PROG}: cannot listen on the RPC socket {}: {error}",
                path.display()
            );
            shared.record(&[
                ("event", "exit".into()),
                ("reason", "error".into()),
                ("code", 2.into()),
            ]);
            process::exit(2);
        }
    };
    if let Ok(meta) = fs::symlink_metadata(&path) {
        *lock(&shared.bound) = Some((meta.dev(), meta.ino()));
    }
    shared.record(&[
        ("event", "listening".into()),
        ("socket", path.display().to_string().into()),
    ]);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let shared = Arc::clone(shared);
                spawn("connection", 256 << 10, move || {
                    serve_connection(&shared, stream)
                });
            }
            Err(error) => {
                eprintln!(
                    "{PROG}: accepting on the RPC socket {} failed: {error}",
                    path.display()
                );
                // Out of descriptors or similar: do not spin.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    park_forever();
}

/// `--leave-session`: two `sleep 1000` outside this process's group, as a node's helper that
/// calls `setsid` would be: one stays this process's child, the other is orphaned at once (its
/// parent, a shell, exits). Each pid is recorded.
fn leave_session(shared: &Shared) {
    use std::os::unix::process::CommandExt;
    let mut child = process::Command::new("sleep");
    child
        .arg("1000")
        .stdin(process::Stdio::null())
        .stdout(process::Stdio::null())
        .stderr(process::Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and allocates nothing.
    unsafe {
        child.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match child.spawn() {
        // Never waited for: it is killed with the node's descendants.
        Ok(child) => shared.record(&[
            ("event", "setsid-child".into()),
            ("child", child.id().into()),
        ]),
        Err(error) => eprintln!("{PROG}: --leave-session: cannot start sleep: {error}"),
    }
    let orphan = process::Command::new("/bin/sh")
        .args([
            "-c",
            "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!",
        ])
        .stdin(process::Stdio::null())
        .output();
    match orphan.ok().and_then(|out| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    }) {
        Some(pid) => shared.record(&[("event", "orphan-child".into()), ("child", pid.into())]),
        None => eprintln!("{PROG}: --leave-session: cannot start the orphan"),
    }
}

/// Runs as the core node (`core`) or the data node.
pub(crate) fn run_node(shared: Arc<Shared>, signals: Signals, core: bool) -> ! {
    start_signal_thread(&shared, signals);
    start_timers(&shared);
    if shared.opts.leave_session {
        leave_session(&shared);
    }
    if core && !shared.opts.no_rpc {
        serve(&shared);
    }
    park_forever();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{status, test_shared};

    #[test]
    fn scripted_status() {
        let opts = Options {
            announce: Some(Announce {
                tag: "v9".into(),
                height: 10,
            }),
            ready_after: Some(Duration::ZERO),
            ..Options::default()
        };
        assert_eq!(test_shared(opts).status(), status(Some(("v9", 10)), true));
        let opts = Options {
            announce: Some(Announce {
                tag: "v9".into(),
                height: 10,
            }),
            announce_after: Duration::from_secs(3600),
            ready_after: Some(Duration::ZERO),
            ..Options::default()
        };
        assert_eq!(test_shared(opts).status(), status(None, false));
        let opts = Options {
            ready_after: Some(Duration::ZERO),
            ..Options::default()
        };
        assert_eq!(test_shared(opts).status(), status(None, false));
    }
}
