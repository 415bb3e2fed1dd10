//! Who Visor trusts in HOME: the supervise folder `HOME/.visor` only when it is a real folder
//! of HOME's owner that nobody else may write, the files it reads there only when they are
//! that user's and nobody else may write them; commands that write HOME only when run by its
//! owner; and `run` takes the lock before it reads what it starts.
//!
//! The tests that need another user give files to `nobody` and run Visor as it with `setpriv`;
//! they need root and say so when they are skipped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

fn good_home(name: &str) -> Env {
    let env = Env::new(name);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A process unrelated to Visor, leading its own process group as a node Visor started would:
/// the process a forged `status.json` names.
struct Bystander(Child);

impl Bystander {
    fn start() -> Bystander {
        let child = Command::new("sleep")
            .arg("120")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Bystander(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// A `status.json` that names this process as the core of a Visor that is gone.
    fn forged_status(&self) -> String {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let start_time: u64 = rest
            .split_ascii_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        serde_json::json!({
            "visor": {"pid": 999_999_999u32, "start_time": 1},
            "phase": "running",
            "children": [{"process": "core", "pid": self.pid(), "start_time": start_time}],
        })
        .to_string()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `visor run` in the foreground; its exit code and log (Visor writes its log to stderr).
fn run_once(env: &mut Env) -> (i32, String) {
    env.start_visor();
    let code = env.wait_visor_exit(DEADLINE);
    (code, env.log())
}

#[test]
fn a_supervise_folder_that_is_a_link_is_refused_by_run_and_check() {
    let mut env = good_home("visorlink");
    let elsewhere = env.dir.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    let folder = env.home.join(".visor");
    std::os::unix::fs::symlink(&elsewhere, &folder).unwrap();

    let (code, log) = run_once(&mut env);
    assert_eq!(code, 78, "{log}");
    let expected = format!(
        "{}: is a symbolic link to {} (owner root (uid 0), mode 0777)",
        folder.display(),
        elsewhere.display()
    );
    if as_root() {
        assert!(log.contains(&expected), "{log}");
    }
    assert!(
        log.contains(&format!("remove the link (rm {})", folder.display())),
        "{log}"
    );
    assert!(env.starts("core").is_empty());
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing went through the link"
    );

    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(stdout.contains(": is a symbolic link to "), "{stdout}");
}

#[test]
fn a_forged_status_in_a_world_writable_supervise_folder_stops_nobody() {
    let mut env = good_home("visor777");
    let bystander = Bystander::start();
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o777);
    fs::write(folder.join("status.json"), bystander.forged_status()).unwrap();

    let (code, log) = run_once(&mut env);
    assert_eq!(code, 78, "{log}");
    assert!(
        log.contains(&format!(
            "{}: is writable by its group and every user (owner ",
            folder.display()
        )),
        "{log}"
    );
    assert!(log.contains("mode 0777)"), "{log}");
    assert!(
        log.contains(&format!("chmod go-w {}", folder.display())),
        "{log}"
    );
    assert!(alive(bystander.pid()), "the bystander was signalled: {log}");
    assert!(!log.contains("started by a Visor that is gone"), "{log}");
    assert!(env.starts("core").is_empty());

    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(
        stdout.contains("is writable by its group and every user"),
        "{stdout}"
    );
}

/// A status.json and an upgrade mark others may write (mode 0666), in a folder that is Visor's:
/// both are ignored with a warning naming them, so the process named survives and the core
/// starts without the forged height.
#[test]
fn a_status_and_an_upgrade_mark_others_may_write_are_ignored() {
    let mut env = good_home("forged666");
    let bystander = Bystander::start();
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    let status = folder.join("status.json");
    let mark = folder.join("upgrade");
    fs::write(&status, bystander.forged_status()).unwrap();
    fs::write(&mark, "v1 4242\n").unwrap();
    chmod(&status, 0o666);
    chmod(&mark, 0o666);

    env.start_visor();
    env.wait_log("rpc: core is answering");
    let log = env.log();
    assert!(
        log.contains(&format!(
            "WARN  supervise: ignoring the state a Visor that is gone left: {}: is writable by \
             its group and every user",
            status.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "WARN  home: ignoring the upgrade mark: {}: is writable by its group and every user",
            mark.display()
        )),
        "{log}"
    );
    assert!(alive(bystander.pid()), "the bystander was signalled: {log}");
    let cores = env.starts("core");
    assert!(
        !cores[0].args().iter().any(|a| a.contains("4242")),
        "{:?}",
        cores[0].args()
    );
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

/// The same files, mode 0644 but owned by another user: ignored too.
#[test]
fn a_status_and_an_upgrade_mark_of_another_user_are_ignored() {
    if !as_root() {
        println!("SKIPPED a_status_and_an_upgrade_mark_of_another_user_are_ignored: not root, cannot give files to nobody");
        return;
    }
    let mut env = good_home("forgednobody");
    let bystander = Bystander::start();
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    let status = folder.join("status.json");
    let mark = folder.join("upgrade");
    fs::write(&status, bystander.forged_status()).unwrap();
    fs::write(&mark, "v1 4242\n").unwrap();
    give_to(&status, NOBODY);
    give_to(&mark, NOBODY);

    env.start_visor();
    env.wait_log("rpc: core is answering");
    let log = env.log();
    for file in [&status, &mark] {
        assert!(
            log.contains(&format!(
                "{}: belongs to nobody (uid 65534), not to root (uid 0) as whom Visor runs",
                file.display()
            )),
            "{log}"
        );
    }
    assert!(alive(bystander.pid()), "the bystander was signalled: {log}");
    assert!(!env.starts("core")[0]
        .args()
        .iter()
        .any(|a| a.contains("4242")));
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

#[test]
fn a_lock_file_that_is_a_link_is_a_configuration_error() {
    let mut env = good_home("locklink");
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    let target = env.dir.join("target-of-the-link");
    fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, folder.join("lock")).unwrap();
    let (code, log) = run_once(&mut env);
    assert_eq!(code, 78, "{log}");
    assert!(
        log.contains(&format!(
            "{}: is a symbolic link, which Visor never follows there; remove it",
            folder.join("lock").display()
        )),
        "{log}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
}

/// A home owned by `nobody`, where root runs the commands that write it (`sudo visor ...`):
/// each refuses with 77, names the owner and the command to run, and changes nothing.
#[test]
fn commands_that_write_the_home_refuse_another_user_than_its_owner() {
    if !as_root() {
        println!("SKIPPED commands_that_write_the_home_refuse_another_user_than_its_owner: not root, cannot give the home to nobody");
        return;
    }
    let mut env = good_home("sudoswitch");
    env.add_version(Version::new("v1.0.1", "v1.0.1"));
    std::os::unix::fs::symlink("genesis", env.home.join("current")).unwrap();
    give_to(&env.home, NOBODY);
    let home = env.home.display().to_string();
    let root = env.home.clone();
    let listing = || {
        let mut names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();

    for args in [vec!["switch", "v1.0.1"], vec!["prepare", "v1.0.1"]] {
        let (code, stdout, stderr) = env.run_visor_command(&args);
        assert_eq!(code, 77, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "{home}: the home folder belongs to nobody (uid 65534), but this command runs as root (uid 0)"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "sudo -u nobody visor {} --home {home}",
                args.join(" ")
            )),
            "{stderr}"
        );
    }
    assert_eq!(env.current_target(), Path::new("genesis"));
    assert_eq!(listing(), before, "nothing was created");

    let (code, log) = run_once(&mut env);
    assert_eq!(code, 77, "{log}");
    assert!(
        log.contains(&format!("sudo -u nobody visor run --home {home}")),
        "{log}"
    );
    assert!(env.starts("core").is_empty());
    assert_eq!(listing(), before, "nothing was created");

    // init into an empty folder of another user.
    let empty = env.dir.join("empty");
    fs::create_dir(&empty).unwrap();
    give_to(&empty, NOBODY);
    let out = Command::new(VISOR)
        .args(["init", "--home"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

/// What `sudo visor switch` or `sudo visor prepare` left before the fix: a root-owned
/// `.visor/lock` (and half-made install) in a home owned by the user Visor runs as. `run` exits 78 naming it and the
/// `chown`, instead of 1 in a restart loop; `check` reports it instead of passing.
#[test]
fn a_lock_left_by_another_user_is_named_by_run_and_check() {
    if !as_root() {
        println!("SKIPPED a_lock_left_by_another_user_is_named_by_run_and_check: not root, cannot give the home to nobody");
        return;
    }
    let env = good_home("rootlock");
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    give_to(&env.home, NOBODY);
    // Left by root.
    fs::write(folder.join("lock"), "4242\n").unwrap();
    chmod(&folder.join("lock"), 0o600);
    let leftover = env.home.join(".visor-tmp-install-v9-999999999-0");
    fs::create_dir(&leftover).unwrap();

    let Some(run) = visor_as(NOBODY, &["run"], &env.home) else {
        println!(
            "SKIPPED a_lock_left_by_another_user_is_named_by_run_and_check: setpriv cannot run"
        );
        return;
    };
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: belongs to root (uid 0), not to nobody (uid 65534) as whom Visor runs",
            folder.join("lock").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("chown -R nobody: {}", folder.display())),
        "{stderr}"
    );
    assert!(env.starts("core").is_empty());

    let check = visor_as(NOBODY, &["check"], &env.home).unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(78), "{stdout}");
    for path in [folder.join("lock"), leftover] {
        assert!(
            stdout.contains(&format!(
                "{}: belongs to root (uid 0), not to nobody (uid 65534), the owner of HOME",
                path.display()
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("chown -R nobody: {}", path.display())),
            "{stdout}"
        );
    }
    // Root checking the same home reports the same: it is about Visor's user, not the caller.
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78, "{stdout}");
    assert!(stdout.contains("chown -R nobody: "), "{stdout}");
}

/// `run` takes the lock before it reads `current`: while another process holds the lock (an
/// offline `visor switch` moving `current`, here the test itself), `run` exits 1 naming the
/// holder without having looked at `current`, which is broken only for as long as the holder
/// works on it.
#[test]
fn run_takes_the_lock_before_it_reads_current() {
    let mut env = good_home("lockfirst");
    std::os::unix::fs::symlink("v2", env.home.join("current")).unwrap();
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(folder.join("lock"))
        .unwrap();
    use std::io::Write;
    writeln!(&lock, "{}", std::process::id()).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );

    let (code, log) = run_once(&mut env);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!(
            "another Visor (pid {}) is running on this home",
            std::process::id()
        )),
        "{log}"
    );
    assert!(
        !log.contains("dangling"),
        "current was read before the lock: {log}"
    );

    // The holder is done: `current` names what it finished with, and run starts that.
    env.add_version(Version::new("v2", "v2"));
    drop(lock);
    env.start_visor();
    let cores = env.wait_starts("core", 1);
    assert_eq!(cores[0].version(), "v2");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}

/// A home on a file system that turned read-only: the lock is taken but its pid cannot be
/// written. A configuration error (78) naming the cause, not a runtime failure that a service
/// manager would restart in a loop.
#[test]
fn a_lock_on_a_read_only_home_is_a_configuration_error() {
    let mut env = Env::new("rolock");
    let mount = match Tmpfs::mount(&env.home) {
        Ok(mount) => mount,
        Err(reason) => {
            println!("SKIPPED a_lock_on_a_read_only_home_is_a_configuration_error: {reason}; a read-only home needs a mount");
            return;
        }
    };
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    let folder = env.home.join(".visor");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    fs::write(folder.join("lock"), "").unwrap();
    chmod(&folder.join("lock"), 0o600);
    mount.remount("ro");
    let (code, log) = run_once(&mut env);
    assert_eq!(code, 78, "{log}");
    assert!(
        log.contains(&format!(
            "{}: cannot write (Read-only file system (os error 30)); the home folder must be on a \
             writable file system",
            folder.join("lock").display()
        )),
        "{log}"
    );
    assert!(env.starts("core").is_empty());
    drop(mount);
}
