//! What commands print: no terminal escape sequence from a binary, the core or the running
//! Visor reaches the operator's terminal raw, no credential of a URL is shown, and messages
//! say what to do.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

/// What a hostile binary reports as its version: retitle the terminal, ring, clear it.
const HOSTILE_VERSION: &str = r"v2\u001b]0;pwned\u0007\u001b[2J";

/// Replaces the `zeta` of `folder` with one that reports [`HOSTILE_VERSION`] and otherwise
/// runs as the simulator of v2.
fn hostile_binary(env: &Env, folder: &Path) {
    env.write_wrapper(folder, "v2", &[]);
    let wrapper = fs::read_to_string(folder.join("zeta")).unwrap();
    let script = wrapper.replacen(
        "#!/bin/sh\n",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then printf '%s\\n' '{{\"version\":\"{HOSTILE_VERSION}\"}}'; exit 0; fi\n"
        ),
        1,
    );
    let path = folder.join("zeta");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Asserts that `text` holds no ESC, BEL or other control character but newline and tab.
fn assert_no_raw_controls(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(raw.is_empty(), "{what} printed raw {raw:?}:\n{text:?}");
}

#[test]
fn a_version_with_escape_sequences_never_reaches_the_terminal_raw() {
    let mut env = Env::new("escapes");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let v2 = env.add_version(Version::new("v2", "v2"));
    hostile_binary(&env, &v2);

    // Without a running Visor, `switch` checks the folder itself.
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "--force", "v2"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(r"reports version v2\x1b]0;pwned\x07\x1b[2J"),
        "{stderr}"
    );
    assert_no_raw_controls("switch", &format!("{stdout}{stderr}"));

    // With one, its refusal is relayed; `check` and `status` see the core accept v2.
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@900000");
    env.wait_log("upgrade: release v2 accepted");
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "--force", "v2"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(r"\x1b]0;pwned"), "{stdout}{stderr}");
    assert_no_raw_controls("switch (running Visor)", &format!("{stdout}{stderr}"));
    for command in [&["check"][..], &["status"], &["status", "--output", "json"]] {
        let (_, stdout, stderr) = env.run_visor_command(command);
        assert!(stdout.contains("pwned"), "{command:?}: {stdout}{stderr}");
        assert_no_raw_controls(&format!("{command:?}"), &format!("{stdout}{stderr}"));
    }
    assert_no_raw_controls("the log", &env.log());
}

#[test]
fn init_lists_what_it_made_in_aligned_columns() {
    let env = Env::new("initcolumns");
    let home = env.dir.join("new-home");
    let output = std::process::Command::new(VISOR)
        .args(["init", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let columns: Vec<usize> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(|rest| {
            let path_end = rest.find(' ').unwrap();
            path_end + rest[path_end..].find(|c: char| c != ' ').unwrap()
        })
        .collect();
    assert_eq!(columns.len(), 3, "{stdout}");
    assert!(
        columns.iter().all(|c| *c == columns[0]),
        "{columns:?}\n{stdout}"
    );
}

/// `visor status --output json`, parsed.
fn status_json(env: &Env) -> serde_json::Value {
    let (_, stdout, stderr) = env.run_visor_command(&["status", "--output", "json"]);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"))
}

/// An RFC 3339 UTC time with milliseconds, as Visor writes them.
fn is_rfc3339(value: &serde_json::Value) -> bool {
    value.as_str().is_some_and(|t| {
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.'
    })
}

#[test]
fn status_dates_the_last_error_and_marks_it_resolved_after_the_upgrade_it_held_up() {
    let mut env = Env::new("lasterror");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let status = status_json(&env);
    assert!(is_rfc3339(&status["children"][0]["started_at"]), "{status}");
    assert!(status["children"][0]["start_time"].is_u64(), "{status}");
    // The block arrives before the folder: an error, dated, while it lasts.
    env.control_write("v1", "announce", "v2@40");
    env.control_write("v1", "ready", "");
    env.wait_log("upgrade: binaries stopped for v2 but its folder is not ready");
    let status = status_json(&env);
    let error = &status["last_error"];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upgrade: binaries stopped for v2")),
        "{status}"
    );
    assert!(is_rfc3339(&error["at"]), "{status}");
    assert_eq!(status["resolved_error"], serde_json::Value::Null);
    let (_, text, _) = env.run_visor_command(&["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("last error:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!(
            "{} upgrade: binaries stopped for v2",
            error["at"].as_str().unwrap()
        )),
        "{line}"
    );
    // The folder appears, the upgrade goes through: the error is marked resolved.
    env.add_version(Version::new("v2", "v2"));
    env.wait_log("upgrade: v2 is answering");
    wait_until("status to show the error resolved", DEADLINE, || {
        status_json(&env)["last_error"].is_null()
    });
    let status = status_json(&env);
    let resolved = &status["resolved_error"];
    assert_eq!(resolved["message"], error["message"], "{status}");
    assert_eq!(resolved["at"], error["at"], "{status}");
    assert!(is_rfc3339(&resolved["resolved_at"]), "{status}");
    assert!(resolved["resolved_at"].as_str() >= resolved["at"].as_str());
    let (_, text, _) = env.run_visor_command(&["status"]);
    assert!(!text.contains("last error:"), "{text}");
    assert!(
        text.contains(&format!(
            "resolved error:   {} upgrade: binaries stopped for v2",
            resolved["at"].as_str().unwrap()
        )) && text.contains(&format!(
            "(resolved {})",
            resolved["resolved_at"].as_str().unwrap()
        )),
        "{text}"
    );
}

#[test]
fn an_edit_then_a_sighup_report_the_reading_once() {
    let mut env = Env::new("sighuponce");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    // An edit that changes no setting, seen by the watcher within a second...
    env.write_config(&format!("# edited\n{}", quick_config("")));
    env.wait_log("config: config.toml read; no setting changed");
    // ... then the operator's systemctl reload.
    env.signal_visor(libc::SIGHUP);
    env.wait_log("config: config.toml unchanged since it was last read; nothing to reload");
    let log = env.log();
    assert_eq!(
        log.matches("config: config.toml read; no setting changed")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("config: SIGHUP received").count(), 1, "{log}");
    // A SIGHUP after an edit the watcher has not seen yet reads it, once.
    env.write_config(&quick_config("maxNumberOfRestarts = 7"));
    env.signal_visor(libc::SIGHUP);
    env.wait_log("config: configuration reloaded");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    assert_eq!(
        log.matches("config: configuration reloaded").count(),
        1,
        "{log}"
    );
}

#[test]
fn a_setting_appended_under_the_last_table_is_said_to_belong_above_the_first() {
    let env = Env::new("appended");
    env.add_version(Version::new("genesis", "v1"));
    let template = zeta_visor::config::CONFIG_TEMPLATE;
    env.write_config(&format!("{template}maxNumberOfRestarts = 5\n"));
    let line = template.lines().count() + 1;
    let header = template.lines().position(|l| l.starts_with('[')).unwrap() + 1;
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "config.toml:{line}: backup.maxNumberOfRestarts: unknown key in [backup]; \
             maxNumberOfRestarts is a top-level key, and a key written after a [table] header \
             belongs to that table: move it above the first table ([upgradeFolders] at line \
             {header})"
        )),
        "{stdout}"
    );
}

#[test]
fn bad_download_bounds_are_refused_by_check_with_their_lines() {
    let env = Env::new("badbounds");
    env.add_version(Version::new("genesis", "v1"));
    env.write_config("[autoInstall]\nmaxDownloadBytes = 0\n\nminFreeBytes = \"1 GiB\"\n");
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "config.toml:2: autoInstall.maxDownloadBytes: expected a whole number of bytes >= 1, \
             found 0; write a bare number of bytes without a unit, e.g. maxDownloadBytes = \
             4294967296"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "config.toml:4: autoInstall.minFreeBytes: expected a whole number of bytes >= 0, \
             found \"1 GiB\"; write a bare number of bytes without a unit, e.g. minFreeBytes = \
             1073741824"
        ),
        "{stdout}"
    );
}

#[test]
fn prepare_says_how_to_install_without_github_when_it_cannot_reach_it() {
    let env = Env::new("offline");
    env.add_version(Version::new("genesis", "v1"));
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&format!(
        "[autoInstall]\napiUrl = \"http://127.0.0.1:{port}\"\n"
    ));
    let (code, stdout, stderr) = env.run_visor_command(&["prepare", "v2"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        stderr.contains(
            "; if this host cannot reach GitHub, install the release from a file or a mirror \
             instead: visor prepare v2 --from FILE-OR-URL --sha256 HEX"
        ),
        "{stderr}"
    );
}

#[test]
fn check_names_visor_prepare_for_a_pending_folder_that_is_not_ready() {
    let mut env = Env::new("checkprepare");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@900000");
    env.wait_log("upgrade: release v2 accepted");
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "upgrade v2 accepted at block 900000 but its folder is not ready: {}/v2: no such \
             folder; install it with visor prepare v2 --home {} (from GitHub, or --from a file \
             or a mirror), or put it in place by hand, before the block",
            env.home.display(),
            env.home.display()
        )),
        "{stdout}"
    );
}

#[test]
fn switching_to_genesis_by_name_says_to_map_its_tag() {
    let env = Env::new("genesisname");
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.0.1"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "--force", "genesis"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "reports version v1.0.0, expected genesis: genesis is the folder of the first version, \
             not a release tag; to run it again, map its tag to it in config.toml, \
             [upgradeFolders] \"v1.0.0\" = \"genesis\", and use v1.0.0, e.g. visor switch --force v1.0.0 \
             (going back is a downgrade)"
        ),
        "{stderr}"
    );
    // The advice works.
    env.write_config(&quick_config("[upgradeFolders]\n\"v1.0.0\" = \"genesis\""));
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "--force", "v1.0.0"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(env.current_target(), std::path::Path::new("genesis"));
}

#[test]
fn an_api_url_with_credentials_is_refused_without_showing_them() {
    let env = Env::new("apicreds");
    env.add_version(Version::new("genesis", "v1"));
    env.write_config("[autoInstall]\napiUrl = \"https://deploy:s3cret@ghe.example.com/api/v3\"\n");
    for command in [
        &["check"][..],
        &["status"],
        &["status", "--output", "json"],
        &["prepare", "v2"],
    ] {
        let (code, stdout, stderr) = env.run_visor_command(command);
        assert_eq!(code, 78, "{command:?}: {stdout}{stderr}");
        let text = format!("{stdout}{stderr}");
        assert!(
            text.contains("https://***@ghe.example.com/api/v3"),
            "{command:?}: {text}"
        );
        assert!(
            !text.contains("s3cret") && !text.contains("deploy"),
            "{command:?}: {text}"
        );
    }
}
