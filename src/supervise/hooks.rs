//! Running the operator's hooks (`[hooks]` in config.toml), each on a `visor-hook` thread of
//! its own, never on the coordinator's: the command in its own process group with stdin from
//! `/dev/null`, its output lines copied to Visor's log behind the hook's name, killed with its
//! group when it outlives `timeoutSeconds`. Processes it leaves in its group when it exits are
//! stopped too (SIGTERM, then SIGKILL after [`LEFTOVER_GRACE`]). The thread reports
//! [`Event::HookFinished`] and decides nothing.
//!
//! The groups of hooks still running are kept in [`HookGroups`], so that an exiting Visor
//! kills them ([`HookGroups::kill_all`]): no hook outlives Visor.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::hooks::{HookKind, HOOK_VARIABLES};
use crate::machine::{Event, StopSignal};
use crate::ops::log;
use crate::supervise::child::{self, describe_status, group_alive, signal_group};

/// How long processes a hook left in its group get between SIGTERM and SIGKILL.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// The longest output line copied to the log; the rest of a longer line is dropped.
const LINE_LIMIT: usize = 4096;

/// One hook to run.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub id: u64,
    pub kind: HookKind,
    pub command: Vec<String>,
    /// `VISOR_*` variables added to Visor's environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The process groups of the hooks that run now.
#[derive(Debug, Clone, Default)]
pub struct HookGroups(Arc<Mutex<BTreeSet<u32>>>);

impl HookGroups {
    fn insert(&self, pgid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
    }

    fn remove(&self, pgid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }

    /// SIGKILL to every running hook's group (Visor is exiting).
    pub fn kill_all(&self) {
        let groups = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for pgid in groups {
            log::warn(
                &format!("hooks: killing the hook in process group {pgid}: Visor is exiting"),
                &[],
            );
            signal_group(pgid, StopSignal::Kill);
        }
    }
}

/// Starts `run` on a `visor-hook` thread; on failure to start, the event that says so.
pub fn start(
    run: HookRun,
    groups: HookGroups,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, Event> {
    let (id, kind) = (run.id, run.kind);
    std::thread::Builder::new()
        .name("visor-hook".into())
        .stack_size(child::SMALL_STACK)
        .spawn(move || {
            let result = execute(&run, &groups);
            let _ = events.send(Event::HookFinished { id, kind, result });
        })
        .map_err(|e| Event::HookFinished {
            id,
            kind,
            result: Err(format!("cannot start the visor-hook thread ({e})")),
        })
}

/// Runs the hook to its end; `Err` says how it failed.
fn execute(run: &HookRun, groups: &HookGroups) -> Result<(), String> {
    let name = run.kind.key();
    let mut child = spawn(run).map_err(|e| format!("cannot run {}: {e}", run.command[0]))?;
    let pgid = child.id();
    groups.insert(pgid);
    if let Some(out) = child.stdout.take() {
        copy_lines(name, out);
    }
    if let Some(err) = child.stderr.take() {
        copy_lines(name, err);
    }
    let outcome = wait(&mut child, run.timeout);
    stop_leftovers(name, pgid);
    groups.remove(pgid);
    outcome
}

fn spawn(run: &HookRun) -> std::io::Result<Child> {
    let mut command = Command::new(&run.command[0]);
    for variable in HOOK_VARIABLES {
        command.env_remove(variable);
    }
    command
        .args(&run.command[1..])
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    child::scrub_environment(&mut command);
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe; it allocates nothing. The hook dies with the thread that started
    // it, which lives until the hook ends: a Visor killed outright takes its hooks along.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Waits for the hook's exit until `timeout`; past it, kills its group. The first looks come
/// a millisecond apart, then further apart (at most 20 ms), so a quick hook at the upgrade
/// block adds about its own run time to the downtime, not a polling period.
fn wait(child: &mut Child, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(describe_status(status)),
            Ok(None) if Instant::now() >= deadline => {
                signal_group(child.id(), StopSignal::Kill);
                let _ = child.wait();
                return Err(format!(
                    "still running after timeoutSeconds = {}; killed with its process group",
                    timeout.as_secs()
                ));
            }
            Ok(None) => {
                let pause = (started.elapsed() / 4)
                    .clamp(Duration::from_millis(1), Duration::from_millis(20));
                std::thread::sleep(pause);
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    }
}

/// Stops what the hook left in its process group after it exited.
fn stop_leftovers(name: &str, pgid: u32) {
    if !group_alive(pgid) {
        return;
    }
    log::warn(
        &format!("hook {name}: processes it started still run; sending them SIGTERM"),
        &[("pgid", pgid.to_string())],
    );
    signal_group(pgid, StopSignal::Term);
    let deadline = Instant::now() + LEFTOVER_GRACE;
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid) {
        signal_group(pgid, StopSignal::Kill);
    }
}

/// Copies each line of a hook's output to the log behind the hook's name, on a thread that
/// ends with the stream.
fn copy_lines<R: Read + Send + 'static>(name: &'static str, stream: R) {
    let _ = std::thread::Builder::new()
        .name("visor-hook-out".into())
        .stack_size(child::SMALL_STACK)
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader
                    .by_ref()
                    .take(LINE_LIMIT as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.len() == LINE_LIMIT && line.last() != Some(&b'\n') {
                    // Drop the rest of an over-long line.
                    let mut rest = Vec::new();
                    let _ = reader.read_until(b'\n', &mut rest);
                }
                let text = String::from_utf8_lossy(&line);
                log::info(
                    &format!("hook {name}: {}", text.trim_end_matches(['\n', '\r'])),
                    &[],
                );
            }
        });
}
