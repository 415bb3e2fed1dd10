//! `visor restart` and `visor switch TAG`: ask the running Visor through its control socket,
//! print its progress and wait (bounded) for the outcome. Without a running Visor, `restart`
//! is an error and `switch` checks the folder and moves `current` itself, under the lock.

use std::path::Path;
use std::time::Duration;

use super::run::config_or_exit;
use super::{EXIT_FAILURE, EXIT_OK};
use crate::home::supervise_folder::{LockError, SuperviseFolder};
use crate::home::{self, Home};
use crate::machine::{ControlReply, ControlRequest};
use crate::node::folder_check::check_upgrade_folder;
use crate::supervise::control_socket;

/// Asks the running Visor; `None` when no Visor runs on this home.
fn ask_running(root: &Path, request: &ControlRequest, wait: Duration) -> Option<i32> {
    let supervise = SuperviseFolder::new(root);
    let pid = supervise.holder()?;
    let socket = supervise.control_socket();
    super::out(&format!(
        "asking the Visor running on {} (pid {pid})",
        root.display()
    ));
    let answer = control_socket::request(&socket, request, wait, &mut |line| super::out(line));
    Some(match answer {
        Ok(ControlReply::Done(text)) => {
            super::out(&text);
            EXIT_OK
        }
        Ok(ControlReply::Refused(text)) => {
            super::err(&format!("refused: {text}"));
            EXIT_FAILURE
        }
        Ok(ControlReply::Failed(text)) | Ok(ControlReply::Progress(text)) => {
            super::err(&format!("failed: {text}"));
            EXIT_FAILURE
        }
        Err(e) => {
            super::err(&e);
            EXIT_FAILURE
        }
    })
}

pub fn restart(root: &Path, wait: Duration) -> i32 {
    if let Some(code) = ask_running(root, &ControlRequest::Restart, wait) {
        return code;
    }
    super::err(&format!(
        "no Visor is running on {} (its lock {} is free); start it with systemctl start zeta-visor or visor run --home {}",
        root.display(),
        SuperviseFolder::new(root).lock_file().display(),
        root.display()
    ));
    EXIT_FAILURE
}

pub fn switch(root: &Path, tag: &str, wait: Duration, force: bool) -> i32 {
    // Before the running Visor is asked or the lock taken: a refusal changes nothing.
    if let Err(code) = super::switch_guard::guard(root, tag, force) {
        return code;
    }
    let request = ControlRequest::Switch {
        tag: tag.to_string(),
    };
    if let Some(code) = ask_running(root, &request, wait) {
        return code;
    }
    // No Visor runs: check the folder and move `current` under the lock, so none starts
    // meanwhile.
    let home = Home::new(root.to_path_buf());
    let config = match config_or_exit(&home) {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    let supervise = SuperviseFolder::new(root);
    if let Err(e) = supervise.create() {
        super::err(&e);
        return EXIT_FAILURE;
    }
    let _lock = match supervise.lock() {
        Ok(lock) => lock,
        Err(LockError::Held(_)) => {
            super::err("a Visor started on this home meanwhile; run visor switch again");
            return EXIT_FAILURE;
        }
        Err(LockError::Io(e)) => {
            super::err(&e);
            return EXIT_FAILURE;
        }
    };
    let folder = match home::upgrade_folder(root, &config.upgrade_folders, tag) {
        Ok(folder) => folder,
        Err(e) => {
            super::err(&e);
            return EXIT_FAILURE;
        }
    };
    if home.current_target().ok().as_deref() == Some(folder.as_path()) {
        super::out(&format!(
            "current already points at {tag} ({})",
            folder.display()
        ));
        return EXIT_OK;
    }
    if let Err(problem) = check_upgrade_folder(tag, &folder) {
        super::err(&format!(
            "the folder for {tag} is not ready: {problem}; current was not changed"
        ));
        return EXIT_FAILURE;
    }
    match home.switch_current(&folder) {
        Ok(()) => {
            super::out(&format!(
                "current now points at {tag} ({}); no Visor is running: start it to run {tag}",
                folder.display()
            ));
            EXIT_OK
        }
        Err(e) => {
            super::err(&format!(
                "{} -> {}: cannot switch ({e}); current was not changed",
                home.current_link().display(),
                folder.display()
            ));
            EXIT_FAILURE
        }
    }
}
