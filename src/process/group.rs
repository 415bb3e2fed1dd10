//! Process groups: whether one still has a live member, and whether a process leads its own.

use super::signal::signalable_group;
use super::table::{self, Stat};

/// Whether process group `pgid` still has a member that is not a zombie. A group whose
/// leader has exited may keep helpers the leader forked; they are not Visor's children, so
/// only this look tells when they are gone. Zombies do not count: their parent reaps them,
/// and no signal can end them. Groups Visor may not signal are never alive.
pub fn group_alive(pgid: u32) -> bool {
    let Some(group) = signalable_group(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    let exists = unsafe { libc::kill(-group, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    let all = table::all();
    if all.is_empty() {
        // No /proc to tell zombies apart: the group exists.
        return true;
    }
    all.iter().any(|s| s.pgid == pgid && s.is_live())
}

/// The live members of process group `pgid` in `table`.
pub fn live_members(table: &[Stat], pgid: u32) -> impl Iterator<Item = &Stat> {
    table.iter().filter(move |s| s.pgid == pgid && s.is_live())
}

/// Whether process `pid` leads its own process group, as every process Visor starts does.
pub fn leads_group(pid: u32) -> bool {
    Stat::read(pid).is_some_and(|s| s.pgid == pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::signal::{signal_group, Signal};
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_group_with_a_sleeping_member_is_alive_until_it_is_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_alive(pgid));
        assert!(leads_group(pgid));
        signal_group(pgid, Signal::Kill);
        child.wait().unwrap();
        assert!(!group_alive(pgid));
        assert!(!group_alive(1));
        assert!(!leads_group(u32::MAX));
    }
}
