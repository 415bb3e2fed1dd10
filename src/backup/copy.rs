//! The data of one regular file into its new copy: `ioctl(FICLONE)` when the file systems
//! allow (a reflink: no data moves), else `copy_file_range` over the data segments only
//! (`SEEK_DATA`/`SEEK_HOLE`, so a sparse file stays sparse), else `pread`/`pwrite` where the
//! kernel refuses `copy_file_range` (`EXDEV`, `ENOSYS`, `EINVAL`, `EOPNOTSUPP`). What worked is
//! remembered per source file system, so a file system that cannot clone is asked once. For
//! copies, the next files of a folder are read ahead (`read_ahead`) and each copy's writing
//! is started at once (`sync_file_range`), so reads and writes overlap.
//!
//! It must not open, name or set the metadata of files (that is `tree`'s), and calls back
//! after every chunk so the caller can count bytes and stop.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use super::error::BackupError;
use super::sys::{self, Stat};

/// The most bytes moved between two calls back (and checks of cancel and time-out).
const CHUNK: usize = 16 << 20;
/// The buffer of the `pread`/`pwrite` fallback.
const BUFFER: usize = 1 << 20;
/// How many files of a folder ahead of the one being copied the kernel is asked to start
/// reading (`WILLNEED`), and how much of each: small files are read at the disk's latency one
/// by one otherwise. Measured on the bench's tree (bench/backup.sh): 16 ahead 2.6 s, 32 ahead
/// 2.3 s, none 4.0 s.
pub(super) const READ_AHEAD_FILES: usize = 32;
const READ_AHEAD_BYTES: i64 = 8 << 20;

/// How a file's data got into its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// Nothing to move: an empty file.
    Empty,
    /// `FICLONE`: the copy shares the source's blocks.
    Cloned,
    /// The bytes were copied.
    Copied,
}

/// Why a file's copy stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// A system call failed.
    Io(io::Error),
    /// The caller said stop (cancel, time-out).
    Halted(BackupError),
}

impl From<io::Error> for Stop {
    fn from(error: io::Error) -> Self {
        Stop::Io(error)
    }
}

/// What the kernel allowed so far, per source file system (`st_dev`); the destination is
/// always the backup's own folder.
#[derive(Debug, Default)]
pub(super) struct DataCopier {
    clones: HashMap<u64, bool>,
    ranges: HashMap<u64, bool>,
    buffer: Vec<u8>,
}

/// Errors that say the file systems cannot clone at all (as opposed to this one file).
fn cannot_clone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS | libc::EPERM)
    )
}

/// Errors after which `copy_file_range` is replaced by reads and writes.
fn cannot_copy_range(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
    )
}

impl DataCopier {
    /// Whether files from the file system `dev` are known to be copied, not cloned (so
    /// reading ahead pays; for clones it would read data for nothing).
    pub(super) fn copies_from(&self, dev: u64) -> bool {
        self.clones.get(&dev) == Some(&false)
    }

    /// Moves the data of `src` (whose `stat` is `st`) into the empty `dst`, calling
    /// `on_chunk(bytes)` after each chunk (holes count as done when skipped); `dst` ends with
    /// the source's size.
    pub(super) fn copy(
        &mut self,
        src: &File,
        dst: &File,
        st: &Stat,
        on_chunk: &mut dyn FnMut(u64) -> Result<(), BackupError>,
    ) -> Result<Method, Stop> {
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size == 0 {
            return Ok(Method::Empty);
        }
        let dev = st.st_dev;
        if self.clones.get(&dev) != Some(&false) {
            match sys::clone_file(src.as_fd(), dst.as_fd()) {
                Ok(()) => {
                    self.clones.insert(dev, true);
                    on_chunk(size).map_err(Stop::Halted)?;
                    return Ok(Method::Cloned);
                }
                Err(e) if cannot_clone(&e) => {
                    self.clones.insert(dev, false);
                }
                // EINVAL and the like concern this file (alignment, a special inode); copy it.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(Stop::Io(e)),
            }
        }
        sys::advise_sequential(src.as_fd());
        let allocated = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
        let mut offset = 0u64;
        if allocated < size {
            // Fewer blocks than bytes: there are holes; copy only the data between them.
            while offset < size {
                let Some(data) = sys::next_data(src.as_fd(), offset as i64)? else {
                    break;
                };
                let data = data as u64;
                if data >= size {
                    break;
                }
                let hole = (sys::next_hole(src.as_fd(), data as i64)? as u64).min(size);
                on_chunk(data - offset).map_err(Stop::Halted)?;
                self.segment(src, dst, dev, data, hole, on_chunk)?;
                offset = hole;
            }
            on_chunk(size.saturating_sub(offset)).map_err(Stop::Halted)?;
        } else {
            self.segment(src, dst, dev, 0, size, on_chunk)?;
        }
        // A trailing hole, or a file that shrank: the copy gets the size measured.
        dst.set_len(size)?;
        // Writing starts now, beside the reads of the next files, rather than all at the
        // final syncfs.
        sys::start_writeback(dst.as_fd());
        Ok(Method::Copied)
    }

    /// Copies the bytes `start..end`.
    fn segment(
        &mut self,
        src: &File,
        dst: &File,
        dev: u64,
        start: u64,
        end: u64,
        on_chunk: &mut dyn FnMut(u64) -> Result<(), BackupError>,
    ) -> Result<(), Stop> {
        let mut offset = start;
        if self.ranges.get(&dev) != Some(&false) {
            let (mut src_offset, mut dst_offset) = (offset as i64, offset as i64);
            while offset < end {
                let want = CHUNK.min((end - offset) as usize);
                match sys::copy_range(
                    src.as_fd(),
                    &mut src_offset,
                    dst.as_fd(),
                    &mut dst_offset,
                    want,
                ) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        self.ranges.insert(dev, true);
                        offset += n as u64;
                        on_chunk(n as u64).map_err(Stop::Halted)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if cannot_copy_range(&e) => {
                        self.ranges.insert(dev, false);
                        break;
                    }
                    Err(e) => return Err(Stop::Io(e)),
                }
            }
            if offset >= end {
                return Ok(());
            }
        }
        if self.buffer.is_empty() {
            self.buffer = vec![0; BUFFER];
        }
        let mut since_report = 0u64;
        while offset < end {
            let want = BUFFER.min((end - offset) as usize);
            let n = match src.read_at(&mut self.buffer[..want], offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Io(e)),
            };
            dst.write_all_at(&self.buffer[..n], offset)?;
            offset += n as u64;
            since_report += n as u64;
            if since_report >= CHUNK as u64 {
                on_chunk(since_report).map_err(Stop::Halted)?;
                since_report = 0;
            }
        }
        on_chunk(since_report).map_err(Stop::Halted)?;
        Ok(())
    }
}

/// Asks the kernel to start reading the start of the regular file `name` in `dir` now
/// (`posix_fadvise(WILLNEED)`), so its data is in memory when its turn comes. Only a hint:
/// anything that fails is ignored, and nothing but a regular file is opened.
pub(super) fn read_ahead(dir: BorrowedFd, name: &CStr) {
    let Ok(st) = sys::stat_at(dir, name) else {
        return;
    };
    if sys::file_type(&st) != libc::S_IFREG || st.st_size == 0 {
        return;
    }
    if let Ok(file) = sys::open_file_at(dir, name) {
        sys::advise_will_need(file.as_fd(), st.st_size.min(READ_AHEAD_BYTES));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    use crate::backup::tests::Scratch;

    fn copy_with(
        copier: &mut DataCopier,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> (Method, u64) {
        let src = File::open(from).unwrap();
        let dst = File::create(to).unwrap();
        let st = sys::stat_fd(src.as_fd()).unwrap();
        let mut counted = 0;
        let method = copier
            .copy(&src, &dst, &st, &mut |n| {
                counted += n;
                Ok(())
            })
            .unwrap();
        (method, counted)
    }

    #[test]
    fn data_and_holes_arrive_and_every_byte_is_counted() {
        let scratch = Scratch::new("copy-holes");
        let dir = scratch.path();
        let sparse = dir.join("sparse");
        {
            let file = File::create(&sparse).unwrap();
            file.write_all_at(b"head", 0).unwrap();
            file.write_all_at(b"middle", 40 << 20).unwrap();
            file.set_len(100 << 20).unwrap();
        }
        let plain = dir.join("plain");
        let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&plain, &bytes).unwrap();

        let mut copier = DataCopier::default();
        let (method, counted) = copy_with(&mut copier, &sparse, &dir.join("sparse.copy"));
        assert_ne!(method, Method::Empty);
        assert_eq!(counted, 100 << 20);
        let copy = std::fs::read(dir.join("sparse.copy")).unwrap();
        assert_eq!(copy.len(), 100 << 20);
        assert_eq!(&copy[..4], b"head");
        assert_eq!(&copy[40 << 20..(40 << 20) + 6], b"middle");
        assert!(copy[4..40 << 20].iter().all(|b| *b == 0));
        let blocks = std::fs::metadata(dir.join("sparse.copy")).unwrap().blocks();
        assert!(
            blocks * 512 < 4 << 20,
            "the copy is not sparse: {blocks} blocks"
        );

        let (_, counted) = copy_with(&mut copier, &plain, &dir.join("plain.copy"));
        assert_eq!(counted, bytes.len() as u64);
        assert_eq!(std::fs::read(dir.join("plain.copy")).unwrap(), bytes);

        // The read/write fallback gives the same result.
        let dev = std::fs::metadata(&plain).unwrap().dev();
        let mut fallback = DataCopier::default();
        fallback.clones.insert(dev, false);
        fallback.ranges.insert(dev, false);
        let (method, counted) = copy_with(&mut fallback, &plain, &dir.join("plain.rw"));
        assert_eq!((method, counted), (Method::Copied, bytes.len() as u64));
        assert_eq!(std::fs::read(dir.join("plain.rw")).unwrap(), bytes);
        let (_, counted) = copy_with(&mut fallback, &sparse, &dir.join("sparse.rw"));
        assert_eq!(counted, 100 << 20);
        assert_eq!(std::fs::read(dir.join("sparse.rw")).unwrap(), copy);
        let blocks = std::fs::metadata(dir.join("sparse.rw")).unwrap().blocks();
        assert!(blocks * 512 < 4 << 20, "the fallback copy is not sparse");
    }

    #[test]
    fn a_halt_stops_the_copy() {
        let scratch = Scratch::new("copy-halt");
        let dir = scratch.path();
        std::fs::write(dir.join("big"), vec![7u8; 40 << 20]).unwrap();
        let src = File::open(dir.join("big")).unwrap();
        let dst = File::create(dir.join("big.copy")).unwrap();
        let st = sys::stat_fd(src.as_fd()).unwrap();
        let mut calls = 0;
        let mut copier = DataCopier::default();
        // Clones are off so the copy goes chunk by chunk.
        copier.clones.insert(st.st_dev, false);
        let result = copier.copy(&src, &dst, &st, &mut |_| {
            calls += 1;
            Err(BackupError::new(
                super::super::error::ErrorKind::Cancelled,
                "stop",
            ))
        });
        assert!(matches!(result, Err(Stop::Halted(_))));
        assert_eq!(calls, 1);
    }
}
