//! `visor run` against inputs a hostile review found: a GitHub token in Visor's environment
//! that children must not inherit, and a config.toml replaced by a FIFO. Each test starts the
//! real binary against the simulator and polls with deadlines.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

/// Makes the `zeta` wrapper of `folder` write its environment to
/// `<test dir>/env-<label>-<first arg>-<pid>` before it execs the simulator.
fn record_environment(env: &Env, folder: &Path, label: &str) {
    let path = folder.join("zeta");
    let script = fs::read_to_string(&path).unwrap();
    let (shebang, rest) = script.split_once('\n').unwrap();
    let record = format!(
        "{shebang}\nenv > '{}/env-{label}-'\"$1\"'-'$$\n{rest}",
        env.dir.display()
    );
    let temp = folder.join(".zeta.env.tmp");
    fs::write(&temp, record).unwrap();
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&temp, &path).unwrap();
}

/// The environments recorded so far: (file name, content).
fn recorded_environments(env: &Env) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = fs::read_dir(&env.dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("env-") {
                return None;
            }
            Some((name, fs::read_to_string(entry.path()).unwrap_or_default()))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn no_child_inherits_the_github_token() {
    let mut env = Env::new("token");
    env.write_config(&quick_config(""));
    let once = env.dir.join("crashed-once").display().to_string();
    let genesis = env.add_version(
        Version::new("genesis", "v1")
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
    record_environment(&env, &genesis, "v1");
    let v2 = env.add_version(Version::new("v2", "v2").with_data_node());
    record_environment(&env, &v2, "v2");
    env.start_visor_with(&[
        ("GITHUB_TOKEN", "ghp_secret_token_value"),
        ("VISOR_TEST_MARKER", "inherited"),
    ]);

    // A crash restart: core, data node, the segment query, then both again.
    env.wait_starts("core", 2);
    env.wait_starts("segment", 1);
    env.wait_log("rpc: core is answering");
    // An upgrade: the version check of v2's binary, then v2's core and data node.
    env.control_write("v1", "announce", "v2@120");
    env.control_write("v1", "ready", "");
    wait_until("v2's core to start", DEADLINE, || {
        env.starts("core").iter().any(|r| r.version() == "v2")
    });
    env.wait_starts("datanode", 3);

    let recorded = recorded_environments(&env);
    let kinds = |prefix: &str| {
        recorded
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .count()
    };
    // v1: two cores, two data nodes and a segment query (both start with "datanode").
    assert!(kinds("env-v1-start-") >= 2, "{recorded:#?}");
    assert!(kinds("env-v1-datanode-") >= 3, "{recorded:#?}");
    assert!(kinds("env-v2-version-") >= 1, "{recorded:#?}");
    assert!(kinds("env-v2-start-") >= 1, "{recorded:#?}");
    for (name, content) in &recorded {
        assert!(
            content.contains("VISOR_TEST_MARKER=inherited"),
            "{name} did not record Visor's environment:\n{content}"
        );
        assert!(
            !content.contains("GITHUB_TOKEN") && !content.contains("ghp_secret_token_value"),
            "{name} inherited the token:\n{content}"
        );
    }
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

/// Replaces `path` by a FIFO.
fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let _ = fs::remove_file(path);
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
}

#[test]
fn a_fifo_replacing_config_toml_blocks_neither_reloads_nor_the_exit() {
    let mut env = Env::new("fifo");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");

    let config = env.home.join("config.toml");
    make_fifo(&config);
    for _ in 0..3 {
        env.signal_visor(libc::SIGHUP);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.wait_log(&format!(
        "{}: is a FIFO, not a regular file",
        config.display()
    ));
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0, "{}", env.log());
    assert!(env.live_sims().is_empty(), "a node outlived Visor");
}

#[test]
fn a_fifo_or_a_huge_file_as_config_toml_at_start_exits_78() {
    let mut env = Env::new("fifostart");
    env.add_version(Version::new("genesis", "v1"));
    let config = env.home.join("config.toml");
    make_fifo(&config);
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 78);
    let log = env.log();
    assert!(
        log.contains(&format!(
            "{}: is a FIFO, not a regular file; Visor reads only regular files there",
            config.display()
        )),
        "{log}"
    );
    assert!(env.starts("core").is_empty());

    fs::remove_file(&config).unwrap();
    let mut huge = quick_config("");
    while huge.len() <= 2 << 20 {
        huge.push_str("# a comment line that only makes the file larger\n");
    }
    env.write_config(&huge);
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 78);
    let log = env.log();
    assert!(
        log.contains(&format!("{}: larger than 1 MiB", config.display())),
        "{log}"
    );
    assert!(env.starts("core").is_empty());
}
