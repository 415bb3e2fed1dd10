//! The one bounded reader of the configuration files under HOME: config.toml and every
//! run-config.toml (the files of the supervise folder go through
//! `supervise_folder::read_owned`, which also checks their owner). It never blocks on something that is not a regular file
//! and never holds more than [`MAX_CONFIG_BYTES`] in memory. It decides nothing and logs
//! nothing; the caller turns its message into a configuration error or ignores the file.

use std::path::Path;

/// The largest configuration file read (config.toml, run-config.toml): far more than any real
/// one needs, small enough to hold in memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a configuration file whole, or returns one message naming it and what to do;
/// `when_missing` is the advice for a file that does not exist.
///
/// The file is opened with `O_NONBLOCK` and checked on the opened descriptor before a byte is
/// read, so a FIFO, a device or a folder put in its place is refused at once instead of
/// blocking the reader; a file larger than [`MAX_CONFIG_BYTES`] is refused too. Every reader
/// of config.toml and run-config.toml goes through here.
pub fn read_config_file(path: &Path, when_missing: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => format!("{shown}: no such file; {when_missing}"),
            std::io::ErrorKind::PermissionDenied => {
                format!("{shown}: permission denied; make it readable by the user Visor runs as")
            }
            _ => format!("{shown}: cannot be opened: {error}; check the file and its folder"),
        })?;
    let meta = file
        .metadata()
        .map_err(|error| format!("{shown}: cannot be examined: {error}; check the file system"))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a plain file"
        };
        return Err(format!(
            "{shown}: is {what}, not a regular file; Visor reads only regular files there: \
             replace it with the configuration file"
        ));
    }
    let too_large = || {
        format!(
            "{shown}: larger than {} MiB, which no configuration file needs; check that it is \
             the right file",
            MAX_CONFIG_BYTES >> 20
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            format!("{shown}: cannot be read: {error}; check the file and its folder")
        })?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}
