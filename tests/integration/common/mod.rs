//! Test support: a fresh home per test with version folders whose `zeta` is a small shell
//! wrapper around the core-node simulator, a running `visor` whose stderr goes to a file, the
//! simulator's record of what happened, and polling with deadlines (never a fixed sleep).
//!
//! On a failing test the environment prints Visor's log, the simulator's record and a
//! listing of the home folder, then kills every process it started.

pub mod fake_github;
pub mod faults;
pub mod minisign;
pub mod notify;
pub mod tls;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const VISOR: &str = env!("CARGO_BIN_EXE_visor");
pub const SIM: &str = env!("CARGO_BIN_EXE_zeta-core-sim");

/// Generous, so a loaded two-core machine passes; conditions are polled, so a fast machine
/// does not wait for it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// True when `VISOR_SLOW_TESTS` is set to anything but `0` or nothing: the long campaigns (the
/// SIGKILL campaigns, the soak, the property tests) then run at full size, as CI runs them.
/// Without it they run a handful of kills, a few upgrades and 64 cases per property, so that
/// `cargo test` stays quick and still goes through every step of each.
pub fn slow_tests() -> bool {
    std::env::var("VISOR_SLOW_TESTS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The size of a long campaign: the number in the environment variable `var` when it is set
/// (`VISOR_FAULT_ITERATIONS`, `VISOR_FAULT_KILLS`, `VISOR_SOAK_UPGRADES`), else `full` under
/// [`slow_tests`], else `quick`.
pub fn campaign_size(var: &str, quick: usize, full: usize) -> usize {
    match std::env::var(var) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={value:?}: expected a number")),
        Err(_) if slow_tests() => full,
        Err(_) => quick,
    }
}

/// The seed of every random source of the tests when `VISOR_SEED` is not set, so that two
/// runs of `cargo test` generate the same kill moments and the same property cases.
pub const DEFAULT_SEED: u64 = 0x7a65_7461_5eed;

/// The seed of this run: `VISOR_SEED=<n>` replays a run, `VISOR_SEED=random` takes one from
/// the clock (once per run, shared by every test); `VISOR_FAULT_SEED` is an older name for
/// `VISOR_SEED`. Else [`DEFAULT_SEED`]. Printed by each test that uses it, so a failure shows
/// the seed that replays it.
pub fn seed(test: &str) -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let (name, value) = match std::env::var("VISOR_SEED") {
            Ok(value) => ("VISOR_SEED", value),
            Err(_) => match std::env::var("VISOR_FAULT_SEED") {
                Ok(value) => ("VISOR_FAULT_SEED", value),
                Err(_) => return DEFAULT_SEED,
            },
        };
        match value.trim() {
            "random" => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?}: expected a number or \"random\"")),
        }
    });
    println!("{test}: seed {seed} (replay with VISOR_SEED={seed})");
    seed
}

/// Polls `check` every 20 ms until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, timeout, || check().then_some(()))
}

/// One simulator record line.
#[derive(Debug, Clone)]
pub struct Record(pub serde_json::Value);

impl Record {
    pub fn event(&self) -> &str {
        self.0["event"].as_str().unwrap_or("")
    }
    pub fn mode(&self) -> &str {
        self.0["mode"].as_str().unwrap_or("")
    }
    pub fn version(&self) -> &str {
        self.0["version"].as_str().unwrap_or("")
    }
    pub fn pid(&self) -> u32 {
        self.0["pid"].as_u64().unwrap_or(0) as u32
    }
    pub fn t_ns(&self) -> u64 {
        self.0["t_ns"].as_u64().unwrap_or(0)
    }
    pub fn args(&self) -> Vec<String> {
        self.0["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A test's private folder: `home/` (Visor's HOME), the core socket, the record file, one
/// control folder per version and Visor's log.
pub struct Env {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub visor: Option<Child>,
    visor_status: Option<ExitStatus>,
}

pub struct Version<'a> {
    pub folder: &'a str,
    pub version: &'a str,
    pub sim_flags: &'a [&'a str],
    pub data_node: bool,
}

impl<'a> Version<'a> {
    pub fn new(folder: &'a str, version: &'a str) -> Version<'a> {
        Version {
            folder,
            version,
            sim_flags: &[],
            data_node: false,
        }
    }
    pub fn flags(mut self, flags: &'a [&'a str]) -> Self {
        self.sim_flags = flags;
        self
    }
    pub fn with_data_node(mut self) -> Self {
        self.data_node = true;
        self
    }
}

/// Writes an executable shell script `name` (mode 0755) in the test's folder; its path.
pub fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = env.dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

impl Env {
    /// A new folder under /tmp (short, because a UNIX socket path is limited to 107 bytes).
    pub fn new(name: &str) -> Env {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let short: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let dir = PathBuf::from(format!("/tmp/zv-{short}-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // Visor refuses files that group or other users may write; test homes are 0755 and
        // 0644 whatever the umask of whoever runs the tests.
        unsafe {
            libc::umask(0o022);
        }
        fs::create_dir_all(dir.join("home")).unwrap();
        fs::set_permissions(dir.join("home"), fs::Permissions::from_mode(0o755)).unwrap();
        Env {
            home: dir.join("home"),
            dir,
            visor: None,
            visor_status: None,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("core.sock")
    }
    pub fn record_file(&self) -> PathBuf {
        self.dir.join("record.jsonl")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("visor.log")
    }
    pub fn control(&self, version: &str) -> PathBuf {
        self.dir.join(format!("control-{version}"))
    }
    pub fn node_home(&self) -> String {
        self.dir.join("node").display().to_string()
    }

    pub fn write_config(&self, text: &str) {
        let file = self.home.join("config.toml");
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Creates `home/<folder>` with a `zeta` wrapper and a run-config for `version`.
    pub fn add_version(&self, v: Version) -> PathBuf {
        let folder = if Path::new(v.folder).is_absolute() {
            PathBuf::from(v.folder)
        } else {
            self.home.join(v.folder)
        };
        fs::create_dir_all(&folder).unwrap();
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).unwrap();
        self.write_wrapper(&folder, v.version, v.sim_flags);
        let core_args = vec!["start".into(), "--home".into(), self.node_home()];
        let mut text = format!(
            "name = \"{}\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n    args = {}\n  [zeta.rpc]\n    socketPath = \"{}\"\n    httpPath = \"/rpc\"\n",
            v.version,
            toml_array(&core_args),
            self.socket().display()
        );
        if v.data_node {
            let dn_home = self.dir.join("dn").display().to_string();
            text.push_str(&format!(
                "[data_node]\n  [data_node.binary]\n    path = \"zeta\"\n    args = {}\n",
                toml_array(&["datanode".into(), "start".into(), "--home".into(), dn_home])
            ));
        }
        let file = folder.join("run-config.toml");
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        folder
    }

    /// (Re)writes the `zeta` wrapper of a folder: the simulator with per-version flags.
    pub fn write_wrapper(&self, folder: &Path, version: &str, flags: &[&str]) {
        fs::create_dir_all(self.control(version)).unwrap();
        let mut script = format!(
            "#!/bin/sh\nexec '{SIM}' --sim-version '{version}' --socket '{}' --record '{}' --control-dir '{}'",
            self.socket().display(),
            self.record_file().display(),
            self.control(version).display()
        );
        for flag in flags {
            script.push_str(&format!(" '{flag}'"));
        }
        script.push_str(" \"$@\"\n");
        let path = folder.join("zeta");
        let temp = folder.join(".zeta.tmp");
        fs::write(&temp, script).unwrap();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&temp, &path).unwrap();
    }

    /// Writes a control file for the simulator of `version` (`announce`, `ready`, `crash`).
    pub fn control_write(&self, version: &str, name: &str, content: &str) {
        let dir = self.control(version);
        fs::create_dir_all(&dir).unwrap();
        let temp = dir.join(format!(".{name}.tmp"));
        fs::write(&temp, content).unwrap();
        fs::rename(temp, dir.join(name)).unwrap();
    }

    pub fn start_visor(&mut self) {
        self.start_visor_with(&[]);
    }

    pub fn start_visor_with(&mut self, env: &[(&str, &str)]) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        let mut command = Command::new(VISOR);
        command
            .args(["run", "--home"])
            .arg(&self.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        isolate(&mut command, env);
        self.visor = Some(command.spawn().unwrap());
        self.visor_status = None;
    }

    pub fn visor_pid(&self) -> i32 {
        self.visor.as_ref().expect("visor started").id() as i32
    }

    pub fn signal_visor(&self, signal: i32) {
        unsafe {
            libc::kill(self.visor_pid(), signal);
        }
    }

    /// Waits for Visor to exit and returns its exit code (a signal death panics).
    pub fn wait_visor_exit(&mut self, timeout: Duration) -> i32 {
        let status = wait_for("visor to exit", timeout, || {
            if let Some(status) = self.visor_status {
                return Some(status);
            }
            let status = self.visor.as_mut().unwrap().try_wait().unwrap();
            self.visor_status = status;
            status
        });
        status
            .code()
            .unwrap_or_else(|| panic!("visor died by {status:?}"))
    }

    /// Waits for Visor to end, however it ends (a kill included).
    pub fn wait_visor_gone(&mut self, timeout: Duration) -> ExitStatus {
        wait_for("visor to end", timeout, || {
            if let Some(status) = self.visor_status {
                return Some(status);
            }
            let status = self.visor.as_mut().unwrap().try_wait().unwrap();
            self.visor_status = status;
            status
        })
    }

    pub fn visor_running(&mut self) -> bool {
        self.visor_status.is_none()
            && self
                .visor
                .as_mut()
                .map(|c| c.try_wait().unwrap().is_none())
                .unwrap_or(false)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str) {
        wait_until(
            &format!("visor log to contain {needle:?}"),
            DEADLINE,
            || self.log().contains(needle),
        );
    }

    pub fn records(&self) -> Vec<Record> {
        fs::read_to_string(self.record_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok().map(Record))
            .collect()
    }

    pub fn starts(&self, mode: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.event() == "start" && r.mode() == mode)
            .collect()
    }

    /// Waits until at least `n` processes of `mode` have started; returns them all.
    pub fn wait_starts(&self, mode: &str, n: usize) -> Vec<Record> {
        wait_for(&format!("{n} {mode} start(s)"), DEADLINE, || {
            let starts = self.starts(mode);
            (starts.len() >= n).then_some(starts)
        })
    }

    /// Waits until the core of `version` answers on the socket (its `listening` record).
    pub fn wait_listening(&self, count: usize) {
        wait_until(&format!("{count} listening record(s)"), DEADLINE, || {
            self.records()
                .iter()
                .filter(|r| r.event() == "listening")
                .count()
                >= count
        });
    }

    /// Pids of every simulator process this test started (from the record).
    pub fn sim_pids(&self) -> Vec<u32> {
        self.records()
            .iter()
            .filter(|r| r.event() == "start" && (r.mode() == "core" || r.mode() == "datanode"))
            .map(Record::pid)
            .collect()
    }

    /// Pids of those that are still alive (not counting zombies).
    pub fn live_sims(&self) -> Vec<u32> {
        self.sim_pids()
            .into_iter()
            .filter(|pid| self.is_ours(*pid))
            .collect()
    }

    /// True when `pid` is alive and is a process of this test: its command line names this
    /// test's folder. A recorded pid may long be gone and reused by another test's process,
    /// which must be neither counted nor killed.
    pub fn is_ours(&self, pid: u32) -> bool {
        let dir = self.dir.display().to_string();
        alive(pid)
            && fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&dir))
                .unwrap_or(false)
    }

    pub fn current_target(&self) -> PathBuf {
        fs::read_link(self.home.join("current")).unwrap_or_default()
    }

    pub fn run_visor_command(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(VISOR)
            .args(args)
            .arg("--home")
            .arg(&self.home)
            .env_remove("VISOR_HOME")
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn listing(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.file_type().is_symlink() {
                    out.push_str(&format!(
                        "{} -> {}\n",
                        path.display(),
                        fs::read_link(&path).unwrap_or_default().display()
                    ));
                } else if meta.is_dir() {
                    out.push_str(&format!("{}/\n", path.display()));
                    stack.push(path);
                } else {
                    out.push_str(&format!("{}\n", path.display()));
                }
            }
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== visor log =====\n{}", self.log());
            eprintln!(
                "===== simulator record =====\n{}",
                fs::read_to_string(self.record_file()).unwrap_or_default()
            );
            eprintln!("===== files =====\n{}", self.listing());
        }
        if let Some(child) = &mut self.visor {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.sim_pids() {
            if self.is_ours(pid) {
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Takes from a `visor` command the environment of the machine running the tests that would
/// change what it does (its home, systemd's sockets, the journal, a token, proxies), then adds
/// `env`.
pub fn isolate(command: &mut Command, env: &[(&str, &str)]) {
    for key in [
        "VISOR_HOME",
        "NOTIFY_SOCKET",
        "JOURNAL_STREAM",
        "GITHUB_TOKEN",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(key);
    }
    command.env("NO_PROXY", "*");
    for (key, value) in env {
        command.env(key, value);
    }
}

/// The uid (and gid) of `nobody`, the other user of the tests that run as root.
pub const NOBODY: u32 = 65534;

/// True when the tests run as root: only then can they give files to another user or run
/// Visor as one. Tests that need it print why they are skipped otherwise.
pub fn as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Gives `path` and everything below it (links themselves, not what they point at) to `uid`
/// and its group of the same number.
pub fn give_to(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap().flatten() {
            give_to(&entry.path(), uid);
        }
    }
}

/// `visor ARGS` as user `uid` (through `setpriv`, so the tests must run as root), with the
/// environment isolated as for every Visor the tests start; `None` when setpriv cannot run.
pub fn visor_as(uid: u32, args: &[&str], home: &Path) -> Option<std::process::Output> {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", VISOR])
        .args(args)
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null());
    isolate(&mut command, &[]);
    command.output().ok()
}

/// A tmpfs mounted over a folder, unmounted on drop. Its root is 0755: a tmpfs root is 1777
/// by default, a HOME that Visor refuses.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs over `dir`, or says why it cannot.
    pub fn mount(dir: &Path) -> Result<Tmpfs, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status})"));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
    pub fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o remount,{mode} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// True when the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

pub fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A config.toml with quick timings for tests; keys set in `extra` replace the quick ones.
pub fn quick_config(extra: &str) -> String {
    let quick = [
        "restartsDelaySeconds = 1",
        "stopSignalTimeoutSeconds = 2",
        "statusPollIntervalMilliseconds = 100",
        "upgradePollIntervalMilliseconds = 50",
    ];
    let overridden = |line: &str| {
        let key = line.split('=').next().unwrap_or("").trim();
        extra
            .lines()
            .any(|l| l.split('=').next().unwrap_or("").trim() == key)
    };
    let mut text: String = quick
        .iter()
        .filter(|line| !overridden(line))
        .map(|line| format!("{line}\n"))
        .collect();
    text.push_str(extra);
    text.push('\n');
    text
}
