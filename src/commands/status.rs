//! `visor status`: whether a Visor runs on the home (from the lock in `HOME/.visor/`) and what
//! it is doing (from its `status.json`), what `current` points at, the core's answer about
//! upgrades, and whether a pending release's folder is ready. A broken config.toml is named
//! among the rest (exit 78), not instead of it.

use std::path::Path;

use serde_json::{json, Value};

use super::check::QUICK_RPC_TIMEOUT;
use super::run::load_config;
use super::{out, EXIT_CONFIG, EXIT_OK};
use crate::cli::Output;
use crate::config::Config;
use crate::home::supervise_folder::SuperviseFolder;
use crate::home::{self, Home};
use crate::node::client::CoreClient;
use crate::node::folder_check::{check_upgrade_folder, load_startable};
use crate::ops::log;

pub fn status(root: &Path, output: Output) -> i32 {
    let home = Home::new(root.to_path_buf());
    let supervise = SuperviseFolder::new(root);
    // Whether a Visor runs comes from its lock, so one killed outright reads as not running;
    // what it is doing comes from the status file it keeps.
    let holder = supervise.holder();
    // A status file written by another Visor than the one holding the lock (the holder has
    // just started) says nothing about the holder yet.
    let supervisor = supervise
        .read_status()
        .filter(|s| holder.is_some_and(|pid| s["visor"]["pid"] == pid));
    let (config, config_problems) = match load_config(&home) {
        Ok((config, _)) => (config, Vec::new()),
        Err(problems) => (Config::default(), problems),
    };
    let current = home.current_target().ok();
    let run = current.as_deref().map(load_startable);
    let current_release = run
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .map(|r| r.name.clone());
    let live = |key: &str| match (&holder, &supervisor) {
        (Some(_), Some(s)) => s[key].clone(),
        _ => Value::Null,
    };
    let mut report = json!({
        "home": root.display().to_string(),
        "running": holder.is_some(),
        "pid": holder.filter(|pid| *pid != 0),
        "since": match (&holder, &supervisor) {
            (Some(_), Some(s)) => s["visor"]["started_at"].clone(),
            _ => Value::Null,
        },
        "phase": live("phase"),
        "status": live("status"),
        "running_release": live("release"),
        "children": live("children"),
        "restarts": live("restarts"),
        "supervisor_pending": live("pending"),
        "last_error": live("last_error"),
        "refused_reload": live("refused_reload"),
        "current": current.as_ref().map(|c| c.display().to_string()),
        "current_release": current_release,
        "problems": run.as_ref().and_then(|r| r.as_ref().err()).cloned().unwrap_or_default(),
        "config_problems": config_problems,
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
        Output::Json => out(&report.to_string()),
        Output::Text => print_text(&report),
    }
    if report["config_problems"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
    {
        EXIT_CONFIG
    } else {
        EXIT_OK
    }
}

/// The report as lines for a person. Every value is shown with its control characters
/// escaped: the core's tag, a binary's version output and paths are not trusted to be text.
fn print_text(report: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => log::escape_controls(s).into_owned(),
        Value::Null => "-".into(),
        other => log::escape_controls(&other.to_string()).into_owned(),
    };
    let running = report["running"] == Value::Bool(true);
    if running {
        out(&format!(
            "visor:            running (pid {}) since {}",
            text(&report["pid"]),
            text(&report["since"])
        ));
        out(&format!("doing:            {}", text(&report["status"])));
        out(&format!(
            "running release:  {}",
            text(&report["running_release"])
        ));
        for child in report["children"].as_array().into_iter().flatten() {
            out(&format!(
                "{:<18}pid {}",
                format!("{}:", text(&child["process"])),
                text(&child["pid"])
            ));
        }
        if !report["last_error"].is_null() {
            out(&format!(
                "last error:       {}",
                text(&report["last_error"])
            ));
        }
        if !report["refused_reload"].is_null() {
            out(&format!(
                "config reload:    REFUSED, the previous configuration is in force: {}",
                text(&report["refused_reload"])
            ));
        }
    } else {
        out("visor:            not running");
    }
    out(&format!("home:             {}", text(&report["home"])));
    out(&format!(
        "current:          {} ({})",
        text(&report["current"]),
        text(&report["current_release"])
    ));
    for problem in report["problems"].as_array().into_iter().flatten() {
        out(&format!("problem:          {}", text(problem)));
    }
    for problem in report["config_problems"].as_array().into_iter().flatten() {
        out(&format!("config.toml:      {}", text(problem)));
    }
    let core = &report["core"];
    if core["answering"] == Value::Bool(true) {
        out(&format!(
            "core:             answering on {}",
            text(&core["socket"])
        ));
        if core["accepted_release"].is_null() {
            out("accepted release: none");
        } else {
            out(&format!(
                "accepted release: {} at block {} (ready to upgrade: {})",
                text(&core["accepted_release"]),
                text(&core["upgrade_height"]),
                text(&core["ready_to_upgrade"])
            ));
        }
    } else if !core.is_null() {
        out(&format!(
            "core:             not answering on {}: {}",
            text(&core["socket"]),
            text(&core["error"])
        ));
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
        out(&format!(
            "pending upgrade:  {} at block {} folder {}: {state}",
            text(&pending["tag"]),
            text(&pending["height"]),
            text(&pending["folder"])
        ));
    }
}
