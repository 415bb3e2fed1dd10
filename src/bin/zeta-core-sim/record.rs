//! The record file: events appended as JSON lines, one `write(2)` each, so that several
//! simulator processes can share one file; and the clock and lock helpers its users share.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::PROG;

/// The realtime clock in nanoseconds since the Unix epoch.
pub(crate) fn realtime_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Appends events to the record file, one JSON object per line, each with a single `write(2)`
/// on a descriptor opened with `O_APPEND`, so that several processes can share the file.
pub(crate) struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
    warned: AtomicBool,
}

impl Recorder {
    pub(crate) fn open(path: &Path) -> io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            warned: AtomicBool::new(false),
        })
    }

    /// Writes one event; `t_ns` is added last unless the fields hold it.
    pub(crate) fn event(&self, fields: &[(&str, Value)]) {
        let mut line = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&Value::from(*name).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        if !fields.iter().any(|(name, _)| *name == "t_ns") {
            line.push_str(&format!(",\"t_ns\":{}", realtime_ns()));
        }
        line.push_str("}\n");
        let result = lock(&self.file).write_all(line.as_bytes());
        if let Err(error) = result {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "{PROG}: cannot write to record file {}: {error}",
                    self.path.display()
                );
            }
        }
    }
}

/// Locks a mutex, carrying on with the data if another thread panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
