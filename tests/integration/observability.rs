//! What operators' tools read from a running Visor: log lines that journald files under
//! their priority when stderr is the journal, a metrics file that `promtool check metrics`
//! accepts, and the manual's series list and alerting rules.

use crate::common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use zeta_visor::ops::metrics::{render, LastBackup, Pending, Snapshot};

/// `$JOURNAL_STREAM` for a file: its device and inode, as systemd writes them.
fn journal_stream_of(path: &Path) -> String {
    let meta = fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Creates the log file before Visor opens it, so its inode is known.
fn create_log(env: &Env) -> String {
    fs::File::create(env.log_file()).unwrap();
    journal_stream_of(&env.log_file())
}

/// The priority journald reads from a line's prefix, and the rest of the line.
fn split_priority(line: &str) -> Option<(u8, &str)> {
    let rest = line.strip_prefix('<')?;
    let (digit, rest) = rest.split_once('>')?;
    Some((digit.parse().ok()?, rest))
}

/// The priority of each level label of a text line.
fn text_priority(rest: &str) -> Option<u8> {
    [("ERROR ", 3), ("WARN  ", 4), ("INFO  ", 6), ("DEBUG ", 7)]
        .into_iter()
        .find_map(|(label, priority)| rest.starts_with(label).then_some(priority))
}

#[test]
fn text_lines_start_with_their_syslog_priority_when_stderr_is_the_journal() {
    let mut env = Env::new("journaltext");
    env.write_config(&quick_config("logLevel = \"debug\""));
    let once = env.dir.join("crashed-once").display().to_string();
    env.add_version(Version::new("genesis", "v1").flags(&[
        "--crash-after",
        "300ms",
        "--crash-once",
        &once,
    ]));
    let stream = create_log(&env);
    env.start_visor_with(&[("JOURNAL_STREAM", &stream)]);
    env.wait_starts("core", 2);
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    let mut seen = Vec::new();
    for line in log.lines() {
        let (priority, rest) =
            split_priority(line).unwrap_or_else(|| panic!("no priority prefix: {line:?}"));
        assert_eq!(Some(priority), text_priority(rest), "{line:?}");
        seen.push(priority);
    }
    for (priority, what) in [(3, "error"), (4, "warn"), (6, "info")] {
        assert!(seen.contains(&priority), "no {what} line in\n{log}");
    }
    assert!(
        log.contains("<3>ERROR supervise: core exited unexpectedly"),
        "{log}"
    );
    assert!(log.contains("<4>WARN  supervise: restarting 1/"), "{log}");
    // journald stamps each line: no timestamp of Visor's own.
    assert!(log.contains("\n<6>INFO  rpc: core is answering"), "{log}");
}

#[test]
fn json_lines_are_the_priority_then_one_object_when_stderr_is_the_journal() {
    let mut env = Env::new("journaljson");
    env.write_config(&quick_config("logFormat = \"json\""));
    env.add_version(Version::new("genesis", "v1"));
    let stream = create_log(&env);
    env.start_visor_with(&[("JOURNAL_STREAM", &stream)]);
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        let (priority, rest) =
            split_priority(line).unwrap_or_else(|| panic!("no priority prefix: {line:?}"));
        let object: serde_json::Value =
            serde_json::from_str(rest).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let expected = match object["level"].as_str() {
            Some("error") => 3,
            Some("warn") => 4,
            Some("info") => 6,
            Some("debug") => 7,
            other => panic!("level {other:?}: {line:?}"),
        };
        assert_eq!(priority, expected, "{line:?}");
        assert!(object["ts"].as_str().is_some(), "{line:?}");
    }
}

#[test]
fn a_journal_stream_naming_another_file_adds_no_prefix() {
    let mut env = Env::new("journalother");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    create_log(&env);
    // What a child of a journald service inherits after its stderr was redirected.
    let other = env.dir.join("other");
    fs::write(&other, "").unwrap();
    let stream = journal_stream_of(&other);
    env.start_visor_with(&[("JOURNAL_STREAM", &stream)]);
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        // The text format as ever, without the timestamp because JOURNAL_STREAM is set.
        assert!(text_priority(line).is_some(), "{line:?}");
    }
}

#[test]
fn a_start_up_error_carries_its_priority_when_stderr_is_the_journal() {
    let mut env = Env::new("journalstart");
    env.write_config(&quick_config("maxNumberOfRestartz = 3"));
    env.add_version(Version::new("genesis", "v1"));
    let stream = create_log(&env);
    env.start_visor_with(&[("JOURNAL_STREAM", &stream)]);
    assert_eq!(env.wait_visor_exit(DEADLINE), 78);
    let log = env.log();
    assert!(
        log.contains("<3>visor: ") && log.contains("maxNumberOfRestartz: unknown key"),
        "{log}"
    );
    for line in log.lines() {
        assert_eq!(split_priority(line).map(|(p, _)| p), Some(3), "{line:?}");
    }
}

/// promtool, or a printed reason to skip.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "skipped: promtool not found (Debian: apt-get install prometheus; .ci/run installs it)"
        );
    }
    found.then_some("promtool")
}

/// Runs `promtool check metrics` on the file and fails on any problem it reports.
fn check_metrics(promtool: &str, file: &Path, when: &str) {
    let text = fs::read_to_string(file).unwrap();
    let output = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(fs::File::open(file).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics {when}: {:?}\n{said}\n--- the file:\n{text}",
        output.status
    );
}

#[test]
fn the_metrics_file_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else {
        return;
    };
    let mut env = Env::new("promtool");
    let file = env.dir.join("textfile/visor.prom");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    env.write_config(&quick_config(&format!(
        "metricsFile = \"{}\"",
        file.display()
    )));
    let once = env.dir.join("crashed-once").display().to_string();
    env.add_version(
        Version::new("genesis", "v1")
            .flags(&["--crash-after", "300ms", "--crash-once", &once])
            .with_data_node(),
    );
    env.add_version(Version::new("v2", "v2").with_data_node());
    env.start_visor();
    let text = || fs::read_to_string(&file).unwrap_or_default();
    // The core or the data node crashes first (both run the simulator with --crash-once).
    wait_until("a restart and an answer", DEADLINE, || {
        let text = text();
        (text.contains("visor_restarts_total{process=\"core\"} 1")
            || text.contains("visor_restarts_total{process=\"data_node\"} 1"))
            && text.contains("visor_core_rpc_up 1")
    });
    check_metrics(promtool, &file, "after a restart");

    env.wait_listening(2);
    env.control_write("v1", "announce", "v2@88");
    wait_until("the pending upgrade", DEADLINE, || {
        text().contains("visor_upgrade_folder_ready 1")
    });
    check_metrics(promtool, &file, "with an upgrade pending");

    env.control_write("v1", "ready", "");
    wait_until("the upgrade", DEADLINE, || {
        text().contains("visor_last_upgrade_downtime_seconds ")
    });
    check_metrics(promtool, &file, "after the upgrade");

    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(text().contains("visor_up 0"), "{}", text());
    check_metrics(promtool, &file, "after Visor exited");
}

/// A snapshot with every series present.
fn full_snapshot() -> Snapshot {
    Snapshot {
        up: true,
        visor_version: "0.1.0".into(),
        revision: "unknown".into(),
        start_time: Duration::from_secs(1_795_553_340),
        running_release: "v1".into(),
        core_up: true,
        data_node_up: Some(true),
        core_rpc_up: true,
        core_restarts: 1,
        data_node_restarts: Some(0),
        upgrades_total: 0,
        install_failures_total: 0,
        pending: Some(Pending {
            tag: "v2".into(),
            height: 88,
            folder_ready: false,
        }),
        last_upgrade_downtime: Some(Duration::from_millis(850)),
        config_reload_ok: true,
        config_reload_success_time: Duration::from_secs(1_795_553_340),
        hook_last_runs: vec![("beforeSwitch", false)],
        backup_last: Some(LastBackup {
            duration: Duration::from_millis(640),
            bytes: 2 << 30,
            completed: Duration::from_secs(1_795_553_400),
        }),
        backup_last_ok: Some(true),
        backup_config_problems: 0,
    }
}

fn manual() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/visor-config.5");
    fs::read_to_string(path).unwrap()
}

#[test]
fn every_series_is_listed_in_the_manual_with_its_labels() {
    let text = render(&full_snapshot());
    let manual = manual();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(' ').next().unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .map(|pair| pair.split('=').next().unwrap())
                    .collect();
                (name, format!("{{{}}}", labels.join(",")))
            }
            None => (series, String::new()),
        };
        let item = format!(".It Li {name}{labels}\n");
        assert!(
            manual.contains(&item),
            "man/visor-config.5 has no `{}` entry in METRICS",
            item.trim_end()
        );
    }
}

/// The alerting rules of the manual, as an operator copies them.
fn manual_rules() -> String {
    let manual = manual();
    let start = manual.find("\ngroups:\n").expect("rules in the manual") + 1;
    let end = start + manual[start..].find("\n.Ed\n").unwrap();
    let rules = manual[start..end].replace("\\e", "\\");
    assert!(!rules.contains('\\'), "roff escapes left in the rules");
    rules
}

/// A few hours of a validator in promtool's notation, and the alerts they must raise.
const RULE_TESTS: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{instance="a",job="node"}'
        values: '1x30'
      - series: 'up{instance="b",job="node"}'
        values: '1x30'
      - series: 'visor_up{instance="a",job="node"}'
        values: '1 1 0 0 0'
      - series: 'node_textfile_mtime_seconds{instance="a",job="node",file="/var/lib/node_exporter/textfile_collector/visor.prom"}'
        values: '0 60 120 120 120 120 120'
      - series: 'visor_upgrade_folder_ready{instance="a",job="node"}'
        values: '0x20'
      - series: 'visor_upgrade_pending_info{instance="a",job="node",tag="v2"}'
        values: '1x20'
      - series: 'visor_restarts_total{instance="a",job="node",process="core"}'
        values: '0 0 1 1 1'
      - series: 'visor_config_last_reload_successful{instance="a",job="node"}'
        values: '1 0x10'
      - series: 'visor_hook_last_run_successful{instance="a",job="node",hook="beforeSwitch"}'
        values: '1 1 0 0'
      - series: 'visor_backup_config_problems{instance="a",job="node"}'
        values: '1x15'
      - series: 'visor_backup_last_run_successful{instance="a",job="node"}'
        values: '1 1 1 0 0'
    alert_rule_test:
      - eval_time: 4m
        alertname: VisorDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: node}
            exp_annotations: {summary: "Visor on a has stopped"}
      - eval_time: 6m
        alertname: VisorMetricsStale
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: node, file: /var/lib/node_exporter/textfile_collector/visor.prom}
            exp_annotations: {summary: "Visor on a stopped writing its metrics"}
      - eval_time: 6m
        alertname: VisorMetricsAbsent
        exp_alerts:
          - exp_labels: {severity: critical, instance: b, job: node}
            exp_annotations: {summary: "no Visor metrics on b"}
      - eval_time: 14m
        alertname: VisorUpgradeFolderNotReady
        exp_alerts: []
      - eval_time: 16m
        alertname: VisorUpgradeFolderNotReady
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: node, tag: v2}
            exp_annotations: {summary: "the folder for upgrade v2 on a is not ready"}
      - eval_time: 3m
        alertname: VisorNodeRestarting
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: node, process: core}
            exp_annotations: {summary: "Visor restarted the core on a after a failure"}
      - eval_time: 7m
        alertname: VisorConfigReloadFailed
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: node}
            exp_annotations: {summary: "config.toml on a was changed but refused"}
      - eval_time: 1m
        alertname: VisorHookFailed
        exp_alerts: []
      - eval_time: 2m
        alertname: VisorHookFailed
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: node, hook: beforeSwitch}
            exp_annotations: {summary: "the beforeSwitch hook failed on a"}
      - eval_time: 9m
        alertname: VisorBackupProblem
        exp_alerts: []
      - eval_time: 11m
        alertname: VisorBackupProblem
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: node}
            exp_annotations: {summary: "the backup configuration on a has a problem; see visor status"}
      - eval_time: 2m
        alertname: VisorBackupFailed
        exp_alerts: []
      - eval_time: 3m
        alertname: VisorBackupFailed
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: node}
            exp_annotations: {summary: "the last backup on a failed"}
"#;

#[test]
fn the_alerting_rules_of_the_manual_pass_promtool() {
    let Some(promtool) = promtool() else {
        return;
    };
    let env = Env::new("promrules");
    fs::write(env.dir.join("rules.yml"), manual_rules()).unwrap();
    fs::write(env.dir.join("tests.yml"), RULE_TESTS).unwrap();
    for args in [
        &["check", "rules", "rules.yml"][..],
        &["test", "rules", "tests.yml"][..],
    ] {
        let output = Command::new(promtool)
            .args(args)
            .current_dir(&env.dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
