//! `[backup]` inside `visor run`, with the real binary, the simulator and a folder of fake node
//! data under the test's own folder: the backup taken at the upgrade block (identical, named
//! `FROM-to-TO-hHEIGHT-TIME`, `keep` applied over several upgrades), a failing backup with
//! `onFailure = "stop"` that keeps the binaries stopped until a reload fixes it, a SIGTERM
//! mid-backup that leaves no half-made copy, the leftover of a killed Visor removed at start,
//! the backup and the hooks at an operator's `visor switch`, and a problem of `[backup]`
//! reported at start while the node still starts.
//!
//! The clone path (`FICLONE` on a loop-mounted XFS with reflink, as root) is tested by the
//! engine's own unit tests (`src/backup/tests.rs`), skipped with the reason where the machine
//! does not allow it; here the backups are copies.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::notify::notify_listener;
use crate::common::*;
use zeta_visor::backup::{BackupName, Reason};

/// Fills `data` with a small tree of node data: files with contents and modes, a nested
/// folder, an empty file and a symbolic link.
fn fake_node_data(data: &Path) {
    fs::create_dir_all(data.join("state/blocks")).unwrap();
    fs::write(data.join("state/CURRENT"), "MANIFEST-000042\n").unwrap();
    fs::write(data.join("state/blocks/000001.sst"), vec![7u8; 100_000]).unwrap();
    fs::write(data.join("state/blocks/000002.sst"), b"second").unwrap();
    fs::write(data.join("state/LOCK"), b"").unwrap();
    fs::set_permissions(
        data.join("state/blocks/000002.sst"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("blocks/000001.sst", data.join("state/latest")).unwrap();
}

/// Every entry below `root`: its path relative to `root`, its kind and mode, and its content
/// (a file's bytes, a link's target).
fn tree(root: &Path) -> Vec<(PathBuf, String, u32, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                let bytes = target.as_os_str().as_encoded_bytes().to_vec();
                entries.push((relative, "link".into(), 0, bytes));
            } else if meta.is_dir() {
                entries.push((relative, "folder".into(), mode, Vec::new()));
                stack.push(path);
            } else {
                entries.push((relative, "file".into(), mode, fs::read(&path).unwrap()));
            }
        }
    }
    entries.sort();
    entries
}

/// The backups in `folder` (entries named as a backup is), oldest first by their time.
fn backups(folder: &Path) -> Vec<(String, BackupName)> {
    let mut found: Vec<(String, BackupName)> = fs::read_dir(folder)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            BackupName::parse(&name).map(|parsed| (name, parsed))
        })
        .collect();
    found.sort_by_key(|(name, parsed)| (parsed.started, name.clone()));
    found
}

/// The `.visor-tmp-backup-*` entries of `folder`.
fn half_made(folder: &Path) -> Vec<String> {
    fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".visor-tmp-backup-"))
                .collect()
        })
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `[backup]` of `data` into `folder`, plus `extra` keys of that table.
fn backup_config(data: &Path, folder: &Path, extra: &str) -> String {
    format!(
        "[backup]\nenabled = true\npaths = [\"{}\"]\nfolder = \"{}\"\n{extra}\n",
        data.display(),
        folder.display()
    )
}

/// A hook that appends what it was told to `trace.txt`.
fn tracing_hook(env: &Env, name: &str) -> PathBuf {
    let trace = env.dir.join("trace.txt");
    script(
        env,
        name,
        &format!(
            "echo \"$VISOR_EVENT reason=$VISOR_REASON release=$VISOR_RELEASE from=$VISOR_FROM previous=$VISOR_PREVIOUS_RELEASE height=${{VISOR_HEIGHT-unset}} backup=${{VISOR_BACKUP-unset}}\" >> '{}'",
            trace.display()
        ),
    )
}

fn trace(env: &Env) -> Vec<String> {
    fs::read_to_string(env.dir.join("trace.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A metric's sample value in the metrics file, if any.
fn metric(file: &Path, name: &str) -> Option<String> {
    let prefix = format!("{name} ");
    fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
}

/// `backup` of `HOME/.visor/status.json`.
fn status_backup(env: &Env) -> serde_json::Value {
    fs::read_to_string(env.home.join(".visor/status.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .map(|status| status["backup"].clone())
        .unwrap_or_default()
}

#[test]
fn a_backup_is_taken_at_each_upgrade_identical_named_and_kept_to_keep() {
    let mut env = Env::new("bkupgrade");
    let data = env.dir.join("data");
    let folder = env.dir.join("backups");
    fake_node_data(&data);
    // Two older backups and an entry of the operator's, which keep never touches.
    fs::create_dir_all(folder.join("v0-to-v1-h10-20200101T000000Z/x")).unwrap();
    fs::create_dir_all(folder.join("v0.5-to-v1-h20-20210101T000000Z/x")).unwrap();
    fs::write(folder.join("notes.txt"), "mine").unwrap();
    env.write_config(&quick_config(&backup_config(&data, &folder, "keep = 2")));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.add_version(Version::new("v3", "v3"));
    let started = unix_now();
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@55");
    env.control_write("v1", "ready", "");
    assert_eq!(env.wait_starts("core", 2)[1].version(), "v2");
    env.wait_log("backup: completed in");

    let made = backups(&folder);
    let names: Vec<&str> = made.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), 2, "keep = 2: {names:?}");
    assert_eq!(names[0], "v0.5-to-v1-h20-20210101T000000Z", "{names:?}");
    let (name, parsed) = &made[1];
    assert_eq!(
        (parsed.from.as_str(), parsed.to.as_str(), parsed.reason),
        ("v1", "v2", Reason::Upgrade { height: 55 }),
        "{name}"
    );
    assert!(
        (started - 1..=unix_now() + 1).contains(&parsed.started),
        "{name}: the time in the name is the backup's start, UTC"
    );
    // Each path at its absolute place below the backup's root, identical.
    let copy = folder.join(name).join(data.strip_prefix("/").unwrap());
    assert_eq!(tree(&copy), tree(&data));
    assert_eq!(
        fs::read_to_string(folder.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        fs::metadata(&folder).unwrap().mode() & 0o777,
        0o755,
        "an existing folder keeps its mode"
    );
    assert!(half_made(&folder).is_empty());
    let log = env.log();
    let backup_at = log.find("upgrade: backing up the node's data").unwrap();
    let switch_at = log.find("upgrade: switching to v2").unwrap();
    assert!(backup_at < switch_at, "the backup comes before the switch");
    assert!(log.contains("backup: removed an older backup (keep = 2)"));

    // A second upgrade: its backup and the first are the two kept.
    fs::write(data.join("state/CURRENT"), "MANIFEST-000043\n").unwrap();
    env.control_write("v2", "announce", "v3@80");
    env.control_write("v2", "ready", "");
    assert_eq!(env.wait_starts("core", 3)[2].version(), "v3");
    wait_until("the second backup", DEADLINE, || {
        backups(&folder)
            .iter()
            .any(|(_, parsed)| parsed.reason == Reason::Upgrade { height: 80 })
    });
    let made = backups(&folder);
    let kept: Vec<(&str, &str)> = made
        .iter()
        .map(|(_, p)| (p.from.as_str(), p.to.as_str()))
        .collect();
    assert_eq!(kept, [("v1", "v2"), ("v2", "v3")]);
    let copy = folder
        .join(&made[1].0)
        .join(data.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(copy.join("state/CURRENT")).unwrap(),
        "MANIFEST-000043\n"
    );
}

#[test]
fn a_failing_backup_with_stop_keeps_the_binaries_stopped_until_a_reload_fixes_it() {
    let mut env = Env::new("bkfail");
    let data = env.dir.join("data");
    let folder = env.dir.join("backups");
    let missing = env.dir.join("not-there");
    fake_node_data(&data);
    let metrics = env.dir.join("visor.prom");
    let (socket, notifications) = notify_listener(&env);
    let config = |path: &Path| {
        quick_config(&format!(
            "metricsFile = \"{}\"\n{}",
            metrics.display(),
            backup_config(path, &folder, "")
        ))
    };
    env.write_config(&config(&missing));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor_with(&[("NOTIFY_SOCKET", &socket.display().to_string())]);
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@55");
    env.control_write("v1", "ready", "");
    env.wait_log("upgrade: the backup before the switch to v2 failed");
    let log = env.log();
    assert!(
        log.contains(&format!(
            "backup.paths[0]: {} does not exist",
            missing.display()
        )),
        "{log}"
    );
    assert!(log.contains("the binaries stay stopped and current is not moved"));
    // Stopped, and said so everywhere.
    let mut statuses = Vec::new();
    wait_until("STATUS= naming the failed backup", DEADLINE, || {
        statuses.extend(notifications.try_iter().map(|(_, m)| m));
        statuses.iter().any(|m| {
            m.starts_with("STATUS=upgrading to v2: backup failed, trying again; backup failed: ")
        })
    });
    // status.json is written right after STATUS= is sent.
    wait_until("status.json naming the failed backup", DEADLINE, || {
        status_backup(&env)["failed"].is_string()
    });
    let (_, status, _) = env.run_visor_command(&["status"]);
    assert!(status.contains("backup:           FAILED "), "{status}");
    wait_until("the metric of the failed backup", DEADLINE, || {
        metric(&metrics, "visor_backup_last_run_successful").as_deref() == Some("0")
    });
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(env.starts("core").len(), 1, "the binaries stay stopped");
    assert!(half_made(&folder).is_empty());

    // The operator fixes [backup]: the reload tries again at once, not a minute later.
    let fixed_at = Instant::now();
    env.write_config(&config(&data));
    let cores = env.wait_starts("core", 2);
    let took = fixed_at.elapsed();
    println!("the upgrade went on {took:?} after config.toml was fixed");
    assert_eq!(cores[1].version(), "v2");
    assert!(
        took < Duration::from_secs(20),
        "the upgrade went on {took:?} after the fix"
    );
    assert_eq!(env.current_target(), Path::new("v2"));
    assert_eq!(backups(&folder).len(), 1);
    wait_until("the metric of the backup", DEADLINE, || {
        metric(&metrics, "visor_backup_last_run_successful").as_deref() == Some("1")
            && metric(&metrics, "visor_backup_last_bytes").is_some()
            && metric(&metrics, "visor_backup_last_success_timestamp_seconds").is_some()
    });
    assert_eq!(status_backup(&env)["failed"], serde_json::Value::Null);
}

#[test]
fn sigterm_during_a_backup_leaves_no_half_made_copy() {
    let mut env = Env::new("bkterm");
    let data = env.dir.join("data");
    let folder = env.dir.join("backups");
    // Enough files that the copy takes a while (each costs a few system calls and the start
    // of its writeback), few enough to be made quickly.
    for dir in 0..30 {
        let sub = data.join(format!("d{dir:03}"));
        fs::create_dir_all(&sub).unwrap();
        for file in 0..50 {
            fs::write(sub.join(format!("f{file:03}")), b"x").unwrap();
        }
    }
    env.write_config(&quick_config(&backup_config(&data, &folder, "")));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@55");
    env.control_write("v1", "ready", "");
    wait_until("the half-made copy", DEADLINE, || {
        !half_made(&folder).is_empty()
    });
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(
        half_made(&folder).is_empty(),
        "left: {:?}",
        half_made(&folder)
    );
    assert!(backups(&folder).is_empty(), "no backup completed");
    let log = env.log();
    assert!(
        log.contains("backup: stopping the backup under way"),
        "{log}"
    );
    assert!(log.contains("was removed"), "{log}");
    assert_eq!(env.current_target(), Path::new("genesis"));
}

#[test]
fn a_half_made_backup_of_a_dead_process_is_removed_at_start() {
    let mut env = Env::new("bkleft");
    let data = env.dir.join("data");
    let folder = env.dir.join("backups");
    fake_node_data(&data);
    // A pid that ran and is gone, and one that runs (this test).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let leftover = folder.join(format!(".visor-tmp-backup-{dead}-0"));
    fs::create_dir_all(leftover.join("var/lib/zeta")).unwrap();
    fs::write(leftover.join("var/lib/zeta/file"), "half").unwrap();
    // A copy of a read-only folder, as a backup makes one.
    fs::set_permissions(
        leftover.join("var/lib/zeta"),
        fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    let alive = folder.join(format!(".visor-tmp-backup-{}-0", std::process::id()));
    fs::create_dir_all(&alive).unwrap();
    env.write_config(&quick_config(&backup_config(&data, &folder, "")));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.wait_log("backup: removed the half-made copy of an interrupted backup");
    assert!(!leftover.exists());
    assert!(alive.exists(), "a process that runs keeps its copy");
}

#[test]
fn an_online_switch_takes_the_backup_and_runs_the_hooks_with_reason_switch() {
    let mut env = Env::new("bkswitch");
    let data = env.dir.join("data");
    let folder = env.dir.join("backups");
    fake_node_data(&data);
    let before = tracing_hook(&env, "before.sh");
    let after = tracing_hook(&env, "after.sh");
    env.write_config(&quick_config(&format!(
        "[hooks]\nbeforeSwitch = [\"{}\"]\nafterUpgrade = [\"{}\"]\n{}",
        before.display(),
        after.display(),
        backup_config(&data, &folder, "")
    )));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    env.add_version(Version::new("v1.1.0", "v1.1.0"));
    // A variable that does not apply to a hook's run is unset, even when Visor has it.
    env.start_visor_with(&[("VISOR_HEIGHT", "99")]);
    env.wait_log("rpc: core is answering");
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("backing up the node's data"), "{stdout}");
    env.wait_log("hook afterUpgrade: finished");
    let made = backups(&folder);
    assert_eq!(made.len(), 1, "{made:?}");
    let (name, parsed) = &made[0];
    assert_eq!(
        (parsed.from.as_str(), parsed.to.as_str(), parsed.reason),
        ("v1.0.0", "v1.0.1", Reason::Switch)
    );
    assert!(name.starts_with("v1.0.0-to-v1.0.1-switch-"), "{name}");
    let path = folder.join(name).display().to_string();
    assert_eq!(
        trace(&env),
        [
            format!("beforeSwitch reason=switch release=v1.0.1 from=v1.0.0 previous=v1.0.0 height=unset backup={path}"),
            format!("afterUpgrade reason=switch release=v1.0.1 from=v1.0.0 previous=v1.0.0 height=unset backup={path}"),
        ]
    );
    assert_eq!(env.current_target(), Path::new("v1.0.1"));
    // And at an upgrade block: reason upgrade, the height, the upgrade's backup.
    env.control_write("v1.0.1", "announce", "v1.1.0@90");
    env.control_write("v1.0.1", "ready", "");
    wait_until("the hooks of the upgrade", DEADLINE, || {
        trace(&env).len() == 4
    });
    let upgrade = backups(&folder)
        .into_iter()
        .find(|(_, parsed)| parsed.reason == Reason::Upgrade { height: 90 })
        .expect("the upgrade's backup");
    let path = folder.join(&upgrade.0).display().to_string();
    assert_eq!(
        trace(&env)[2..],
        [
            format!("beforeSwitch reason=upgrade release=v1.1.0 from=v1.0.1 previous=v1.0.1 height=90 backup={path}"),
            format!("afterUpgrade reason=upgrade release=v1.1.0 from=v1.0.1 previous=v1.0.1 height=90 backup={path}"),
        ]
    );
}

#[test]
fn a_failing_backup_at_an_online_switch_starts_the_old_version_again() {
    let mut env = Env::new("bkswfail");
    let folder = env.dir.join("backups");
    env.write_config(&quick_config(&backup_config(
        &env.dir.join("not-there"),
        &folder,
        "",
    )));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("not switched to v1.0.1: the backup failed")
            && stderr.contains("v1.0.0 was started again"),
        "{stderr}"
    );
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v1.0.0");
    assert_eq!(env.current_target(), Path::new("genesis"));
}

#[test]
fn a_problem_of_backup_at_start_is_reported_at_once_and_the_node_still_starts() {
    let mut env = Env::new("bkproblem");
    let data = env.dir.join("data");
    fake_node_data(&data);
    let folder = env.dir.join("disk/backups");
    let metrics = env.dir.join("visor.prom");
    let (socket, notifications) = notify_listener(&env);
    env.write_config(&quick_config(&format!(
        "metricsFile = \"{}\"\n{}",
        metrics.display(),
        backup_config(&data, &folder, "")
    )));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor_with(&[("NOTIFY_SOCKET", &socket.display().to_string())]);
    let problem = format!(
        "backup.folder: {} does not exist, nor does its parent {}",
        folder.display(),
        folder.parent().unwrap().display()
    );
    env.wait_log(&format!("backup: {problem}"));
    let mut messages = Vec::new();
    wait_until("READY=1 and STATUS= with the problem", DEADLINE, || {
        messages.extend(notifications.try_iter().map(|(_, m)| m));
        messages.iter().any(|m| m == "READY=1")
            && messages
                .iter()
                .any(|m| m.starts_with("STATUS=running v1; backup problem: backup.folder: "))
    });
    wait_until("the problem metric", DEADLINE, || {
        metric(&metrics, "visor_backup_config_problems").as_deref() == Some("1")
    });
    let status = wait_for("visor status naming the problem", DEADLINE, || {
        let (code, status, _) = env.run_visor_command(&["status"]);
        (code == 0 && status.contains(&format!("backup:           PROBLEM {problem}")))
            .then_some(status)
    });
    assert!(status.contains("last error:"), "{status}");
    assert_eq!(env.starts("core").len(), 1, "the node runs");
    // The disk comes back; a reload (SIGHUP) checks again and the problem is gone.
    fs::create_dir_all(folder.parent().unwrap()).unwrap();
    env.signal_visor(libc::SIGHUP);
    env.wait_log("backup: [backup] checked, no problem found");
    wait_until("the metric cleared", DEADLINE, || {
        metric(&metrics, "visor_backup_config_problems").as_deref() == Some("0")
    });
    let status = wait_for("visor status without the problem", DEADLINE, || {
        let (_, status, _) = env.run_visor_command(&["status"]);
        (!status.contains("PROBLEM")).then_some(status)
    });
    assert!(
        status.contains("backup:           on; backups will be"),
        "{status}"
    );
    assert!(status.contains("resolved error:"), "{status}");
}
