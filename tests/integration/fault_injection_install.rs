//! Fault injection against auto-install inside `visor run` (visor(1), AUTO-INSTALL): what
//! survives when an install is interrupted or the home folder fails under it.
//!
//! - SIGKILL of Visor at random moments while it installs an accepted release with prefetch
//!   from a fake GitHub on 127.0.0.1 (common/fake_github.rs): during the release lookup (its
//!   answer stalls half-way), during the download of an asset of about 1.4 MiB (which stalls
//!   half-way too), during the zip extraction (400 small files, each fsynced) and the version
//!   check (`zeta version` takes 80 ms), and around the rename of the finished folder into
//!   place. A fifth of the kills is aimed at each of these (a random delay after the log line
//!   that opens the step), a fifth lands anywhere in the install and the upgrade that follows
//!   it. After each kill: no simulator process outlives
//!   Visor by more than 2 s; HOME holds either no folder for the tag or a complete, ready one
//!   (its run-config parses, its binary reports the tag, every unpacked byte is there), never
//!   a half-made one; `current` points at a folder whose run-config parses. The next start
//!   leaves no `.visor-tmp-*` behind and completes the upgrade when the core reports ready.
//! - A home folder that fills up during the install (a 2 MiB tmpfs; the download larger than
//!   the free space, or a small zip whose unpacked file is larger), and one that turns
//!   read-only during the install: the install fails with an error naming the path, leaves
//!   no `.visor-tmp-*` and no half-made folder, Visor keeps running the old version, and once
//!   the disk is usable again the install at the upgrade block succeeds. These need a mount
//!   (root); they are skipped with a printed reason otherwise.
//!
//! The random moments come from a seeded xorshift generator; the seed ([`seed`]: fixed
//! unless `VISOR_SEED` is set) is printed, and `VISOR_SEED=<seed>` replays the same kill
//! delays. The number of kills is
//! [`QUICK_KILLS`] by default and [`KILLS`] with `VISOR_SLOW_TESTS=1` (as CI runs it);
//! `VISOR_FAULT_KILLS` sets another.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zeta_visor::config::run_config::RunConfig;
use zip::write::SimpleFileOptions;

use crate::common::fake_github::{FakeGithub, Reply};
use crate::common::faults::*;
use crate::common::*;

/// Kills by default: one aimed at each step.
const QUICK_KILLS: usize = 5;
/// Kills per CI run (`VISOR_SLOW_TESTS=1`); `VISOR_FAULT_KILLS` sets another number.
const KILLS: usize = 30;

/// Parent-death delivery plus the simulator's exit delay must fit in this: a node process
/// gets SIGTERM as its parent-death signal, so it does not outlive a killed Visor.
const SURVIVOR_LIMIT: Duration = Duration::from_secs(2);

/// The release lookup's answer stops half-way for this long.
const LOOKUP_STALL_MS: u64 = 150;
/// The asset download stops half-way for this long.
const DOWNLOAD_STALL_MS: u64 = 200;
/// `zeta version` (the install's version check) takes this long.
const VERSION_DELAY_MS: u64 = 80;
/// Each version is ready for the next this long after its core starts.
const READY_AFTER_MS: u64 = 700;
/// On SIGTERM each core waits this long to exit.
const EXIT_DELAY_MS: u64 = 50;
/// Unaimed kills are spread over this long after the core starts: the install, the ready
/// moment, the stop, the switch and the new start.
const WINDOW_MS: u64 = 1000;
/// Kills aimed at the extraction (400 small files, each fsynced) and the version check fall
/// this long after the SHA-256 line at most.
const UNPACK_WINDOW_MS: u64 = 220;
/// Kills aimed at the rename fall this long after the version line at most: the fsyncs of
/// the new folders, the rename and the fsync of HOME take a millisecond or two.
const RENAME_WINDOW_US: u64 = 2000;
/// The size of the extra file in each release zip, stored uncompressed so the download and
/// the extraction take time.
const PAD_BYTES: usize = 1 << 20;
/// The number of small files in each release zip, and their size.
const PARTS: usize = 400;
const PART_BYTES: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Random moments
// ---------------------------------------------------------------------------------------------

fn kills() -> usize {
    campaign_size("VISOR_FAULT_KILLS", QUICK_KILLS, KILLS).max(1)
}

// ---------------------------------------------------------------------------------------------
// Releases on the fake GitHub
// ---------------------------------------------------------------------------------------------

fn version_name(k: usize) -> String {
    format!("v{k}")
}

fn release_path(tag: &str) -> String {
    format!("/repos/zeta-protocol/zeta/releases/tags/{tag}")
}

fn asset_name() -> String {
    zeta_visor::install::asset_file_name("zeta-{os}-{arch}.zip", "v1").expect("supported arch")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A zip of these files: (name, data, mode, deflated).
fn zip_of(files: &[(&str, &[u8], u32, bool)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode, deflated) in files {
        let method = if *deflated {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(*mode);
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The release JSON of `tag`, listing one zip asset at the fake's `/download/<tag>/<name>`
/// with the right SHA-256 digest.
fn release_json(github: &FakeGithub, tag: &str, zip: &[u8]) -> String {
    let name = asset_name();
    serde_json::json!({
        "tag_name": tag,
        "assets": [{
            "name": name,
            "url": format!("{}/repos/zeta-protocol/zeta/releases/assets/1", github.url()),
            "browser_download_url": format!("{}/download/{tag}/{name}", github.url()),
            "content_type": "application/zip",
            "size": zip.len(),
            "digest": format!("sha256:{}", sha256_hex(zip)),
        }]
    })
    .to_string()
}

/// Scripts release `tag` on the fake: the lookup's replies and the asset's download.
fn publish(github: &FakeGithub, tag: &str, lookup: Vec<Reply>, download: Reply) {
    github.route(&release_path(tag), lookup);
    github.route(&format!("/download/{tag}/{}", asset_name()), vec![download]);
}

/// The `zeta` of version `k` in the kill campaign: the simulator, accepting version k+1 at
/// once and ready for it after [`READY_AFTER_MS`].
fn chain_script(env: &Env, k: usize) -> String {
    format!(
        "#!/bin/sh\nexec '{SIM}' --sim-version {} --socket '{}' --record '{}' --exit-delay {EXIT_DELAY_MS}ms --version-delay {VERSION_DELAY_MS}ms --announce {}@{} --ready-after {READY_AFTER_MS}ms \"$@\"\n",
        version_name(k),
        env.socket().display(),
        env.record_file().display(),
        version_name(k + 1),
        1000 * (k + 1)
    )
}

/// Incompressible bytes, the same in every run.
fn pad_bytes(len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(0x5eed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// The versions of the kill campaign: genesis (v0) in HOME, every later one only on the fake
/// GitHub, published a few ahead of the running one.
struct Chain {
    pad: Vec<u8>,
    published: usize,
}

impl Chain {
    fn new(env: &Env) -> Chain {
        let genesis = env.home.join("genesis");
        fs::create_dir_all(&genesis).unwrap();
        let binary = genesis.join("zeta");
        fs::write(&binary, chain_script(env, 0)).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            genesis.join("run-config.toml"),
            format!(
                "name = \"v0\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n    args = [\"start\", \"--home\", \"{}\"]\n  [zeta.rpc]\n    socketPath = \"{}\"\n    httpPath = \"/rpc\"\n",
                env.node_home(),
                env.socket().display()
            ),
        )
        .unwrap();
        Chain {
            pad: pad_bytes(PAD_BYTES),
            published: 0,
        }
    }

    /// Publishes versions up to `last`, and forgets the assets of versions before `oldest`.
    fn publish_upto(&mut self, github: &FakeGithub, env: &Env, last: usize, oldest: usize) {
        while self.published < last {
            self.published += 1;
            let k = self.published;
            let script = chain_script(env, k);
            let parts = self.parts();
            let mut files: Vec<(&str, &[u8], u32, bool)> = vec![
                ("zeta", script.as_bytes(), 0o755, true),
                ("pad.bin", &self.pad, 0o644, false),
            ];
            files.extend(
                parts
                    .iter()
                    .map(|(name, data)| (name.as_str(), *data, 0o644, true)),
            );
            let zip = zip_of(&files);
            // Both the lookup and the download stop half-way for a while.
            let json = release_json(github, &version_name(k), &zip);
            publish(
                github,
                &version_name(k),
                vec![Reply::Stalled {
                    body: json.into_bytes(),
                    pause: Duration::from_millis(LOOKUP_STALL_MS),
                }],
                Reply::Stalled {
                    body: zip,
                    pause: Duration::from_millis(DOWNLOAD_STALL_MS),
                },
            );
        }
        for k in oldest.saturating_sub(3)..oldest {
            github.route(
                &format!("/download/{}/{}", version_name(k), asset_name()),
                vec![Reply::status(410, "Gone")],
            );
        }
    }

    /// The small files of each release zip (each is fsynced when unpacked, which makes the
    /// extraction take a while): `lib/part-NNN`, slices of the pad.
    fn parts(&self) -> Vec<(String, &[u8])> {
        (0..PARTS)
            .map(|i| {
                (
                    format!("lib/part-{i:03}"),
                    &self.pad[i * PART_BYTES..(i + 1) * PART_BYTES],
                )
            })
            .collect()
    }

    /// Checks that `folder` is a complete install of version `k`: its run-config parses and
    /// names the tag, its binary reports the tag, and every unpacked file is whole.
    fn check_complete(&self, folder: &Path, k: usize) -> Result<(), String> {
        let tag = version_name(k);
        let run = RunConfig::load(&folder.join("run-config.toml"))
            .map_err(|e| format!("{}: run-config does not parse: {e:?}", folder.display()))?;
        if run.name != tag {
            return Err(format!(
                "{}: run-config names {}",
                folder.display(),
                run.name
            ));
        }
        let reported = reported_version(&run.core.path)?;
        if reported != tag {
            return Err(format!("{}: binary reports {reported}", folder.display()));
        }
        let pad = fs::read(folder.join("pad.bin"))
            .map_err(|e| format!("{}: pad.bin: {e}", folder.display()))?;
        if pad != self.pad {
            return Err(format!(
                "{}: pad.bin has {} of {} bytes or differs",
                folder.display(),
                pad.len(),
                self.pad.len()
            ));
        }
        for (name, data) in self.parts() {
            if fs::read(folder.join(&name)).ok().as_deref() != Some(data) {
                return Err(format!(
                    "{}: {name} is missing or differs",
                    folder.display()
                ));
            }
        }
        Ok(())
    }
}

/// What `<binary> version --output json` reports.
fn reported_version(binary: &Path) -> Result<String, String> {
    let output = Command::new(binary)
        .args(["version", "--output", "json"])
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{} version: {e}", binary.display()))?;
    Ok(value["version"].as_str().unwrap_or("").to_owned())
}

// ---------------------------------------------------------------------------------------------
// Watching Visor and the simulator
// ---------------------------------------------------------------------------------------------

/// Visor's log, read incrementally, so that a kill can follow a log line within a
/// millisecond or so.
struct LogTail {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl LogTail {
    fn new(env: &Env) -> LogTail {
        LogTail {
            path: env.log_file(),
            bytes: Vec::new(),
        }
    }

    /// Reads what was appended; returns the length so far.
    fn refresh(&mut self) -> usize {
        if let Ok(mut file) = fs::File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.bytes.len() as u64)).is_ok() {
                let _ = file.read_to_end(&mut self.bytes);
            }
        }
        self.bytes.len()
    }

    fn since(&self, offset: usize) -> String {
        String::from_utf8_lossy(self.bytes.get(offset..).unwrap_or_default()).into_owned()
    }

    /// The first complete line from `offset` on that satisfies `matches`: the offset just
    /// after it, and the line.
    fn find_line(&self, offset: usize, matches: impl Fn(&str) -> bool) -> Option<(usize, String)> {
        let mut at = offset;
        for line in self
            .bytes
            .get(offset..)
            .unwrap_or_default()
            .split_inclusive(|b| *b == b'\n')
        {
            at += line.len();
            let text = String::from_utf8_lossy(line);
            if line.ends_with(b"\n") && matches(&text) {
                return Some((at, text.into_owned()));
            }
        }
        None
    }

    /// Polls (every millisecond, or with `spin` without pausing) until a line from `offset` on
    /// satisfies `matches`; returns the offset just after that line, and the line.
    fn wait_line(
        &mut self,
        what: &str,
        offset: usize,
        spin: bool,
        matches: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.refresh();
            if let Some(found) = self.find_line(offset, &matches) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {DEADLINE:?} waiting for {what} in the log");
            }
            if spin {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The wall-clock time of a text log line (`2026-11-24T20:49:00.123Z INFO ...`) in
/// milliseconds since the epoch; the line is taken to be from the last 12 hours.
fn stamp_ms(line: &str) -> Option<u128> {
    let clock = line.get(11..23)?;
    let field = |range: std::ops::Range<usize>| clock.get(range)?.parse::<u128>().ok();
    let of_day = ((field(0..2)? * 60 + field(3..5)?) * 60 + field(6..8)?) * 1000 + field(9..12)?;
    let now = epoch_ms();
    const DAY: u128 = 86_400_000;
    let mut stamp = now - now % DAY + of_day;
    if stamp > now + DAY / 2 {
        stamp -= DAY;
    }
    Some(stamp)
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Sleeps until the wall clock reaches `target` (ms since the epoch); true when it already
/// had.
fn sleep_until_ms(target: u128) -> bool {
    let now = epoch_ms();
    if now >= target {
        return true;
    }
    std::thread::sleep(Duration::from_millis((target - now) as u64));
    false
}

// ---------------------------------------------------------------------------------------------
// SIGKILL during installs
// ---------------------------------------------------------------------------------------------

/// Where a kill is aimed: anywhere, or a random delay after the log line that opens a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Aim {
    Anywhere,
    Lookup,
    Download,
    Unpack,
    Rename,
}

const AIMS: [Aim; 5] = [
    Aim::Anywhere,
    Aim::Lookup,
    Aim::Download,
    Aim::Unpack,
    Aim::Rename,
];

/// Where a kill landed in the install of `next` and the upgrade to it, judged from the
/// killed Visor's own log lines since the core of the version before started (each line is
/// written before the step it announces).
fn phase_of(log: &str, next: &str) -> &'static str {
    let has = |needle: String| log.contains(&needle);
    if log
        .lines()
        .any(|l| l.contains("supervise: started core") && l.contains(&format!(" release={next} ")))
    {
        "9 new version started"
    } else if has(format!("current now points at {next};")) {
        "8 switched, new core not started"
    } else if has(format!("switching to {next} ")) {
        "7 switching current"
    } else if has(format!("is ready for {next};")) && has(format!("folder for {next} is ready")) {
        "6 installed; core ready, stopping"
    } else if has(format!("folder for {next} is ready")) {
        "5 installed, core not yet ready"
    } else if has(format!("install: {next} installed")) {
        "4b renamed into place"
    } else if has(format!("install: binary reports version {next}")) {
        "4a version checked: fsync and rename"
    } else if has("install: unpacked ".into()) {
        "3 unpacked: run-config and version check"
    } else if has("install: SHA-256 of ".into()) {
        "2b verified: extracting"
    } else if has("install: downloading ".into()) {
        "2a downloading"
    } else if has(format!("install: looking up release {next} ")) {
        "1 release lookup"
    } else if has(format!("release {next} accepted")) {
        "0b accepted, folder check"
    } else {
        "0a started, nothing accepted yet"
    }
}

#[derive(Default)]
struct Tally {
    kills: usize,
    /// Phase → (kills, of which the folder for the tag was in place right after).
    phases: BTreeMap<&'static str, (usize, usize)>,
    aims: BTreeMap<String, usize>,
    leftovers_before_restart: usize,
    current_old: usize,
    current_new: usize,
    installed_again: usize,
    found_ready: usize,
    orphaned_version_checks: usize,
    /// Kills whose moment had passed when the test saw the line it counts from.
    late: usize,
}

/// Kills Visor `kills` times while it installs releases along a chain of versions, checking
/// the invariants after each kill and after each restart.
fn kill_campaign(name: &str, kills: usize) -> Tally {
    let seed = seed(name);
    let mut rng = XorShift::new(seed);
    let github = FakeGithub::start();
    let mut env = Env::new(name);
    env.write_config(&format!(
        "statusPollIntervalMilliseconds = 20\nupgradePollIntervalMilliseconds = 10\nstopSignalTimeoutSeconds = 5\nrestartsDelaySeconds = 0\n[autoInstall]\nenabled = true\nprefetch = true\napiUrl = \"{}\"\n",
        github.url()
    ));
    let mut chain = Chain::new(&env);
    chain.publish_upto(&github, &env, 3, 0);
    let config_before = fs::read(env.home.join("config.toml")).unwrap();
    let genesis_before = fs::read(env.home.join("genesis/run-config.toml")).unwrap();

    let mut tally = Tally::default();
    let mut verified: BTreeSet<usize> = BTreeSet::new();
    let mut records = RecordReader::new(&env);
    let mut log = LogTail::new(&env);
    let mut cur = 0usize;
    let mut rec_mark = 0usize;
    let mut instance_mark = 0usize;
    env.start_visor();
    let started = Instant::now();
    for iteration in 0..kills {
        let want = version_name(cur);
        let next = version_name(cur + 1);
        let aim = AIMS[iteration % AIMS.len()];

        // The core of `cur` runs under this Visor; it accepts `next` at once.
        let core = wait_for(&format!("core {want} to start"), DEADLINE, || {
            records
                .core_starts_since(rec_mark)
                .into_iter()
                .find(|r| r.version() == want)
        });
        let (region, _) =
            log.wait_line(&format!("core {want} started"), instance_mark, false, |l| {
                l.contains("supervise: started core") && l.contains(&format!(" release={want} "))
            });
        // The kill comes a random delay after the moment the aim starts from: the core's start
        // (its record's wall-clock time), or the time stamp of the log line that opens a step.
        // The rename follows its line within a millisecond or two, finer than the stamps: that
        // line is watched for without pausing from the line before it on (the version check
        // takes 80 ms), and the delay counts from when it is seen.
        let delay = match aim {
            Aim::Anywhere => Duration::from_millis(rng.below(WINDOW_MS + 1)),
            Aim::Lookup => Duration::from_millis(rng.below(LOOKUP_STALL_MS + 1)),
            Aim::Download => Duration::from_millis(rng.below(DOWNLOAD_STALL_MS + 51)),
            Aim::Unpack => Duration::from_millis(rng.below(UNPACK_WINDOW_MS + 1)),
            Aim::Rename => Duration::from_micros(rng.below(RENAME_WINDOW_US + 1)),
        };
        let anchor = match aim {
            Aim::Anywhere => None,
            Aim::Lookup => Some(format!("install: looking up release {next} ")),
            Aim::Download => Some("install: downloading ".to_string()),
            Aim::Unpack => Some("install: SHA-256 of ".to_string()),
            Aim::Rename => Some(format!("install: binary reports version {next}")),
        };
        let late = match (aim, &anchor) {
            (Aim::Rename, Some(anchor)) => {
                let (from, _) = log.wait_line("install: unpacked", region, false, |l| {
                    l.contains("install: unpacked ")
                });
                let already = log
                    .find_line(from, |l| l.contains(anchor.as_str()))
                    .is_some();
                log.wait_line(anchor, from, true, |l| l.contains(anchor.as_str()));
                std::thread::sleep(delay);
                already
            }
            (_, Some(anchor)) => {
                let (_, line) =
                    log.wait_line(anchor, region, false, |l| l.contains(anchor.as_str()));
                let stamp = stamp_ms(&line).unwrap_or_else(|| panic!("no time stamp: {line}"));
                sleep_until_ms(stamp + delay.as_millis())
            }
            (_, None) => sleep_until_ms(u128::from(core.t_ns() / 1_000_000) + delay.as_millis()),
        };
        if late {
            tally.late += 1;
        }
        env.signal_visor(libc::SIGKILL);
        env.visor.as_mut().unwrap().wait().unwrap();
        tally.kills += 1;
        *tally.aims.entry(format!("{aim:?}")).or_default() += 1;

        log.refresh();
        let killed_log = log.since(region);
        let phase = phase_of(&killed_log, &next);
        let context = format!(
            "{name} iteration {iteration} (seed {seed}, aim {aim:?}, kill {delay:?} after, phase {phase:?})"
        );

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

        // HOME holds no folder for the tag or a complete one, and nothing else half-made.
        let mut leftovers = 0;
        for entry in fs::read_dir(&env.home).unwrap().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // `.visor/` is Visor's supervise folder (lock, status, the upgrade mark; see
            // visor(1) FILES), not a half-made folder.
            if [
                "config.toml",
                "current",
                "genesis",
                zeta_visor::home::supervise_folder::FOLDER,
            ]
            .contains(&file_name.as_str())
            {
                continue;
            }
            if file_name.starts_with(".visor-tmp-") {
                leftovers += 1;
                continue;
            }
            let k: usize = file_name
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{context}: unexpected {file_name:?} in HOME"));
            assert!(
                k <= cur + 1,
                "{context}: {file_name} exists before it was accepted"
            );
            if !verified.contains(&k) {
                if let Err(problem) = chain.check_complete(&entry.path(), k) {
                    panic!("{context}: a half-made version folder: {problem}");
                }
                verified.insert(k);
            }
        }
        let installed = env.home.join(&next).exists();
        let slot = tally.phases.entry(phase).or_default();
        slot.0 += 1;
        slot.1 += usize::from(installed);
        if leftovers > 0 {
            tally.leftovers_before_restart += 1;
        }

        // `current` points at a complete folder: the old version, or the new one once Visor
        // said it was switching.
        let run = current_run_config(&env.home);
        let switching = killed_log.contains(&format!("switching to {next} "));
        let switched = killed_log.contains(&format!("current now points at {next};"));
        assert!(
            (run.name == want && !switched) || (run.name == next && switching),
            "{context}: current runs {}, Visor had {}switched",
            run.name,
            if switching { "" } else { "not " }
        );
        let running: usize = run.name[1..].parse().unwrap();
        if running == cur {
            tally.current_old += 1;
        } else {
            tally.current_new += 1;
        }

        // The next start: no leftovers, the version `current` points at, and then the upgrade
        // to the following version once its core is ready.
        rec_mark = records.refresh().len();
        instance_mark = log.refresh();
        env.start_visor();
        let fresh = env.visor_pid();
        // The versions the next iteration may install, published while Visor starts (building
        // the zips takes a while, which must not delay the next kill's moment).
        chain.publish_upto(&github, &env, running + 4, running);
        log.wait_line(
            &format!("{context}: restarted visor to read current"),
            instance_mark,
            false,
            |l| l.contains("home: current is"),
        );
        let left = temp_leftovers(&env.home, Some(fresh));
        assert!(left.is_empty(), "{context}: left after restart: {left:?}");
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
        let following = version_name(running + 1);
        records.wait_upgrade_from_its_block(
            &following,
            1000 * (running + 1) as u64,
            rec_mark,
            &context,
        );
        log.refresh();
        let restarted_log = log.since(instance_mark);
        if restarted_log.contains(&format!(
            "folder for {following} is ready (installed and version checked)"
        )) {
            tally.installed_again += 1;
        } else {
            assert!(
                restarted_log.contains(&format!(
                    "folder for {following} is ready (run-config parsed"
                )),
                "{context}: how did {following} become ready?"
            );
            tally.found_ready += 1;
        }
        assert!(env.visor_running(), "{context}: visor exited after restart");
        cur = running + 1;
    }

    // A clean stop at the end; then nothing is running, HOME holds what the test wrote plus
    // complete version folders, and nothing else.
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    wait_until("no simulator left at the end", SURVIVOR_LIMIT, || {
        records.pids_since(0).iter().all(|(pid, _)| !alive(*pid))
    });
    assert_eq!(
        fs::read(env.home.join("config.toml")).unwrap(),
        config_before
    );
    assert_eq!(
        fs::read(env.home.join("genesis/run-config.toml")).unwrap(),
        genesis_before
    );
    assert!(temp_leftovers(&env.home, None).is_empty());
    for k in 1..=cur {
        chain
            .check_complete(&env.home.join(version_name(k)), k)
            .unwrap_or_else(|problem| panic!("at the end: {problem}"));
    }
    println!(
        "{name}: {} kills in {:.1} s, {} versions installed; aims {:?}",
        tally.kills,
        started.elapsed().as_secs_f64(),
        cur,
        tally.aims
    );
    println!("{name}: phase -> (kills, tag folder in place after the kill):");
    for (phase, (count, installed)) in &tally.phases {
        println!("{name}:   {phase}: {count}, {installed}");
    }
    println!(
        "{name}: half-made folders: 0; .visor-tmp leftovers right after a kill {} (all removed at the next start); \
         current old {} / new {}; after the restart the folder was installed again {} times and found ready {} times; \
         version checks orphaned at kill {} (exit on their own); kills late for their aim {}",
        tally.leftovers_before_restart,
        tally.current_old,
        tally.current_new,
        tally.installed_again,
        tally.found_ready,
        tally.orphaned_version_checks,
        tally.late
    );
    // Every simulator is gone; emptying the record keeps Env's drop from signalling pids that
    // the system may since have handed to other processes.
    fs::write(env.record_file(), "").unwrap();
    tally
}

#[test]
fn sigkill_at_random_moments_of_auto_installs() {
    let kills = kills();
    let tally = kill_campaign("killinstall", kills);
    assert_eq!(tally.kills, kills);
}

// ---------------------------------------------------------------------------------------------
// A home folder that is full or read-only during the install
// ---------------------------------------------------------------------------------------------

/// A tmpfs mounted over a folder, unmounted on drop. Its root is 0755: a tmpfs root is 1777
/// by default, a HOME that Visor refuses.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` over `dir`, or says why it cannot.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount,{options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The `zeta` of v2 for [`Env`]'s simulator wrappers.
fn v2_script(env: &Env) -> String {
    format!(
        "#!/bin/sh\nexec '{SIM}' --sim-version v2 --socket '{}' --record '{}' --control-dir '{}' \"$@\"\n",
        env.socket().display(),
        env.record_file().display(),
        env.control("v2").display()
    )
}

/// A home on a tmpfs of `size` with genesis (v1) and auto-install from `github`, with Visor
/// running and its core answering; None (after printing why) when no tmpfs can be mounted.
/// `minFreeBytes = 0`, so that the file system itself runs full (or read-only) under the
/// install, rather than the free-space check refusing it first.
fn home_on_tmpfs(name: &str, size: &str, github: &FakeGithub) -> Option<(Env, Tmpfs)> {
    let mut env = Env::new(name);
    let mount = match Tmpfs::mount(&env.home, size) {
        Ok(mount) => mount,
        Err(reason) => {
            println!("SKIPPED {name}: {reason}; a full or read-only home needs a tmpfs mount");
            return None;
        }
    };
    env.write_config(&quick_config(&format!(
        "[autoInstall]\nenabled = true\nprefetch = true\nminFreeBytes = 0\napiUrl = \"{}\"",
        github.url()
    )));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    Some((env, mount))
}

/// After a failed install: the error names a path in HOME and `reason`; no `.visor-tmp-*`,
/// no v2 folder; Visor still runs v1, whose core was never stopped.
fn assert_failed_cleanly(env: &mut Env, reason: &str) {
    env.wait_log("upgrade: install of v2 failed (attempt 1)");
    let log = env.log();
    let line = log
        .lines()
        .find(|l| l.contains("upgrade: install of v2 failed (attempt 1)"))
        .unwrap();
    println!("{}: {line}", env.dir.display());
    assert!(line.contains(reason), "{line}");
    assert!(
        line.contains(&format!("{}/.visor-tmp-install-v2-", env.home.display())),
        "the error names no path in HOME: {line}"
    );
    assert!(temp_leftovers(&env.home, None).is_empty(), "{log}");
    assert!(!env.home.join("v2").exists(), "a half-made v2 folder");
    assert!(env.visor_running());
    assert_eq!(env.current_target(), Path::new("genesis"));
    let cores = env.starts("core");
    assert_eq!(cores.len(), 1, "the core was restarted");
    assert_eq!(env.live_sims(), vec![cores[0].pid()], "v1 no longer runs");
}

/// Makes the core ready and checks that the retry at the upgrade block installs v2 and the
/// upgrade completes; then stops Visor.
fn assert_upgrade_completes(env: &mut Env) {
    env.control_write("v1", "ready", "");
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(cores[1].args().last().map(String::as_str), Some("321"));
    assert_eq!(env.current_target(), Path::new("v2"));
    assert!(env.log().contains("attempt=2"));
    assert!(temp_leftovers(&env.home, None).is_empty());
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

#[test]
fn a_full_home_fails_the_install_cleanly_and_visor_keeps_running() {
    // The download is larger than the free space; then a small download whose unpacked file
    // is larger.
    for (name, zip_deflated) in [("fulldownload", false), ("fullunpack", true)] {
        let github = FakeGithub::start();
        let Some((mut env, mount)) = home_on_tmpfs(name, "2m", &github) else {
            return;
        };
        let pad = if zip_deflated {
            // Compresses far less than the 200:1 an entry may expand, so the download
            // fits and the unpacking fills the disk.
            let noise = pad_bytes(3 << 20);
            (0..3 << 20)
                .map(|i| if i % 1024 < 16 { noise[i] } else { 0 })
                .collect()
        } else {
            pad_bytes(3 << 20)
        };
        let zip = zip_of(&[
            ("zeta", v2_script(&env).as_bytes(), 0o755, true),
            ("pad.bin", &pad, 0o644, zip_deflated),
        ]);
        assert_eq!(zip.len() > 2 << 20, !zip_deflated);
        let json = release_json(&github, "v2", &zip);
        publish(&github, "v2", vec![Reply::json(json)], Reply::bytes(&zip));
        env.control_write("v1", "announce", "v2@321");
        assert_failed_cleanly(&mut env, "No space left on device");
        if zip_deflated {
            assert!(
                env.log().contains("install: SHA-256 of"),
                "the download should have fit"
            );
        }

        // Room again: the install at the upgrade block succeeds.
        mount.remount("size=32m");
        assert_upgrade_completes(&mut env);
        drop(mount);
    }
}

/// Found by the test above, not fixed (src/ is not changed here): three messages in
/// src/install/github.rs (then src/github.rs) lost a line continuation, so the spaces that indent the source's next line
/// are part of the text: "check the free space of the <34 spaces> home folder" when the disk
/// fills during a download (also "the <34 spaces> asset or the mirror is inconsistent" and
/// "check the <22 spaces> system's process limits").
#[test]
fn the_disk_full_download_error_reads_as_one_sentence() {
    let github = FakeGithub::start();
    let Some((mut env, mount)) = home_on_tmpfs("fullspaces", "2m", &github) else {
        return;
    };
    let zip = zip_of(&[
        ("zeta", v2_script(&env).as_bytes(), 0o755, true),
        ("pad.bin", &pad_bytes(3 << 20), 0o644, false),
    ]);
    let json = release_json(&github, "v2", &zip);
    publish(&github, "v2", vec![Reply::json(json)], Reply::bytes(&zip));
    env.control_write("v1", "announce", "v2@321");
    assert_failed_cleanly(&mut env, "No space left on device");
    let log = env.log();
    let line = log
        .lines()
        .find(|l| l.contains("upgrade: install of v2 failed"))
        .unwrap();
    assert!(!line.contains("  "), "{line}");
    drop(mount);
}

#[test]
fn a_home_turning_read_only_during_the_install_fails_it_cleanly_and_visor_keeps_running() {
    let github = FakeGithub::start();
    let Some((mut env, mount)) = home_on_tmpfs("roinstall", "16m", &github) else {
        return;
    };
    let zip = zip_of(&[("zeta", v2_script(&env).as_bytes(), 0o755, true)]);
    // The first lookup stalls half-way, long enough to turn HOME read-only under it; a file
    // open for writing would make the remount fail, so this is the moment to do it.
    let json = release_json(&github, "v2", &zip);
    publish(
        &github,
        "v2",
        vec![
            Reply::Stalled {
                body: json.clone().into_bytes(),
                pause: Duration::from_secs(3),
            },
            Reply::json(json),
        ],
        Reply::bytes(&zip),
    );
    env.control_write("v1", "announce", "v2@321");
    wait_until("the release lookup to start", DEADLINE, || {
        !github.requests_to(&release_path("v2")).is_empty()
    });
    mount.remount("ro");
    assert!(fs::write(env.home.join("probe"), b"").is_err());
    assert_failed_cleanly(&mut env, "Read-only file system");

    // Writable again: the install at the upgrade block succeeds.
    mount.remount("rw");
    assert_upgrade_completes(&mut env);
    drop(mount);
}
