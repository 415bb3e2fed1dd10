//! Protocol upgrades end to end with the simulator (visor(1), UPGRADE SEQUENCE): the core
//! announces an accepted release, later says it is ready, and Visor swaps the binaries.

use crate::common::*;
use std::fs;
use std::path::Path;

const SNAPSHOT: &str = "--snapshot.load-from-block-height";

fn started_env(name: &str, extra_config: &str) -> Env {
    let mut env = Env::new(name);
    env.write_config(&quick_config(extra_config));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env
}

/// Announces `tag` at `height` to the running `from` core and makes it ready.
fn announce_and_ready(env: &Env, from: &str, tag: &str, height: u64) {
    env.control_write(from, "announce", &format!("{tag}@{height}"));
    env.control_write(from, "ready", "");
}

fn core_versions(env: &Env) -> Vec<String> {
    env.starts("core")
        .iter()
        .map(|r| r.version().to_string())
        .collect()
}

#[test]
fn upgrade_with_a_prepared_folder() {
    let env = started_env("prepared", "");
    env.add_version(Version::new("v2", "v2"));
    announce_and_ready(&env, "v1", "v2", 120);
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(
        cores[1].args(),
        strings(&["start", "--home", &env.node_home(), SNAPSHOT, "120"])
    );
    assert_eq!(env.current_target(), Path::new("v2"));
    let log = env.log();
    for step in [
        "upgrade: release v2 accepted at block 120",
        "upgrade: folder for v2 is ready",
        "upgrade: core stopped at block 120 and is ready for v2",
        "upgrade: binaries stopped",
        "upgrade: switching to v2",
        "upgrade: current now points at v2",
    ] {
        assert!(log.contains(step), "log lacks {step:?}");
    }
    env.wait_log("release=v2");
}

#[test]
fn an_upgrade_folder_others_may_write_is_not_ready_until_fixed() {
    let env = started_env("writable", "");
    let folder = env.add_version(Version::new("v2", "v2"));
    fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    announce_and_ready(&env, "v1", "v2", 120);
    env.wait_log("upgrade: binaries stopped for v2 but its folder is not ready");
    let log = env.log();
    let complaint = format!(
        "{}: the version folder is writable by its group and every user (mode 0777)",
        folder.display()
    );
    assert!(log.contains(&complaint), "{log}");
    assert!(log.contains(&format!("chmod go-w {}", folder.display())));
    assert_eq!(core_versions(&env), ["v1"]);
    assert_eq!(env.current_target(), Path::new("genesis"));

    fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("v2"));
}

#[test]
fn upgrade_with_an_upgrade_folders_mapping() {
    let env = started_env("mapped", "[upgradeFolders]\n\"v2\" = \"second\"\n");
    env.add_version(Version::new("second", "v2"));
    announce_and_ready(&env, "v1", "v2", 7);
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("second"));
    assert!(!env.home.join("v2").exists());
}

#[test]
fn three_upgrades_in_a_row() {
    let env = started_env("three", "");
    let mut from = "v1".to_string();
    for (i, tag) in ["v2", "v3", "v4"].into_iter().enumerate() {
        env.add_version(Version::new(tag, tag));
        env.wait_listening(i + 1);
        announce_and_ready(&env, &from, tag, 100 * (i as u64 + 1));
        let cores = env.wait_starts("core", i + 2);
        assert_eq!(cores[i + 1].version(), tag);
        assert_eq!(env.current_target(), Path::new(tag));
        from = tag.to_string();
    }
    assert_eq!(core_versions(&env), strings(&["v1", "v2", "v3", "v4"]));
}

#[test]
fn version_mismatch_is_refused_with_current_untouched_until_fixed() {
    let mut env = started_env("mismatch", "");
    let folder = env.add_version(Version::new("v2", "v9"));
    announce_and_ready(&env, "v1", "v2", 50);
    env.wait_log("reports version v9, expected v2");
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(env.starts("core").len(), 1);
    assert!(env.visor_running());
    // The operator puts the right binary in place; the upgrade then completes.
    env.write_wrapper(&folder, "v2", &[]);
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("v2"));
}

#[test]
fn missing_folder_keeps_binaries_stopped_until_it_is_created() {
    let mut env = started_env("missing", "");
    announce_and_ready(&env, "v1", "v2", 60);
    env.wait_log("upgrade: binaries stopped for v2 but its folder is not ready");
    assert!(env.live_sims().is_empty(), "old binaries must stay stopped");
    assert!(env.visor_running());
    assert_eq!(env.current_target(), Path::new("genesis"));
    // Built in a temporary name and renamed into place, as an operator script should.
    let temp = env.home.join(".build-v2");
    env.add_version(Version::new(".build-v2", "v2"));
    fs::rename(&temp, env.home.join("v2")).unwrap();
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(
        cores[1].args(),
        strings(&["start", "--home", &env.node_home(), SNAPSHOT, "60"])
    );
    assert_eq!(
        env.starts("core").len(),
        2,
        "the old version was never restarted"
    );
}

#[test]
fn hostile_tags_are_refused_and_nothing_is_created_outside_home() {
    let long = "a".repeat(200);
    for tag in ["../x", "/abs", "..", "", long.as_str(), "v2\u{0}x"] {
        let env = started_env("hostile", "");
        let before: Vec<_> = fs::read_dir(&env.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        announce_and_ready(&env, "v1", tag, 5);
        env.wait_log("not a safe folder name");
        assert_eq!(env.starts("core").len(), 1, "{tag:?}");
        assert_eq!(env.current_target(), Path::new("genesis"));
        let after: Vec<_> = fs::read_dir(&env.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(before, after, "{tag:?}: something was created beside HOME");
        assert!(!Path::new("/abs").exists());
        assert_eq!(
            env.log().matches("not a safe folder name").count(),
            1,
            "{tag:?}"
        );
    }
}

#[test]
fn the_zeta_release_tag_field_is_understood() {
    let mut env = Env::new("zetatag");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1").flags(&["--tag-field", "ZetaReleaseTag"]));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    announce_and_ready(&env, "v1", "v2", 9);
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
}

#[test]
fn ready_for_the_running_release_does_not_loop() {
    let env = started_env("samerel", "");
    announce_and_ready(&env, "v1", "v1", 5);
    env.wait_log("which is already running; ignoring");
    // A reload takes at least one watcher period (1 s, so about 20 polls at 50 ms): a
    // progress marker that does not depend on a sleep.
    env.write_config(&quick_config("maxNumberOfRestarts = 4"));
    env.wait_log("config: configuration reloaded");
    assert_eq!(env.starts("core").len(), 1);
    assert_eq!(env.log().matches("already running").count(), 1);
}

#[test]
fn status_shows_the_running_folder_and_the_pending_release() {
    let env = started_env("status", "");
    env.control_write("v1", "announce", "v2@300");
    env.wait_log("upgrade: release v2 accepted at block 300");
    let (code, stdout, stderr) = env.run_visor_command(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["running_release"], "v1");
    assert!(status["current"].as_str().unwrap().ends_with("/genesis"));
    assert_eq!(status["core"]["accepted_release"], "v2");
    assert_eq!(status["core"]["upgrade_height"], 300);
    assert_eq!(status["core"]["ready_to_upgrade"], false);
    assert_eq!(status["pending"]["tag"], "v2");
    assert_eq!(status["pending"]["folder_ready"], false);
    assert!(status["pending"]["folder"]
        .as_str()
        .unwrap()
        .ends_with("/home/v2"));

    // check reports the pending release's missing folder.
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("upgrade v2 accepted at block 300"),
        "{stdout}"
    );

    env.add_version(Version::new("v2", "v2"));
    let (_, stdout, _) = env.run_visor_command(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["pending"]["folder_ready"], true);
    let (code, stdout, _) = env.run_visor_command(&["status"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("pending upgrade:  v2 at block 300"),
        "{stdout}"
    );
}

#[test]
fn a_visor_killed_before_the_new_version_answers_restarts_it_from_the_snapshot() {
    let mut env = started_env("unfinished", "");
    // v2 loads its snapshot "forever": it never answers RPC.
    env.add_version(Version::new("v2", "v2").flags(&["--no-rpc"]));
    announce_and_ready(&env, "v1", "v2", 120);
    env.wait_starts("core", 2);
    assert!(env.home.join(".visor/upgrade").is_file());
    env.signal_visor(libc::SIGKILL);
    let _ = env.visor.as_mut().unwrap().wait();
    wait_until("v2 gone with visor", DEADLINE, || {
        env.live_sims().is_empty()
    });

    env.start_visor();
    let cores = env.wait_starts("core", 3);
    assert_eq!(cores[2].version(), "v2");
    assert_eq!(
        cores[2].args(),
        strings(&["start", "--home", &env.node_home(), SNAPSHOT, "120"])
    );
    env.wait_log("home: the upgrade to v2 had not finished; starting it from block 120");
}

#[test]
fn the_upgrade_mark_is_removed_once_the_new_version_answers() {
    let env = started_env("markgone", "");
    env.add_version(Version::new("v2", "v2"));
    announce_and_ready(&env, "v1", "v2", 5);
    env.wait_log("upgrade: v2 is answering");
    wait_until("upgrade mark removed", DEADLINE, || {
        !env.home.join(".visor/upgrade").exists()
    });
}
