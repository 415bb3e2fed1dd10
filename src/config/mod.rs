//! Visor's own configuration file, `HOME/config.toml`: the `Config` type and its defaults, the
//! parser that checks every key and reports every problem with its file and line, and the
//! commented template that `visor init` writes.
//!
//! It also owns `doc`, the line-aware TOML reader that `run_config` shares.
//!
//! `load` is the one reader of `HOME/config.toml`, for every command and the watcher.
//!
//! This module must not log, looks at the home folder only to tell a missing HOME from a
//! missing config.toml (`load::load_config`), and does no IO except reading the one file it is
//! given (`read_config_file`: regular files only, at most 1 MiB). Resolving folders, watching
//! the file for changes and acting on the values belong to other modules.

pub mod backup;
pub(crate) mod hooks;
pub(crate) mod load;
pub mod run_config;
pub mod signatures;
pub(crate) mod url;
pub(crate) mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::load::load_config;

use self::doc::{key_path, Entry, Kind, Report};
use self::url::Refusal;
use crate::home::ReleaseTag;

/// The manual page that documents config.toml, named in messages about unknown keys.
const MANUAL: &str = "visor-config(5)";

/// The shortest poll interval accepted, in milliseconds; anything shorter would busy-loop.
const MIN_POLL_INTERVAL_MS: u64 = 10;
/// The longest poll interval: an hour; a longer one would hide an accepted upgrade.
const MAX_POLL_INTERVAL_MS: u64 = 3_600_000;
/// The longest duration in seconds: ten years. Longer ones are typing mistakes, and deadlines
/// that far away would overflow the clock arithmetic.
const MAX_SECONDS: u64 = 10 * 365 * 86_400;
/// The default of `[autoInstall] downloadTimeoutSeconds`: an hour.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// The default of `[autoInstall] maxDownloadBytes`: 4 GiB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 4 << 30;
/// The default of `[autoInstall] minFreeBytes`: 1 GiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

/// The format of Visor's log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Returns the name used for this format in config.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The least severe level of log line that Visor writes; the order is by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything, including detail useful only when tracking down a problem.
    Debug,
    /// Normal operation: starts, stops, upgrades.
    Info,
    /// Problems Visor works around.
    Warn,
    /// Problems that need an operator.
    Error,
}

impl LogLevel {
    /// Returns the name used for this level in config.toml and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The contents of config.toml, with every missing key at its default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `maxNumberOfFirstConnectionRetries`: status calls before the first answer after a first
    /// start or an upgrade.
    pub max_first_connection_retries: u64,
    /// `maxNumberOfRestartConnectionRetries`: status calls before the first answer after a crash
    /// restart.
    pub max_restart_connection_retries: u64,
    /// `maxNumberOfRestarts`: crash restarts allowed before Visor gives up.
    pub max_restarts: u64,
    /// `restartsDelaySeconds`: the wait before restarting crashed binaries.
    pub restarts_delay: Duration,
    /// `restartCounterResetSeconds`: the healthy running time that resets the restart counter.
    pub restart_counter_reset: Duration,
    /// `stopDelaySeconds`: the wait before stopping the binaries for an upgrade.
    pub stop_delay: Duration,
    /// `stopSignalTimeoutSeconds`: the wait between SIGTERM and SIGKILL.
    pub stop_signal_timeout: Duration,
    /// `statusPollIntervalMilliseconds`: how often the core is asked for the upgrade status.
    pub status_poll_interval: Duration,
    /// `upgradePollIntervalMilliseconds`, never longer than `status_poll_interval`: how often the
    /// core is asked while an accepted release is pending.
    pub upgrade_poll_interval: Duration,
    /// `[upgradeFolders]`: release tag to a folder name in HOME or an absolute path.
    pub upgrade_folders: BTreeMap<String, String>,
    /// `logFormat`.
    pub log_format: LogFormat,
    /// `logLevel`.
    pub log_level: LogLevel,
    /// `metricsFile`: the absolute path of the Prometheus textfile, when set.
    pub metrics_file: Option<PathBuf>,
    /// `[autoInstall]`.
    pub auto_install: AutoInstall,
    /// `[hooks]`.
    pub hooks: hooks::Hooks,
    /// `[backup]`.
    pub backup: backup::Backup,
}

/// The `[autoInstall]` table: fetching missing upgrade folders from GitHub releases.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoInstall {
    /// `enabled`.
    pub enabled: bool,
    /// `repositoryOwner`.
    pub repository_owner: String,
    /// `repository`.
    pub repository: String,
    /// `apiUrl`, without trailing slashes.
    pub api_url: String,
    /// `prefetch`: install when an upgrade is accepted rather than when it is ready.
    pub prefetch: bool,
    /// `requireChecksum`: refuse an asset that has no SHA-256 to check against.
    pub require_checksum: bool,
    /// `checksumAsset`: a `sha256sum`-format file in the same release, when set.
    pub checksum_asset: Option<String>,
    /// `[autoInstall.asset]` `name`, with `{os}`, `{arch}` and `{version}` placeholders.
    pub asset_name: String,
    /// `[autoInstall.asset]` `binaryName`: the binary inside a zip asset.
    pub binary_name: String,
    /// `downloadTimeoutSeconds`: how long one asset download may take in all, retries
    /// included.
    pub download_timeout: Duration,
    /// `maxDownloadBytes`: the most one install downloads or copies, and the most a zip asset
    /// may expand to.
    pub max_download_bytes: u64,
    /// `minFreeBytes`: the free space a download, copy or extraction must leave on HOME's file
    /// system; 0 turns the check off.
    pub min_free_bytes: u64,
    /// `caFile`: an absolute path to PEM CA certificates trusted instead of the system's trust
    /// store, when set. Only its form is checked here; it is read at each install.
    pub ca_file: Option<PathBuf>,
    /// `[autoInstall.signatures]`: the minisign keys a release must be signed with.
    pub signatures: signatures::Signatures,
}

impl Default for AutoInstall {
    fn default() -> Self {
        AutoInstall {
            enabled: false,
            repository_owner: "zeta-protocol".to_owned(),
            repository: "zeta".to_owned(),
            api_url: "https://api.github.com".to_owned(),
            prefetch: true,
            require_checksum: true,
            checksum_asset: None,
            asset_name: "zeta-{os}-{arch}.zip".to_owned(),
            binary_name: "zeta".to_owned(),
            download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            ca_file: None,
            signatures: signatures::Signatures::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_first_connection_retries: 175_000,
            max_restart_connection_retries: 10,
            max_restarts: 3,
            restarts_delay: Duration::from_secs(5),
            restart_counter_reset: Duration::from_secs(600),
            stop_delay: Duration::from_secs(0),
            stop_signal_timeout: Duration::from_secs(15),
            status_poll_interval: Duration::from_millis(500),
            upgrade_poll_interval: Duration::from_millis(100),
            upgrade_folders: BTreeMap::new(),
            log_format: LogFormat::Text,
            log_level: LogLevel::Info,
            metrics_file: None,
            auto_install: AutoInstall::default(),
            hooks: hooks::Hooks::default(),
            backup: backup::Backup::default(),
        }
    }
}

/// The keys allowed at the top level of config.toml.
const TOP_KEYS: &[&str] = &[
    "maxNumberOfFirstConnectionRetries",
    "maxNumberOfRestartConnectionRetries",
    "maxNumberOfRestarts",
    "restartsDelaySeconds",
    "restartCounterResetSeconds",
    "stopDelaySeconds",
    "stopSignalTimeoutSeconds",
    "statusPollIntervalMilliseconds",
    "upgradePollIntervalMilliseconds",
    "upgradeFolders",
    "logFormat",
    "logLevel",
    "metricsFile",
    "autoInstall",
    "hooks",
    "backup",
];

/// The keys allowed in `[autoInstall]`.
const AUTO_INSTALL_KEYS: &[&str] = &[
    "enabled",
    "repositoryOwner",
    "repository",
    "apiUrl",
    "prefetch",
    "requireChecksum",
    "checksumAsset",
    "downloadTimeoutSeconds",
    "maxDownloadBytes",
    "minFreeBytes",
    "caFile",
    "asset",
    "signatures",
];

/// The keys allowed in `[autoInstall.asset]`.
const ASSET_KEYS: &[&str] = &["name", "binaryName"];

/// The values allowed for `logFormat`, in the order messages list them.
const LOG_FORMATS: &[LogFormat] = &[LogFormat::Text, LogFormat::Json];

/// The values allowed for `logLevel`, in the order messages list them.
const LOG_LEVELS: &[LogLevel] = &[
    LogLevel::Debug,
    LogLevel::Info,
    LogLevel::Warn,
    LogLevel::Error,
];

impl Config {
    /// Parses config.toml text. `file` is only used in messages.
    ///
    /// Missing keys take their defaults. On failure every problem found is returned, one
    /// message per problem, in the order of their lines.
    pub fn parse(file: &Path, text: &str) -> Result<Config, Vec<String>> {
        let root = doc::parse(file, text).map_err(|message| vec![message])?;
        let mut rep = Report::new(file, text, MANUAL)
            .with_top_level(TOP_KEYS, doc::first_header(text, &root));
        let mut config = Config::default();
        let mut status_ms = None;
        let mut upgrade_ms = None;
        let mut metrics_span = None;
        for entry in &root {
            match entry.key.as_str() {
                "maxNumberOfFirstConnectionRetries" => {
                    set(
                        &mut config.max_first_connection_retries,
                        rep.count(entry, ""),
                    );
                }
                "maxNumberOfRestartConnectionRetries" => {
                    set(
                        &mut config.max_restart_connection_retries,
                        rep.count(entry, ""),
                    );
                }
                "maxNumberOfRestarts" => set(&mut config.max_restarts, rep.count(entry, "")),
                "restartsDelaySeconds" => set(&mut config.restarts_delay, rep.seconds(entry, "")),
                "restartCounterResetSeconds" => {
                    set(&mut config.restart_counter_reset, rep.seconds(entry, ""));
                }
                "stopDelaySeconds" => set(&mut config.stop_delay, rep.seconds(entry, "")),
                "stopSignalTimeoutSeconds" => {
                    set(&mut config.stop_signal_timeout, rep.seconds(entry, ""));
                }
                "statusPollIntervalMilliseconds" => {
                    status_ms = rep.poll_interval(entry, "", 500);
                }
                "upgradePollIntervalMilliseconds" => {
                    upgrade_ms = rep.poll_interval(entry, "", 100);
                }
                "upgradeFolders" => parse_upgrade_folders(&mut rep, entry, &mut config),
                "logFormat" => {
                    set(
                        &mut config.log_format,
                        rep.choice(entry, "", LOG_FORMATS, |f| f.as_str()),
                    );
                }
                "logLevel" => {
                    set(
                        &mut config.log_level,
                        rep.choice(entry, "", LOG_LEVELS, |l| l.as_str()),
                    );
                }
                "metricsFile" => {
                    parse_metrics_file(&mut rep, entry, &mut config);
                    metrics_span = Some(entry.value_span());
                }
                "autoInstall" => parse_auto_install(&mut rep, entry, &mut config.auto_install),
                "hooks" => hooks::parse_hooks(&mut rep, entry, &mut config.hooks),
                "backup" => backup::parse_backup(&mut rep, entry, &mut config.backup),
                _ => rep.unknown(entry, "", TOP_KEYS),
            }
        }
        if let Some(ms) = status_ms {
            config.status_poll_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = upgrade_ms {
            config.upgrade_poll_interval = Duration::from_millis(ms);
        }
        // The upgrade poll exists to be faster than the status poll, so it is never slower.
        config.upgrade_poll_interval = config
            .upgrade_poll_interval
            .min(config.status_poll_interval);
        if let (Some(metrics), Some(span), Some(home)) =
            (&config.metrics_file, metrics_span, file.parent())
        {
            if let Some(what) = metrics_file_clash(home, &config.upgrade_folders, metrics) {
                rep.error(&span, "metricsFile", &what);
            }
        }
        rep.finish(config)
    }
}

pub use crate::home::read::{read_config_file, MAX_CONFIG_BYTES};

/// Stores a value that parsed, leaving the default in place when it did not.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// Reads `[upgradeFolders]`: each key a release tag, each value a folder name or absolute path.
fn parse_upgrade_folders(rep: &mut Report, entry: &Entry, config: &mut Config) {
    let Some(table) = rep.table(entry, "") else {
        return;
    };
    for folder in table {
        let path = key_path(&entry.key, &folder.key);
        // A setting written under [upgradeFolders] would read as a release tag.
        if TOP_KEYS.contains(&folder.key.as_str()) {
            rep.unknown(folder, &entry.key, &[]);
            continue;
        }
        if ReleaseTag::parse(&folder.key).is_err() {
            rep.error(
                &folder.span(),
                &path,
                "not a valid release tag; a tag starts with a letter or digit and holds at most \
                 128 letters, digits, '.', '_', '+' or '-'",
            );
            continue;
        }
        let value = match &folder.node.kind {
            Kind::Str(value) => value,
            Kind::Table(_) => {
                let what = format!(
                    "expected a folder name or absolute path in quotes, found a table; quote tags \
                     that contain dots, e.g. {} = {}",
                    doc::quote("v1.2.3"),
                    doc::quote("v1.2.3"),
                );
                rep.error(&folder.value_span(), &path, &what);
                continue;
            }
            _ => {
                let what = format!(
                    "expected a folder name or absolute path in quotes, found {}; write it as \
                     {} = {}",
                    rep.found(&folder.node),
                    doc::bare_or_quoted(&folder.key),
                    doc::quote(&folder.key),
                );
                rep.error(&folder.value_span(), &path, &what);
                continue;
            }
        };
        match check_upgrade_folder(value) {
            Ok(()) => {
                config
                    .upgrade_folders
                    .insert(folder.key.clone(), value.clone());
            }
            Err(what) => rep.error(&folder.value_span(), &path, &what),
        }
    }
}

/// Checks an `[upgradeFolders]` value: an absolute path, or one folder name inside HOME that
/// does not collide with the names Visor itself uses there.
fn check_upgrade_folder(value: &str) -> Result<(), String> {
    let shown = doc::quote(value);
    if value.is_empty() {
        return Err(
            "empty folder; give a folder name in HOME or an absolute path, or remove the entry"
                .to_owned(),
        );
    }
    if value.contains('\0') {
        return Err(format!(
            "{shown} contains a NUL character; give a folder name in HOME or an absolute path"
        ));
    }
    if Path::new(value).is_absolute() {
        return Ok(());
    }
    if value.contains('/') || value == "." || value == ".." {
        return Err(format!(
            "{shown} is neither a folder name in HOME nor an absolute path; use a single folder \
             name such as \"v1.2.3\" or an absolute path such as \"/srv/zeta/v1.2.3\""
        ));
    }
    if value == "current" || value == ".visor" || value.starts_with(".visor-tmp-") {
        return Err(format!(
            "{shown} is a name Visor manages in HOME; choose another folder name"
        ));
    }
    Ok(())
}

/// Reads `metricsFile`, which must be an absolute path because Visor's working folder is not
/// part of its contract.
fn parse_metrics_file(rep: &mut Report, entry: &Entry, config: &mut Config) {
    let todo = "set it to an absolute path, e.g. metricsFile = \
                \"/var/lib/node_exporter/textfile_collector/visor.prom\", or remove it";
    let Some(value) = rep.string(entry, "", todo) else {
        return;
    };
    match check_absolute_path(value) {
        Ok(path) => config.metrics_file = Some(path),
        Err(what) => rep.error(&entry.value_span(), &entry.key, &format!("{what}; {todo}")),
    }
}

/// Checks a path key's value: not empty, no NUL, absolute (Visor's working folder is not part
/// of its contract). Returns the path, or what is wrong with it.
fn check_absolute_path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        Err("empty path".to_owned())
    } else if value.contains('\0') {
        Err("the path contains a NUL character".to_owned())
    } else if !Path::new(value).is_absolute() {
        Err(format!("{} is not an absolute path", doc::quote(value)))
    } else {
        Ok(PathBuf::from(value))
    }
}

/// Why `metricsFile` would overwrite one of Visor's own files, if it would. Each write of the
/// metrics file replaces whatever is at that path, so it must not be:
///
/// - HOME or a folder above it;
/// - inside a folder of HOME (`genesis/`, a version folder, anything Visor may run from);
/// - directly in HOME unless its name ends in `.prom` and does not start with `.visor-`
///   (which keeps out config.toml, `current`, the version folders and Visor's own temporaries);
/// - named `run-config.toml`, wherever it is;
/// - an absolute `[upgradeFolders]` folder or inside one.
///
/// The paths are compared with `.` and `..` resolved, and again with symbolic links resolved
/// when the folders exist, so a link to HOME does not get around the rule.
fn metrics_file_clash(
    home: &Path,
    upgrade_folders: &BTreeMap<String, String>,
    metrics: &Path,
) -> Option<String> {
    let folders: Vec<(&str, PathBuf)> = upgrade_folders
        .iter()
        .filter(|(_, folder)| Path::new(folder).is_absolute())
        .map(|(tag, folder)| (tag.as_str(), normalize(Path::new(folder))))
        .collect();
    let todo = "point it at a file of its own, e.g. metricsFile = \
                \"/var/lib/node_exporter/textfile_collector/visor.prom\"";
    let shown = doc::quote(&metrics.to_string_lossy());
    let lexical = clash(&normalize(home), &folders, &normalize(metrics));
    let resolved = || {
        let home = std::fs::canonicalize(home).ok()?;
        let metrics = normalize(metrics);
        let parent = std::fs::canonicalize(metrics.parent()?).ok()?;
        let metrics = parent.join(metrics.file_name()?);
        let folders: Vec<(&str, PathBuf)> = folders
            .iter()
            .map(|(tag, folder)| {
                let real = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.clone());
                (*tag, real)
            })
            .collect();
        clash(&home, &folders, &metrics)
    };
    let why = lexical.or_else(resolved)?;
    Some(format!("{shown} {why}; {todo}"))
}

/// [`metrics_file_clash`] on paths already resolved.
fn clash(home: &Path, folders: &[(&str, PathBuf)], metrics: &Path) -> Option<String> {
    let name = metrics
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if home.starts_with(metrics) {
        return Some(format!(
            "is HOME ({}) or a folder above it, which the metrics file would replace",
            home.display()
        ));
    }
    if let Ok(inside) = metrics.strip_prefix(home) {
        let mut parts = inside.components();
        let first = parts.next().map(|c| home.join(c)).unwrap_or_default();
        if parts.next().is_some() {
            return Some(format!(
                "is inside {}, a folder of HOME: Visor's version folders live there and it \
                 would replace their files",
                first.display()
            ));
        }
        if name.starts_with(".visor-") {
            return Some(
                "has a name starting with .visor-, which Visor uses for its own files in HOME"
                    .to_owned(),
            );
        }
        if !name.ends_with(".prom") {
            return Some(format!(
                "is directly in HOME ({}) but its name does not end in .prom; Visor's own \
                 config.toml, current and version folders live there",
                home.display()
            ));
        }
    }
    for (tag, folder) in folders {
        if metrics.starts_with(folder) {
            return Some(format!(
                "is inside {}, the folder of {}, which the metrics file would replace or \
                 pollute",
                folder.display(),
                key_path("upgradeFolders", tag)
            ));
        }
    }
    if name == crate::home::RUN_CONFIG_FILE {
        return Some(
            "is named run-config.toml, the file a version folder runs from, which the metrics \
             file would replace"
                .to_owned(),
        );
    }
    None
}

/// An absolute path with `.` and `..` resolved without looking at the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads the `[autoInstall]` table and its `[autoInstall.asset]` table.
fn parse_auto_install(rep: &mut Report, entry: &Entry, auto: &mut AutoInstall) {
    let Some(table) = rep.table(entry, "") else {
        return;
    };
    let parent = entry.key.as_str();
    for item in table {
        let path = key_path(parent, &item.key);
        match item.key.as_str() {
            "enabled" => set(&mut auto.enabled, rep.boolean(item, parent)),
            "prefetch" => set(&mut auto.prefetch, rep.boolean(item, parent)),
            "requireChecksum" => set(&mut auto.require_checksum, rep.boolean(item, parent)),
            "downloadTimeoutSeconds" => {
                set(
                    &mut auto.download_timeout,
                    rep.seconds_at_least(item, parent, 1, 3600),
                );
            }
            "maxDownloadBytes" => {
                set(
                    &mut auto.max_download_bytes,
                    rep.bytes(item, parent, 1, DEFAULT_MAX_DOWNLOAD_BYTES),
                );
            }
            "minFreeBytes" => {
                set(
                    &mut auto.min_free_bytes,
                    rep.bytes(item, parent, 0, DEFAULT_MIN_FREE_BYTES),
                );
            }
            "repositoryOwner" | "repository" => {
                let todo = "give the GitHub name, e.g. repositoryOwner = \"zeta-protocol\" or \
                            repository = \"zeta\"";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                if is_valid_github_name(value) {
                    let field = if item.key == "repository" {
                        &mut auto.repository
                    } else {
                        &mut auto.repository_owner
                    };
                    *field = value.to_owned();
                } else {
                    let what = format!(
                        "{} is not a GitHub account or repository name; use only letters, digits, \
                         '.', '_' and '-'",
                        doc::quote(value)
                    );
                    rep.error(&item.value_span(), &path, &what);
                }
            }
            "apiUrl" => {
                let todo = "give the GitHub API base URL, e.g. apiUrl = \"https://api.github.com\"";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_api_url(value) {
                    Ok(url) => auto.api_url = url,
                    Err(what) => rep.error(&item.value_span(), &path, &what),
                }
            }
            "checksumAsset" => {
                let todo = "give the name of a sha256sum-format file in the release, e.g. \
                            checksumAsset = \"SHA256SUMS\", or remove the key";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_file_name(value) {
                    Ok(()) => auto.checksum_asset = Some(value.to_owned()),
                    Err(what) => rep.error(&item.value_span(), &path, &format!("{what}; {todo}")),
                }
            }
            "caFile" => {
                let todo = "set it to the absolute path of a PEM file holding the CA \
                            certificates to trust, e.g. caFile = \"/etc/visor/ca.pem\", or \
                            remove it to use the system's trust store";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_absolute_path(value) {
                    Ok(path) => auto.ca_file = Some(path),
                    Err(what) => rep.error(&item.value_span(), &path, &format!("{what}; {todo}")),
                }
            }
            "asset" => parse_asset(rep, item, parent, auto),
            "signatures" => signatures::parse(rep, item, parent, &mut auto.signatures),
            _ => rep.unknown(item, parent, AUTO_INSTALL_KEYS),
        }
    }
}

/// Reads the `[autoInstall.asset]` table; `grandparent` is the key path of its parent table.
fn parse_asset(rep: &mut Report, entry: &Entry, grandparent: &str, auto: &mut AutoInstall) {
    let Some(table) = rep.table(entry, grandparent) else {
        return;
    };
    let parent = key_path(grandparent, &entry.key);
    let parent = parent.as_str();
    for item in table {
        let path = key_path(parent, &item.key);
        match item.key.as_str() {
            "name" => {
                let todo = "give the release asset's file name, e.g. name = \
                            \"zeta-{os}-{arch}.zip\"";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_asset_name(value) {
                    Ok(()) => auto.asset_name = value.to_owned(),
                    Err(what) => rep.error(&item.value_span(), &path, &format!("{what}; {todo}")),
                }
            }
            "binaryName" => {
                let todo =
                    "give the binary's path inside the zip asset, e.g. binaryName = \"zeta\"";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_binary_name(value) {
                    Ok(()) => auto.binary_name = value.to_owned(),
                    Err(what) => rep.error(&item.value_span(), &path, &format!("{what}; {todo}")),
                }
            }
            _ => rep.unknown(item, parent, ASSET_KEYS),
        }
    }
}

/// Tells whether `name` is safe to put into a GitHub API path as an owner or repository.
fn is_valid_github_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// Checks `apiUrl` and returns it without trailing slashes: an API base (no query, fragment
/// or credentials) that [`url::check_url`] accepts, so a token never crosses a network in the
/// clear.
fn check_api_url(value: &str) -> Result<String, String> {
    let shown = doc::quote(value);
    let refused = url::check_url(value).err();
    if refused == Some(Refusal::Unprintable) {
        return Err(format!(
            "{shown} contains whitespace or control characters; give a URL such as \
             \"https://api.github.com\""
        ));
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!(
            "{shown} is not an http(s) URL; give a URL such as \"https://api.github.com\""
        ));
    };
    let rest = rest.trim_end_matches('/');
    let trimmed = &value[..scheme.len() + 3 + rest.len()];
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{shown} carries a query or fragment; give only the API base, e.g. \
             \"https://github.example.com/api/v3\""
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{shown} carries credentials; remove them and set GITHUB_TOKEN in Visor's \
             environment instead"
        ));
    }
    match refused {
        None => Ok(trimmed.to_owned()),
        Some(Refusal::PlainHttp { .. }) => Err(format!(
            "{shown} uses http:// for a host that is not loopback; use https://, as http:// is \
             allowed only for 127.0.0.0/8, ::1 and localhost"
        )),
        Some(Refusal::Scheme { .. }) => Err(format!(
            "{shown} uses the scheme {}; use https:// (or http:// for a loopback host)",
            doc::quote(scheme)
        )),
        Some(Refusal::NotAbsolute | Refusal::Unprintable) => Err(format!(
            "{shown} has no valid host; give a URL such as \"https://api.github.com\""
        )),
    }
}

/// Checks a file name used inside a release: not empty, no folders, nothing unprintable.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("empty name".to_owned())
    } else if name.contains('/') || name == "." || name == ".." {
        Err(format!("{} is not a file name", doc::quote(name)))
    } else if name.chars().any(char::is_control) {
        Err(format!("{} contains control characters", doc::quote(name)))
    } else {
        Ok(())
    }
}

/// Checks `[autoInstall.asset]` `name`: a file name whose only placeholders are `{os}`, `{arch}`
/// and `{version}`.
fn check_asset_name(name: &str) -> Result<(), String> {
    check_file_name(name)?;
    let mut rest = name;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open..];
        if after.starts_with('}') {
            return Err(format!("{} has a '}}' without '{{'", doc::quote(name)));
        }
        let Some(close) = after.find('}') else {
            return Err(format!("{} has a '{{' without '}}'", doc::quote(name)));
        };
        let placeholder = &after[..=close];
        if !matches!(placeholder, "{os}" | "{arch}" | "{version}") {
            return Err(format!(
                "{} has the unknown placeholder {placeholder}, the known ones are {{os}}, {{arch}} \
                 and {{version}}",
                doc::quote(name)
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Checks `[autoInstall.asset]` `binaryName`: a relative path inside the zip that stays inside.
fn check_binary_name(name: &str) -> Result<(), String> {
    let shown = doc::quote(name);
    if name.is_empty() {
        Err("empty name".to_owned())
    } else if name.chars().any(char::is_control) {
        Err(format!("{shown} contains control characters"))
    } else if name.starts_with('/') || name.ends_with('/') {
        Err(format!("{shown} is not a relative file path"))
    } else if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        Err(format!("{shown} has an empty, '.' or '..' path component"))
    } else {
        Ok(())
    }
}

/// The commented config.toml that `visor init` writes, with every key at its default.
pub const CONFIG_TEMPLATE: &str = r#"# Zeta Visor configuration; see visor-config(5).
# Visor re-reads this file when it changes and on SIGHUP. An edit that does not parse keeps the
# previous configuration in force. A key left out takes the default shown here. Durations and
# counts are whole numbers >= 0.

# How many status calls (counted as if 2 s apart) Visor makes before giving up on the core's
# first answer, after it first starts the binaries and after each upgrade; loading a snapshot
# can take a long time.
maxNumberOfFirstConnectionRetries = 175000

# The same budget after a restart that follows a crash.
maxNumberOfRestartConnectionRetries = 10

# How many times Visor restarts crashed binaries before it stops everything and exits 1.
maxNumberOfRestarts = 3

# Seconds to wait before restarting crashed binaries.
restartsDelaySeconds = 5

# Seconds of healthy running (core answering) that reset the restart count to zero.
restartCounterResetSeconds = 600

# Seconds to wait before stopping the binaries for an upgrade.
stopDelaySeconds = 0

# Seconds to wait after SIGTERM for the binaries to exit before sending SIGKILL.
stopSignalTimeoutSeconds = 15

# How often, in milliseconds, the core is asked for the upgrade status (at least 10).
statusPollIntervalMilliseconds = 500

# How often, in milliseconds, the core is asked while an accepted upgrade is pending, so the
# moment it is ready is seen quickly (at least 10, never slower than the status poll).
upgradePollIntervalMilliseconds = 100

# The log line format on stderr: "text", or "json" for one object per line.
logFormat = "text"

# The least severe log lines written: "debug", "info", "warn" or "error".
logLevel = "info"

# An absolute path where Visor keeps a Prometheus textfile (for node_exporter's textfile
# collector) up to date. Unset by default, so no file is written.
# metricsFile = "/var/lib/node_exporter/textfile_collector/visor.prom"

# Where each release's folder is. By default an upgrade to release tag T runs from HOME/T; an
# entry here maps T to another folder name in HOME or to an absolute path. Quote the tags, as
# they contain dots.
[upgradeFolders]
# "v1.3.0" = "v1.3.0-patched"

# Fetching a missing upgrade folder from the GitHub releases of the core's repository.
[autoInstall]
# Whether Visor fetches missing upgrade folders at all.
enabled = false

# The GitHub account and repository whose releases are fetched.
repositoryOwner = "zeta-protocol"
repository = "zeta"

# The GitHub API base URL, for GitHub Enterprise or a mirror. http:// is accepted only for
# loopback hosts.
apiUrl = "https://api.github.com"

# Whether to install an upgrade as soon as it is accepted instead of when it is ready.
prefetch = true

# Whether to refuse an asset that has no SHA-256 checksum to verify it against.
requireChecksum = true

# The name of a sha256sum-format file in the same release that lists the asset's checksum.
# Unset by default: only the checksum GitHub publishes for the asset is used.
# checksumAsset = "SHA256SUMS"

# Seconds one asset download may take in all, retries included (at least 1). A download still
# running then fails; raise it for a large asset on a slow link.
downloadTimeoutSeconds = 3600

# The most one install downloads (or copies, for visor prepare --from), and the most a zip
# asset may expand to, in bytes (at least 1; 4 GiB). A download that announces or sends more
# is refused.
maxDownloadBytes = 4294967296

# The free space, in bytes, that a download, a copy or a zip extraction must leave on the home
# folder's file system, which the node's data often shares (1 GiB). It is checked before and
# while writing; an install that would go below it stops. 0 turns the check off.
minFreeBytes = 1073741824

# A PEM file of CA certificates to trust for apiUrl and the downloads, instead of the system's
# trust store (itself replaced by SSL_CERT_FILE or SSL_CERT_DIR when set, and by Visor's
# built-in Mozilla roots when it holds none). Unset by default.
# caFile = "/etc/visor/ca.pem"

# The release asset to download.
[autoInstall.asset]
# Its file name; {os}, {arch} (amd64 or arm64) and {version} are replaced.
name = "zeta-{os}-{arch}.zip"

# The binary inside a zip asset.
binaryName = "zeta"

# The minisign public keys of the release's signers, as minisign -G prints them. With keys, an
# asset is installed only when at least threshold of them signed it: in NAME.minisig or
# NAME.*.minisig beside the asset, or in SHA256SUMS.minisig or SHA256SUMS.*.minisig over a
# SHA256SUMS that lists it (checksumAsset names another file). Unset by default: releases are
# then not signature-checked. See [autoInstall.signatures] in visor-config(5).
# [autoInstall.signatures]
# publicKeys = ["RWQ...key of signer 1...", "RWR...key of signer 2..."]
# threshold = 1

# Your own commands around an upgrade; each is ["program", "arg", ...], run without a shell,
# with VISOR_EVENT, VISOR_HOME, VISOR_RELEASE, VISOR_HEIGHT, VISOR_FOLDER and
# VISOR_PREVIOUS_RELEASE set. onAccepted runs once when a release is accepted (beside the
# running node); beforeSwitch runs at the upgrade block after the old binaries stopped and
# before current moves (a failure keeps them stopped and is retried 10 s later); afterUpgrade
# runs when the new core first answers. See [hooks] in visor-config(5).
[hooks]
# onAccepted = ["/usr/local/bin/notify-team"]
# beforeSwitch = ["/usr/local/bin/zeta-snapshot"]
# afterUpgrade = ["/usr/local/bin/notify-team"]
timeoutSeconds = 600

# A backup of the node's data, taken while the binaries are stopped: at the upgrade block
# before current moves (and before beforeSwitch, which gets its path in VISOR_BACKUP), and at
# a visor switch. Never at a crash restart. Files are cloned where the file system can
# (XFS with reflink, btrfs, ZFS 2.2), else copied; under the shipped unit the folder needs a
# ReadWritePaths= drop-in. See [backup] in visor-config(5).
[backup]
# Whether a backup is taken at all.
enabled = false
# The files and folders backed up (absolute); each keeps its absolute place in the backup.
# paths = ["/var/lib/zeta/state"]
# Where the backups go (absolute; outside the paths, and outside HOME is recommended).
# folder = "/var/backups/zeta"
# How many backups are kept (at least 1); older ones are removed after a new one completed.
keep = 2
# Seconds a backup may take; past it the backup fails.
timeoutSeconds = 3600
# A backup that fails at the block: "stop" keeps the binaries stopped and tries again every
# minute (a reload tries at once), "continue" warns and upgrades without a backup.
onFailure = "stop"
"#;

/// The span-aware TOML reader shared by config.toml's parser and `run_config`: it turns a document into a
/// plain tree that remembers where each key and value is, and collects messages of the form
/// `<file>:<line>: <key>: <what is wrong>; <what to do>`.
///
/// It must not know any key of either file; callers decide what each key means.
pub(crate) mod doc {
    use std::fmt::Write as _;
    use std::ops::Range;
    use std::path::Path;

    use toml_edit::{ImDocument, InlineTable, Item, Table, Value};

    /// A byte range in the source text, when the parser knows one.
    pub(crate) type Span = Option<Range<usize>>;

    /// A value and where it is.
    pub(crate) struct Node {
        /// The value's place; for a table, its header; None for an implicit table.
        pub(crate) span: Span,
        /// The value itself.
        pub(crate) kind: Kind,
    }

    /// The kinds of TOML value.
    pub(crate) enum Kind {
        /// A string.
        Str(String),
        /// An integer.
        Int(i64),
        /// A floating-point number.
        Float,
        /// A boolean.
        Bool(bool),
        /// A date, time or date-time.
        Datetime,
        /// An array, including an array of tables.
        Array(Vec<Node>),
        /// A table or inline table, in document order.
        Table(Vec<Entry>),
    }

    /// One key of a table with its value.
    pub(crate) struct Entry {
        /// The key, unquoted.
        pub(crate) key: String,
        /// Where the key is written.
        pub(crate) key_span: Span,
        /// The value.
        pub(crate) node: Node,
    }

    impl Entry {
        /// Where to point at when talking about the key.
        pub(crate) fn span(&self) -> Span {
            self.key_span.clone().or_else(|| self.node.span.clone())
        }

        /// Where to point at when talking about the value.
        pub(crate) fn value_span(&self) -> Span {
            self.node.span.clone().or_else(|| self.key_span.clone())
        }
    }

    /// Parses TOML text into its root table, or returns the one syntax error message, with line
    /// and column.
    pub(crate) fn parse(file: &Path, text: &str) -> Result<Vec<Entry>, String> {
        match ImDocument::parse(text) {
            Ok(document) => Ok(table_entries(document.as_table())),
            Err(error) => {
                let what = error
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
                let place = match error.span() {
                    Some(span) => {
                        let (line, column) = line_column(text, span.start);
                        format!("{}:{line}:{column}", file.display())
                    }
                    None => file.display().to_string(),
                };
                Err(format!(
                    "{place}: TOML syntax error: {what}; fix the syntax at that place"
                ))
            }
        }
    }

    /// Reads a whole configuration file as UTF-8, or returns one message naming it and what to
    /// do; `when_missing` is the advice for a file that does not exist.
    pub(crate) fn read(file: &Path, when_missing: &str) -> Result<String, Vec<String>> {
        let bytes = super::read_config_file(file, when_missing).map_err(|m| vec![m])?;
        String::from_utf8(bytes).map_err(|_| {
            vec![format!(
                "{}: not UTF-8 text; save it as UTF-8",
                file.display()
            )]
        })
    }

    /// Returns the 1-based line and column (in characters) of a byte offset.
    fn line_column(text: &str, offset: usize) -> (usize, usize) {
        let bytes = text.as_bytes();
        let before = bytes.get(..offset).unwrap_or(bytes);
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = before
            .get(line_start..)
            .unwrap_or_default()
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count()
            + 1;
        (line, column)
    }

    /// Converts a table of the parsed document.
    fn table_entries(table: &Table) -> Vec<Entry> {
        table
            .iter()
            .filter_map(|(key, item)| {
                let node = item_node(item)?;
                Some(Entry {
                    key: key.to_owned(),
                    key_span: table.key(key).and_then(|k| k.span()),
                    node,
                })
            })
            .collect()
    }

    /// Converts an inline table.
    fn inline_entries(table: &InlineTable) -> Vec<Entry> {
        table
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_owned(),
                key_span: table.key(key).and_then(|k| k.span()),
                node: value_node(value),
            })
            .collect()
    }

    /// Converts any item; None is an empty slot, which the parser does not produce.
    fn item_node(item: &Item) -> Option<Node> {
        match item {
            Item::None => None,
            Item::Value(value) => Some(value_node(value)),
            Item::Table(table) => Some(Node {
                span: table.span(),
                kind: Kind::Table(table_entries(table)),
            }),
            Item::ArrayOfTables(array) => Some(Node {
                span: array.span(),
                kind: Kind::Array(
                    array
                        .iter()
                        .map(|table| Node {
                            span: table.span(),
                            kind: Kind::Table(table_entries(table)),
                        })
                        .collect(),
                ),
            }),
        }
    }

    /// Converts a value.
    fn value_node(value: &Value) -> Node {
        let kind = match value {
            Value::String(s) => Kind::Str(s.value().clone()),
            Value::Integer(i) => Kind::Int(*i.value()),
            Value::Float(_) => Kind::Float,
            Value::Boolean(b) => Kind::Bool(*b.value()),
            Value::Datetime(_) => Kind::Datetime,
            Value::Array(array) => Kind::Array(array.iter().map(value_node).collect()),
            Value::InlineTable(table) => Kind::Table(inline_entries(table)),
        };
        Node {
            span: value.span(),
            kind,
        }
    }

    /// Joins a parent key path and a key, quoting the key when it is not a bare TOML key.
    pub(crate) fn key_path(parent: &str, key: &str) -> String {
        let key = bare_or_quoted(key);
        if parent.is_empty() {
            key
        } else {
            format!("{parent}.{key}")
        }
    }

    /// Returns a key as TOML would need it written: bare when it can be, else quoted.
    pub(crate) fn bare_or_quoted(key: &str) -> String {
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if bare {
            key.to_owned()
        } else {
            quote(key)
        }
    }

    /// Writes a string as a TOML basic string, escaping what must be escaped.
    pub(crate) fn quote(value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04X}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// The first table header of a document (`[name]` or `[[name]]`): its line and its text.
    /// Every key written after it belongs to a table.
    pub(crate) fn first_header(text: &str, entries: &[Entry]) -> Option<(usize, String)> {
        let mut first: Option<usize> = None;
        let mut stack: Vec<&Node> = entries.iter().map(|e| &e.node).collect();
        while let Some(node) = stack.pop() {
            let children: Vec<&Node> = match &node.kind {
                Kind::Table(entries) => entries.iter().map(|e| &e.node).collect(),
                Kind::Array(items) => items.iter().collect(),
                _ => continue,
            };
            stack.extend(children);
            let Some(start) = node.span.as_ref().map(|span| span.start) else {
                continue;
            };
            // A header starts with '['; an inline table's span starts with '{'.
            if matches!(node.kind, Kind::Table(_)) && text.as_bytes().get(start) == Some(&b'[') {
                first = Some(first.map_or(start, |f| f.min(start)));
            }
        }
        let start = first?;
        let rest = text.get(start..)?;
        let header = rest.find(']').map_or(rest, |end| {
            let end = if rest.as_bytes().get(end + 1) == Some(&b']') {
                end + 2
            } else {
                end + 1
            };
            &rest[..end]
        });
        Some((line_column(text, start).0, header.to_owned()))
    }

    /// Collects the messages about one file.
    pub(crate) struct Report<'a> {
        file: &'a Path,
        text: &'a str,
        manual: &'static str,
        /// The messages with their line, when known, for sorting.
        errors: Vec<(Option<usize>, String)>,
        /// The keys of the top level and the document's first table header, so that a
        /// top-level key found in a table (appended at the end of the file, under its last
        /// table) is said to belong above that header.
        top_level: &'static [&'static str],
        first_header: Option<(usize, String)>,
    }

    impl<'a> Report<'a> {
        /// Starts an empty report; `manual` is the man page named for unknown keys.
        pub(crate) fn new(file: &'a Path, text: &'a str, manual: &'static str) -> Self {
            Report {
                file,
                text,
                manual,
                errors: Vec::new(),
                top_level: &[],
                first_header: None,
            }
        }

        /// Knows the top-level keys and where the first table starts, for [`Report::unknown`].
        pub(crate) fn with_top_level(
            mut self,
            keys: &'static [&'static str],
            first_header: Option<(usize, String)>,
        ) -> Self {
            self.top_level = keys;
            self.first_header = first_header;
            self
        }

        /// Returns the value when nothing was reported, else the messages in line order, with
        /// the ones without a line last.
        pub(crate) fn finish<T>(mut self, value: T) -> Result<T, Vec<String>> {
            if self.errors.is_empty() {
                return Ok(value);
            }
            self.errors
                .sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
            Err(self.errors.into_iter().map(|(_, m)| m).collect())
        }

        /// Adds `<file>:<line>: <key>: <what>`, or `<file>: ...` when the place is not known.
        pub(crate) fn error(&mut self, span: &Span, key: &str, what: &str) {
            let line = span
                .as_ref()
                .map(|span| line_column(self.text, span.start).0);
            let place = match line {
                Some(line) => format!("{}:{line}", self.file.display()),
                None => self.file.display().to_string(),
            };
            self.errors.push((line, format!("{place}: {key}: {what}")));
        }

        /// Adds `<file>: [<table>] <key>: missing; <todo>` for a required key that is absent; the
        /// key is shown as given.
        pub(crate) fn missing(&mut self, table: &str, key: &str, todo: &str) {
            let key = if table.is_empty() {
                key.to_owned()
            } else {
                format!("[{table}] {key}")
            };
            let message = format!("{}: {key}: missing; {todo}", self.file.display());
            self.errors.push((None, message));
        }

        /// Reports a key that is not allowed in its table, suggesting a known key that looks
        /// like it.
        pub(crate) fn unknown(&mut self, entry: &Entry, parent: &str, known: &[&str]) {
            if !parent.is_empty() && self.top_level.contains(&entry.key.as_str()) {
                let above = match &self.first_header {
                    Some((line, header)) => format!("the first table ({header} at line {line})"),
                    None => "the first table".to_owned(),
                };
                let what = format!(
                    "unknown key in [{parent}]; {key} is a top-level key, and a key written after \
                     a [table] header belongs to that table: move it above {above}",
                    key = bare_or_quoted(&entry.key)
                );
                self.error(&entry.span(), &key_path(parent, &entry.key), &what);
                return;
            }
            let hint = match suggest(&entry.key, known) {
                Some(near) => format!(", did you mean {near}?"),
                None => String::new(),
            };
            let what = format!(
                "unknown key; remove it or check its spelling{hint} (see {})",
                self.manual
            );
            self.error(&entry.span(), &key_path(parent, &entry.key), &what);
        }

        /// Describes a value for a message: its source text for a short scalar, else its kind.
        pub(crate) fn found(&self, node: &Node) -> String {
            let source = node
                .span
                .as_ref()
                .and_then(|span| self.text.get(span.clone()))
                .filter(|s| s.len() <= 64 && !s.contains('\n'));
            match (&node.kind, source) {
                (Kind::Array(_), _) => "an array".to_owned(),
                (Kind::Table(_), _) => "a table".to_owned(),
                (Kind::Datetime, Some(s)) => format!("the date-time {s}"),
                (Kind::Datetime, None) => "a date-time".to_owned(),
                (_, Some(s)) => s.to_owned(),
                (Kind::Str(s), None) if s.len() <= 64 => quote(s),
                (Kind::Str(_), None) => "a long string".to_owned(),
                (Kind::Int(i), None) => i.to_string(),
                (Kind::Bool(b), None) => b.to_string(),
                (Kind::Float, None) => "a fractional number".to_owned(),
            }
        }

        /// Reads a whole number >= `min`; `unit` is " of seconds" or similar, `todo` the advice.
        pub(crate) fn whole(
            &mut self,
            entry: &Entry,
            parent: &str,
            unit: &str,
            (min, max): (u64, u64),
            todo: &str,
        ) -> Option<u64> {
            if let Kind::Int(n) = entry.node.kind {
                if let Ok(n) = u64::try_from(n) {
                    if (min..=max).contains(&n) {
                        return Some(n);
                    }
                }
            }
            let range = if max == u64::MAX {
                format!(">= {min}")
            } else {
                format!("from {min} to {max}")
            };
            let what = format!(
                "expected a whole number{unit} {range}, found {}; {todo}",
                self.found(&entry.node)
            );
            self.error(&entry.value_span(), &key_path(parent, &entry.key), &what);
            None
        }

        /// Reads a count: a whole number >= 0.
        pub(crate) fn count(&mut self, entry: &Entry, parent: &str) -> Option<u64> {
            let todo = format!(
                "write a bare number, e.g. {} = 3",
                bare_or_quoted(&entry.key)
            );
            self.whole(entry, parent, "", (0, u64::MAX), &todo)
        }

        /// Reads a duration in whole seconds >= 0.
        pub(crate) fn seconds(
            &mut self,
            entry: &Entry,
            parent: &str,
        ) -> Option<std::time::Duration> {
            let todo = format!(
                "write a bare number of seconds without a unit, e.g. {} = 5",
                bare_or_quoted(&entry.key)
            );
            self.whole(entry, parent, " of seconds", (0, super::MAX_SECONDS), &todo)
                .map(std::time::Duration::from_secs)
        }

        /// Reads a duration in whole seconds >= `min`; `example` is a sensible value for the
        /// advice.
        pub(crate) fn seconds_at_least(
            &mut self,
            entry: &Entry,
            parent: &str,
            min: u64,
            example: u64,
        ) -> Option<std::time::Duration> {
            let todo = format!(
                "write a bare number of seconds without a unit, e.g. {} = {example}",
                bare_or_quoted(&entry.key)
            );
            self.whole(
                entry,
                parent,
                " of seconds",
                (min, super::MAX_SECONDS),
                &todo,
            )
            .map(std::time::Duration::from_secs)
        }

        /// Reads a number of bytes >= `min`; `example` is a sensible value for the advice.
        pub(crate) fn bytes(
            &mut self,
            entry: &Entry,
            parent: &str,
            min: u64,
            example: u64,
        ) -> Option<u64> {
            let todo = format!(
                "write a bare number of bytes without a unit, e.g. {} = {example}",
                bare_or_quoted(&entry.key)
            );
            self.whole(entry, parent, " of bytes", (min, u64::MAX), &todo)
        }

        /// Reads a poll interval in whole milliseconds, at least the minimum that keeps a poller
        /// from busy-looping; `example` is a sensible value for the advice.
        pub(crate) fn poll_interval(
            &mut self,
            entry: &Entry,
            parent: &str,
            example: u64,
        ) -> Option<u64> {
            let todo = format!(
                "an interval under 10 ms would busy-loop and one over an hour would hide an \
                 upgrade; write a bare number of milliseconds, e.g. {} = {example}",
                bare_or_quoted(&entry.key)
            );
            self.whole(
                entry,
                parent,
                " of milliseconds",
                (super::MIN_POLL_INTERVAL_MS, super::MAX_POLL_INTERVAL_MS),
                &todo,
            )
        }

        /// Reads a string; `todo` says what to write instead of a value of another type.
        pub(crate) fn string<'e>(
            &mut self,
            entry: &'e Entry,
            parent: &str,
            todo: &str,
        ) -> Option<&'e str> {
            if let Kind::Str(s) = &entry.node.kind {
                return Some(s);
            }
            let what = format!(
                "expected a string in quotes, found {}; {todo}",
                self.found(&entry.node)
            );
            self.error(&entry.value_span(), &key_path(parent, &entry.key), &what);
            None
        }

        /// Reads true or false.
        pub(crate) fn boolean(&mut self, entry: &Entry, parent: &str) -> Option<bool> {
            if let Kind::Bool(b) = entry.node.kind {
                return Some(b);
            }
            let what = format!(
                "expected true or false, found {}; write true or false without quotes",
                self.found(&entry.node)
            );
            self.error(&entry.value_span(), &key_path(parent, &entry.key), &what);
            None
        }

        /// Reads a table's entries.
        pub(crate) fn table<'e>(&mut self, entry: &'e Entry, parent: &str) -> Option<&'e [Entry]> {
            if let Kind::Table(entries) = &entry.node.kind {
                return Some(entries);
            }
            let path = key_path(parent, &entry.key);
            let what = format!(
                "expected a table, found {}; write it as a [{path}] section",
                self.found(&entry.node)
            );
            self.error(&entry.value_span(), &path, &what);
            None
        }

        /// Reads one of a fixed set of string values, listing them all when the value is not one.
        pub(crate) fn choice<T: Copy>(
            &mut self,
            entry: &Entry,
            parent: &str,
            allowed: &[T],
            name: impl Fn(T) -> &'static str,
        ) -> Option<T> {
            if let Kind::Str(s) = &entry.node.kind {
                if let Some(value) = allowed.iter().copied().find(|v| name(*v) == s.as_str()) {
                    return Some(value);
                }
            }
            let list = allowed
                .iter()
                .map(|v| quote(name(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            let what = format!(
                "expected one of {list}, found {}; set it to one of them",
                self.found(&entry.node)
            );
            self.error(&entry.value_span(), &key_path(parent, &entry.key), &what);
            None
        }

        /// Reads an array of strings; each element that is not a string is reported at its own
        /// line.
        pub(crate) fn strings(&mut self, entry: &Entry, parent: &str) -> Option<Vec<String>> {
            let path = key_path(parent, &entry.key);
            let Kind::Array(items) = &entry.node.kind else {
                let what = format!(
                    "expected an array of strings, found {}; write it as {} = [\"a\", \"b\"]",
                    self.found(&entry.node),
                    bare_or_quoted(&entry.key)
                );
                self.error(&entry.value_span(), &path, &what);
                return None;
            };
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (index, item) in items.iter().enumerate() {
                match &item.kind {
                    Kind::Str(s) if s.contains('\0') => {
                        let what = "contains a NUL character, which a command line cannot carry; \
                                    remove it";
                        self.error(&item.span, &format!("{path}[{index}]"), what);
                        ok = false;
                    }
                    Kind::Str(s) => out.push(s.clone()),
                    _ => {
                        let what = format!(
                            "expected a string in quotes, found {}; quote every element",
                            self.found(item)
                        );
                        let span = item.span.clone().or_else(|| entry.value_span());
                        self.error(&span, &format!("{path}[{index}]"), &what);
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
    }

    /// Returns the known key that `key` most likely misspells: the same but for case, or at most
    /// two edits away.
    fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
        if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            return Some(same);
        }
        known
            .iter()
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, k)| *d <= 2 && *d * 3 <= k.len())
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    /// The edit distance between two strings in characters, where swapping two neighbours
    /// counts as one edit (the optimal string alignment distance).
    fn edit_distance(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        // Rows i-2, i-1 and i of the distance table, indexed by position in `b`.
        let mut before: Vec<usize> = Vec::new();
        let mut previous: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut current = Vec::with_capacity(b.len() + 1);
            current.push(i);
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (previous[j - 1] + cost)
                    .min(previous[j] + 1)
                    .min(current[j - 1] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    if let Some(swap) = before.get(j - 2) {
                        best = best.min(swap + 1);
                    }
                }
                current.push(best);
            }
            before = std::mem::replace(&mut previous, current);
        }
        previous.last().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/srv/visor/config.toml";

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(Path::new(FILE), text)
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(config) => panic!("expected errors, parsed {config:?}"),
            Err(errors) => errors,
        }
    }

    fn one_error(text: &str) -> String {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse(""), Ok(Config::default()));
        assert_eq!(parse("\n# only a comment\n\n"), Ok(Config::default()));
        let config = Config::default();
        assert_eq!(config.max_first_connection_retries, 175_000);
        assert_eq!(config.max_restart_connection_retries, 10);
        assert_eq!(config.max_restarts, 3);
        assert_eq!(config.restarts_delay, Duration::from_secs(5));
        assert_eq!(config.restart_counter_reset, Duration::from_secs(600));
        assert_eq!(config.stop_delay, Duration::ZERO);
        assert_eq!(config.stop_signal_timeout, Duration::from_secs(15));
        assert_eq!(config.status_poll_interval, Duration::from_millis(500));
        assert_eq!(config.upgrade_poll_interval, Duration::from_millis(100));
        assert!(config.upgrade_folders.is_empty());
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.metrics_file, None);
        let auto = &config.auto_install;
        assert!(!auto.enabled);
        assert_eq!(auto.repository_owner, "zeta-protocol");
        assert_eq!(auto.repository, "zeta");
        assert_eq!(auto.api_url, "https://api.github.com");
        assert!(auto.prefetch);
        assert!(auto.require_checksum);
        assert_eq!(auto.checksum_asset, None);
        assert_eq!(auto.asset_name, "zeta-{os}-{arch}.zip");
        assert_eq!(auto.binary_name, "zeta");
        assert_eq!(auto.download_timeout, Duration::from_secs(3600));
        assert_eq!(auto.max_download_bytes, 4_294_967_296);
        assert_eq!(auto.min_free_bytes, 1_073_741_824);
        assert_eq!(auto.ca_file, None);
    }

    #[test]
    fn template_equals_default() {
        assert_eq!(parse(CONFIG_TEMPLATE), Ok(Config::default()));
    }

    #[test]
    fn template_mentions_every_key() {
        for key in TOP_KEYS
            .iter()
            .chain(AUTO_INSTALL_KEYS)
            .chain(ASSET_KEYS)
            .chain(signatures::SIGNATURE_KEYS)
            .chain(backup::BACKUP_KEYS)
        {
            assert!(CONFIG_TEMPLATE.contains(key), "template lacks {key}");
        }
        assert!(CONFIG_TEMPLATE.contains("[autoInstall.asset]"));
        assert!(CONFIG_TEMPLATE.contains("# metricsFile = "));
        assert!(CONFIG_TEMPLATE.contains("# caFile = "));
        assert!(CONFIG_TEMPLATE.contains("[backup]"));
    }

    #[test]
    fn every_key_is_parsed() {
        let text = r#"
maxNumberOfFirstConnectionRetries = 1000
maxNumberOfRestartConnectionRetries = 20
maxNumberOfRestarts = 0
restartsDelaySeconds = 1
restartCounterResetSeconds = 60
stopDelaySeconds = 2
stopSignalTimeoutSeconds = 30
statusPollIntervalMilliseconds = 250
upgradePollIntervalMilliseconds = 50
logFormat = "json"
logLevel = "debug"
metricsFile = "/var/lib/prom/visor.prom"

[upgradeFolders]
"v1.3.0" = "v1.3.0-patched"
"v2.0.0+build.7" = "/opt/zeta/v2"

[autoInstall]
enabled = true
repositoryOwner = "example"
repository = "zeta-fork"
apiUrl = "https://github.example.com/api/v3/"
prefetch = false
requireChecksum = false
checksumAsset = "SHA256SUMS"
downloadTimeoutSeconds = 120
maxDownloadBytes = 1000000
minFreeBytes = 0
caFile = "/etc/visor/ca.pem"

[autoInstall.asset]
name = "zeta-{version}-{os}-{arch}.zip"
binaryName = "bin/zeta"
"#;
        let mut folders = BTreeMap::new();
        folders.insert("v1.3.0".to_owned(), "v1.3.0-patched".to_owned());
        folders.insert("v2.0.0+build.7".to_owned(), "/opt/zeta/v2".to_owned());
        let expected = Config {
            max_first_connection_retries: 1000,
            max_restart_connection_retries: 20,
            max_restarts: 0,
            restarts_delay: Duration::from_secs(1),
            restart_counter_reset: Duration::from_secs(60),
            stop_delay: Duration::from_secs(2),
            stop_signal_timeout: Duration::from_secs(30),
            status_poll_interval: Duration::from_millis(250),
            upgrade_poll_interval: Duration::from_millis(50),
            upgrade_folders: folders,
            log_format: LogFormat::Json,
            log_level: LogLevel::Debug,
            metrics_file: Some(PathBuf::from("/var/lib/prom/visor.prom")),
            auto_install: AutoInstall {
                enabled: true,
                repository_owner: "example".to_owned(),
                repository: "zeta-fork".to_owned(),
                api_url: "https://github.example.com/api/v3".to_owned(),
                prefetch: false,
                require_checksum: false,
                checksum_asset: Some("SHA256SUMS".to_owned()),
                asset_name: "zeta-{version}-{os}-{arch}.zip".to_owned(),
                binary_name: "bin/zeta".to_owned(),
                download_timeout: Duration::from_secs(120),
                max_download_bytes: 1_000_000,
                min_free_bytes: 0,
                ca_file: Some(PathBuf::from("/etc/visor/ca.pem")),
                // Read in config/signatures.rs's tests, with keys made at test time.
                signatures: signatures::Signatures::default(),
            },
            hooks: hooks::Hooks::default(),
            backup: backup::Backup::default(),
        };
        assert_eq!(parse(text), Ok(expected));
    }

    #[test]
    fn inline_and_dotted_tables_are_read_too() {
        let text = "autoInstall.enabled = true\nautoInstall.asset = { binaryName = \"z\" }\n\
                    upgradeFolders = { \"v1.0.0\" = \"one\" }\n";
        let config = parse(text).unwrap_or_default();
        assert!(config.auto_install.enabled);
        assert_eq!(config.auto_install.binary_name, "z");
        assert_eq!(
            config.upgrade_folders.get("v1.0.0").map(String::as_str),
            Some("one")
        );
    }

    #[test]
    fn vega_visor_config_parses() {
        let text = r#"
maxNumberOfFirstConnectionRetries = 43200
maxNumberOfRestartConnectionRetries = 10
maxNumberOfRestarts = 3
restartsDelaySeconds = 5
stopSignalTimeoutSeconds = 15
stopDelaySeconds = 0

[upgradeFolders]
  "vX.X.X" = "vX.X.X"

[autoInstall]
  enabled = true
  repositoryOwner = "vegaprotocol"
  repository = "vega"
  [autoInstall.asset]
    name = "vega-linux-amd64.zip"
    binaryName = "vega"
"#;
        let config = parse(text).unwrap_or_default();
        assert_eq!(config.max_first_connection_retries, 43200);
        assert_eq!(
            config.upgrade_folders.get("vX.X.X").map(String::as_str),
            Some("vX.X.X")
        );
        assert!(config.auto_install.enabled);
        assert_eq!(config.auto_install.repository_owner, "vegaprotocol");
        assert_eq!(config.auto_install.repository, "vega");
        assert_eq!(config.auto_install.asset_name, "vega-linux-amd64.zip");
        assert_eq!(config.auto_install.binary_name, "vega");
        // Keys that Vega lacks keep Visor's defaults rather than zero.
        assert_eq!(config.restart_counter_reset, Duration::from_secs(600));
        assert_eq!(config.status_poll_interval, Duration::from_millis(500));
        assert!(config.auto_install.prefetch);
    }

    #[test]
    fn upgrade_poll_is_never_slower_than_status_poll() {
        let config = parse("statusPollIntervalMilliseconds = 40\n").unwrap_or_default();
        assert_eq!(config.status_poll_interval, Duration::from_millis(40));
        assert_eq!(config.upgrade_poll_interval, Duration::from_millis(40));
        let text =
            "statusPollIntervalMilliseconds = 2000\nupgradePollIntervalMilliseconds = 5000\n";
        let config = parse(text).unwrap_or_default();
        assert_eq!(config.upgrade_poll_interval, Duration::from_millis(2000));
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let error = one_error("maxNumberOfRestarts = 3\n\n\n\n\n\nmaxNumberOfRestartz = 4\n");
        assert_eq!(
            error,
            "/srv/visor/config.toml:7: maxNumberOfRestartz: unknown key; remove it or check its \
             spelling, did you mean maxNumberOfRestarts? (see visor-config(5))"
        );
        let error = one_error("[autoInstall]\nenabled = true\n[autoInstall.asset]\nnmae = \"x\"\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:4: autoInstall.asset.nmae: unknown key; "),
            "{error}"
        );
        assert!(error.contains("did you mean name?"), "{error}");
        let error = one_error("[autoInstall]\n\nturbo = true\n");
        assert!(error.starts_with("/srv/visor/config.toml:3: autoInstall.turbo: unknown key; remove it or check its spelling (see visor-config(5))"), "{error}");
        let errors = errors("a = 1\n[something]\nx = 1\n[b.c]\n");
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[1].starts_with("/srv/visor/config.toml:2: something: unknown key"));
        assert!(errors[2].starts_with("/srv/visor/config.toml:4: b: unknown key"));
    }

    #[test]
    fn a_top_level_key_appended_under_the_last_table_is_said_to_belong_above_the_first() {
        let text = format!("{CONFIG_TEMPLATE}maxNumberOfRestarts = 5\n");
        let line = text.lines().count();
        let header_line = CONFIG_TEMPLATE
            .lines()
            .position(|l| l == "[upgradeFolders]")
            .unwrap()
            + 1;
        assert_eq!(
            one_error(&text),
            format!(
                "/srv/visor/config.toml:{line}: backup.maxNumberOfRestarts: unknown key in \
                 [backup]; maxNumberOfRestarts is a top-level key, and a key written after a \
                 [table] header belongs to that table: move it above the first table \
                 ([upgradeFolders] at line {header_line})"
            )
        );
        // The same in [autoInstall.asset], and where the first table is a sub-table.
        let error = one_error("[autoInstall.asset]\nname = \"z\"\nlogLevel = \"debug\"\n");
        assert!(
            error.starts_with(
                "/srv/visor/config.toml:3: autoInstall.asset.logLevel: unknown key in \
                 [autoInstall.asset]; logLevel is a top-level key"
            ) && error.ends_with("move it above the first table ([autoInstall.asset] at line 1)"),
            "{error}"
        );
        // Under [upgradeFolders] it would read as a release tag.
        let error = one_error("[upgradeFolders]\n\"v2\" = \"v2\"\nlogLevel = \"debug\"\n");
        assert!(
            error.starts_with(
                "/srv/visor/config.toml:3: upgradeFolders.logLevel: unknown key in \
                 [upgradeFolders]; logLevel is a top-level key"
            ),
            "{error}"
        );
        // An inline table is no header: the first header is the one after it.
        let error = one_error("hooks = { timeoutSeconds = 5 }\n[autoInstall]\nlogLevel = \"x\"\n");
        assert!(error.ends_with("([autoInstall] at line 2)"), "{error}");
    }

    #[test]
    fn wrong_types_name_key_and_line() {
        let error = one_error("\n\nrestartsDelaySeconds = \"5s\"\n");
        assert_eq!(
            error,
            "/srv/visor/config.toml:3: restartsDelaySeconds: expected a whole number of seconds \
             from 0 to 315360000, found \"5s\"; write a bare number of seconds without a unit, e.g. \
             restartsDelaySeconds = 5"
        );
        let error = one_error("restartsDelaySeconds = \"5s\"   # five seconds\n");
        assert!(error.contains(", found \"5s\"; "), "{error}");
        let error = one_error("maxNumberOfRestarts = \"3\"\n");
        assert!(error.starts_with("/srv/visor/config.toml:1: maxNumberOfRestarts: expected a whole number >= 0, found \"3\"; "), "{error}");
        let error = one_error("\nstopDelaySeconds = -1\n");
        assert!(error.starts_with("/srv/visor/config.toml:2: stopDelaySeconds: expected a whole number of seconds from 0 to 315360000, found -1; "), "{error}");
        let error = one_error("stopSignalTimeoutSeconds = 1.5\n");
        assert!(
            error.contains(
                ": stopSignalTimeoutSeconds: expected a whole number of seconds from 0 to 315360000, found 1.5; "
            ),
            "{error}"
        );
        let error = one_error("maxNumberOfFirstConnectionRetries = true\n");
        assert!(
            error.contains(
                ":1: maxNumberOfFirstConnectionRetries: expected a whole number >= 0, found true"
            ),
            "{error}"
        );
        let error = one_error("restartCounterResetSeconds = [1]\n");
        assert!(error.contains("found an array"), "{error}");
        let error = one_error("stopDelaySeconds = 1979-05-27\n");
        assert!(error.contains("found the date-time 1979-05-27"), "{error}");
        let error = one_error("[autoInstall]\nenabled = \"yes\"\n");
        assert!(error.starts_with("/srv/visor/config.toml:2: autoInstall.enabled: expected true or false, found \"yes\"; "), "{error}");
        let error = one_error("autoInstall = 5\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:1: autoInstall: expected a table, found 5; "),
            "{error}"
        );
        let error = one_error("[autoInstall]\nrepository = 7\n");
        assert!(error.starts_with("/srv/visor/config.toml:2: autoInstall.repository: expected a string in quotes, found 7; "), "{error}");
        let error = one_error("upgradeFolders = \"v1\"\n");
        assert!(
            error.contains(":1: upgradeFolders: expected a table"),
            "{error}"
        );
        let error = one_error("metricsFile = 3\n");
        assert!(
            error.contains(":1: metricsFile: expected a string in quotes, found 3"),
            "{error}"
        );
    }

    #[test]
    fn overlong_durations_and_intervals_are_refused() {
        let error = one_error("stopSignalTimeoutSeconds = 9223372036854775807\n");
        assert!(error.starts_with("/srv/visor/config.toml:1: stopSignalTimeoutSeconds: expected a whole number of seconds from 0 to 315360000"), "{error}");
        let error = one_error("statusPollIntervalMilliseconds = 3600001\n");
        assert!(error.contains("statusPollIntervalMilliseconds: expected a whole number of milliseconds from 10 to 3600000"), "{error}");
    }

    #[test]
    fn download_timeout_is_at_least_one_second() {
        let error = one_error("[autoInstall]\nenabled = true\ndownloadTimeoutSeconds = 0\n");
        assert_eq!(
            error,
            "/srv/visor/config.toml:3: autoInstall.downloadTimeoutSeconds: expected a whole \
             number of seconds from 1 to 315360000, found 0; write a bare number of seconds \
             without a unit, e.g. downloadTimeoutSeconds = 3600"
        );
        let error = one_error("[autoInstall]\ndownloadTimeoutSeconds = \"1h\"\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:2: autoInstall.downloadTimeoutSeconds:"),
            "{error}"
        );
        let config = parse("[autoInstall]\ndownloadTimeoutSeconds = 1\n");
        assert_eq!(
            config.map(|c| c.auto_install.download_timeout),
            Ok(Duration::from_secs(1))
        );
    }

    #[test]
    fn download_bounds_are_whole_numbers_of_bytes() {
        let errors = errors("[autoInstall]\nmaxDownloadBytes = 0\nminFreeBytes = \"1G\"\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0],
            "/srv/visor/config.toml:2: autoInstall.maxDownloadBytes: expected a whole number of \
             bytes >= 1, found 0; write a bare number of bytes without a unit, e.g. \
             maxDownloadBytes = 4294967296"
        );
        assert!(
            errors[1].starts_with(
                "/srv/visor/config.toml:3: autoInstall.minFreeBytes: expected a whole number of \
                 bytes >= 0, found \"1G\"; "
            ),
            "{errors:?}"
        );
        let error = one_error("[autoInstall]\nminFreeBytes = -1\n");
        assert!(
            error.contains(
                "autoInstall.minFreeBytes: expected a whole number of bytes >= 0, found -1"
            ),
            "{error}"
        );
        let config = parse("[autoInstall]\nmaxDownloadBytes = 1\nminFreeBytes = 0\n").unwrap();
        assert_eq!(config.auto_install.max_download_bytes, 1);
        assert_eq!(config.auto_install.min_free_bytes, 0);
    }

    #[test]
    fn ca_file_is_an_absolute_path() {
        let config = parse("[autoInstall]\ncaFile = \"/etc/visor/ca.pem\"\n");
        assert_eq!(
            config.map(|c| c.auto_install.ca_file),
            Ok(Some(PathBuf::from("/etc/visor/ca.pem")))
        );
        let error = one_error("[autoInstall]\ncaFile = \"ca.pem\"\n");
        assert_eq!(
            error,
            "/srv/visor/config.toml:2: autoInstall.caFile: \"ca.pem\" is not an absolute path; \
             set it to the absolute path of a PEM file holding the CA certificates to trust, \
             e.g. caFile = \"/etc/visor/ca.pem\", or remove it to use the system's trust store"
        );
        let error = one_error("[autoInstall]\ncaFile = \"\"\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:2: autoInstall.caFile: empty path; "),
            "{error}"
        );
        let error = one_error("[autoInstall]\ncaFile = true\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:2: autoInstall.caFile: expected a string"),
            "{error}"
        );
    }

    #[test]
    fn poll_intervals_must_be_at_least_ten_ms() {
        let error = one_error("statusPollIntervalMilliseconds = 0\n");
        assert!(error.starts_with("/srv/visor/config.toml:1: statusPollIntervalMilliseconds: expected a whole number of milliseconds from 10 to 3600000, found 0; an interval under 10 ms would busy-loop"), "{error}");
        let error = one_error("\nupgradePollIntervalMilliseconds = 9\n");
        assert!(error.starts_with("/srv/visor/config.toml:2: upgradePollIntervalMilliseconds: expected a whole number of milliseconds from 10 to 3600000, found 9"), "{error}");
        let config =
            parse("statusPollIntervalMilliseconds = 10\nupgradePollIntervalMilliseconds = 10\n");
        assert_eq!(
            config.map(|c| c.upgrade_poll_interval),
            Ok(Duration::from_millis(10))
        );
    }

    #[test]
    fn log_settings_list_allowed_values() {
        let error = one_error("logFormat = \"xml\"\n");
        assert_eq!(
            error,
            "/srv/visor/config.toml:1: logFormat: expected one of \"text\", \"json\", found \
             \"xml\"; set it to one of them"
        );
        let error = one_error("\nlogLevel = \"INFO\"\n");
        assert!(error.starts_with("/srv/visor/config.toml:2: logLevel: expected one of \"debug\", \"info\", \"warn\", \"error\", found \"INFO\""), "{error}");
        for (text, level) in [
            ("debug", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("warn", LogLevel::Warn),
            ("error", LogLevel::Error),
        ] {
            let config = parse(&format!("logLevel = \"{text}\"\n"));
            assert_eq!(config.map(|c| c.log_level), Ok(level));
            assert_eq!(level.as_str(), text);
        }
        assert!(LogLevel::Debug < LogLevel::Error);
    }

    #[test]
    fn upgrade_folder_tags_and_values_are_checked() {
        let text = r#"[upgradeFolders]
"v1.0.0" = "ok"
"-bad" = "x"
".." = "x"
"v2.0.0" = "a/b"
"v3.0.0" = ".."
"v4.0.0" = ""
"v5.0.0" = 5
v6.0.0 = "x"
"v7.0.0" = "current"
"v8.0.0" = ".visor-tmp-1"
"v9.0.0" = "/abs/ok"
"v10.0.0" = ".visor"
"#;
        let errors = errors(text);
        let lines: Vec<&str> = errors.iter().map(|e| e.as_str()).collect();
        assert_eq!(errors.len(), 10, "{errors:#?}");
        assert!(
            lines[0].starts_with(
                "/srv/visor/config.toml:3: upgradeFolders.-bad: not a valid release tag; "
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(
                "/srv/visor/config.toml:4: upgradeFolders.\"..\": not a valid release tag"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with("/srv/visor/config.toml:5: upgradeFolders.\"v2.0.0\": \"a/b\" is neither a folder name in HOME nor an absolute path; "), "{}", lines[2]);
        assert!(
            lines[3].starts_with(
                "/srv/visor/config.toml:6: upgradeFolders.\"v3.0.0\": \"..\" is neither"
            ),
            "{}",
            lines[3]
        );
        assert!(
            lines[4]
                .starts_with("/srv/visor/config.toml:7: upgradeFolders.\"v4.0.0\": empty folder; "),
            "{}",
            lines[4]
        );
        assert!(lines[5].starts_with("/srv/visor/config.toml:8: upgradeFolders.\"v5.0.0\": expected a folder name or absolute path in quotes, found 5"), "{}", lines[5]);
        assert!(lines[6].starts_with("/srv/visor/config.toml:9: upgradeFolders.v6: expected a folder name or absolute path in quotes, found a table; quote tags that contain dots"), "{}", lines[6]);
        assert!(lines[7].starts_with("/srv/visor/config.toml:10: upgradeFolders.\"v7.0.0\": \"current\" is a name Visor manages"), "{}", lines[7]);
        assert!(lines[8].starts_with("/srv/visor/config.toml:11: upgradeFolders.\"v8.0.0\": \".visor-tmp-1\" is a name Visor manages"), "{}", lines[8]);
        assert!(lines[9].starts_with("/srv/visor/config.toml:13: upgradeFolders.\"v10.0.0\": \".visor\" is a name Visor manages"), "{}", lines[9]);
        let long = format!("[upgradeFolders]\n\"v{}\" = \"x\"\n", "1".repeat(128));
        assert!(one_error(&long).contains("not a valid release tag"));
        let longest = format!("[upgradeFolders]\n\"v{}\" = \"x\"\n", "1".repeat(127));
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn api_url_is_checked() {
        let good = [
            ("https://api.github.com", "https://api.github.com"),
            (
                "https://github.example.com/api/v3//",
                "https://github.example.com/api/v3",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://127.1.2.3", "http://127.1.2.3"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            (
                "http://localhost:9000/mirror",
                "http://localhost:9000/mirror",
            ),
            ("HTTP://LOCALHOST", "HTTP://LOCALHOST"),
        ];
        for (url, stored) in good {
            let config = parse(&format!("[autoInstall]\napiUrl = \"{url}\"\n"));
            assert_eq!(
                config.map(|c| c.auto_install.api_url),
                Ok(stored.to_owned()),
                "{url}"
            );
        }
        let bad = [
            (
                "http://api.github.com",
                "uses http:// for a host that is not loopback",
            ),
            ("http://128.0.0.1", "not loopback"),
            ("http://[::2]", "not loopback"),
            ("http://localhost.example.com", "not loopback"),
            ("ftp://127.0.0.1", "uses the scheme \"ftp\""),
            ("api.github.com", "is not an http(s) URL"),
            ("https://", "has no valid host"),
            ("https://user:pw@host", "carries credentials"),
            ("https://host/x?y=1", "carries a query or fragment"),
            ("https://host:port", "has no valid host"),
            ("https://[zzz]", "has no valid host"),
            ("https://ho st", "contains whitespace"),
        ];
        for (url, part) in bad {
            let error = one_error(&format!("[autoInstall]\n\napiUrl = \"{url}\"\n"));
            assert!(
                error.starts_with("/srv/visor/config.toml:3: autoInstall.apiUrl: "),
                "{error}"
            );
            assert!(error.contains(part), "{url}: {error}");
        }
    }

    #[test]
    fn auto_install_names_are_checked() {
        let error = one_error("[autoInstall]\nrepositoryOwner = \"a/b\"\n");
        assert!(error.contains(":2: autoInstall.repositoryOwner: \"a/b\" is not a GitHub account or repository name"), "{error}");
        let error = one_error("[autoInstall]\nrepository = \"\"\n");
        assert!(
            error.contains(":2: autoInstall.repository: \"\" is not a GitHub"),
            "{error}"
        );
        let error = one_error("[autoInstall]\nchecksumAsset = \"\"\n");
        assert!(
            error.contains(":2: autoInstall.checksumAsset: empty name; "),
            "{error}"
        );
        let error = one_error("[autoInstall.asset]\nname = \"zeta-{platform}.zip\"\n");
        assert!(error.contains(":2: autoInstall.asset.name: \"zeta-{platform}.zip\" has the unknown placeholder {platform}"), "{error}");
        let error = one_error("[autoInstall.asset]\nname = \"zeta-{os.zip\"\n");
        assert!(error.contains("has a '{' without '}'"), "{error}");
        let error = one_error("[autoInstall.asset]\nname = \"dir/zeta.zip\"\n");
        assert!(error.contains("is not a file name"), "{error}");
        let error = one_error("[autoInstall.asset]\nbinaryName = \"../zeta\"\n");
        assert!(error.contains(":2: autoInstall.asset.binaryName: \"../zeta\" has an empty, '.' or '..' path component"), "{error}");
        let error = one_error("[autoInstall.asset]\nbinaryName = \"/zeta\"\n");
        assert!(error.contains("is not a relative file path"), "{error}");
    }

    #[test]
    fn metrics_file_must_be_absolute() {
        let error = one_error("metricsFile = \"visor.prom\"\n");
        assert!(error.starts_with("/srv/visor/config.toml:1: metricsFile: \"visor.prom\" is not an absolute path; set it to an absolute path"), "{error}");
        let error = one_error("\nmetricsFile = \"\"\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:2: metricsFile: empty path; "),
            "{error}"
        );
    }

    #[test]
    fn metrics_file_must_not_replace_visor_files() {
        let refused = [
            (
                "/srv/visor/config.toml",
                "is directly in HOME (/srv/visor) but its name does not end in .prom",
            ),
            ("/srv/visor/current", "is directly in HOME"),
            ("/srv/visor/v2", "is directly in HOME"),
            ("/srv/visor/./genesis/../config.toml", "is directly in HOME"),
            (
                "/srv/visor/.visor-upgrade.prom",
                "has a name starting with .visor-",
            ),
            (
                "/srv/visor/genesis/run-config.toml",
                "is inside /srv/visor/genesis, a folder of HOME",
            ),
            (
                "/srv/visor/genesis/zeta",
                "is inside /srv/visor/genesis, a folder of HOME",
            ),
            (
                "/srv/visor/v1.3.0/visor.prom",
                "is inside /srv/visor/v1.3.0, a folder of HOME",
            ),
            ("/srv/visor", "is HOME (/srv/visor) or a folder above it"),
            ("/srv/visor/", "is HOME (/srv/visor) or a folder above it"),
            ("/srv", "is HOME (/srv/visor) or a folder above it"),
            (
                "/opt/zeta/v2/run-config.toml",
                "is inside /opt/zeta/v2, the folder of upgradeFolders.\"v2.0.0\"",
            ),
            (
                "/opt/zeta/v2/bin/zeta",
                "is inside /opt/zeta/v2, the folder of upgradeFolders.\"v2.0.0\"",
            ),
            (
                "/opt/zeta/v2",
                "is inside /opt/zeta/v2, the folder of upgradeFolders.\"v2.0.0\"",
            ),
            ("/elsewhere/run-config.toml", "is named run-config.toml"),
        ];
        for (path, why) in refused {
            let text = format!(
                "\n\nlogLevel = \"info\"\nmetricsFile = {}\n[upgradeFolders]\n\"v2.0.0\" = \"/opt/zeta/v2\"\n",
                doc::quote(path)
            );
            let error = one_error(&text);
            let expected = format!(
                "/srv/visor/config.toml:4: metricsFile: {} {why}",
                doc::quote(path)
            );
            assert!(error.starts_with(&expected), "{path}: {error}");
            assert!(error.ends_with("; point it at a file of its own, e.g. metricsFile = \"/var/lib/node_exporter/textfile_collector/visor.prom\""), "{error}");
        }
        // Either order of the keys.
        let error = one_error(
            "upgradeFolders = { v2 = \"/opt/zeta/v2\" }\nmetricsFile = \"/opt/zeta/v2/m.prom\"\n",
        );
        assert!(
            error.starts_with("/srv/visor/config.toml:2: metricsFile: \"/opt/zeta/v2/m.prom\" is inside /opt/zeta/v2, the folder of upgradeFolders.v2,"),
            "{error}"
        );
        for allowed in [
            "/var/lib/node_exporter/textfile_collector/visor.prom",
            "/srv/visor/visor.prom",
            "/srv/visor-metrics/config.toml",
            "/opt/zeta/v2-metrics.prom",
        ] {
            let text = format!(
                "metricsFile = {}\n[upgradeFolders]\n\"v2.0.0\" = \"/opt/zeta/v2\"\n",
                doc::quote(allowed)
            );
            assert!(parse(&text).is_ok(), "{allowed}: {:?}", parse(&text));
        }
    }

    #[test]
    fn metrics_file_rule_sees_through_links() {
        let dir = std::env::temp_dir().join(format!("visor-cfg-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let home = dir.join("home");
        std::fs::create_dir_all(home.join("genesis")).unwrap();
        std::os::unix::fs::symlink(&home, dir.join("alias")).unwrap();
        let file = home.join("config.toml");
        for (path, refused) in [
            (dir.join("alias/config.toml"), true),
            (dir.join("alias/genesis/run.prom"), true),
            (dir.join("alias/visor.prom"), false),
        ] {
            let text = format!("metricsFile = {}\n", doc::quote(&path.to_string_lossy()));
            let result = Config::parse(&file, &text);
            assert_eq!(result.is_err(), refused, "{path:?}: {result:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once_in_line_order() {
        let text = r#"maxNumberOfRestarts = "three"
logLevel = "loud"
bogus = 1
[autoInstall]
enabled = 1
[autoInstall.asset]
binaryNmae = "zeta"
[upgradeFolders]
"v1" = "a/b"
"#;
        let errors = errors(text);
        let places: Vec<String> = errors
            .iter()
            .map(|e| e.split(": ").take(2).collect::<Vec<_>>().join(": "))
            .collect();
        assert_eq!(
            places,
            [
                "/srv/visor/config.toml:1: maxNumberOfRestarts",
                "/srv/visor/config.toml:2: logLevel",
                "/srv/visor/config.toml:3: bogus",
                "/srv/visor/config.toml:5: autoInstall.enabled",
                "/srv/visor/config.toml:7: autoInstall.asset.binaryNmae",
                "/srv/visor/config.toml:9: upgradeFolders.v1",
            ]
        );
    }

    #[test]
    fn syntax_error_is_one_message_with_line_and_column() {
        let error = one_error("maxNumberOfRestarts = 3\nstopDelaySeconds = \n");
        assert!(
            error.starts_with("/srv/visor/config.toml:2:20: TOML syntax error: "),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        let error = one_error("a = 1\n\"é\" = 2\n\"é\" = 3\n");
        assert!(
            error.starts_with("/srv/visor/config.toml:3:1: TOML syntax error: "),
            "{error}"
        );
        assert!(error.contains("duplicate key"), "{error}");
    }

    #[test]
    fn messages_are_single_lines_without_trailing_period() {
        let text = "logLevel = \"a\nb\"\"\"\n";
        for error in parse(text).err().unwrap_or_default() {
            assert!(!error.contains('\n') && !error.ends_with('.'), "{error}");
        }
        let text = "logLevel = \"\"\"\nmulti\nline\"\"\"\n";
        let error = one_error(text);
        assert!(!error.contains('\n') && !error.ends_with('.'), "{error}");
        assert!(error.contains(":1: logLevel: expected one of"), "{error}");
    }

    /// A scratch folder for the file-reading tests.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Makes a FIFO at `path`.
    fn fifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn a_fifo_in_place_of_a_config_file_is_refused_at_once() {
        let dir = scratch("fifo");
        let file = dir.join("config.toml");
        fifo(&file);
        let started = std::time::Instant::now();
        let error = read_config_file(&file, "restore it").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            error,
            format!(
                "{}: is a FIFO, not a regular file; Visor reads only regular files there: \
                 replace it with the configuration file",
                file.display()
            )
        );
        assert_eq!(load::read(&file), Err(error));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_file_over_one_mebibyte_is_refused() {
        let dir = scratch("large");
        let file = dir.join("config.toml");
        let mut text = "# padding\n".repeat(2 << 20 >> 4);
        text.truncate(2 << 20);
        std::fs::write(&file, &text).unwrap();
        let error = read_config_file(&file, "restore it").unwrap_err();
        assert_eq!(
            error,
            format!(
                "{}: larger than 1 MiB, which no configuration file needs; check that it is the \
                 right file",
                file.display()
            )
        );
        // Exactly the limit is fine.
        text.truncate(MAX_CONFIG_BYTES as usize);
        std::fs::write(&file, &text).unwrap();
        assert_eq!(
            read_config_file(&file, "restore it").map(|b| b.len() as u64),
            Ok(MAX_CONFIG_BYTES)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn folders_and_missing_files_are_refused_with_advice() {
        let dir = scratch("kinds");
        let error = read_config_file(&dir, "restore it").unwrap_err();
        assert!(error.ends_with("is a folder, not a regular file; Visor reads only regular files there: replace it with the configuration file"), "{error}");
        let missing = dir.join("absent.toml");
        assert_eq!(
            read_config_file(&missing, "restore it"),
            Err(format!("{}: no such file; restore it", missing.display()))
        );
        let link = dir.join("link.toml");
        std::fs::write(dir.join("real.toml"), "logLevel = \"warn\"\n").unwrap();
        std::os::unix::fs::symlink(dir.join("real.toml"), &link).unwrap();
        let bytes = load::read(&link).unwrap();
        assert_eq!(
            load::parse(&link, &bytes).map(|c| c.log_level),
            Ok(LogLevel::Warn)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_escapes_what_toml_needs() {
        assert_eq!(doc::quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(doc::key_path("", "v1.2"), "\"v1.2\"");
        assert_eq!(doc::key_path("a", "b_c-d"), "a.b_c-d");
    }
}
