//! `visor check`: every problem `visor run` would stop on, what in HOME belongs to another user
//! than HOME's owner, a control socket that cannot be made, every problem of an enabled
//! `[backup]` (`backup::validate`, as this process sees the file system) and a pending upgrade
//! whose folder is not ready, one line each; with `[backup]` enabled, a line on what a backup
//! will cost (clones or copies).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::init::EXAMPLE_FOLDER;
use super::run::startup_check;
use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::backup;
use crate::config::hooks::Hooks;
use crate::config::run_config::RunConfig;
use crate::config::{load_config, Config};
use crate::home::supervise_folder::SuperviseFolder;
use crate::home::{self, owner, Home, RUN_CONFIG_FILE, TMP_PREFIX};
use crate::node::client::CoreClient;
use crate::node::folder_check::{check_upgrade_folder, load_startable};

/// How long `check` and `status` wait for the core's answer.
pub const QUICK_RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn check(root: &Path) -> i32 {
    let home = Home::new(root.to_path_buf());
    let mut config_problems: Vec<String> = Vec::new();
    let config = match load_config(&home) {
        Ok((config, _)) => Some(config),
        Err(problems) => {
            config_problems.extend(problems);
            None
        }
    };
    if !root.is_dir() {
        return report(config_problems, Vec::new(), Vec::new());
    }
    if let Some(config) = &config {
        say_if_unsigned(&home, config);
    }
    // The very rules `visor run` applies before it starts anything.
    let no_hooks = Hooks::default();
    let hooks = config.as_ref().map_or(&no_hooks, |c| &c.hooks);
    let startable = match startup_check(&home, hooks) {
        Ok(startable) => Some(startable),
        Err(problems) => {
            config_problems.extend(problems);
            None
        }
    };
    for folder in version_folders(root, config.as_ref()) {
        if let Err(problems) = load_startable(&folder) {
            config_problems.extend(problems);
        }
    }
    // What a command run as another user left: `run` may be unable to take its lock, remove a
    // leftover or replace a file.
    let visor_user = owner::home_owner(root).unwrap_or_else(owner::effective_uid);
    config_problems.extend(owner::foreign_entries(root, visor_user));
    config_problems.extend(SuperviseFolder::new(root).control_problem());
    let mut notes = Vec::new();
    if let Some(config) = config.as_ref().filter(|c| c.backup.enabled) {
        backup_findings(&home, config, &mut config_problems, &mut notes);
    }
    let mut seen = HashSet::new();
    config_problems.retain(|problem| seen.insert(problem.clone()));
    let mut upgrade_problems = Vec::new();
    if let (Some(config), Some(startable)) = (&config, startable) {
        if let Some(problem) = pending_upgrade_problem(root, config, &startable.run_config) {
            upgrade_problems.push(problem);
        }
    }
    report(config_problems, upgrade_problems, notes)
}

/// What `[backup]` would meet, as `backup::validate` finds it with this process's view of the
/// file system: each problem (a configuration problem, naming config.toml), and a note on
/// what a backup will cost (clones or copies), plus one when this user is not HOME's owner,
/// as whom Visor runs and writes.
fn backup_findings(
    home: &Home,
    config: &Config,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let validation = backup::validate(&config.backup, home, &config.upgrade_folders);
    let file = home.config_file();
    problems.extend(
        validation
            .problems
            .iter()
            .map(|problem| format!("{}: {}", file.display(), problem.message)),
    );
    if !validation.paths.is_empty() {
        let folder = config
            .backup
            .folder
            .as_deref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        notes.push(format!("backup: {folder}: {}", validation.cost()));
    }
    let me = owner::effective_uid();
    if let Some(visor_user) = owner::home_owner(home.root()).filter(|o| *o != me) {
        notes.push(format!(
            "backup: the folder and paths were looked at as {}, not as {} (the owner of HOME, \
             as whom Visor runs and writes the backups): run {} to see them as Visor will",
            owner::describe(me),
            owner::describe(visor_user),
            super::as_owner(home.root(), visor_user)
        ));
    }
}

/// One info line on stderr (standard output is for problems) when releases are not
/// signature-checked: no `[autoInstall.signatures]` keys.
fn say_if_unsigned(home: &Home, config: &Config) {
    if config.auto_install.signatures.enabled() {
        return;
    }
    crate::ops::log::info(
        &format!(
            "check: releases are not signature-checked: no publicKeys in \
             [autoInstall.signatures] of {}, so auto-install and visor prepare trust the \
             SHA-256 a release gives; add its signers' minisign keys to check their signatures \
             (see visor-config(5))",
            home.config_file().display()
        ),
        &[],
    );
}

fn report(config_problems: Vec<String>, upgrade_problems: Vec<String>, notes: Vec<String>) -> i32 {
    for problem in config_problems
        .iter()
        .chain(&upgrade_problems)
        .chain(&notes)
    {
        // A binary's version output or a path may hold control characters.
        super::out(&crate::ops::log::escape_controls(problem));
    }
    if !config_problems.is_empty() {
        EXIT_CONFIG
    } else if !upgrade_problems.is_empty() {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Every folder in HOME holding a run-config.toml, except `current`, leftovers and the
/// example folder `vX.X.X`, plus absolute `upgradeFolders`.
fn version_folders(root: &Path, config: Option<&Config>) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // The example folder `init` writes is for copying, not a broken version folder.
            !name.starts_with(TMP_PREFIX) && name != home::CURRENT_LINK && name != EXAMPLE_FOLDER
        })
        .map(|entry| entry.path())
        .filter(|path| path.join(RUN_CONFIG_FILE).is_file())
        .collect();
    if let Some(config) = config {
        for folder in config.upgrade_folders.values() {
            let path = Path::new(folder);
            if path.is_absolute() && path.join(RUN_CONFIG_FILE).is_file() {
                folders.push(path.to_path_buf());
            }
        }
    }
    folders.sort();
    folders.dedup();
    folders
}

/// Asks the core (briefly) for a pending upgrade and checks that release's folder.
fn pending_upgrade_problem(root: &Path, config: &Config, run: &RunConfig) -> Option<String> {
    let mut client = CoreClient::new(run.rpc.socket_path.clone(), run.rpc.http_path.clone());
    let status = client.upgrade_status_within(QUICK_RPC_TIMEOUT).ok()?;
    let release = status.accepted?;
    if release.tag == run.name {
        return None;
    }
    let folder = match home::upgrade_folder(root, &config.upgrade_folders, &release.tag) {
        Ok(folder) => folder,
        Err(problem) => {
            return Some(format!(
                "core at {}: {problem}",
                run.rpc.socket_path.display()
            ))
        }
    };
    if config.auto_install.enabled && std::fs::symlink_metadata(&folder).is_err() {
        // Missing is expected: `run` installs it (at acceptance with prefetch, else at the
        // upgrade block). A folder that exists but is broken is still reported.
        return None;
    }
    check_upgrade_folder(&release.tag, &folder)
        .err()
        .map(|problem| {
            format!(
                "upgrade {tag} accepted at block {} but its folder is not ready: {problem}; \
                 install it with visor prepare {tag} --home {} (from GitHub, or --from a file \
                 or a mirror), or put it in place by hand, before the block",
                release.height,
                root.display(),
                tag = release.tag,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_folders_skip_the_example_current_and_leftovers() {
        let root = std::env::temp_dir().join(format!("visor-check-folders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for folder in [
            "genesis",
            "v1.3.0",
            "vX.X.X",
            "vX.X.X.1",
            ".visor-tmp-install-v2-1-0",
            "empty",
        ] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            if folder != "empty" {
                std::fs::write(root.join(folder).join(RUN_CONFIG_FILE), "").unwrap();
            }
        }
        std::os::unix::fs::symlink("genesis", root.join(home::CURRENT_LINK)).unwrap();
        let names: Vec<String> = version_folders(&root, None)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["genesis", "v1.3.0", "vX.X.X.1"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
