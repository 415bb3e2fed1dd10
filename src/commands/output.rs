//! Standard output and error for the commands, without panics: `println!` panics when stdout
//! is a closed pipe (`visor status | head -1`) or a full disk. Here a closed pipe silences the
//! rest of the output and the command ends quietly with its own status; any other write error
//! is reported once on stderr when the command ends, and the status becomes non-zero.
//!
//! Everything a command prints goes through [`shown`] first: a version string a binary
//! reported, a tag the core sent, a reply relayed from the running Visor or an error quoting
//! any of them may hold terminal escape sequences, so control characters are escaped as in
//! log lines (newlines and tabs are kept as the layout of the output), and the credentials of
//! any URL are redacted (`config::url::redact_credentials`). On stderr, each line
//! starts with its syslog priority when stderr is the journal, as log lines do, so an error
//! that stops `visor run` before its logger is set up is still filed as an error.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Mutex;

use crate::config::url::redact_credentials;
use crate::ops::log;

/// The first error writing to stdout, if any.
static FAILURE: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes `text` and a newline to stdout, and flushes, so a write error is seen now.
pub fn out(text: &str) {
    let mut failure = FAILURE.lock().unwrap_or_else(|e| e.into_inner());
    if failure.is_some() {
        return;
    }
    let text = shown(text);
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        *failure = Some(e);
    }
}

/// Writes `visor: text` to stderr (each line with the error priority `<3>` when stderr is
/// the journal); if even that fails, there is nowhere left to say it.
pub fn err(text: &str) {
    let lines = error_lines(&shown(text), log::priority_prefixed());
    let _ = io::stderr().lock().write_all(lines.as_bytes());
}

/// `text` as a terminal may show it: credentials of URLs redacted, control characters
/// escaped but for newlines and tabs.
fn shown(text: &str) -> Cow<'_, str> {
    match redact_credentials(text) {
        Cow::Borrowed(text) => log::escape_controls_keep_layout(text),
        Cow::Owned(text) => Cow::Owned(log::escape_controls_keep_layout(&text).into_owned()),
    }
}

/// `visor: text` and a newline, every line prefixed with `<3>` when `journal`.
fn error_lines(text: &str, journal: bool) -> String {
    let prefix = if journal { "<3>" } else { "" };
    let mut lines = String::with_capacity(text.len() + 16);
    for (index, line) in text.split('\n').enumerate() {
        lines.push_str(prefix);
        if index == 0 {
            lines.push_str("visor: ");
        }
        lines.push_str(line);
        lines.push('\n');
    }
    lines
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_its_layout_but_no_escape_sequence() {
        let text = "v1\u{1b}]0;pwned\u{7}\u{1b}[2J\tcolumn\nnext\rover";
        assert_eq!(
            shown(text),
            "v1\\x1b]0;pwned\\x07\\x1b[2J\tcolumn\nnext\\rover"
        );
        assert!(matches!(shown("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            shown("from http://u:secret@h/\u{1b}x"),
            "from http://***@h/\\x1bx"
        );
    }

    #[test]
    fn every_error_line_gets_the_priority_under_the_journal() {
        assert_eq!(error_lines("bad\nhint", false), "visor: bad\nhint\n");
        assert_eq!(error_lines("bad\nhint", true), "<3>visor: bad\n<3>hint\n");
    }
}
