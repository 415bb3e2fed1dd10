//! How a running backup reports: the [`Progress`] sink (a report every 5 s, and notes about
//! entries skipped), the [`Report`] it gets (files, bytes, rate, time left estimated from the
//! totals measured up front) and the [`Meter`] that counts and decides when a report is due.
//!
//! It must not log or format for a particular sink beyond [`Report::summary`]; the caller
//! decides where lines go.

use std::time::{Duration, Instant};

/// How often a running backup reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Where a backup's progress goes. Called from the thread that runs the backup.
pub trait Progress {
    /// The state of the backup, every [`REPORT_EVERY`].
    fn report(&mut self, report: &Report);
    /// Something worth a line: an entry skipped (a socket, a device) and why.
    fn note(&mut self, note: &str);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn report(&mut self, _: &Report) {}
    fn note(&mut self, _: &str) {}
}

/// The state of a running backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Regular files done and in all (as measured at the start).
    pub files: u64,
    pub files_total: u64,
    /// Bytes (file sizes) done and in all.
    pub bytes: u64,
    pub bytes_total: u64,
    /// Since the backup started.
    pub elapsed: Duration,
    /// Bytes per second so far.
    pub rate: f64,
    /// The time left at that rate, once anything is done.
    pub left: Option<Duration>,
}

impl Report {
    /// One line: `1200/10000 files, 0.3/2.0 GiB, 150.0 MiB/s, about 12 s left`.
    pub fn summary(&self) -> String {
        let left = match self.left {
            Some(left) => format!(", about {} s left", left.as_secs()),
            None => String::new(),
        };
        format!(
            "{}/{} files, {}/{}, {}/s{left}",
            self.files,
            self.files_total,
            size(self.bytes),
            size(self.bytes_total),
            size(self.rate as u64)
        )
    }
}

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Counts what is done and tells when a report is due.
pub(super) struct Meter {
    started: Instant,
    last: Instant,
    every: Duration,
    files_total: u64,
    bytes_total: u64,
    pub(super) files: u64,
    pub(super) bytes: u64,
}

impl Meter {
    pub(super) fn new(
        started: Instant,
        every: Duration,
        files_total: u64,
        bytes_total: u64,
    ) -> Self {
        Meter {
            started,
            last: started,
            every,
            files_total,
            bytes_total,
            files: 0,
            bytes: 0,
        }
    }

    /// The report as of `now`.
    pub(super) fn report(&self, now: Instant) -> Report {
        let elapsed = now.saturating_duration_since(self.started);
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.bytes as f64 / seconds
        } else {
            0.0
        };
        let left = (rate > 0.0).then(|| {
            let remaining = self.bytes_total.saturating_sub(self.bytes) as f64;
            Duration::from_secs_f64((remaining / rate).min(1e9))
        });
        Report {
            files: self.files,
            files_total: self.files_total.max(self.files),
            bytes: self.bytes,
            bytes_total: self.bytes_total.max(self.bytes),
            elapsed,
            rate,
            left,
        }
    }

    /// Sends a report when one is due.
    pub(super) fn tick(&mut self, now: Instant, progress: &mut dyn Progress) {
        if now.saturating_duration_since(self.last) >= self.every {
            self.last = now;
            progress.report(&self.report(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<Report>);

    impl Progress for Collect {
        fn report(&mut self, report: &Report) {
            self.0.push(report.clone());
        }
        fn note(&mut self, _: &str) {}
    }

    #[test]
    fn reports_are_spaced_and_estimate_the_time_left() {
        let start = Instant::now();
        let mut meter = Meter::new(start, Duration::from_secs(5), 10, 1000);
        let mut sink = Collect::default();
        meter.bytes = 100;
        meter.files = 1;
        meter.tick(start + Duration::from_secs(4), &mut sink);
        assert!(sink.0.is_empty());
        meter.tick(start + Duration::from_secs(5), &mut sink);
        meter.tick(start + Duration::from_secs(6), &mut sink);
        assert_eq!(sink.0.len(), 1);
        let report = &sink.0[0];
        assert_eq!(report.rate, 20.0);
        assert_eq!(report.left, Some(Duration::from_secs(45)));
        assert_eq!(
            report.summary(),
            "1/10 files, 100 B/1000 B, 20 B/s, about 45 s left"
        );
        assert_eq!(size(3 << 29), "1.5 GiB");
        let idle = Meter::new(start, REPORT_EVERY, 0, 0).report(start);
        assert_eq!(idle.left, None);
    }
}
