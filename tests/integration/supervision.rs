//! `visor run` against the simulator: start, crash and restart, restart budget, signals,
//! parent death, data-node restarts and configuration reload (visor(1), SUPERVISION and
//! SIGNALS; visor-config(5), RELOADING).

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[test]
fn links_genesis_and_starts_core_and_data_node_with_the_configured_args() {
    let mut env = Env::new("start");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0").with_data_node());
    std::fs::create_dir(env.home.join(".visor-tmp-install-7")).unwrap();
    env.start_visor();

    let core = env.wait_starts("core", 1);
    assert_eq!(
        core[0].args(),
        strings(&["start", "--home", &env.node_home()])
    );
    let data_node = env.wait_starts("datanode", 1);
    let dn_home = env.dir.join("dn").display().to_string();
    assert_eq!(
        data_node[0].args(),
        strings(&["datanode", "start", "--home", &dn_home])
    );
    assert_eq!(env.current_target(), std::path::Path::new("genesis"));
    assert!(!env.home.join(".visor-tmp-install-7").exists());
    // The child runs in its own process group with Visor as parent.
    assert_eq!(core[0].0["pgid"], core[0].0["pid"]);
    assert_eq!(core[0].0["ppid"].as_i64().unwrap(), env.visor_pid() as i64);
    env.wait_log("rpc: core is answering");

    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(env.live_sims().is_empty(), "{:?}", env.live_sims());
    let exits = env
        .records()
        .into_iter()
        .filter(|r| r.event() == "exit" && r.0["reason"] == "sigterm")
        .count();
    assert_eq!(exits, 2);
}

/// Makes a folder's content impossible to remove until dropped: `chattr +i` on a file in it
/// (which stops even root), or, without that, mode 0555 on the folder (which stops anyone but
/// root).
struct Unremovable {
    undo: Box<dyn Fn()>,
}

impl Unremovable {
    fn make(folder: &Path) -> Option<Unremovable> {
        let file: PathBuf = folder.join("zeta");
        std::fs::write(&file, "x").unwrap();
        let chattr = |flag: &str, file: &Path| {
            Command::new("chattr")
                .arg(flag)
                .arg(file)
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if chattr("+i", &file) {
            return Some(Unremovable {
                undo: Box::new(move || {
                    chattr("-i", &file);
                }),
            });
        }
        if unsafe { libc::geteuid() } != 0 {
            let set = |mode| {
                std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .unwrap()
            };
            set(0o555);
            let folder = folder.to_path_buf();
            return Some(Unremovable {
                undo: Box::new(move || {
                    let _ = std::fs::set_permissions(
                        &folder,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    );
                }),
            });
        }
        None
    }
}

impl Drop for Unremovable {
    fn drop(&mut self) {
        (self.undo)();
    }
}

#[test]
fn a_leftover_that_cannot_be_removed_is_a_warning_and_the_core_starts() {
    let mut env = Env::new("stuck");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let leftover = env.home.join(".visor-tmp-install-v2-999-0");
    let inner = leftover.join("bin");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(env.home.join(".visor-tmp-link-999-1"), "").unwrap();
    // Dropped before `env`, so the folder can be cleaned up.
    let Some(_unremovable) = Unremovable::make(&inner) else {
        eprintln!("skipped: running as root where chattr +i does not work on {inner:?}");
        return;
    };
    env.start_visor();
    env.wait_starts("core", 1);
    let log = env.log();
    let warning = format!(
        "WARN  home: cannot remove {}, a leftover of an interrupted run or install (",
        leftover.display()
    );
    assert!(log.contains(&warning), "{log}");
    assert!(
        log.contains(&format!(
            "remove it as its owner or as root (rm -rf {})",
            leftover.display()
        )),
        "{log}"
    );
    assert!(leftover.exists());
    assert!(!env.home.join(".visor-tmp-link-999-1").exists());
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

#[test]
fn a_crash_restarts_both_after_the_delay() {
    let mut env = Env::new("crash");
    env.write_config(&quick_config(""));
    let once = env.dir.join("crashed-once").display().to_string();
    env.add_version(
        Version::new("genesis", "v1.0.0")
            .flags(&["--crash-after", "300ms", "--crash-once", &once])
            .with_data_node(),
    );
    env.start_visor();
    let cores = env.wait_starts("core", 2);
    let crash = env
        .records()
        .into_iter()
        .find(|r| r.event() == "exit" && r.0["reason"] == "crash")
        .expect("crash recorded");
    let delay_ns = cores[1].t_ns() - crash.t_ns();
    assert!(delay_ns >= 1_000_000_000, "restarted after {delay_ns} ns");
    env.wait_starts("datanode", 2);
    env.wait_log("supervise: restarting 1/3 in 1 s");
    assert!(env.visor_running());
}

/// An idle core answers the same thing at every poll; the poller passes such an answer on only
/// every 5 s, which must still be enough for the restart counter to go back to 0: a second
/// crash after `restartCounterResetSeconds` of health is restarted, not the end of the budget.
#[test]
fn unchanged_answers_still_reset_the_restart_counter() {
    let mut env = Env::new("reset");
    env.write_config(&quick_config(
        "maxNumberOfRestarts = 1\nrestartsDelaySeconds = 0\nrestartCounterResetSeconds = 1",
    ));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1.0.0", "crash", "");
    env.wait_starts("core", 2);
    env.wait_log("supervise: healthy for 1 s; restart counter reset");
    env.control_write("v1.0.0", "crash", "");
    let cores = env.wait_starts("core", 3);
    assert_eq!(cores.len(), 3);
    assert!(env.visor_running(), "{}", env.log());
    assert!(!env.log().contains("restart budget spent"));
}

#[test]
fn spent_restart_budget_exits_1_with_no_child_left() {
    let mut env = Env::new("budget");
    env.write_config(&quick_config(
        "maxNumberOfRestarts = 2\nrestartsDelaySeconds = 0",
    ));
    env.add_version(Version::new("genesis", "v1.0.0").flags(&["--crash-after", "100ms"]));
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    assert_eq!(env.starts("core").len(), 3);
    assert!(env.log().contains("restart budget spent"));
    assert!(env.live_sims().is_empty());
}

#[test]
fn sigkill_of_visor_takes_the_children_down() {
    let mut env = Env::new("sigkill");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0").with_data_node());
    env.start_visor();
    env.wait_starts("core", 1);
    env.wait_starts("datanode", 1);
    env.signal_visor(libc::SIGKILL);
    let _ = env.visor.as_mut().unwrap().wait();
    wait_until(
        "children gone after SIGKILL of visor",
        Duration::from_secs(2),
        || env.live_sims().is_empty(),
    );
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_timeout() {
    let mut env = Env::new("ignore");
    env.write_config(&quick_config("stopSignalTimeoutSeconds = 1"));
    env.add_version(Version::new("genesis", "v1.0.0").flags(&["--ignore-sigterm"]));
    env.start_visor();
    env.wait_starts("core", 1);
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(env.log().contains("sending SIGKILL to core"));
    let records = env.records();
    assert!(records.iter().any(|r| r.event() == "signal"));
    assert!(!records.iter().any(|r| r.event() == "exit"));
    assert!(env.live_sims().is_empty());
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let mut env = Env::new("second");
    env.write_config(&quick_config("stopSignalTimeoutSeconds = 600"));
    env.add_version(Version::new("genesis", "v1.0.0").flags(&["--ignore-sigterm"]));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.signal_visor(libc::SIGTERM);
    env.wait_log("supervise: sending SIGTERM to core");
    env.signal_visor(libc::SIGINT);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(env
        .log()
        .contains("sending SIGKILL to core (second SIGINT)"));
}

#[test]
fn data_node_restart_passes_the_latest_segment_height() {
    let mut env = Env::new("segment");
    env.write_config(&quick_config(""));
    let once = env.dir.join("crashed-once").display().to_string();
    env.add_version(
        Version::new("genesis", "v1.0.0")
            .flags(&[
                "--crash-after",
                "300ms",
                "--crash-once",
                &once,
                "--segment-height",
                "4242",
            ])
            .with_data_node(),
    );
    env.start_visor();
    let cores = env.wait_starts("core", 2);
    assert_eq!(
        cores[1].args(),
        strings(&[
            "start",
            "--home",
            &env.node_home(),
            "--snapshot.load-from-block-height",
            "4242"
        ])
    );
    let dn_home = env.dir.join("dn").display().to_string();
    let query = &env.starts("segment")[0];
    assert_eq!(
        query.args(),
        strings(&[
            "datanode",
            "network-history",
            "latest-history-segment",
            "--output",
            "json",
            "--home",
            &dn_home
        ])
    );
}

#[test]
fn data_node_restart_without_segments_adds_no_flag() {
    let mut env = Env::new("nosegment");
    env.write_config(&quick_config(""));
    let once = env.dir.join("crashed-once").display().to_string();
    env.add_version(
        Version::new("genesis", "v1.0.0")
            .flags(&[
                "--crash-after",
                "300ms",
                "--crash-once",
                &once,
                "--no-segments",
            ])
            .with_data_node(),
    );
    env.start_visor();
    let cores = env.wait_starts("core", 2);
    assert_eq!(
        cores[1].args(),
        strings(&["start", "--home", &env.node_home()])
    );
    env.wait_log("no history segments");
}

#[test]
fn reload_applies_a_valid_edit_and_keeps_the_old_config_on_a_broken_one() {
    let mut env = Env::new("reload");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env.start_visor();
    env.wait_log("rpc: core is answering");

    // A valid edit: no restarts allowed any more.
    env.write_config(&quick_config("maxNumberOfRestarts = 0"));
    env.wait_log("config: configuration reloaded");
    // A broken edit is refused with one error naming the key; the previous config stays.
    env.write_config(&quick_config(
        "maxNumberOfRestarts = 0\nmaxNumberOfRestartz = 5",
    ));
    env.wait_log("maxNumberOfRestartz");
    assert!(env.log().contains("keeping the previous configuration"));
    // SIGHUP re-reads the (still broken) file and reports it again.
    env.signal_visor(libc::SIGHUP);
    wait_until("second reload error after SIGHUP", DEADLINE, || {
        env.log()
            .matches("keeping the previous configuration")
            .count()
            == 2
    });
    // The kept configuration (no restarts) decides what a crash does.
    env.control_write("v1.0.0", "crash", "");
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    assert_eq!(env.starts("core").len(), 1);
    assert!(env.log().contains("restart budget spent"));
}

#[test]
fn core_that_never_answers_exhausts_the_first_connection_budget() {
    let mut env = Env::new("noanswer");
    env.write_config(&quick_config("maxNumberOfFirstConnectionRetries = 1"));
    env.add_version(Version::new("genesis", "v1.0.0").flags(&["--no-rpc"]));
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    let log = env.log();
    assert!(
        log.contains(&format!("core not answering on {}", env.socket().display())),
        "{log}"
    );
    assert!(env.live_sims().is_empty());
}

/// The pids a simulator recorded for `event` (`setsid-child`, `orphan-child`).
fn left_pids(env: &Env, event: &str) -> Vec<u32> {
    env.records()
        .iter()
        .filter(|r| r.event() == event)
        .filter_map(|r| r.0["child"].as_u64())
        .map(|p| p as u32)
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn helpers_of_the_core_that_left_its_group_are_stopped_with_it() {
    let mut env = Env::new("leavers");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1").flags(&["--leave-session"]));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let helpers = wait_for("the core's two helpers", DEADLINE, || {
        let mut pids = left_pids(&env, "setsid-child");
        pids.extend(left_pids(&env, "orphan-child"));
        (pids.len() == 2).then_some(pids)
    });
    // The orphan was re-parented to Visor, its subreaper, not to init.
    assert_eq!(parent_of(helpers[1]), Some(env.visor_pid() as u32));
    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for pid in &helpers {
        // Stopped with the core, and reaped by Visor: not even a zombie is left.
        wait_until(&format!("helper {pid} to be gone"), DEADLINE, || {
            parent_of(*pid).is_none()
        });
    }
    let log = env.log();
    assert!(log.contains("descends from process group"), "{log}");
    // The new core's helpers go when Visor stops.
    let helpers = wait_for("the new core's helpers", DEADLINE, || {
        let mut pids = left_pids(&env, "setsid-child");
        pids.extend(left_pids(&env, "orphan-child"));
        (pids.len() == 4).then_some(pids)
    });
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    for pid in &helpers[2..] {
        wait_until(&format!("helper {pid} to be gone"), DEADLINE, || {
            !alive(*pid)
        });
    }
}
