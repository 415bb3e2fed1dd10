//! Standard output and error for the commands, without panics: `println!` panics when stdout
//! is a closed pipe (`visor status | head -1`) or a full disk. Here a closed pipe silences the
//! rest of the output and the command ends quietly with its own status; any other write error
//! is reported once on stderr when the command ends, and the status becomes non-zero.

use std::io::{self, Write};
use std::sync::Mutex;

/// The first error writing to stdout, if any.
static FAILURE: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes `text` and a newline to stdout, and flushes, so a write error is seen now.
pub fn out(text: &str) {
    let mut failure = FAILURE.lock().unwrap_or_else(|e| e.into_inner());
    if failure.is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        *failure = Some(e);
    }
}

/// Writes `visor: text` to stderr; if even that fails, there is nowhere left to say it.
pub fn err(text: &str) {
    let _ = writeln!(io::stderr().lock(), "visor: {text}");
}

/// The command's exit status, changed to 1 (with a message) when stdout failed for another
/// reason than a closed pipe.
pub fn finish(status: i32) -> i32 {
    let failure = FAILURE.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failure {
        None => status,
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => status,
        Some(e) => {
            err(&format!("cannot write to standard output ({e})"));
            if status == 0 {
                1
            } else {
                status
            }
        }
    }
}
