//! The releases' versions from outside: the version guard of `visor switch` (refusals change
//! nothing, `--force` goes through, a patch move is allowed; with and without a running
//! Visor), `visor list` in both outputs (beside a running Visor, never writing) and `visor
//! version --home` (the node's versions; without a home nothing is run).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// A home whose genesis reports `v1.2.3` and whose `current` points at it, with the upgrade
/// folders `v1.2.4` (a patch), `v1.3.0` (a minor), `v1.2.2` (a downgrade) and `v1.2`
/// (not a version), each reporting its own name.
fn home_with_releases(name: &str) -> Env {
    let env = Env::new(name);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.2.3"));
    std::os::unix::fs::symlink("genesis", env.home.join("current")).unwrap();
    for tag in ["v1.2.4", "v1.3.0", "v1.2.2", "v1.2"] {
        env.add_version(Version::new(tag, tag));
    }
    env
}

/// Runs `visor ARGS` with `VISOR_HOME` set to `home` (or unset): (exit code, stdout, stderr).
fn visor(args: &[&str], home: Option<&Path>) -> (i32, String, String) {
    let mut command = Command::new(VISOR);
    command.args(args);
    isolate(&mut command, &[]);
    if let Some(home) = home {
        command.env("VISOR_HOME", home);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

/// Every path under `root` with its kind, size, mode and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.insert(
                entry.path(),
                (meta.mode(), meta.size(), meta.mtime(), meta.mtime_nsec()),
            );
        }
    }
    found
}

/// Replaces the script at `path` (a new file renamed over it: a file still open for writing
/// cannot be run, and another test's fork may hold it open for a moment).
fn replace_script(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).unwrap();
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// Makes `folder/zeta` touch `marker` before it runs the simulator.
fn mark_runs(folder: &Path, marker: &Path) {
    let zeta = folder.join("zeta");
    let script = fs::read_to_string(&zeta).unwrap().replacen(
        "#!/bin/sh\n",
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
        1,
    );
    replace_script(&zeta, &script);
}

// ----- visor switch: the version guard -----

#[test]
fn switch_without_a_running_visor_refuses_other_minors_downgrades_and_non_versions() {
    let env = home_with_releases("guardoff");
    let before = snapshot(&env.home);
    for (tag, why) in [
        (
            "v1.3.0",
            "v1.3.0 has another minor version than the running v1.2.3",
        ),
        (
            "v1.2.2",
            "v1.2.2 is older than the running v1.2.3: a downgrade",
        ),
        ("v1.2", "v1.2 is not a release version"),
        ("v1.2.3", "v1.2.3 is the version current already runs"),
    ] {
        let (code, stdout, stderr) = env.run_visor_command(&["switch", tag]);
        assert_eq!(code, 1, "{tag}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("visor: refused: {why}")),
            "{stderr}"
        );
        assert!(
            stderr.contains("nothing was changed; to switch anyway, pass --force"),
            "{stderr}"
        );
        if tag != "v1.2.3" {
            assert!(stderr.contains("agreed upgrade block"), "{stderr}");
        }
    }
    // Refused before the lock: not even `.visor/` was made.
    assert_eq!(snapshot(&env.home), before, "a refusal changed the home");

    // A patch move goes through the guard; then --force takes the minor move.
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(env.current_target(), Path::new("v1.2.4"));
    assert!(!stdout.contains("--force"), "{stdout}");
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.3.0", "--force"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("--force: the version guard is skipped"),
        "{stdout}"
    );
    assert_eq!(env.current_target(), Path::new("v1.3.0"));
    // --force skips only the guard: a folder that is not ready is still refused.
    env.add_version(Version::new("v1.3.1", "v1.3.9"));
    let (code, _, stderr) = env.run_visor_command(&["switch", "v1.3.1", "--force"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("reports version v1.3.9"), "{stderr}");
    assert_eq!(env.current_target(), Path::new("v1.3.0"));
    assert!(env.starts("core").is_empty(), "no node started");
}

#[test]
fn switch_cannot_tell_the_running_release_without_a_usable_current() {
    let env = home_with_releases("guardbroken");
    // current's binary says nothing that is a version: refused, exit 1.
    replace_script(&env.home.join("genesis/zeta"), "#!/bin/sh\nexit 3\n");
    let (code, _, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refused: cannot tell the running release to compare v1.2.4 with"),
        "{stderr}"
    );
    assert!(stderr.contains("exit status 3"), "{stderr}");
    // current's run-config unusable: a configuration error, exit 78.
    fs::write(env.home.join("genesis/run-config.toml"), "name = 3\n").unwrap();
    let (code, _, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("run-config.toml"), "{stderr}");
    assert!(stderr.contains("pass --force"), "{stderr}");
    assert_eq!(env.current_target(), Path::new("genesis"));
}

#[test]
fn switch_with_a_running_visor_is_refused_before_it_is_asked() {
    let mut env = home_with_releases("guardon");
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let core = env.wait_starts("core", 1)[0].pid();
    for tag in ["v1.3.0", "v1.2.2", "v1.2"] {
        let (code, stdout, stderr) = env.run_visor_command(&["switch", tag]);
        assert_eq!(code, 1, "{tag}: {stdout}{stderr}");
        assert!(stderr.contains("visor: refused: "), "{stderr}");
        assert!(stderr.contains("pass --force"), "{stderr}");
        assert!(!stdout.contains("asking the Visor"), "{tag}: {stdout}");
    }
    assert!(
        !env.log().contains("switch"),
        "the running Visor was asked: {}",
        env.log()
    );
    assert!(alive(core), "the running core was touched");
    assert_eq!(env.starts("core").len(), 1);
    assert_eq!(env.current_target(), Path::new("genesis"));

    // The patch move is allowed and done by the running Visor.
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("v1.2.4 is running and answering"),
        "{stdout}"
    );
    assert_eq!(env.wait_starts("core", 2)[1].version(), "v1.2.4");
    // --force takes the minor move through, and says so.
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.3.0", "--force"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("--force: the version guard is skipped"),
        "{stdout}"
    );
    assert_eq!(env.wait_starts("core", 3)[2].version(), "v1.3.0");
    assert_eq!(env.current_target(), Path::new("v1.3.0"));
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

// ----- visor list -----

#[test]
fn list_shows_every_folder_and_writes_nothing() {
    let env = Env::new("list");
    let outside = env.dir.join("elsewhere");
    env.write_config(&quick_config(&format!(
        "[upgradeFolders]\n\"v1.4.0\" = \"{}\"\n\"v1.5.0\" = \"{}\"\n",
        outside.display(),
        env.dir.join("missing").display()
    )));
    env.add_version(Version::new("genesis", "v1.2.3").with_data_node());
    std::os::unix::fs::symlink("genesis", env.home.join("current")).unwrap();
    env.add_version(Version::new("v1.3.0", "v1.3.0"));
    env.add_version(Version::new("v1.2.4", "v1.2.5"));
    env.add_version(Version::new(outside.to_str().unwrap(), "v1.4.0"));
    // Others may write this one: reported, and its binary is never run.
    let writable = env.add_version(Version::new("v1.6.0", "v1.6.0"));
    let marker = env.dir.join("ran");
    mark_runs(&writable, &marker);
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(&env.home);

    let (code, stdout, stderr) = env.run_visor_command(&["list", "--output", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let list = json(&stdout);
    assert_eq!(list["running"], false);
    assert_eq!(list["pending"], Value::Null);
    assert_eq!(list["executed"], true);
    assert_eq!(list["backups"], serde_json::json!([]));
    let home = env.home.display().to_string();
    assert_eq!(list["current"], format!("{home}/genesis"));
    let rows = list["versions"].as_array().unwrap();
    let tags: Vec<&Value> = rows.iter().map(|r| &r["tag"]).collect();
    assert_eq!(
        tags,
        [
            &Value::Null,
            &"v1.2.4".into(),
            &"v1.3.0".into(),
            &"v1.4.0".into(),
            &"v1.5.0".into(),
            &"v1.6.0".into(),
        ]
    );
    let genesis = &rows[0];
    assert_eq!(genesis["folder"], format!("{home}/genesis"));
    assert_eq!(genesis["name"], "v1.2.3");
    assert_eq!(genesis["core"]["version"], "v1.2.3");
    assert_eq!(genesis["core"]["path"], format!("{home}/genesis/zeta"));
    assert_eq!(genesis["data_node"]["version"], "v1.2.3");
    assert_eq!(genesis["ready"], true);
    assert_eq!(genesis["current"], true);
    assert_eq!(rows[1]["ready"], false);
    assert_eq!(rows[1]["core"]["version"], "v1.2.5");
    assert!(
        rows[1]["problems"][0]
            .as_str()
            .unwrap()
            .contains("reports version v1.2.5, expected v1.2.4"),
        "{}",
        rows[1]
    );
    assert_eq!(rows[2]["ready"], true);
    assert_eq!(rows[2]["current"], false);
    assert_eq!(rows[2]["data_node"], Value::Null);
    assert_eq!(rows[3]["folder"], outside.display().to_string());
    assert_eq!(rows[3]["ready"], true);
    assert_eq!(rows[4]["ready"], false);
    assert!(
        rows[4]["problems"][0]
            .as_str()
            .unwrap()
            .ends_with("missing: no such folder"),
        "{}",
        rows[4]
    );
    assert_eq!(rows[5]["ready"], false);
    assert!(
        rows[5]["problems"].to_string().contains("chmod go-w"),
        "{}",
        rows[5]
    );
    assert_eq!(rows[5]["core"], Value::Null);
    assert!(!marker.exists(), "a binary others may write was run");

    // The same as text: a header and one aligned row per folder, then the problems.
    let (code, text, stderr) = env.run_visor_command(&["list"]);
    assert_eq!(code, 0, "{text}{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("    TAG"), "{text}");
    let folder_column = lines[0].find("FOLDER").unwrap();
    for (line, folder) in lines[1..=6].iter().zip([
        format!("{home}/genesis"),
        format!("{home}/v1.2.4"),
        format!("{home}/v1.3.0"),
        outside.display().to_string(),
        env.dir.join("missing").display().to_string(),
        format!("{home}/v1.6.0"),
    ]) {
        assert_eq!(line.find(&folder), Some(folder_column), "{text}");
    }
    assert!(
        lines[1].starts_with("*   -       v1.2.3  v1.2.3  v1.2.3"),
        "{text}"
    );
    assert!(lines[3].contains("  yes  "), "{text}");
    assert!(lines[2].contains("  no  "), "{text}");
    assert!(
        text.contains("v1.2.4: not ready: ") && text.contains("expected v1.2.4"),
        "{text}"
    );
    assert!(
        text.contains(&format!("* current: {home}/genesis")),
        "{text}"
    );
    assert!(
        text.contains("> pending: none known (no Visor runs"),
        "{text}"
    );

    // --no-exec runs nothing and says so.
    let (code, stdout, _) = env.run_visor_command(&["list", "--no-exec", "-o", "json"]);
    assert_eq!(code, 0);
    let list = json(&stdout);
    assert_eq!(list["executed"], false);
    assert_eq!(list["versions"][0]["core"]["version"], Value::Null);
    assert_eq!(list["versions"][1]["ready"], true, "version not checked");
    let (_, text, _) = env.run_visor_command(&["list", "--no-exec"]);
    assert!(text.contains("versions not asked (--no-exec)"), "{text}");

    assert_eq!(snapshot(&env.home), before, "visor list changed the home");
    assert!(!marker.exists());

    // A broken config.toml: everything still listed, exit 78.
    env.write_config("maxNumberOfRestarts = \"many\"\n");
    let (code, stdout, _) = env.run_visor_command(&["list", "--output", "json"]);
    assert_eq!(code, 78);
    let list = json(&stdout);
    assert!(list["config_problems"][0]
        .as_str()
        .unwrap()
        .contains("maxNumberOfRestarts"));
    assert_eq!(list["versions"][0]["ready"], true);
    let (code, text, _) = env.run_visor_command(&["list"]);
    assert_eq!(code, 78);
    assert!(text.contains("config.toml: "), "{text}");
}

#[test]
fn list_beside_a_running_visor_shows_the_pending_release() {
    let mut env = Env::new("listrun");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.2.3"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.add_version(Version::new("v1.3.0", "v1.3.0"));
    env.control_write("v1.2.3", "announce", "v1.3.0@1200");
    env.wait_log("upgrade: folder for v1.3.0 is ready");
    let home = env.home.display().to_string();
    let list = wait_for("visor list to show v1.3.0 as pending", DEADLINE, || {
        let (code, stdout, stderr) = env.run_visor_command(&["list", "--output", "json"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let list = json(&stdout);
        (list["pending"]["folder_state"] == "ready").then_some(list)
    });
    assert_eq!(list["running"], true);
    assert_eq!(list["pid"], env.visor_pid());
    assert_eq!(list["pending"]["release"], "v1.3.0");
    assert_eq!(list["pending"]["height"], 1200);
    let rows = list["versions"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0]["current"], true);
    assert_eq!(rows[0]["pending"], false);
    assert_eq!(rows[1]["tag"], "v1.3.0");
    assert_eq!(rows[1]["pending"], true);
    assert_eq!(rows[1]["ready"], true);
    let (code, text, _) = env.run_visor_command(&["list"]);
    assert_eq!(code, 0);
    assert!(
        text.lines().nth(2).unwrap().starts_with(">   v1.3.0"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "> pending: v1.3.0 at block 1200 (Visor pid {}: ready)",
            env.visor_pid()
        )),
        "{text}"
    );
    assert_eq!(list["current"], format!("{home}/genesis"));
    // Listing touched neither the node nor the upgrade.
    assert_eq!(env.starts("core").len(), 1);
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

// ----- visor version -----

#[test]
fn version_with_a_home_adds_the_nodes_and_without_one_runs_nothing() {
    let env = Env::new("version");
    env.write_config(&quick_config(""));
    let genesis = env.add_version(Version::new("genesis", "v1.2.3").with_data_node());
    let marker = env.dir.join("ran");
    mark_runs(&genesis, &marker);
    let home = env.home.display().to_string();

    // No home: Visor's alone, and nothing run.
    let (code, text, stderr) = visor(&["version"], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("visor "), "{text}");
    let (code, stdout, _) = visor(&["version", "--output", "json"], None);
    assert_eq!(code, 0);
    assert_eq!(json(&stdout).get("node"), None);
    // --version and -V print Visor's alone even with a home.
    let (_, short, _) = visor(&["-V"], Some(&env.home));
    assert_eq!(short, text);
    assert!(
        !marker.exists(),
        "visor version ran a binary without a home"
    );

    // With --home: current (genesis, not linked yet) asked, in both forms.
    let (code, text, stderr) = visor(&["version", "--home", &home], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(marker.exists(), "the node's binary was not asked");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("visor "), "{text}");
    assert_eq!(lines[1], format!("release:   v1.2.3 ({home}/genesis)"));
    assert_eq!(lines[2], format!("core:      v1.2.3 ({home}/genesis/zeta)"));
    assert_eq!(lines[3], format!("data node: v1.2.3 ({home}/genesis/zeta)"));
    // With $VISOR_HOME the same, as JSON: Visor's keys unchanged, plus "node".
    let (code, stdout, _) = visor(&["version", "-o", "json"], Some(&env.home));
    assert_eq!(code, 0);
    let version = json(&stdout);
    assert!(version["version"].is_string() && version["hash"].is_string());
    let node = &version["node"];
    assert_eq!(node["home"], home);
    assert_eq!(node["folder"], format!("{home}/genesis"));
    assert_eq!(node["release"], "v1.2.3");
    assert_eq!(node["core"]["version"], "v1.2.3");
    assert_eq!(node["core"]["error"], Value::Null);
    assert_eq!(node["data_node"]["version"], "v1.2.3");
    assert_eq!(node["problems"], serde_json::json!([]));
    assert!(!env.home.join("current").exists(), "version linked current");

    // A binary that does not say: exit 1, the error shown.
    replace_script(&genesis.join("zeta"), "#!/bin/sh\necho oops >&2\nexit 4\n");
    let (code, text, _) = visor(&["version", "--home", &home], None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("core:      ERROR "), "{text}");
    assert!(text.contains("exit status 4"), "{text}");
    // An unusable current: exit 78, nothing run.
    fs::remove_dir_all(&genesis).unwrap();
    let (code, stdout, _) = visor(&["version", "--output", "json"], Some(&env.home));
    assert_eq!(code, 78);
    let node = &json(&stdout)["node"];
    assert_eq!(node["core"], Value::Null);
    assert!(
        node["problems"][0].as_str().unwrap().contains("visor init"),
        "{node}"
    );
}
