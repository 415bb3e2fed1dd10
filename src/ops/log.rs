//! The logger: one line per event on stderr, as text or JSON (`logFormat` in visor-config(5));
//! in JSON, `pid` is a number and every other field a string (docs/protocol.md, section 8).
//!
//! It owns the output format and the level filter and nothing else: it never decides what
//! happens, and it never buffers (each line is one `write` to stderr, so lines from threads do
//! not interleave). The coordinator changes the settings when config.toml is reloaded.
//!
//! When stderr is the journal (`$JOURNAL_STREAM` names the device and inode of file
//! descriptor 2, as systemd sets it), every line, text or JSON, starts with its syslog
//! priority (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug). journald takes the prefix off
//! and files the line under that priority, so `journalctl -p warning` filters Visor's lines
//! and a JSON line stays one JSON object in `MESSAGE`. Anywhere else the prefix would only be
//! noise, so it is left out.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::url::redact_credentials;
pub use crate::config::{LogFormat, LogLevel};

static LEVEL: AtomicU8 = AtomicU8::new(1);
static JSON: AtomicBool = AtomicBool::new(false);
static TIMESTAMPS: AtomicBool = AtomicBool::new(true);
static PRIORITY: AtomicBool = AtomicBool::new(false);

/// Sets the format and the lowest level written. Timestamps are left out of text lines when
/// `$JOURNAL_STREAM` is set, because journald stamps every line itself; the syslog priority
/// prefix is written when it names stderr.
pub fn configure(format: LogFormat, level: LogLevel) {
    LEVEL.store(level_rank(level), Ordering::Relaxed);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let journal = std::env::var_os("JOURNAL_STREAM");
    TIMESTAMPS.store(journal.is_none(), Ordering::Relaxed);
    PRIORITY.store(
        journal.as_deref().is_some_and(stderr_is_journal),
        Ordering::Relaxed,
    );
}

/// True when `journal_stream` (`$JOURNAL_STREAM`: `DEVICE:INODE` in decimal) names the file
/// that stderr is. systemd sets it for a service's output to the journal; a child of such a
/// service whose stderr was redirected inherits the variable, which then names another file.
fn stderr_is_journal(journal_stream: &OsStr) -> bool {
    let Some((device, inode)) = journal_stream.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == device && m.ino() == inode)
}

/// `DEVICE:INODE`, both decimal, as systemd writes `$JOURNAL_STREAM`.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    Some((number(device)?, number(inode)?))
}

/// The syslog priority prefix journald reads from the start of a line (sd-daemon(3)).
pub fn priority_prefix(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "<7>",
        LogLevel::Info => "<6>",
        LogLevel::Warn => "<4>",
        LogLevel::Error => "<3>",
    }
}

/// How a line is written: JSON or text, with or without the timestamp of a text line, with
/// or without the priority prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub json: bool,
    pub timestamp: bool,
    pub priority: bool,
}

/// One whole line, ending in a newline, as [`write`] writes it in `style`.
pub fn format_line(
    style: Style,
    unix_ms: u64,
    level: LogLevel,
    msg: &str,
    fields: &[(&str, String)],
) -> String {
    // No credential of a URL is ever written, whichever message or field holds it.
    let msg = redact_credentials(msg);
    let redacted: Vec<(&str, String)>;
    let fields = if fields.iter().any(|(_, v)| v.contains("://")) {
        redacted = fields
            .iter()
            .map(|(key, value)| (*key, redact_credentials(value).into_owned()))
            .collect();
        &redacted[..]
    } else {
        fields
    };
    let line = if style.json {
        format_json(unix_ms, level, &msg, fields)
    } else {
        format_text(style.timestamp.then_some(unix_ms), level, &msg, fields)
    };
    if style.priority {
        let mut prefixed = String::with_capacity(line.len() + 3);
        prefixed.push_str(priority_prefix(level));
        prefixed.push_str(&line);
        prefixed
    } else {
        line
    }
}

fn level_rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 0,
        LogLevel::Info => 1,
        LogLevel::Warn => 2,
        LogLevel::Error => 3,
    }
}

/// True when lines written to stderr start with their syslog priority (stderr is the
/// journal); set by [`configure`], which `commands::main` calls before anything is written.
pub fn priority_prefixed() -> bool {
    PRIORITY.load(Ordering::Relaxed)
}

/// True when a line of this level would be written.
pub fn enabled(level: LogLevel) -> bool {
    level_rank(level) >= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line when the level is enabled. `fields` are appended as `key=value`.
pub fn write(level: LogLevel, msg: &str, fields: &[(&str, String)]) {
    if !enabled(level) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let style = Style {
        json: JSON.load(Ordering::Relaxed),
        timestamp: TIMESTAMPS.load(Ordering::Relaxed),
        priority: PRIORITY.load(Ordering::Relaxed),
    };
    let line = format_line(style, now, level, msg, fields);
    // A failed write to stderr cannot be reported anywhere else, so it is ignored.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn debug(msg: &str, fields: &[(&str, String)]) {
    write(LogLevel::Debug, msg, fields)
}
pub fn info(msg: &str, fields: &[(&str, String)]) {
    write(LogLevel::Info, msg, fields)
}
pub fn warn(msg: &str, fields: &[(&str, String)]) {
    write(LogLevel::Warn, msg, fields)
}
pub fn error(msg: &str, fields: &[(&str, String)]) {
    write(LogLevel::Error, msg, fields)
}

fn level_label(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "DEBUG",
        LogLevel::Info => "INFO ",
        LogLevel::Warn => "WARN ",
        LogLevel::Error => "ERROR",
    }
}

/// `2026-11-24T20:49:00.123Z INFO  upgrade: switching to v1.3.0 folder=/h/v1.3.0`
pub fn format_text(
    unix_ms: Option<u64>,
    level: LogLevel,
    msg: &str,
    fields: &[(&str, String)],
) -> String {
    let mut line = String::with_capacity(96);
    if let Some(ms) = unix_ms {
        line.push_str(&rfc3339_millis(ms));
        line.push(' ');
    }
    line.push_str(level_label(level));
    line.push(' ');
    line.push_str(&escape_controls(msg));
    for (key, value) in fields {
        line.push(' ');
        line.push_str(&escape_controls(key));
        line.push('=');
        if value.is_empty()
            || value.contains(|c: char| c.is_whitespace() || c == '"' || is_control(c))
        {
            line.push('"');
            for c in value.chars() {
                match c {
                    '"' | '\\' => {
                        line.push('\\');
                        line.push(c);
                    }
                    c => push_escaped(&mut line, c),
                }
            }
            line.push('"');
        } else {
            line.push_str(value);
        }
    }
    line.push('\n');
    line
}

/// True for the characters a terminal or a log reader may act on rather than show: C0
/// controls, DEL, C1 controls, the Unicode line and paragraph separators and the
/// bidirectional overrides and isolates.
pub fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`is_control`] character written as an escape: `\n`, `\r` and `\t`, other
/// ASCII controls and DEL as `\x1b`, the others as `\u{9b}`. Everything else, backslashes
/// included, is unchanged, so ordinary text reads as before.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_controls_but(text, |_| false)
}

/// [`escape_controls`] keeping newlines and tabs, the layout of a command's own output (a
/// list, an aligned table, a usage text). Carriage returns, escape sequences and every other
/// control are escaped, so no text printed this way can move the cursor, retitle or clear a
/// terminal.
pub fn escape_controls_keep_layout(text: &str) -> Cow<'_, str> {
    escape_controls_but(text, |c| matches!(c, '\n' | '\t'))
}

fn escape_controls_but(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.contains(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if keep(c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_control(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// The fields written as JSON numbers (when their value is a whole number); every other field
/// is a string.
const NUMERIC_FIELDS: &[&str] = &["pid"];

/// One JSON object per line with `ts`, `level`, `msg` and the fields: `pid` as a number, the
/// others as strings.
pub fn format_json(unix_ms: u64, level: LogLevel, msg: &str, fields: &[(&str, String)]) -> String {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), rfc3339_millis(unix_ms).into());
    object.insert("level".into(), level.as_str().into());
    object.insert("msg".into(), msg.into());
    for (key, value) in fields {
        let number = NUMERIC_FIELDS
            .contains(key)
            .then(|| value.parse::<u64>().ok())
            .flatten();
        let value = match number {
            Some(number) => number.into(),
            None => value.clone().into(),
        };
        object.insert((*key).to_string(), value);
    }
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339_with_millis() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_553_340_123),
            "2026-11-24T20:49:00.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn text_line_matches_the_spec_example() {
        let line = format_text(
            Some(1_795_553_340_123),
            LogLevel::Info,
            "upgrade: switching to v1.3.0",
            &[("folder", "/h/v1.3.0".into())],
        );
        assert_eq!(
            line,
            "2026-11-24T20:49:00.123Z INFO  upgrade: switching to v1.3.0 folder=/h/v1.3.0\n"
        );
    }

    #[test]
    fn text_line_without_timestamp_quotes_values_with_spaces() {
        let line = format_text(
            None,
            LogLevel::Warn,
            "x",
            &[("error", "no such file".into())],
        );
        assert_eq!(line, "WARN  x error=\"no such file\"\n");
    }

    #[test]
    fn json_line_parses_and_carries_fields() {
        let line = format_json(
            0,
            LogLevel::Error,
            "boom \"q\"",
            &[
                ("pid", "12".into()),
                ("release", "12".into()),
                ("status", "x".into()),
            ],
        );
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "boom \"q\"");
        assert_eq!(value["pid"], 12, "pid is a number");
        assert_eq!(value["release"], "12", "other fields stay strings");
        assert_eq!(value["status"], "x");
        assert_eq!(value["ts"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn controls_are_escaped_and_other_text_is_not() {
        assert!(matches!(
            escape_controls("plain \\ text é"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\nb\rc\td\x1b[31me\x7f\u{9b}f\u{0}\u{85}\u{202e}g\u{2028}"),
            "a\\nb\\rc\\td\\x1b[31me\\x7f\\u{9b}f\\x00\\u{85}\\u{202e}g\\u{2028}"
        );
    }

    #[test]
    fn a_newline_in_untrusted_text_cannot_forge_a_line() {
        let forged = "v2\n2026-11-24T20:49:00.123Z ERROR forged";
        let line = format_text(
            Some(0),
            LogLevel::Info,
            &format!("install: looking up asset {forged}"),
            &[
                ("asset", forged.into()),
                ("version", "v2\x1b]0;title\x07".into()),
            ],
        );
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert!(
            !line.contains(|c: char| c != '\n' && is_control(c)),
            "{line:?}"
        );
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z INFO  install: looking up asset v2\\n2026-11-24T20:49:00.123Z \
             ERROR forged asset=\"v2\\n2026-11-24T20:49:00.123Z ERROR forged\" \
             version=\"v2\\x1b]0;title\\x07\"\n"
        );
    }

    const TEXT: Style = Style {
        json: false,
        timestamp: true,
        priority: false,
    };

    #[test]
    fn no_line_shows_the_credentials_of_a_url() {
        for json in [false, true] {
            let style = Style { json, ..TEXT };
            let line = format_line(
                style,
                0,
                LogLevel::Error,
                "prepare: v2 from http://user:secret@127.0.0.1:1/z: cannot reach it",
                &[
                    ("url", "http://user:secret@127.0.0.1:1/z".to_string()),
                    ("to", "/h/.visor-tmp-install-v2-1-0/z".to_string()),
                ],
            );
            assert!(!line.contains("secret") && !line.contains("user"), "{line}");
            assert_eq!(
                line.matches("http://***@127.0.0.1:1/z").count(),
                2,
                "{line}"
            );
        }
    }

    #[test]
    fn journal_lines_start_with_the_syslog_priority() {
        let journal = Style {
            timestamp: false,
            priority: true,
            ..TEXT
        };
        let fields = [("pid", "12".to_string())];
        for (level, expected) in [
            (LogLevel::Error, "<3>ERROR supervise: x pid=12\n"),
            (LogLevel::Warn, "<4>WARN  supervise: x pid=12\n"),
            (LogLevel::Info, "<6>INFO  supervise: x pid=12\n"),
            (LogLevel::Debug, "<7>DEBUG supervise: x pid=12\n"),
        ] {
            assert_eq!(
                format_line(journal, 0, level, "supervise: x", &fields),
                expected
            );
        }
    }

    #[test]
    fn without_the_journal_text_lines_are_unchanged() {
        let fields = [("folder", "/h/v1.3.0".to_string())];
        let msg = "upgrade: switching to v1.3.0";
        let ms = 1_795_553_340_123;
        assert_eq!(
            format_line(TEXT, ms, LogLevel::Info, msg, &fields),
            format_text(Some(ms), LogLevel::Info, msg, &fields)
        );
        let no_timestamp = Style {
            timestamp: false,
            ..TEXT
        };
        assert_eq!(
            format_line(no_timestamp, ms, LogLevel::Warn, msg, &fields),
            "WARN  upgrade: switching to v1.3.0 folder=/h/v1.3.0\n"
        );
    }

    #[test]
    fn journal_json_lines_are_the_prefix_then_the_unchanged_object() {
        let json = Style { json: true, ..TEXT };
        let fields = [("pid", "12".to_string())];
        let plain = format_line(json, 0, LogLevel::Warn, "x", &fields);
        assert_eq!(plain, format_json(0, LogLevel::Warn, "x", &fields));
        let prefixed = format_line(
            Style {
                priority: true,
                ..json
            },
            0,
            LogLevel::Warn,
            "x",
            &fields,
        );
        assert_eq!(prefixed, format!("<4>{plain}"));
        let object: serde_json::Value =
            serde_json::from_str(prefixed.strip_prefix("<4>").unwrap().trim_end()).unwrap();
        assert_eq!(object["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(object["level"], "warn");
    }

    #[test]
    fn journal_stream_is_device_colon_inode_in_decimal() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(
            parse_journal_stream("18446744073709551615:1"),
            Some((u64::MAX, 1))
        );
        for bad in [
            "", ":", "8", "8:", ":9", "8:9:1", "+8:9", "8: 9", "0x8:9", "8:-9",
        ] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_journal_stream_naming_another_file_is_not_the_journal() {
        assert!(!stderr_is_journal(OsStr::new("0:0")));
        assert!(!stderr_is_journal(OsStr::new("not a pair")));
    }

    #[test]
    fn quoted_values_escape_quotes_and_backslashes() {
        let line = format_text(None, LogLevel::Info, "x", &[("v", "a \"b\" \\c".into())]);
        assert_eq!(line, "INFO  x v=\"a \\\"b\\\" \\\\c\"\n");
    }
}
