//! `visor run`: checks the home folder, then wires the threads to the coordinator and runs
//! until a signal or a fatal error.

use std::path::Path;

use crossbeam_channel::{bounded, unbounded};

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{read_config_file, Config};
use crate::coordinator::{Channels, Coordinator};
use crate::folder_check::load_startable;
use crate::home::Home;
use crate::machine::Machine;
use crate::{config_watch, log, rpc_poll, signals};

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

    // Handlers first, so a SIGTERM during start-up is not lost.
    let (signal_tx, signal_rx) = unbounded();
    if let Err(e) = signals::start(signal_tx) {
        log::error(&format!("cannot install signal handlers: {e}"), &[]);
        return EXIT_FAILURE;
    }

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
    };
    Coordinator::new(machine, home, channels).run()
}

/// config.toml for a command that cannot go on without it: every problem printed and
/// [`EXIT_CONFIG`] returned as the error.
pub fn config_or_exit(home: &Home) -> Result<(Config, Vec<u8>), i32> {
    load_config(home).map_err(|problems| {
        for problem in problems {
            eprintln!("visor: {problem}");
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
    let bytes = read_config_file(
        &file,
        "create it with visor init or restore it (every key is optional, see visor-config(5))",
    )
    .map_err(|message| vec![message])?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        vec![format!(
            "{}: not valid UTF-8 ({e}); save it as UTF-8",
            file.display()
        )]
    })?;
    let config = Config::parse(&file, text)?;
    Ok((config, bytes))
}
