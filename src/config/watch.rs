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

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

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
            loop {
                let forced = match reload.recv_timeout(CHECK_PERIOD) {
                    Ok(()) => true,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                let read = match load::read(&file) {
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
        let (reload_tx, reload_rx) = crossbeam_channel::bounded(1);
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        start(file.clone(), b"old".to_vec(), reload_rx, results_tx).unwrap();
        // Two forced reads in a row: the second is only taken once the first has finished.
        for _ in 0..2 {
            reload_tx.send_timeout((), Duration::from_secs(5)).unwrap();
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
