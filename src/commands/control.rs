//! `visor restart` and `visor switch TAG`: ask the running Visor through its control socket,
//! print its progress and wait (bounded) for the outcome. Without a running Visor, `restart`
//! is an error and `switch` checks the folder and moves `current` itself, under the lock.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::pre_switch::PreSwitch;
use super::run::config_or_exit;
use super::{EXIT_BUSY, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::home::supervise_folder::{LockError, SuperviseFolder};
use crate::home::{self, owner, Home};
use crate::machine::{ControlReply, ControlRequest};
use crate::node::folder_check::check_and_record;
use crate::ops::log;
use crate::supervise::control_socket::{self, RequestError};

/// Asks the running Visor; `None` when no Visor runs on this home.
fn ask_running(root: &Path, request: &ControlRequest, wait: Duration) -> Option<i32> {
    let supervise = SuperviseFolder::new(root);
    let pid = match supervise.holder() {
        Ok(pid) => pid?,
        Err(cause) => {
            super::err(&cannot_tell(root, &cause));
            return Some(EXIT_FAILURE);
        }
    };
    super::out(&format!(
        "asking the Visor running on {} (pid {pid})",
        root.display()
    ));
    let address = match supervise.control_address() {
        Ok(address) => address,
        Err(e) => {
            super::err(&e);
            return Some(EXIT_FAILURE);
        }
    };
    let answer = control_socket::request(&address, request, wait, &mut |line| super::out(line));
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
        Err(RequestError::Busy(text)) => {
            super::err(&text);
            EXIT_BUSY
        }
        Err(RequestError::Failed(e)) => {
            super::err(&e);
            EXIT_FAILURE
        }
    })
}

/// "cannot tell whether Visor runs", with the cause and, when this user is not the owner of
/// HOME, the command to run as the owner.
pub(super) fn cannot_tell(root: &Path, cause: &str) -> String {
    let mut text = format!(
        "cannot tell whether Visor runs on {}: {cause}",
        root.display()
    );
    if let Some(owner) = owner::home_owner(root).filter(|o| *o != owner::effective_uid()) {
        text.push_str(&format!(
            "; this command runs as {}, and Visor's folder belongs to {}: run it as that user \
             ({})",
            owner::describe(owner::effective_uid()),
            owner::describe(owner),
            super::as_owner(root, owner)
        ));
    }
    text
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
    // Who may switch comes first: without a running Visor only HOME's owner (the switch
    // writes HOME), and nobody when it cannot be told whether one runs.
    match SuperviseFolder::new(root).holder() {
        Err(cause) => {
            super::err(&cannot_tell(root, &cause));
            return EXIT_FAILURE;
        }
        Ok(None) => {
            if let Err(code) = super::refuse_other_user(root) {
                return code;
            }
        }
        Ok(Some(_)) => {}
    }
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
    // It writes HOME (the lock, `current`): only as the owner of HOME.
    if let Err(code) = super::refuse_other_user(root) {
        return code;
    }
    let home = Home::new(root.to_path_buf());
    let config = match config_or_exit(&home) {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    log::configure(config.log_format, config.log_level);
    if let Some(problem) = PreSwitch::hook_problem(&home, &config) {
        super::err(&format!("{problem}; nothing was changed"));
        return EXIT_CONFIG;
    }
    let supervise = SuperviseFolder::new(root);
    let _lock = match supervise.lock() {
        Ok(lock) => lock,
        Err(LockError::Held(_)) => {
            super::err("a Visor started on this home meanwhile; run visor switch again");
            return EXIT_FAILURE;
        }
        Err(LockError::Unusable(e)) => {
            super::err(&e);
            return EXIT_CONFIG;
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
    // The folder is recorded before its binaries are asked their version and compared just
    // before `current` moves, as the running Visor does at a switch: what was checked is
    // what `current` names.
    let checked = match check_and_record(tag, &folder) {
        Ok(checked) => checked,
        Err(problem) => {
            super::err(&format!(
                "the folder for {tag} is not ready: {problem}; current was not changed"
            ));
            return EXIT_FAILURE;
        }
    };
    // The backup and beforeSwitch, as at an upgrade, before `current` moves.
    let steps = PreSwitch {
        home: &home,
        config: &config,
        tag,
        folder: &folder,
    };
    if steps.has_steps() {
        let cancel = Arc::new(AtomicBool::new(false));
        if let Err(e) = super::prepare::watch_signals(&cancel) {
            super::err(&format!(
                "cannot install signal handlers ({e}); nothing was switched: current was not \
                 changed"
            ));
            return EXIT_FAILURE;
        }
        if let Err(why) = steps.run(&cancel) {
            super::err(&format!(
                "not switched to {tag}: {why}; current was not changed"
            ));
            return EXIT_FAILURE;
        }
    }
    if let Some(change) = checked.fingerprint.changed() {
        super::err(&format!(
            "the folder for {tag} changed while it was checked ({change}); current was not \
             changed: run visor switch again once nothing changes it"
        ));
        return EXIT_FAILURE;
    }
    match home.switch_current(&folder) {
        Ok(()) => {
            super::out(&format!(
                "current now points at {tag} ({}); no Visor is running: start it to run {tag}",
                folder.display()
            ));
            if let Some(note) = steps.after_upgrade_note() {
                super::out(&note);
            }
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
