//! The two bounds on what one install writes into HOME, from `[autoInstall]`:
//! `maxDownloadBytes`, the most it downloads or copies (a release asset, a `--from` URL or
//! file) and the most a zip asset expands to, and `minFreeBytes`, the free space a download,
//! copy or extraction must leave on HOME's file system, which the node's data usually shares.
//!
//! [`Room`] checks them and words the refusals, naming the key; the download, the copy and the
//! zip extraction call it before they write (against what the release, a Content-Length, the
//! file's size or the zip's declared sizes announce) and while they write
//! ([`CHECK_EVERY`]). A leaf beside `error`: it knows nothing of releases, HTTP or zips.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{invalid, local, InstallError};
use crate::config::AutoInstall;

/// How many bytes a download or a copy writes between two looks at the free space.
pub const CHECK_EVERY: u64 = 1 << 20;

/// The bounds of one install and the folder whose file system they watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// A folder on HOME's file system (the half-made folder, or HOME itself).
    folder: PathBuf,
    /// `maxDownloadBytes`.
    pub max_bytes: u64,
    /// `minFreeBytes`; 0 turns the free-space check off.
    pub min_free: u64,
}

impl Room {
    /// The bounds of `auto`, watching the file system of `folder`.
    pub fn new(folder: &Path, auto: &AutoInstall) -> Room {
        Room {
            folder: folder.to_path_buf(),
            max_bytes: auto.max_download_bytes,
            min_free: auto.min_free_bytes,
        }
    }

    /// Only a size bound, with no free-space check: for a client no install configured.
    pub fn size_only(max_bytes: u64) -> Room {
        Room {
            folder: PathBuf::new(),
            max_bytes,
            min_free: 0,
        }
    }

    /// Refuses `bytes` (announced by `source`: "the release lists it at", "Content-Length
    /// announces", ...) or received so far when they exceed `maxDownloadBytes`.
    pub fn check_size(&self, what: &str, source: &str, bytes: u64) -> Result<(), InstallError> {
        if bytes <= self.max_bytes {
            return Ok(());
        }
        Err(invalid(format!(
            "{what}: {source} {bytes} bytes, more than maxDownloadBytes = {} in [autoInstall] of \
             config.toml; refused, nothing was installed: raise maxDownloadBytes if the release \
             really is that large, else check the asset or the URL",
            self.max_bytes
        )))
    }

    /// Refuses to go on when writing `still_to_write` more bytes would leave less than
    /// `minFreeBytes` free on the file system of the folder watched.
    pub fn check_free(&self, what: &str, still_to_write: u64) -> Result<(), InstallError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let free = free_bytes(&self.folder).map_err(|e| {
            local(format!(
                "{what}: cannot tell the free space of the file system of {} ({e}), which \
                 minFreeBytes in [autoInstall] of config.toml needs; set minFreeBytes = 0 to do \
                 without the check",
                self.folder.display()
            ))
        })?;
        if free >= self.min_free.saturating_add(still_to_write) {
            return Ok(());
        }
        let writing = if still_to_write > 0 {
            format!(" with {still_to_write} bytes still to write")
        } else {
            String::new()
        };
        Err(local(format!(
            "{what}: stopped, it would leave less than minFreeBytes = {} bytes free on the file \
             system of {} ({free} bytes free{writing}); nothing was installed: free space there, \
             or lower minFreeBytes in [autoInstall] of config.toml",
            self.min_free,
            self.folder.display()
        )))
    }
}

/// The bytes an unprivileged process may still write on the file system of `path`
/// (`statvfs`: available blocks times the fragment size).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL"))?;
    // SAFETY: statvfs is plain old data; all-zero bytes are a valid value for it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to a statvfs that outlive the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::error::InstallErrorKind;

    fn room(max_bytes: u64, min_free: u64) -> Room {
        Room {
            folder: std::env::temp_dir(),
            max_bytes,
            min_free,
        }
    }

    #[test]
    fn sizes_past_max_download_bytes_are_refused_naming_the_key() {
        assert!(room(10, 0).check_size("w", "x is", 10).is_ok());
        let error = room(10, 0)
            .check_size("release v2 asset a.zip", "Content-Length announces", 11)
            .unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Invalid);
        assert!(
            error.message.starts_with(
                "release v2 asset a.zip: Content-Length announces 11 bytes, more than \
                 maxDownloadBytes = 10 in [autoInstall] of config.toml; refused"
            ),
            "{}",
            error.message
        );
    }

    #[test]
    fn free_space_below_min_free_bytes_stops_naming_the_key() {
        let free = free_bytes(&std::env::temp_dir()).unwrap();
        assert!(room(1, 0).check_free("w", u64::MAX).is_ok(), "0 is off");
        assert!(room(1, 1).check_free("w", 0).is_ok() || free == 0);
        let error = room(1, free.saturating_add(1 << 40))
            .check_free("v2 from /tmp/zeta", 5)
            .unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Local);
        assert!(
            error.message.starts_with(
                "v2 from /tmp/zeta: stopped, it would leave less than minFreeBytes = "
            ),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("with 5 bytes still to write"),
            "{}",
            error.message
        );
        let gone = Room {
            folder: PathBuf::from("/nonexistent/visor"),
            ..room(1, 1)
        };
        assert!(gone
            .check_free("w", 0)
            .unwrap_err()
            .message
            .contains("minFreeBytes = 0"));
    }
}
