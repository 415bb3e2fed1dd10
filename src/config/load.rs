//! Reading `HOME/config.toml`: the one loader, used by `visor run`, `check`, `status`,
//! `prepare`, `restart` and `switch` ([`load_config`]) and by the config watcher ([`read`] and
//! [`parse`], so that it can tell an unchanged file from a changed one), with one wording of
//! its errors.

use std::path::Path;

use super::{read_config_file, Config};
use crate::home::Home;

/// The advice for a config.toml that does not exist.
const WHEN_MISSING: &str =
    "create it with visor init or restore it (every key is optional, see visor-config(5))";

/// Reads and parses `HOME/config.toml`; also returns the bytes, so the watcher knows the
/// baseline. A missing HOME is one message saying how to create it.
pub fn load_config(home: &Home) -> Result<(Config, Vec<u8>), Vec<String>> {
    let file = home.config_file();
    if !home.root().is_dir() {
        return Err(vec![format!(
            "{}: no such folder; create it with visor init --home {}",
            home.root().display(),
            home.root().display()
        )]);
    }
    let bytes = read(&file).map_err(|message| vec![message])?;
    let config = parse(&file, &bytes)?;
    Ok((config, bytes))
}

/// The bytes of the config.toml at `file`, or one message naming it and what to do
/// ([`read_config_file`]: a regular file of at most 1 MiB).
pub fn read(file: &Path) -> Result<Vec<u8>, String> {
    read_config_file(file, WHEN_MISSING)
}

/// Parses the bytes [`read`] from `file`: UTF-8 text, then [`Config::parse`].
pub fn parse(file: &Path, bytes: &[u8]) -> Result<Config, Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![format!(
            "{}: not valid UTF-8 ({e}); save it as UTF-8",
            file.display()
        )]
    })?;
    Config::parse(file, text)
}

/// [`parse`], then the rule `run` applies to the configuration at start
/// ([`super::hooks::Hooks::program_problems`]): what a reload may put in force.
pub fn parse_usable(file: &Path, bytes: &[u8]) -> Result<Config, Vec<String>> {
    let config = parse(file, bytes)?;
    let problems = config.hooks.program_problems(file);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_or_home_is_one_message_with_advice() {
        let missing = Path::new("/nonexistent/visor-test/config.toml");
        assert_eq!(
            read(missing),
            Err(
                "/nonexistent/visor-test/config.toml: no such file; create it with visor init \
                 or restore it (every key is optional, see visor-config(5))"
                    .to_owned()
            )
        );
        let home = Home::new("/nonexistent/visor-test".into());
        assert_eq!(
            load_config(&home).err().unwrap_or_default(),
            [
                "/nonexistent/visor-test: no such folder; create it with visor init --home \
              /nonexistent/visor-test"
            ]
        );
    }

    #[test]
    fn a_reload_naming_a_hook_program_visor_cannot_run_is_refused() {
        let file = Path::new("/h/config.toml");
        let good = parse_usable(
            file,
            b"[hooks]\nbeforeSwitch = [\"/bin/sh\", \"-c\", \"true\"]\n",
        );
        assert!(good.is_ok(), "{good:?}");
        let errors =
            parse_usable(file, b"[hooks]\nbeforeSwitch = [\"/nonexistent\"]\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("/h/config.toml: hooks.beforeSwitch: /nonexistent: "),
            "{errors:?}"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_named() {
        let errors = parse(Path::new("/h/config.toml"), b"logLevel = \"\xff\"\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("/h/config.toml: not valid UTF-8 (")
                && errors[0].ends_with("); save it as UTF-8"),
            "{errors:?}"
        );
    }
}
