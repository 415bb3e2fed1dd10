//! The `[hooks]` table of config.toml: the operator's own commands around an upgrade.
//!
//! `onAccepted` runs once when a release is accepted (after its folder check), beside the
//! running node; `beforeSwitch` runs after the old binaries stopped at the upgrade block and
//! before `current` moves, inside the downtime, and must succeed for the upgrade to go on;
//! `afterUpgrade` runs once when the new core first answers. `timeoutSeconds` bounds each.

use std::time::Duration;

use super::doc::{key_path, Entry, Report};

/// The keys allowed in `[hooks]`.
pub(super) const HOOK_KEYS: &[&str] = &[
    "onAccepted",
    "beforeSwitch",
    "afterUpgrade",
    "timeoutSeconds",
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
    /// The key in `[hooks]`: also the value of `VISOR_EVENT` for the hook and the prefix of
    /// its lines in the log.
    pub fn key(self) -> &'static str {
        match self {
            HookKind::OnAccepted => "onAccepted",
            HookKind::BeforeSwitch => "beforeSwitch",
            HookKind::AfterUpgrade => "afterUpgrade",
        }
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
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

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
