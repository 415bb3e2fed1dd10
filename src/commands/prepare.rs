//! `visor prepare VERSION`: installs the upgrade folder for VERSION now, exactly as auto-install
//! would (see AUTO-INSTALL in visor(1)), and exits 0 once the folder is ready.
//!
//! It runs even when `[autoInstall] enabled = false`: prepare is an explicit request of the
//! operator, so only the automatic install waits for that switch (the repository, asset and
//! checksum settings of `[autoInstall]` still apply). A folder that is already ready is left
//! alone, so running it twice is harmless. It must not touch `current`, start or stop a node,
//! or remove other `.visor-tmp-` leftovers (a running `visor run` may be installing).
//!
//! Exit status: 0 ready, 1 failure (bad tag, fetch or verification failed), 77 run by another
//! user than HOME's owner, 78 configuration error (config.toml, or the running version's
//! run-config.toml that the new one derives from).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::run::config_or_exit;
use super::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::config::run_config::RunConfig;
use crate::home::{self, Home, ReleaseTag, RUN_CONFIG_FILE};
use crate::install::source::{install_from, parse_sha256, FromRequest, Source};
use crate::install::{install_cancellable, InstallError, InstallErrorKind, InstallRequest, ToLog};
use crate::node::folder_check::check_upgrade_folder;
use crate::ops::log;

/// `--from SOURCE`, `--sha256 HEX` and each `--signature FILE|URL`: the release from a local
/// binary or zip, or a URL, instead of the GitHub release, and how it is checked.
pub struct From<'a> {
    pub source: Option<&'a str>,
    pub sha256: Option<&'a str>,
    pub signatures: &'a [String],
}

pub fn prepare(root: &Path, tag: &str, from: From) -> i32 {
    let (tag, source) = match arguments(tag, &from) {
        Ok(checked) => checked,
        Err(problem) => {
            super::err(&format!("prepare: {problem}"));
            return EXIT_FAILURE;
        }
    };
    // It installs into HOME: only as the owner of HOME.
    if let Err(code) = super::refuse_other_user(root) {
        return code;
    }
    let home = Home::new(root.to_path_buf());
    let config = match config_or_exit(&home) {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    log::configure(config.log_format, config.log_level);
    let folder = home::release_folder(root, &config.upgrade_folders, &tag);
    if let Ok(run) = check_upgrade_folder(tag.as_str(), &folder) {
        log::info(
            &format!("prepare: folder for {tag} is already ready; nothing to do"),
            &[("folder", folder.display().to_string()), ("name", run.name)],
        );
        super::out(&format!("{}: ready for {tag}", folder.display()));
        return EXIT_OK;
    }
    let template = match template(&home) {
        Ok(template) => template,
        Err(problems) => {
            for problem in problems {
                log::error(&format!("prepare: {problem}"), &[]);
            }
            return EXIT_CONFIG;
        }
    };
    if !config.auto_install.enabled && source.is_none() {
        log::info(
            &format!(
                "prepare: [autoInstall] enabled = false in {}; installing {tag} anyway because \
                 prepare is an explicit request",
                home.config_file().display()
            ),
            &[],
        );
    }
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(&cancel) {
        log::error(
            &format!("prepare: cannot install signal handlers ({e}); not starting the install"),
            &[],
        );
        return EXIT_FAILURE;
    }
    let request = InstallRequest {
        home,
        auto: config.auto_install,
        tag: tag.to_string(),
        folder: folder.clone(),
        template,
    };
    let installed = match &source {
        Some(source) => {
            let from = FromRequest {
                source,
                sha256: from.sha256,
                signatures: from.signatures,
            };
            install_from(&request, &from, &cancel, &mut ToLog)
        }
        None => install_cancellable(&request, &cancel, &mut ToLog),
    };
    match installed {
        Ok(_) => {
            super::out(&format!("{}: ready for {tag}", folder.display()));
            EXIT_OK
        }
        Err(e) => {
            log::error(
                &format!("prepare: {e}{}", offline_advice(&e, &source, &tag)),
                &[],
            );
            EXIT_FAILURE
        }
    }
}

/// After a failure to reach GitHub (the network, not an answer), how to install without it.
fn offline_advice(error: &InstallError, source: &Option<Source>, tag: &ReleaseTag) -> String {
    let unreachable = matches!(
        error.kind,
        InstallErrorKind::Transient | InstallErrorKind::TimedOut
    );
    if source.is_some() || !unreachable {
        return String::new();
    }
    format!(
        "; if this host cannot reach GitHub, install the release from a file or a mirror \
         instead: visor prepare {tag} --from FILE-OR-URL --sha256 HEX"
    )
}

/// The tag and `--from` source, checked; `--sha256` and the form of each `--signature` are
/// checked too (and used as given).
fn arguments(tag: &str, from: &From) -> Result<(ReleaseTag, Option<Source>), String> {
    let source = from
        .source
        .map(Source::parse)
        .transpose()
        .map_err(|problem| format!("{problem}; give a local file or an https:// URL"))?;
    if let Some(hex) = from.sha256 {
        parse_sha256(hex)?;
    }
    for signature in from.signatures {
        Source::parse(signature).map_err(|problem| {
            format!(
                "{}; give a local .minisig file or an https:// URL",
                problem.replacen("--from", "--signature", 1)
            )
        })?;
    }
    let tag = ReleaseTag::parse(tag).map_err(|problem| {
        format!("{problem}; give the release tag as the core announces it, e.g. v1.3.0")
    })?;
    Ok((tag, source))
}

/// The run-config the new one derives from: the one `current` points at, or genesis's when
/// `current` does not exist yet (as `visor run` would link it).
fn template(home: &Home) -> Result<RunConfig, Vec<String>> {
    let link = home.current_link();
    let folder: PathBuf = match std::fs::symlink_metadata(&link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => home.genesis_folder(),
        _ => {
            home.ensure_current().map_err(|problem| vec![problem])?;
            home.current_target()
                .map_err(|e| vec![format!("{}: {e}", link.display())])?
        }
    };
    RunConfig::load(&folder.join(RUN_CONFIG_FILE))
}

/// SIGINT, SIGTERM and SIGHUP set `cancel`, so the install stops at its next step and removes
/// its half-made folder; a second one ends the process at once (exit 1).
pub(super) fn watch_signals(cancel: &Arc<AtomicBool>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::flag;
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        flag::register_conditional_shutdown(signal, 1, Arc::clone(cancel))?;
        flag::register(signal, Arc::clone(cancel))?;
    }
    Ok(())
}
