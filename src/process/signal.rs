//! Signals Visor sends: to a whole process group (a node's, a hook's), or to one process found
//! outside its group, still identified by its start time. Groups 0, 1 and Visor's own are
//! never signalled: `kill(-1)` would reach every process, and `kill(0)` Visor itself.

use super::table;

/// The two signals Visor stops processes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    pub fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        }
    }
}

/// `pgid` as a process group Visor may signal: never 0 (Visor's own group), 1 (`kill(-1)`
/// would signal every process), Visor's own group, or a number beyond `pid_t`.
pub fn signalable_group(pgid: u32) -> Option<libc::pid_t> {
    let group = libc::pid_t::try_from(pgid).ok().filter(|p| *p > 1)?;
    // SAFETY: getpgrp(2) has no arguments and cannot fail.
    let own = unsafe { libc::getpgrp() };
    (group != own).then_some(group)
}

/// Sends `signal` to process group `pgid`; false when the group is refused or gone.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Some(group) = signalable_group(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
    unsafe { libc::kill(-group, signal.number()) == 0 }
}

/// Sends `signal` to process `pid` only while it is the process that started at
/// `start_time`: the pid is held through a pidfd while its start time is compared, so a pid
/// reused in between is never signalled (on a kernel without pidfds, the start time is
/// compared just before `kill`). Never 0, 1 or Visor itself. False when it is gone or another.
pub fn signal_process(pid: u32, start_time: u64, signal: Signal) -> bool {
    let Some(target) = libc::pid_t::try_from(pid).ok().filter(|p| *p > 1) else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, target, 0) };
    if fd < 0 {
        let no_pidfd = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
        if !no_pidfd || table::start_time(pid) != Some(start_time) {
            return false;
        }
        // SAFETY: kill(2) on one pid checked just above; no memory is involved.
        return unsafe { libc::kill(target, signal.number()) } == 0;
    }
    let fd = fd as libc::c_int;
    // The descriptor now holds the process that had the pid when it was opened: if the start
    // time still matches, that process is the one found.
    let sent = table::start_time(pid) == Some(start_time)
        // SAFETY: pidfd_send_signal(2) on the descriptor just opened, no siginfo, no flags.
        && unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                signal.number(),
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        } == 0;
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn groups_0_1_and_visor_s_own_are_never_signalled() {
        assert_eq!(signalable_group(0), None);
        assert_eq!(
            signalable_group(1),
            None,
            "kill(-1) would signal every process"
        );
        assert_eq!(signalable_group(u32::MAX), None);
        // SAFETY: getpgrp(2) has no arguments and cannot fail.
        let own = unsafe { libc::getpgrp() } as u32;
        assert_eq!(signalable_group(own), None);
        assert!(!signal_group(own, Signal::Term));
        assert!(!signal_process(0, 0, Signal::Term));
        assert!(!signal_process(1, 0, Signal::Term));
        let me = std::process::id();
        assert!(!signal_process(
            me,
            table::start_time(me).unwrap(),
            Signal::Term
        ));
    }

    #[test]
    fn a_process_is_signalled_only_with_its_own_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = table::start_time(pid).unwrap();
        assert!(!signal_process(pid, started + 1, Signal::Kill));
        assert!(
            child.try_wait().unwrap().is_none(),
            "signalled with another start time"
        );
        assert!(signal_process(pid, started, Signal::Kill));
        assert!(child.wait().is_ok());
        assert!(!signal_process(pid, started, Signal::Kill), "gone");
    }
}
