//! `visor status`: what `current` points at, the core's answer about upgrades, and whether a
//! pending release's folder is ready.

use std::path::Path;

use serde_json::{json, Value};

use super::check::QUICK_RPC_TIMEOUT;
use super::run::config_or_exit;
use super::EXIT_OK;
use crate::cli::Output;
use crate::folder_check::{check_upgrade_folder, load_startable};
use crate::home::{self, Home};
use crate::log;
use crate::rpc::CoreClient;

pub fn status(root: &Path, output: Output) -> i32 {
    let home = Home::new(root.to_path_buf());
    let config = match config_or_exit(&home) {
        Ok((config, _)) => config,
        Err(code) => return code,
    };
    let current = home.current_target().ok();
    let run = current.as_deref().map(load_startable);
    let mut report = json!({
        "home": root.display().to_string(),
        "current": current.as_ref().map(|c| c.display().to_string()),
        "running_release": run.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.name.clone()),
        "problems": run.as_ref().and_then(|r| r.as_ref().err()).cloned().unwrap_or_default(),
        "core": Value::Null,
        "pending": Value::Null,
    });
    if let Some(Ok(run)) = &run {
        let mut client = CoreClient::new(run.rpc.socket_path.clone(), run.rpc.http_path.clone());
        let socket = run.rpc.socket_path.display().to_string();
        match client.upgrade_status_within(QUICK_RPC_TIMEOUT) {
            Ok(status) => {
                report["core"] = json!({
                    "socket": socket,
                    "answering": true,
                    "accepted_release": status.accepted.as_ref().map(|a| a.tag.clone()),
                    "upgrade_height": status.accepted.as_ref().map(|a| a.height),
                    "ready_to_upgrade": status.ready,
                });
                if let Some(release) = status.accepted.filter(|a| a.tag != run.name) {
                    report["pending"] =
                        match home::upgrade_folder(root, &config.upgrade_folders, &release.tag) {
                            Ok(folder) => {
                                let check = check_upgrade_folder(&release.tag, &folder);
                                json!({
                                    "tag": release.tag,
                                    "height": release.height,
                                    "folder": folder.display().to_string(),
                                    "folder_ready": check.is_ok(),
                                    "problem": check.err(),
                                    "will_fetch": config.auto_install.enabled
                                    && std::fs::symlink_metadata(&folder).is_err(),
                                })
                            }
                            Err(problem) => json!({
                                "tag": release.tag,
                                "height": release.height,
                                "folder": Value::Null,
                                "folder_ready": false,
                                "problem": problem,
                                "will_fetch": false,
                            }),
                        };
                }
            }
            Err(e) => {
                report["core"] =
                    json!({ "socket": socket, "answering": false, "error": e.to_string() });
            }
        }
    }
    match output {
        Output::Json => println!("{report}"),
        Output::Text => print_text(&report),
    }
    EXIT_OK
}

/// The report as lines for a person. Every value is shown with its control characters
/// escaped: the core's tag, a binary's version output and paths are not trusted to be text.
fn print_text(report: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => log::escape_controls(s).into_owned(),
        Value::Null => "-".into(),
        other => log::escape_controls(&other.to_string()).into_owned(),
    };
    println!("home:             {}", text(&report["home"]));
    println!("current:          {}", text(&report["current"]));
    println!("running release:  {}", text(&report["running_release"]));
    if let Some(problems) = report["problems"].as_array() {
        for problem in problems {
            println!("problem:          {}", text(problem));
        }
    }
    let core = &report["core"];
    if core["answering"] == Value::Bool(true) {
        println!("core:             answering on {}", text(&core["socket"]));
        if core["accepted_release"].is_null() {
            println!("accepted release: none");
        } else {
            println!(
                "accepted release: {} at block {} (ready to upgrade: {})",
                text(&core["accepted_release"]),
                text(&core["upgrade_height"]),
                text(&core["ready_to_upgrade"])
            );
        }
    } else if !core.is_null() {
        println!(
            "core:             not answering on {}: {}",
            text(&core["socket"]),
            text(&core["error"])
        );
    }
    let pending = &report["pending"];
    if !pending.is_null() {
        let state = if pending["folder_ready"] == Value::Bool(true) {
            "ready".to_string()
        } else if pending["will_fetch"] == Value::Bool(true) {
            format!("missing, will be fetched ({})", text(&pending["problem"]))
        } else {
            format!("NOT READY: {}", text(&pending["problem"]))
        };
        println!(
            "pending upgrade:  {} at block {} folder {}: {state}",
            text(&pending["tag"]),
            text(&pending["height"]),
            text(&pending["folder"])
        );
    }
}
