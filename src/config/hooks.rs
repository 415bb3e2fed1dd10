//! The `[hooks]` table of config.toml: the operator's own commands around an upgrade.
//!
//! `onAccepted` runs once when a release is accepted (after its folder check), beside the
//! running node; `beforeSwitch` runs after the old binaries stopped at the upgrade block and
//! before `current` moves, inside the downtime, and must succeed for the upgrade to go on;
//! `afterUpgrade` runs once when the new core first answers. `timeoutSeconds` bounds each.
//!
//! Each hook's program follows the rule of the node binaries ([`program_problem`]): an
//! absolute path to a regular file Visor's user may execute and nobody else may write. Parsing
//! does not look at the file system; `run`, `check` and every reload apply the rule to the
//! parsed table ([`Hooks::program_problems`]).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::doc::{key_path, Entry, Report};
use crate::home::permissions;

/// The keys allowed in `[hooks]`.
pub(super) const HOOK_KEYS: &[&str] = &[
    "onAccepted",
    "beforeSwitch",
    "afterUpgrade",
    "timeoutSeconds",
];

/// Every variable Visor sets for a hook. A variable that does not apply to a run
/// (`VISOR_HEIGHT` at a switch, `VISOR_BACKUP` without a backup) is unset, even when Visor's
/// own environment has it.
pub const HOOK_VARIABLES: &[&str] = &[
    "VISOR_EVENT",
    "VISOR_REASON",
    "VISOR_HOME",
    "VISOR_RELEASE",
    "VISOR_HEIGHT",
    "VISOR_FOLDER",
    "VISOR_FROM",
    "VISOR_PREVIOUS_RELEASE",
    "VISOR_BACKUP",
];

/// The default `timeoutSeconds`.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    OnAccepted,
    BeforeSwitch,
    AfterUpgrade,
}

impl HookKind {
    /// Every hook, in the order they run in an upgrade.
    pub const ALL: [HookKind; 3] = [
        HookKind::OnAccepted,
        HookKind::BeforeSwitch,
        HookKind::AfterUpgrade,
    ];

    /// The key in `[hooks]`: also the value of `VISOR_EVENT` for the hook, its `hook` label in
    /// the metrics and the prefix of its lines in the log.
    pub fn key(self) -> &'static str {
        match self {
            HookKind::OnAccepted => "onAccepted",
            HookKind::BeforeSwitch => "beforeSwitch",
            HookKind::AfterUpgrade => "afterUpgrade",
        }
    }

    /// The position of the hook in [`HookKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `[hooks]`: each command is a program and its arguments, not a shell line.
#[derive(Debug, Clone, PartialEq)]
pub struct Hooks {
    pub on_accepted: Option<Vec<String>>,
    pub before_switch: Option<Vec<String>>,
    pub after_upgrade: Option<Vec<String>>,
    /// `timeoutSeconds`, at least 1.
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            on_accepted: None,
            before_switch: None,
            after_upgrade: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

impl Hooks {
    /// The command of a hook, when one is configured.
    pub fn command(&self, kind: HookKind) -> Option<&[String]> {
        match kind {
            HookKind::OnAccepted => self.on_accepted.as_deref(),
            HookKind::BeforeSwitch => self.before_switch.as_deref(),
            HookKind::AfterUpgrade => self.after_upgrade.as_deref(),
        }
    }

    /// Every configured hook whose program Visor may not run ([`program_problem`]), one
    /// message each. The one rule for hooks: `run` applies it at start and `check` with it
    /// (both through `commands::run::startup_check`), and the config watcher to every reload,
    /// which a problem refuses (the previous configuration stays in force).
    pub fn program_problems(&self, config_file: &Path) -> Vec<String> {
        HookKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let program = self.command(kind)?.first()?;
                program_problem(config_file, kind.key(), program)
            })
            .collect()
    }
}

/// The problem with the program of the hook `key` (the first element of its command), as for
/// the node binaries: an absolute path to an existing regular file (the real file behind a
/// symbolic link) that Visor's user may execute and that neither its group nor other users
/// may write. The message names config.toml, the key, the path and the fix.
pub fn program_problem(config_file: &Path, key: &str, program: &str) -> Option<String> {
    let at = format!("{}: hooks.{key}: {program}", config_file.display());
    let path = Path::new(program);
    if !path.is_absolute() {
        return Some(format!(
            "{at}: not an absolute path (Visor searches no PATH, and under systemd a relative \
             path is taken from /); give the program's full path, starting with /"
        ));
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return Some(format!(
                "{at}: {e}; install the program there or fix the path in config.toml"
            ))
        }
    };
    if !meta.is_file() {
        return Some(format!(
            "{at}: not a regular file; point the hook at the program itself"
        ));
    }
    if !executable(path) {
        let mode = meta.permissions().mode() & 0o7777;
        return Some(format!(
            "{at}: not executable by the user Visor runs as (mode {mode:04o}); make it \
             executable for that user (chmod +x {program})"
        ));
    }
    permissions::problem(
        path,
        &format!("the program of hooks.{key} in {}", config_file.display()),
    )
}

/// Whether this process (its effective user and groups) may execute the file at `path`.
fn executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path that outlives the call; faccessat only reads it.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

/// Reads the `[hooks]` table into `hooks`, reporting every problem.
pub(super) fn parse_hooks(rep: &mut Report, entry: &Entry, hooks: &mut Hooks) {
    let Some(table) = rep.table(entry, "") else {
        return;
    };
    let parent = entry.key.as_str();
    for item in table {
        let field = match item.key.as_str() {
            "onAccepted" => &mut hooks.on_accepted,
            "beforeSwitch" => &mut hooks.before_switch,
            "afterUpgrade" => &mut hooks.after_upgrade,
            "timeoutSeconds" => {
                if let Some(timeout) = rep.seconds_at_least(item, parent, 1, 600) {
                    hooks.timeout = timeout;
                }
                continue;
            }
            _ => {
                rep.unknown(item, parent, HOOK_KEYS);
                continue;
            }
        };
        let Some(command) = rep.strings(item, parent) else {
            continue;
        };
        if command.first().is_none_or(|program| program.is_empty()) {
            let what = format!(
                "give the program and its arguments, e.g. {} = [\"/usr/local/bin/backup\", \"--quiet\"]",
                item.key
            );
            rep.error(&item.value_span(), &key_path(parent, &item.key), &what);
            continue;
        }
        *field = Some(command);
    }
}

#[cfg(test)]
mod tests {
    use super::{program_problem, HookKind, Hooks};
    use crate::config::Config;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// A folder of its own (0755) for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-hook-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_hook_program_must_be_absolute_existing_executable_and_written_by_its_owner_only() {
        let dir = temp_dir("programs");
        let config = Path::new("/h/config.toml");
        let good = file(&dir, "snap.sh", 0o755);
        let problem = |program: &Path| {
            program_problem(config, "beforeSwitch", &program.display().to_string())
        };
        assert_eq!(problem(&good), None);
        let link = dir.join("link.sh");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(problem(&link), None, "a link to a good program is good");

        let relative = program_problem(config, "beforeSwitch", "relative/snap.sh").unwrap();
        assert!(
            relative.starts_with(
                "/h/config.toml: hooks.beforeSwitch: relative/snap.sh: not an absolute path"
            ) && relative.ends_with("give the program's full path, starting with /"),
            "{relative}"
        );
        let missing = program_problem(config, "onAccepted", "/nonexistent").unwrap();
        assert!(
            missing.starts_with(
                "/h/config.toml: hooks.onAccepted: /nonexistent: No such file or directory"
            ) && missing.ends_with("install the program there or fix the path in config.toml"),
            "{missing}"
        );
        let folder = problem(&dir).unwrap();
        assert!(
            folder.ends_with("not a regular file; point the hook at the program itself"),
            "{folder}"
        );
        let plain = file(&dir, "plain.sh", 0o644);
        let not_executable = problem(&plain).unwrap();
        assert!(
            not_executable.contains("not executable by the user Visor runs as (mode 0644)")
                && not_executable.ends_with(&format!("(chmod +x {})", plain.display())),
            "{not_executable}"
        );
        let open = file(&dir, "open.sh", 0o777);
        let writable = problem(&open).unwrap();
        assert_eq!(
            writable,
            format!(
                "{0}: the program of hooks.beforeSwitch in /h/config.toml is writable by its group \
                 and every user (mode 0777), so any user who can write it chooses what Visor runs; \
                 remove that right with chmod go-w {0}",
                open.display()
            )
        );
        // Behind a link, the real file is judged and named.
        let open_link = dir.join("open-link.sh");
        std::os::unix::fs::symlink(&open, &open_link).unwrap();
        assert!(problem(&open_link).unwrap().starts_with(&format!(
            "{} (behind {})",
            open.display(),
            open_link.display()
        )));

        let hooks = Hooks {
            on_accepted: Some(vec![good.display().to_string(), "--quiet".into()]),
            before_switch: Some(vec!["relative/snap.sh".into()]),
            after_upgrade: Some(vec![open.display().to_string()]),
            ..Hooks::default()
        };
        let found = hooks.program_problems(config);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("hooks.beforeSwitch"), "{found:?}");
        assert!(found[1].contains("hooks.afterUpgrade"), "{found:?}");
        assert!(Hooks::default().program_problems(config).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn each_hook_s_event_is_its_key() {
        let keys: Vec<&str> = HookKind::ALL.iter().map(|k| k.key()).collect();
        assert_eq!(keys, super::HOOK_KEYS[..3]);
    }

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(Path::new("/h/config.toml"), text)
    }

    #[test]
    fn hooks_are_commands_with_a_timeout() {
        let config = parse(
            "[hooks]\nonAccepted = [\"/bin/echo\", \"hi\"]\nbeforeSwitch = [\"/usr/local/bin/snap\"]\ntimeoutSeconds = 30\n",
        )
        .unwrap();
        assert_eq!(
            config.hooks.on_accepted,
            Some(vec!["/bin/echo".to_string(), "hi".to_string()])
        );
        assert_eq!(config.hooks.after_upgrade, None);
        assert_eq!(config.hooks.timeout, Duration::from_secs(30));
        assert_eq!(parse("").unwrap().hooks.timeout, Duration::from_secs(600));
    }

    #[test]
    fn bad_hooks_name_key_and_line() {
        let errors = parse("[hooks]\nbeforeSwitch = \"/bin/true\"\nafterUpgrade = []\ntimeoutSeconds = 0\nonAccept = [\"x\"]\n")
            .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("/h/config.toml:2: hooks.beforeSwitch: expected an array of strings"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("/h/config.toml:3: hooks.afterUpgrade: give the program"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].starts_with("/h/config.toml:4: hooks.timeoutSeconds"),
            "{}",
            errors[2]
        );
        assert!(
            errors[3].contains("onAccept: unknown key") && errors[3].contains("onAccepted"),
            "{}",
            errors[3]
        );
    }
}
