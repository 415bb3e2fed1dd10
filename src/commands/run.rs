//! `visor run`: checks the home folder, then wires the threads to the coordinator and runs
//! until a signal or a fatal error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::unbounded;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::backup;
use crate::config::backup::Backup;
use crate::config::hooks::Hooks;
pub use crate::config::load_config;
use crate::config::run_config::RunConfig;
use crate::config::Config;
use crate::home::supervise_folder::{Lock, LockError, SuperviseFolder};
use crate::home::{Home, Leftovers};
use crate::machine::Machine;
use crate::node::folder_check::load_startable;
use crate::process::descendants::{self, Tree};
use crate::process::identity::{boot_id, Identity};
use crate::process::{group, reaper, signal, table};
use crate::supervise::coordinator::{Channels, Coordinator};
use crate::{
    config::watch, home::permissions, node::poller, ops::log, supervise::control_socket,
    supervise::signals,
};

pub fn run(root: &Path) -> i32 {
    start(root).unwrap_or_else(|code| code)
}

/// The start-up steps in order, then the coordinator; `Err` is the exit status of a start
/// that failed (every problem is logged first).
fn start(root: &Path) -> Result<i32, i32> {
    // Before any thread starts, so that every thread inherits it: SIGCHLD reaches only the
    // signal thread, which unblocks it and reaps orphans.
    reaper::block_child_signal();
    // Visor writes HOME, so it runs as HOME's owner: files made by another user would stop
    // the next start.
    super::refuse_other_user(root)?;
    let home = Home::new(root.to_path_buf());
    let (config, config_bytes) = config_or_exit(&home)?;
    log::configure(config.log_format, config.log_level);
    log::info(
        &format!("visor {} starting", env!("CARGO_PKG_VERSION")),
        &[("home", root.display().to_string())],
    );
    // Lock first. One Visor per home: nothing is written in HOME before the lock is held. And
    // what the start depends on (`current`, its folder) is read only once it is held, so a
    // `visor switch` without a running Visor cannot move `current` between the check and the
    // start.
    let supervise = SuperviseFolder::new(root);
    let _lock = take_lock(&supervise)?;
    let startable = startup_check(&home, &config.hooks).map_err(|problems| {
        for problem in problems {
            log::error(&problem, &[]);
        }
        EXIT_CONFIG
    })?;
    // Handlers first, so a SIGTERM during start-up is not lost.
    let (signal_tx, signal_rx) = unbounded();
    signals::start(signal_tx).map_err(|e| {
        log::error(&format!("cannot install signal handlers: {e}"), &[]);
        EXIT_FAILURE
    })?;
    if let Err(warning) = supervise.read_status_or_warning() {
        log::warn(
            &format!("supervise: ignoring the state a Visor that is gone left: {warning}"),
            &[],
        );
    }
    // Orphans of the nodes and hooks (a process whose parent exited) are re-parented to
    // Visor, so they stay below it and are found, stopped and reaped.
    if let Err(e) = reaper::become_subreaper() {
        log::warn(
            &format!("cannot become a child subreaper ({e}); processes that a node or a hook starts and leaves behind may outlive their stop"),
            &[],
        );
    }
    stop_orphaned_nodes(&supervise, config.stop_signal_timeout);
    stop_orphaned_hooks(&supervise, config.stop_signal_timeout);
    clean_leftovers(&home)?;
    clean_backup_leftovers(&config.backup);
    link_current(&home, &startable)?;
    let channels = start_threads(&home, &supervise, config_bytes, signal_rx)?;
    let machine = machine_for(&home, config, startable.run_config);
    Ok(Coordinator::new(machine, home, channels)
        .with_status_file(supervise)
        .run())
}

/// Removes the `.visor-tmp-*` leftovers of runs that are gone, and says what it did.
fn clean_leftovers(home: &Home) -> Result<(), i32> {
    let leftovers = home.remove_temp_leftovers().map_err(|e| {
        log::error(&cannot_list_home(home.root(), &e), &[]);
        EXIT_CONFIG
    })?;
    for path in leftovers.removed {
        log::info(
            "home: removed leftover of an interrupted run",
            &[("path", path.display().to_string())],
        );
    }
    for (path, pid) in leftovers.kept {
        log::info(
            &format!("home: keeping a half-made folder of process {pid}, which still runs"),
            &[("path", path.display().to_string())],
        );
    }
    // A leftover in the way of nothing must not keep the node down.
    for (path, e) in leftovers.stuck {
        log::warn(
            &Leftovers::stuck_message(&path, &e),
            &[("path", path.display().to_string())],
        );
    }
    Ok(())
}

/// Removes the half-made backups (`.visor-tmp-backup-*`) that a Visor killed during a backup
/// left in `[backup] folder`, and says what it did. Nothing here stops the start: a backup
/// folder that cannot be listed (a disk that is missing) is a warning, and the check of
/// `[backup]` that follows reports it as a problem.
fn clean_backup_leftovers(settings: &Backup) {
    let Some(folder) = settings.folder.as_deref().filter(|_| settings.enabled) else {
        return;
    };
    if !folder.is_absolute() {
        return;
    }
    let leftovers = match backup::remove_leftovers(folder) {
        Ok(leftovers) => leftovers,
        Err(e) => {
            log::warn(
                &format!(
                    "backup: cannot list {} to remove half-made backups ({e}); they are \
                     removed at a later start once it can be listed",
                    folder.display()
                ),
                &[],
            );
            return;
        }
    };
    for path in leftovers.removed {
        log::info(
            "backup: removed the half-made copy of an interrupted backup",
            &[("path", path.display().to_string())],
        );
    }
    for (path, e) in leftovers.stuck {
        log::warn(
            &format!(
                "backup: cannot remove the half-made copy of an interrupted backup ({e}); \
                 remove it by hand: rm -rf {}",
                path.display()
            ),
            &[("path", path.display().to_string())],
        );
    }
}

/// Links `current` to `genesis` when it is missing, and says which version starts.
fn link_current(home: &Home, startable: &Startable) -> Result<(), i32> {
    match home.ensure_current() {
        Ok(true) => log::info("home: linked current to genesis", &[]),
        Ok(false) => {}
        Err(problem) => {
            log::error(&problem, &[]);
            return Err(EXIT_CONFIG);
        }
    }
    log::info(
        &format!("home: current is {}", startable.run_config.name),
        &[("folder", startable.current.display().to_string())],
    );
    Ok(())
}

/// Starts the control socket, the config watcher and the RPC poller, and gathers the
/// channels the coordinator selects on.
fn start_threads(
    home: &Home,
    supervise: &SuperviseFolder,
    config_bytes: Vec<u8>,
    signals: crossbeam_channel::Receiver<crate::machine::ReceivedSignal>,
) -> Result<Channels, i32> {
    let (events_tx, events_rx) = unbounded();
    let (config_tx, config_rx) = unbounded();
    // The two channels the coordinator only sends on are std's: their threads wait on them
    // without crossbeam's spinning, which costs an idle Visor CPU at every wake.
    let (reload_tx, reload_rx) = std::sync::mpsc::sync_channel(1);
    let (poll_tx, poll_rx) = std::sync::mpsc::channel();
    let (polled_tx, polled_rx) = unbounded();
    let (control_tx, control_rx) = control_socket::channel();
    let control = supervise
        .control_address()
        .and_then(|address| control_socket::start(&address, control_tx));
    if let Err(e) = control {
        log::warn(
            &format!("{e}; visor restart and visor switch will not reach this Visor"),
            &[],
        );
    }
    watch::start(home.config_file(), config_bytes, reload_rx, config_tx)
        .and_then(|()| poller::start(poll_rx, polled_tx))
        .map_err(|e| {
            log::error(&format!("cannot start a thread: {e}"), &[]);
            EXIT_FAILURE
        })?;
    Ok(Channels {
        signals,
        configs: config_rx,
        polls: polled_rx,
        events: events_rx,
        events_tx,
        poll_control: poll_tx,
        reload: reload_tx,
        controls: control_rx,
    })
}

/// The machine for the version `current` runs, resuming an upgrade whose new version had
/// not answered when the last Visor stopped.
fn machine_for(home: &Home, config: Config, run_config: RunConfig) -> Machine {
    let mut machine = Machine::new(config, home.root().to_path_buf(), run_config.clone());
    let mark = home.read_upgrade_mark().unwrap_or_else(|warning| {
        log::warn(&format!("home: ignoring the upgrade mark: {warning}"), &[]);
        None
    });
    match mark {
        Some((tag, height)) if tag == run_config.name => {
            log::info(
                &format!(
                    "home: the upgrade to {tag} had not finished; starting it from block {height}"
                ),
                &[],
            );
            machine = machine.with_unfinished_upgrade(height);
        }
        Some(_) => {
            // The switch never happened: the old version runs and will upgrade again.
            let _ = home.clear_upgrade_mark();
        }
        None => {}
    }
    machine
}

/// Creates the supervise folder and takes its lock, or says which Visor holds it. A folder
/// or lock file Visor cannot use (another user's, a link, a read-only file system) is a
/// configuration error.
fn take_lock(supervise: &SuperviseFolder) -> Result<Lock, i32> {
    supervise.lock().map_err(|e| match e {
        LockError::Held(pid) => {
            log::error(
                &format!(
                    "{}: another Visor{} is running on this home; stop it first (systemctl stop zeta-visor), or ask it with visor status, visor restart or visor switch",
                    supervise.lock_file().display(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                &[],
            );
            EXIT_FAILURE
        }
        LockError::Unusable(e) => {
            log::error(&e, &[]);
            EXIT_CONFIG
        }
        LockError::Io(e) => {
            log::error(&e, &[]);
            EXIT_FAILURE
        }
    })
}

/// Stops node processes a Visor that is gone left running (recorded in `status.json`),
/// before anything starts: without this, a core that ignored the parent-death signal would
/// run beside the new one. Each gets SIGTERM with its descendants, `stopSignalTimeoutSeconds`,
/// then SIGKILL. A node process is signalled only when its pid, start time, boot id, uid and
/// executable all match the record and it still leads its own group: never an unrelated
/// process that has the pid now, even after an unclean reboot.
fn stop_orphaned_nodes(supervise: &SuperviseFolder, timeout: Duration) {
    let Some(status) = supervise.read_status() else {
        return;
    };
    let children = status["children"].as_array().cloned().unwrap_or_default();
    for child in children {
        let Some(recorded) = Identity::from_json(&child) else {
            continue;
        };
        let pid = recorded.pid;
        if !recorded.still_runs() || !group::leads_group(pid) {
            continue;
        }
        let process = child["process"].as_str().unwrap_or("node process");
        log::warn(
            &format!("supervise: the {process} (pid {pid}) started by a Visor that is gone still runs; stopping it before anything starts"),
            &[],
        );
        let tree = Tree {
            leader: pid,
            since: recorded.start_time,
        };
        stop_orphan(tree, timeout, &format!("the {process} (pid {pid})"));
    }
}

/// Stops the hooks a Visor that is gone left running (recorded in `status.json`), before
/// anything starts, so a hook's leftovers never run beside its next run. A hook's first
/// process is usually gone (its parent-death signal killed it) while the rest of its group
/// lives on: the group is stopped, with its descendants, when it has members that belong to
/// the recorded boot and session and started at or after the hook.
fn stop_orphaned_hooks(supervise: &SuperviseFolder, timeout: Duration) {
    let Some(status) = supervise.read_status() else {
        return;
    };
    let hooks = status["hooks"]["processes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for hook in hooks {
        let Some(tree) = orphaned_hook(&hook) else {
            continue;
        };
        let name = hook["hook"].as_str().unwrap_or("hook");
        log::warn(
            &format!("hooks: the {name} hook (process group {}) started by a Visor that is gone still runs; stopping it before anything starts", tree.leader),
            &[],
        );
        stop_orphan(
            tree,
            timeout,
            &format!("the {name} hook (process group {})", tree.leader),
        );
    }
}

/// The recorded hook's process group, when members of it still run: in the recorded boot and
/// session, started at or after the hook.
fn orphaned_hook(record: &serde_json::Value) -> Option<Tree> {
    let number = |key: &str| record.get(key).and_then(serde_json::Value::as_u64);
    let pgid = u32::try_from(number("pgid")?).ok()?;
    let sid = u32::try_from(number("sid")?).ok()?;
    let since = number("start_time")?;
    let boot = record.get("boot_id")?.as_str()?;
    if boot_id().as_deref() != Some(boot) || signal::signalable_group(pgid).is_none() {
        return None;
    }
    table::all()
        .iter()
        .any(|s| s.pgid == pgid && s.sid == sid && s.start_time >= since && s.is_live())
        .then_some(Tree {
            leader: pgid,
            since,
        })
}

/// Stops `tree` (its group and its descendants outside it), saying so when SIGKILL is needed.
fn stop_orphan(tree: Tree, timeout: Duration, what: &str) {
    if descendants::stop(tree, timeout, |_| {}) {
        log::warn(
            &format!(
                "supervise: {what} was still running {} s after SIGTERM; sent SIGKILL",
                timeout.as_secs()
            ),
            &[],
        );
    }
}

/// The folder `visor run` starts and its run-config, once HOME passed [`startup_check`].
pub struct Startable {
    /// The folder `current` points at (`genesis` while `current` is missing).
    pub current: PathBuf,
    pub run_config: RunConfig,
}

/// Every rule `visor run` applies to HOME before it starts anything, apart from the contents
/// of config.toml ([`load_config`]): HOME and config.toml are not writable by group or other
/// users, HOME can be listed, `current` is a link to a folder (or missing, with a `genesis` folder to link it
/// to), that folder is startable ([`load_startable`]: its run-config, its binaries and
/// who may write them), and the program of every hook in `hooks` may be run
/// ([`Hooks::program_problems`], the rule a reload applies too). It only reads, so
/// `visor check` applies the very same rules.
pub fn startup_check(home: &Home, hooks: &Hooks) -> Result<Startable, Vec<String>> {
    let config_file = home.config_file();
    let mut problems = permissions::problems(&[
        (home.root(), "HOME"),
        (&config_file, "Visor's configuration"),
    ]);
    // A supervise folder others could write (or a link to one) cannot be trusted.
    problems.extend(SuperviseFolder::new(home.root()).problem());
    problems.extend(hooks.program_problems(&config_file));
    // `run` lists HOME to remove leftovers; one it cannot list stops it.
    if let Err(e) = std::fs::read_dir(home.root()) {
        problems.push(cannot_list_home(home.root(), &e));
    }
    match home.current_folder() {
        Ok((current, _)) => match load_startable(&current) {
            Ok(run_config) if problems.is_empty() => {
                return Ok(Startable {
                    current,
                    run_config,
                })
            }
            Ok(_) => {}
            Err(found) => problems.extend(found),
        },
        Err(problem) => problems.push(problem),
    }
    Err(problems)
}

fn cannot_list_home(root: &Path, e: &std::io::Error) -> String {
    format!(
        "{}: cannot list HOME to remove leftovers of an interrupted run ({e}); make it readable \
         and writable by the user Visor runs as",
        root.display()
    )
}

/// config.toml for a command that cannot go on without it: every problem printed and
/// [`EXIT_CONFIG`] returned as the error.
pub fn config_or_exit(home: &Home) -> Result<(Config, Vec<u8>), i32> {
    load_config(home).map_err(|problems| {
        for problem in problems {
            super::err(&log::escape_controls(&problem));
        }
        EXIT_CONFIG
    })
}
