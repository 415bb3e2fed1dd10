//! Soak: many consecutive upgrades with the simulator at the fastest poll intervals, proving
//! that Visor does not leak: its open file descriptors, threads and resident memory, read
//! from `/proc/<visor pid>/` at regular pause points, stay flat.
//!
//! Versions v0 (genesis) .. vN each accept the next version at once and are ready for it
//! 30-50 ms after they start. At every `VISOR_SOAK_SAMPLE_EVERY`-th version the core waits for
//! a control file, so the test can sample a quiet Visor (folder check finished, old waiter
//! thread gone) before letting the upgrade go on. Flat means: threads and descriptors within
//! ±10 % of the baseline (for single-digit counts that is "equal"), VmRSS within ±10 % plus
//! an absolute slack of `RSS_SLACK_KIB` (256 KiB) for allocator noise. The baseline is the
//! first sample after warm-up; the sample at version 0 is printed but not compared, because
//! the first upgrades touch pages once (tens of KiB) that every later one reuses.
//!
//! The soak runs 10 upgrades by default and 200 with `VISOR_SLOW_TESTS=1` (as CI runs it);
//! `VISOR_SOAK_UPGRADES` sets another number and `VISOR_SOAK_SAMPLE_EVERY` the sampling
//! (default a fifth of the upgrades, at most 40, or 100 from 500 upgrades on);
//! `bench/soak.sh` runs 1,000 on the release build.

use crate::common::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

/// Allowed RSS growth on top of 10 %, for allocator and page-cache noise.
const RSS_SLACK_KIB: u64 = 256;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Reads a growing log file from where the last read stopped.
struct Tail {
    file: fs::File,
    text: String,
}

impl Tail {
    fn open(env: &Env) -> Tail {
        let file = wait_for("visor log file", DEADLINE, || {
            fs::File::open(env.log_file()).ok()
        });
        Tail {
            file,
            text: String::new(),
        }
    }
    /// Waits until the log, from where `consume` last cut it, holds `needle`; then drops
    /// everything up to and including it.
    fn consume(&mut self, needle: &str, visor: &mut Env) {
        wait_until(
            &format!("visor log to contain {needle:?}"),
            DEADLINE,
            || {
                let mut more = String::new();
                let _ = self.file.read_to_string(&mut more);
                self.text.push_str(&more);
                assert!(visor.visor_running(), "visor exited");
                self.text.contains(needle)
            },
        );
        let at = self.text.find(needle).unwrap() + needle.len();
        self.text.drain(..at);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    upgrades: usize,
    threads: u64,
    fds: u64,
    rss_kib: u64,
}

fn status_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc status"))
}

fn thread_names(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Samples Visor once it is quiet: no folder-check worker and one child waiter. Threads and
/// descriptors are the least of three reads 10 ms apart, so that a descriptor open for a
/// moment (the config watcher reading config.toml) is not counted.
fn sample(pid: i32, upgrades: usize) -> Sample {
    wait_until(
        "visor to be quiet (no worker, one waiter)",
        DEADLINE,
        || {
            let names = thread_names(pid);
            !names.iter().any(|n| n == "visor-check")
                && names.iter().filter(|n| n.starts_with("visor-wait")).count() == 1
        },
    );
    let mut best: Option<Sample> = None;
    for _ in 0..3 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
        let now = Sample {
            upgrades,
            threads: status_field(&status, "Threads:"),
            fds,
            rss_kib: status_field(&status, "VmRSS:"),
        };
        best = Some(match best {
            None => now,
            Some(b) => Sample {
                upgrades,
                threads: b.threads.min(now.threads),
                fds: b.fds.min(now.fds),
                rss_kib: now.rss_kib,
            },
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    best.unwrap()
}

fn within(value: u64, base: u64, slack: u64) -> bool {
    let allowed = base / 10 + slack;
    value.abs_diff(base) <= allowed
}

#[test]
fn upgrades_in_a_row_keep_descriptors_threads_and_memory_flat() {
    let upgrades = campaign_size("VISOR_SOAK_UPGRADES", 10, 200).max(2);
    let every = env_number(
        "VISOR_SOAK_SAMPLE_EVERY",
        if upgrades >= 500 {
            100
        } else {
            (upgrades / 5).clamp(1, 40)
        },
    )
    .clamp(1, upgrades);
    let mut env = Env::new("soak");
    env.write_config(
        "statusPollIntervalMilliseconds = 10\nupgradePollIntervalMilliseconds = 10\nstopSignalTimeoutSeconds = 5\n",
    );
    for k in 0..=upgrades {
        let folder = env.home.join(if k == 0 {
            "genesis".to_string()
        } else {
            format!("v{k}")
        });
        fs::create_dir_all(&folder).unwrap();
        symlink(SIM, folder.join("zeta")).unwrap();
        let mut options = format!(
            "--sim-version v{k} --socket {} --record {}",
            env.socket().display(),
            env.record_file().display()
        );
        if k < upgrades {
            options.push_str(&format!(" --announce v{}@{}", k + 1, 10 * (k + 1)));
            if k % every == 0 {
                options.push_str(&format!(
                    " --control-dir {}",
                    env.control(&k.to_string()).display()
                ));
            } else {
                options.push_str(&format!(" --ready-after {}ms", 30 + (k * 7) % 21));
            }
        }
        fs::write(folder.join("sim-options"), options + "\n").unwrap();
        fs::write(
            folder.join("run-config.toml"),
            format!(
                "name = \"v{k}\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n    args = [\"start\"]\n  [zeta.rpc]\n    socketPath = \"{}\"\n    httpPath = \"/rpc\"\n",
                env.socket().display()
            ),
        )
        .unwrap();
    }

    env.start_visor();
    let pid = env.visor_pid();
    let mut tail = Tail::open(&env);
    let started = Instant::now();
    let mut samples = Vec::new();
    for k in (0..=upgrades)
        .step_by(every)
        .chain(std::iter::once(upgrades))
    {
        if samples.last().is_some_and(|s: &Sample| s.upgrades == k) {
            continue;
        }
        tail.consume(&format!(" release=v{k} path="), &mut env);
        if k < upgrades {
            tail.consume(
                &format!("upgrade: folder for v{} is ready", k + 1),
                &mut env,
            );
        } else {
            tail.consume("rpc: core is answering", &mut env);
        }
        let s = sample(pid, k);
        println!(
            "after {:>5} upgrades ({:>6.1} s): threads {:>2}, fds {:>2}, VmRSS {:>6} KiB",
            s.upgrades,
            started.elapsed().as_secs_f64(),
            s.threads,
            s.fds,
            s.rss_kib
        );
        samples.push(s);
        if k < upgrades {
            env.control_write(&k.to_string(), "ready", "");
        }
    }
    let elapsed = started.elapsed();

    // Every version ran once, in order: no restart, no skipped or repeated upgrade.
    let versions: Vec<String> = env
        .starts("core")
        .iter()
        .map(|r| r.version().to_string())
        .collect();
    let expected: Vec<String> = (0..=upgrades).map(|k| format!("v{k}")).collect();
    assert_eq!(versions, expected);
    assert!(!env.log().contains("exited unexpectedly"));

    let base = samples[1.min(samples.len() - 1)];
    for s in &samples[1..] {
        assert!(
            within(s.threads, base.threads, 0),
            "threads not flat: {s:?} vs {base:?}"
        );
        assert!(
            within(s.fds, base.fds, 0),
            "fds not flat: {s:?} vs {base:?}"
        );
        assert!(
            within(s.rss_kib, base.rss_kib, RSS_SLACK_KIB),
            "VmRSS not flat: {s:?} vs {base:?}"
        );
    }
    println!(
        "{upgrades} upgrades in {:.1} s ({:.1} ms each); baseline after {} upgrades",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / upgrades as f64,
        base.upgrades
    );

    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    assert!(env.live_sims().is_empty());
    // Every simulator is gone; emptying the record keeps Env's drop from signalling pids that
    // the system may since have handed to other processes.
    fs::write(env.record_file(), "").unwrap();
}
