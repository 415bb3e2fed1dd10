//! `visor init`: creates a home folder with a commented config.toml, genesis/ and an example
//! upgrade folder.

use std::fs;
use std::path::Path;

use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::run_config::run_config_template;
use crate::config::CONFIG_TEMPLATE;
use crate::home::{CONFIG_FILE, GENESIS_FOLDER, RUN_CONFIG_FILE};

/// The example upgrade folder's name, as Vega's visor writes it.
pub const EXAMPLE_FOLDER: &str = "vX.X.X";

pub fn init(home: &Path, with_data_node: bool) -> i32 {
    // An existing folder stays its owner's: filling it as another user would leave files
    // Visor, running as that owner, could not use.
    if home.exists() {
        if let Err(code) = super::refuse_other_user(home) {
            return code;
        }
    }
    match fs::read_dir(home) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                super::err(&format!(
                    "init: {} exists and is not empty; choose a new folder or empty it first",
                    home.display()
                ));
                return EXIT_FAILURE;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            super::err(&format!("init: {}: {e}", home.display()));
            return EXIT_FAILURE;
        }
    }
    match write_home(home, with_data_node) {
        Ok(()) => {
            super::out(&format!("created {}", home.display()));
            for line in created_lines() {
                super::out(&line);
            }
            super::out(&format!(
                "next: edit the run-configs, then run: visor check --home {}",
                home.display()
            ));
            EXIT_OK
        }
        Err(e) => {
            super::err(&format!("init: {e}"));
            EXIT_FAILURE
        }
    }
}

/// What `init` made, one line each, the descriptions in one column.
fn created_lines() -> Vec<String> {
    let made = [
        (
            CONFIG_FILE.to_string(),
            "Visor's settings, every key at its default",
        ),
        (
            format!("{GENESIS_FOLDER}/{RUN_CONFIG_FILE}"),
            "put the first version's binary and settings here",
        ),
        (
            format!("{EXAMPLE_FOLDER}/{RUN_CONFIG_FILE}"),
            "an example upgrade folder: copy it to the release tag's name",
        ),
    ];
    let width = made.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
    made.iter()
        .map(|(path, what)| format!("  {path:<width$}   {what}"))
        .collect()
}

fn write_home(home: &Path, with_data_node: bool) -> Result<(), String> {
    let write = |path: &Path, text: &str| {
        fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mkdir =
        |path: &Path| fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()));
    mkdir(home)?;
    write(&home.join(CONFIG_FILE), CONFIG_TEMPLATE)?;
    for (folder, name) in [
        (GENESIS_FOLDER, "genesis"),
        (EXAMPLE_FOLDER, EXAMPLE_FOLDER),
    ] {
        mkdir(&home.join(folder))?;
        write(
            &home.join(folder).join(RUN_CONFIG_FILE),
            &run_config_template(name, with_data_node),
        )?;
    }
    Ok(())
}
