//! Whether a version folder can be started: its run-config parses, its binaries exist and are
//! executable, and (for an upgrade) each binary reports the release tag as its version. Used by
//! `run`, `check`, `status` and the upgrade itself.
//!
//! The folder, its run-config.toml and its binaries must not be writable by group or other
//! users ([`crate::home::permissions`]).
//!
//! It reads files and runs `<binary> version --output json` (and, for the data node's segment
//! query, [`run_captured`] runs that command too): every such command runs in its own process
//! group under a time limit that covers its output, and is killed with its group when the
//! limit runs out. It decides nothing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::config::run_config::RunConfig;
use crate::home::permissions;
use crate::home::RUN_CONFIG_FILE;
use crate::node::commands::parse_version;
use crate::node::fingerprint::CheckedFolder;
use crate::process::output::{excerpt, read_capped, LINE_LIMIT};
use crate::process::spawn::{self, describe_status, exited_unreaped};
use crate::process::{self, Signal};

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
    let run = startable_folder(folder)?;
    check_versions(tag, folder, &run)?;
    Ok(run)
}

/// [`check_upgrade_folder`], recording the folder ([`CheckedFolder`]) after its run-config is
/// read and *before* its binaries are asked their version, so that comparing the record with
/// the folder later also sees a change made while the binaries ran.
pub fn check_and_record(tag: &str, folder: &Path) -> Result<CheckedFolder, String> {
    let run = startable_folder(folder)?;
    let checked = CheckedFolder::record(folder, run)?;
    check_versions(tag, folder, &checked.run)?;
    Ok(checked)
}

/// The first half of the check: an existing folder whose run-config and binaries are usable.
fn startable_folder(folder: &Path) -> Result<RunConfig, String> {
    if !folder.is_dir() {
        return Err(format!("{}: no such folder", folder.display()));
    }
    load_startable(folder).map_err(|problems| problems.join("; "))
}

/// The second half: every binary reports `tag` as its version.
fn check_versions(tag: &str, folder: &Path, run: &RunConfig) -> Result<(), String> {
    let mut binaries: Vec<PathBuf> = vec![run.core.path.clone()];
    if let Some(data_node) = &run.data_node {
        if data_node.path != run.core.path {
            binaries.push(data_node.path.clone());
        }
    }
    for binary in binaries {
        let version = binary_version(&binary)?;
        if version != tag {
            return Err(version_mismatch(tag, folder, &binary, &version));
        }
    }
    Ok(())
}

/// Why a folder's binary that reports `version` is not ready for `tag`, and the fix. The
/// folder `genesis` asked for by its own name (`visor switch genesis`) is reached through the
/// tag its binary reports, mapped to it in `[upgradeFolders]`.
fn version_mismatch(tag: &str, folder: &Path, binary: &Path, version: &str) -> String {
    let reports = format!(
        "{} reports version {version}, expected {tag}",
        binary.display()
    );
    if tag == crate::home::GENESIS_FOLDER && crate::home::ReleaseTag::parse(version).is_ok() {
        return format!(
            "{reports}: {tag} is the folder of the first version, not a release tag; to run it \
             again, map its tag to it in config.toml, [upgradeFolders] \"{version}\" = \"{tag}\", \
             and use {version}, e.g. visor switch --force {version} (going back is a downgrade)"
        );
    }
    format!("{reports}; put the {tag} binary in {}", folder.display())
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
            excerpt(&output.stderr, LINE_LIMIT)
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

/// The most of each stream [`run_captured`] keeps; the rest is not read.
pub const CAPTURE_LIMIT: usize = 1 << 20;

/// Runs a short command in its own process group with stdout and stderr captured (at most
/// [`CAPTURE_LIMIT`] each, read by [`crate::process::output::read_capped`]), without
/// [`crate::process::spawn::WITHHELD_VARIABLES`] in its environment.
///
/// `timeout` covers everything: the command's exit and the end of both streams, which a
/// process it left in the background may hold open. When it runs out, the whole process group
/// is killed with SIGKILL, the command is reaped and the call fails naming the command and the
/// limit. After a normal exit, whatever the command left running in its group is killed too.
pub fn run_captured(program: &Path, args: &[&str], timeout: Duration) -> Result<Captured, String> {
    let shown = if args.is_empty() {
        program.display().to_string()
    } else {
        format!("{} {}", program.display(), args.join(" "))
    };
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let mut command = spawn::group_command(program, args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn::start(&mut command)
        .map_err(|e| format!("{}: cannot run: {e}", program.display()))?;
    let pid = child.id();
    let (streams_tx, streams) = crossbeam_channel::bounded::<(usize, String)>(2);
    let mut expected = 0;
    let mut started = Ok(());
    if let Some(out) = child.stdout.take() {
        expected += 1;
        started = started.and(read_limited(0, out, streams_tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        expected += 1;
        started = started.and(read_limited(1, err, streams_tx.clone()));
    }
    drop(streams_tx);
    if let Err(e) = started {
        kill_group_and_reap(&mut child, pid);
        return Err(format!(
            "{shown}: cannot start a thread to read its output ({e}); check the system's \
             process limits"
        ));
    }
    let mut captured = [String::new(), String::new()];
    for _ in 0..expected {
        match streams.recv_deadline(deadline) {
            Ok((index, text)) => {
                if let Some(slot) = captured.get_mut(index) {
                    *slot = text;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                return Err(timed_out(&shown, timeout, &mut child, pid));
            }
        }
    }
    // Both streams ended; wait for the exit without reaping, so the group id stays reserved
    // while the group is cleaned up.
    loop {
        match exited_unreaped(pid) {
            Ok(true) => break,
            Ok(false) if Instant::now() >= deadline => {
                return Err(timed_out(&shown, timeout, &mut child, pid));
            }
            Ok(false) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                kill_group_and_reap(&mut child, pid);
                return Err(format!(
                    "{shown}: wait failed: {e}; check the system's limits"
                ));
            }
        }
    }
    process::signal::signal_group(pid, Signal::Kill);
    let status = child.wait();
    spawn::reaped(pid);
    let status =
        status.map_err(|e| format!("{shown}: wait failed: {e}; check the system's limits"))?;
    let [stdout, stderr] = captured;
    Ok(Captured {
        success: status.success(),
        status: describe_status(status),
        stdout,
        stderr,
    })
}

/// Kills the group of a command that outlived its time limit and says so.
fn timed_out(shown: &str, timeout: Duration, child: &mut Child, pid: u32) -> String {
    kill_group_and_reap(child, pid);
    format!(
        "{shown}: no answer within {}, so its process group was killed; check that it runs \
         and exits by itself, and that nothing it starts keeps its output open",
        describe_limit(timeout)
    )
}

/// `30 s`, or `250 ms` for a limit under a second.
fn describe_limit(limit: Duration) -> String {
    if limit < Duration::from_secs(1) {
        format!("{} ms", limit.as_millis())
    } else {
        format!("{} s", limit.as_secs())
    }
}

/// SIGKILL to the whole group, then reaps the leader (a reaped leader cannot be waited for
/// again, and killing before reaping keeps the group id from being reused meanwhile).
fn kill_group_and_reap(child: &mut Child, pid: u32) {
    process::signal::signal_group(pid, Signal::Kill);
    let _ = child.wait();
    spawn::reaped(pid);
}

/// Reads one stream to its end or [`CAPTURE_LIMIT`] on a `visor-capture` thread and sends it
/// as `(index, text)`; the buffer never grows beyond the limit, so an endless line is cut
/// there.
fn read_limited<R: Read + Send + 'static>(
    index: usize,
    reader: R,
    done: crossbeam_channel::Sender<(usize, String)>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("visor-capture".into())
        .stack_size(process::SMALL_STACK)
        .spawn(move || {
            let buffer = read_capped(reader, CAPTURE_LIMIT);
            let _ = done.send((index, String::from_utf8_lossy(&buffer).into_owned()));
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A scratch folder holding `script.sh` with `body`; returns the folder.
    fn script(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-capture-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = body.replace("$DIR", &dir.display().to_string());
        std::fs::write(dir.join("script.sh"), format!("#!/bin/sh\n{text}")).unwrap();
        dir
    }

    /// Runs the script through /bin/sh, so the test never executes a file another test
    /// thread may still hold open for writing.
    fn run(dir: &Path, timeout: Duration) -> Result<Captured, String> {
        let script = dir.join("script.sh").display().to_string();
        run_captured(Path::new("/bin/sh"), &[script.as_str()], timeout)
    }

    /// The pid a script wrote to `$DIR/<file>`.
    fn pid_in(dir: &Path, file: &str) -> libc::pid_t {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        text.trim().parse().unwrap()
    }

    /// Whether the process is gone: no such pid, or a zombie waiting for its new parent.
    fn gone(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return true;
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state == 'Z' || state == 'X')
        })
    }

    fn wait_gone(pid: libc::pid_t) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(pid) {
            assert!(Instant::now() < deadline, "process {pid} is still alive");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_background_child_holding_stdout_does_not_outlive_the_limit() {
        let dir = script(
            "holder",
            "echo '{\"version\":\"v2\"}'\nsleep 1000 &\necho $! > '$DIR/sleep.pid'\n",
        );
        let limit = Duration::from_millis(500);
        let started = Instant::now();
        let error = run(&dir, limit).err().unwrap_or_default();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(took >= limit, "returned before the limit: {took:?}");
        assert!(error.contains("/bin/sh "), "{error}");
        assert!(error.contains("script.sh"), "{error}");
        assert!(error.contains("no answer within 500 ms"), "{error}");
        assert!(error.contains("process group was killed"), "{error}");
        assert!(!error.ends_with('.'), "{error}");
        wait_gone(pid_in(&dir, "sleep.pid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_that_never_exits_is_killed_with_its_group() {
        let dir = script(
            "hang",
            "sleep 1000 >/dev/null 2>&1 &\necho $! > '$DIR/sleep.pid'\necho $$ > '$DIR/self.pid'\nexec sleep 1000\n",
        );
        let started = Instant::now();
        let error = run(&dir, Duration::from_millis(300))
            .err()
            .unwrap_or_default();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.contains("no answer within 300 ms"), "{error}");
        wait_gone(pid_in(&dir, "sleep.pid"));
        wait_gone(pid_in(&dir, "self.pid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_normal_command_is_captured_and_leaves_nothing_behind() {
        let dir = script(
            "normal",
            "sleep 1000 >/dev/null 2>&1 </dev/null &\necho $! > '$DIR/sleep.pid'\n\
             echo '{\"version\":\"v2\"}'\necho warning >&2\nexit 3\n",
        );
        let captured = run(&dir, Duration::from_secs(20)).unwrap();
        assert!(!captured.success);
        assert_eq!(captured.status, "exit status 3");
        assert_eq!(parse_version(&captured.stdout), Ok("v2".to_owned()));
        assert_eq!(captured.stderr, "warning\n");
        // It closed its output, but stayed in the command's group.
        wait_gone(pid_in(&dir, "sleep.pid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_is_capped_at_one_mebibyte_per_stream() {
        let dir = script(
            "big",
            "head -c 3000000 /dev/zero | tr '\\0' a\nhead -c 3000000 /dev/zero | tr '\\0' b >&2\n",
        );
        let captured = run(&dir, Duration::from_secs(20)).unwrap();
        assert_eq!(captured.stdout.len(), CAPTURE_LIMIT);
        assert_eq!(captured.stderr.len(), CAPTURE_LIMIT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_program_names_itself() {
        let error = run_captured(
            Path::new("/nonexistent/zeta"),
            &["version"],
            VERSION_TIMEOUT,
        )
        .err()
        .unwrap_or_default();
        assert!(
            error.starts_with("/nonexistent/zeta: cannot run"),
            "{error}"
        );
    }

    // ----- permissions -----

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
