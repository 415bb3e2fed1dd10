//! What names one process across a restart of Visor, as `status.json` records it for the
//! node processes and the hooks that run: its pid, its start time (clock ticks after boot),
//! the boot it started in (`/proc/sys/kernel/random/boot_id`), its real uid and its
//! executable (the `/proc/PID/exe` target, compared by device and inode, which stay the same
//! when the file is renamed or deleted). After an unclean reboot a stale record can name a
//! pid and start time that an unrelated process has again; the boot id, the uid and the
//! executable tell them apart.

use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};

use super::table;

/// The executable of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    pub path: String,
    pub device: u64,
    pub inode: u64,
}

impl Exe {
    /// The executable process `pid` runs (readable for Visor's own user's processes).
    pub fn of(pid: u32) -> Option<Exe> {
        let link = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&link).ok()?;
        let path = std::fs::read_link(&link)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Some(Exe {
            path,
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// The same file (device and inode), whatever its path reads now.
    pub fn same_file(&self, other: &Exe) -> bool {
        self.device == other.device && self.inode == other.inode
    }
}

/// One process, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
    pub uid: u32,
    pub exe: Exe,
}

/// The id of this boot of the machine.
pub fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The real uid of process `pid` (the first number of the `Uid:` line of its status).
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Identity {
    /// Process `pid` as it is now, or `None` when it is gone or cannot be read whole.
    pub fn of(pid: u32) -> Option<Identity> {
        Identity::of_in_boot(pid, boot_id()?)
    }

    /// As [`Identity::of`], with the boot id already read.
    pub fn of_in_boot(pid: u32, boot_id: String) -> Option<Identity> {
        let start_time = table::start_time(pid)?;
        let uid = uid_of(pid)?;
        let exe = Exe::of(pid)?;
        // The start time again: the same process throughout the reads.
        (table::start_time(pid) == Some(start_time)).then_some(Identity {
            pid,
            start_time,
            boot_id,
            uid,
            exe,
        })
    }

    /// True when process `self.pid` is still the recorded process: the same start time,
    /// boot, uid and executable file.
    pub fn still_runs(&self) -> bool {
        Identity::of(self.pid).is_some_and(|now| self.same_process(&now))
    }

    /// The same process: every field equal, the executable compared as a file.
    pub fn same_process(&self, other: &Identity) -> bool {
        self.pid == other.pid
            && self.start_time == other.start_time
            && self.boot_id == other.boot_id
            && self.uid == other.uid
            && self.exe.same_file(&other.exe)
    }

    /// The fields `status.json` holds for it.
    pub fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "start_time": self.start_time,
            "boot_id": self.boot_id,
            "uid": self.uid,
            "exe": self.exe.path,
            "exe_device": self.exe.device,
            "exe_inode": self.exe.inode,
        })
    }

    /// The identity recorded in a `status.json` entry; `None` when a field is missing or
    /// out of range (a record from an older Visor, or a damaged one: nothing is signalled).
    pub fn from_json(value: &Value) -> Option<Identity> {
        let number = |key: &str| value.get(key).and_then(Value::as_u64);
        Some(Identity {
            pid: u32::try_from(number("pid")?).ok()?,
            start_time: number("start_time")?,
            boot_id: value.get("boot_id")?.as_str()?.to_string(),
            uid: u32::try_from(number("uid")?).ok()?,
            exe: Exe {
                path: value
                    .get("exe")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                device: number("exe_device")?,
                inode: number("exe_inode")?,
            },
        })
    }
}

/// The identities of a few processes, read once per pid; only the executable is read again
/// on every look (a wrapper script that `exec`s the node changes it right after the start).
#[derive(Debug, Default)]
pub struct IdentityCache {
    boot_id: Option<String>,
    known: Vec<Identity>,
}

impl IdentityCache {
    pub fn new() -> IdentityCache {
        IdentityCache {
            boot_id: boot_id(),
            known: Vec::new(),
        }
    }

    /// Process `pid` now; `None` when it is gone or unreadable.
    pub fn get(&mut self, pid: u32) -> Option<Identity> {
        if let Some(known) = self.known.iter_mut().find(|i| i.pid == pid) {
            if let Some(exe) = Exe::of(pid) {
                known.exe = exe;
            }
            return Some(known.clone());
        }
        let identity = Identity::of_in_boot(pid, self.boot_id.clone()?)?;
        self.known.push(identity.clone());
        Some(identity)
    }

    /// The id of the boot read when the cache was made.
    pub fn boot_id(&self) -> Option<&str> {
        self.boot_id.as_deref()
    }

    /// Forgets every pid but `pids`.
    pub fn retain(&mut self, pids: &[u32]) {
        self.known.retain(|i| pids.contains(&i.pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_itself_and_nothing_else() {
        let me = Identity::of(std::process::id()).unwrap();
        assert!(me.still_runs());
        let parsed = Identity::from_json(&me.to_json()).unwrap();
        assert_eq!(parsed, me);
        for (key, value) in [
            ("boot_id", json!("00000000-0000-0000-0000-000000000000")),
            ("start_time", json!(me.start_time + 1)),
            ("uid", json!(me.uid + 1)),
            ("exe_inode", json!(me.exe.inode + 1)),
            ("exe_device", json!(me.exe.device + 1)),
        ] {
            let mut record = me.to_json();
            record[key] = value;
            let other = Identity::from_json(&record).unwrap();
            assert!(!other.still_runs(), "{key} differs, yet it matched");
        }
        // A record without the new fields (an older Visor's) names nobody.
        let old = json!({"pid": me.pid, "start_time": me.start_time});
        assert_eq!(Identity::from_json(&old), None);
        // The path is shown, not compared: a renamed or deleted file is still the file.
        let mut renamed = me.clone();
        renamed.exe.path = "/elsewhere (deleted)".into();
        assert!(renamed.still_runs());
    }
}
