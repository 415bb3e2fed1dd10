//! `visor list`: every version folder of the home (genesis, the folders named by a release tag,
//! every `[upgradeFolders]` entry, and whatever `current` points at), with its run-config name,
//! the versions its binaries report, whether it is ready (the rules of
//! [`crate::node::folder_check`], as `check` and an upgrade apply them) and which one is
//! `current` or pending; then the backups in `[backup] folder`, newest first, with their size
//! and time. It only reads: it works beside a running Visor and writes nothing.
//!
//! Also the versions a run-config's binaries report ([`ask_versions`]), which `visor version
//! --home` prints for `current`.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::init::EXAMPLE_FOLDER;
use super::run::load_config;
use super::switch_guard::ReleaseVersion;
use super::{out, EXIT_CONFIG, EXIT_OK};
use crate::backup::{self, Reason};
use crate::cli::Output;
use crate::config::run_config::RunConfig;
use crate::config::Config;
use crate::home::supervise_folder::{self, SuperviseFolder};
use crate::home::{self, Home, GENESIS_FOLDER, RUN_CONFIG_FILE, TMP_PREFIX};
use crate::node::folder_check::{binary_version, load_startable};
use crate::ops::log::escape_controls;

/// One binary of a run-config and the version it reported.
pub(super) struct Reported {
    /// `core` or `data node`.
    pub process: &'static str,
    pub path: PathBuf,
    /// `None` when it was not asked (`--no-exec`).
    pub version: Option<Result<String, String>>,
}

impl Reported {
    /// `{"path": …, "version": …, "error": …}`.
    pub fn to_json(&self) -> Value {
        let (version, error) = match &self.version {
            Some(Ok(version)) => (Some(version.as_str()), None),
            Some(Err(problem)) => (None, Some(problem.as_str())),
            None => (None, None),
        };
        json!({
            "path": self.path.display().to_string(),
            "version": version,
            "error": error,
        })
    }
}

/// The versions the binaries of a startable run-config report (`version --output json`,
/// with the folder check's time limit), core first; a data node with the core's binary is
/// asked once. With `exec` false nothing is run.
pub(super) fn ask_versions(run: &RunConfig, exec: bool) -> Vec<Reported> {
    let ask = |path: &Path| exec.then(|| binary_version(path));
    let core_version = ask(&run.core.path);
    let mut reported = Vec::new();
    if let Some(data_node) = &run.data_node {
        let version = if data_node.path == run.core.path {
            core_version.clone()
        } else {
            ask(&data_node.path)
        };
        reported.push(Reported {
            process: "data node",
            path: data_node.path.clone(),
            version,
        });
    }
    reported.insert(
        0,
        Reported {
            process: "core",
            path: run.core.path.clone(),
            version: core_version,
        },
    );
    reported
}

/// A folder to list and how it was found.
struct Entry {
    /// The release tag the folder is used for; `None` for genesis and for a folder no tag
    /// leads to (`current` pointing outside HOME and `[upgradeFolders]`).
    tag: Option<String>,
    /// `None` when the tag is refused as a folder name.
    folder: Result<PathBuf, String>,
}

pub fn list(root: &Path, output: Output, no_exec: bool) -> i32 {
    let home = Home::new(root.to_path_buf());
    let (config, config_problems) = match load_config(&home) {
        Ok((config, _)) => (config, Vec::new()),
        Err(problems) => (Config::default(), problems),
    };
    let current = home.current_target().ok();
    let supervisor = supervisor(root);
    let pending = &supervisor["pending"];
    let pending_tag = pending["release"].as_str();
    let mut entries = entries(root, &config, current.as_deref());
    if let Some(tag) = pending_tag {
        // An accepted release whose folder is missing (to be installed) is listed too.
        if !entries.iter().any(|e| e.tag.as_deref() == Some(tag)) {
            entries.push(Entry {
                tag: Some(tag.to_owned()),
                folder: home::upgrade_folder(root, &config.upgrade_folders, tag),
            });
        }
    }
    let versions: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut row = describe(entry, !no_exec);
            let folder = entry.folder.as_deref().ok();
            row["current"] = json!(folder.zip(current.as_deref()).is_some_and(same_folder));
            row["pending"] = json!(entry.tag.is_some() && entry.tag.as_deref() == pending_tag);
            row
        })
        .collect();
    let backups = list_backups(config.backup.folder.as_deref());
    let report = json!({
        "home": root.display().to_string(),
        "running": supervisor["running"],
        "cannot_tell": supervisor["cannot_tell"],
        "pid": supervisor["pid"],
        "current": current.as_ref().map(|c| c.display().to_string()),
        "pending": pending,
        "executed": !no_exec,
        "versions": versions,
        "backup_folder": config.backup.folder.as_ref().map(|f| f.display().to_string()),
        "backups": backups.0,
        "backups_error": backups.1,
        "config_problems": config_problems,
    });
    match output {
        Output::Json => out(&report.to_string()),
        Output::Text => print_text(&report),
    }
    if config_problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_CONFIG
    }
}

/// The backups in `[backup] folder`, newest first, each with its size and time, and why the
/// folder could not be read (a missing folder has none). Only reads.
fn list_backups(folder: Option<&Path>) -> (Vec<Value>, Option<String>) {
    let Some(folder) = folder else {
        return (Vec::new(), None);
    };
    let found = match backup::backups(folder) {
        Ok(found) => found,
        Err(e) => {
            return (
                Vec::new(),
                Some(format!(
                    "{}: cannot list the backups ({e}); run visor list as the user Visor runs as",
                    folder.display()
                )),
            )
        }
    };
    let rows = found
        .into_iter()
        .map(|(name, path)| {
            let (reason, height) = match name.reason {
                Reason::Upgrade { height } => ("upgrade", Some(height)),
                Reason::Switch => ("switch", None),
            };
            let (files, bytes, error) = match backup::footprint(&path) {
                Ok((files, bytes)) => (Some(files), Some(bytes), None),
                Err((at, e)) => (
                    None,
                    None,
                    Some(format!("{}: cannot be read ({e})", at.display())),
                ),
            };
            json!({
                "name": name.format(),
                "path": path.display().to_string(),
                "from": name.from.as_str(),
                "to": name.to.as_str(),
                "reason": reason,
                "height": height,
                "started": rfc3339(name.started),
                "files": files,
                "bytes": bytes,
                "error": error,
            })
        })
        .collect();
    (rows, None)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time, from the stamp in backup names.
fn rfc3339(unix: u64) -> String {
    let stamp = backup::stamp(unix);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

/// Whether a Visor holds the lock, its pid and the release it holds as pending, read as
/// `visor status` reads them: from the lock, then from the `status.json` of that Visor.
fn supervisor(root: &Path) -> Value {
    let supervise = SuperviseFolder::new(root);
    let holder = supervise.holder();
    let running = holder.as_ref().ok().copied().flatten();
    let pending = supervise
        .read_status()
        .filter(|s| running.is_some_and(|pid| s["visor"]["pid"] == pid))
        .map(|s| s["pending"].clone())
        .unwrap_or(Value::Null);
    json!({
        "running": holder.as_ref().ok().map(Option::is_some),
        "cannot_tell": holder.as_ref().err(),
        "pid": running.filter(|pid| *pid != 0),
        "pending": pending,
    })
}

/// The folders to list: genesis, each `[upgradeFolders]` entry, each folder directly in HOME
/// that holds a run-config or is named like a release version (except `current`, Visor's own,
/// leftovers and the example folder), and the folder `current` points at; genesis first,
/// then by version.
fn entries(root: &Path, config: &Config, current: Option<&Path>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let genesis = root.join(GENESIS_FOLDER);
    if genesis.is_dir() {
        entries.push(Entry {
            tag: None,
            folder: Ok(genesis),
        });
    }
    for tag in config.upgrade_folders.keys() {
        entries.push(Entry {
            tag: Some(tag.clone()),
            folder: home::upgrade_folder(root, &config.upgrade_folders, tag),
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !name.starts_with(TMP_PREFIX)
                && ![
                    home::CURRENT_LINK,
                    GENESIS_FOLDER,
                    EXAMPLE_FOLDER,
                    supervise_folder::FOLDER,
                ]
                .contains(&name.as_str())
        })
        .filter(|name| {
            root.join(name).join(RUN_CONFIG_FILE).is_file() || ReleaseVersion::parse(name).is_some()
        })
        .collect();
    names.sort();
    for name in names {
        let folder = root.join(&name);
        if listed(&entries, &folder) {
            continue;
        }
        // A folder is a tag's when that tag leads to it ([upgradeFolders] may send it away).
        let tag = home::upgrade_folder(root, &config.upgrade_folders, &name)
            .is_ok_and(|f| f == folder)
            .then_some(name);
        entries.push(Entry {
            tag,
            folder: Ok(folder),
        });
    }
    if let Some(current) = current {
        if !listed(&entries, current) {
            entries.push(Entry {
                tag: None,
                folder: Ok(current.to_path_buf()),
            });
        }
    }
    entries.sort_by(order);
    entries
}

fn listed(entries: &[Entry], folder: &Path) -> bool {
    entries
        .iter()
        .any(|e| e.folder.as_deref().is_ok_and(|f| same_folder((f, folder))))
}

/// The same folder: the same path, or the same folder once links are resolved.
fn same_folder((a, b): (&Path, &Path)) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Genesis first, then tags that are release versions by precedence, then other tags by
/// name, then folders without a tag by path.
fn order(a: &Entry, b: &Entry) -> Ordering {
    let genesis = |e: &Entry| {
        e.tag.is_none()
            && e.folder
                .as_ref()
                .is_ok_and(|f| f.file_name().is_some_and(|n| n == GENESIS_FOLDER))
    };
    let rank = |e: &Entry| match &e.tag {
        _ if genesis(e) => 0,
        Some(tag) if ReleaseVersion::parse(tag).is_some() => 1,
        Some(_) => 2,
        None => 3,
    };
    rank(a).cmp(&rank(b)).then_with(|| match (&a.tag, &b.tag) {
        (Some(x), Some(y)) => match (ReleaseVersion::parse(x), ReleaseVersion::parse(y)) {
            (Some(vx), Some(vy)) => vx.precedence(&vy).then_with(|| x.cmp(y)),
            _ => x.cmp(y),
        },
        _ => a.folder.as_deref().ok().cmp(&b.folder.as_deref().ok()),
    })
}

/// One folder as a JSON object (without `current` and `pending`): its run-config's name, the
/// versions its binaries report, and whether it is ready. A folder with a tag is ready as an
/// upgrade needs it (`check_upgrade_folder`: startable, and every binary reports the tag); one
/// without, as `run` and `check` need it (startable). Binaries are run only in a startable
/// folder, never in one others may write.
fn describe(entry: &Entry, exec: bool) -> Value {
    let mut row = json!({
        "tag": entry.tag,
        "folder": Value::Null,
        "name": Value::Null,
        "core": Value::Null,
        "data_node": Value::Null,
        "ready": false,
        "problems": [],
    });
    let folder = match &entry.folder {
        Ok(folder) => folder,
        Err(problem) => {
            row["problems"] = json!([problem]);
            return row;
        }
    };
    row["folder"] = json!(folder.display().to_string());
    if !folder.is_dir() {
        row["problems"] = json!([format!("{}: no such folder", folder.display())]);
        return row;
    }
    let run = match load_startable(folder) {
        Ok(run) => run,
        Err(problems) => {
            row["problems"] = json!(problems);
            return row;
        }
    };
    row["name"] = json!(run.name);
    let reported = ask_versions(&run, exec);
    let mut problems = Vec::new();
    if let Some(tag) = &entry.tag {
        for binary in &reported {
            match &binary.version {
                Some(Ok(version)) if version != tag => problems.push(format!(
                    "{} reports version {version}, expected {tag}; put the {tag} binary in {}",
                    binary.path.display(),
                    folder.display()
                )),
                Some(Err(problem)) => problems.push(problem.clone()),
                _ => {}
            }
        }
        problems.dedup();
    }
    for binary in &reported {
        let key = if binary.process == "core" {
            "core"
        } else {
            "data_node"
        };
        row[key] = binary.to_json();
    }
    row["ready"] = json!(problems.is_empty());
    row["problems"] = json!(problems);
    row
}

/// One row per folder in aligned columns, then what the marks mean, each problem, and the
/// problems of config.toml. Every value has its control characters escaped.
fn print_text(report: &Value) {
    let versions = report["versions"].as_array().cloned().unwrap_or_default();
    let mut rows = vec![[
        String::new(),
        "TAG".into(),
        "NAME".into(),
        "CORE".into(),
        "DATA NODE".into(),
        "READY".into(),
        "FOLDER".into(),
    ]];
    for row in &versions {
        let mark = format!(
            "{}{}",
            if row["current"] == true { "*" } else { "" },
            if row["pending"] == true { ">" } else { "" }
        );
        let ready = if row["ready"] == true { "yes" } else { "no" };
        rows.push([
            mark,
            text(&row["tag"]),
            text(&row["name"]),
            binary_column(&row["core"]),
            binary_column(&row["data_node"]),
            ready.into(),
            text(&row["folder"]),
        ]);
    }
    // The mark column is two wide whatever it holds: `*`, `>` or both.
    let mut widths = [2, 0, 0, 0, 0, 0, 0];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out(cells.join("  ").trim_end());
    }
    out("");
    print_marks(report);
    for row in &versions {
        let who = match (&row["tag"], &row["folder"]) {
            (Value::String(_), _) => text(&row["tag"]),
            (_, folder) => text(folder),
        };
        for problem in row["problems"].as_array().into_iter().flatten() {
            out(&format!("{who}: not ready: {}", text(problem)));
        }
        // A version a folder without a tag could not report (genesis) does not make it
        // unready, but is shown.
        if row["tag"].is_null() {
            for key in ["core", "data_node"] {
                if !row[key]["error"].is_null() {
                    out(&format!("{who}: {}", text(&row[key]["error"])));
                }
            }
        }
    }
    print_backups(report);
    for problem in report["config_problems"].as_array().into_iter().flatten() {
        out(&format!("config.toml: {}", text(problem)));
    }
}

/// The backups of `[backup] folder`, when one is set: a table, newest first, then one line
/// on the folder.
fn print_backups(report: &Value) {
    if report["backup_folder"].is_null() {
        return;
    }
    let folder = text(&report["backup_folder"]);
    let backups = report["backups"].as_array().cloned().unwrap_or_default();
    out("");
    if !backups.is_empty() {
        let mut rows = vec![[
            "BACKUP".to_owned(),
            "TAKEN".into(),
            "FILES".into(),
            "SIZE".into(),
        ]];
        for row in &backups {
            let size = match row["bytes"].as_u64() {
                Some(bytes) => backup::size(bytes),
                None => "error".into(),
            };
            rows.push([
                text(&row["name"]),
                text(&row["started"]),
                text(&row["files"]),
                size,
            ]);
        }
        let mut widths = [0; 4];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                // Counts and sizes are aligned on the right.
                .map(|(column, (cell, width))| match column {
                    0 | 1 => format!("{cell:width$}"),
                    _ => format!("{cell:>width$}"),
                })
                .collect();
            out(cells.join("  ").trim_end());
        }
        out("");
    }
    match (&report["backups_error"], backups.len()) {
        (Value::String(_), _) => out(&format!("backups: {}", text(&report["backups_error"]))),
        (_, 0) => out(&format!("backups: none in {folder}")),
        (_, n) => out(&format!("backups: {n} in {folder}, newest first")),
    }
    for row in &backups {
        if !row["error"].is_null() {
            out(&format!("{}: {}", text(&row["name"]), text(&row["error"])));
        }
    }
}

/// The lines under the table: which marks mean what, and how the versions were found.
fn print_marks(report: &Value) {
    let pending = &report["pending"];
    let pending = if let Some(cause) = report["cannot_tell"].as_str() {
        format!(
            "cannot tell whether Visor runs: {}",
            text(&Value::from(cause))
        )
    } else if report["running"] != true {
        "none known (no Visor runs; visor status asks the core)".to_owned()
    } else if pending.is_null() {
        format!("none (Visor pid {})", text(&report["pid"]))
    } else {
        format!(
            "{} at block {} (Visor pid {}: {})",
            text(&pending["release"]),
            text(&pending["height"]),
            text(&report["pid"]),
            text(&pending["folder_state"])
        )
    };
    out(&format!("* current: {}", text(&report["current"])));
    out(&format!("> pending: {pending}"));
    if report["executed"] != true {
        out(
            "versions not asked (--no-exec): ready means the run-config, the binaries and who \
             may write them are right; the versions were not checked",
        );
    }
}

/// A binary's column: the version it reports, `error` when it did not say, `-` for none or
/// not asked.
fn binary_column(binary: &Value) -> String {
    if !binary["version"].is_null() {
        text(&binary["version"])
    } else if !binary["error"].is_null() {
        "error".into()
    } else {
        "-".into()
    }
}

/// A value for a person: control characters escaped, `-` for nothing.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape_controls(s).into_owned(),
        Value::Null => "-".into(),
        other => escape_controls(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;

    fn temp_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("visor-list-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    fn tags(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match (&e.tag, &e.folder) {
                (Some(tag), _) => tag.clone(),
                (None, Ok(folder)) => format!("({})", folder.display()),
                (None, Err(_)) => "?".into(),
            })
            .collect()
    }

    #[test]
    fn entries_are_genesis_then_versions_then_the_rest() {
        let root = temp_root("entries");
        for folder in [
            "genesis",
            "v1.10.0",
            "v1.9.0",
            "v1.9.0-rc.1",
            "custom",
            "vX.X.X",
            ".visor",
            ".visor-tmp-install-v2-1-0",
            "data",
            "second",
        ] {
            fs::create_dir_all(root.join(folder)).unwrap();
        }
        // `custom` and `second` hold a run-config; `data` is neither a version folder nor
        // named like a release, and `v1.9.0-rc.1` is listed by its name alone.
        for folder in ["custom", "second", "genesis"] {
            fs::write(root.join(folder).join(RUN_CONFIG_FILE), "").unwrap();
        }
        std::os::unix::fs::symlink("genesis", root.join(home::CURRENT_LINK)).unwrap();
        let config = Config {
            upgrade_folders: BTreeMap::from([
                ("v2.0.0".to_owned(), "second".to_owned()),
                ("v3.0.0".to_owned(), "/nonexistent/v3".to_owned()),
                ("../bad".to_owned(), "x".to_owned()),
            ]),
            ..Config::default()
        };
        let outside = root
            .join("..")
            .join(format!("visor-list-out-{}", std::process::id()));
        let entries = entries(&root, &config, Some(&outside));
        assert_eq!(
            tags(&entries),
            [
                format!("({})", root.join("genesis").display()),
                "v1.9.0-rc.1".into(),
                "v1.9.0".into(),
                "v1.10.0".into(),
                "v2.0.0".into(),
                "v3.0.0".into(),
                "../bad".into(),
                "custom".into(),
                format!("({})", outside.display()),
            ]
        );
        assert!(entries[6].folder.is_err(), "a refused tag is never a path");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_no_tag_leads_to_has_none() {
        let root = temp_root("untagged");
        for folder in ["v2.0.0", "old"] {
            fs::create_dir_all(root.join(folder)).unwrap();
            fs::write(root.join(folder).join(RUN_CONFIG_FILE), "").unwrap();
        }
        // v2.0.0's folder is elsewhere: HOME/v2.0.0 is not the folder of any tag.
        let config = Config {
            upgrade_folders: BTreeMap::from([("v2.0.0".to_owned(), "old".to_owned())]),
            ..Config::default()
        };
        let entries = entries(&root, &config, None);
        assert_eq!(
            tags(&entries),
            [
                "v2.0.0".to_owned(),
                format!("({})", root.join("v2.0.0").display())
            ]
        );
        assert_eq!(entries[0].folder.as_deref().ok(), Some(&*root.join("old")));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_or_refused_folder_is_not_ready_and_runs_nothing() {
        let missing = describe(
            &Entry {
                tag: Some("v9.0.0".into()),
                folder: Ok("/nonexistent/v9.0.0".into()),
            },
            true,
        );
        assert_eq!(missing["ready"], false);
        assert_eq!(
            missing["problems"][0],
            "/nonexistent/v9.0.0: no such folder"
        );
        assert_eq!(missing["core"], Value::Null);
        let refused = describe(
            &Entry {
                tag: Some("../x".into()),
                folder: Err("release tag \"../x\" is refused".into()),
            },
            true,
        );
        assert_eq!(refused["folder"], Value::Null);
        assert_eq!(refused["problems"][0], "release tag \"../x\" is refused");
    }
}
