//! The metrics file: Visor's state in the Prometheus text exposition format, written for
//! node_exporter's textfile collector (config key `metricsFile`; the series are listed in
//! visor-config(5)).
//!
//! It owns the metric names, their help texts and types, the text of the file and its atomic
//! replacement. It must not decide anything: the coordinator fills a [`Snapshot`] and chooses
//! when to write it (on every state change and every 15 s), and a failed write is returned to
//! it, never retried or logged here.
//!
//! Names follow Prometheus' conventions: a `visor_` prefix, the unit as a suffix (`_seconds`),
//! counters ending in `_total`, `_info` gauges of 1 carrying text in labels, and no label
//! whose value flips while the thing it describes stays the same (the pending release's
//! height and folder state are series of their own, not labels of one).
//!
//! The file is replaced, never edited in place, so a collector reading it at any instant sees
//! a complete old or complete new file. The temporary file's name does not end in `.prom`,
//! so node_exporter never collects it half-written. One process writes a given metrics file
//! at a time (the temporary name holds the pid, and the coordinator is the only writer).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the metrics file shows, as the coordinator knows it at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `visor_up`: true while supervising, false in the last write before Visor exits.
    pub up: bool,
    /// `visor_build_info{version,revision}`: the version of Visor and the commit it was
    /// built from (`unknown` when the build did not record it).
    pub visor_version: String,
    pub revision: String,
    /// `visor_start_time_seconds`: when this Visor process started, since the Unix epoch.
    pub start_time: Duration,
    /// `visor_running_release_info{name}`: the release the running binaries belong to.
    pub running_release: String,
    /// `visor_child_up{process="core"}`.
    pub core_up: bool,
    /// `visor_child_up{process="data_node"}`, only when a data node is configured.
    pub data_node_up: Option<bool>,
    /// `visor_core_rpc_up`: the core of the current start answers its admin RPC.
    pub core_rpc_up: bool,
    /// `visor_restarts_total{process="core"}`: restarts caused by the core.
    pub core_restarts: u64,
    /// `visor_restarts_total{process="data_node"}`: restarts caused by the data node; shown
    /// while one is configured or once it caused a restart.
    pub data_node_restarts: Option<u64>,
    /// `visor_upgrades_total`: upgrades performed since Visor started.
    pub upgrades_total: u64,
    /// `visor_install_failures_total`: failed auto-installs since Visor started.
    pub install_failures_total: u64,
    /// `visor_upgrade_pending_info{tag}`, `visor_upgrade_pending_height`,
    /// `visor_upgrade_folder_ready`: the accepted release not yet running.
    pub pending: Option<Pending>,
    /// `visor_last_upgrade_downtime_seconds`: absent until the first upgrade.
    pub last_upgrade_downtime: Option<Duration>,
    /// `visor_config_last_reload_successful`: false while the last reload of config.toml
    /// was refused.
    pub config_reload_ok: bool,
    /// `visor_config_last_reload_success_timestamp_seconds`: when config.toml was last read
    /// and accepted (at start, or by a reload), since the Unix epoch.
    pub config_reload_success_time: Duration,
    /// `visor_hook_last_run_successful{hook}`: each hook that has run since Visor started
    /// (its `[hooks]` key) and whether its last run succeeded.
    pub hook_last_runs: Vec<(&'static str, bool)>,
    /// `visor_backup_last_duration_seconds`, `visor_backup_last_bytes` and
    /// `visor_backup_last_success_timestamp_seconds`: the last backup that completed since
    /// Visor started; absent until one did.
    pub backup_last: Option<LastBackup>,
    /// `visor_backup_last_run_successful`: whether the last backup that ended completed;
    /// absent until one ended.
    pub backup_last_ok: Option<bool>,
    /// `visor_backup_config_problems`: the problems the last check of `[backup]` found (0
    /// when none, or when backups are off).
    pub backup_config_problems: u64,
}

/// The last backup that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct LastBackup {
    pub duration: Duration,
    pub bytes: u64,
    /// When it completed, since the Unix epoch.
    pub completed: Duration,
}

/// An accepted release that is not running yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub tag: String,
    pub height: u64,
    pub folder_ready: bool,
}

/// The file's text: `# HELP` and `# TYPE` for every metric (also for those with no sample
/// at this instant), one line per sample, label values escaped, and a final newline.
///
/// Longer than the project's 80-line bound on purpose: it is the flat table of every series
/// in the order the file lists them, so the file and the man page read alike.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(3072);

    family(
        &mut out,
        "visor_up",
        "gauge",
        "1 while Visor is supervising, 0 in the last write before it exits.",
    );
    sample(&mut out, "visor_up", &[], flag(s.up));

    family(
        &mut out,
        "visor_build_info",
        "gauge",
        "Version of Visor and the commit it was built from, in labels; always 1.",
    );
    sample(
        &mut out,
        "visor_build_info",
        &[("version", &s.visor_version), ("revision", &s.revision)],
        "1",
    );

    family(
        &mut out,
        "visor_start_time_seconds",
        "gauge",
        "Start time of the Visor process since the Unix epoch in seconds.",
    );
    sample(
        &mut out,
        "visor_start_time_seconds",
        &[],
        &seconds(s.start_time),
    );

    family(
        &mut out,
        "visor_running_release_info",
        "gauge",
        "Release the running node binaries belong to, in the name label; always 1.",
    );
    sample(
        &mut out,
        "visor_running_release_info",
        &[("name", &s.running_release)],
        "1",
    );

    family(
        &mut out,
        "visor_child_up",
        "gauge",
        "1 while the node process is running, 0 while it is not.",
    );
    sample(
        &mut out,
        "visor_child_up",
        &[("process", "core")],
        flag(s.core_up),
    );
    if let Some(up) = s.data_node_up {
        sample(
            &mut out,
            "visor_child_up",
            &[("process", "data_node")],
            flag(up),
        );
    }

    family(
        &mut out,
        "visor_core_rpc_up",
        "gauge",
        "1 while the core answers its admin RPC, 0 before its first answer and after a \
         failed call.",
    );
    sample(&mut out, "visor_core_rpc_up", &[], flag(s.core_rpc_up));

    family(
        &mut out,
        "visor_restarts_total",
        "counter",
        "Restarts of the node processes caused by an unplanned exit or a failed start of the \
         process in the label, since Visor started.",
    );
    sample(
        &mut out,
        "visor_restarts_total",
        &[("process", "core")],
        &s.core_restarts.to_string(),
    );
    if let Some(restarts) = s.data_node_restarts {
        sample(
            &mut out,
            "visor_restarts_total",
            &[("process", "data_node")],
            &restarts.to_string(),
        );
    }

    family(
        &mut out,
        "visor_upgrades_total",
        "counter",
        "Protocol upgrades performed since Visor started.",
    );
    sample(
        &mut out,
        "visor_upgrades_total",
        &[],
        &s.upgrades_total.to_string(),
    );

    family(
        &mut out,
        "visor_install_failures_total",
        "counter",
        "Failed auto-installs of the pending release since Visor started.",
    );
    sample(
        &mut out,
        "visor_install_failures_total",
        &[],
        &s.install_failures_total.to_string(),
    );

    family(
        &mut out,
        "visor_upgrade_pending_info",
        "gauge",
        "Release accepted by the core and not running yet, in the tag label; always 1, \
         absent when there is none.",
    );
    if let Some(pending) = &s.pending {
        sample(
            &mut out,
            "visor_upgrade_pending_info",
            &[("tag", &pending.tag)],
            "1",
        );
    }

    family(
        &mut out,
        "visor_upgrade_pending_height",
        "gauge",
        "Block height of the pending upgrade; absent when there is none.",
    );
    if let Some(pending) = &s.pending {
        sample(
            &mut out,
            "visor_upgrade_pending_height",
            &[],
            &pending.height.to_string(),
        );
    }

    family(
        &mut out,
        "visor_upgrade_folder_ready",
        "gauge",
        "1 when the folder of the pending release is checked ready, 0 while it is missing, \
         broken, being checked or being installed; absent when no release is pending.",
    );
    if let Some(pending) = &s.pending {
        sample(
            &mut out,
            "visor_upgrade_folder_ready",
            &[],
            flag(pending.folder_ready),
        );
    }

    family(
        &mut out,
        "visor_last_upgrade_downtime_seconds",
        "gauge",
        "Seconds the core was unavailable during the last upgrade; absent until the first.",
    );
    if let Some(downtime) = s.last_upgrade_downtime {
        sample(
            &mut out,
            "visor_last_upgrade_downtime_seconds",
            &[],
            &seconds(downtime),
        );
    }

    family(
        &mut out,
        "visor_config_last_reload_successful",
        "gauge",
        "1 when the last reload of config.toml was applied, 0 while it is refused.",
    );
    sample(
        &mut out,
        "visor_config_last_reload_successful",
        &[],
        flag(s.config_reload_ok),
    );

    family(
        &mut out,
        "visor_config_last_reload_success_timestamp_seconds",
        "gauge",
        "Time config.toml was last read and accepted, at start or by a reload, since the \
         Unix epoch in seconds.",
    );
    sample(
        &mut out,
        "visor_config_last_reload_success_timestamp_seconds",
        &[],
        &seconds(s.config_reload_success_time),
    );

    family(
        &mut out,
        "visor_hook_last_run_successful",
        "gauge",
        "1 when the last run of the hook in the label succeeded, 0 when it failed; absent \
         until the hook has run.",
    );
    for (hook, ok) in &s.hook_last_runs {
        sample(
            &mut out,
            "visor_hook_last_run_successful",
            &[("hook", hook)],
            flag(*ok),
        );
    }

    family(
        &mut out,
        "visor_backup_last_run_successful",
        "gauge",
        "1 when the last backup completed, 0 when it failed; absent until a backup has run.",
    );
    if let Some(ok) = s.backup_last_ok {
        sample(&mut out, "visor_backup_last_run_successful", &[], flag(ok));
    }

    family(
        &mut out,
        "visor_backup_last_duration_seconds",
        "gauge",
        "Seconds the last completed backup took; absent until one completed.",
    );
    if let Some(last) = &s.backup_last {
        sample(
            &mut out,
            "visor_backup_last_duration_seconds",
            &[],
            &seconds(last.duration),
        );
    }

    family(
        &mut out,
        "visor_backup_last_bytes",
        "gauge",
        "Bytes of file data in the last completed backup; absent until one completed.",
    );
    if let Some(last) = &s.backup_last {
        sample(
            &mut out,
            "visor_backup_last_bytes",
            &[],
            &last.bytes.to_string(),
        );
    }

    family(
        &mut out,
        "visor_backup_last_success_timestamp_seconds",
        "gauge",
        "Time the last backup completed, since the Unix epoch in seconds; absent until one \
         completed.",
    );
    if let Some(last) = &s.backup_last {
        sample(
            &mut out,
            "visor_backup_last_success_timestamp_seconds",
            &[],
            &seconds(last.completed),
        );
    }

    family(
        &mut out,
        "visor_backup_config_problems",
        "gauge",
        "Problems the last check of [backup] found, at start and at each reload; 0 when none \
         or when backups are off.",
    );
    sample(
        &mut out,
        "visor_backup_config_problems",
        &[],
        &s.backup_config_problems.to_string(),
    );

    out
}

/// Writes the `# HELP` and `# TYPE` lines of one metric. Help texts are constants free of
/// backslashes and line breaks, so they need no escaping.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line: `name{label="value",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, label_value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, label_value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Appends `value` with `\`, `"` and line feeds escaped as the exposition format requires,
/// and the credentials of a URL in it redacted (a label holds a release name, not a URL, but
/// no metric may show one).
fn escape_label_value(out: &mut String, value: &str) {
    for c in crate::config::url::redact_credentials(value).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn flag(value: bool) -> &'static str {
    if value {
        "1"
    } else {
        "0"
    }
}

/// Seconds with millisecond precision (`12.345`), the finer digits dropped.
fn seconds(d: Duration) -> String {
    let millis = d.as_millis();
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

/// Replaces the file at `path` with `text`: writes `.visor-tmp-metrics-<pid>` in the same
/// folder, fsyncs it and renames it over `path`, so readers never see a partial file. The
/// temporary file is removed when any step fails. Errors name the path and say what to do.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let shown = path.display();
    let Some(file_name) = path.file_name() else {
        return Err(format!(
            "metrics file {shown} names no file; set metricsFile in config.toml to a file \
             path ending in .prom"
        ));
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".visor-tmp-metrics-{}", std::process::id()));
    if Some(file_name) == tmp.file_name() {
        return Err(format!(
            "metrics file {shown} has the name Visor uses for its temporary file; set \
             metricsFile in config.toml to a file path ending in .prom"
        ));
    }

    // A leftover of an earlier process with the same pid, or anything else under that name,
    // is removed, and the file is then created with O_EXCL: a symlink planted under the
    // temporary name is never followed.
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| create_error(path, &dir, &tmp, &e))?;

    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "cannot write {} for metrics file {shown}: {e}; check that the file system \
             holding {} has free space",
            tmp.display(),
            dir.display()
        ));
    }

    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "cannot rename {} over metrics file {shown}: {e}; make sure {shown} is not a \
             folder and that the user Visor runs as may replace files in {}",
            tmp.display(),
            dir.display()
        ));
    }
    Ok(())
}

fn create_error(path: &Path, dir: &Path, tmp: &Path, e: &io::Error) -> String {
    let (path, dir, tmp) = (path.display(), dir.display(), tmp.display());
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "cannot write metrics file {path}: the folder {dir} does not exist; create it, \
             writable by the user Visor runs as, or set metricsFile in config.toml to a file \
             in an existing folder"
        ),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => format!(
            "cannot create {tmp} for metrics file {path}: {e}; give the user Visor runs as \
             write access to {dir} (under systemd with ProtectSystem=strict, also list it in \
             ReadWritePaths=)"
        ),
        _ => format!(
            "cannot create {tmp} for metrics file {path}: {e}; check the folder {dir} or set \
             metricsFile in config.toml to a file in another folder"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn full() -> Snapshot {
        Snapshot {
            up: true,
            visor_version: "0.1.0".into(),
            revision: "0123abc".into(),
            start_time: Duration::from_millis(1_795_553_340_123),
            running_release: "v1.2.3".into(),
            core_up: true,
            data_node_up: Some(false),
            core_rpc_up: true,
            core_restarts: 2,
            data_node_restarts: Some(1),
            upgrades_total: 1,
            install_failures_total: 3,
            pending: Some(Pending {
                tag: "v1.3.0".into(),
                height: 1_200_000,
                folder_ready: true,
            }),
            last_upgrade_downtime: Some(Duration::from_micros(1_234_567)),
            config_reload_ok: false,
            config_reload_success_time: Duration::from_secs(1_795_553_400),
            hook_last_runs: vec![("onAccepted", true), ("beforeSwitch", false)],
            backup_last: Some(LastBackup {
                duration: Duration::from_millis(12_345),
                bytes: 2_147_483_648,
                completed: Duration::from_millis(1_795_553_500_250),
            }),
            backup_last_ok: Some(false),
            backup_config_problems: 2,
        }
    }

    fn minimal() -> Snapshot {
        Snapshot {
            up: false,
            visor_version: "0.1.0".into(),
            revision: "unknown".into(),
            start_time: Duration::ZERO,
            running_release: "genesis".into(),
            core_up: false,
            data_node_up: None,
            core_rpc_up: false,
            core_restarts: 0,
            data_node_restarts: None,
            upgrades_total: 0,
            install_failures_total: 0,
            pending: None,
            last_upgrade_downtime: None,
            config_reload_ok: true,
            config_reload_success_time: Duration::ZERO,
            hook_last_runs: Vec::new(),
            backup_last: None,
            backup_last_ok: None,
            backup_config_problems: 0,
        }
    }

    const FULL: &str = "\
# HELP visor_up 1 while Visor is supervising, 0 in the last write before it exits.
# TYPE visor_up gauge
visor_up 1
# HELP visor_build_info Version of Visor and the commit it was built from, in labels; always 1.
# TYPE visor_build_info gauge
visor_build_info{version=\"0.1.0\",revision=\"0123abc\"} 1
# HELP visor_start_time_seconds Start time of the Visor process since the Unix epoch in seconds.
# TYPE visor_start_time_seconds gauge
visor_start_time_seconds 1795553340.123
# HELP visor_running_release_info Release the running node binaries belong to, in the name label; always 1.
# TYPE visor_running_release_info gauge
visor_running_release_info{name=\"v1.2.3\"} 1
# HELP visor_child_up 1 while the node process is running, 0 while it is not.
# TYPE visor_child_up gauge
visor_child_up{process=\"core\"} 1
visor_child_up{process=\"data_node\"} 0
# HELP visor_core_rpc_up 1 while the core answers its admin RPC, 0 before its first answer and after a failed call.
# TYPE visor_core_rpc_up gauge
visor_core_rpc_up 1
# HELP visor_restarts_total Restarts of the node processes caused by an unplanned exit or a failed start of the process in the label, since Visor started.
# TYPE visor_restarts_total counter
visor_restarts_total{process=\"core\"} 2
visor_restarts_total{process=\"data_node\"} 1
# HELP visor_upgrades_total Protocol upgrades performed since Visor started.
# TYPE visor_upgrades_total counter
visor_upgrades_total 1
# HELP visor_install_failures_total Failed auto-installs of the pending release since Visor started.
# TYPE visor_install_failures_total counter
visor_install_failures_total 3
# HELP visor_upgrade_pending_info Release accepted by the core and not running yet, in the tag label; always 1, absent when there is none.
# TYPE visor_upgrade_pending_info gauge
visor_upgrade_pending_info{tag=\"v1.3.0\"} 1
# HELP visor_upgrade_pending_height Block height of the pending upgrade; absent when there is none.
# TYPE visor_upgrade_pending_height gauge
visor_upgrade_pending_height 1200000
# HELP visor_upgrade_folder_ready 1 when the folder of the pending release is checked ready, 0 while it is missing, broken, being checked or being installed; absent when no release is pending.
# TYPE visor_upgrade_folder_ready gauge
visor_upgrade_folder_ready 1
# HELP visor_last_upgrade_downtime_seconds Seconds the core was unavailable during the last upgrade; absent until the first.
# TYPE visor_last_upgrade_downtime_seconds gauge
visor_last_upgrade_downtime_seconds 1.234
# HELP visor_config_last_reload_successful 1 when the last reload of config.toml was applied, 0 while it is refused.
# TYPE visor_config_last_reload_successful gauge
visor_config_last_reload_successful 0
# HELP visor_config_last_reload_success_timestamp_seconds Time config.toml was last read and accepted, at start or by a reload, since the Unix epoch in seconds.
# TYPE visor_config_last_reload_success_timestamp_seconds gauge
visor_config_last_reload_success_timestamp_seconds 1795553400.000
# HELP visor_hook_last_run_successful 1 when the last run of the hook in the label succeeded, 0 when it failed; absent until the hook has run.
# TYPE visor_hook_last_run_successful gauge
visor_hook_last_run_successful{hook=\"onAccepted\"} 1
visor_hook_last_run_successful{hook=\"beforeSwitch\"} 0
# HELP visor_backup_last_run_successful 1 when the last backup completed, 0 when it failed; absent until a backup has run.
# TYPE visor_backup_last_run_successful gauge
visor_backup_last_run_successful 0
# HELP visor_backup_last_duration_seconds Seconds the last completed backup took; absent until one completed.
# TYPE visor_backup_last_duration_seconds gauge
visor_backup_last_duration_seconds 12.345
# HELP visor_backup_last_bytes Bytes of file data in the last completed backup; absent until one completed.
# TYPE visor_backup_last_bytes gauge
visor_backup_last_bytes 2147483648
# HELP visor_backup_last_success_timestamp_seconds Time the last backup completed, since the Unix epoch in seconds; absent until one completed.
# TYPE visor_backup_last_success_timestamp_seconds gauge
visor_backup_last_success_timestamp_seconds 1795553500.250
# HELP visor_backup_config_problems Problems the last check of [backup] found, at start and at each reload; 0 when none or when backups are off.
# TYPE visor_backup_config_problems gauge
visor_backup_config_problems 2
";

    const MINIMAL: &str = "\
# HELP visor_up 1 while Visor is supervising, 0 in the last write before it exits.
# TYPE visor_up gauge
visor_up 0
# HELP visor_build_info Version of Visor and the commit it was built from, in labels; always 1.
# TYPE visor_build_info gauge
visor_build_info{version=\"0.1.0\",revision=\"unknown\"} 1
# HELP visor_start_time_seconds Start time of the Visor process since the Unix epoch in seconds.
# TYPE visor_start_time_seconds gauge
visor_start_time_seconds 0.000
# HELP visor_running_release_info Release the running node binaries belong to, in the name label; always 1.
# TYPE visor_running_release_info gauge
visor_running_release_info{name=\"genesis\"} 1
# HELP visor_child_up 1 while the node process is running, 0 while it is not.
# TYPE visor_child_up gauge
visor_child_up{process=\"core\"} 0
# HELP visor_core_rpc_up 1 while the core answers its admin RPC, 0 before its first answer and after a failed call.
# TYPE visor_core_rpc_up gauge
visor_core_rpc_up 0
# HELP visor_restarts_total Restarts of the node processes caused by an unplanned exit or a failed start of the process in the label, since Visor started.
# TYPE visor_restarts_total counter
visor_restarts_total{process=\"core\"} 0
# HELP visor_upgrades_total Protocol upgrades performed since Visor started.
# TYPE visor_upgrades_total counter
visor_upgrades_total 0
# HELP visor_install_failures_total Failed auto-installs of the pending release since Visor started.
# TYPE visor_install_failures_total counter
visor_install_failures_total 0
# HELP visor_upgrade_pending_info Release accepted by the core and not running yet, in the tag label; always 1, absent when there is none.
# TYPE visor_upgrade_pending_info gauge
# HELP visor_upgrade_pending_height Block height of the pending upgrade; absent when there is none.
# TYPE visor_upgrade_pending_height gauge
# HELP visor_upgrade_folder_ready 1 when the folder of the pending release is checked ready, 0 while it is missing, broken, being checked or being installed; absent when no release is pending.
# TYPE visor_upgrade_folder_ready gauge
# HELP visor_last_upgrade_downtime_seconds Seconds the core was unavailable during the last upgrade; absent until the first.
# TYPE visor_last_upgrade_downtime_seconds gauge
# HELP visor_config_last_reload_successful 1 when the last reload of config.toml was applied, 0 while it is refused.
# TYPE visor_config_last_reload_successful gauge
visor_config_last_reload_successful 1
# HELP visor_config_last_reload_success_timestamp_seconds Time config.toml was last read and accepted, at start or by a reload, since the Unix epoch in seconds.
# TYPE visor_config_last_reload_success_timestamp_seconds gauge
visor_config_last_reload_success_timestamp_seconds 0.000
# HELP visor_hook_last_run_successful 1 when the last run of the hook in the label succeeded, 0 when it failed; absent until the hook has run.
# TYPE visor_hook_last_run_successful gauge
# HELP visor_backup_last_run_successful 1 when the last backup completed, 0 when it failed; absent until a backup has run.
# TYPE visor_backup_last_run_successful gauge
# HELP visor_backup_last_duration_seconds Seconds the last completed backup took; absent until one completed.
# TYPE visor_backup_last_duration_seconds gauge
# HELP visor_backup_last_bytes Bytes of file data in the last completed backup; absent until one completed.
# TYPE visor_backup_last_bytes gauge
# HELP visor_backup_last_success_timestamp_seconds Time the last backup completed, since the Unix epoch in seconds; absent until one completed.
# TYPE visor_backup_last_success_timestamp_seconds gauge
# HELP visor_backup_config_problems Problems the last check of [backup] found, at start and at each reload; 0 when none or when backups are off.
# TYPE visor_backup_config_problems gauge
visor_backup_config_problems 0
";

    /// Compares line by line, so a failure shows the first differing line.
    fn assert_lines(actual: &str, expected: &str) {
        let actual_lines: Vec<&str> = actual.lines().collect();
        let expected_lines: Vec<&str> = expected.lines().collect();
        for (i, (a, e)) in actual_lines.iter().zip(&expected_lines).enumerate() {
            assert_eq!(a, e, "line {}", i + 1);
        }
        assert_eq!(actual_lines.len(), expected_lines.len(), "number of lines");
        assert!(actual.ends_with('\n'), "final newline");
    }

    #[test]
    fn render_full_snapshot() {
        let text = render(&full());
        assert_lines(&text, FULL);
        check_exposition(&text).expect("valid exposition text");
    }

    #[test]
    fn render_minimal_snapshot() {
        let text = render(&minimal());
        assert_lines(&text, MINIMAL);
        check_exposition(&text).expect("valid exposition text");
    }

    #[test]
    fn downtime_has_millisecond_precision() {
        assert_eq!(seconds(Duration::ZERO), "0.000");
        assert_eq!(seconds(Duration::from_millis(412)), "0.412");
        assert_eq!(seconds(Duration::from_millis(61_005)), "61.005");
        assert_eq!(seconds(Duration::from_nanos(1_999_999)), "0.001");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut snapshot = full();
        snapshot.running_release = "a\"b\\c\nd".into();
        snapshot.pending = Some(Pending {
            tag: "\\\"\n".into(),
            height: 7,
            folder_ready: false,
        });
        let text = render(&snapshot);
        assert!(
            text.contains("visor_running_release_info{name=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("visor_upgrade_pending_info{tag=\"\\\\\\\"\\n\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("visor_upgrade_pending_height 7\n"), "{text}");
        assert!(text.contains("visor_upgrade_folder_ready 0\n"), "{text}");
        let samples = check_exposition(&text).expect("valid exposition text");
        let release = samples
            .iter()
            .find(|s| s.name == "visor_running_release_info")
            .expect("running release sample");
        assert_eq!(
            release.labels,
            [("name".to_string(), "a\"b\\c\nd".to_string())]
        );
        let pending = samples
            .iter()
            .find(|s| s.name == "visor_upgrade_pending_info")
            .expect("pending sample");
        assert_eq!(pending.labels, [("tag".to_string(), "\\\"\n".to_string())]);
    }

    #[test]
    fn the_pending_release_changes_no_label_but_its_tag() {
        let mut snapshot = full();
        let before = render(&snapshot);
        let pending = snapshot.pending.as_mut().expect("pending");
        pending.folder_ready = false;
        pending.height += 1;
        let after = render(&snapshot);
        let label_sets = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.rsplit_once(' ').expect("value").0.to_string())
                .collect()
        };
        assert_eq!(label_sets(&before), label_sets(&after));
        assert_ne!(before, after);
    }

    #[test]
    fn counters_end_in_total_and_every_series_has_help_and_type() {
        let text = render(&full());
        let mut names = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("type");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                names.push(name);
            }
        }
        assert_eq!(names.len(), 21, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("visor_")));
    }

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        is_metric_name(name) && !name.contains(':')
    }

    /// Parses `name{label="value",...} value` with the format's escapes in label values.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..end];
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                let eq = rest.find('=').ok_or("label without '='")?;
                let label = &rest[..eq];
                if !is_label_name(label) {
                    return Err(format!("bad label name {label:?}"));
                }
                rest = rest[eq + 1..]
                    .strip_prefix('"')
                    .ok_or("label value not quoted")?;
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let close = loop {
                    match chars.next().ok_or("unterminated label value")? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => return Err(format!("unknown escape \\{other}")),
                        },
                        (_, '\n') => return Err("raw line feed in label value".into()),
                        (_, c) => value.push(c),
                    }
                };
                labels.push((label.to_string(), value));
                rest = &rest[close + 1..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else {
                    rest = rest.strip_prefix('}').ok_or("labels not closed")?;
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        value
            .parse::<f64>()
            .map_err(|e| format!("bad value {value:?}: {e}"))?;
        Ok(Sample {
            name: name.to_string(),
            labels,
        })
    }

    /// Checks the whole text: every comment is a HELP or TYPE line, every metric has both
    /// before its samples, every other line is a sample, and each metric's samples are
    /// together. Returns the samples.
    fn check_exposition(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut helped = HashSet::new();
        let mut typed: HashMap<String, String> = HashMap::new();
        let mut finished = HashSet::new();
        let mut current: Option<String> = None;
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
                if !is_metric_name(name) || help.is_empty() || help.contains('\\') {
                    return Err(format!("bad HELP line {line:?}"));
                }
                if !helped.insert(name.to_string()) {
                    return Err(format!("second HELP for {name}"));
                }
                if let Some(previous) = current.replace(name.to_string()) {
                    finished.insert(previous);
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or("TYPE without type")?;
                if !matches!(kind, "gauge" | "counter") {
                    return Err(format!("unexpected type in {line:?}"));
                }
                if current.as_deref() != Some(name) {
                    return Err(format!("TYPE for {name} not after its HELP"));
                }
                if typed.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(format!("second TYPE for {name}"));
                }
            } else if line.starts_with('#') {
                return Err(format!("unexpected comment {line:?}"));
            } else {
                let sample = parse_sample(line).map_err(|e| format!("{line:?}: {e}"))?;
                if current.as_deref() != Some(sample.name.as_str())
                    || !typed.contains_key(&sample.name)
                    || finished.contains(&sample.name)
                {
                    return Err(format!("sample {line:?} not under its HELP and TYPE"));
                }
                if typed[&sample.name] == "counter" && !sample.name.ends_with("_total") {
                    return Err(format!("counter {} does not end in _total", sample.name));
                }
                samples.push(sample);
            }
        }
        if helped.len() != typed.len() {
            return Err("a metric has HELP but no TYPE".into());
        }
        Ok(samples)
    }

    #[test]
    fn the_checker_rejects_malformed_text() {
        assert!(check_exposition("visor_up 1\n").is_err());
        assert!(check_exposition("# HELP a b\n# TYPE a gauge\na{x=\"1} 1\n").is_err());
        assert!(check_exposition("# HELP a b\n# TYPE a gauge\na{x=\"\\t\"} 1\n").is_err());
        assert!(check_exposition("# HELP a b\n# TYPE a gauge\na one\n").is_err());
        assert!(check_exposition("# HELP a b\n# TYPE a gauge\na 1").is_err());
        assert!(check_exposition("# HELP a b\n# TYPE a gauge\na{x=\"1\"} 1\n").is_ok());
    }

    /// A folder under the system temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "zeta-visor-metrics-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .expect("list temp dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = TempDir::new();
        let path = dir.0.join("visor.prom");
        write_atomic(&path, "first\n").expect("first write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "first\n");
        let text = render(&full());
        write_atomic(&path, &text).expect("second write");
        assert_eq!(fs::read_to_string(&path).expect("read"), text);
        assert_eq!(dir.entries(), ["visor.prom"]);
    }

    #[test]
    fn write_atomic_never_follows_a_planted_temporary_name() {
        let dir = TempDir::new();
        let victim = dir.0.join("victim");
        fs::write(&victim, "keep").expect("write victim");
        let tmp = dir
            .0
            .join(format!(".visor-tmp-metrics-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("plant symlink");
        let path = dir.0.join("visor.prom");
        write_atomic(&path, "new\n").expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read victim"), "keep");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new\n");
        assert_eq!(dir.entries(), ["victim", "visor.prom"]);
    }

    #[test]
    fn write_atomic_names_a_missing_folder() {
        let dir = TempDir::new();
        let folder = dir.0.join("textfile_collector");
        let path = folder.join("visor.prom");
        let error = write_atomic(&path, "x\n").unwrap_err();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(
            error.contains(&format!("the folder {} does not exist", folder.display())),
            "{error}"
        );
        assert!(error.contains("create it"), "{error}");
        assert!(!folder.exists());
    }

    #[test]
    fn write_atomic_over_a_folder_fails_and_cleans_up() {
        let dir = TempDir::new();
        let path = dir.0.join("visor.prom");
        fs::create_dir(&path).expect("make a folder where the file goes");
        fs::write(path.join("inside"), "x").expect("make it non-empty");
        let error = write_atomic(&path, "x\n").unwrap_err();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("is not a folder"), "{error}");
        assert_eq!(dir.entries(), ["visor.prom"]);
    }

    #[test]
    fn write_atomic_refuses_a_path_without_a_file_name() {
        let error = write_atomic(Path::new("/"), "x\n").unwrap_err();
        assert!(error.contains("metrics file / names no file"), "{error}");
    }
}
