//! `visor version` (and `--version`, `-V`): Visor's version and commit, as text or JSON (the
//! form of the node's own `version --output json`); with a home, also the versions `current`'s
//! binaries report, asked as the folder check asks them. Without a home it runs nothing.

use std::path::Path;

use serde_json::{json, Value};

use super::list::ask_versions;
use super::{out, COMMIT, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::cli::Output;
use crate::home::Home;
use crate::node::folder_check::load_startable;
use crate::ops::log::escape_controls;

pub fn version(output: Output, home: Option<&Path>) -> i32 {
    let version = env!("CARGO_PKG_VERSION");
    let node = home.map(node_report);
    match output {
        Output::Text => {
            out(&format!("visor {version} (commit {COMMIT})"));
            if let Some((node, _)) = &node {
                print_node(node);
            }
        }
        Output::Json => {
            let mut report = json!({ "version": version, "hash": COMMIT });
            if let Some((node, _)) = &node {
                report["node"] = node.clone();
            }
            out(&report.to_string());
        }
    }
    node.map_or(EXIT_OK, |(_, code)| code)
}

/// What `current`'s binaries report (genesis's while `current` is missing, as `run` would
/// start it), and the exit status: [`EXIT_CONFIG`] when `current` or its run-config cannot be
/// used (nothing is run then), [`EXIT_FAILURE`] when a binary does not say its version.
fn node_report(root: &Path) -> (Value, i32) {
    let home = Home::new(root.to_path_buf());
    let mut node = json!({
        "home": root.display().to_string(),
        "folder": Value::Null,
        "release": Value::Null,
        "core": Value::Null,
        "data_node": Value::Null,
        "problems": [],
    });
    let folder = match home.current_folder() {
        Ok((folder, _)) => folder,
        Err(problem) => {
            node["problems"] = json!([problem]);
            return (node, EXIT_CONFIG);
        }
    };
    node["folder"] = json!(folder.display().to_string());
    let run = match load_startable(&folder) {
        Ok(run) => run,
        Err(problems) => {
            node["problems"] = json!(problems);
            return (node, EXIT_CONFIG);
        }
    };
    node["release"] = json!(run.name);
    let mut code = EXIT_OK;
    for binary in ask_versions(&run, true) {
        if matches!(binary.version, Some(Err(_))) {
            code = EXIT_FAILURE;
        }
        let key = if binary.process == "core" {
            "core"
        } else {
            "data_node"
        };
        node[key] = binary.to_json();
    }
    (node, code)
}

/// The node's lines after Visor's; control characters escaped.
fn print_node(node: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => escape_controls(s).into_owned(),
        Value::Null => "-".into(),
        other => escape_controls(&other.to_string()).into_owned(),
    };
    out(&format!(
        "release:   {} ({})",
        text(&node["release"]),
        text(&node["folder"])
    ));
    for (key, label) in [("core", "core:     "), ("data_node", "data node:")] {
        let binary = &node[key];
        if binary.is_null() {
            continue;
        }
        let said = if binary["version"].is_null() {
            format!("ERROR {}", text(&binary["error"]))
        } else {
            format!("{} ({})", text(&binary["version"]), text(&binary["path"]))
        };
        out(&format!("{label} {said}"));
    }
    for problem in node["problems"].as_array().into_iter().flatten() {
        out(&format!("problem:   {}", text(problem)));
    }
}
