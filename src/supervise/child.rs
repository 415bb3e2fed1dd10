//! Starting, signalling and reaping the node processes.
//!
//! Only the coordinator calls [`spawn`] and [`signal_group`]. Each child gets a waiter thread
//! (`visor-wait-<pid>`) that owns the `Child`, blocks in `wait`, and only reports the exit.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crossbeam_channel::Sender;

use crate::machine::{Event, Proc, StopSignal};

/// Stack size of helper threads: they only wait or copy small buffers.
pub const SMALL_STACK: usize = 64 * 1024;
/// Stack size of threads that parse TOML files an operator or a release wrote (config.toml,
/// a new folder's run-config.toml): the parser recurses once per nesting level before it
/// refuses the file, which takes about 1 MiB in a debug build. Only touched pages cost memory.
pub const PARSER_STACK: usize = 4 * 1024 * 1024;

/// Starts `program args` with stdin from /dev/null, stdout and stderr inherited, in its own
/// process group, with SIGTERM as its parent-death signal and without
/// [`WITHHELD_VARIABLES`]; returns its pid.
///
/// The parent-death signal fires when the *thread* that forked exits, so this must be called
/// from the coordinator thread, which lives as long as Visor does.
pub fn spawn(proc: Proc, program: &Path, args: &[String], exits: Sender<Event>) -> io::Result<u32> {
    let parent = std::process::id() as libc::pid_t;
    let mut command = group_command(program, args);
    command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // Visor may have died between fork and prctl; then nobody would ever stop us.
            if libc::getppid() != parent {
                return Err(io::Error::other("visor exited while starting the process"));
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let spawned = std::thread::Builder::new()
        .name(format!("visor-wait-{pid}"))
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let status = match child.wait() {
                Ok(status) => describe_status(status),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = exits.send(Event::ChildExited { proc, pid, status });
        });
    if let Err(e) = spawned {
        // Without a waiter nobody would reap the child: stop it and report the failure.
        signal_group(pid, StopSignal::Kill);
        return Err(e);
    }
    Ok(pid)
}

/// The variables of Visor's environment that no child may see: systemd's (Visor alone talks
/// to systemd; a node that also did would confuse it) and the GitHub token (only Visor's own
/// requests to `apiUrl` may carry it).
pub const WITHHELD_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "GITHUB_TOKEN",
];

/// `program args` with stdin from /dev/null, in its own process group and without
/// [`WITHHELD_VARIABLES`]; the caller chooses stdout and stderr. Every process Visor starts
/// (a node, or a short command of `folder_check::run_captured`) is made here.
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

/// Sends the signal to the child's whole process group. A group that is already gone is not
/// an error.
pub fn signal_group(pid: u32, signal: StopSignal) {
    let number = match signal {
        StopSignal::Term => libc::SIGTERM,
        StopSignal::Kill => libc::SIGKILL,
    };
    let Some(pgid) = group_id(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, number);
    }
}

/// `pid` as a process group id Visor may signal: never 0 (Visor's own group), 1 (`kill(-1)`
/// would signal every process), Visor's own group, or a number beyond `pid_t`.
fn group_id(pid: u32) -> Option<libc::pid_t> {
    let pgid = libc::pid_t::try_from(pid).ok().filter(|p| *p > 1)?;
    // SAFETY: getpgrp(2) has no arguments and cannot fail.
    let own = unsafe { libc::getpgrp() };
    (pgid != own).then_some(pgid)
}

/// Whether process group `pgid` still has a member that is not a zombie. A group whose
/// leader has exited may keep helpers the leader forked; they are not Visor's children, so
/// only this look tells when they are gone. Zombies do not count: their parent (init, or
/// whatever adopted them) reaps them, and no signal can end them.
pub fn group_alive(pgid: u32) -> bool {
    let Some(group) = group_id(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    let exists = unsafe { libc::kill(-group, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_state_and_group(&stat))
            .is_some_and(|(state, group)| group == pgid && state != 'Z' && state != 'X')
    })
}

/// Whether process `pid` leads its own process group, as every node process Visor starts
/// does.
pub fn leads_group(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_state_and_group(&stat))
        .is_some_and(|(_, group)| group == pid)
}

/// The state letter and process group of a `/proc/PID/stat` line (the command name, in
/// parentheses, may itself hold spaces and parentheses).
fn parse_state_and_group(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_that_are_not_a_node_s_are_never_signalled() {
        assert_eq!(group_id(0), None);
        assert_eq!(group_id(1), None, "kill(-1) would signal every process");
        assert_eq!(group_id(u32::MAX), None);
        // SAFETY: getpgrp(2) has no arguments and cannot fail.
        let own = unsafe { libc::getpgrp() } as u32;
        assert_eq!(group_id(own), None);
        assert!(!group_alive(1));
    }

    #[test]
    fn stat_lines_give_state_and_group() {
        assert_eq!(
            parse_state_and_group("42 (zeta) S 1 42 42 0 -1 4194560"),
            Some(('S', 42))
        );
        assert_eq!(
            parse_state_and_group("43 (a (b) c) Z 42 40 40 0"),
            Some(('Z', 40))
        );
        assert_eq!(parse_state_and_group("garbage"), None);
    }

    #[test]
    fn a_group_with_a_sleeping_member_is_alive_until_it_is_killed() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_alive(pgid));
        signal_group(pgid, StopSignal::Kill);
        child.wait().unwrap();
        assert!(!group_alive(pgid));
    }
}
