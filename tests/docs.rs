//! Keeps the manual pages in step with the code: every key of the config.toml template, every
//! run-config.toml key, every command of the usage text and every exit code must be documented
//! in man/visor-config.5 or man/visor.1.

use std::path::PathBuf;

use zeta_visor::cli::USAGE;
use zeta_visor::commands::{
    EXIT_BUSY, EXIT_CONFIG, EXIT_FAILURE, EXIT_NOPERM, EXIT_NOT_RUNNING, EXIT_OK, EXIT_UNKNOWN,
    EXIT_USAGE,
};
use zeta_visor::config::CONFIG_TEMPLATE;

/// The keys of run-config.toml, including its tables and the `[vega]` alias.
const RUN_CONFIG_KEYS: &[&str] = &[
    "name",
    "zeta",
    "vega",
    "binary",
    "path",
    "args",
    "rpc",
    "socketPath",
    "httpPath",
    "data_node",
];

/// Reads a manual page from man/.
fn page(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("man")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()))
}

/// Tells whether `word` is a bare TOML key as the template writes them.
fn is_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The key of a `key = value` line, if the line is one.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    let key = key.trim();
    is_identifier(key).then_some(key)
}

/// The keys and the table names of the config.toml template, in template order. A comment
/// line counts only when it is a commented-out key (`# key = value`).
fn template_keys_and_tables() -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut tables = Vec::new();
    for line in CONFIG_TEMPLATE.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            tables.push(table.trim().to_owned());
            continue;
        }
        let candidate = match line.strip_prefix("# ") {
            Some(rest) if key_of(rest).is_some() => rest,
            Some(_) => continue,
            None if line.starts_with('#') => continue,
            None => line,
        };
        if let Some(key) = key_of(candidate) {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
    }
    (keys, tables)
}

/// The words of every `.It` line of a page (the head of each list item).
fn item_heads(page: &str) -> Vec<Vec<&str>> {
    page.lines()
        .filter_map(|line| line.strip_prefix(".It "))
        .map(|rest| rest.split_whitespace().collect())
        .collect()
}

/// The lines of section `name` (`.Sh name`) up to the next section.
fn section<'p>(page: &'p str, name: &str) -> Vec<&'p str> {
    let heading = format!(".Sh {name}");
    page.lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| !line.starts_with(".Sh "))
        .collect()
}

/// Tells whether `word` occurs in `text` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[test]
fn template_parser_finds_the_keys() {
    let (keys, tables) = template_keys_and_tables();
    for key in [
        "maxNumberOfFirstConnectionRetries",
        "upgradePollIntervalMilliseconds",
        "metricsFile",
        "checksumAsset",
        "binaryName",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not found in {keys:?}");
    }
    assert!(keys.len() >= 20, "too few keys found: {keys:?}");
    assert!(!keys.iter().any(|k| k.contains("v1")), "{keys:?}");
    assert_eq!(
        tables,
        [
            "upgradeFolders",
            "autoInstall",
            "autoInstall.asset",
            "hooks",
            "backup"
        ],
        "tables of the template"
    );
}

#[test]
fn every_config_key_is_documented() {
    let manual = page("visor-config.5");
    let heads = item_heads(&manual);
    let (keys, tables) = template_keys_and_tables();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !heads.iter().any(|words| words.contains(&key.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "man/visor-config.5 has no `.It Cm <key>` entry for {missing:?}; document each key of \
         CONFIG_TEMPLATE there, in template order"
    );
    for table in &tables {
        let shown = format!("[{table}]");
        assert!(
            heads.iter().any(|words| words.contains(&shown.as_str())),
            "man/visor-config.5 has no `.It Cm {shown}` entry"
        );
    }
}

#[test]
fn every_run_config_key_is_documented() {
    let manual = page("visor-config.5");
    let run_config = section(&manual, "RUN-CONFIG.TOML").join("\n");
    assert!(
        !run_config.is_empty(),
        "man/visor-config.5 has no RUN-CONFIG.TOML section"
    );
    for key in RUN_CONFIG_KEYS {
        assert!(
            has_word(&run_config, key),
            "the RUN-CONFIG.TOML section of man/visor-config.5 does not mention {key}"
        );
    }
}

#[test]
fn every_command_is_documented() {
    let manual = page("visor.1");
    let commands: Vec<&str> = USAGE
        .lines()
        .filter_map(|line| line.strip_prefix("  visor "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(
        commands.len() >= 7 && commands.contains(&"run") && commands.contains(&"prepare"),
        "commands read from USAGE: {commands:?}"
    );
    let heads = item_heads(&manual);
    let synopsis = section(&manual, "SYNOPSIS");
    for command in commands {
        assert!(
            heads
                .iter()
                .any(|words| words.len() >= 2 && words[0] == "Cm" && words[1] == command),
            "man/visor.1 has no `.It Cm {command}` entry in COMMANDS"
        );
        let in_synopsis = format!(".Cm {command}");
        assert!(
            synopsis.contains(&in_synopsis.as_str()),
            "the SYNOPSIS of man/visor.1 lacks a `{in_synopsis}` line"
        );
    }
}

#[test]
fn every_exit_code_is_documented() {
    let manual = page("visor.1");
    let exit_status = section(&manual, "EXIT STATUS");
    for code in [
        EXIT_OK,
        EXIT_FAILURE,
        EXIT_USAGE,
        EXIT_NOT_RUNNING,
        EXIT_UNKNOWN,
        EXIT_BUSY,
        EXIT_NOPERM,
        EXIT_CONFIG,
    ] {
        let row = format!(".It {code} Ta ");
        assert!(
            exit_status.iter().any(|line| line.starts_with(&row)),
            "the EXIT STATUS table of man/visor.1 has no row for {code}"
        );
    }
}

/// Every source file has a row in ARCHITECTURE.md's code map: by its path, or by its name in
/// a row that names its folder.
#[test]
fn every_module_is_in_the_code_map() {
    let architecture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"),
    )
    .unwrap();
    let rows: Vec<&str> = architecture
        .lines()
        .filter(|l| l.starts_with("| `src/"))
        .collect();
    let mut missing = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .display()
                .to_string();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let folder = relative.trim_end_matches(&name).to_string();
            let listed = rows.iter().any(|row| {
                row.contains(&format!("`{relative}`"))
                    || (row.contains(&format!("`{folder}")) && row.contains(&format!("`{name}`")))
            });
            if !listed {
                missing.push(relative);
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map has no row for {missing:?}"
    );
}

/// `visor restart` reads the running version's run-config again (visor(1), restart), so
/// nothing may tell an operator to restart Visor itself to pick up an edit to it.
#[test]
fn the_readme_and_the_pages_say_that_visor_restart_rereads_the_run_config() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let config_page = page("visor-config.5");
    for (name, text) in [("README.md", &readme), ("visor-config(5)", &config_page)] {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            !flat.contains("restart Visor itself")
                && !flat.contains("takes effect at the next .Ql visor run ."),
            "{name} sends operators to restart Visor for a run-config edit"
        );
    }
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("It reads the running version's `run-config.toml` again first"),
        "README.md does not say that visor restart re-reads the run-config"
    );
    let flat = config_page.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            ".Ql visor restart reads the running version's file again before it stops anything"
        ),
        "visor-config(5) does not say that visor restart re-reads the run-config"
    );
}

/// A `zfs snapshot` hook cannot work under the shipped unit as it stands (`PrivateDevices=yes`
/// hides `/dev/zfs`, `ProtectClock=yes` makes devices an allow list, the user has no ZFS
/// permission): wherever the README or visor-config(5) shows one, they say what it needs.
/// And the backup folder's drop-in keeps the `-` that lets the unit start without the folder.
#[test]
fn a_zfs_hook_example_says_what_it_needs_under_the_unit() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let config_page = page("visor-config.5");
    for (name, text) in [("README.md", &readme), ("visor-config(5)", &config_page)] {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.contains("zfs snapshot") {
            for needed in [
                "PrivateDevices=no",
                "DeviceAllow=/dev/zfs rw",
                "zfs allow -u zeta snapshot,mount",
            ] {
                assert!(
                    flat.contains(needed),
                    "{name} shows a zfs snapshot hook without {needed:?}, so it fails under the \
                     unit"
                );
            }
        }
        assert!(
            flat.contains("ReadWritePaths=-/var/backups/zeta"),
            "{name} does not give the backup folder's drop-in as ReadWritePaths=-/var/backups/zeta"
        );
    }
}
