//! The config thread (`visor-config`): reads config.toml every second and, when its content
//! changed (or a reload was requested after SIGHUP), parses it and reports the result.
//!
//! It never applies a configuration; the coordinator and the state machine do.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;

pub const CHECK_PERIOD: Duration = Duration::from_secs(1);

pub type ConfigResult = Result<Box<Config>, Vec<String>>;

/// Starts the thread. `initial` is the content the running configuration was read from, so
/// an unchanged file is not reported. A message on `reload` forces a read and a report.
pub fn start(
    file: PathBuf,
    initial: Vec<u8>,
    reload: Receiver<()>,
    results: Sender<ConfigResult>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("visor-config".into())
        .stack_size(crate::child::PARSER_STACK)
        .spawn(move || {
            let mut last = initial;
            loop {
                let forced = match reload.recv_timeout(CHECK_PERIOD) {
                    Ok(()) => true,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                let result = match std::fs::read(&file) {
                    Ok(content) => {
                        if content == last && !forced {
                            continue;
                        }
                        let parsed = match std::str::from_utf8(&content) {
                            Ok(text) => Config::parse(&file, text).map(Box::new),
                            Err(e) => Err(vec![format!(
                                "{}: not valid UTF-8 ({e}); save it as UTF-8",
                                file.display()
                            )]),
                        };
                        last = content;
                        parsed
                    }
                    Err(e) => {
                        if !forced && last.is_empty() {
                            continue;
                        }
                        // Report a vanished file once, then stay quiet until it comes back.
                        last.clear();
                        Err(vec![format!(
                            "{}: cannot read ({e}); restore the file",
                            file.display()
                        )])
                    }
                };
                if results.send(result).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
