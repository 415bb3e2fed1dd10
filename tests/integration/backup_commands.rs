//! `[backup]` from the commands' side: `visor check` reports every problem `backup::validate`
//! finds and what a backup will cost; an offline `visor switch` takes the backup
//! (`FROM-to-TO-switch-…`, content identical, `keep` applied) and then runs `beforeSwitch`
//! with `VISOR_REASON=switch` and no `VISOR_HEIGHT` before `current` moves; a failing backup
//! or hook, or a SIGTERM during the backup, leaves `current` and the backup folder as they
//! were; `visor list` shows the backups with their size and time. What `visor run` does with
//! `[backup]` is another module's.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// A home whose genesis runs v1.2.3 (`current` points at it) with the patch release v1.2.4
/// ready, and the node's data in `DIR/state`: a few files, a folder, a link and a file of
/// 1 MiB.
fn switch_env(name: &str) -> Env {
    let env = Env::new(name);
    env.add_version(Version::new("genesis", "v1.2.3"));
    symlink("genesis", env.home.join("current")).unwrap();
    env.add_version(Version::new("v1.2.4", "v1.2.4"));
    let state = state_dir(&env);
    fs::create_dir_all(state.join("db/blocks")).unwrap();
    fs::write(state.join("db/blocks/000001.sst"), vec![7u8; 1 << 20]).unwrap();
    fs::write(state.join("db/CURRENT"), b"MANIFEST-000001\n").unwrap();
    fs::write(
        state.join("priv_validator_state.json"),
        b"{\"height\":\"41\"}",
    )
    .unwrap();
    fs::set_permissions(
        state.join("priv_validator_state.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    symlink("db/CURRENT", state.join("latest")).unwrap();
    env
}

fn state_dir(env: &Env) -> PathBuf {
    env.dir.join("state")
}

fn backups_dir(env: &Env) -> PathBuf {
    env.dir.join("backups")
}

/// config.toml with `[backup]` (the state folder into `DIR/backups`) plus `extra` lines in
/// that table, and `hooks` as the `[hooks]` table.
fn backup_config(env: &Env, extra: &str, hooks: &str) -> String {
    quick_config(&format!(
        "[backup]\nenabled = true\npaths = [\"{}\"]\nfolder = \"{}\"\n{extra}\n[hooks]\n{hooks}\n",
        state_dir(env).display(),
        backups_dir(env).display()
    ))
}

/// A `beforeSwitch` hook that writes its environment, `current` and what the backup holds
/// to `DIR/trace.txt`, then exits with `status`.
fn tracing_hook(env: &Env, status: i32) -> PathBuf {
    let trace = env.dir.join("trace.txt");
    script(
        env,
        "before.sh",
        &format!(
            "{{\n echo \"event=$VISOR_EVENT reason=$VISOR_REASON release=$VISOR_RELEASE from=$VISOR_FROM previous=$VISOR_PREVIOUS_RELEASE height=${{VISOR_HEIGHT-unset}} folder=$VISOR_FOLDER home=$VISOR_HOME backup=${{VISOR_BACKUP-unset}}\"\n echo \"current=$(readlink \"$VISOR_HOME/current\")\"\n if [ -n \"$VISOR_BACKUP\" ]; then echo \"backed-up=$(cat \"$VISOR_BACKUP{}/db/CURRENT\")\"; fi\n}} > '{}'\necho said by the hook\nexit {status}",
            state_dir(env).display(),
            trace.display()
        ),
    )
}

fn trace(env: &Env) -> String {
    fs::read_to_string(env.dir.join("trace.txt")).unwrap_or_default()
}

/// Every entry below `root`: its relative path, kind, mode, size, mtime, owner and content
/// (file data, link target).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                stack.push(path.clone());
                Vec::new()
            };
            // A folder's mtime changes as entries are made in it; files' and links' must not.
            let mtime = if meta.is_dir() { 0 } else { meta.mtime() };
            found.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.mode(), meta.size(), mtime, meta.uid(), content),
            );
        }
    }
    found
}

/// The names in the backup folder.
fn backup_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(backups_dir(env))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `FROM-to-TO-switch-YYYYMMDDTHHMMSSZ` with a real-looking stamp.
fn is_switch_backup_name(name: &str, from: &str, to: &str) -> bool {
    let Some(stamp) = name.strip_prefix(&format!("{from}-to-{to}-switch-")) else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

// ----- visor switch without a running Visor -----

#[test]
fn an_offline_switch_takes_the_backup_then_runs_before_switch_then_moves_current() {
    let env = switch_env("bswitch");
    let hook = tracing_hook(&env, 0);
    let after = script(
        &env,
        "after.sh",
        &format!("touch '{}'", env.dir.join("after-ran").display()),
    );
    env.write_config(&backup_config(
        &env,
        "keep = 2",
        &format!(
            "beforeSwitch = [\"{}\"]\nafterUpgrade = [\"{}\"]",
            hook.display(),
            after.display()
        ),
    ));
    // Two older backups and an entry that is not one: keep = 2 removes the oldest only.
    let older = "v1.2.2-to-v1.2.3-h900-20240101T000000Z";
    let newer = "v1.2.2-to-v1.2.3-switch-20250101T000000Z";
    for name in [older, newer, "notes"] {
        fs::create_dir_all(backups_dir(&env).join(name)).unwrap();
    }
    let source = tree(&state_dir(&env));

    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(env.current_target(), Path::new("v1.2.4"));

    // The backup: named after the move, the state at its absolute place below it, identical.
    let names = backup_names(&env);
    let taken: Vec<&String> = names
        .iter()
        .filter(|n| is_switch_backup_name(n, "v1.2.3", "v1.2.4"))
        .collect();
    assert_eq!(taken.len(), 1, "{names:?}");
    let backup = backups_dir(&env).join(taken[0]);
    let inside = backup.join(state_dir(&env).strip_prefix("/").unwrap());
    assert_eq!(tree(&inside), source, "the backup differs from the state");
    assert_eq!(
        names,
        {
            let mut expect = vec![newer.to_owned(), "notes".into(), taken[0].clone()];
            expect.sort();
            expect
        },
        "keep = 2 keeps the new backup and the newest older one, and nothing else is touched"
    );
    assert!(
        stdout.contains(&format!("backup: {} complete: 3 files", backup.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "backup: removed {}",
            backups_dir(&env).join(older).display()
        )),
        "{stdout}"
    );

    // The hook ran after the backup and before current moved, with the switch's environment.
    let home = env.home.display().to_string();
    let v124 = env.home.join("v1.2.4").display().to_string();
    assert_eq!(
        trace(&env),
        format!(
            "event=beforeSwitch reason=switch release=v1.2.4 from=v1.2.3 previous=v1.2.3 height=unset folder={v124} home={home} backup={}\ncurrent=genesis\nbacked-up=MANIFEST-000001\n",
            backup.display()
        )
    );
    assert!(
        stderr.contains("hook beforeSwitch: said by the hook"),
        "{stderr}"
    );
    // afterUpgrade does not run, and the command says so.
    assert!(
        stdout
            .contains("hooks.afterUpgrade does not run: no Visor is running to see v1.2.4 answer"),
        "{stdout}"
    );
    assert!(!env.dir.join("after-ran").exists(), "afterUpgrade ran");
    assert!(env.starts("core").is_empty(), "a node was started");
}

#[test]
fn a_failing_hook_or_backup_switches_nothing() {
    let env = switch_env("bfail");
    let hook = tracing_hook(&env, 3);
    env.write_config(&backup_config(
        &env,
        "",
        &format!("beforeSwitch = [\"{}\"]", hook.display()),
    ));
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("visor: not switched to v1.2.4: hooks.beforeSwitch failed (exit status 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("current was not changed"), "{stderr}");
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert!(trace(&env).contains("current=genesis"), "{}", trace(&env));

    // A backup that fails (a path that does not exist), with onFailure = "stop" (the
    // default): nothing switched, the hook not run, and how to switch without a backup said.
    fs::remove_file(env.dir.join("trace.txt")).unwrap();
    let missing = env.dir.join("gone");
    let config = backup_config(
        &env,
        "",
        &format!("beforeSwitch = [\"{}\"]", hook.display()),
    )
    .replace(
        &format!("paths = [\"{}\"]", state_dir(&env).display()),
        &format!("paths = [\"{}\"]", missing.display()),
    );
    env.write_config(&config);
    let before = backup_names(&env);
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("visor: not switched to v1.2.4: the backup failed: ")
            && stderr.contains(&format!("{} does not exist", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("set onFailure = \\\"continue\\\" (or enabled = false)")
            || stderr.contains("set onFailure = \"continue\" (or enabled = false)"),
        "{stderr}"
    );
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(trace(&env), "", "the hook ran after a failed backup");
    assert_eq!(backup_names(&env), before);

    // onFailure = "continue": a warning, and the switch goes on without VISOR_BACKUP.
    let hook = tracing_hook(&env, 0);
    env.write_config(&config.replace("enabled = true", "enabled = true\nonFailure = \"continue\""));
    let _ = hook;
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("warning: the backup failed: ")
            && stderr.contains("switching without it, as [backup] onFailure = \"continue\""),
        "{stderr}"
    );
    assert!(trace(&env).contains(" backup=unset\n"), "{}", trace(&env));
    assert_eq!(env.current_target(), Path::new("v1.2.4"));
}

#[test]
fn a_hook_program_run_would_refuse_stops_the_switch_before_anything() {
    let env = switch_env("bhookbad");
    let hook = tracing_hook(&env, 0);
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o644)).unwrap();
    env.write_config(&backup_config(
        &env,
        "",
        &format!("beforeSwitch = [\"{}\"]", hook.display()),
    ));
    let (code, stdout, stderr) = env.run_visor_command(&["switch", "v1.2.4"]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(stderr.contains("hooks.beforeSwitch"), "{stderr}");
    assert!(stderr.contains("chmod +x"), "{stderr}");
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert!(!backups_dir(&env).exists(), "a backup was taken");
}

/// The temporary folders in the backup folder.
fn temp_backups(env: &Env) -> Vec<String> {
    backup_names(env)
        .into_iter()
        .filter(|n| n.starts_with(".visor-tmp-backup-"))
        .collect()
}

#[test]
fn sigterm_during_the_backup_removes_its_temporary_folder_and_switches_nothing() {
    let env = switch_env("bsigterm");
    // Enough data that the copy is still running when the command is frozen below.
    let big = state_dir(&env).join("big");
    fs::create_dir_all(&big).unwrap();
    let chunk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    for i in 0..64 {
        fs::write(big.join(format!("{i:03}.bin")), &chunk).unwrap();
    }
    let hook = tracing_hook(&env, 0);
    env.write_config(&backup_config(
        &env,
        "",
        &format!("beforeSwitch = [\"{}\"]", hook.display()),
    ));
    let mut command = Command::new(VISOR);
    command
        .args(["switch", "v1.2.4", "--home"])
        .arg(&env.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolate(&mut command, &[]);
    let mut child = command.spawn().unwrap();
    let pid = child.id() as i32;
    // Frozen while its half-made backup exists, so the signal surely lands in the backup.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < DEADLINE, "no half-made backup appeared");
        if !temp_backups(&env).is_empty() {
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            if !temp_backups(&env).is_empty() {
                break;
            }
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the switch ended before its backup could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
    }
    let status = wait_for("the switch to exit", DEADLINE, || child.try_wait().unwrap());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("visor: not switched to v1.2.4: interrupted by a signal during the backup"),
        "{stderr}"
    );
    assert!(stderr.contains("was removed"), "{stderr}");
    assert!(stderr.contains("current was not changed"), "{stderr}");
    assert_eq!(
        backup_names(&env),
        Vec::<String>::new(),
        "something was left"
    );
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(trace(&env), "", "the hook ran after an interrupted backup");
}

// ----- visor check -----

#[test]
fn check_reports_every_backup_problem_and_what_a_backup_costs() {
    let env = switch_env("bcheck");
    let state = state_dir(&env);
    let missing = env.dir.join("missing");
    // A path that does not exist, and a folder inside a backed-up path.
    env.write_config(&quick_config(&format!(
        "[backup]\nenabled = true\npaths = [\"{}\", \"{}\"]\nfolder = \"{}\"\n",
        state.display(),
        missing.display(),
        state.join("backups").display()
    )));
    let config_file = env.home.join("config.toml").display().to_string();
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{config_file}: backup.paths[1]: {} does not exist",
            missing.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{config_file}: backup.folder: {} is inside backup.paths[0]",
            state.join("backups").display()
        )),
        "{stdout}"
    );
    // A folder that is a file.
    let file = env.dir.join("a-file");
    fs::write(&file, b"").unwrap();
    env.write_config(&quick_config(&format!(
        "[backup]\nenabled = true\npaths = [\"{}\"]\nfolder = \"{}\"\n",
        state.display(),
        file.display()
    )));
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "backup.folder: {} is not a folder",
            file.display()
        )),
        "{stdout}"
    );

    // A good [backup]: exit 0 and one line on the cost (clones or copies, about how much).
    env.write_config(&backup_config(&env, "", ""));
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "backup: {}: backups will be ",
            backups_dir(&env).display()
        )),
        "{stdout}"
    );
    assert!(!backups_dir(&env).exists(), "check made the folder");
    // Disabled: nothing is looked at.
    env.write_config(&quick_config(&format!(
        "[backup]\nenabled = false\npaths = [\"{}\"]\nfolder = \"/nonexistent/b\"\n",
        missing.display()
    )));
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn check_names_the_drop_in_for_a_read_only_folder_and_a_folder_without_room() {
    let env = switch_env("bcheckro");
    let mount = env.dir.join("mnt");
    fs::create_dir_all(&mount).unwrap();
    let tmpfs = match Tmpfs::mount(&mount) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!("check_names_the_drop_in_for_a_read_only_folder_and_a_folder_without_room: skipped: {why}");
            return;
        }
    };
    let folder = mount.join("zeta");
    fs::create_dir_all(&folder).unwrap();
    let config = quick_config(&format!(
        "[backup]\nenabled = true\npaths = [\"{}\"]\nfolder = \"{}\"\n",
        state_dir(&env).display(),
        folder.display()
    ));
    env.write_config(&config);
    // 16 MiB of tmpfs cannot hold a copy plus the 1 GiB reserve; tmpfs cannot clone.
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(
        stdout.contains(&format!("backup.folder: {} has ", folder.display()))
            && stdout.contains("not enough for a copy of the backed-up paths"),
        "{stdout}"
    );
    assert!(
        stdout.contains("backups will be copies: about 1.0 MiB"),
        "{stdout}"
    );
    // Read-only, as the unit's ProtectSystem=strict makes a folder it was not told about.
    tmpfs.remount("ro");
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(
        stdout.contains("on a read-only file system for Visor")
            && stdout
                .contains("add the drop-in /etc/systemd/system/zeta-visor.service.d/backup.conf")
            && stdout.contains(&format!("\"ReadWritePaths=-{}\"", folder.display()))
            && stdout.contains("systemctl daemon-reload"),
        "{stdout}"
    );
}

// ----- visor list -----

#[test]
fn list_shows_the_backups_with_their_size_and_time() {
    let env = switch_env("blist");
    env.write_config(&backup_config(&env, "", ""));
    // Without a backup yet: the folder is named, no backup listed.
    let (code, text, stderr) = env.run_visor_command(&["list", "--no-exec"]);
    assert_eq!(code, 0, "{text}{stderr}");
    assert!(
        text.contains(&format!("backups: none in {}", backups_dir(&env).display())),
        "{text}"
    );
    let older = "v1.2.2-to-v1.2.3-h900-20240101T000000Z";
    let newer = "v1.2.3-to-v1.2.4-switch-20250203T040506Z";
    for (name, sizes) in [(older, &[10usize, 20][..]), (newer, &[1000, 24, 0][..])] {
        let dir = backups_dir(&env).join(name).join("var/lib/zeta");
        fs::create_dir_all(&dir).unwrap();
        for (i, size) in sizes.iter().enumerate() {
            fs::write(dir.join(format!("f{i}")), vec![1u8; *size]).unwrap();
        }
        symlink("f0", dir.join("link")).unwrap();
    }
    // Not backups: a file under a backup's name, another folder, a half-made one.
    fs::write(backups_dir(&env).join("v0-to-v1-h1-20000101T000000Z"), b"x").unwrap();
    fs::create_dir_all(backups_dir(&env).join("manual-copy")).unwrap();
    fs::create_dir_all(backups_dir(&env).join(".visor-tmp-backup-1-0")).unwrap();
    let before = tree(&env.dir);

    let (code, stdout, stderr) = env.run_visor_command(&["list", "--no-exec", "--output", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        list["backup_folder"],
        backups_dir(&env).display().to_string()
    );
    assert_eq!(list["backups_error"], Value::Null);
    let folder = backups_dir(&env).display().to_string();
    assert_eq!(
        list["backups"],
        serde_json::json!([
            {
                "name": newer, "path": format!("{folder}/{newer}"), "from": "v1.2.3",
                "to": "v1.2.4", "reason": "switch", "height": null,
                "started": "2025-02-03T04:05:06Z", "files": 3, "bytes": 1024, "error": null,
            },
            {
                "name": older, "path": format!("{folder}/{older}"), "from": "v1.2.2",
                "to": "v1.2.3", "reason": "upgrade", "height": 900,
                "started": "2024-01-01T00:00:00Z", "files": 2, "bytes": 30, "error": null,
            },
        ])
    );

    let (code, text, _) = env.run_visor_command(&["list", "--no-exec"]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("BACKUP"))
        .unwrap_or_else(|| panic!("no backup table: {text}"));
    assert!(
        lines[head + 1].starts_with(newer)
            && lines[head + 1].contains("2025-02-03T04:05:06Z")
            && lines[head + 1].ends_with("3  1.0 KiB"),
        "{text}"
    );
    assert!(
        lines[head + 2].starts_with(older) && lines[head + 2].ends_with("2     30 B"),
        "{text}"
    );
    assert!(
        text.contains(&format!("backups: 2 in {folder}, newest first")),
        "{text}"
    );
    assert_eq!(tree(&env.dir), before, "visor list changed something");
}
