//! Whether a version folder can be started: its run-config parses, its binaries exist and are
//! executable, and (for an upgrade) each binary reports the release tag as its version
//! (SPEC section 7, step 4). Used by `run`, `check`, `status` and the upgrade itself.
//!
//! The folder, its run-config.toml and its binaries must not be writable by group or other
//! users ([`crate::permissions`]).
//!
//! It reads files and runs `<binary> version --output json`; it decides nothing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::home::RUN_CONFIG_FILE;
use crate::node_commands::parse_version;
use crate::permissions;
use crate::run_config::RunConfig;

/// How long `<binary> version --output json` may take.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A problem with one configured binary, naming the run-config key and what to do.
pub fn binary_problem(run_config: &Path, key: &str, path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) => Some(format!(
            "{}: {key} {}: {e}; install the binary there or fix the path",
            run_config.display(),
            path.display()
        )),
        Ok(meta) if !meta.is_file() => Some(format!(
            "{}: {key} {}: not a regular file; point it at the node binary",
            run_config.display(),
            path.display()
        )),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some(format!(
            "{}: {key} {}: not executable; run chmod +x on it",
            run_config.display(),
            path.display()
        )),
        Ok(_) => permissions::problem(
            path,
            &format!("the binary of {key} in {}", run_config.display()),
        ),
    }
}

/// Every problem with the binaries of a parsed run-config.
pub fn binaries_problems(run: &RunConfig) -> Vec<String> {
    let section = "[zeta.binary] path";
    let mut problems: Vec<String> = binary_problem(&run.file, section, &run.core.path)
        .into_iter()
        .collect();
    if let Some(data_node) = &run.data_node {
        problems.extend(binary_problem(
            &run.file,
            "[data_node.binary] path",
            &data_node.path,
        ));
    }
    problems
}

/// Loads `folder/run-config.toml` and checks its binaries and who may write the folder, the
/// file and the binaries; every problem is returned.
pub fn load_startable(folder: &Path) -> Result<RunConfig, Vec<String>> {
    let file = folder.join(RUN_CONFIG_FILE);
    let writable = permissions::problems(&[
        (folder, "the version folder"),
        (&file, "the run configuration"),
    ]);
    let mut problems = Vec::new();
    let run = match RunConfig::load(&file) {
        Ok(run) => {
            problems.extend(binaries_problems(&run));
            Some(run)
        }
        Err(found) => {
            problems.extend(found);
            None
        }
    };
    problems.extend(writable);
    match run {
        Some(run) if problems.is_empty() => Ok(run),
        _ => Err(problems),
    }
}

/// The full readiness check of an upgrade folder for release `tag`.
pub fn check_upgrade_folder(tag: &str, folder: &Path) -> Result<RunConfig, String> {
    if !folder.is_dir() {
        return Err(format!("{}: no such folder", folder.display()));
    }
    let run = load_startable(folder).map_err(|problems| problems.join("; "))?;
    let mut binaries: Vec<PathBuf> = vec![run.core.path.clone()];
    if let Some(data_node) = &run.data_node {
        if data_node.path != run.core.path {
            binaries.push(data_node.path.clone());
        }
    }
    for binary in binaries {
        let version = binary_version(&binary)?;
        if version != tag {
            return Err(format!(
                "{} reports version {version}, expected {tag}; put the {tag} binary in {}",
                binary.display(),
                folder.display()
            ));
        }
    }
    Ok(run)
}

/// Runs `<binary> version --output json` and returns the version it reports.
pub fn binary_version(binary: &Path) -> Result<String, String> {
    let args = ["version", "--output", "json"];
    let output = run_captured(binary, &args, VERSION_TIMEOUT)?;
    if !output.success {
        return Err(format!(
            "{} version --output json failed ({}): {}",
            binary.display(),
            output.status,
            output.stderr.trim()
        ));
    }
    parse_version(&output.stdout)
        .map_err(|e| format!("{} version --output json: {e}", binary.display()))
}

pub struct Captured {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short command with stdout and stderr captured (at most 1 MiB each), killing it
/// when it outlives `timeout`.
pub fn run_captured(program: &Path, args: &[&str], timeout: Duration) -> Result<Captured, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: cannot run: {e}", program.display()))?;
    let stdout = child.stdout.take().map(read_limited);
    let stderr = child.stderr.take().map(read_limited);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {}: no answer within {} s",
                    program.display(),
                    args.join(" "),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("{}: wait failed: {e}", program.display())),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Captured {
        success: status.success(),
        status: crate::child::describe_status(status),
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn read_limited<R: Read + Send + 'static>(reader: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = reader.take(1 << 20).read_to_end(&mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A folder with a run-config and an executable `zeta`, all owner-writable only.
    fn version_folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-fc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let run_config = dir.join(RUN_CONFIG_FILE);
        fs::write(
            &run_config,
            "name = \"v2\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n  [zeta.rpc]\n    \
             socketPath = \"/tmp/x.sock\"\n    httpPath = \"/rpc\"\n",
        )
        .unwrap();
        fs::set_permissions(&run_config, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.join("zeta"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("zeta"), fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_folder_others_may_write_is_not_startable_nor_ready() {
        let dir = version_folder("writable");
        assert!(load_startable(&dir).is_ok());
        for (path, mode) in [
            (dir.clone(), 0o775),
            (dir.join(RUN_CONFIG_FILE), 0o666),
            (dir.join("zeta"), 0o757),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let problems = load_startable(&dir).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            let expected = format!("{}: ", path.display());
            assert!(problems[0].starts_with(&expected), "{problems:?}");
            assert!(problems[0].contains(&format!("(mode {mode:04o})")));
            assert!(problems[0].contains(&format!("chmod go-w {}", path.display())));
            // The upgrade's readiness check says so before running anything.
            let not_ready = check_upgrade_folder("v2", &dir).unwrap_err();
            assert!(not_ready.contains("chmod go-w"), "{not_ready}");
            let safe = if path == dir {
                0o755
            } else {
                0o644 | (mode & 0o100)
            };
            fs::set_permissions(&path, fs::Permissions::from_mode(safe)).unwrap();
        }
        assert!(load_startable(&dir).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }
}
