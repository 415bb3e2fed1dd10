//! `visor status`: whether a Visor runs on the home (from the lock in `HOME/.visor/`) and what
//! it is doing (from its `status.json`), what `current` points at, the core's answer about
//! upgrades, and whether a pending release's folder is ready. A broken config.toml is named
//! among the rest (exit 78), not instead of it. Otherwise the exit status says whether Visor
//! runs, as LSB init scripts and `systemctl status` do: 0 running, 3 not running, 4 cannot
//! tell.

use std::path::Path;

use serde_json::{json, Value};

use super::check::QUICK_RPC_TIMEOUT;
use super::run::load_config;
use super::{out, EXIT_CONFIG, EXIT_NOT_RUNNING, EXIT_OK, EXIT_UNKNOWN};
use crate::cli::Output;
use crate::config::run_config::RunConfig;
use crate::config::Config;
use crate::home::supervise_folder::SuperviseFolder;
use crate::home::{self, Home};
use crate::node::client::CoreClient;
use crate::node::folder_check::{check_upgrade_folder, load_startable};
use crate::ops::log;

pub fn status(root: &Path, output: Output) -> i32 {
    let home = Home::new(root.to_path_buf());
    let (config, config_problems) = match load_config(&home) {
        Ok((config, _)) => (config, Vec::new()),
        Err(problems) => (Config::default(), problems),
    };
    let mut report = supervisor_report(root);
    let current = home.current_target().ok();
    let run = current.as_deref().map(load_startable);
    report["current"] = json!(current.as_ref().map(|c| c.display().to_string()));
    report["current_release"] = json!(run.as_ref().and_then(|r| r.as_ref().ok()).map(|r| &r.name));
    report["problems"] = json!(run
        .as_ref()
        .and_then(|r| r.as_ref().err())
        .cloned()
        .unwrap_or_default());
    report["config_problems"] = json!(config_problems);
    report["core"] = Value::Null;
    report["pending"] = Value::Null;
    if let Some(Ok(run)) = &run {
        let (core, pending) = core_report(root, &config, run);
        report["core"] = core;
        report["pending"] = pending;
    }
    match output {
        Output::Json => out(&report.to_string()),
        Output::Text => print_text(&report),
    }
    if config_problems_in(&report) {
        EXIT_CONFIG
    } else {
        match report["running"] {
            Value::Bool(true) => EXIT_OK,
            Value::Bool(false) => EXIT_NOT_RUNNING,
            _ => EXIT_UNKNOWN,
        }
    }
}

fn config_problems_in(report: &Value) -> bool {
    report["config_problems"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
}

/// Whether a Visor runs (from the lock, so one killed outright reads as not running; `null`
/// with the cause in `cannot_tell` when the lock cannot be tested) and what it is doing (from
/// the status file it keeps).
fn supervisor_report(root: &Path) -> Value {
    let supervise = SuperviseFolder::new(root);
    let holder = supervise.holder();
    let pid = holder.as_ref().ok().copied().flatten();
    // A status file written by another Visor than the one holding the lock (the holder has
    // just started) says nothing about the holder yet.
    let supervisor = match pid {
        Some(pid) => match supervise.read_status_or_warning() {
            Ok(status) => status
                .filter(|s| s["visor"]["pid"] == pid)
                .unwrap_or(Value::Null),
            Err(warning) => {
                super::err(&format!(
                    "warning: ignored: {}",
                    log::escape_controls(&warning)
                ));
                Value::Null
            }
        },
        None => Value::Null,
    };
    let live = |key: &str| supervisor[key].clone();
    json!({
        "home": root.display().to_string(),
        "running": holder.as_ref().ok().map(Option::is_some),
        "cannot_tell": holder.as_ref().err().map(|cause| super::control::cannot_tell(root, cause)),
        "pid": pid.filter(|pid| *pid != 0),
        "since": supervisor["visor"]["started_at"].clone(),
        "phase": live("phase"),
        "status": live("status"),
        "running_release": live("release"),
        "children": live("children"),
        "restarts": live("restarts"),
        "supervisor_pending": live("pending"),
        "last_error": live("last_error"),
        "resolved_error": live("resolved_error"),
        "refused_reload": live("refused_reload"),
        "hooks": live("hooks"),
        "backup": live("backup"),
    })
}

/// The core's own answer (asked with a short limit), and the pending release it names.
fn core_report(root: &Path, config: &Config, run: &RunConfig) -> (Value, Value) {
    let mut client = CoreClient::new(run.rpc.socket_path.clone(), run.rpc.http_path.clone());
    let socket = run.rpc.socket_path.display().to_string();
    let status = match client.upgrade_status_within(QUICK_RPC_TIMEOUT) {
        Ok(status) => status,
        Err(e) => {
            let core = json!({ "socket": socket, "answering": false, "error": e.to_string() });
            return (core, Value::Null);
        }
    };
    let core = json!({
        "socket": socket,
        "answering": true,
        "accepted_release": status.accepted.as_ref().map(|a| a.tag.clone()),
        "upgrade_height": status.accepted.as_ref().map(|a| a.height),
        "ready_to_upgrade": status.ready,
    });
    let pending = match status.accepted.filter(|a| a.tag != run.name) {
        Some(release) => pending_report(root, config, &release.tag, release.height),
        None => Value::Null,
    };
    (core, pending)
}

/// An accepted release's folder: where, whether ready, and whether `run` would fetch it.
fn pending_report(root: &Path, config: &Config, tag: &str, height: u64) -> Value {
    match home::upgrade_folder(root, &config.upgrade_folders, tag) {
        Ok(folder) => {
            let check = check_upgrade_folder(tag, &folder);
            json!({
                "tag": tag,
                "height": height,
                "folder": folder.display().to_string(),
                "folder_ready": check.is_ok(),
                "problem": check.err(),
                "will_fetch": config.auto_install.enabled
                    && std::fs::symlink_metadata(&folder).is_err(),
            })
        }
        Err(problem) => json!({
            "tag": tag,
            "height": height,
            "folder": Value::Null,
            "folder_ready": false,
            "problem": problem,
            "will_fetch": false,
        }),
    }
}

/// The report as lines for a person. Every value is shown with its control characters
/// escaped: the core's tag, a binary's version output and paths are not trusted to be text.
fn print_text(report: &Value) {
    print_supervisor(report);
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
    print_core(&report["core"]);
    print_pending(&report["pending"]);
}

/// A value for a person: control characters escaped, `-` for nothing.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => log::escape_controls(s).into_owned(),
        Value::Null => "-".into(),
        other => log::escape_controls(&other.to_string()).into_owned(),
    }
}

fn print_supervisor(report: &Value) {
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
                "{:<18}{}",
                format!("{} pid:", text(&child["process"])),
                text(&child["pid"])
            ));
        }
        print_errors(report);
        for hook in report["hooks"]["running"].as_array().into_iter().flatten() {
            out(&format!("hook:             {} running", text(hook)));
        }
        if !report["hooks"]["failing"].is_null() {
            out(&format!(
                "hook:             FAILED {}",
                text(&report["hooks"]["failing"])
            ));
        }
        print_backup(&report["backup"]);
        if !report["refused_reload"].is_null() {
            out(&format!(
                "config reload:    REFUSED, the previous configuration is in force: {}",
                text(&report["refused_reload"])
            ));
        }
    } else if report["running"] == Value::Bool(false) {
        out("visor:            not running");
    } else {
        out(&format!(
            "visor:            {}",
            text(&report["cannot_tell"])
        ));
    }
}

/// The running Visor's backups (`backup` of its `status.json`): the one under way with its
/// progress, the problems of `[backup]`, the last failure and the last backup completed.
fn print_backup(backup: &Value) {
    if backup.is_null() {
        return;
    }
    let bytes = |v: &Value| {
        v.as_u64()
            .map_or_else(|| "-".to_owned(), crate::backup::size)
    };
    let running = &backup["running"];
    if !running.is_null() {
        let moving = format!(
            "backing up for {} to {}",
            text(&running["from"]),
            text(&running["to"])
        );
        if running["files"].is_null() {
            out(&format!(
                "backup:           {moving}, started {}",
                text(&running["started_at"])
            ));
        } else {
            let left = match running["seconds_left"].as_u64() {
                Some(left) => format!(", about {left} s left"),
                None => String::new(),
            };
            out(&format!(
                "backup:           {moving}: {}/{} files, {}/{}, {}/s{left}",
                text(&running["files"]),
                text(&running["files_total"]),
                bytes(&running["bytes"]),
                bytes(&running["bytes_total"]),
                bytes(&running["bytes_per_second"]),
            ));
        }
    }
    let problems = backup["problems"].as_array().map_or(&[][..], Vec::as_slice);
    for problem in problems {
        out(&format!("backup:           PROBLEM {}", text(problem)));
    }
    if !backup["failed"].is_null() {
        out(&format!(
            "backup:           FAILED {}",
            text(&backup["failed"])
        ));
    }
    if running.is_null() && problems.is_empty() && backup["enabled"] == Value::Bool(true) {
        match backup["cost"].as_str() {
            Some(cost) => out(&format!(
                "backup:           on; {}",
                log::escape_controls(cost)
            )),
            None => out("backup:           on"),
        }
    }
    let last = &backup["last"];
    if !last.is_null() {
        let seconds = last["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
        out(&format!(
            "last backup:      {} ({} files, {}, {seconds:.1} s, completed {})",
            text(&last["path"]),
            text(&last["files"]),
            bytes(&last["bytes"]),
            text(&last["completed_at"])
        ));
    }
}

/// The last error with its time while its condition lasts, or once resolved, when that was
/// seen (a string from an older Visor is shown as it is).
fn print_errors(report: &Value) {
    let error = &report["last_error"];
    if let Some(message) = error.as_str() {
        out(&format!(
            "last error:       {}",
            log::escape_controls(message)
        ));
    } else if !error.is_null() {
        out(&format!(
            "last error:       {} {}",
            text(&error["at"]),
            text(&error["message"])
        ));
    }
    let resolved = &report["resolved_error"];
    if !resolved.is_null() {
        out(&format!(
            "resolved error:   {} {} (resolved {})",
            text(&resolved["at"]),
            text(&resolved["message"]),
            text(&resolved["resolved_at"])
        ));
    }
}

fn print_core(core: &Value) {
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
}

fn print_pending(pending: &Value) {
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
