//! What a hook run or a node process started, and stopping all of it.
//!
//! A *tree* is one process Visor started (a hook, a node process: the leader of its own
//! process group) with the moment it was started. Its descendants are:
//!
//! 1. the members of its process group;
//! 2. every process whose chain of parents leads to the leader or to another descendant
//!    (a child that called `setsid` while its parent lives);
//! 3. the orphans re-parented to Visor — its children that it did not start itself (Visor is a
//!    child subreaper, see [`reaper`](super::reaper)) — that started at or after the tree's
//!    start and are not in the process group of another process Visor started, with their
//!    own descendants. Once its parent has exited, an orphan's origin cannot be read from
//!    `/proc`; this rule gives it to the first tree stopped after it started, so a `setsid`
//!    child left by a hook or a node never outlives that stop. (An orphan a node process
//!    leaves while a hook runs can therefore be stopped at the end of that hook run.)
//!
//! [`strays_in`] finds the descendants outside the process group (2 and 3): a signal to the group
//! misses them, so each is signalled by pid, identified by its start time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::group::live_members;
use super::signal::{signal_group, signal_process, Signal};
use super::spawn;
use super::table::{self, Stat};

/// How often a stopping tree is looked at again.
pub const PROBE_PERIOD: Duration = Duration::from_millis(50);
/// How long, after SIGKILL, [`stop`] waits for the processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// One process Visor started, the leader of its own process group, and when it was started
/// (clock ticks after boot, [`table::ticks_now`] just before the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub leader: u32,
    pub since: u64,
}

/// A descendant outside its tree's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stray {
    pub pid: u32,
    pub start_time: u64,
}

/// The live descendants of `tree` outside its process group, in `table` (see the module
/// documentation for the rule). `visor` is Visor's pid and `started` the children Visor
/// started and has not reaped ([`spawn::started_pids`]).
pub fn strays_in(table: &[Stat], tree: Tree, visor: u32, started: &BTreeSet<u32>) -> Vec<Stray> {
    // The groups of the other processes Visor started: their orphans are theirs.
    let other_groups: BTreeSet<u32> = started
        .iter()
        .copied()
        .filter(|pid| *pid != tree.leader)
        .collect();
    let mut children: HashMap<u32, Vec<&Stat>> = HashMap::new();
    for stat in table {
        children.entry(stat.ppid).or_default().push(stat);
    }
    let mut found: BTreeSet<u32> = BTreeSet::new();
    let mut queue: Vec<u32> = vec![tree.leader];
    for stat in table {
        let member = stat.pgid == tree.leader;
        let orphan = stat.ppid == visor
            && !started.contains(&stat.pid)
            && stat.start_time >= tree.since
            && !other_groups.contains(&stat.pgid);
        if member || orphan {
            queue.push(stat.pid);
        }
    }
    while let Some(pid) = queue.pop() {
        if !found.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().map(|k| k.pid));
        }
    }
    table
        .iter()
        .filter(|s| {
            found.contains(&s.pid)
                && s.pgid != tree.leader
                && s.is_live()
                && s.pid > 1
                && s.pid != visor
                && !started.contains(&s.pid)
        })
        .map(|s| Stray {
            pid: s.pid,
            start_time: s.start_time,
        })
        .collect()
}

/// What a look at a tree found: whether its group has live members, and its strays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub group_alive: bool,
    pub strays: Vec<Stray>,
}

/// Looks at `trees` in one read of `/proc` (or of the part of it that can matter, see
/// [`processes_below`]).
pub fn probe(trees: &[Tree]) -> Vec<Probe> {
    let visor = std::process::id();
    let started = spawn::started_pids();
    let look = |table: &[Stat]| -> Vec<Probe> {
        trees
            .iter()
            .map(|tree| Probe {
                group_alive: super::signal::signalable_group(tree.leader).is_some()
                    && live_members(table, tree.leader).next().is_some(),
                strays: strays_in(table, *tree, visor, &started),
            })
            .collect()
    };
    let (table, whole) = processes_below(visor, false);
    if whole {
        return look(&table);
    }
    // A group that exists with no member in the part read holds a process that joined it
    // from outside Visor's subtree: read everything.
    let outsider = trees
        .iter()
        .any(|tree| group_exists(tree.leader) && !table.iter().any(|s| s.pgid == tree.leader));
    if outsider {
        let (table, _) = processes_below(visor, true);
        return look(&table);
    }
    look(&table)
}

/// Whether process group `pgid` exists at all (zombies included), for a group Visor may
/// signal.
fn group_exists(pgid: u32) -> bool {
    let Some(group) = super::signal::signalable_group(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    let found = unsafe { libc::kill(-group, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The processes below Visor at the last read, and the last pid the kernel had handed out
/// just before that read.
struct Below {
    last_pid: u64,
    pids: Vec<u32>,
}

static BELOW: Mutex<Option<Below>> = Mutex::new(None);

/// At most this many pids handed out since the last read are read one by one; more, and the
/// whole of `/proc` is read.
const NEW_PIDS_READ: u64 = 256;

/// The processes the rules of this module can name, and whether the whole of `/proc` was
/// read. A process comes below Visor only by being created there or by being re-parented
/// from below Visor to Visor; and the kernel hands out pids in increasing order
/// (`ns_last_pid`, until it wraps around). So reading again the processes that were below
/// Visor at the last read, and the pids handed out since, gives the same answer as reading
/// everything. That makes the look at a node's exit, inside the upgrade's dark time, a few
/// reads instead of one per process of the machine. A wrap-around, more than
/// [`NEW_PIDS_READ`] new pids, or an unreadable `ns_last_pid` make it a whole read.
pub(super) fn processes_below(visor: u32, whole: bool) -> (Vec<Stat>, bool) {
    let last_pid = table::last_pid();
    let mut below = BELOW.lock().unwrap_or_else(|e| e.into_inner());
    if let (false, Some(last), Some(seen)) = (whole, last_pid, below.as_ref()) {
        if last >= seen.last_pid && last - seen.last_pid <= NEW_PIDS_READ {
            let mut part: Vec<Stat> = seen
                .pids
                .iter()
                .filter_map(|pid| Stat::read(*pid))
                .collect();
            let known: BTreeSet<u32> = part.iter().map(|s| s.pid).collect();
            for pid in seen.last_pid + 1..=last {
                let Ok(pid) = u32::try_from(pid) else {
                    break;
                };
                // A new process matters only below Visor: its parent is Visor or a
                // process below it (new ones come in increasing order, parents first).
                let Some(stat) = Stat::read(pid) else {
                    continue;
                };
                let parent_below = stat.ppid == visor
                    || known.contains(&stat.ppid)
                    || part.iter().any(|s| s.pid == stat.ppid);
                if parent_below && table::is_process(pid) {
                    part.push(stat);
                }
            }
            *below = Some(Below {
                last_pid: last,
                pids: subtree(&part, visor),
            });
            return (part, false);
        }
    }
    let all = table::all();
    *below = last_pid.map(|last| Below {
        last_pid: last,
        pids: subtree(&all, visor),
    });
    (all, true)
}

/// Every process of `table` whose chain of parents leads to `root`.
fn subtree(table: &[Stat], root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for stat in table {
        children.entry(stat.ppid).or_default().push(stat.pid);
    }
    let mut found = Vec::new();
    let mut queue = children.get(&root).cloned().unwrap_or_default();
    while let Some(pid) = queue.pop() {
        if pid == root || found.contains(&pid) {
            continue;
        }
        found.push(pid);
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids);
        }
    }
    found
}

/// Stops everything `tree` started and left running (its group's live members and its
/// strays): SIGTERM, then SIGKILL once `timeout` has passed, looking again every
/// [`PROBE_PERIOD`] (a stray found later gets SIGTERM when found). `on_found` is called once,
/// with the first look, when there is something to stop; returns true when SIGKILL was
/// needed. Blocks for at most `timeout` plus a few seconds.
pub fn stop(tree: Tree, timeout: Duration, on_found: impl FnOnce(&Probe)) -> bool {
    let first = probe(&[tree]).pop().unwrap_or_default();
    if !first.group_alive && first.strays.is_empty() {
        return false;
    }
    on_found(&first);
    let mut termed: BTreeSet<Stray> = BTreeSet::new();
    let mut look = first;
    let deadline = Instant::now() + timeout;
    loop {
        if look.group_alive {
            signal_group(tree.leader, Signal::Term);
        }
        for stray in &look.strays {
            if termed.insert(*stray) {
                signal_process(stray.pid, stray.start_time, Signal::Term);
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(PROBE_PERIOD.min(deadline.saturating_duration_since(Instant::now())));
        look = probe(&[tree]).pop().unwrap_or_default();
        if !look.group_alive && look.strays.is_empty() {
            return false;
        }
    }
    kill_all(tree);
    true
}

/// SIGKILL, once, to `tree`'s group and to the strays one look finds.
pub fn kill_once(tree: Tree) {
    let look = probe(&[tree]).pop().unwrap_or_default();
    signal_group(tree.leader, Signal::Kill);
    for stray in &look.strays {
        signal_process(stray.pid, stray.start_time, Signal::Kill);
    }
}

/// SIGKILL to `tree`'s group and strays until none is left (at most [`KILL_WAIT`]).
pub fn kill_all(tree: Tree) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let look = probe(&[tree]).pop().unwrap_or_default();
        if !look.group_alive && look.strays.is_empty() {
            return;
        }
        if look.group_alive {
            signal_group(tree.leader, Signal::Kill);
        }
        for stray in &look.strays {
            signal_process(stray.pid, stray.start_time, Signal::Kill);
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(PROBE_PERIOD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, pgid: u32, start_time: u64) -> Stat {
        Stat {
            pid,
            state: 'S',
            ppid,
            pgid,
            sid: pgid,
            start_time,
        }
    }

    const VISOR: u32 = 10;

    fn pids(strays: Vec<Stray>) -> Vec<u32> {
        strays.into_iter().map(|s| s.pid).collect()
    }

    #[test]
    fn descendants_outside_the_group_are_found_by_parent_and_as_orphans() {
        let hook = Tree {
            leader: 100,
            since: 500,
        };
        let started: BTreeSet<u32> = [100, 200].into();
        let table = vec![
            stat(VISOR, 1, VISOR, 1),
            stat(100, VISOR, 100, 500), // the hook
            stat(101, 100, 100, 501),   // in its group: not a stray
            stat(102, 101, 102, 502),   // setsid child of a member: a stray
            stat(103, 102, 102, 503),   // its child
            stat(104, VISOR, 104, 504), // an orphan that left the group, re-parented to Visor
            stat(105, 104, 104, 505),   // its child
            stat(106, VISOR, 106, 400), // an orphan older than the hook: not the hook's
            stat(200, VISOR, 200, 300), // the core, started by Visor
            stat(201, VISOR, 200, 600), // an orphan still in the core's group: the core's
            stat(300, 1, 300, 700),     // an unrelated process
        ];
        assert_eq!(
            pids(strays_in(&table, hook, VISOR, &started)),
            vec![102, 103, 104, 105]
        );
        let core = Tree {
            leader: 200,
            since: 300,
        };
        // The core's orphans include the orphans of the hook that started after the core
        // (rule 3: the first tree stopped claims them), never the hook's own group.
        assert_eq!(
            pids(strays_in(&table, core, VISOR, &started)),
            vec![104, 105, 106]
        );
    }

    #[test]
    fn the_subtree_of_visor_is_every_process_below_it() {
        let table = vec![
            stat(VISOR, 1, VISOR, 1),
            stat(100, VISOR, 100, 2),
            stat(101, 100, 100, 3),
            stat(102, 101, 102, 4),
            stat(200, 1, 200, 5),
            stat(201, 200, 200, 6),
        ];
        let mut below = subtree(&table, VISOR);
        below.sort();
        assert_eq!(below, vec![100, 101, 102]);
    }

    #[test]
    fn a_look_sees_the_group_whether_it_reads_all_or_part_of_proc() {
        use std::os::unix::process::CommandExt;
        let since = table::ticks_now();
        let mut command = std::process::Command::new("sleep");
        command.arg("30").process_group(0);
        let mut leader = spawn::start(&mut command).unwrap();
        let tree = Tree {
            leader: leader.id(),
            since,
        };
        // Twice: a whole read, then (when few pids were handed out meanwhile) the part below.
        for _ in 0..2 {
            let look = probe(&[tree]).pop().unwrap();
            assert!(look.group_alive);
            assert!(look.strays.is_empty());
        }
        kill_once(tree);
        let _ = leader.wait();
        spawn::reaped(tree.leader);
        assert!(!probe(&[tree]).pop().unwrap().group_alive);
    }

    #[test]
    fn zombies_visor_and_its_started_children_are_never_strays() {
        let tree = Tree {
            leader: 100,
            since: 0,
        };
        let mut zombie = stat(102, 100, 102, 5);
        zombie.state = 'Z';
        let started: BTreeSet<u32> = [100, 103].into();
        let table = vec![
            stat(100, VISOR, 100, 1),
            zombie,
            stat(103, VISOR, 103, 6),
            stat(1, 0, 1, 0),
        ];
        assert!(strays_in(&table, tree, VISOR, &started).is_empty());
    }
}
