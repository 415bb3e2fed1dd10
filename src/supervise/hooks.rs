//! Running the operator's hooks (`[hooks]` in config.toml), each on a `visor-hook` thread of
//! its own, never on the coordinator's: the command in its own process group with stdin from
//! `/dev/null`, its output lines copied to Visor's log behind the hook's name (through the
//! bounded reader of [`crate::process::output`]: lines cut at 4096 bytes, at most 1,000 lines
//! or 256 KiB per run, then one line saying what was dropped), killed with its group when it
//! outlives `timeoutSeconds`. When it has exited, every descendant it left — in its group or
//! outside it ([`crate::process::descendants`]) — gets SIGTERM, then SIGKILL after
//! `stopSignalTimeoutSeconds`. The thread reports [`Event::HookStarted`] and
//! [`Event::HookFinished`] and decides nothing.
//!
//! The hooks still running are kept in [`HookGroups`], so that an exiting Visor kills them
//! and what they started ([`HookGroups::kill_all`]): no hook outlives Visor.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::hooks::{HookKind, HOOK_VARIABLES};
use crate::machine::Event;
use crate::ops::log;
use crate::process::descendants::{self, Tree};
use crate::process::output::{self, Budget};
use crate::process::signal::signal_group;
use crate::process::spawn::{self, describe_status, exited_unreaped};
use crate::process::{self, table, Signal};

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
    /// `stopSignalTimeoutSeconds`: how long what the hook left gets between SIGTERM and
    /// SIGKILL.
    pub stop_timeout: Duration,
}

/// The hooks that run now: each one's process group and when it was started.
#[derive(Debug, Clone, Default)]
pub struct HookGroups(Arc<Mutex<BTreeMap<u32, u64>>>);

impl HookGroups {
    fn insert(&self, tree: Tree) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tree.leader, tree.since);
    }

    fn remove(&self, pgid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }

    /// SIGKILL to every running hook's group and to what it started outside it (Visor is
    /// exiting).
    pub fn kill_all(&self) {
        let groups = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (leader, since) in groups {
            log::warn(
                &format!("hooks: killing the hook in process group {leader}: Visor is exiting"),
                &[],
            );
            descendants::kill_once(Tree { leader, since });
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
            let result = execute(&run, &groups, &events);
            let _ = events.send(Event::HookFinished { id, kind, result });
        })
        .map_err(|e| Event::HookFinished {
            id,
            kind,
            result: Err(format!("cannot start the visor-hook thread ({e})")),
        })
}

/// Runs the hook to its end and stops what it left; `Err` says how it failed.
fn execute(run: &HookRun, groups: &HookGroups, events: &Sender<Event>) -> Result<(), String> {
    let name = run.kind.key();
    let since = table::ticks_now();
    let (mut child, output) =
        spawn(run).map_err(|e| format!("cannot run {}: {e}", run.command[0]))?;
    let pgid = child.id();
    let tree = Tree {
        leader: pgid,
        since,
    };
    groups.insert(tree);
    let _ = events.send(Event::HookStarted {
        id: run.id,
        pid: pgid,
    });
    let budget = Arc::new(Budget::per_run());
    let readers: Vec<_> = copy_lines(name, output, budget.clone())
        .into_iter()
        .collect();
    let outcome = wait(&mut child, run.timeout);
    // The hook has exited but is not reaped yet, so its group id stays its own while what
    // it left is stopped.
    stop_leftovers(name, tree, run.stop_timeout);
    let status = child.wait();
    spawn::reaped(pgid);
    groups.remove(pgid);
    let deadline = Instant::now() + OUTPUT_WAIT;
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(dropped) = budget.close().dropped(OUTPUT_LIMITS) {
        log::warn(&format!("hook {name}: {dropped}"), &[]);
    }
    match (outcome, status) {
        (Err(why), _) => Err(why),
        (Ok(()), Ok(status)) if status.success() => Ok(()),
        (Ok(()), Ok(status)) => Err(describe_status(status)),
        (Ok(()), Err(e)) => Err(format!("wait failed: {e}")),
    }
}

/// Starts the hook with its standard output and standard error on one pipe, so that one
/// thread relays both in the order they were written; the hook and that pipe's read end.
fn spawn(run: &HookRun) -> std::io::Result<(Child, std::fs::File)> {
    let (output, writer) = spawn::output_pipe()?;
    let mut command =
        spawn::group_command(std::path::Path::new(&run.command[0]), &run.command[1..]);
    // The variables that do not apply to this run are not passed on from Visor's own
    // environment either.
    for variable in HOOK_VARIABLES {
        command.env_remove(variable);
    }
    command
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdout(writer.try_clone()?)
        .stderr(writer);
    // The hook dies with the thread that started it, which lives until the hook ends: a
    // Visor killed outright takes its hooks along.
    spawn::parent_death_signal(&mut command, Signal::Kill, false);
    let child = spawn::start(&mut command)?;
    // `command`, holding the write ends, is dropped here: the reader sees the end of the
    // output once the hook and what it started have closed theirs.
    Ok((child, output))
}

/// Waits, without reaping, for the hook's exit until `timeout`; past it, kills its group. The
/// first looks come a millisecond apart, then further apart (at most 20 ms), so a quick hook
/// at the upgrade block adds about its own run time to the downtime, not a polling period.
/// `Err` is a time-out or a failed wait; the exit status is read when the hook is reaped.
fn wait(child: &mut Child, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let pid = child.id();
    loop {
        match exited_unreaped(pid) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() >= deadline => {
                signal_group(pid, Signal::Kill);
                while !exited_unreaped(pid).unwrap_or(true) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Err(format!(
                    "still running after timeoutSeconds = {}; killed with its process group",
                    timeout.as_secs()
                ));
            }
            Ok(false) => {
                let pause = (started.elapsed() / 4)
                    .clamp(Duration::from_millis(1), Duration::from_millis(20));
                std::thread::sleep(pause);
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    }
}

/// Stops every descendant the hook left after it exited, in its group and outside it.
fn stop_leftovers(name: &str, tree: Tree, timeout: Duration) {
    let killed = descendants::stop(tree, timeout, |found| {
        log::warn(
            &format!(
                "hook {name}: processes it started still run{}{}; sending them SIGTERM",
                if found.group_alive {
                    " in its process group"
                } else {
                    ""
                },
                match found.strays.len() {
                    0 => String::new(),
                    n => format!(
                        "{} {n} outside it (pid {})",
                        if found.group_alive { " and" } else { "" },
                        found
                            .strays
                            .iter()
                            .map(|s| s.pid.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            ),
            &[("pgid", tree.leader.to_string())],
        );
    });
    if killed {
        log::warn(
            &format!(
                "hook {name}: what it started still ran {} s after SIGTERM (stopSignalTimeoutSeconds); sent SIGKILL",
                timeout.as_secs()
            ),
            &[("pgid", tree.leader.to_string())],
        );
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
