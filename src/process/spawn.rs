//! Starting children: every process Visor starts (a node, a hook, a short command of
//! `run_captured`) is made by [`group_command`] (own process group, stdin from /dev/null,
//! without [`WITHHELD_VARIABLES`]) and started by [`start`], which records its pid until its
//! waiter has reaped it ([`reaped`]): the [`reaper`](super::reaper) leaves those pids to their
//! waiters and reaps only the orphans re-parented to Visor.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::Signal;

/// The variables of Visor's environment that no child may see: systemd's (Visor alone talks
/// to systemd; a node that also did would confuse it) and the GitHub token (only Visor's own
/// requests to `apiUrl` may carry it).
pub const WITHHELD_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "GITHUB_TOKEN",
];

/// The pids of the children Visor started and has not reaped yet.
static STARTED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The record of started children, locked: while it is held no child is started, so a child
/// that exits at once cannot be taken for an orphan before its pid is recorded.
pub(super) fn started() -> MutexGuard<'static, BTreeSet<u32>> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// `program args` with stdin from /dev/null, in its own process group and without
/// [`WITHHELD_VARIABLES`]; the caller chooses stdout and stderr.
pub fn group_command<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Command {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).process_group(0);
    scrub_environment(&mut command);
    command
}

/// Removes [`WITHHELD_VARIABLES`] from a command's environment; every process Visor starts
/// goes through here.
pub fn scrub_environment(command: &mut Command) {
    for name in WITHHELD_VARIABLES {
        command.env_remove(name);
    }
}

/// Has the kernel send `signal` to the child when the *thread* that started it exits (the
/// parent-death signal). With `check_parent`, a child whose parent died between `fork` and
/// `prctl` fails to start instead of running with nobody to stop it.
pub fn parent_death_signal(command: &mut Command, signal: Signal, check_parent: bool) {
    let parent = std::process::id() as libc::pid_t;
    let number = signal.number() as libc::c_ulong;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, number, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if check_parent && libc::getppid() != parent {
                return Err(io::Error::other("visor exited while starting the process"));
            }
            Ok(())
        });
    }
}

/// A pipe for a child's output, both ends close-on-exec (the child gets the write end as
/// its standard output or error, which clears the flag there): the read end, and the write
/// end to hand to the command.
pub fn output_pipe() -> io::Result<(std::fs::File, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is valid for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    unsafe {
        Ok((
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

/// Starts `command` and records the child's pid until [`reaped`] is called for it.
pub fn start(command: &mut Command) -> io::Result<Child> {
    let mut started = started();
    let child = command.spawn()?;
    started.insert(child.id());
    Ok(child)
}

/// The child `pid` has been reaped by its waiter: the reaper may reap a later process with
/// the same pid.
pub fn reaped(pid: u32) {
    started().remove(&pid);
}

/// The pids of the children Visor started and has not reaped.
pub fn started_pids() -> BTreeSet<u32> {
    started().clone()
}

/// Whether child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`): its pid, and
/// so its process group id, stays reserved until it is reaped.
pub fn exited_unreaped(pid: u32) -> io::Result<bool> {
    let id = libc::id_t::from(pid);
    // SAFETY: siginfo_t is plain data for which all zeroes is valid; waitid only writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` (si_pid is 0 when no child has changed state).
    Ok(unsafe { info.si_pid() } != 0)
}

/// `exit status 3` or `killed by SIGKILL`.
pub fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        format!("killed by {}", signal_name(signal))
    } else {
        status.to_string()
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_child_is_recorded_until_it_is_reaped() {
        let mut command = group_command(Path::new("/bin/sh"), &["-c", "exit 3"]);
        let mut child = start(&mut command).unwrap();
        let pid = child.id();
        assert!(started_pids().contains(&pid));
        while !exited_unreaped(pid).unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let status = child.wait().unwrap();
        reaped(pid);
        assert!(!started_pids().contains(&pid));
        assert_eq!(describe_status(status), "exit status 3");
    }

    #[test]
    fn withheld_variables_are_removed() {
        let command = group_command(Path::new("/bin/true"), &[] as &[&str]);
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in WITHHELD_VARIABLES {
            assert!(removed.iter().any(|r| r == name), "{name} kept");
        }
    }
}
