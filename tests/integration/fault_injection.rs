//! Fault injection against the real `visor` and the core-node simulator (visor(1), UPGRADE
//! SEQUENCE and SUPERVISION): what survives when things go wrong at the worst moment.
//!
//! - SIGKILL of Visor at random moments of an upgrade (announce → folder check → ready → stop
//!   → switch → new start), with the stopping window widened by the simulator's
//!   `--exit-delay`. After each kill: `current` points at a folder whose run-config parses, no
//!   simulator process outlives Visor by more than 2 s (parent-death signal), the next start
//!   leaves no `.visor-tmp-*` behind, runs the version `current` points at, and then completes
//!   the next upgrade (the interrupted one, when the old core had already reached its upgrade
//!   block). Nothing in HOME is lost or changed.
//! - The core's socket file deleted while it runs, an RPC that answers just within and just
//!   past the 5 s deadline, an RPC that never answers, an answer that is not JSON, and a home
//!   folder that turns read-only just before the switch of `current`.
//!
//! The random moments come from a seeded xorshift generator; the seed ([`seed`]: fixed
//! unless `VISOR_SEED` is set) is printed, and `VISOR_SEED=<seed>` replays the same kill
//! delays. The number of kills, split over three
//! tests, is 9 by default and 105 with `VISOR_SLOW_TESTS=1` (as CI runs it);
//! `VISOR_FAULT_ITERATIONS` sets another; `bench/fault_injection.sh` runs a
//! longer campaign on the release build.

use crate::common::faults::*;
use crate::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Parent-death delivery plus the simulator's exit delay must fit in this: a node process
/// gets SIGTERM as its parent-death signal, so it does not outlive a killed Visor.
const SURVIVOR_LIMIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Random moments
// ---------------------------------------------------------------------------------------------

/// The total number of kills, split over the three kill tests: 9 by default, 105 under
/// `VISOR_SLOW_TESTS`, or `VISOR_FAULT_ITERATIONS`.
fn iterations_per_test() -> usize {
    let total = campaign_size("VISOR_FAULT_ITERATIONS", 9, 105);
    total.div_ceil(3).max(1)
}

// ---------------------------------------------------------------------------------------------
// A chain of versions, each upgrading to the next on its own
// ---------------------------------------------------------------------------------------------

/// How the simulated versions behave; every version of a chain behaves the same.
#[derive(Clone, Copy)]
struct Profile {
    /// Each version becomes ready for the next this long after it starts.
    ready_after_ms: u64,
    /// On SIGTERM (Visor's stop, or the parent-death signal) it waits this long to exit.
    exit_delay_ms: u64,
    /// `zeta version` (Visor's folder check) takes this long.
    version_delay_ms: u64,
    data_node: bool,
    /// Kill moments are spread uniformly over this long after the core's start is seen.
    window_ms: u64,
}

fn version_name(k: usize) -> String {
    format!("v{k}")
}

fn folder_name(k: usize) -> String {
    if k == 0 {
        "genesis".into()
    } else {
        version_name(k)
    }
}

/// Creates folders genesis (v0), v1 .. v`count`; `zeta` is a symlink to the simulator and
/// `sim-options` beside it scripts the version: accept the next one at once, be ready for it
/// after `ready_after_ms`. The last version accepts nothing.
fn make_chain(env: &Env, count: usize, profile: Profile) {
    for k in 0..=count {
        let folder = env.home.join(folder_name(k));
        fs::create_dir_all(&folder).unwrap();
        symlink(SIM, folder.join("zeta")).unwrap();
        let mut options = format!(
            "--sim-version {} --socket {} --record {} --exit-delay {}ms --version-delay {}ms",
            version_name(k),
            env.socket().display(),
            env.record_file().display(),
            profile.exit_delay_ms,
            profile.version_delay_ms
        );
        if k < count {
            options.push_str(&format!(
                " --announce {}@{} --ready-after {}ms",
                version_name(k + 1),
                1000 * (k + 1),
                profile.ready_after_ms
            ));
        }
        fs::write(folder.join("sim-options"), options + "\n").unwrap();
        let mut run = format!(
            "name = \"{}\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n    args = [\"start\", \"--home\", \"{}\"]\n  [zeta.rpc]\n    socketPath = \"{}\"\n    httpPath = \"/rpc\"\n",
            version_name(k),
            env.node_home(),
            env.socket().display()
        );
        if profile.data_node {
            run.push_str(&format!(
                "[data_node]\n  [data_node.binary]\n    path = \"zeta\"\n    args = [\"datanode\", \"start\", \"--home\", \"{}/dn\"]\n",
                env.dir.display()
            ));
        }
        fs::write(folder.join("run-config.toml"), run).unwrap();
    }
}

/// Every regular file in HOME and its version folders (config.toml, run-configs, sim-options)
/// with its content, to prove at the end that nothing was lost or changed. Visor's own
/// supervise folder (`.visor/`: lock, status, control socket, upgrade mark) is Visor's state,
/// not the operator's data, and is left out.
fn snapshot_home(home: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() && entry.file_name() != zeta_visor::home::supervise_folder::FOLDER {
                stack.push(path);
            } else if kind.is_file() {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Where a kill landed in the upgrade from version `cur`, judged from the killed Visor's own
/// log lines (each is written before the action it announces).
fn phase_of(log: &str, cur: usize) -> &'static str {
    let next = version_name(cur + 1);
    let started_next = log
        .lines()
        .any(|l| l.contains("supervise: started core") && l.contains(&format!(" release={next} ")));
    if log.contains(&format!("release {} accepted", version_name(cur + 2))) {
        "7 new core answering, next release accepted"
    } else if started_next {
        "6 new core started"
    } else if log.contains(&format!("current now points at {next};")) {
        "5 switched, new core not started"
    } else if log.contains(&format!("switching to {next} ")) {
        "4 switching current"
    } else if log.contains("upgrade: binaries stopped") {
        "3 stopped, before switch"
    } else if log.contains(&format!("is ready for {next};")) {
        "2 stopping (old core exiting)"
    } else if log.contains(&format!("release {next} accepted")) {
        "1 accepted, before ready"
    } else {
        "0 starting, nothing accepted yet"
    }
}

fn log_len(env: &Env) -> u64 {
    fs::metadata(env.log_file()).map(|m| m.len()).unwrap_or(0)
}

/// Visor's log from byte `offset` on.
fn log_since(env: &Env, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(env.log_file()) {
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_string(&mut text);
    }
    text
}

#[derive(Default)]
struct Tally {
    kills: usize,
    phases: BTreeMap<&'static str, usize>,
    current_old: usize,
    current_new: usize,
    completed_after_restart: usize,
    leftovers_before_restart: usize,
    orphaned_version_checks: usize,
    new_version_started_without_snapshot_flag: usize,
    /// Kills after which a status.json was there (and parsed).
    status_files: usize,
}

/// Runs `iterations` kills of Visor during upgrades along a chain of versions and checks the
/// invariants after each; returns what happened.
fn kill_loop(name: &str, profile: Profile, iterations: usize) -> Tally {
    let seed = seed(name);
    let mut rng = XorShift::new(seed);
    let mut env = Env::new(name);
    env.write_config(
        "statusPollIntervalMilliseconds = 20\nupgradePollIntervalMilliseconds = 10\nstopSignalTimeoutSeconds = 5\nrestartsDelaySeconds = 0\n",
    );
    // Each iteration moves the chain on by one to three versions; spare ones keep it going.
    let count = 3 * iterations + 6;
    make_chain(&env, count, profile);
    let before = snapshot_home(&env.home);
    let mut tally = Tally::default();
    let mut cur = 0usize;
    let mut rec_mark = 0usize;
    let mut records = RecordReader::new(&env);
    env.start_visor();
    let started = Instant::now();
    for iteration in 0..iterations {
        // The core of version `cur` has been (or is being) started by this Visor instance.
        let want = version_name(cur);
        wait_for(&format!("core {want} to start"), DEADLINE, || {
            records
                .core_starts_since(rec_mark)
                .iter()
                .any(|r| r.version() == want)
                .then_some(())
        });
        let log_mark = log_len(&env);
        let delay = rng.below(profile.window_ms + 1);
        std::thread::sleep(Duration::from_millis(delay));
        env.signal_visor(libc::SIGKILL);
        env.visor.as_mut().unwrap().wait().unwrap();
        tally.kills += 1;

        let next = version_name(cur + 1);
        let killed_log = log_since(&env, log_mark);
        let phase = phase_of(&killed_log, cur);
        *tally.phases.entry(phase).or_default() += 1;
        let context = format!(
            "{name} iteration {iteration} (seed {seed}, kill after {delay} ms, phase {phase:?})"
        );

        // The supervise folder: the lock died with Visor, and status.json parses.
        let supervise = zeta_visor::home::supervise_folder::SuperviseFolder::new(&env.home);
        // The lock dies with Visor; a child it was forking when killed holds the lock's file
        // description until its exec closes it, so allow the same short time as for the
        // simulator processes.
        wait_until(
            &format!("{context}: the lock of the killed Visor to be free"),
            SURVIVOR_LIMIT,
            || supervise.holder() == Ok(None),
        );
        if let Ok(text) = fs::read_to_string(supervise.status_file()) {
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "{context}: status.json does not parse: {text:?}"
            );
            tally.status_files += 1;
        }

        // No simulator process outlives Visor by more than the limit.
        let pids = records.pids_since(rec_mark);
        if pids
            .iter()
            .any(|(pid, mode)| mode == "version" && alive(*pid))
        {
            tally.orphaned_version_checks += 1;
        }
        wait_until(
            &format!("{context}: every simulator process to exit"),
            SURVIVOR_LIMIT,
            || pids.iter().all(|(pid, _)| !alive(*pid)),
        );

        // `current` points at a complete folder: the last version Visor logged as switched to
        // (the one it ran if none), or the one it logged it was switching to.
        let run = current_run_config(&env.home);
        // The highest version whose log line `before{version}after` the killed Visor wrote.
        let last_logged = |before: &str, after: &str| {
            (cur + 1..count)
                .rev()
                .find(|k| killed_log.contains(&format!("{before}{}{after}", version_name(*k))))
        };
        let switched = last_logged("current now points at ", ";").unwrap_or(cur);
        let switching = last_logged("switching to ", " ")
            .unwrap_or(cur)
            .max(switched);
        assert!(
            run.name == version_name(switched) || run.name == version_name(switching),
            "{context}: current runs {}, Visor had switched to {} and was switching to {}",
            run.name,
            version_name(switched),
            version_name(switching)
        );
        let running: usize = run.name[1..].parse().unwrap();
        if running == cur {
            tally.current_old += 1;
        } else {
            tally.current_new += 1;
        }
        let waiting_at_block =
            running == cur && killed_log.contains(&format!("is ready for {next};"));
        if !temp_leftovers(&env.home, None).is_empty() {
            tally.leftovers_before_restart += 1;
        }

        // The next start: no leftovers, the version `current` points at, and then the upgrade
        // to the following version (the core is, or soon will be, at its upgrade block).
        rec_mark = records.refresh().len();
        let restart_log_mark = log_len(&env);
        env.start_visor();
        let fresh = env.visor_pid();
        wait_until(
            &format!("{context}: restarted visor to read current"),
            DEADLINE,
            || log_since(&env, restart_log_mark).contains("home: current is"),
        );
        let leftovers = temp_leftovers(&env.home, Some(fresh));
        assert!(
            leftovers.is_empty(),
            "{context}: left after restart: {leftovers:?}"
        );
        assert_eq!(
            supervise.holder(),
            Ok(Some(fresh as u32)),
            "{context}: lock"
        );
        let first = wait_for(
            &format!("{context}: first core after restart"),
            DEADLINE,
            || records.core_starts_since(rec_mark).into_iter().next(),
        );
        assert_eq!(
            first.version(),
            run.name,
            "{context}: restart ran another version"
        );
        if running > cur
            && !first
                .args()
                .iter()
                .any(|a| a == "--snapshot.load-from-block-height")
        {
            tally.new_version_started_without_snapshot_flag += 1;
        }
        let following = version_name(running + 1);
        records.wait_upgrade_from_its_block(
            &following,
            1000 * (running + 1) as u64,
            rec_mark,
            &context,
        );
        if waiting_at_block {
            tally.completed_after_restart += 1;
        }
        assert!(env.visor_running(), "{context}: visor exited after restart");
        cur = running + 1;
        assert!(cur + 2 < count, "{context}: chain too short");
    }

    // A clean stop at the end, then nothing is running and HOME holds what it held.
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    wait_until("no simulator left at the end", SURVIVOR_LIMIT, || {
        records.pids_since(0).iter().all(|(pid, _)| !alive(*pid))
    });
    let after = snapshot_home(&env.home);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files in HOME changed"
    );
    assert!(before == after, "a file in HOME changed content");
    println!(
        "{name}: {} kills in {:.1} s; phases {:?}; current old {} / new {}; restarts at the upgrade block, completed {}; \
         .visor-tmp leftovers before restart {} (all removed at start); version checks orphaned at kill {} (exit on their own); \
         new version restarted without the snapshot flag {}; status.json present and parsing after {} kills, lock free after every kill",
        tally.kills,
        started.elapsed().as_secs_f64(),
        tally.phases,
        tally.current_old,
        tally.current_new,
        tally.completed_after_restart,
        tally.leftovers_before_restart,
        tally.orphaned_version_checks,
        tally.new_version_started_without_snapshot_flag,
        tally.status_files
    );
    // Every simulator is gone; emptying the record keeps Env's drop from signalling pids that
    // the system may since have handed to other processes.
    fs::write(env.record_file(), "").unwrap();
    tally
}

#[test]
fn sigkill_at_random_moments_of_upgrades() {
    let profile = Profile {
        ready_after_ms: 150,
        exit_delay_ms: 150,
        version_delay_ms: 0,
        data_node: false,
        window_ms: 380,
    };
    let tally = kill_loop("killcore", profile, iterations_per_test());
    assert_eq!(tally.kills, iterations_per_test());
}

#[test]
fn sigkill_at_random_moments_of_upgrades_with_a_data_node() {
    let profile = Profile {
        ready_after_ms: 150,
        exit_delay_ms: 100,
        version_delay_ms: 0,
        data_node: true,
        window_ms: 330,
    };
    let tally = kill_loop("killdn", profile, iterations_per_test());
    assert_eq!(tally.kills, iterations_per_test());
}

#[test]
fn sigkill_at_random_moments_while_the_folder_is_checked() {
    // The core is ready before the folder check (a slow `zeta version`) has finished, so the
    // stop waits for the check: kills land in the check, the stop and the switch.
    let profile = Profile {
        ready_after_ms: 40,
        exit_delay_ms: 50,
        version_delay_ms: 150,
        data_node: false,
        window_ms: 260,
    };
    let tally = kill_loop("killcheck", profile, iterations_per_test());
    assert_eq!(tally.kills, iterations_per_test());
}

// ---------------------------------------------------------------------------------------------
// The core's RPC misbehaving
// ---------------------------------------------------------------------------------------------

#[test]
fn deleted_core_socket_keeps_visor_running_and_a_crash_is_still_handled() {
    let mut env = Env::new("sockgone");
    env.write_config(&quick_config("restartsDelaySeconds = 0"));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let core = env.wait_starts("core", 1)[0].pid();

    // The file goes; the kept-alive connection still reaches the core, so answers continue.
    fs::remove_file(env.socket()).unwrap();
    env.control_write("v1", "announce", "v2@500");
    env.wait_log("upgrade: release v2 accepted at block 500");

    // The core stops answering (frozen): after the 5 s call deadline Visor says so, and a new
    // connection cannot be made as the file is gone. Visor keeps running all the same.
    unsafe {
        libc::kill(core as i32, libc::SIGSTOP);
    }
    env.wait_log("rpc: core stopped answering");
    assert!(env.visor_running());
    unsafe {
        libc::kill(core as i32, libc::SIGCONT);
    }
    assert!(env.visor_running());

    // A crash of that core is still seen and handled: a restart, whose core binds again.
    unsafe {
        libc::kill(core as i32, libc::SIGKILL);
    }
    env.wait_log("supervise: core exited unexpectedly (killed by SIGKILL)");
    let cores = env.wait_starts("core", 2);
    assert_ne!(cores[1].pid(), core);
    wait_until("the restarted core to answer", DEADLINE, || {
        env.log().matches("rpc: core is answering").count() >= 2
    });
    assert!(env.visor_running());
}

/// A home whose core answers each call after `delay`, with a 6 s first-connection budget.
fn slow_rpc_env(name: &str, delay: &str) -> Env {
    let mut env = Env::new(name);
    env.write_config(&quick_config(
        "maxNumberOfFirstConnectionRetries = 3\nlogLevel = \"debug\"",
    ));
    env.add_version(Version::new("genesis", "v1").flags(&["--slow-rpc", delay]));
    env.start_visor();
    env
}

#[test]
fn an_answer_just_within_the_5_s_deadline_counts() {
    let mut env = slow_rpc_env("slow4900", "4900ms");
    env.wait_log("rpc: core is answering");
    assert!(
        !env.log().contains("no full answer within"),
        "{}",
        env.log()
    );
    assert!(env.visor_running());
}

#[test]
fn an_answer_past_the_5_s_deadline_is_a_failure() {
    let mut env = slow_rpc_env("slow5500", "5500ms");
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    let log = env.log();
    assert!(log.contains("no full answer within 5 s"), "{log}");
    assert!(!log.contains("rpc: core is answering"), "{log}");
    assert!(
        log.contains(&format!("core not answering on {}", env.socket().display())),
        "{log}"
    );
    assert!(env.live_sims().is_empty());
}

#[test]
fn a_hanging_rpc_exhausts_a_small_first_connection_budget() {
    let mut env = Env::new("hang");
    env.write_config(&quick_config("maxNumberOfFirstConnectionRetries = 1"));
    env.add_version(Version::new("genesis", "v1").flags(&["--hang-rpc"]));
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    let log = env.log();
    assert!(
        log.contains(&format!(
            "rpc: core not answering on {} after 2 s (maxNumberOfFirstConnectionRetries=1)",
            env.socket().display()
        )),
        "{log}"
    );
    assert!(env.live_sims().is_empty());
}

#[test]
fn an_answer_that_is_not_json_is_a_failure() {
    let mut env = Env::new("garble");
    env.write_config(&quick_config(
        "maxNumberOfFirstConnectionRetries = 1\nlogLevel = \"debug\"",
    ));
    env.add_version(Version::new("genesis", "v1").flags(&["--garble-rpc"]));
    env.start_visor();
    assert_eq!(env.wait_visor_exit(DEADLINE), 1);
    let log = env.log();
    assert!(
        log.contains("answer is not an UpgradeStatus result"),
        "{log}"
    );
    assert!(!log.contains("rpc: core is answering"), "{log}");
    assert!(env.live_sims().is_empty());
}

// ---------------------------------------------------------------------------------------------
// A read-only home
// ---------------------------------------------------------------------------------------------

#[test]
fn a_read_only_home_keeps_binaries_stopped_and_current_intact_until_writable() {
    let mut env = Env::new("rohome");
    let mount = match Tmpfs::mount(&env.home) {
        Ok(mount) => mount,
        Err(reason) => {
            println!("SKIPPED a_read_only_home_...: {reason}; a read-only home needs a mount");
            return;
        }
    };
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@77");
    env.wait_log("upgrade: folder for v2 is ready");

    // The disk turns read-only just before the upgrade block.
    mount.remount("ro");
    assert!(fs::write(env.home.join("probe"), b"").is_err());
    env.control_write("v1", "ready", "");
    env.wait_log("upgrade: cannot switch current");
    let log = env.log();
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(log.contains("retrying in 10 s"), "{log}");
    assert!(env.visor_running());
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(current_run_config(&env.home).name, "v1");
    assert!(env.live_sims().is_empty(), "binaries must stay stopped");
    assert_eq!(
        env.starts("core").len(),
        1,
        "the old version is not restarted"
    );

    // Writable again: the retry switches and starts v2 from the upgrade block.
    mount.remount("rw");
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(cores[1].args().last().map(String::as_str), Some("77"));
    assert_eq!(env.current_target(), Path::new("v2"));
    assert!(temp_leftovers(&env.home, None).is_empty());
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    drop(mount);
}
