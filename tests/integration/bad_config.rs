//! Every bad home `visor run` meets at start exits 78 with a message naming the problem, and
//! `visor check` reports the same problem; both accept the good homes. The cases include files
//! that group or other users may write.

use crate::common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

struct Case {
    name: &'static str,
    /// Changes a good home into a bad one.
    spoil: fn(&Env),
    /// Words the message must contain.
    expect: &'static [&'static str],
}

fn good_home(name: &str) -> Env {
    let env = Env::new(name);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1.0.0"));
    env
}

fn genesis_run_config(env: &Env) -> std::path::PathBuf {
    env.home.join("genesis/run-config.toml")
}

fn chmod(path: impl AsRef<std::path::Path>, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A version folder `v2` (the genesis binary and a run-config naming v2) that `current`
/// points at.
fn current_to_v2(env: &Env) {
    env.add_version(Version::new("v2", "v2"));
    std::os::unix::fs::symlink("v2", env.home.join("current")).unwrap();
}

fn edit_run_config(env: &Env, from: &str, to: &str) {
    let file = genesis_run_config(env);
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "{text}");
    fs::write(&file, text.replacen(from, to, 1)).unwrap();
}

const CASES: &[Case] = &[
    Case {
        name: "unknown config key",
        spoil: |env| env.write_config("maxNumberOfRestarts = 3\nmaxNumberOfRestartz = 3\n"),
        expect: &["config.toml:2", "maxNumberOfRestartz"],
    },
    Case {
        name: "wrong type",
        spoil: |env| env.write_config("restartsDelaySeconds = \"5s\"\n"),
        expect: &["config.toml:1", "restartsDelaySeconds"],
    },
    Case {
        name: "negative duration",
        spoil: |env| env.write_config("\nstopDelaySeconds = -1\n"),
        expect: &["config.toml:2", "stopDelaySeconds"],
    },
    Case {
        name: "bad log format",
        spoil: |env| env.write_config("logFormat = \"xml\"\n"),
        expect: &["config.toml:1", "logFormat"],
    },
    Case {
        name: "unknown autoInstall key",
        spoil: |env| env.write_config("[autoInstall]\nenabled = false\nrepo = \"x\"\n"),
        expect: &["config.toml:3", "repo"],
    },
    Case {
        name: "toml syntax",
        spoil: |env| env.write_config("maxNumberOfRestarts = = 3\n"),
        expect: &["config.toml:1:", "TOML syntax error"],
    },
    Case {
        name: "missing config.toml",
        spoil: |env| fs::remove_file(env.home.join("config.toml")).unwrap(),
        expect: &["config.toml", "visor init"],
    },
    Case {
        name: "unknown run-config key",
        spoil: |env| edit_run_config(env, "    httpPath", "    htpPath = \"/x\"\n    httpPath"),
        expect: &["run-config.toml:", "htpPath"],
    },
    Case {
        name: "both zeta and vega",
        spoil: |env| {
            let file = genesis_run_config(env);
            let mut text = fs::read_to_string(&file).unwrap();
            text.push_str("[vega]\n  [vega.binary]\n    path = \"zeta\"\n");
            fs::write(&file, text).unwrap();
        },
        expect: &["run-config.toml", "vega"],
    },
    Case {
        name: "missing socketPath",
        spoil: |env| {
            let file = genesis_run_config(env);
            let text = fs::read_to_string(&file).unwrap();
            let kept: Vec<&str> = text.lines().filter(|l| !l.contains("socketPath")).collect();
            fs::write(&file, kept.join("\n")).unwrap();
        },
        expect: &["run-config.toml", "socketPath"],
    },
    Case {
        name: "missing binary",
        spoil: |env| fs::remove_file(env.home.join("genesis/zeta")).unwrap(),
        expect: &["genesis/zeta", "No such file"],
    },
    Case {
        name: "binary not executable",
        spoil: |env| {
            fs::set_permissions(
                env.home.join("genesis/zeta"),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap()
        },
        expect: &["genesis/zeta", "not executable"],
    },
    Case {
        name: "current is a plain folder",
        spoil: |env| fs::create_dir(env.home.join("current")).unwrap(),
        expect: &["current", "not a link"],
    },
    Case {
        name: "dangling current",
        spoil: |env| std::os::unix::fs::symlink("v9.9.9", env.home.join("current")).unwrap(),
        expect: &["current", "dangling", "v9.9.9"],
    },
    Case {
        name: "current folder without run-config",
        spoil: |env| {
            current_to_v2(env);
            fs::remove_file(env.home.join("v2/run-config.toml")).unwrap();
        },
        expect: &["v2/run-config.toml", "no such file"],
    },
    Case {
        name: "group-writable binary",
        spoil: |env| chmod(env.home.join("genesis/zeta"), 0o775),
        expect: &["genesis/zeta", "its group", "mode 0775", "chmod go-w"],
    },
    Case {
        name: "world-writable binary behind a link",
        spoil: |env| {
            let real = env.dir.join("zeta-real");
            fs::rename(env.home.join("genesis/zeta"), &real).unwrap();
            chmod(&real, 0o757);
            std::os::unix::fs::symlink(&real, env.home.join("genesis/zeta")).unwrap();
        },
        expect: &[
            "zeta-real (behind ",
            "genesis/zeta",
            "every user",
            "mode 0757",
        ],
    },
    Case {
        name: "group-writable version folder",
        spoil: |env| chmod(env.home.join("genesis"), 0o775),
        expect: &["home/genesis:", "mode 0775", "chmod go-w"],
    },
    Case {
        name: "world-writable folder current points at",
        spoil: |env| {
            current_to_v2(env);
            chmod(env.home.join("v2"), 0o777);
        },
        expect: &["home/v2:", "mode 0777", "chmod go-w"],
    },
    Case {
        name: "group-writable run-config",
        spoil: |env| chmod(genesis_run_config(env), 0o664),
        expect: &["genesis/run-config.toml:", "mode 0664", "chmod go-w"],
    },
    Case {
        name: "group-writable config.toml",
        spoil: |env| chmod(env.home.join("config.toml"), 0o660),
        expect: &["config.toml:", "mode 0660", "chmod go-w"],
    },
    Case {
        name: "world-writable HOME",
        spoil: |env| chmod(&env.home, 0o1777),
        expect: &["home: HOME is writable", "mode 1777", "chmod go-w"],
    },
];

/// A named change to a home.
type Variation = (&'static str, fn(&Env));

/// Good homes, each a variation of [`good_home`].
const GOOD: &[Variation] = &[
    ("plain, current missing", |_| {}),
    ("owner-only modes", |env| {
        chmod(&env.home, 0o700);
        chmod(env.home.join("config.toml"), 0o600);
        chmod(env.home.join("genesis"), 0o700);
        chmod(genesis_run_config(env), 0o600);
        chmod(env.home.join("genesis/zeta"), 0o700);
    }),
    ("binary linked to a safe file outside HOME", |env| {
        let real = env.dir.join("zeta-real");
        fs::rename(env.home.join("genesis/zeta"), &real).unwrap();
        std::os::unix::fs::symlink(&real, env.home.join("genesis/zeta")).unwrap();
    }),
    ("current points at v2", current_to_v2),
];

#[test]
fn every_bad_configuration_exits_78_and_check_agrees() {
    for case in CASES {
        let mut env = good_home(case.name);
        (case.spoil)(&env);
        env.start_visor();
        let code = env.wait_visor_exit(DEADLINE);
        let log = env.log();
        assert_eq!(code, 78, "{}: {log}", case.name);
        for word in case.expect {
            assert!(
                log.contains(word),
                "{}: run log lacks {word:?}:\n{log}",
                case.name
            );
        }
        assert!(
            env.starts("core").is_empty(),
            "{}: a core was started",
            case.name
        );

        let (code, stdout, _) = env.run_visor_command(&["check"]);
        assert_eq!(code, 78, "{}: check: {stdout}", case.name);
        for word in case.expect {
            assert!(
                stdout.contains(word),
                "{}: check lacks {word:?}:\n{stdout}",
                case.name
            );
        }
    }
}

#[test]
fn run_and_check_both_accept_good_homes() {
    for (name, vary) in GOOD {
        let mut env = good_home(name);
        vary(&env);
        let (code, stdout, stderr) = env.run_visor_command(&["check"]);
        assert_eq!(code, 0, "{name}: check: {stdout}{stderr}");
        assert_eq!(stdout, "", "{name}");
        env.start_visor();
        env.wait_starts("core", 1);
        env.signal_visor(libc::SIGTERM);
        assert_eq!(env.wait_visor_exit(DEADLINE), 0, "{name}: {}", env.log());
    }
}

#[test]
fn check_passes_on_a_good_home_and_reports_every_problem_at_once() {
    let env = good_home("checkok");
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "");

    env.write_config("maxNumberOfRestartz = 1\nstopDelaySecond = 2\n");
    fs::remove_file(env.home.join("genesis/zeta")).unwrap();
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 78);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn init_creates_a_home_that_check_understands_and_refuses_a_non_empty_folder() {
    let env = Env::new("init");
    let home = env.dir.join("fresh");
    let out = std::process::Command::new(VISOR)
        .args(["init", "--with-data-node", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let config = fs::read_to_string(home.join("config.toml")).unwrap();
    for key in [
        "maxNumberOfFirstConnectionRetries",
        "maxNumberOfRestartConnectionRetries",
        "maxNumberOfRestarts",
        "restartsDelaySeconds",
        "restartCounterResetSeconds",
        "stopDelaySeconds",
        "stopSignalTimeoutSeconds",
        "statusPollIntervalMilliseconds",
        "upgradePollIntervalMilliseconds",
        "upgradeFolders",
        "logFormat",
        "logLevel",
        "metricsFile",
        "autoInstall",
        "repositoryOwner",
        "apiUrl",
        "prefetch",
        "requireChecksum",
        "checksumAsset",
        "binaryName",
    ] {
        assert!(config.contains(key), "init config lacks {key}");
    }
    assert!(fs::read_to_string(home.join("genesis/run-config.toml"))
        .unwrap()
        .contains("[data_node"));
    assert!(home.join("vX.X.X/run-config.toml").is_file());
    // The only problems are the binaries the operator still has to install.
    let out = std::process::Command::new(VISOR)
        .args(["check", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stdout.lines().all(|l| l.contains("binary] path")),
        "{stdout}"
    );

    let out = std::process::Command::new(VISOR)
        .args(["init", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&home.display().to_string()));
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [&["frobnicate"][..], &["run"][..], &["run", "--bogus"][..]] {
        let out = std::process::Command::new(VISOR)
            .args(args)
            .env_remove("VISOR_HOME")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = std::process::Command::new(VISOR)
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
}

/// `visor <command> --home HOME` as a user other than root when the tests run as root (root
/// lists any folder), else as the current user.
fn visor_as_unprivileged(env: &Env, command: &str) -> Option<std::process::Output> {
    if as_root() {
        return visor_as(NOBODY, &[command], &env.home);
    }
    std::process::Command::new(VISOR)
        .arg(command)
        .arg("--home")
        .arg(&env.home)
        .env_remove("VISOR_HOME")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
}

#[test]
fn a_home_that_cannot_be_listed_stops_run_and_check() {
    let env = good_home("unlistable");
    // Visor runs as the owner of HOME, who may pass through it but not list it.
    if as_root() {
        give_to(&env.home, NOBODY);
    }
    chmod(&env.home, 0o311);
    let Some(check) = visor_as_unprivileged(&env, "check") else {
        eprintln!("skipped: setpriv is needed to run visor as another user than root");
        return;
    };
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(78), "check: {stdout}");
    let expected = format!(
        "{}: cannot list HOME to remove leftovers of an interrupted run (Permission denied",
        env.home.display()
    );
    assert!(stdout.contains(&expected), "check: {stdout}");

    let run = visor_as_unprivileged(&env, "run").unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(78), "run: {stderr}");
    assert!(stderr.contains(&expected), "run: {stderr}");
    assert!(env.starts("core").is_empty());
    chmod(&env.home, 0o755);
}
