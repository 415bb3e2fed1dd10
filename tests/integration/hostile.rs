//! Defects a hostile review found in the supervisor's decisions, each driven through the real
//! `visor` against the simulator: a core that flips its answer at every poll, helpers a
//! crashing core leaves in its process group, an upgrade folder changed after its check, and
//! a stop while an install is retrying.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::fake_github::{FakeGithub, Reply};
use crate::common::*;

fn lookups(github: &FakeGithub) -> usize {
    github
        .requests()
        .iter()
        .filter(|r| r.path.contains("/releases/tags/"))
        .count()
}

fn threads(pid: i32) -> usize {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn leftovers(home: &Path) -> Vec<String> {
    fs::read_dir(home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".visor-tmp-"))
        .collect()
}

/// Before: every flip made a new pending upgrade with fresh attempts, and an install worker
/// each time (13,000 in 12 s, then "failed to spawn thread"; 195 lookups in 20 s).
#[test]
fn a_flapping_core_gets_a_handful_of_lookups_and_constant_threads() {
    let github = FakeGithub::start();
    let mut env = Env::new("flap");
    env.write_config(&quick_config(&format!(
        "[autoInstall]\nenabled = true\napiUrl = \"{}\"",
        github.url()
    )));
    env.add_version(Version::new("genesis", "v1").flags(&["--flap", "vA@100,vB@200,none"]));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let pid = env.visor_pid();
    let mut peak = 0;
    // At least 60 changes of mind (the upgrade poll is 50 ms).
    wait_until("60 flips of the accepted release", DEADLINE, || {
        peak = peak.max(threads(pid));
        env.log()
            .matches("is no longer accepted by the core")
            .count()
            >= 20
    });
    assert!(env.visor_running(), "{}", env.log());
    let n = lookups(&github);
    assert!(n <= 2, "{n} release lookups:\n{}", env.log());
    let installs = env.log().matches("upgrade: installing").count();
    assert!(
        (1..=2).contains(&installs),
        "{installs} installs:\n{}",
        env.log()
    );
    assert!(peak <= 8, "peak {peak} threads");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(leftovers(&env.home).is_empty());
}

/// Before: helpers forked by a core that then crashed outlived it (three orphans after three
/// crashes); now the group gets SIGTERM (then SIGKILL) before the restart.
#[test]
fn helpers_of_a_crashed_core_are_stopped_before_the_restart() {
    let mut env = Env::new("helpers");
    env.write_config(&quick_config(""));
    let folder = env.add_version(Version::new("genesis", "v1"));
    let helpers = env.dir.join("helpers.txt");
    // The wrapper leaves a helper in the core's process group, one that ignores SIGTERM.
    let script = fs::read_to_string(folder.join("zeta")).unwrap().replacen(
        "exec ",
        &format!(
            "sh -c 'trap \"\" TERM; sleep 300' &\necho $! >> '{}'\nexec ",
            helpers.display()
        ),
        1,
    );
    fs::write(folder.join("zeta"), script).unwrap();
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let first: u32 = fs::read_to_string(&helpers)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(first));
    env.control_write("v1", "crash", "");
    env.wait_starts("core", 2);
    assert!(!alive(first), "helper {first} outlived its crashed core");
    let log = env.log();
    assert!(log.contains("sending them SIGTERM"), "{log}");
    assert!(
        log.contains("sending SIGKILL to the processes left"),
        "{log}"
    );
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    for line in fs::read_to_string(&helpers).unwrap().lines() {
        let pid: u32 = line.trim().parse().unwrap();
        assert!(!alive(pid), "helper {pid} outlived Visor");
    }
}

/// Before: a folder removed after its check was switched to anyway, the new version could not
/// start, and every later start exited 78 on the dangling link. Now the folder is compared
/// with what was checked, checked again, and waited for like a missing one.
#[test]
fn a_folder_removed_after_its_check_is_waited_for_not_switched_to() {
    let mut env = Env::new("changed");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let v2 = env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@77");
    env.wait_log("upgrade: folder for v2 is ready");
    let aside = env.dir.join("v2-aside");
    fs::rename(&v2, &aside).unwrap();
    env.control_write("v1", "ready", "");
    env.wait_log("changed since it was checked");
    env.wait_log("upgrade: binaries stopped for v2 but its folder is not ready");
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert!(env.visor_running());
    fs::rename(&aside, &v2).unwrap();
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("v2"));
}

/// A binary replaced after the check by one of another version is caught the same way.
#[test]
fn a_binary_replaced_after_its_check_is_checked_again() {
    let mut env = Env::new("replaced");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let v2 = env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@77");
    env.wait_log("upgrade: folder for v2 is ready");
    env.write_wrapper(&v2, "v9", &[]);
    env.control_write("v1", "ready", "");
    env.wait_log("changed since it was checked");
    env.wait_log("reports version v9, expected v2");
    assert_eq!(env.current_target(), Path::new("genesis"));
    env.write_wrapper(&v2, "v2", &[]);
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
}

/// Before: a SIGTERM while the install waited to retry a download left its
/// `.visor-tmp-install-*` folder until the next start.
#[test]
fn a_stop_during_an_install_retry_leaves_no_half_made_folder() {
    let github = FakeGithub::start();
    let mut env = Env::new("stopinst");
    env.write_config(&quick_config(&format!(
        "[autoInstall]\nenabled = true\nrequireChecksum = false\napiUrl = \"{}\"",
        github.url()
    )));
    env.add_version(Version::new("genesis", "v1"));
    let name = zeta_visor::install::asset_file_name("zeta-{os}-{arch}.zip", "v2").unwrap();
    github.route(
        "/repos/zeta-protocol/zeta/releases/tags/v2",
        vec![Reply::json(
            serde_json::json!({
                "tag_name": "v2",
                "assets": [{
                    "name": name,
                    "url": format!("{}/assets/1", github.url()),
                    "browser_download_url": format!("{}/download/{name}", github.url()),
                    "content_type": "application/zip",
                    "size": 100,
                }]
            })
            .to_string(),
        )],
    );
    github.route(
        &format!("/download/{name}"),
        vec![Reply::status(503, "Service Unavailable")],
    );
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@77");
    env.wait_log("failed, retrying");
    assert!(!leftovers(&env.home).is_empty(), "the install is under way");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(Duration::from_secs(20)), 0);
    assert!(
        leftovers(&env.home).is_empty(),
        "{:?}\n{}",
        leftovers(&env.home),
        env.log()
    );
}
