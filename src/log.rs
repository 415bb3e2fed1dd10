//! The logger: one line per event on stderr, as text or JSON (SPEC section 8).
//!
//! It owns the output format and the level filter and nothing else: it never decides what
//! happens, and it never buffers (each line is one `write` to stderr, so lines from threads do
//! not interleave). The coordinator changes the settings when config.toml is reloaded.

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
    line.push_str(msg);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
            let _ = write!(line, "{value:?}");
        } else {
            line.push_str(value);
        }
    }
    line.push('\n');
    line
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
}
