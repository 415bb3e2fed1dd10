//! Auto-install of one release: look the release up,
//! pick the asset for this machine, download it into a `.visor-tmp-install-*` folder in HOME,
//! verify its SHA-256, unpack it, write the run-config derived from the running version's,
//! check the binary's version, then rename the folder into place. Used by `visor prepare` and,
//! on an install thread, by `visor run`.
//!
//! It is a blocking library function: it owns the order of the steps, the checksum rules, the
//! run-config derivation and the half-made folder (removed by a guard on every failure path).
//! It must not write outside HOME, never leaves a half-made version folder, never replaces a
//! folder it did not make, does not log (it reports through a [`Progress`]) and decides
//! nothing about when to install or switch.

pub(crate) mod checksum;
pub(crate) mod error;
pub(crate) mod github;
pub(crate) mod progress;
pub(crate) mod signature;
pub(crate) mod source;
pub mod space;
pub(crate) mod staging;
pub(crate) mod trust;
pub mod zip;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::config::run_config::RunConfig;
use crate::config::AutoInstall;
use crate::home::{fsync_dir, Home, ReleaseTag, RUN_CONFIG_FILE};
use crate::node::folder_check::{binaries_problems, binary_version, check_upgrade_folder};
use checksum::Sources;
use error::{invalid, local, not_found};
pub use error::{InstallError, InstallErrorKind};
use github::{Asset, Client, Downloaded, Release};
pub use progress::{Progress, ToLog};
use staging::{
    check_inside_home, make_folders, rename_no_replace, write_synced, TempFolder, EXECUTABLE_MODE,
};

/// What to install and from what.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallRequest {
    /// The home folder; everything half-made lives in it.
    pub home: Home,
    /// `[autoInstall]` from config.toml.
    pub auto: AutoInstall,
    /// The release tag, already checked by `home::ReleaseTag::parse`.
    pub tag: String,
    /// The final folder, from `home::upgrade_folder`; it must be inside HOME to be installed.
    pub folder: PathBuf,
    /// The running version's run-config, from which the new one is derived.
    pub template: RunConfig,
}

/// Installs release `tag` into `folder`; returns the new folder's run-config after the version
/// check. A folder that already exists and passes `folder_check::check_upgrade_folder` is a
/// no-op success.
pub fn install(
    req: &InstallRequest,
    progress: &mut dyn Progress,
) -> Result<RunConfig, InstallError> {
    install_cancellable(req, &AtomicBool::new(false), progress)
}

/// [`install`], stopping with a `Local` error (and cleaning up) soon after `cancel` becomes
/// true: between chunks of a download, between retries and between zip entries.
///
/// The steps, in order: the folder already in place, [`check_destination`], [`lookup`], with
/// `[autoInstall.signatures]` keys the signature files and the signed checksum file
/// ([`signature::before_download`]), the expected SHA-256 ([`checksum::expected_sha256`]),
/// [`fetch`] into a fresh half-made folder, [`checksum::verify`], with keys the signatures
/// over the download ([`signature::after_download`]), [`unpack`], [`version_check`] and
/// [`place`]. The half-made folder is removed by its guard on every failure.
pub fn install_cancellable(
    req: &InstallRequest,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<RunConfig, InstallError> {
    let tag = match begin(req, progress)? {
        Begin::Ready(run) => return Ok(*run),
        Begin::Install(tag) => tag,
    };
    let trust = load_trust(req, progress)?;
    let client = Client::new(
        &req.auto.api_url,
        github_token()?,
        &trust,
        &github::BACKOFF,
        cancel,
    )
    .with_download_timeout(req.auto.download_timeout)
    .with_room(room(req));
    let found = lookup(&client, &trust, req, progress)?;
    let config_file = req.home.config_file();
    let sources = Sources {
        release: &found.release,
        asset: &found.asset,
        auto: &req.auto,
        tag: tag.as_str(),
        config_file: &config_file,
        what: &found.what,
    };
    let signatures = &req.auto.signatures;
    let signed = if signatures.enabled() {
        Some(signature::before_download(
            &client, &sources, signatures, progress,
        )?)
    } else {
        None
    };
    let expected = match &signed {
        Some(before) => signature::expected_sha256(before, &client, &sources, progress)?,
        None => checksum::expected_sha256(&client, &sources, progress)?,
    };
    let temp = TempFolder::create(req.home.temp_path(&format!("install-{tag}")))?;
    let (download, downloaded) = fetch(&client, &found, &temp, progress)?;
    checksum::verify(&expected, &downloaded, &found.asset, &found.what, progress)?;
    if let Some(before) = signed {
        signature::after_download(
            before,
            signatures,
            &download,
            &downloaded,
            &found.what,
            &config_file,
            cancel,
            progress,
        )?;
    }
    let unpacked = unpack(req, &found, &temp, &download, cancel, progress)?;
    let text = version_check(req, &found.what, &temp, &unpacked.binary, progress)?;
    place(req, &found.what, temp, &unpacked.folders, &text, progress)
}

/// `maxDownloadBytes` and `minFreeBytes` of `[autoInstall]`, on HOME's file system, where the
/// half-made folder is.
fn room(req: &InstallRequest) -> space::Room {
    space::Room::new(req.home.root(), &req.auto)
}

/// Where an install starts from: the folder already in place, or a tag to install.
enum Begin {
    Ready(Box<RunConfig>),
    Install(ReleaseTag),
}

/// The first steps of every install: the tag, the folder already in place (a no-op success)
/// and [`check_destination`].
fn begin(req: &InstallRequest, progress: &mut dyn Progress) -> Result<Begin, InstallError> {
    let tag = ReleaseTag::parse(&req.tag).map_err(invalid)?;
    if let Some(run) = already_installed(tag.as_str(), &req.folder)? {
        progress.report(
            &format!("install: folder for {tag} is already in place"),
            vec![("folder", req.folder.display().to_string())],
        );
        return Ok(Begin::Ready(Box::new(run)));
    }
    check_destination(req)?;
    Ok(Begin::Install(tag))
}

/// The release and the asset to install from it, found by [`lookup`].
struct Found {
    release: Release,
    asset: Asset,
    /// `release TAG asset NAME`, naming the asset in messages.
    what: String,
}

/// What [`unpack`] left in the half-made folder.
struct Unpacked {
    /// The binary's path relative to the folder.
    binary: String,
    /// Every folder made, the half-made folder first (for fsync).
    folders: Vec<PathBuf>,
}

/// Refuses a destination outside HOME, saying how to install it by hand instead.
fn check_destination(req: &InstallRequest) -> Result<(), InstallError> {
    let (tag, folder) = (req.tag.as_str(), req.folder.as_path());
    check_inside_home(req.home.root(), folder).map_err(|why| {
        local(format!(
            "{}: {why}; Visor installs only inside its home folder {}: create {} by hand with \
             the {tag} binaries and a run-config.toml (see visor-config(5)), or map {tag} to a \
             folder name in [upgradeFolders] of {}",
            folder.display(),
            req.home.root().display(),
            folder.display(),
            req.home.config_file().display()
        ))
    })
}

/// The certificates this install trusts (see [`trust`]), with a warning line for each thing
/// skipped or fallen back from on the way.
pub fn load_trust(
    req: &InstallRequest,
    progress: &mut dyn Progress,
) -> Result<trust::Trust, InstallError> {
    let places = trust::Places::from_process(req.auto.ca_file.as_deref());
    let trust = trust::load(&places, &req.home.config_file())?;
    for note in &trust.notes {
        progress.report(&format!("install: WARNING {note}"), Vec::new());
    }
    Ok(trust)
}

/// Looks the release up and picks the asset for this machine.
fn lookup(
    client: &Client,
    trust: &trust::Trust,
    req: &InstallRequest,
    progress: &mut dyn Progress,
) -> Result<Found, InstallError> {
    let tag = req.tag.as_str();
    let auto = &req.auto;
    let config_file = req.home.config_file();
    let owner = auto.repository_owner.as_str();
    let repo = auto.repository.as_str();
    progress.report(
        &format!("install: looking up release {tag} of {owner}/{repo}"),
        vec![
            ("url", client.release_url(owner, repo, tag)),
            ("trust", trust.source.clone()),
        ],
    );
    let release = client.release(owner, repo, tag, progress)?;
    let asset_name = asset_file_name(&auto.asset_name, tag)?;
    let asset = release.asset(&asset_name).cloned().ok_or_else(|| {
        not_found(format!(
            "release {tag} of {owner}/{repo} has no asset {asset_name} (it has {}); check name \
             in [autoInstall.asset] of {}, or wait for the publisher to attach it",
            release.asset_list(),
            config_file.display()
        ))
    })?;
    let what = format!("release {tag} asset {}", asset.name);
    if asset.name == RUN_CONFIG_FILE {
        return Err(invalid(format!(
            "{what}: an asset named {RUN_CONFIG_FILE} cannot be installed, Visor writes that \
             file itself; set name in [autoInstall.asset] of {}",
            config_file.display()
        )));
    }
    Ok(Found {
        release,
        asset,
        what,
    })
}

/// Downloads the asset into the half-made folder; returns the file and its SHA-256.
fn fetch(
    client: &Client,
    found: &Found,
    temp: &TempFolder,
    progress: &mut dyn Progress,
) -> Result<(PathBuf, Downloaded), InstallError> {
    let asset = &found.asset;
    let download = temp.path().join(&asset.name);
    progress.report(
        &format!("install: downloading {}", asset.name),
        vec![
            ("url", client.asset_url(asset).to_owned()),
            (
                "total",
                asset
                    .size
                    .map_or_else(|| "unknown".to_owned(), |size| size.to_string()),
            ),
            ("to", download.display().to_string()),
        ],
    );
    let downloaded = client.download_to_file(asset, &found.what, &download, progress)?;
    Ok((download, downloaded))
}

/// Unpacks a zip asset (and removes the zip), or keeps a plain asset as the binary; then makes
/// the binary executable.
fn unpack(
    req: &InstallRequest,
    found: &Found,
    temp: &TempFolder,
    download: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Unpacked, InstallError> {
    let (asset, what, auto) = (&found.asset, found.what.as_str(), &req.auto);
    let mut folders = vec![temp.path().to_path_buf()];
    let binary_relative = if is_zip_asset(asset) {
        let room = room(req);
        let extracted = zip::extract(&zip::Extraction {
            zip: download,
            into: temp.path(),
            what,
            binary: &auto.binary_name,
            reserved: &[asset.name.as_str()],
            skip: RUN_CONFIG_FILE,
            // maxDownloadBytes also bounds what the zip expands to.
            limits: zip::Limits {
                max_total_bytes: auto.max_download_bytes,
                ..zip::LIMITS
            },
            room: Some(&room),
            cancel,
        })?;
        fs::remove_file(download).map_err(|e| {
            local(format!(
                "{what}: cannot remove the unpacked download {} ({e}); check the home folder",
                download.display()
            ))
        })?;
        progress.report(
            &format!("install: unpacked {}", asset.name),
            vec![
                ("files", extracted.files.len().to_string()),
                ("binary", auto.binary_name.clone()),
            ],
        );
        folders.extend(extracted.folders);
        zip::entry_components(&auto.binary_name)
            .map(|parts| parts.join("/"))
            .unwrap_or_else(|_| auto.binary_name.clone())
    } else {
        asset.name.clone()
    };
    let binary = temp.path().join(&binary_relative);
    fs::set_permissions(&binary, fs::Permissions::from_mode(EXECUTABLE_MODE))
        .and_then(|()| File::open(&binary)?.sync_all())
        .map_err(|e| {
            local(format!(
                "{what}: cannot make {} executable ({e}); check the home folder",
                binary.display()
            ))
        })?;
    Ok(Unpacked {
        binary: binary_relative,
        folders,
    })
}

/// Writes the derived run-config into the half-made folder and checks that the binary it
/// names reports version `tag`; returns the run-config's text.
fn version_check(
    req: &InstallRequest,
    what: &str,
    temp: &TempFolder,
    binary_relative: &str,
    progress: &mut dyn Progress,
) -> Result<String, InstallError> {
    let tag = req.tag.as_str();
    let text = derived_run_config_text(&req.template, tag, binary_relative);
    let staged_file = temp.path().join(RUN_CONFIG_FILE);
    write_synced(&staged_file, text.as_bytes()).map_err(|e| {
        local(format!(
            "{what}: cannot write {} ({e}); check the home folder",
            staged_file.display()
        ))
    })?;
    let staged = RunConfig::parse(&staged_file, &text).map_err(|problems| {
        invalid(format!(
            "{what}: the derived run-config does not parse: {}; fix the running version's \
             run-config.toml",
            problems.join("; ")
        ))
    })?;
    let problems = binaries_problems(&staged);
    if !problems.is_empty() {
        return Err(invalid(format!("{what}: {}", problems.join("; "))));
    }
    let version = binary_version(&staged.core.path).map_err(|e| {
        invalid(format!(
            "{what}: the installed binary does not tell its version: {e}; report it to the \
             publisher, or check binaryName in [autoInstall.asset] of {}",
            req.home.config_file().display()
        ))
    })?;
    if version != tag {
        return Err(invalid(format!(
            "{what}: the binary reports version {version}, expected {tag}; the release holds the \
             wrong binary: report it to the publisher, nothing was installed"
        )));
    }
    progress.report(
        &format!("install: binary reports version {version}"),
        vec![("binary", binary_relative.to_owned())],
    );
    Ok(text)
}

/// Flushes the half-made folder and renames it into place; returns the installed folder's
/// run-config (`text`), or that of a ready folder another installer put there first.
fn place(
    req: &InstallRequest,
    what: &str,
    temp: TempFolder,
    folders: &[PathBuf],
    text: &str,
    progress: &mut dyn Progress,
) -> Result<RunConfig, InstallError> {
    let (tag, folder) = (req.tag.as_str(), req.folder.as_path());
    for dir in folders.iter().rev() {
        fsync_dir(dir).map_err(|e| {
            local(format!(
                "{what}: cannot flush {} to disk ({e}); check the home folder's file system",
                dir.display()
            ))
        })?;
    }
    if let Some(run) = move_into_place(req, &temp, what)? {
        // Another installer (a `visor prepare` beside `visor run`) finished first; its folder
        // is ready, and this one's half-made copy is removed by the guard.
        progress.report(
            &format!("install: folder for {tag} was installed meanwhile; using it"),
            vec![("folder", folder.display().to_string())],
        );
        return Ok(run);
    }
    temp.disarm();
    let final_file = folder.join(RUN_CONFIG_FILE);
    let run = RunConfig::parse(&final_file, text)
        .map_err(|problems| invalid(format!("{what}: {}", problems.join("; "))))?;
    progress.report(
        &format!("install: {tag} installed"),
        vec![("folder", folder.display().to_string())],
    );
    Ok(run)
}

/// The folder's run-config when it is already installed and ready; an error when something
/// else is in the way; None when it is missing.
fn already_installed(tag: &str, folder: &Path) -> Result<Option<RunConfig>, InstallError> {
    match fs::symlink_metadata(folder) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(local(format!(
            "{}: cannot look at the folder for {tag} ({e}); check the permissions of its parent",
            folder.display()
        ))),
        Ok(_) => match check_upgrade_folder(tag, folder) {
            Ok(run) => Ok(Some(run)),
            Err(problem) => Err(local(format!(
                "{}: exists but is not ready for {tag}: {problem}; Visor never replaces a folder \
                 it did not make: fix it, or move it away so that Visor can install {tag}",
                folder.display()
            ))),
        },
    }
}

/// Renames the finished folder to its final name, never replacing anything, and flushes the
/// folders involved. A folder that appeared meanwhile and is ready is accepted: then its
/// run-config is returned and the temporary folder stays where it is (for the guard).
fn move_into_place(
    req: &InstallRequest,
    temp: &TempFolder,
    what: &str,
) -> Result<Option<RunConfig>, InstallError> {
    let folder = req.folder.as_path();
    let home = req.home.root();
    let parent = folder.parent().unwrap_or(home);
    make_folders(parent).map_err(|e| {
        local(format!(
            "{what}: cannot create {} ({e}); check the home folder",
            parent.display()
        ))
    })?;
    check_inside_home(home, folder).map_err(|why| local(format!("{}: {why}", folder.display())))?;
    match rename_no_replace(temp.path(), folder) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return match check_upgrade_folder(&req.tag, folder) {
                Ok(run) => Ok(Some(run)),
                Err(problem) => Err(local(format!(
                    "{what}: {} appeared while installing and is not ready ({problem}); \
                     nothing was replaced: fix it, or move it away and try again",
                    folder.display()
                ))),
            };
        }
        Err(e) => {
            return Err(local(format!(
                "{what}: cannot rename {} to {} ({e}); the folder must be on the same file \
                 system as the home folder",
                temp.path().display(),
                folder.display()
            )))
        }
    }
    let mut synced = vec![parent.to_path_buf()];
    if parent != home {
        synced.push(home.to_path_buf());
    }
    for dir in synced {
        fsync_dir(&dir).map_err(|e| {
            local(format!(
                "{what}: installed into {} but cannot flush {} to disk ({e}); check the file \
                 system",
                folder.display(),
                dir.display()
            ))
        })?;
    }
    Ok(None)
}

/// `GITHUB_TOKEN` when set and not blank; refused (without showing it) when it cannot be sent.
fn github_token() -> Result<Option<String>, InstallError> {
    let Some(token) = std::env::var_os("GITHUB_TOKEN") else {
        return Ok(None);
    };
    let Some(token) = token.to_str().map(str::trim) else {
        return Err(local(
            "GITHUB_TOKEN is not valid UTF-8; fix its value in Visor's environment or unset it"
                .to_owned(),
        ));
    };
    if token.is_empty() {
        return Ok(None);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(local(
            "GITHUB_TOKEN holds spaces or characters an HTTP header cannot carry; fix its value \
             in Visor's environment or unset it"
                .to_owned(),
        ));
    }
    Ok(Some(token.to_owned()))
}

/// The asset file name for this machine: `pattern` with `{os}`, `{arch}` and `{version}`
/// replaced.
pub fn asset_file_name(pattern: &str, tag: &str) -> Result<String, InstallError> {
    let arch = machine_arch(std::env::consts::ARCH).ok_or_else(|| {
        invalid(format!(
            "release {tag}: Visor knows no release asset for this machine's architecture {}; \
             install the folder by hand",
            std::env::consts::ARCH
        ))
    })?;
    Ok(substitute(pattern, "linux", arch, tag))
}

/// The `{arch}` name of a Rust target architecture: amd64 or arm64.
pub fn machine_arch(rust_arch: &str) -> Option<&'static str> {
    match rust_arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

/// Replaces `{os}`, `{arch}` and `{version}` in one pass (so a value is never re-read as a
/// placeholder); other text is kept as it is.
pub fn substitute(pattern: &str, os: &str, arch: &str, version: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + version.len());
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open..).unwrap_or_default();
        let (value, len) = if after.starts_with("{os}") {
            (os, 4)
        } else if after.starts_with("{arch}") {
            (arch, 6)
        } else if after.starts_with("{version}") {
            (version, 9)
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = after.get(len..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Tells whether an asset is a zip: `application/zip` or a name ending in `.zip`.
pub fn is_zip_asset(asset: &Asset) -> bool {
    let media = asset
        .content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    matches!(
        media.as_deref(),
        Some("application/zip" | "application/x-zip-compressed")
    ) || asset.name.to_ascii_lowercase().ends_with(".zip")
}

/// The data node's args in a derived run-config: unchanged when they start with `datanode`,
/// otherwise the first arg is replaced by `datanode start` (or they become `datanode start`).
pub fn data_node_args(args: &[String]) -> Vec<String> {
    if args.first().is_some_and(|first| first == "datanode") {
        return args.to_vec();
    }
    let mut out = vec!["datanode".to_owned(), "start".to_owned()];
    out.extend(args.iter().skip(1).cloned());
    out
}

/// The new folder's run-config.toml: the template with `name = tag`, the core binary at
/// `binary` (relative to the folder), and a configured data node on the same binary with args
/// starting `datanode`.
pub fn derived_run_config_text(template: &RunConfig, tag: &str, binary: &str) -> String {
    let mut run = template.clone();
    run.name = tag.to_owned();
    run.core.configured_path = binary.to_owned();
    if let Some(data_node) = &mut run.data_node {
        data_node.configured_path = binary.to_owned();
        data_node.args = data_node_args(&data_node.args);
    }
    run.to_toml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_get_os_arch_and_version() {
        assert_eq!(
            substitute("zeta-{os}-{arch}.zip", "linux", "amd64", "v2"),
            "zeta-linux-amd64.zip"
        );
        assert_eq!(
            substitute(
                "zeta-{version}-{os}-{arch}-{version}",
                "linux",
                "arm64",
                "v1.2.3"
            ),
            "zeta-v1.2.3-linux-arm64-v1.2.3"
        );
        assert_eq!(substitute("plain", "linux", "amd64", "v2"), "plain");
        assert_eq!(substitute("a{b}{os", "linux", "amd64", "v2"), "a{b}{os");
        assert_eq!(substitute("{{os}}", "linux", "amd64", "v2"), "{linux}");
        assert_eq!(machine_arch("x86_64"), Some("amd64"));
        assert_eq!(machine_arch("aarch64"), Some("arm64"));
        assert_eq!(machine_arch("riscv64"), None);
        let name = asset_file_name("zeta-{os}-{arch}.zip", "v2");
        if let Some(arch) = machine_arch(std::env::consts::ARCH) {
            assert_eq!(name, Ok(format!("zeta-linux-{arch}.zip")));
        } else {
            assert_eq!(name.map_err(|e| e.kind), Err(InstallErrorKind::Invalid));
        }
    }

    #[test]
    fn zip_assets_by_type_or_name() {
        let asset = |name: &str, content_type: Option<&str>| Asset {
            name: name.to_owned(),
            url: None,
            browser_download_url: String::new(),
            content_type: content_type.map(str::to_owned),
            size: None,
            digest: None,
        };
        assert!(is_zip_asset(&asset("zeta.ZIP", None)));
        assert!(is_zip_asset(&asset("zeta", Some("application/zip"))));
        assert!(is_zip_asset(&asset("zeta", Some("Application/Zip; x=y"))));
        assert!(!is_zip_asset(&asset(
            "zeta",
            Some("application/octet-stream")
        )));
        assert!(!is_zip_asset(&asset("zeta-linux-amd64", None)));
    }

    #[test]
    fn data_node_args_start_with_datanode() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            data_node_args(&words(&["datanode", "start", "--home", "/d"])),
            words(&["datanode", "start", "--home", "/d"])
        );
        assert_eq!(
            data_node_args(&words(&["start", "--home", "/d"])),
            words(&["datanode", "start", "--home", "/d"])
        );
        assert_eq!(
            data_node_args(&words(&["node", "--x"])),
            words(&["datanode", "start", "--x"])
        );
        assert_eq!(data_node_args(&[]), words(&["datanode", "start"]));
    }

    #[test]
    fn run_config_is_derived_from_the_template() {
        let template_text = r#"name = "v1"
[vega]
  [vega.binary]
    path = "/opt/zeta/v1/vega"
    args = ["start", "--home", "/var/lib/zeta"]
  [vega.rpc]
    socketPath = "/run/zeta.sock"
    httpPath = "/rpc"
[data_node]
  [data_node.binary]
    path = "/opt/data-node"
    args = ["node", "--home", "/var/lib/dn"]
"#;
        let template =
            RunConfig::parse(Path::new("/h/genesis/run-config.toml"), template_text).unwrap();
        let text = derived_run_config_text(&template, "v2", "bin/zeta");
        let file = Path::new("/h/v2/run-config.toml");
        let run = RunConfig::parse(file, &text).unwrap();
        assert_eq!(run.name, "v2");
        assert_eq!(run.core.configured_path, "bin/zeta");
        assert_eq!(run.core.path, Path::new("/h/v2/bin/zeta"));
        assert_eq!(run.core.args, template.core.args);
        assert_eq!(run.rpc, template.rpc);
        let data_node = run.data_node.unwrap();
        assert_eq!(data_node.path, Path::new("/h/v2/bin/zeta"));
        assert_eq!(
            data_node.args,
            ["datanode", "start", "--home", "/var/lib/dn"]
        );

        let without = RunConfig {
            data_node: None,
            ..template
        };
        let run = RunConfig::parse(file, &derived_run_config_text(&without, "v2", "zeta"));
        assert_eq!(run.map(|r| r.data_node), Ok(None));
    }
}
