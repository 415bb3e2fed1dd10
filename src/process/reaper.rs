//! Visor as a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process that a hook or a
//! node started and whose parent has exited is re-parented to Visor instead of init, so it
//! stays below Visor, where [`descendants`](super::descendants) finds it, and Visor reaps it
//! when it ends.
//!
//! Reaping never takes a child whose pid [`spawn::start`] recorded: those belong to their
//! waiters (std's `Child::wait`), so `waitpid(-1)` is never called. [`reap_orphans`] looks in
//! `/proc` for zombies whose parent is Visor and whose pid is not recorded, and reaps each by
//! its pid. `visor run` calls it on every SIGCHLD from its signal thread, the only thread
//! that receives SIGCHLD ([`block_child_signal`]), so no other thread's system call is ever
//! interrupted by it.

use std::io;

use super::spawn;

/// Makes Visor the reaper of orphans among its descendants.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(2) with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether Visor is a child subreaper now.
pub fn is_subreaper() -> bool {
    let mut value: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer, which is valid.
    let rc = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut value as *mut libc::c_int) };
    rc == 0 && value != 0
}

fn child_signal_set() -> libc::sigset_t {
    // SAFETY: all zeroes is a valid sigset_t to initialise; the calls only write it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocks SIGCHLD in the calling thread and in every thread it starts from now on (a thread
/// inherits its creator's mask; a child process does not: std clears the mask before exec).
pub fn block_child_signal() {
    let set = child_signal_set();
    // SAFETY: pthread_sigmask(3) with a valid set and no old-set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Lets SIGCHLD reach the calling thread (the signal thread, which reaps).
pub fn unblock_child_signal() {
    let set = child_signal_set();
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// Reaps every zombie child of Visor that Visor did not start itself (an orphan re-parented
/// to it); returns how many.
pub fn reap_orphans() -> usize {
    let me = std::process::id();
    // Looked for without holding the record of started children, so a start (a node's, at
    // the upgrade block) never waits for this look.
    let (below, _) = super::descendants::processes_below(me, false);
    let zombies: Vec<u32> = below
        .iter()
        .filter(|s| s.ppid == me && !s.is_live())
        .map(|s| s.pid)
        .collect();
    if zombies.is_empty() {
        return 0;
    }
    // Held while reaping: a zombie's pid cannot be reused before it is reaped, and a child
    // started meanwhile is recorded before this lock is free, so a pid recorded now is a
    // child that its own waiter reaps.
    let started = spawn::started();
    let mut reaped = 0;
    for pid in zombies {
        if started.contains(&pid) {
            continue;
        }
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            continue;
        };
        let mut status = 0;
        // SAFETY: waitpid(2) for one pid with a valid status pointer; WNOHANG never blocks.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            reaped += 1;
        }
    }
    reaped
}
