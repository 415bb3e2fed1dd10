//! Operations: JSON logs, the systemd notify protocol and the metrics file, observed from
//! outside while Visor runs the simulator through a restart and an upgrade (visor(1), SYSTEMD
//! and METRICS).

use crate::common::notify::notify_listener;
use crate::common::*;
use std::path::Path;

#[test]
fn json_logs_are_one_object_per_line_through_an_upgrade() {
    let mut env = Env::new("jsonlog");
    env.write_config(&quick_config("logFormat = \"json\"\nlogLevel = \"debug\""));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@40");
    env.control_write("v1", "ready", "");
    env.wait_starts("core", 2);
    env.wait_log("v2 is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    let (mut lines, mut pids) = (0, 0);
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(
            ["debug", "info", "warn", "error"].contains(&value["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(!value["msg"].as_str().unwrap().is_empty(), "{line}");
        if !value["pid"].is_null() {
            assert!(value["pid"].is_u64(), "pid is not a number: {line}");
            pids += 1;
        }
        lines += 1;
    }
    assert!(lines > 10, "{log}");
    assert!(pids >= 2, "no line with a pid: {log}");
    assert!(log.contains("\"msg\":\"upgrade: switching to v2\""));
    assert!(log.contains(&format!(
        "\"folder\":\"{}\"",
        Path::new(&env.home).join("v2").display()
    )));
}

#[test]
fn systemd_notifications_arrive_in_order_with_watchdog_pings() {
    let mut env = Env::new("notify");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1").flags(&["--rpc-after", "1s"]));
    let (socket, rx) = notify_listener(&env);
    let socket = socket.display().to_string();
    env.start_visor_with(&[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")]);
    let mut messages: Vec<(std::time::Instant, String)> = Vec::new();
    let collect_until = |messages: &mut Vec<(std::time::Instant, String)>, what: &str| {
        wait_until(what, DEADLINE, || {
            while let Ok(message) = rx.try_recv() {
                messages.push(message);
            }
            messages.iter().any(|(_, m)| m == what)
        });
    };
    collect_until(&mut messages, "READY=1");
    // READY only after the core listens (it binds its socket 1 s after start).
    let listening = env
        .records()
        .into_iter()
        .find(|r| r.event() == "listening")
        .expect("core listening");
    let start = env.starts("core")[0].t_ns();
    assert!(listening.t_ns() - start >= 1_000_000_000);
    let before_ready: Vec<&String> = messages
        .iter()
        .take_while(|(_, m)| m != "READY=1")
        .map(|(_, m)| m)
        .collect();
    assert!(
        before_ready.contains(&&"STATUS=starting v1".to_string()),
        "{before_ready:?}"
    );
    assert!(
        before_ready
            .iter()
            .any(|m| m.starts_with("EXTEND_TIMEOUT_USEC=")),
        "{before_ready:?}"
    );
    collect_until(&mut messages, "STATUS=running v1");
    // Watchdog pings every 200 ms (half of WATCHDOG_USEC): wait for ten more.
    let pings_before = messages.iter().filter(|(_, m)| m == "WATCHDOG=1").count();
    wait_until("ten watchdog pings", DEADLINE, || {
        while let Ok(message) = rx.try_recv() {
            messages.push(message);
        }
        messages.iter().filter(|(_, m)| m == "WATCHDOG=1").count() >= pings_before + 10
    });
    let pings: Vec<std::time::Instant> = messages
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let mut gaps: Vec<u128> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        (150..=300).contains(&median),
        "median watchdog gap {median} ms: {gaps:?}"
    );

    env.signal_visor(libc::SIGTERM);
    collect_until(&mut messages, "STOPPING=1");
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let texts: Vec<&str> = messages.iter().map(|(_, m)| m.as_str()).collect();
    let ready = texts.iter().position(|m| *m == "READY=1").unwrap();
    let stopping = texts.iter().position(|m| *m == "STOPPING=1").unwrap();
    assert!(ready < stopping);
    assert!(texts[stopping..].contains(&"STATUS=stopping"), "{texts:?}");
    assert_eq!(texts.iter().filter(|m| **m == "READY=1").count(), 1);
}

/// `name{labels} value` lines of a textfile, comments skipped.
fn metric_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// All restarts: the sum of `visor_restarts_total` over its `process` label.
fn restarts_total(path: &Path) -> u64 {
    metric_lines(path)
        .iter()
        .filter(|l| l.starts_with("visor_restarts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn metrics_file_counts_a_restart_and_an_upgrade() {
    let mut env = Env::new("metrics");
    let file = env.dir.join("textfile/visor.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
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
    let has = |line: &str| metric_lines(&file).iter().any(|l| l == line);
    // The core or the data node crashes first (both run the simulator with --crash-once).
    wait_until("restart counted", DEADLINE, || restarts_total(&file) == 1);
    env.wait_starts("core", 2);
    wait_until("children up", DEADLINE, || {
        has("visor_child_up{process=\"core\"} 1") && has("visor_child_up{process=\"data_node\"} 1")
    });
    assert!(has("visor_up 1"));
    assert!(has("visor_upgrades_total 0"));
    assert!(has("visor_running_release_info{name=\"v1\"} 1"));
    assert!(
        has("visor_restarts_total{process=\"core\"} 1")
            || has("visor_restarts_total{process=\"data_node\"} 1")
    );
    assert!(has("visor_install_failures_total 0"));
    assert!(has("visor_config_last_reload_successful 1"));
    // The revision is the commit the build recorded, or "unknown".
    let build_info = format!(
        "visor_build_info{{version=\"{}\",revision=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metric_lines(&file)
        .iter()
        .any(|l| l.starts_with(&build_info) && l.ends_with("\"} 1")));

    env.wait_listening(2);
    env.control_write("v1", "announce", "v2@88");
    wait_until("pending upgrade shown", DEADLINE, || {
        has("visor_upgrade_pending_info{tag=\"v2\"} 1")
            && has("visor_upgrade_pending_height 88")
            && has("visor_upgrade_folder_ready 1")
            && has("visor_core_rpc_up 1")
    });
    env.control_write("v1", "ready", "");
    wait_until("upgrade counted", DEADLINE, || {
        has("visor_upgrades_total 1") && has("visor_running_release_info{name=\"v2\"} 1")
    });
    wait_until("downtime measured", DEADLINE, || {
        metric_lines(&file)
            .iter()
            .any(|l| l.starts_with("visor_last_upgrade_downtime_seconds "))
    });
    assert!(!metric_lines(&file)
        .iter()
        .any(|l| l.starts_with("visor_upgrade_")));
    assert_eq!(restarts_total(&file), 1);
    // Every sample line is `name{labels} value` with a numeric value.
    for line in metric_lines(&file) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(has("visor_up 0"));
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".visor-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// True when the text holds a character a terminal acts on (ESC, CSI, BEL, ...), other than a
/// line end.
fn has_raw_control(text: &str) -> bool {
    text.chars().any(|c| c != '\n' && c.is_control())
}

#[test]
fn status_prints_the_core_s_tag_with_control_characters_escaped() {
    let mut env = Env::new("statusesc");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    // The simulator reads its control folder on every request, so the tag is announced by
    // the time Visor's poller has complained about it.
    env.control_write(
        "v1",
        "announce",
        "v2\x1b[2J\x1b]0;owned\x07\nFORGED line\u{9b}31m@100",
    );
    env.wait_log("is not a safe folder name");

    let (code, stdout, stderr) = env.run_visor_command(&["status"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!has_raw_control(&stdout), "{stdout:?}");
    assert!(
        stdout.contains(
            "accepted release: v2\\x1b[2J\\x1b]0;owned\\x07\\nFORGED line\\u{9b}31m at block 100"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|line| line.starts_with("FORGED")),
        "{stdout}"
    );
    assert!(!has_raw_control(&env.log()), "{:?}", env.log());
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

#[test]
fn a_version_output_with_a_newline_cannot_forge_a_log_line() {
    let mut env = Env::new("logesc");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let forged = "v2\x1b[31m\n2026-01-01T00:00:00.000Z ERROR forged";
    env.add_version(Version::new("v2", "v2").flags(&["--sim-version", forged]));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@100");
    env.wait_log("upgrade: folder for accepted release v2 is not ready");

    let log = env.log();
    assert!(!has_raw_control(&log), "{log:?}");
    assert!(
        log.contains(
            "reports version v2\\x1b[31m\\n2026-01-01T00:00:00.000Z ERROR forged, expected v2"
        ),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00.000Z"),
            "forged line: {line}"
        );
    }
    // The same text through check and status is escaped too.
    let (_, stdout, _) = env.run_visor_command(&["status"]);
    assert!(!has_raw_control(&stdout), "{stdout:?}");
    assert!(stdout.contains("NOT READY: "), "{stdout}");
    let (_, stdout, _) = env.run_visor_command(&["check"]);
    assert!(!has_raw_control(&stdout), "{stdout:?}");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}
