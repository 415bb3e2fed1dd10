//! The logger: one line per event on stderr, as text or JSON (`logFormat` in visor-config(5)).
//!
//! It owns the output format and the level filter and nothing else: it never decides what
//! happens, and it never buffers (each line is one `write` to stderr, so lines from threads do
//! not interleave). The coordinator changes the settings when config.toml is reloaded.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::config::{LogFormat, LogLevel};

static LEVEL: AtomicU8 = AtomicU8::new(1);
static JSON: AtomicBool = AtomicBool::new(false);
static TIMESTAMPS: AtomicBool = AtomicBool::new(true);

/// Sets the format and the lowest level written. Timestamps are left out of text lines when
/// `$JOURNAL_STREAM` is set, because journald stamps every line itself.
pub fn configure(format: LogFormat, level: LogLevel) {
    LEVEL.store(level_rank(level), Ordering::Relaxed);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    TIMESTAMPS.store(
        std::env::var_os("JOURNAL_STREAM").is_none(),
        Ordering::Relaxed,
    );
}

fn level_rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 0,
        LogLevel::Info => 1,
        LogLevel::Warn => 2,
        LogLevel::Error => 3,
    }
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
    let line = if JSON.load(Ordering::Relaxed) {
        format_json(now, level, msg, fields)
    } else {
        format_text(
            TIMESTAMPS.load(Ordering::Relaxed).then_some(now),
            level,
            msg,
            fields,
        )
    };
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
    if !text.contains(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
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

/// One JSON object per line with `ts`, `level`, `msg` and the fields as strings.
pub fn format_json(unix_ms: u64, level: LogLevel, msg: &str, fields: &[(&str, String)]) -> String {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), rfc3339_millis(unix_ms).into());
    object.insert("level".into(), level.as_str().into());
    object.insert("msg".into(), msg.into());
    for (key, value) in fields {
        object.insert((*key).to_string(), value.clone().into());
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
        let line = format_json(0, LogLevel::Error, "boom \"q\"", &[("pid", "12".into())]);
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "boom \"q\"");
        assert_eq!(value["pid"], "12");
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

    #[test]
    fn quoted_values_escape_quotes_and_backslashes() {
        let line = format_text(None, LogLevel::Info, "x", &[("v", "a \"b\" \\c".into())]);
        assert_eq!(line, "INFO  x v=\"a \\\"b\\\" \\\\c\"\n");
    }
}
