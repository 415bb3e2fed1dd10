//! `/proc/PID/stat`: the state, parent, process group, session and start time of one process,
//! or of every process at once; and the clock those start times are counted in.

use std::io::Read;

/// The fields of one `/proc/PID/stat` line that Visor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead)...
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// Clock ticks after boot (field 22); with the pid it names one process even after the
    /// pid is reused.
    pub start_time: u64,
}

impl Stat {
    /// Process `pid` now, or `None` when it is gone (or `/proc` cannot tell).
    pub fn read(pid: u32) -> Option<Stat> {
        // A small fixed buffer: a stat line is at most a few hundred bytes.
        let mut buffer = [0u8; 1024];
        let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
        let mut len = 0;
        while len < buffer.len() {
            match file.read(&mut buffer[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Stat::parse(pid, std::str::from_utf8(&buffer[..len]).ok()?)
    }

    /// Parses a stat line (the command name, in parentheses, may itself hold spaces and
    /// parentheses: the fields start after the last `)`).
    pub fn parse(pid: u32, line: &str) -> Option<Stat> {
        let rest = &line[line.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgid = fields.next()?.parse().ok()?;
        let sid = fields.next()?.parse().ok()?;
        // Fields 7 to 21, then the start time (22).
        let start_time = fields.nth(15)?.parse().ok()?;
        Some(Stat {
            pid,
            state,
            ppid,
            pgid,
            sid,
            start_time,
        })
    }

    /// Not a zombie: a zombie has ended, and no signal can end it again.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The start time of process `pid`, in clock ticks after boot.
pub fn start_time(pid: u32) -> Option<u64> {
    Stat::read(pid).map(|s| s.start_time)
}

/// Every process in `/proc` now; one that ends while the folder is read is left out. An
/// unreadable `/proc` gives an empty table.
pub fn all() -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid: u32 = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()?;
            Stat::read(pid)
        })
        .collect()
}

/// The last pid the kernel handed out in Visor's pid namespace
/// (`/proc/sys/kernel/ns_last_pid`): it changes whenever a process or a thread is created.
pub fn last_pid() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").ok()?;
    text.trim().parse().ok()
}

/// Whether `pid` names a process (a thread group's leader) and not another thread of one:
/// `/proc/TID` is there for every thread, though `/proc` lists only processes.
pub fn is_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
        == Some(pid)
}

/// Now, in the unit of [`Stat::start_time`]: clock ticks since boot (`CLOCK_BOOTTIME`, which
/// the kernel counts start times in), rounded down, so a process started from now on has a
/// start time at or after it.
pub fn ticks_now() -> u64 {
    // SAFETY: sysconf(3) has no memory arguments.
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    // SAFETY: all zeroes is a valid timespec; clock_gettime only writes it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return 0;
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds
        .saturating_mul(hz)
        .saturating_add(nanos.saturating_mul(hz) / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_state_parent_group_session_and_start_time() {
        let line = "42 (zeta) S 1 42 40 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 1000 50";
        assert_eq!(
            Stat::parse(42, line),
            Some(Stat {
                pid: 42,
                state: 'S',
                ppid: 1,
                pgid: 42,
                sid: 40,
                start_time: 98765,
            })
        );
        let odd = "43 (a (b) c) Z 42 40 40 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0";
        let stat = Stat::parse(43, odd).unwrap();
        assert_eq!((stat.state, stat.ppid, stat.start_time), ('Z', 42, 7));
        assert!(!stat.is_live());
        assert_eq!(Stat::parse(1, "garbage"), None);
        assert_eq!(Stat::parse(1, "1 (x) S 0 1"), None);
    }

    #[test]
    fn this_process_is_in_the_table_and_started_before_now() {
        let me = std::process::id();
        let stat = Stat::read(me).unwrap();
        assert!(stat.is_live());
        assert_eq!(start_time(me), Some(stat.start_time));
        assert!(stat.start_time <= ticks_now());
        assert!(all().iter().any(|s| s.pid == me));
        assert_eq!(Stat::read(u32::MAX), None);
        assert!(is_process(me));
        // Another thread, asked while it runs.
        let thread_is_process = std::thread::spawn(|| {
            // SAFETY: gettid(2) has no arguments and cannot fail.
            is_process(unsafe { libc::gettid() } as u32)
        })
        .join()
        .unwrap();
        assert!(!thread_is_process);
    }
}
