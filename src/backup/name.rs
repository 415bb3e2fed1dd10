//! The name of a finished backup: `FROM-to-TO-hHEIGHT-YYYYMMDDTHHMMSSZ` at an upgrade,
//! `FROM-to-TO-switch-YYYYMMDDTHHMMSSZ` at an operator's switch, the time being the backup's
//! start in UTC. Also the civil (proleptic Gregorian) calendar both ways, from Unix time.
//!
//! It owns the format and its exact parse (tags checked as release tags, a real date); what
//! `keep` does with the names is `keep`'s. It must not touch the file system.

use crate::home::ReleaseTag;

/// Why a backup is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The upgrade at block `height`.
    Upgrade { height: u64 },
    /// An operator's `visor switch`.
    Switch,
}

/// The parts of a backup's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    /// The release the node ran.
    pub from: ReleaseTag,
    /// The release it moves to.
    pub to: ReleaseTag,
    /// Upgrade (with its height) or switch.
    pub reason: Reason,
    /// The backup's start, in seconds since the Unix epoch.
    pub started: u64,
}

/// `YYYYMMDDTHHMMSSZ`.
const STAMP_LEN: usize = 16;
/// The last second whose year has four digits: 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

impl BackupName {
    /// The folder name.
    pub fn format(&self) -> String {
        let reason = match self.reason {
            Reason::Upgrade { height } => format!("h{height}"),
            Reason::Switch => "switch".to_owned(),
        };
        format!(
            "{}-to-{}-{reason}-{}",
            self.from,
            self.to,
            stamp(self.started)
        )
    }

    /// The parts of `name` when it is exactly such a name, else None. When the tags
    /// themselves hold `-to-`, the first split that gives two valid tags is taken.
    pub fn parse(name: &str) -> Option<BackupName> {
        if !name.is_ascii() || name.len() < STAMP_LEN + 2 {
            return None;
        }
        let (rest, stamp) = name.split_at(name.len() - STAMP_LEN);
        let started = parse_stamp(stamp)?;
        let rest = rest.strip_suffix('-')?;
        let (tags, reason) = rest.rsplit_once('-')?;
        let reason = if reason == "switch" {
            Reason::Switch
        } else {
            let digits = reason.strip_prefix('h')?;
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if !canonical {
                return None;
            }
            Reason::Upgrade {
                height: digits.parse().ok()?,
            }
        };
        tags.match_indices("-to-").find_map(|(at, _)| {
            let from = ReleaseTag::parse(&tags[..at]).ok()?;
            let to = ReleaseTag::parse(&tags[at + 4..]).ok()?;
            Some(BackupName {
                from,
                to,
                reason,
                started,
            })
        })
    }
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC); times past year 9999 are shown as its last
/// second.
pub fn stamp(unix: u64) -> String {
    let unix = unix.min(LAST_SECOND);
    let (year, month, day) = civil_from_days(unix / 86_400);
    let second_of_day = unix % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// The Unix time of a `YYYYMMDDTHHMMSSZ` stamp naming a real instant from 1970 on.
fn parse_stamp(stamp: &str) -> Option<u64> {
    let bytes = stamp.as_bytes();
    if bytes.len() != STAMP_LEN || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = &bytes[range];
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    let valid = year >= 1970
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the start of a year, counting whole 400-year cycles of 146 097
/// days, then centuries, four-year spans and single years, from the year 0 (which is a leap
/// year in the proleptic calendar).
fn days_before_year(year: u64) -> u64 {
    // Days from 0000-01-01 to the start of `year`.
    let from_zero = |y: u64| {
        if y == 0 {
            0
        } else {
            // Year 0 is leap, then a leap day every 4 years except centuries not divisible
            // by 400, counted over the years 1..y.
            let before = y - 1;
            366 + before * 365 + before / 4 - before / 100 + before / 400
        }
    };
    from_zero(year) - from_zero(1970)
}

/// Days from 1970-01-01 to a date (from 1970 on).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    days_before_year(year) + before_month + day - 1
}

/// The date `days` after 1970-01-01: (year, month, day).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Whole 400-year cycles first (each 146 097 days), then year by year: at most 400 steps.
    let cycles = days / 146_097;
    let mut left = days % 146_097;
    let mut year = 1970 + cycles * 400;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if left < length {
            break;
        }
        left -= length;
        year += 1;
    }
    let mut month = 1;
    while left >= days_in_month(year, month) {
        left -= days_in_month(year, month);
        month += 1;
    }
    (year, month, left + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(t: &str) -> ReleaseTag {
        ReleaseTag::parse(t).unwrap()
    }

    #[test]
    fn stamps_match_known_dates() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(951_782_400), "20000229T000000Z");
        assert_eq!(stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(stamp(4_107_542_399), "21000228T235959Z");
        assert_eq!(stamp(4_107_542_400), "21000301T000000Z");
        assert_eq!(stamp(u64::MAX), "99991231T235959Z");
        // Every day of four centuries goes there and back.
        for days in (0..146_097 * 2).step_by(7) {
            let unix = days * 86_400 + 3_599;
            assert_eq!(parse_stamp(&stamp(unix)), Some(unix), "{}", stamp(unix));
        }
    }

    #[test]
    fn names_go_both_ways() {
        let upgrade = BackupName {
            from: tag("v1.2.0"),
            to: tag("v1.3.0"),
            reason: Reason::Upgrade { height: 120 },
            started: 1_700_000_000,
        };
        assert_eq!(upgrade.format(), "v1.2.0-to-v1.3.0-h120-20231114T221320Z");
        assert_eq!(BackupName::parse(&upgrade.format()), Some(upgrade));
        let switch = BackupName {
            from: tag("v1.3.0"),
            to: tag("v1.3.1-rc-to-x"),
            reason: Reason::Switch,
            started: 0,
        };
        assert_eq!(
            switch.format(),
            "v1.3.0-to-v1.3.1-rc-to-x-switch-19700101T000000Z"
        );
        assert_eq!(BackupName::parse(&switch.format()), Some(switch));
    }

    #[test]
    fn only_exact_names_parse() {
        for bad in [
            "",
            "backups",
            "v1-to-v2-h120-20231114T221320Z.tar",
            "v1-to-v2-h120-20231114T221320",
            "v1-to-v2-h0120-20231114T221320Z",
            "v1-to-v2-h-20231114T221320Z",
            "v1-to-v2-height120-20231114T221320Z",
            "v1-to-v2-Switch-20231114T221320Z",
            "v1-v2-h120-20231114T221320Z",
            "-to-v2-h120-20231114T221320Z",
            ".v1-to-v2-h120-20231114T221320Z",
            "v1-to-v2-h120-20231314T221320Z",
            "v1-to-v2-h120-20230229T221320Z",
            "v1-to-v2-h120-20231114T246000Z",
            "v1-to-v2-h120-19691231T235959Z",
            "v1-to-v2-h120-2023111xT221320Z",
            ".visor-tmp-backup-12-0",
            "v1-to-vé-h1-20231114T221320Z",
        ] {
            assert_eq!(BackupName::parse(bad), None, "{bad}");
        }
        assert!(BackupName::parse("v1-to-v2-h0-20240229T000000Z").is_some());
    }
}
