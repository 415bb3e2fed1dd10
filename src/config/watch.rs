//! The config thread (`visor-config`): reads config.toml every second and, when its content
//! changed (or a reload was requested after SIGHUP), parses it and reports the result. A
//! forced read that finds the content it last parsed successfully reports only that
//! ([`ConfigRead::Unchanged`]), so an edit seen by the polling and a SIGHUP after it do not
//! both report the same reading. Reads and
//! parses go through `config::load`, the loader every command uses, so a FIFO or a huge file in
//! its place is reported, not waited on, in the same words; a configuration whose hooks name
//! a program Visor may not run is reported as refused, as `run` refuses it at start.
//!
//! It never applies a configuration; the coordinator and the state machine do.
//!
//! Between reads it looks at the file's metadata first ([`Stamp`]: device, inode, size, change
//! and modification times) and reads only when that changed, or when its last change is less
//! than [`RACY`] older than the last read (a write in the same clock tick as that read would
//! keep the times: such a file is read every second until it is older), or on a forced read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::mpsc::{Receiver, RecvTimeoutError};

use crossbeam_channel::Sender;

use crate::config::{load, Config};

pub const CHECK_PERIOD: Duration = Duration::from_secs(1);

pub type ConfigResult = Result<Box<Config>, Vec<String>>;

/// What one read of config.toml found.
#[derive(Debug)]
pub enum ConfigRead {
    /// A new content (or one that did not parse, read again): its parse.
    Read(ConfigResult),
    /// A forced read found the content last read and parsed successfully.
    Unchanged,
}

/// How much older than a read the file's last change must be for its metadata to vouch that
/// the content read is still the content: far more than the tick of the file times.
const RACY: Duration = Duration::from_secs(2);

/// What tells one content of config.toml from another without reading it: any write changes
/// the change time (`ctime`, which no program can set back), a replacement the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The metadata of `file` (the link's target), if it can be had.
    fn of(file: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(file).ok()?;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// The change time as a wall-clock instant (`None` before 1970 or out of range).
    fn changed_at(&self) -> Option<SystemTime> {
        let (secs, nanos) = self.ctime;
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }
}

/// Whether the content last read (with stamp `read.0`, at wall-clock time `read.1`) is
/// surely still the file's, given its stamp `now`: the same stamp, and a last change at least
/// [`RACY`] before that read.
fn surely_unchanged(read: Option<(Stamp, SystemTime)>, now: Option<Stamp>) -> bool {
    let (Some((stamp, read_at)), Some(now)) = (read, now) else {
        return false;
    };
    stamp == now
        && stamp
            .changed_at()
            .and_then(|changed| changed.checked_add(RACY))
            .is_some_and(|settled| settled <= read_at)
}

/// Starts the thread. `initial` is the content the running configuration was read from, so
/// an unchanged file is not reported. A message on `reload` forces a read and a report.
pub fn start(
    file: PathBuf,
    initial: Vec<u8>,
    reload: Receiver<()>,
    results: Sender<ConfigRead>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("visor-config".into())
        .stack_size(crate::process::PARSER_STACK)
        .spawn(move || {
            let mut last = initial;
            // The running configuration was parsed from `initial`.
            let mut last_parsed = true;
            // The stamp of the file when `last` was read from it, and when.
            let mut last_read: Option<(Stamp, SystemTime)> = None;
            loop {
                let forced = match reload.recv_timeout(CHECK_PERIOD) {
                    Ok(()) => true,
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                let stamp = Stamp::of(&file);
                if !forced && surely_unchanged(last_read, stamp) {
                    continue;
                }
                let read_at = SystemTime::now();
                let read = load::read(&file);
                // A stamp taken before the read vouches only for what the read returned if
                // the file did not change meanwhile (then the next look reads it again).
                last_read = match (&read, stamp) {
                    (Ok(_), Some(stamp)) if Stamp::of(&file) == Some(stamp) => {
                        Some((stamp, read_at))
                    }
                    _ => None,
                };
                let read = match read {
                    Ok(content) => {
                        if content == last && !forced {
                            continue;
                        }
                        if content == last && last_parsed {
                            ConfigRead::Unchanged
                        } else {
                            let parsed = load::parse_usable(&file, &content).map(Box::new);
                            last = content;
                            last_parsed = parsed.is_ok();
                            ConfigRead::Read(parsed)
                        }
                    }
                    Err(message) => {
                        if !forced && last.is_empty() {
                            continue;
                        }
                        // Report a vanished (or unreadable) file once, then stay quiet until
                        // it comes back.
                        last.clear();
                        last_parsed = false;
                        ConfigRead::Read(Err(vec![message]))
                    }
                };
                if results.send(read).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ctime: i64) -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (ctime, 0),
            ctime: (ctime, 0),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn only_the_same_stamp_of_a_file_settled_before_the_read_skips_it() {
        let old = stamp(1_000);
        assert!(surely_unchanged(Some((old, at(1_002))), Some(old)));
        // Changed within RACY of the read: a later write could share its times.
        assert!(!surely_unchanged(Some((old, at(1_001))), Some(old)));
        // Any field that moved, or nothing known.
        let mut moved = old;
        moved.ctime.1 = 1;
        assert!(!surely_unchanged(Some((old, at(5_000))), Some(moved)));
        let mut replaced = old;
        replaced.ino = 9;
        assert!(!surely_unchanged(Some((old, at(5_000))), Some(replaced)));
        assert!(!surely_unchanged(None, Some(old)));
        assert!(!surely_unchanged(Some((old, at(5_000))), None));
        // A change time before 1970 vouches for nothing.
        let odd = stamp(-5);
        assert!(!surely_unchanged(Some((odd, at(5_000))), Some(odd)));
    }

    /// An edit in place that keeps the size and puts the modification time back is seen:
    /// the change time moves.
    #[test]
    fn an_edit_that_keeps_size_and_mtime_is_still_read() {
        let dir = std::env::temp_dir().join(format!("visor-watch-same-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "logLevel = \"info\"\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(RACY + Duration::from_millis(100));
        let (_reload_tx, reload_rx) = std::sync::mpsc::sync_channel(1);
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        start(file.clone(), Vec::new(), reload_rx, results_tx).unwrap();
        let first = results_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(first, ConfigRead::Read(Ok(_))), "{first:?}");
        // Let the watcher settle on this content (read, then looked at again unchanged).
        std::thread::sleep(CHECK_PERIOD * 2);
        std::fs::write(&file, "logLevel = \"warn\"\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // The watcher may catch the file half-written (truncated) first: wait for the edit.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match results_rx.recv_timeout(left) {
                Ok(ConfigRead::Read(Ok(config)))
                    if config.log_level == crate::config::LogLevel::Warn =>
                {
                    break
                }
                Ok(_) => {}
                Err(e) => panic!("the edit was not read: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fifo_in_place_of_config_toml_is_reported_not_waited_on() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("visor-watch-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        let c_path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let (reload_tx, reload_rx) = std::sync::mpsc::sync_channel(1);
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        start(file.clone(), b"old".to_vec(), reload_rx, results_tx).unwrap();
        // Two forced reads in a row: the second is only taken once the first has finished.
        for _ in 0..2 {
            reload_tx.send(()).unwrap();
            let read = results_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let ConfigRead::Read(result) = read else {
                panic!("a FIFO read as unchanged: {read:?}");
            };
            let errors = result.err().unwrap_or_default();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(&format!("{}: is a FIFO", file.display())));
        }
        drop(reload_tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
