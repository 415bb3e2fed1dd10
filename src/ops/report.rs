//! Tells systemd and the metrics file what the supervisor is doing. Everything it reports is
//! derived from the state machine after each turn of the coordinator; it decides nothing.
//!
//! systemd (when `$NOTIFY_SOCKET` is set): `READY=1` once the core first answers, `STATUS=`
//! whenever the machine's status line changes, `EXTEND_TIMEOUT_USEC` every 15 s until ready
//! (a core may load a snapshot for a long time) and once when a stop begins, `STOPPING=1`, and
//! `WATCHDOG=1` every half of `$WATCHDOG_USEC`, sent from the coordinator's loop so a stuck
//! loop stops the pings. The metrics file is rewritten on every change and every 15 s.
//! `HOME/.visor/status.json` is rewritten on every change of what it holds.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::url::redact_credentials;
use crate::home::supervise_folder::{process_start_time, SuperviseFolder};
use crate::machine::{Machine, Proc};
use crate::ops::log;
use crate::ops::metrics::{self, Snapshot};
use crate::ops::notify::{self, Notifier};
use crate::process::identity::IdentityCache;

/// How often the metrics file is rewritten when nothing changes.
pub const METRICS_PERIOD: Duration = Duration::from_secs(15);
/// How often the start-up timeout is extended, and by how much, until the core answers.
pub const EXTEND_PERIOD: Duration = Duration::from_secs(15);
pub const EXTEND_BY: Duration = Duration::from_secs(30);
/// The commit Visor was built from, when the build recorded it in `VISOR_COMMIT`.
pub const REVISION: &str = match option_env!("VISOR_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

pub struct Reporter {
    notifier: Option<Notifier>,
    watchdog: Option<(Duration, Instant)>,
    extend_next: Option<Instant>,
    metrics_next: Option<Instant>,
    last_status: String,
    last_snapshot: Option<Snapshot>,
    last_metrics_file: Option<PathBuf>,
    last_metrics_error: Option<String>,
    ready_sent: bool,
    stopping_sent: bool,
    status: Option<StatusFile>,
    clock: WallClock,
}

/// Turns the machine's instants into Unix time for the metrics, and knows when Visor
/// started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallClock {
    at: Instant,
    unix: Duration,
    /// When this process started, since the Unix epoch.
    pub started: Duration,
}

impl WallClock {
    /// The wall clock now; the start time from `/proc` (as Prometheus clients compute
    /// `process_start_time_seconds`), or now when `/proc` cannot tell.
    pub fn new(now: Instant) -> WallClock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        WallClock {
            at: now,
            unix,
            started: process_start_unix().unwrap_or(unix),
        }
    }

    /// `instant` as Unix time.
    pub fn unix_at(&self, instant: Instant) -> Duration {
        if instant >= self.at {
            self.unix + (instant - self.at)
        } else {
            self.unix.saturating_sub(self.at - instant)
        }
    }
}

/// This process's start: the boot time (`btime` of `/proc/stat`) plus its start in clock
/// ticks after boot (field 22 of `/proc/self/stat`).
fn process_start_unix() -> Option<Duration> {
    let ticks = process_start_time(std::process::id())?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    let nanos = (ticks % per_second).checked_mul(1_000_000_000)? / per_second;
    Some(Duration::new(
        boot.checked_add(ticks / per_second)?,
        nanos as u32,
    ))
}

/// `status.json`: where it goes, who this Visor is, and what was last written.
struct StatusFile {
    folder: SuperviseFolder,
    visor: serde_json::Value,
    /// The identities of the children, read once per pid (the executable at every write).
    identities: IdentityCache,
    /// What is recorded of each running hook's process, read once per pid.
    hook_records: Vec<(u32, serde_json::Value)>,
    /// When the reporter first saw each child pid, right after the turn that spawned it
    /// (`started_at`, RFC 3339 UTC).
    started_at: Vec<(u32, String)>,
    last: Option<serde_json::Value>,
    last_error: Option<String>,
}

/// What `status.json` records of a running hook's process `pid`.
fn hook_record(key: &str, pid: u32, boot_id: Option<&str>) -> serde_json::Value {
    let stat = crate::process::table::Stat::read(pid);
    let mut record = serde_json::json!({
        "hook": key,
        "pid": pid,
        "pgid": pid,
        "sid": stat.map(|s| s.sid),
        "start_time": stat.map(|s| s.start_time),
        "boot_id": boot_id,
    });
    if let Some(uid) = crate::process::identity::uid_of(pid) {
        record["uid"] = uid.into();
    }
    record
}

impl Reporter {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`; a bad value is logged and ignored.
    pub fn from_env(now: Instant) -> Reporter {
        let notifier = match Notifier::from_env() {
            Ok(notifier) => notifier,
            Err(e) => {
                log::warn(&format!("systemd: {e}; not sending notifications"), &[]);
                None
            }
        };
        let watchdog = notifier
            .as_ref()
            .and(notify::watchdog_interval())
            .map(|interval| (interval, now));
        let extend_next = notifier.as_ref().map(|_| now);
        Reporter {
            notifier,
            watchdog,
            extend_next,
            metrics_next: None,
            last_status: String::new(),
            last_snapshot: None,
            last_metrics_file: None,
            last_metrics_error: None,
            ready_sent: false,
            stopping_sent: false,
            status: None,
            clock: WallClock::new(now),
        }
    }

    /// Also keeps `status.json` in `folder` up to date.
    pub fn with_status_file(mut self, folder: SuperviseFolder) -> Reporter {
        let pid = std::process::id();
        self.status = Some(StatusFile {
            folder,
            visor: serde_json::json!({
                "pid": pid,
                "start_time": process_start_time(pid),
                "started_at": log::rfc3339_millis(unix_now_ms()),
                "version": env!("CARGO_PKG_VERSION"),
            }),
            identities: IdentityCache::new(),
            hook_records: Vec::new(),
            started_at: Vec::new(),
            last: None,
            last_error: None,
        });
        self
    }

    /// The earliest instant at which [`Reporter::handle_timeout`] has something to send.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.watchdog.map(|(_, next)| next),
            self.extend_next,
            self.metrics_next,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, machine: &Machine, now: Instant) {
        if let Some((interval, next)) = self.watchdog {
            if next <= now {
                self.send(notify::WATCHDOG);
                self.watchdog = Some((interval, now + interval));
            }
        }
        if self.extend_next.is_some_and(|next| next <= now) {
            self.send(&notify::extend_timeout(EXTEND_BY));
            self.extend_next = Some(now + EXTEND_PERIOD);
        }
        if self.metrics_next.is_some_and(|next| next <= now) {
            self.write_metrics(machine, now, true);
        }
    }

    /// Reports whatever changed in the machine's state during the last turn.
    pub fn after_turn(&mut self, machine: &Machine, now: Instant) {
        if !self.ready_sent && machine.core_answered() {
            self.ready_sent = true;
            self.extend_next = None;
            self.send(notify::READY);
        }
        if !self.stopping_sent && machine.exiting() {
            self.stopping_sent = true;
            self.send(notify::STOPPING);
            let config = machine.config();
            let stop = config.stop_signal_timeout + Duration::from_secs(10);
            self.send(&notify::extend_timeout(stop));
        }
        let status = machine.status_line();
        if status != self.last_status {
            self.send(&notify::status(&redact_credentials(&status)));
            self.last_status = status;
        }
        self.write_metrics(machine, now, false);
        self.write_status(machine);
    }

    /// The last metrics write, with `visor_up 0`, and the last `status.json`.
    pub fn at_exit(&mut self, machine: &Machine, now: Instant) {
        let mut snapshot = snapshot(machine, &self.clock);
        snapshot.up = false;
        self.write_snapshot(machine, snapshot, now);
        self.write_status(machine);
    }

    fn write_status(&mut self, machine: &Machine) {
        let Some(file) = &mut self.status else {
            return;
        };
        let mut children = Vec::new();
        let pids: Vec<u32> = [Proc::Core, Proc::DataNode]
            .into_iter()
            .filter_map(|proc| machine.child_pid(proc))
            .collect();
        file.identities.retain(&pids);
        for proc in [Proc::Core, Proc::DataNode] {
            let Some(pid) = machine.child_pid(proc) else {
                continue;
            };
            // Its pid, start time, boot id, uid and executable: a later Visor stops it only
            // when all of them still match.
            let mut child = match file.identities.get(pid) {
                Some(identity) => identity.to_json(),
                None => serde_json::json!({ "pid": pid, "start_time": null }),
            };
            child["process"] = proc.name().into();
            let started_at = match file.started_at.iter().find(|(p, _)| *p == pid) {
                Some((_, at)) => at.clone(),
                None => {
                    let at = log::rfc3339_millis(unix_now_ms());
                    file.started_at.retain(|(p, _)| {
                        machine.child_pid(Proc::Core) == Some(*p)
                            || machine.child_pid(Proc::DataNode) == Some(*p)
                    });
                    file.started_at.push((pid, at.clone()));
                    at
                }
            };
            child["started_at"] = started_at.into();
            children.push(child);
        }
        let pending = machine
            .pending_detail()
            .map(|(tag, height, folder, state)| {
                serde_json::json!({
                    "release": tag,
                    "height": height,
                    "folder": folder.display().to_string(),
                    "folder_state": state,
                })
            });
        let (last_error, resolved_error) = error_records(machine, &self.clock);
        let (hooks_running, hook_failing) = machine.hook_status();
        let hook_processes = machine.hook_processes();
        file.hook_records
            .retain(|(pid, _)| hook_processes.iter().any(|(_, p)| p == pid));
        let mut hook_records = Vec::new();
        for (key, pid) in hook_processes {
            if let Some((_, record)) = file.hook_records.iter().find(|(p, _)| *p == pid) {
                hook_records.push(record.clone());
                continue;
            }
            // Its process group (the hook leads it), session, start time and boot id: a later
            // Visor stops the members of that group that still run.
            let record = hook_record(key, pid, file.identities.boot_id());
            file.hook_records.push((pid, record.clone()));
            hook_records.push(record);
        }
        let record = serde_json::json!({
            "visor": file.visor,
            "phase": machine.phase().name(),
            "status": machine.status_line(),
            "release": machine.running_release(),
            "folder": machine.running_folder().display().to_string(),
            "children": children,
            "restarts": machine.restarts(),
            "restarts_total": machine.restarts_total(),
            "upgrades_total": machine.upgrades(),
            "pending": pending,
            "last_error": last_error,
            "resolved_error": resolved_error,
            "refused_reload": machine.refused_reload(),
            "hooks": {
                "running": hooks_running,
                "failing": hook_failing,
                "processes": hook_records,
            },
            "backup": backup_record(machine, &self.clock),
        });
        if file.last.as_ref() == Some(&record) {
            return;
        }
        let mut written = record.clone();
        written["updated_at"] = log::rfc3339_millis(unix_now_ms()).into();
        redact_strings(&mut written);
        warn_once(
            &mut file.last_error,
            "status",
            file.folder.write_status(&written),
        );
        file.last = Some(record);
    }

    fn send(&self, message: &str) {
        if let Some(notifier) = &self.notifier {
            if let Err(e) = notifier.send(message) {
                log::warn(&format!("systemd: {e}"), &[]);
            }
        }
    }

    fn write_metrics(&mut self, machine: &Machine, now: Instant, periodic: bool) {
        let snapshot = snapshot(machine, &self.clock);
        let file_changed = machine.config().metrics_file != self.last_metrics_file;
        if periodic || file_changed || self.last_snapshot.as_ref() != Some(&snapshot) {
            self.write_snapshot(machine, snapshot, now);
        }
    }

    fn write_snapshot(&mut self, machine: &Machine, snapshot: Snapshot, now: Instant) {
        self.last_metrics_file = machine.config().metrics_file.clone();
        let Some(path) = self.last_metrics_file.clone() else {
            self.metrics_next = None;
            self.last_snapshot = Some(snapshot);
            return;
        };
        let written = metrics::write_atomic(&path, &metrics::render(&snapshot));
        warn_once(&mut self.last_metrics_error, "metrics", written);
        self.last_snapshot = Some(snapshot);
        self.metrics_next = Some(now + METRICS_PERIOD);
    }
}

/// `last_error` and `resolved_error` of `status.json`: the last error logged, with its time,
/// while its condition lasts; once it is gone, the same with the time it was seen gone, under
/// the other name (one of the two is null).
fn error_records(machine: &Machine, clock: &WallClock) -> (serde_json::Value, serde_json::Value) {
    let Some(error) = machine.last_error() else {
        return (serde_json::Value::Null, serde_json::Value::Null);
    };
    let time = |at| log::rfc3339_millis(clock.unix_at(at).as_millis() as u64);
    let mut record = serde_json::json!({ "message": error.message, "at": time(error.at) });
    match error.resolved_at {
        None => (record, serde_json::Value::Null),
        Some(resolved) => {
            record["resolved_at"] = time(resolved).into();
            (serde_json::Value::Null, record)
        }
    }
}

/// Milliseconds since the Unix epoch, now.
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every string in `value` with the credentials of URLs redacted: `status.json` is readable
/// by anyone who may list `.visor`, and `status` prints it.
fn redact_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(redacted) = redact_credentials(text) {
                *text = redacted;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_strings),
        serde_json::Value::Object(members) => members.values_mut().for_each(redact_strings),
        _ => {}
    }
}

/// Logs a failed write once per distinct problem (not once every 15 s); `last` remembers it
/// until a write succeeds.
fn warn_once(last: &mut Option<String>, what: &str, result: Result<(), String>) {
    match result {
        Ok(()) => *last = None,
        Err(e) => {
            if last.as_deref() != Some(e.as_str()) {
                log::warn(&format!("{what}: {e}"), &[]);
                *last = Some(e);
            }
        }
    }
}

/// The metrics of the machine's current state; `clock` dates Visor's start and the last
/// reload.
pub fn snapshot(machine: &Machine, clock: &WallClock) -> Snapshot {
    let data_node_restarts = machine.restarts_of(Proc::DataNode);
    let backup = machine.backup_status();
    Snapshot {
        up: true,
        visor_version: env!("CARGO_PKG_VERSION").to_string(),
        revision: REVISION.to_string(),
        start_time: clock.started,
        running_release: machine.running_release().to_string(),
        core_up: machine.child_pid(Proc::Core).is_some(),
        data_node_up: machine
            .has_data_node()
            .then(|| machine.child_pid(Proc::DataNode).is_some()),
        core_rpc_up: machine.core_rpc_up(),
        core_restarts: machine.restarts_of(Proc::Core),
        data_node_restarts: (machine.has_data_node() || data_node_restarts > 0)
            .then_some(data_node_restarts),
        upgrades_total: machine.upgrades(),
        install_failures_total: machine.install_failures(),
        pending: machine
            .pending()
            .map(|(tag, height, folder_ready)| metrics::Pending {
                tag: tag.to_string(),
                height,
                folder_ready,
            }),
        last_upgrade_downtime: machine.last_upgrade_downtime(),
        config_reload_ok: machine.refused_reload().is_none(),
        config_reload_success_time: machine
            .last_reload()
            .map_or(clock.started, |at| clock.unix_at(at)),
        hook_last_runs: machine
            .hook_last_runs()
            .into_iter()
            .map(|(kind, ok)| (kind.key(), ok))
            .collect(),
        backup_last: backup.last.map(|last| metrics::LastBackup {
            duration: last.duration,
            bytes: last.bytes,
            completed: clock.unix_at(last.at),
        }),
        backup_last_ok: backup.last_ok,
        backup_config_problems: backup.problems.len() as u64,
    }
}

/// `backup` of `status.json`: whether backups are on, the one running with its progress,
/// what the last check of `[backup]` found, the last failure (until a backup completes) and
/// the last backup that completed.
fn backup_record(machine: &Machine, clock: &WallClock) -> serde_json::Value {
    let backup = machine.backup_status();
    let time = |at| log::rfc3339_millis(clock.unix_at(at).as_millis() as u64);
    let running = backup.running.map(|r| {
        let report = r.report;
        serde_json::json!({
            "from": r.from,
            "to": r.to,
            "reason": if r.switch { "switch" } else { "upgrade" },
            "started_at": time(r.started),
            "files": report.map(|p| p.files),
            "files_total": report.map(|p| p.files_total),
            "bytes": report.map(|p| p.bytes),
            "bytes_total": report.map(|p| p.bytes_total),
            "bytes_per_second": report.map(|p| p.rate.round() as u64),
            "seconds_left": report.and_then(|p| p.left).map(|left| left.as_secs()),
        })
    });
    let last = backup.last.map(|last| {
        serde_json::json!({
            "path": last.path.display().to_string(),
            "files": last.files,
            "bytes": last.bytes,
            "duration_ms": last.duration.as_millis() as u64,
            "completed_at": time(last.at),
        })
    });
    serde_json::json!({
        "enabled": backup.enabled,
        "running": running,
        "problems": backup.problems,
        "cost": backup.cost,
        "failed": backup.failed,
        "last": last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_maps_instants_both_ways() {
        let now = Instant::now();
        let clock = WallClock {
            at: now,
            unix: Duration::from_secs(1_000),
            started: Duration::from_secs(990),
        };
        assert_eq!(
            clock.unix_at(now + Duration::from_millis(1_500)),
            Duration::from_millis(1_001_500)
        );
        if let Some(earlier) = now.checked_sub(Duration::from_secs(2)) {
            assert_eq!(clock.unix_at(earlier), Duration::from_secs(998));
        }
    }

    #[test]
    fn status_records_hold_no_credentials() {
        let mut record = serde_json::json!({
            "last_error": "install: v2 from http://u:secret@h/z failed",
            "pending": {"folder_state": "not ready: https://tok@h/x", "height": 3},
            "list": ["https://a:b@h"],
        });
        redact_strings(&mut record);
        assert!(!record.to_string().contains("secret"), "{record}");
        assert_eq!(
            record["pending"]["folder_state"],
            "not ready: https://***@h/x"
        );
        assert_eq!(record["list"][0], "https://***@h");
        assert_eq!(record["pending"]["height"], 3);
    }

    #[test]
    fn this_process_started_in_the_past_and_after_1970() {
        let started = process_start_unix().expect("/proc tells the start time");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        // btime has a resolution of one second.
        assert!(
            started <= now + Duration::from_secs(1),
            "{started:?} {now:?}"
        );
        assert!(now - started.min(now) < Duration::from_secs(24 * 3600 * 365));
        assert!(started > Duration::from_secs(1_600_000_000));
    }
}
