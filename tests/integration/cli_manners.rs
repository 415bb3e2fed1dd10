//! The command line's manners, through the real binary: each command's help, suggestions for
//! a mistyped command or option, and the version with its commit.

use std::process::Command;

use crate::common::VISOR;

/// Runs `visor ARGS` without `VISOR_HOME`: (exit code, stdout, stderr).
fn visor(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(VISOR)
        .args(args)
        .env_remove("VISOR_HOME")
        .output()
        .unwrap_or_else(|e| panic!("{VISOR}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_run_and_run_help_print_the_commands_usage() {
    let (code, help_run, stderr) = visor(&["help", "run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(help_run.starts_with("visor run - "), "{help_run}");
    assert!(
        help_run.contains("Usage: visor run --home PATH"),
        "{help_run}"
    );
    assert!(help_run.contains("--home PATH"), "{help_run}");
    assert!(help_run.contains("-h, --help"), "{help_run}");
    // Not the usage of every command.
    assert!(!help_run.contains("visor prepare"), "{help_run}");

    for args in [&["run", "--help"][..], &["run", "-h"], &["--help", "run"]] {
        let (code, stdout, stderr) = visor(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert_eq!(stdout, help_run, "{args:?}");
    }
    let (code, stdout, _) = visor(&["help", "switch"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--wait SECONDS"), "{stdout}");
    let (code, stdout, _) = visor(&["status", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("-o, --output FORMAT"), "{stdout}");
}

#[test]
fn help_alone_prints_every_command() {
    let (code, stdout, stderr) = visor(&["help"]);
    assert_eq!(code, 0, "{stderr}");
    for command in [
        "init", "run", "check", "status", "prepare", "restart", "switch", "version", "help",
    ] {
        assert!(
            stdout.contains(&format!("  visor {command}")),
            "{command}: {stdout}"
        );
    }
    assert_eq!(visor(&["--help"]).1, stdout);
    assert_eq!(visor(&["-h"]).1, stdout);
}

#[test]
fn unknown_commands_and_options_get_a_suggestion() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["sttaus", "--home", "/h"],
            "visor: unknown command \"sttaus\"; did you mean status?",
            "Run 'visor help' for usage.",
        ),
        (
            &["foo", "bar"],
            "visor: unknown command \"foo\"",
            "Run 'visor help' for usage.",
        ),
        (
            &["help", "rnu"],
            "visor: unknown command \"rnu\"; did you mean run?",
            "Run 'visor help' for usage.",
        ),
        (
            &["check", "--hom", "/h"],
            "visor: unknown option --hom; did you mean --home?",
            "Run 'visor help check' for usage.",
        ),
        (
            &["init", "--home", "/h", "--with-data"],
            "visor: unknown option --with-data; did you mean --with-data-node?",
            "Run 'visor help init' for usage.",
        ),
    ];
    for (args, message, hint) in cases {
        let (code, stdout, stderr) = visor(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr, format!("{message}\n{hint}\n"), "{args:?}");
    }
}

#[test]
fn version_names_the_commit() {
    let (code, stdout, stderr) = visor(&["version", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
    let hash = value["hash"].as_str().unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        hash == "unknown" || (hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
        "{hash}"
    );

    let text = format!("visor {} (commit {hash})\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["version"][..],
        &["version", "--output", "human"],
        &["version", "-o", "text"],
        &["--version"],
        &["-V"],
    ] {
        let (code, stdout, stderr) = visor(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert_eq!(stdout, text, "{args:?}");
    }
    let (code, _, stderr) = visor(&["version", "--output", "yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("use text (or human) or json"), "{stderr}");
}

/// The hand-written completions in contrib/completions/ know every command and option.
#[test]
fn completions_list_every_command_and_option() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/completions");
    let mut words: Vec<String> = vec!["--version".into(), "human".into(), "json".into()];
    for command in zeta_visor::cli::COMMANDS {
        words.push(command.name.to_owned());
        for option in command.options {
            for flag in option.flags.split(", ") {
                let flag = flag.split(' ').next().unwrap_or(flag);
                if let Some(long) = flag.strip_prefix("--") {
                    words.push(format!("--{long}"));
                }
            }
        }
    }
    for file in ["visor.bash", "_visor", "visor.fish"] {
        let path = dir.join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // fish spells a long option `-l home`.
        let spelled = |word: &str| match word.strip_prefix("--") {
            Some(long) if file.ends_with(".fish") => format!("-l {long}"),
            _ => word.to_owned(),
        };
        for word in &words {
            assert!(text.contains(&spelled(word)), "{file} lacks {word}");
        }
    }
}

/// `visor check` right after `visor init` reports what the operator must still do in
/// genesis/, not the example folder vX.X.X/ they were told to copy.
#[test]
fn check_after_init_skips_the_example_folder() {
    let dir = std::env::temp_dir().join(format!("visor-cli-manners-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = dir.join("home");
    let home_arg = home
        .to_str()
        .unwrap_or_else(|| panic!("{}", home.display()));
    let (code, stdout, stderr) = visor(&["init", "--home", home_arg, "--with-data-node"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(home.join("vX.X.X/run-config.toml").is_file());
    let run_config = std::fs::read_to_string(home.join("genesis/run-config.toml")).unwrap();
    assert!(
        run_config.contains("socketPath = \"/run/zeta/core.sock\""),
        "{run_config}"
    );

    let (code, stdout, stderr) = visor(&["check", "--home", home_arg]);
    assert_eq!(code, 78, "{stdout}{stderr}");
    assert!(
        stdout.contains("/genesis/run-config.toml: [zeta.binary]"),
        "{stdout}"
    );
    assert!(!stdout.contains("vX.X.X"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
