//! Running the operator's hooks (`[hooks]` in config.toml), each on a `visor-hook` thread of
//! its own, never on the coordinator's: the command in its own process group with stdin from
//! `/dev/null`, its output lines copied to Visor's log behind the hook's name (through the
//! bounded reader of [`crate::process::output`]: lines cut at 4096 bytes, at most 1,000 lines
//! or 256 KiB per run, then one line saying what was dropped), killed with its group when it
//! outlives `timeoutSeconds`. Processes it leaves in its group when it exits are
//! stopped too (SIGTERM, then SIGKILL after [`LEFTOVER_GRACE`]). The thread reports
//! [`Event::HookFinished`] and decides nothing.
//!
//! The groups of hooks still running are kept in [`HookGroups`], so that an exiting Visor
//! kills them ([`HookGroups::kill_all`]): no hook outlives Visor.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::hooks::HookKind;
use crate::machine::Event;
use crate::ops::log;
use crate::process::group::group_alive;
use crate::process::output::{self, Budget};
use crate::process::signal::signal_group;
use crate::process::spawn::{self, describe_status};
use crate::process::{self, Signal};

/// How long processes a hook left in its group get between SIGTERM and SIGKILL.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// How long, after the hook and what it left are gone, its output is still read before the
/// run's last line (what was dropped) is logged.
const OUTPUT_WAIT: Duration = Duration::from_secs(1);
/// The limits of one run's log, as the line about dropped output names them.
const OUTPUT_LIMITS: &str =
    "a hook run logs at most 1000 lines or 256 KiB, and 4096 bytes of a line";

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
            signal_group(pgid, Signal::Kill);
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
        .stack_size(process::SMALL_STACK)
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
    let budget = Arc::new(Budget::per_run());
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.extend(copy_lines(name, out, budget.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.extend(copy_lines(name, err, budget.clone()));
    }
    let outcome = wait(&mut child, run.timeout);
    stop_leftovers(name, pgid);
    groups.remove(pgid);
    let deadline = Instant::now() + OUTPUT_WAIT;
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(dropped) = budget.close().dropped(OUTPUT_LIMITS) {
        log::warn(&format!("hook {name}: {dropped}"), &[]);
    }
    outcome
}

fn spawn(run: &HookRun) -> std::io::Result<Child> {
    let mut command = Command::new(&run.command[0]);
    command
        .args(&run.command[1..])
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    spawn::scrub_environment(&mut command);
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
                signal_group(child.id(), Signal::Kill);
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
    signal_group(pgid, Signal::Term);
    let deadline = Instant::now() + LEFTOVER_GRACE;
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid) {
        signal_group(pgid, Signal::Kill);
    }
}

/// Copies each line of a hook's output that `budget` admits to the log behind the hook's
/// name, on a thread that ends with the stream; the thread, if it started.
fn copy_lines<R: Read + Send + 'static>(
    name: &'static str,
    stream: R,
    budget: Arc<Budget>,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("visor-hook-out".into())
        .stack_size(process::SMALL_STACK)
        .spawn(move || {
            output::relay(stream, &budget, |line| {
                let text = String::from_utf8_lossy(line);
                log::info(
                    &format!("hook {name}: {}", text.trim_end_matches('\r')),
                    &[],
                );
            });
        })
        .ok()
}
