//! One Visor per home: the lock in `HOME/.visor/`, a node left by a Visor that was killed,
//! `visor restart` and `visor switch` with and without a running Visor, and commands whose
//! standard output is closed or full.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

fn running_env(name: &str) -> Env {
    running_env_of(name, "v1")
}

/// A running Visor whose genesis reports `version`.
fn running_env_of(name: &str, version: &str) -> Env {
    let mut env = Env::new(name);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", version));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env
}

#[test]
fn a_second_visor_on_a_locked_home_exits_at_once_and_touches_nothing() {
    let env = running_env("twice");
    let pid = env.visor_pid();
    // A leftover of a process that is gone: a starting Visor would remove it.
    let leftover = env.home.join(".visor-tmp-install-v9-999999999-0");
    fs::create_dir(&leftover).unwrap();
    let second = Command::new(VISOR)
        .args(["run", "--home"])
        .arg(&env.home)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(leftover.exists(), "the second Visor touched the home");
    assert_eq!(env.starts("core").len(), 1, "never two cores");
    assert_eq!(env.current_target(), Path::new("genesis"));
}

#[test]
fn a_core_left_by_a_killed_visor_is_stopped_before_the_next_starts() {
    let mut env = Env::new("orphan");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1").flags(&["--ignore-sigterm"]));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let first = env.wait_starts("core", 1)[0].pid();
    env.signal_visor(libc::SIGKILL);
    env.wait_visor_gone(DEADLINE);
    // The core ignored the parent-death signal and still runs.
    assert!(alive(first));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let cores = env.wait_starts("core", 2);
    assert!(!alive(first), "the orphaned core {first} still runs");
    let log = env.log();
    assert!(
        log.contains(&format!(
            "the core (pid {first}) started by a Visor that is gone still runs"
        )),
        "{log}"
    );
    // The old core was gone before the new one started: its stop is recorded first.
    assert_eq!(cores.len(), 2);
}

#[test]
fn restart_stops_and_starts_the_core_from_current() {
    let env = running_env("restart");
    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("v1 is running and answering"), "{stdout}");
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v1");
    assert!(!cores[1]
        .args()
        .iter()
        .any(|a| a.contains("snapshot.load-from-block-height")));
}

#[test]
fn restart_without_a_running_visor_is_an_error() {
    let env = Env::new("restartnone");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let (code, _, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no Visor is running"), "{stderr}");
}

#[test]
fn switch_with_a_running_visor_to_a_ready_and_to_a_missing_folder() {
    // v1.0.0 to its patch v1.0.1: a move the version guard allows.
    let env = running_env_of("switch", "v1.0.0");
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    // A missing folder: refused, nothing stopped.
    let (code, _, stderr) = env.run_visor_command(&["switch", "v1.0.2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing was stopped"), "{stderr}");
    assert_eq!(env.starts("core").len(), 1);
    // A ready folder: switched, and the command ends when the new version answers.
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("v1.0.1 is running and answering"),
        "{stdout}"
    );
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v1.0.1");
    assert!(!cores[1]
        .args()
        .iter()
        .any(|a| a.contains("snapshot.load-from-block-height")));
    assert_eq!(env.current_target(), Path::new("v1.0.1"));
}

#[test]
fn switch_without_a_running_visor_moves_current_only_to_a_ready_folder() {
    let env = Env::new("switchoff");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0"));
    fs::create_dir_all(env.home.join(".visor")).unwrap();
    std::os::unix::fs::symlink("genesis", env.home.join("current")).unwrap();
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    env.add_version(Version::new("v1.0.2", "v1.0.9"));
    let (code, _, stderr) = env.run_visor_command(&["switch", "v1.0.2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("reports version v1.0.9"), "{stderr}");
    assert_eq!(env.current_target(), Path::new("genesis"));
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(env.current_target(), Path::new("v1.0.1"));
    assert!(env.starts("core").is_empty(), "no node started");
}

/// Every command, with its stdout a closed pipe and then `/dev/full`.
#[test]
fn commands_never_panic_on_a_closed_or_full_stdout() {
    let env = Env::new("stdout");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let home = env.home.display().to_string();
    let fresh = env.dir.join("fresh").display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["help"],
        vec!["version"],
        vec!["version", "--output", "json"],
        vec!["status", "--home", &home],
        vec!["status", "--output", "json", "--home", &home],
        vec!["check", "--home", &home],
        vec!["init", "--home", &fresh],
        vec!["restart", "--home", &home],
        vec!["switch", "v9", "--home", &home],
        vec!["prepare", "v9", "--home", &home],
    ];
    for args in &commands {
        let _ = fs::remove_dir_all(&fresh);
        // A closed pipe: the reader is gone before the command writes.
        let mut child = Command::new(VISOR)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(134), "{args:?}: {stderr}");
        assert!(output.status.code().is_some(), "{args:?} died by a signal");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");

        let _ = fs::remove_dir_all(&fresh);
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = Command::new(VISOR)
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let code = output.status.code().expect("exited");
        if ["help", "version", "status", "init"].contains(&args[0]) {
            assert_ne!(code, 0, "{args:?}: a full disk is a failure");
            assert!(
                stderr.contains("cannot write to standard output"),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn status_says_whether_visor_runs_and_what_it_does() {
    let mut env = running_env("status");
    let json = |env: &Env| {
        let (code, stdout, stderr) = env.run_visor_command(&["status", "--output", "json"]);
        (
            code,
            serde_json::from_str::<serde_json::Value>(&stdout)
                .unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}")),
        )
    };
    let (code, status) = json(&env);
    assert_eq!(code, 0);
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], env.visor_pid());
    assert_eq!(status["phase"], "running");
    assert_eq!(status["running_release"], "v1");
    assert_eq!(status["children"][0]["process"], "core");
    assert!(status["since"].as_str().unwrap().ends_with('Z'));
    let (_, text, _) = env.run_visor_command(&["status"]);
    assert!(
        text.contains(&format!("running (pid {})", env.visor_pid())),
        "{text}"
    );

    // config.toml broken while Visor runs: everything is still shown, and the problem named.
    env.write_config("maxNumberOfRestarts = \"many\"\n");
    env.wait_log("config: keeping the previous configuration");
    let (code, status) = json(&env);
    assert_eq!(code, 78);
    assert_eq!(status["running"], true);
    assert_eq!(status["core"]["answering"], true);
    assert!(status["config_problems"][0]
        .as_str()
        .unwrap()
        .contains("maxNumberOfRestarts"));
    assert!(status["refused_reload"]
        .as_str()
        .unwrap()
        .contains("maxNumberOfRestarts"));
    env.write_config(&quick_config(""));
    env.wait_log("config: config.toml read; no setting changed");

    // Stopped: not running (exit 3, as LSB's status), and no release claimed to run.
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let (code, status) = json(&env);
    assert_eq!(code, 3);
    assert_eq!(status["running"], false);
    assert_eq!(status["running_release"], serde_json::Value::Null);
    assert_eq!(status["current_release"], "v1");
    let (_, text, _) = env.run_visor_command(&["status"]);
    assert!(text.contains("visor:            not running"), "{text}");
}

#[test]
fn a_visor_killed_outright_reads_as_not_running() {
    let mut env = running_env("killed");
    env.signal_visor(libc::SIGKILL);
    env.wait_visor_gone(DEADLINE);
    let (_, stdout, _) = env.run_visor_command(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["pid"], serde_json::Value::Null);
}

#[test]
fn restart_starts_from_the_run_config_as_it_is_now_and_refuses_a_broken_one() {
    let env = running_env("restartedit");
    let file = env.home.join("genesis/run-config.toml");
    let original = fs::read_to_string(&file).unwrap();
    // A broken run-config: refused, nothing stopped.
    fs::write(
        &file,
        original.replace("[zeta.rpc]", "[zeta.rpc]\n    bogus = 1"),
    )
    .unwrap();
    let (code, _, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bogus") && stderr.contains("nothing was stopped"),
        "{stderr}"
    );
    assert_eq!(env.starts("core").len(), 1);
    // An edited one: the restarted core gets the new arguments.
    let node_home = env.node_home();
    fs::write(
        &file,
        original.replace(
            &format!("\"--home\", \"{node_home}\"]"),
            &format!("\"--home\", \"{node_home}\", \"--edited\"]"),
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].args().last().map(String::as_str), Some("--edited"));
}

/// Without a running Visor, `switch` records the folder before its binary is asked its version
/// and compares it just before it moves `current`: a binary whose `version` edits the folder's
/// run-config while it is checked leaves `current` where it was.
#[test]
fn switch_without_a_running_visor_refuses_a_folder_changed_while_it_was_checked() {
    let env = Env::new("switchchanged");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0"));
    std::os::unix::fs::symlink("genesis", env.home.join("current")).unwrap();
    let folder = env.add_version(Version::new("v1.0.1", "v1.0.1"));
    fs::rename(folder.join("zeta"), folder.join("zeta-real")).unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo '# edited while checked' >> '{}'; fi\nexec '{}' \"$@\"\n",
        folder.join("run-config.toml").display(),
        folder.join("zeta-real").display()
    );
    fs::write(folder.join("zeta"), script).unwrap();
    fs::set_permissions(
        folder.join("zeta"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "the folder for v1.0.1 changed while it was checked ({}: replaced or modified since \
             it was checked); current was not changed",
            folder.join("run-config.toml").display()
        )),
        "{stderr}"
    );
    assert_eq!(env.current_target(), Path::new("genesis"));
}

/// A process started by the test in a group of its own, killed when dropped.
struct Stranger(std::process::Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What status.json records of process `pid` (pid, start time, boot id, uid, executable).
fn identity_of(pid: u32) -> serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start_time: u64 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let exe = fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    serde_json::json!({
        "process": "core",
        "pid": pid,
        "start_time": start_time,
        "boot_id": boot_id.trim(),
        "uid": uid,
        "exe": fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        "exe_device": exe.dev(),
        "exe_inode": exe.ino(),
    })
}

fn plant_status(env: &Env, child: &serde_json::Value) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let folder = env.home.join(".visor");
    let _ = fs::DirBuilder::new().mode(0o700).create(&folder);
    let file = folder.join("status.json");
    fs::write(
        &file,
        serde_json::json!({ "children": [child] }).to_string(),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_recorded_process_of_another_boot_or_executable_is_not_signalled() {
    use std::os::unix::process::CommandExt;
    let mut env = Env::new("identity");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    // Leads its own group, as a node process does, with the pid and start time recorded.
    let stranger = Stranger(
        Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pid = stranger.0.id();
    let real = identity_of(pid);
    let mut other_boot = real.clone();
    other_boot["boot_id"] = "00000000-0000-4000-8000-000000000000".into();
    let mut other_exe = real.clone();
    other_exe["exe_inode"] = (real["exe_inode"].as_u64().unwrap() + 1).into();
    let mut other_uid = real.clone();
    other_uid["uid"] = (real["uid"].as_u64().unwrap() + 1).into();
    for (run, (what, record)) in [
        ("boot id", &other_boot),
        ("executable", &other_exe),
        ("uid", &other_uid),
    ]
    .into_iter()
    .enumerate()
    {
        plant_status(&env, record);
        env.start_visor();
        wait_until("the core to answer", DEADLINE, || {
            env.log().matches("rpc: core is answering").count() > run
        });
        assert!(alive(pid), "a process of another {what} was signalled");
        env.signal_visor(libc::SIGTERM);
        assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    }
    assert!(!env.log().contains("started by a Visor that is gone"));
    // The very same record with every field its own: stopped.
    plant_status(&env, &real);
    env.start_visor();
    env.wait_log(&format!(
        "the core (pid {pid}) started by a Visor that is gone still runs"
    ));
    wait_until("the recorded process to be stopped", DEADLINE, || {
        !alive(pid)
    });
}
