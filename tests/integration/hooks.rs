//! The operator's hooks through a real upgrade with the simulator: the three hooks in order
//! with their environment, a failing `beforeSwitch` that blocks until config.toml is fixed, a
//! hook past its time-out killed with the child it forked, and no hook outliving Visor.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Writes an executable shell script `name` in the test folder; returns its path.
fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = env.dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn hooks_config(extra: &str) -> String {
    quick_config(&format!("[hooks]\n{extra}"))
}

/// Writes config.toml with `[hooks]` `keys`, makes genesis (v1) and v2, starts Visor and has
/// the core accept v2 at block 55.
fn upgrade_env(env: &mut Env, keys: &str) {
    env.write_config(&hooks_config(keys));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@55");
}

/// A hook that appends its event, environment and the target of `current` to `trace`.
fn tracing_hook(env: &Env, name: &str) -> PathBuf {
    let trace = env.dir.join("trace.txt");
    script(
        env,
        name,
        &format!(
            "echo \"$VISOR_EVENT release=$VISOR_RELEASE height=$VISOR_HEIGHT folder=$VISOR_FOLDER previous=$VISOR_PREVIOUS_RELEASE home=$VISOR_HOME current=$(readlink \"$VISOR_HOME/current\")\" >> '{}'\necho said by {name}",
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

#[test]
fn the_three_hooks_run_in_order_with_their_environment() {
    let mut env = Env::new("hooks");
    let accepted = tracing_hook(&env, "accepted.sh");
    let before = tracing_hook(&env, "before.sh");
    let after = tracing_hook(&env, "after.sh");
    upgrade_env(
        &mut env,
        &format!(
            "onAccepted = [\"{}\"]\nbeforeSwitch = [\"{}\"]\nafterUpgrade = [\"{}\"]",
            accepted.display(),
            before.display(),
            after.display()
        ),
    );
    env.wait_log("hook onAccepted: finished");
    env.control_write("v1", "ready", "");
    env.wait_log("hook afterUpgrade: finished");
    let lines = trace(&env);
    let home = env.home.display().to_string();
    let v2 = env.home.join("v2").display().to_string();
    assert_eq!(
        lines,
        vec![
            format!("accepted release=v2 height=55 folder={v2} previous=v1 home={home} current=genesis"),
            format!("before-switch release=v2 height=55 folder={v2} previous=v1 home={home} current=genesis"),
            format!("after-upgrade release=v2 height=55 folder={v2} previous=v1 home={home} current=v2"),
        ]
    );
    let log = env.log();
    assert!(
        log.contains("hook beforeSwitch: said by before.sh"),
        "{log}"
    );
    assert_eq!(env.wait_starts("core", 2)[1].version(), "v2");
}

#[test]
fn a_failing_before_switch_blocks_until_the_config_is_fixed() {
    let mut env = Env::new("hookfail");
    let failing = script(&env, "fail.sh", "echo cannot snapshot >&2\nexit 3");
    upgrade_env(
        &mut env,
        &format!("beforeSwitch = [\"{}\"]", failing.display()),
    );
    env.control_write("v1", "ready", "");
    env.wait_log("hook beforeSwitch failed (exit status 3)");
    assert!(env.log().contains("hook beforeSwitch: cannot snapshot"));
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(env.starts("core").len(), 1, "binaries stay stopped");
    let (_, status, _) = env.run_visor_command(&["status"]);
    assert!(
        status.contains("hook:             FAILED beforeSwitch: exit status 3"),
        "{status}"
    );
    // The operator fixes the hook; the retry (10 s later) lets the upgrade go on.
    let fixed = script(&env, "ok.sh", "exit 0");
    env.write_config(&hooks_config(&format!(
        "beforeSwitch = [\"{}\"]",
        fixed.display()
    )));
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("v2"));
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_the_child_it_forked() {
    let mut env = Env::new("hooktime");
    let pids = env.dir.join("hook-pids.txt");
    let slow = script(
        &env,
        "slow.sh",
        &format!("sleep 300 &\necho $! > '{}'\nwait", pids.display()),
    );
    upgrade_env(
        &mut env,
        &format!("onAccepted = [\"{}\"]\ntimeoutSeconds = 1", slow.display()),
    );
    env.wait_log("hook onAccepted failed (still running after timeoutSeconds = 1");
    let child: u32 = fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    wait_until("the hook's child to be gone", DEADLINE, || !alive(child));
    assert!(env.log().contains("the upgrade is not affected"));
}

#[test]
fn no_hook_process_outlives_visor_on_sigterm() {
    let mut env = Env::new("hookterm");
    let pids = env.dir.join("hook-pids.txt");
    let hanging = script(
        &env,
        "hang.sh",
        &format!(
            "trap '' TERM\nsleep 300 &\necho $$ $! > '{}'\nwait",
            pids.display()
        ),
    );
    upgrade_env(
        &mut env,
        &format!("beforeSwitch = [\"{}\"]", hanging.display()),
    );
    env.control_write("v1", "ready", "");
    env.wait_log("hook beforeSwitch: running");
    wait_until("the hook to write its pids", DEADLINE, || {
        fs::read_to_string(&pids).is_ok_and(|t| t.split_whitespace().count() == 2)
    });
    let hook_pids: Vec<u32> = fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    for pid in hook_pids {
        wait_until(&format!("hook process {pid} to be gone"), DEADLINE, || {
            !alive(pid)
        });
    }
    assert_eq!(env.current_target(), Path::new("genesis"));
}

/// The lines Visor logged for a hook's output (not its own "running" and "finished" lines).
fn output_lines(env: &Env, key: &str) -> Vec<String> {
    let prefix = format!("hook {key}: ");
    env.log()
        .lines()
        .filter_map(|line| line.split_once(&prefix).map(|(_, rest)| rest.to_string()))
        .filter(|rest| !rest.starts_with("running for ") && rest != "finished")
        .collect()
}

#[test]
fn a_hook_printing_a_million_lines_logs_at_most_a_thousand_and_one() {
    let mut env = Env::new("hookyes");
    let loud = script(&env, "loud.sh", "yes | head -n 1000000");
    upgrade_env(&mut env, &format!("onAccepted = [\"{}\"]", loud.display()));
    env.wait_log("hook onAccepted: finished");
    let lines = output_lines(&env, "onAccepted");
    assert!(lines.len() <= 1001, "{} lines logged", lines.len());
    assert_eq!(lines.iter().filter(|l| *l == "y").count(), 1000);
    let last = lines.last().unwrap();
    assert!(
        last.contains("999000 lines and 1998000 bytes of output were not logged"),
        "{last}"
    );
}

/// Visor's peak resident memory (VmHWM) in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_hook_printing_fifty_megabytes_without_a_newline_leaves_memory_flat() {
    let mut env = Env::new("hookflood");
    let flood = script(
        &env,
        "flood.sh",
        "head -c 50000000 /dev/zero | tr '\\0' y\necho\necho done",
    );
    upgrade_env(&mut env, &format!("onAccepted = [\"{}\"]", flood.display()));
    env.wait_log("hook onAccepted: finished");
    let peak = peak_rss_kib(env.visor_pid());
    assert!(peak < 16 * 1024, "Visor's peak RSS was {peak} KiB");
    let lines = output_lines(&env, "onAccepted");
    assert_eq!(lines[0].len(), 4096, "the line is cut at 4096 bytes");
    assert_eq!(lines[1], "done");
    assert!(
        lines[2].contains("0 lines and 49995904 bytes"),
        "{}",
        lines[2]
    );
    assert_eq!(lines.len(), 3);
}

/// The parent of process `pid` (field 4 of its stat line).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_hook_s_child_that_left_its_group_is_stopped_when_the_hook_ends() {
    let mut env = Env::new("hooksetsid");
    let pid_file = env.dir.join("setsid.pid");
    // The hook ends only once its child has left the hook's process group (field 5 of its
    // stat line is no longer the hook's pid, $$, which is its group).
    let leaver = script(
        &env,
        "leaver.sh",
        &format!(
            "setsid sleep 1000 &\necho $! > '{}'\nwhile [ \"$(cut -d' ' -f5 /proc/$!/stat)\" = $$ ]; do sleep 0.01; done",
            pid_file.display()
        ),
    );
    upgrade_env(
        &mut env,
        &format!("onAccepted = [\"{}\"]", leaver.display()),
    );
    env.wait_log("hook onAccepted: finished");
    let child: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the hook's setsid child to be gone", DEADLINE, || {
        !alive(child)
    });
    // Re-parented to Visor (a child subreaper) when the hook exited, and reaped by it: not
    // even a zombie is left.
    wait_until("the hook's setsid child to be reaped", DEADLINE, || {
        parent_of(child).is_none()
    });
    assert!(
        env.log()
            .contains("hook onAccepted: processes it started still run"),
        "{}",
        env.log()
    );
}

#[test]
fn a_before_switch_hook_left_by_a_killed_visor_is_stopped_before_it_runs_again() {
    let mut env = Env::new("hookorphan");
    let runs = env.dir.join("runs.txt");
    let pid_file = env.dir.join("sleep.pid");
    // Each run notes whether the sleep of the run before still runs (not a zombie), then
    // starts its own and waits for it.
    let body = format!(
        "if [ -f '{p}' ]; then\n  state=$(cut -d' ' -f3 /proc/$(cat '{p}')/stat 2>/dev/null)\n  if [ -n \"$state\" ] && [ \"$state\" != Z ]; then echo overlap >> '{r}'; fi\nfi\necho run >> '{r}'\nsleep 1000 &\necho $! > '{p}'\nwait",
        p = pid_file.display(),
        r = runs.display()
    );
    let long = script(&env, "long.sh", &body);
    upgrade_env(
        &mut env,
        &format!("beforeSwitch = [\"{}\"]", long.display()),
    );
    env.control_write("v1", "ready", "");
    let first_sleep: u32 = wait_for("the hook's sleep", DEADLINE, || {
        fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let status = env.home.join(".visor/status.json");
    wait_until("status.json to record the running hook", DEADLINE, || {
        fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["hooks"]["processes"][0]["hook"] == "beforeSwitch")
    });
    env.signal_visor(libc::SIGKILL);
    env.wait_visor_gone(DEADLINE);
    assert!(
        alive(first_sleep),
        "the situation: the hook's sleep outlived Visor"
    );
    env.start_visor();
    env.wait_log("hooks: the beforeSwitch hook (process group");
    wait_until("the hook to run again", DEADLINE, || {
        fs::read_to_string(&runs).is_ok_and(|t| t.lines().count() == 2)
    });
    assert!(!alive(first_sleep));
    assert_eq!(
        fs::read_to_string(&runs).unwrap(),
        "run\nrun\n",
        "the first run's sleep still ran when the hook ran again"
    );
    // Stopping Visor stops the second run (and its sleep) too.
    let second_sleep: u32 = wait_for("the second sleep", DEADLINE, || {
        fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != first_sleep)
    });
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    wait_until("the second sleep to be gone", DEADLINE, || {
        !alive(second_sleep)
    });
}
