//! The operator's hooks through a real upgrade with the simulator: the three hooks in order
//! with their environment, a failing `beforeSwitch` that blocks until config.toml is fixed and
//! shows in every report, a hook past its time-out killed with the child it forked, no hook
//! outliving Visor, programs Visor may not run refused at start, by `check` and in a reload,
//! and a flapping core that cannot pile up `onAccepted` runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::notify::notify_listener;
use crate::common::*;

fn hooks_config(extra: &str) -> String {
    quick_config(&format!("[hooks]\n{extra}"))
}

/// Writes config.toml with `[hooks]` `keys`, makes genesis (v1) and v2, starts Visor and has
/// the core accept v2 at block 55.
fn upgrade_env(env: &mut Env, keys: &str) {
    upgrade_env_with(env, &hooks_config(keys), &[]);
}

/// As [`upgrade_env`], with the whole config.toml and environment variables for Visor.
fn upgrade_env_with(env: &mut Env, config: &str, vars: &[(&str, &str)]) {
    env.write_config(config);
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor_with(vars);
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
            format!("onAccepted release=v2 height=55 folder={v2} previous=v1 home={home} current=genesis"),
            format!("beforeSwitch release=v2 height=55 folder={v2} previous=v1 home={home} current=genesis"),
            format!("afterUpgrade release=v2 height=55 folder={v2} previous=v1 home={home} current=v2"),
        ]
    );
    let log = env.log();
    assert!(
        log.contains("hook beforeSwitch: said by before.sh"),
        "{log}"
    );
    assert_eq!(env.wait_starts("core", 2)[1].version(), "v2");
}

/// The `hook` sample of `visor_hook_last_run_successful` in the metrics file, if any.
fn hook_metric(file: &Path, hook: &str) -> Option<String> {
    let prefix = format!("visor_hook_last_run_successful{{hook=\"{hook}\"}} ");
    fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
}

/// `hooks.failing` of `HOME/.visor/status.json`.
fn status_json_failing(env: &Env) -> serde_json::Value {
    fs::read_to_string(env.home.join(".visor/status.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .map(|status| status["hooks"]["failing"].clone())
        .unwrap_or_default()
}

/// Also the four reports of a failing hook: systemd's `STATUS=`, `visor status`, status.json
/// and the metric `visor_hook_last_run_successful` (before: only `visor status` and
/// status.json told, and STATUS= said "upgrading to v2" with no word of the hook).
#[test]
fn a_failing_before_switch_blocks_until_the_config_is_fixed() {
    let mut env = Env::new("hookfail");
    let failing = script(&env, "fail.sh", "echo cannot snapshot >&2\nexit 3");
    let metrics = env.dir.join("visor.prom");
    let (socket, notifications) = notify_listener(&env);
    let config = |hook: &Path| {
        quick_config(&format!(
            "metricsFile = \"{}\"\n[hooks]\nbeforeSwitch = [\"{}\"]",
            metrics.display(),
            hook.display()
        ))
    };
    upgrade_env_with(
        &mut env,
        &config(&failing),
        &[("NOTIFY_SOCKET", &socket.display().to_string())],
    );
    env.control_write("v1", "ready", "");
    env.wait_log("hook beforeSwitch failed (exit status 3)");
    // The hook's output lines are logged by their own reader, maybe after its end.
    env.wait_log("hook beforeSwitch: cannot snapshot");
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(env.starts("core").len(), 1, "binaries stay stopped");
    let mut statuses = Vec::new();
    wait_until("STATUS= naming the failed hook", DEADLINE, || {
        statuses.extend(notifications.try_iter().map(|(_, m)| m));
        statuses
            .iter()
            .any(|m| m == "STATUS=upgrading to v2; hook beforeSwitch failed: exit status 3")
    });
    let (_, status, _) = env.run_visor_command(&["status"]);
    assert!(
        status.contains("hook:             FAILED beforeSwitch: exit status 3"),
        "{status}"
    );
    assert!(
        status
            .contains("doing:            upgrading to v2; hook beforeSwitch failed: exit status 3"),
        "{status}"
    );
    // status.json is written in the same turn as STATUS= and the metric, just after them.
    wait_until("status.json naming the failed hook", DEADLINE, || {
        status_json_failing(&env) == "beforeSwitch: exit status 3"
    });
    wait_until("the metric of the failed hook", DEADLINE, || {
        hook_metric(&metrics, "beforeSwitch").as_deref() == Some("0")
    });
    // The operator fixes the hook; the retry (10 s later) lets the upgrade go on.
    let fixed = script(&env, "ok.sh", "exit 0");
    env.write_config(&config(&fixed));
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(env.current_target(), Path::new("v2"));
    wait_until("the metric of the fixed hook", DEADLINE, || {
        hook_metric(&metrics, "beforeSwitch").as_deref() == Some("1")
    });
    wait_until("status.json without a failing hook", DEADLINE, || {
        status_json_failing(&env) == serde_json::Value::Null
    });
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

/// A home whose `beforeSwitch` names `program`; `check` and `run` must both refuse it with 78
/// and a message naming the key, the path and `fix`.
fn assert_refused(env: &mut Env, program: &str, fix: &str) {
    env.write_config(&hooks_config(&format!("beforeSwitch = [\"{program}\"]")));
    let (code, out, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "check with {program}: {out}");
    let line = out
        .lines()
        .find(|l| l.contains("hooks.beforeSwitch"))
        .unwrap_or_else(|| panic!("check names no hooks.beforeSwitch for {program}: {out}"));
    assert!(line.contains(program) && line.contains(fix), "{line}");
    let before = env.log().len();
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 78, "run with {program}");
    let log = env.log()[before..].to_string();
    assert!(
        log.contains("hooks.beforeSwitch") && log.contains(program) && log.contains(fix),
        "{log}"
    );
    assert!(env.starts("core").is_empty(), "nothing starts");
}

/// Before: `check` said 0 and `run` started with each of these, and the hook failed only at
/// the upgrade block, with the node stopped.
#[test]
fn a_hook_program_visor_may_not_run_stops_check_and_run_with_78() {
    let mut env = Env::new("hookbad");
    env.add_version(Version::new("genesis", "v1"));
    assert_refused(
        &mut env,
        "/nonexistent",
        "install the program there or fix the path",
    );
    assert_refused(&mut env, "relative/snap.sh", "give the program's full path");
    let plain = script(&env, "plain.sh", "exit 0");
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(&mut env, &plain.display().to_string(), "chmod +x");
    let open = script(&env, "open.sh", "exit 0");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    assert_refused(&mut env, &open.display().to_string(), "chmod go-w");
    // Fixed, both accept it.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{out}");
}

/// Before: a reload to a hook Visor may not run was applied, and that hook failed at the
/// upgrade block. Now the reload is refused (logged as an error naming the key) and the
/// previous hook still runs.
#[test]
fn a_reload_to_a_bad_hook_keeps_the_previous_configuration() {
    let mut env = Env::new("hookreload");
    let good = tracing_hook(&env, "good.sh");
    let open = tracing_hook(&env, "open.sh");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    env.write_config(&hooks_config(&format!(
        "onAccepted = [\"{}\"]",
        good.display()
    )));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.write_config(&hooks_config(&format!(
        "onAccepted = [\"{}\"]",
        open.display()
    )));
    env.wait_log("config: keeping the previous configuration");
    let refusal = env
        .log()
        .lines()
        .find(|l| l.contains("config: keeping the previous configuration"))
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("hooks.onAccepted")
            && refusal.contains(&open.display().to_string())
            && refusal.contains("chmod go-w"),
        "{refusal}"
    );
    env.control_write("v1", "announce", "v2@55");
    env.wait_log("hook onAccepted: said by good.sh");
    assert!(!env.log().contains("said by open.sh"), "{}", env.log());
}

/// Before: a core flipping between releases at every poll had an `onAccepted` started for
/// each (120 at once under a 120-release core). Now one runs at a time, and the next starts
/// no sooner than 15 s after the last: over the seconds watched, exactly one starts, although
/// it ended long before.
#[test]
fn a_flapping_core_gets_one_on_accepted_at_a_time_at_most_every_15_s() {
    let mut env = Env::new("hookflap");
    let starts = env.dir.join("starts.txt");
    let overlaps = env.dir.join("overlaps.txt");
    let lock = env.dir.join("hook.lock");
    let slow = script(
        &env,
        "slow.sh",
        &format!(
            "echo \"$VISOR_RELEASE\" >> '{starts}'\nmkdir '{lock}' 2>/dev/null || echo \"$VISOR_RELEASE\" >> '{overlaps}'\nsleep 1\nrmdir '{lock}'",
            starts = starts.display(),
            lock = lock.display(),
            overlaps = overlaps.display()
        ),
    );
    env.write_config(&hooks_config(&format!(
        "onAccepted = [\"{}\"]",
        slow.display()
    )));
    let releases: Vec<String> = (0..30).map(|i| format!("v3.0.{i}@{}", 100 + i)).collect();
    let flap = releases.join(",");
    env.add_version(Version::new("genesis", "v1").flags(&["--flap", &flap]));
    env.start_visor();
    env.wait_log("hook onAccepted: running");
    let flips = |env: &Env| env.log().matches("accepted at block").count();
    let seen = flips(&env);
    // The first run ends after 1 s; then at least 80 more changes of mind (4 s of 50 ms polls).
    wait_until("the first run to end and 80 more flips", DEADLINE, || {
        env.log().contains("hook onAccepted: finished") && flips(&env) >= seen + 80
    });
    let started = fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(
        started.lines().count(),
        1,
        "onAccepted started for {started:?}"
    );
    assert_eq!(env.log().matches("hook onAccepted: running").count(), 1);
    assert!(!overlaps.exists(), "two onAccepted at once");
    assert!(env.visor_running());
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
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
