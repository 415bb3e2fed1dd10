//! `visor run`: checks the home folder, then wires the threads to the coordinator and runs
//! until a signal or a fatal error.

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;
use crate::coordinator::{Channels, Coordinator};
use crate::folder_check::load_startable;
use crate::home::Home;
use crate::machine::{Machine, StopSignal};
use crate::supervise_folder::{process_start_time, Lock, LockError, SuperviseFolder};
use crate::{child, config_watch, control, log, rpc_poll, signals};

pub fn run(root: &Path) -> i32 {
    let home = Home::new(root.to_path_buf());
    let (config, config_bytes) = match config_or_exit(&home) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    log::configure(config.log_format, config.log_level);
    log::info(
        &format!("visor {} starting", env!("CARGO_PKG_VERSION")),
        &[("home", root.display().to_string())],
    );

    // One Visor per home: nothing is touched before the lock is held.
    let supervise = SuperviseFolder::new(root);
    let _lock = match take_lock(&supervise) {
        Ok(lock) => lock,
        Err(code) => return code,
    };

    // Handlers first, so a SIGTERM during start-up is not lost.
    let (signal_tx, signal_rx) = unbounded();
    if let Err(e) = signals::start(signal_tx) {
        log::error(&format!("cannot install signal handlers: {e}"), &[]);
        return EXIT_FAILURE;
    }
    stop_orphaned_nodes(&supervise, config.stop_signal_timeout);

    match home.remove_temp_leftovers() {
        Ok(removed) => {
            for path in removed {
                log::info(
                    "home: removed leftover of an interrupted run",
                    &[("path", path.display().to_string())],
                );
            }
        }
        Err(e) => {
            log::error(
                &format!(
                    "{}: cannot list or clean ({e}); check its permissions",
                    root.display()
                ),
                &[],
            );
            return EXIT_CONFIG;
        }
    }
    match home.ensure_current() {
        Ok(true) => log::info("home: linked current to genesis", &[]),
        Ok(false) => {}
        Err(problem) => {
            log::error(&problem, &[]);
            return EXIT_CONFIG;
        }
    }
    let current = match home.current_target() {
        Ok(target) => target,
        Err(e) => {
            log::error(&format!("{}: {e}", home.current_link().display()), &[]);
            return EXIT_CONFIG;
        }
    };
    let run_config = match load_startable(&current) {
        Ok(run_config) => run_config,
        Err(problems) => {
            for problem in problems {
                log::error(&problem, &[]);
            }
            return EXIT_CONFIG;
        }
    };
    log::info(
        &format!("home: current is {}", run_config.name),
        &[("folder", current.display().to_string())],
    );

    let (events_tx, events_rx) = unbounded();
    let (config_tx, config_rx) = unbounded();
    let (reload_tx, reload_rx) = bounded(1);
    let (poll_tx, poll_rx) = unbounded();
    let (polled_tx, polled_rx) = unbounded();
    let (control_tx, control_rx) = control::channel();
    if let Err(e) = control::start(&supervise.control_socket(), control_tx) {
        log::warn(
            &format!("{e}; visor restart and visor switch will not reach this Visor"),
            &[],
        );
    }
    let started = config_watch::start(home.config_file(), config_bytes, reload_rx, config_tx)
        .and_then(|()| rpc_poll::start(poll_rx, polled_tx));
    if let Err(e) = started {
        log::error(&format!("cannot start a thread: {e}"), &[]);
        return EXIT_FAILURE;
    }
    let mut machine = Machine::new(config, root.to_path_buf(), run_config.clone());
    match home.read_upgrade_mark() {
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
    let channels = Channels {
        signals: signal_rx,
        configs: config_rx,
        polls: polled_rx,
        events: events_rx,
        events_tx,
        poll_control: poll_tx,
        reload: reload_tx,
        controls: control_rx,
    };
    Coordinator::new(machine, home, channels)
        .with_status_file(supervise)
        .run()
}

/// Creates the supervise folder and takes its lock, or says which Visor holds it.
fn take_lock(supervise: &SuperviseFolder) -> Result<Lock, i32> {
    if let Err(e) = supervise.create() {
        log::error(&e, &[]);
        return Err(EXIT_CONFIG);
    }
    supervise.lock().map_err(|e| {
        match e {
            LockError::Held(pid) => log::error(
                &format!(
                    "{}: another Visor{} is running on this home; stop it first (systemctl stop visor), or ask it with visor status, visor restart or visor switch",
                    supervise.lock_file().display(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
                &[],
            ),
            LockError::Io(e) => log::error(&e, &[]),
        }
        EXIT_FAILURE
    })
}

/// Stops node processes a Visor that is gone left running (recorded in `status.json`, same pid
/// and start time): SIGTERM to the process group, `stopSignalTimeoutSeconds`, then SIGKILL.
/// Without this, a core that ignored the parent-death signal would run beside the new one.
fn stop_orphaned_nodes(supervise: &SuperviseFolder, timeout: Duration) {
    let Some(status) = supervise.read_status() else {
        return;
    };
    let children = status["children"].as_array().cloned().unwrap_or_default();
    for child in children {
        let (Some(pid), Some(start_time)) = (child["pid"].as_u64(), child["start_time"].as_u64())
        else {
            continue;
        };
        let Ok(pid) = u32::try_from(pid) else {
            continue;
        };
        if process_start_time(pid) != Some(start_time) {
            continue;
        }
        let process = child["process"].as_str().unwrap_or("node process");
        log::warn(
            &format!("supervise: the {process} (pid {pid}) started by a Visor that is gone still runs; stopping it before anything starts"),
            &[],
        );
        child::signal_group(pid, StopSignal::Term);
        let deadline = Instant::now() + timeout;
        while child::group_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child::group_alive(pid) {
            log::warn(
                &format!("supervise: the {process} (pid {pid}) is still running {} s after SIGTERM; sending SIGKILL", timeout.as_secs()),
                &[],
            );
            child::signal_group(pid, StopSignal::Kill);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child::group_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// config.toml for a command that cannot go on without it: every problem printed and
/// [`EXIT_CONFIG`] returned as the error.
pub fn config_or_exit(home: &Home) -> Result<(Config, Vec<u8>), i32> {
    load_config(home).map_err(|problems| {
        for problem in problems {
            super::err(&problem);
        }
        EXIT_CONFIG
    })
}

/// Reads and parses config.toml; also returns the bytes, so the watcher knows the baseline.
pub fn load_config(home: &Home) -> Result<(Config, Vec<u8>), Vec<String>> {
    let file = home.config_file();
    if !home.root().is_dir() {
        return Err(vec![format!(
            "{}: no such folder; create it with visor init --home {}",
            home.root().display(),
            home.root().display()
        )]);
    }
    let bytes = std::fs::read(&file).map_err(|e| {
        vec![format!(
            "{}: cannot read ({e}); create it with visor init or restore it (every key is optional, see visor-config(5))",
            file.display()
        )]
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        vec![format!(
            "{}: not valid UTF-8 ({e}); save it as UTF-8",
            file.display()
        )]
    })?;
    let config = Config::parse(&file, text)?;
    Ok((config, bytes))
}
