//! Visor as a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process that a hook or a
//! node started and whose parent has exited is re-parented to Visor instead of init, so it
//! stays below Visor, where [`descendants`](super::descendants) finds it, and Visor reaps it
//! when it ends.
//!
//! Reaping never takes a child whose pid [`spawn::start`] recorded: those belong to their
//! waiters (std's `Child::wait`), so `waitpid(-1)` is never called. [`reap_orphans`] finds the
//! zombie children whose pid is not recorded (with `waitid(WNOWAIT)`, or in `/proc` when a
//! recorded one hides them) and reaps each by its pid. `visor run` calls it on every SIGCHLD from its signal thread, the only thread
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

/// How often, and how long apart, [`reap_orphans`] looks again when the zombie it sees is a
/// child Visor started (its waiter is about to reap it) before it reads `/proc`.
const WAITER_LOOKS: u32 = 3;
const WAITER_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Reaps every zombie child of Visor that Visor did not start itself (an orphan re-parented
/// to it); returns how many.
///
/// Most of the time one `waitid(WNOWAIT)` answers: no zombie child at all, or an orphan,
/// reaped by its pid. Only when the zombie seen is a child Visor started, which may hide
/// others behind it and whose waiter does not take it within a few milliseconds, is `/proc`
/// read. (A SIGCHLD comes with every node process's exit, inside the upgrade's dark time:
/// the common case costs that time nothing.)
pub fn reap_orphans() -> usize {
    reap_orphans_with(peek_zombie, reap, reap_by_scan)
}

/// [`reap_orphans`] with its three system-facing steps passed in: the look at a zombie child,
/// the reap of one pid, and the scan of `/proc` (which takes the record of started children
/// itself, so it is never called with that record held).
fn reap_orphans_with(
    mut peek: impl FnMut() -> Option<u32>,
    mut reap: impl FnMut(u32) -> bool,
    scan: impl FnOnce() -> usize,
) -> usize {
    let mut reaped = 0;
    let mut looks = 0;
    loop {
        let Some(pid) = peek() else {
            return reaped;
        };
        let started = spawn::started();
        if started.contains(&pid) {
            drop(started);
            looks += 1;
            if looks > WAITER_LOOKS {
                return reaped + scan();
            }
            std::thread::sleep(WAITER_PAUSE);
            continue;
        }
        // Reaped with the record held, so a child started meanwhile cannot take the pid.
        let took = reap(pid);
        drop(started);
        if !took {
            // Its waiter took it between the look and the lock (it was a child Visor started),
            // or it cannot be reaped now: never spin on it.
            return reaped + scan();
        }
        reaped += 1;
    }
}

/// The pid of a zombie child of Visor, without reaping it; `None` when there is none.
fn peek_zombie() -> Option<u32> {
    // SAFETY: siginfo_t is plain data for which all zeroes is valid; waitid only writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: waitid filled `info` (si_pid is 0 when no child has changed state).
    let pid = unsafe { info.si_pid() };
    u32::try_from(pid).ok().filter(|p| *p > 0)
}

/// Reaps child `pid` if it has ended.
fn reap(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    let mut status = 0;
    // SAFETY: waitpid(2) for one pid with a valid status pointer; WNOHANG never blocks.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

/// Reaps the zombie children of Visor that it did not start, found in `/proc`.
fn reap_by_scan() -> usize {
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
    zombies
        .into_iter()
        .filter(|pid| !started.contains(pid) && reap(*pid))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The zombie seen was a child Visor started whose waiter reaped it (and removed it from
    /// the record) between the look and the lock: the reap fails and the scan runs. The scan
    /// takes the record itself; holding it there deadlocked `visor run` (every thread then
    /// waited for the record, seen under load at an upgrade).
    #[test]
    fn a_zombie_its_waiter_took_meanwhile_leads_to_a_scan_without_the_record_held() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut looks = 0;
            let reaped = reap_orphans_with(
                || {
                    looks += 1;
                    // A pid no child of this test has: not recorded as started.
                    (looks == 1).then_some(u32::MAX - 7)
                },
                |_| false,
                || {
                    drop(spawn::started());
                    0
                },
            );
            let _ = done_tx.send(reaped);
        });
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok(0),
            "the reaper still held the record of started children when it scanned"
        );
    }

    /// Orphans are reaped one by one until no zombie is left; the scan is not needed.
    #[test]
    fn orphans_are_reaped_until_none_is_left() {
        let zombies = std::cell::RefCell::new(vec![u32::MAX - 3, u32::MAX - 2]);
        let mut reaps = Vec::new();
        let reaped = reap_orphans_with(
            || zombies.borrow().last().copied(),
            |pid| {
                reaps.push(pid);
                zombies.borrow_mut().retain(|z| *z != pid);
                true
            },
            || panic!("no scan when every orphan was reaped"),
        );
        assert_eq!(reaped, 2);
        assert_eq!(reaps, vec![u32::MAX - 2, u32::MAX - 3]);
    }
}
