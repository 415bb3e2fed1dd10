//! Extraction of a release's zip asset into a half-made version folder:
//! every entry is checked before anything is written, and one bad entry refuses the whole
//! asset — a path that is absolute, holds `..`, a backslash or a NUL, a symbolic link or any
//! other entry that is not a plain file or folder, an encrypted entry, two entries for the same
//! path, and archives whose files would add up to more than a bound or expand more than 200
//! times their compressed size (zip bombs).
//!
//! It owns only the zip format and the writes below the folder it is given: it creates no link,
//! follows none it did not make, never writes outside that folder, and decides nothing about
//! what the folder is for. It does not log; the caller reports.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{interrupted, invalid, local, InstallError};
use super::space::Room;
use super::staging::{make_folder, EXECUTABLE_MODE, FILE_MODE};

/// What an archive may hold at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The sum of the uncompressed sizes of all files, declared and actual.
    pub max_total_bytes: u64,
    /// The number of entries.
    pub max_entries: usize,
    /// How many times its compressed size an entry (or the whole archive) may expand to, once
    /// it is larger than [`RATIO_FLOOR`].
    pub max_ratio: u64,
}

/// The bounds used by auto-install: 4 GiB, 100 000 entries, 200:1.
pub const LIMITS: Limits = Limits {
    max_total_bytes: 4 << 30,
    max_entries: 100_000,
    max_ratio: 200,
};

/// Entries (and archives) of at most this many uncompressed bytes are exempt from the ratio
/// bound: a few KiB of padding compress beyond 200:1 and are harmless, and the total bound
/// still holds.
pub const RATIO_FLOOR: u64 = 64 << 10;

/// Whether `size` bytes from `compressed` bytes exceed `max_ratio`, for sizes above
/// [`RATIO_FLOOR`].
pub fn exceeds_ratio(size: u64, compressed: u64, max_ratio: u64) -> bool {
    size > RATIO_FLOOR && size > compressed.saturating_mul(max_ratio)
}

/// `1034:1`, or `unbounded` for data from nothing.
fn ratio(size: u64, compressed: u64) -> String {
    match size.checked_div(compressed) {
        Some(ratio) => format!("{ratio}:1"),
        None => "unbounded".to_owned(),
    }
}

/// The file-type bits of a unix mode.
const S_IFMT: u32 = 0o170_000;
/// A regular file.
const S_IFREG: u32 = 0o100_000;
/// A folder.
const S_IFDIR: u32 = 0o040_000;
/// A symbolic link.
const S_IFLNK: u32 = 0o120_000;

/// What an entry is, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Folder,
}

/// What was extracted: the folders made (for fsync) and the files written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub folders: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// Checks an entry's name and returns its path components below the extraction folder;
/// `.` and empty components are dropped. An empty result is the folder itself.
pub fn entry_components(name: &str) -> Result<Vec<&str>, String> {
    if name.is_empty() {
        return Err("has an empty name".to_owned());
    }
    if name.contains('\0') {
        return Err("has a NUL character in its name".to_owned());
    }
    if name.contains('\\') {
        return Err("has a backslash in its name, which is not a portable path".to_owned());
    }
    if name.chars().any(char::is_control) {
        return Err("has control characters in its name".to_owned());
    }
    if name.starts_with('/') {
        return Err("is an absolute path".to_owned());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has a '..' component, which would land outside".to_owned()),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// Decides what an entry is from its name (a trailing `/` is a folder) and its unix mode, if
/// the archive carries one; anything other than a plain file or folder is refused.
pub fn entry_kind(name: &str, unix_mode: Option<u32>) -> Result<EntryKind, String> {
    let named_folder = name.ends_with('/');
    let kind = unix_mode.map_or(0, |mode| mode & S_IFMT);
    match (kind, named_folder) {
        // Some tools mark folder entries as regular files; the trailing '/' decides, since a
        // file cannot have such a name.
        (0 | S_IFDIR | S_IFREG, true) => Ok(EntryKind::Folder),
        (0 | S_IFREG, false) => Ok(EntryKind::File),
        (S_IFLNK, _) => Err("is a symbolic link".to_owned()),
        (S_IFDIR, false) => {
            Err("is marked as a folder but its name does not end in '/'".to_owned())
        }
        (other, _) => Err(format!(
            "is not a plain file or folder (file type {other:o})"
        )),
    }
}

/// One checked entry, ready to extract.
struct Planned {
    index: usize,
    path: String,
    kind: EntryKind,
    size: u64,
    executable: bool,
}

/// The total number of entries the zip's end-of-central-directory record declares (the
/// zip64 record when the classic one says 0xFFFF), or `None` when no record is found (the zip
/// reader then refuses the file anyway).
fn declared_entries(zip: &Path) -> std::io::Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(zip)?;
    let size = file.seek(SeekFrom::End(0))?;
    // The record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
    let tail_len = size.min(22 + 65_535);
    file.seek(SeekFrom::Start(size - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    let Some(at) = tail
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .filter(|at| at + 22 <= tail.len())
    else {
        return Ok(None);
    };
    let classic = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
    if classic != 0xFFFF {
        return Ok(Some(u64::from(classic)));
    }
    // Zip64: a 20-byte locator just before the record points at the zip64 record.
    let Some(locator) = at
        .checked_sub(20)
        .filter(|l| &tail[*l..*l + 4] == b"PK\x06\x07")
    else {
        return Ok(None);
    };
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&tail[locator + 8..locator + 16]);
    file.seek(SeekFrom::Start(u64::from_le_bytes(offset)))?;
    let mut record = [0u8; 40];
    file.read_exact(&mut record)?;
    if &record[..4] != b"PK\x06\x06" {
        return Ok(None);
    }
    let mut total = [0u8; 8];
    total.copy_from_slice(&record[32..40]);
    Ok(Some(u64::from_le_bytes(total)))
}

/// One extraction: the zip, the folder it goes into, and what to refuse or leave out.
#[derive(Debug, Clone, Copy)]
pub struct Extraction<'a> {
    /// The zip file.
    pub zip: &'a Path,
    /// The existing folder it is extracted into.
    pub into: &'a Path,
    /// Names the asset in messages.
    pub what: &'a str,
    /// The path of the binary inside the zip, which must be a file entry.
    pub binary: &'a str,
    /// Top-level names refused (the downloaded asset lives there too).
    pub reserved: &'a [&'a str],
    /// A top-level file left out (the caller writes its own).
    pub skip: &'a str,
    /// What the archive may hold at most.
    pub limits: Limits,
    /// The free space the extraction must leave (`minFreeBytes`), checked against the files'
    /// declared sizes before the first write; none for no check.
    pub room: Option<&'a Room>,
    /// Stops the write pass, between entries and between chunks.
    pub cancel: &'a AtomicBool,
}

/// What the check pass found: the entries to write and the paths they make.
#[derive(Default)]
struct Plan {
    entries: Vec<Planned>,
    files: BTreeSet<String>,
    folders: BTreeSet<String>,
    /// The sum of the files' declared sizes.
    declared: u64,
    /// The sum of the files' compressed sizes.
    compressed: u64,
}

impl Plan {
    /// Counts a file entry against the bounds on the total size and on its expansion.
    fn add_file(
        &mut self,
        job: &Extraction,
        name: &str,
        size: u64,
        compressed: u64,
    ) -> Result<(), InstallError> {
        let (what, limits) = (job.what, job.limits);
        self.declared = self.declared.saturating_add(size);
        if self.declared > limits.max_total_bytes {
            return Err(invalid(format!(
                "{what}: the zip's files add up to more than {} bytes uncompressed, the most an \
                 install writes (maxDownloadBytes in [autoInstall] of config.toml); refusing it \
                 as a possible zip bomb: raise maxDownloadBytes if the release really is that \
                 large",
                limits.max_total_bytes
            )));
        }
        if exceeds_ratio(size, compressed, limits.max_ratio) {
            let why = format!(
                "expands {} ({size} bytes from {compressed} compressed), more than the {}:1 Visor \
                 accepts, as a possible zip bomb",
                ratio(size, compressed),
                limits.max_ratio
            );
            return Err(refuse_entry(what, name, &why));
        }
        self.compressed = self.compressed.saturating_add(compressed);
        Ok(())
    }
}

/// The refusal of the whole asset because of entry `name`.
fn refuse_entry(what: &str, name: &str, why: &str) -> InstallError {
    invalid(format!(
        "{what}: zip entry {name:?} {why}; refusing the whole asset, report it to the publisher"
    ))
}

/// Extracts `job.zip` into `job.into`: a check pass over every entry ([`check`]), so that a
/// bad one refuses the asset before the first byte is written, then a write pass ([`write`]).
pub fn extract(job: &Extraction) -> Result<Extracted, InstallError> {
    let mut archive = open(job)?;
    let plan = check(job, &mut archive)?;
    write(job, &mut archive, plan)
}

/// Opens the archive and refuses one with duplicate names or too many entries.
fn open(job: &Extraction) -> Result<zip::ZipArchive<File>, InstallError> {
    let (zip, what, limits) = (job.zip, job.what, job.limits);
    let file = File::open(zip).map_err(|e| {
        local(format!(
            "{what}: cannot open the download {} ({e}); check the home folder",
            zip.display()
        ))
    })?;
    let archive = zip::ZipArchive::new(file).map_err(|e| {
        invalid(format!(
            "{what}: not a readable zip archive ({e}); report it to the publisher, or if the \
             asset is the binary itself give it a name that does not end in .zip"
        ))
    })?;
    // The reader keeps one entry per name, so a second entry with the same name (a link
    // hidden behind a file, say) would never be checked: compare with the count the archive
    // itself declares.
    match declared_entries(zip) {
        Ok(Some(count)) if count != archive.len() as u64 => {
            return Err(invalid(format!(
                "{what}: the zip declares {count} entries but only {} distinct names: two entries \
                 share a name, so what would be installed is ambiguous; refusing it",
                archive.len()
            )));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(local(format!(
                "{what}: cannot read the download {} ({e}); check the home folder",
                zip.display()
            )))
        }
    }
    if archive.len() > limits.max_entries {
        return Err(invalid(format!(
            "{what}: the zip has {} entries, more than the {} Visor accepts; refusing it",
            archive.len(),
            limits.max_entries
        )));
    }
    Ok(archive)
}

/// The check pass: every entry ([`check_entry`]), then the archive as a whole: its expansion
/// in all, no path both a file and a folder, and the binary among the files.
fn check(job: &Extraction, archive: &mut zip::ZipArchive<File>) -> Result<Plan, InstallError> {
    let (what, limits) = (job.what, job.limits);
    let mut plan = Plan::default();
    for index in 0..archive.len() {
        check_entry(job, archive, index, &mut plan)?;
    }
    let (declared, compressed) = (plan.declared, plan.compressed);
    if exceeds_ratio(declared, compressed, limits.max_ratio) {
        return Err(invalid(format!(
            "{what}: the zip's files expand {} in all ({declared} bytes from {compressed} \
             compressed), more than the {}:1 Visor accepts; refusing it as a possible zip bomb, \
             report it to the publisher",
            ratio(declared, compressed),
            limits.max_ratio
        )));
    }
    if let Some(clash) = plan.files.intersection(&plan.folders).next() {
        return Err(refuse_entry(what, clash, "is both a file and a folder"));
    }
    check_binary(job, &plan.files)?;
    if let Some(room) = job.room {
        room.check_free(what, plan.declared)?;
    }
    Ok(plan)
}

/// Checks entry `index` and adds it to the plan: a safe relative name, a plain file or folder,
/// not encrypted, not reserved, not twice, within the size and ratio bounds. The skipped file
/// and the extraction folder itself are left out.
fn check_entry(
    job: &Extraction,
    archive: &mut zip::ZipArchive<File>,
    index: usize,
    plan: &mut Plan,
) -> Result<(), InstallError> {
    let what = job.what;
    let entry = archive.by_index_raw(index).map_err(|e| {
        invalid(format!(
            "{what}: zip entry {index} cannot be read ({e}); report it to the publisher"
        ))
    })?;
    let name = entry.name().to_owned();
    let refuse = |why: &str| refuse_entry(what, &name, why);
    let parts = entry_components(&name).map_err(|why| refuse(&why))?;
    if entry.enclosed_name().is_none() {
        return Err(refuse("is not a safe relative path"));
    }
    let kind = entry_kind(&name, entry.unix_mode()).map_err(|why| refuse(&why))?;
    if entry.encrypted() {
        return Err(refuse("is encrypted"));
    }
    let Some(first) = parts.first() else {
        if kind == EntryKind::Folder {
            return Ok(());
        }
        return Err(refuse("has no file name"));
    };
    if job.reserved.contains(first) {
        return Err(refuse("would replace the downloaded asset itself"));
    }
    let path = parts.join("/");
    if kind == EntryKind::File && parts.len() == 1 && path == job.skip {
        return Ok(());
    }
    for depth in 1..parts.len() {
        plan.folders.insert(parts[..depth].join("/"));
    }
    match kind {
        EntryKind::Folder => {
            plan.folders.insert(path.clone());
        }
        EntryKind::File => {
            if !plan.files.insert(path.clone()) {
                return Err(refuse("appears twice"));
            }
            plan.add_file(job, &name, entry.size(), entry.compressed_size())?;
        }
    }
    let executable = entry.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
    plan.entries.push(Planned {
        index,
        path,
        kind,
        size: entry.size(),
        executable,
    });
    Ok(())
}
/// Refuses an archive whose files do not include the binary.
fn check_binary(job: &Extraction, files: &BTreeSet<String>) -> Result<(), InstallError> {
    let (what, binary) = (job.what, job.binary);
    let binary_parts = entry_components(binary).unwrap_or_default();
    let binary_path = binary_parts.join("/");
    if files.contains(&binary_path) {
        return Ok(());
    }
    let shown: Vec<&str> = files.iter().take(10).map(String::as_str).collect();
    let more = files.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let held = if shown.is_empty() {
        "no files".to_owned()
    } else {
        format!("{}{more}", shown.join(", "))
    };
    Err(invalid(format!(
        "{what}: the zip has no file {binary} (it holds {held}); set binaryName in \
         [autoInstall.asset] of config.toml to the binary's path inside the zip"
    )))
}

/// The write pass, over the checked entries only. Folders come from the checked names only,
/// so nothing is followed.
fn write(
    job: &Extraction,
    archive: &mut zip::ZipArchive<File>,
    plan: Plan,
) -> Result<Extracted, InstallError> {
    let into = job.into;
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    let mut extracted = Extracted::default();
    let mut written: u64 = 0;
    for planned in plan.entries {
        if job.cancel.load(Ordering::Relaxed) {
            return Err(interrupted(job.what));
        }
        let target = into.join(&planned.path);
        let parent = match planned.kind {
            EntryKind::Folder => target.clone(),
            EntryKind::File => target.parent().unwrap_or(into).to_path_buf(),
        };
        make_parents(job, &parent, &mut made)?;
        if planned.kind == EntryKind::Folder {
            continue;
        }
        write_file(job, archive, &planned, &target, &mut written)?;
        extracted.files.push(target);
    }
    extracted.folders = made.into_iter().collect();
    Ok(extracted)
}

/// Makes each missing folder from `job.into` down to `parent`, made by this extraction only
/// (nothing here existed before it, and it makes no links), with its mode set whatever the
/// umask; `made` holds the folders made so far.
fn make_parents(
    job: &Extraction,
    parent: &Path,
    made: &mut BTreeSet<PathBuf>,
) -> Result<(), InstallError> {
    let into = job.into;
    if parent == into || made.contains(parent) {
        return Ok(());
    }
    let mut folder = into.to_path_buf();
    for part in parent
        .strip_prefix(into)
        .unwrap_or(Path::new(""))
        .components()
    {
        folder.push(part);
        if made.contains(&folder) {
            continue;
        }
        make_folder(&folder).map_err(|e| {
            local(format!(
                "{}: cannot create {} ({e}); check the home folder",
                job.what,
                folder.display()
            ))
        })?;
        made.insert(folder.clone());
    }
    Ok(())
}

/// Writes one checked file entry to `target` (which must not exist) with its mode, and
/// flushes it; `written` counts the bytes of the whole archive written so far.
fn write_file(
    job: &Extraction,
    archive: &mut zip::ZipArchive<File>,
    planned: &Planned,
    target: &Path,
    written: &mut u64,
) -> Result<(), InstallError> {
    let what = job.what;
    let mut entry = archive.by_index(planned.index).map_err(|e| {
        invalid(format!(
            "{what}: zip entry {:?} cannot be read ({e}); report it to the publisher",
            planned.path
        ))
    })?;
    let mode = if planned.executable {
        EXECUTABLE_MODE
    } else {
        FILE_MODE
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .and_then(|file| {
            // The mode given to open is narrowed by the umask; set it exactly.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            Ok(file)
        })
        .map_err(|e| {
            local(format!(
                "{what}: cannot create {} ({e}); check the home folder",
                target.display()
            ))
        })?;
    copy_entry(job, &mut entry, planned, &mut out, target, written)?;
    out.sync_all().map_err(|e| {
        local(format!(
            "{what}: cannot flush {} to disk ({e}); check the home folder's file system",
            target.display()
        ))
    })
}

/// Copies an entry's bytes to `out`, refusing more than it declared (or than the archive may
/// hold in all) and fewer than it declared, and stopping at a cancel.
fn copy_entry(
    job: &Extraction,
    entry: &mut impl Read,
    planned: &Planned,
    out: &mut File,
    target: &Path,
    written: &mut u64,
) -> Result<(), InstallError> {
    let what = job.what;
    let mut buffer = vec![0u8; 64 << 10];
    let mut bytes: u64 = 0;
    loop {
        let n = match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(invalid(format!(
                    "{what}: zip entry {:?} is corrupt ({e}); report it to the publisher",
                    planned.path
                )))
            }
        };
        bytes += n as u64;
        *written += n as u64;
        if bytes > planned.size || *written > job.limits.max_total_bytes {
            return Err(invalid(format!(
                "{what}: zip entry {:?} holds more than its declared {} bytes; refusing it as a \
                 possible zip bomb",
                planned.path, planned.size
            )));
        }
        out.write_all(buffer.get(..n).unwrap_or_default())
            .map_err(|e| {
                local(format!(
                    "{what}: cannot write {} ({e}); check the free space of the home folder",
                    target.display()
                ))
            })?;
        if job.cancel.load(Ordering::Relaxed) {
            return Err(interrupted(what));
        }
    }
    if bytes != planned.size {
        return Err(invalid(format!(
            "{what}: zip entry {:?} holds {bytes} bytes, not its declared {}; report it to the \
             publisher",
            planned.path, planned.size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::error::InstallErrorKind;
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    /// A scratch folder with `archive.zip` holding `files` and an empty `out/`.
    fn scratch(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-zip-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("out")).unwrap();
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (name, data) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        fs::write(
            dir.join("archive.zip"),
            writer.finish().unwrap().into_inner(),
        )
        .unwrap();
        dir
    }

    fn run(dir: &Path, binary: &str, limits: Limits) -> Result<Extracted, InstallError> {
        extract(&Extraction {
            zip: &dir.join("archive.zip"),
            into: &dir.join("out"),
            what: "asset a.zip",
            binary,
            reserved: &["a.zip"],
            skip: "run-config.toml",
            limits,
            room: None,
            cancel: &AtomicBool::new(false),
        })
    }

    #[test]
    fn extracts_files_and_reports_folders() {
        let dir = scratch(
            "ok",
            &[
                ("bin/zeta", b"#!/bin/sh\n"),
                ("doc/a/b.txt", b"b"),
                ("run-config.toml", b"x"),
            ],
        );
        let extracted = run(&dir, "bin/zeta", LIMITS).unwrap();
        assert_eq!(extracted.files.len(), 2);
        assert_eq!(
            extracted.folders,
            [
                dir.join("out/bin"),
                dir.join("out/doc"),
                dir.join("out/doc/a")
            ]
        );
        assert_eq!(fs::read(dir.join("out/doc/a/b.txt")).unwrap(), b"b");
        assert!(
            !dir.join("out/run-config.toml").exists(),
            "the reserved file was written"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn archives_over_the_limits_are_refused_before_writing() {
        let big = vec![0u8; 4096];
        let dir = scratch("bomb", &[("zeta", b"z"), ("big", &big)]);
        let limits = Limits {
            max_total_bytes: 1024,
            ..LIMITS
        };
        let error = run(&dir, "zeta", limits).unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Invalid);
        assert!(
            error.message.contains("possible zip bomb"),
            "{}",
            error.message
        );
        assert_eq!(fs::read_dir(dir.join("out")).unwrap().count(), 0);
        let limits = Limits {
            max_total_bytes: 1 << 20,
            max_entries: 1,
            ..LIMITS
        };
        let error = run(&dir, "zeta", limits).unwrap_err();
        assert!(error.message.contains("2 entries"), "{}", error.message);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_extraction_that_would_leave_too_little_free_space_stops_before_writing() {
        let dir = scratch("room", &[("zeta", b"#!/bin/sh\n"), ("data", &[7u8; 5000])]);
        let free = super::super::space::free_bytes(&dir).unwrap();
        let auto = crate::config::AutoInstall {
            // Room for the files' 5010 bytes but not for them and minFreeBytes together.
            min_free_bytes: free.saturating_sub(100),
            ..crate::config::AutoInstall::default()
        };
        let room = Room::new(&dir, &auto);
        let error = extract(&Extraction {
            zip: &dir.join("archive.zip"),
            into: &dir.join("out"),
            what: "asset a.zip",
            binary: "zeta",
            reserved: &["a.zip"],
            skip: "run-config.toml",
            limits: LIMITS,
            room: Some(&room),
            cancel: &AtomicBool::new(false),
        })
        .unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Local);
        assert!(
            error.message.contains("minFreeBytes")
                && error.message.contains("5010 bytes still to write"),
            "{}",
            error.message
        );
        assert_eq!(fs::read_dir(dir.join("out")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_entry_compressed_more_than_200_to_1_is_refused_before_writing() {
        let zeros = vec![0u8; 10 << 20];
        let dir = scratch(
            "ratio",
            &[("zeta", b"#!/bin/sh\n"), ("padding.bin", &zeros)],
        );
        let error = run(&dir, "zeta", LIMITS).unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Invalid);
        let message = &error.message;
        assert!(
            message.starts_with("asset a.zip: zip entry \"padding.bin\" expands "),
            "{message}"
        );
        assert!(
            message.contains(":1 (10485760 bytes from ")
                && message.contains("more than the 200:1 Visor accepts, as a possible zip bomb"),
            "{message}"
        );
        assert_eq!(fs::read_dir(dir.join("out")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_or_ordinary_entries_pass_the_ratio_bound() {
        // 64 KiB of zeros compress far beyond 200:1 but are under the floor, and beside a
        // binary that barely compresses the archive as a whole stays far below 200:1.
        let zeros = vec![0u8; RATIO_FLOOR as usize];
        let mut state: u32 = 1;
        let binary: Vec<u8> = (0..RATIO_FLOOR)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        let dir = scratch("ratiook", &[("zeta", &binary), ("pad", &zeros)]);
        assert!(run(&dir, "zeta", LIMITS).is_ok());
        fs::remove_dir_all(&dir).unwrap();
        assert!(!exceeds_ratio(RATIO_FLOOR, 1, 200));
        assert!(exceeds_ratio(RATIO_FLOOR + 1, 1, 200));
        assert!(!exceeds_ratio(1 << 20, (1 << 20) / 200 + 1, 200));
        assert!(exceeds_ratio(1 << 20, (1 << 20) / 200 - 1, 200));
        assert!(exceeds_ratio(1 << 20, 0, 200));
        assert_eq!(ratio(1000, 0), "unbounded");
        assert_eq!(ratio(1000, 3), "333:1");
    }

    #[test]
    fn many_small_entries_that_expand_too_much_in_all_are_refused() {
        let zeros = vec![0u8; 32 << 10];
        let names: Vec<String> = (0..8).map(|i| format!("pad{i}")).collect();
        let mut files: Vec<(&str, &[u8])> = vec![("zeta", b"#!/bin/sh\n")];
        files.extend(names.iter().map(|n| (n.as_str(), zeros.as_slice())));
        let dir = scratch("ratioall", &files);
        let error = run(&dir, "zeta", LIMITS).unwrap_err();
        assert!(
            error.message.contains("the zip's files expand ") && error.message.contains("in all"),
            "{}",
            error.message
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clashing_or_reserved_entries_are_refused() {
        let dir = scratch("clash", &[("zeta", b"z"), ("zeta/x", b"x")]);
        let error = run(&dir, "zeta", LIMITS).unwrap_err();
        assert!(
            error.message.contains("both a file and a folder"),
            "{}",
            error.message
        );
        fs::remove_dir_all(&dir).unwrap();
        let dir = scratch("reserved", &[("zeta", b"z"), ("a.zip", b"x")]);
        let error = run(&dir, "zeta", LIMITS).unwrap_err();
        assert!(
            error.message.contains("the downloaded asset"),
            "{}",
            error.message
        );
        fs::remove_dir_all(&dir).unwrap();
        let dir = scratch("nobinary", &[("zeta/", b"")]);
        let error = run(&dir, "zeta", LIMITS).unwrap_err();
        assert!(
            error.message.contains("has no file zeta"),
            "{}",
            error.message
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safe_names_become_components() {
        assert_eq!(entry_components("zeta"), Ok(vec!["zeta"]));
        assert_eq!(entry_components("./bin//zeta"), Ok(vec!["bin", "zeta"]));
        assert_eq!(entry_components("bin/"), Ok(vec!["bin"]));
        assert_eq!(entry_components("a..b/c"), Ok(vec!["a..b", "c"]));
        assert_eq!(entry_components("./"), Ok(vec![]));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for (name, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../zeta", "'..'"),
            ("bin/../../zeta", "'..'"),
            ("bin/..", "'..'"),
            ("a\\..\\b", "backslash"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
        ] {
            let error = entry_components(name).err().unwrap_or_default();
            assert!(error.contains(why), "{name:?}: {error}");
        }
    }

    #[test]
    fn only_plain_files_and_folders_pass() {
        assert_eq!(entry_kind("zeta", None), Ok(EntryKind::File));
        assert_eq!(entry_kind("zeta", Some(0o100_755)), Ok(EntryKind::File));
        assert_eq!(entry_kind("zeta", Some(0o755)), Ok(EntryKind::File));
        assert_eq!(entry_kind("bin/", None), Ok(EntryKind::Folder));
        assert_eq!(entry_kind("bin/", Some(0o040_755)), Ok(EntryKind::Folder));
        let link = entry_kind("zeta", Some(0o120_777))
            .err()
            .unwrap_or_default();
        assert!(link.contains("symbolic link"), "{link}");
        let fifo = entry_kind("zeta", Some(0o010_644))
            .err()
            .unwrap_or_default();
        assert!(fifo.contains("not a plain file or folder"), "{fifo}");
        assert!(entry_kind("zeta", Some(0o040_755)).is_err());
        assert_eq!(entry_kind("bin/", Some(0o100_644)), Ok(EntryKind::Folder));
    }
}
