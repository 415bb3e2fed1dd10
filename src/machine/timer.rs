//! The machine's timers, in the style of quinn-proto: a closed set of [`Timer`]s and a table
//! of their deadlines. The machine reads no clock; the driver asks for the next deadline and
//! calls back when it has passed.

use std::time::Instant;

/// Everything the machine may be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The upgrade's `stopDelaySeconds` before the binaries get SIGTERM.
    StopDelay,
    /// `stopSignalTimeoutSeconds` after SIGTERM: SIGKILL.
    Kill,
    /// `restartsDelaySeconds` between a failure's stop and the restart.
    RestartDelay,
    /// The connection budget of the current start.
    ConnectBudget,
    /// The next look at a pending folder that is not ready (or a failed switch's retry).
    FolderRecheck,
    /// The next look at process groups left behind by exited node processes.
    GroupProbe,
    /// The end of the spacing between two `onAccepted` starts, when one waits.
    AcceptedHook,
    /// The next try of a backup that failed at the upgrade block (`onFailure = "stop"`).
    BackupRetry,
}

impl Timer {
    /// Every timer, in the order expired timers fire within one call.
    pub(super) const VALUES: [Timer; 8] = [
        Timer::StopDelay,
        Timer::Kill,
        Timer::RestartDelay,
        Timer::ConnectBudget,
        Timer::FolderRecheck,
        Timer::GroupProbe,
        Timer::AcceptedHook,
        Timer::BackupRetry,
    ];
}

/// The deadline of each timer, `None` when it is not set.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TimerTable {
    data: [Option<Instant>; Timer::VALUES.len()],
}

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.data[timer as usize].is_some()
    }

    pub(super) fn stop_all(&mut self) {
        self.data = [None; Timer::VALUES.len()];
    }

    /// The earliest deadline of all.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Takes the first timer (in [`Timer::VALUES`] order) whose deadline is at or before
    /// `now`, clearing it; `None` when none has expired.
    pub(super) fn expire(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::VALUES
            .into_iter()
            .find(|t| self.data[*t as usize].is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_gives_the_earliest_deadline_and_expires_in_order() {
        let base = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::Kill, base + Duration::from_secs(2));
        table.set(Timer::StopDelay, base + Duration::from_secs(1));
        table.set(Timer::GroupProbe, base + Duration::from_secs(9));
        assert_eq!(table.next_timeout(), Some(base + Duration::from_secs(1)));
        assert_eq!(table.expire(base), None);
        let later = base + Duration::from_secs(5);
        assert_eq!(table.expire(later), Some(Timer::StopDelay));
        assert_eq!(table.expire(later), Some(Timer::Kill));
        assert_eq!(table.expire(later), None);
        assert!(table.is_set(Timer::GroupProbe));
        table.stop_all();
        assert_eq!(table.next_timeout(), None);
    }
}
