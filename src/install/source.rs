//! `visor prepare TAG --from SOURCE [--sha256 HEX] [--signature FILE|URL]...`: the install
//! pipeline of auto-install fed from a local binary, a local zip, or an `https://` URL
//! (`http://` to a loopback host only) of either, for hosts that cannot reach GitHub.
//!
//! Only the first steps differ: the source is copied (a file; never linked, so the folder
//! does not depend on a path outside HOME) or downloaded (a URL; no token is ever sent) into
//! the half-made folder with its SHA-256 computed on the way, and checked against `--sha256`.
//! A URL needs `--sha256` unless `[autoInstall] requireChecksum = false` or signatures stand
//! in for it; a local file is checked when `--sha256` is given. With `[autoInstall.signatures]`
//! keys, the `--signature` files (required then, refused without keys) must show at least
//! `threshold` configured keys over the source's bytes (`install::signature`). Then the steps
//! are those of auto-install: unpack (a zip by its name or its first bytes), the derived
//! run-config, the version check, the no-replace rename.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::checksum::{self, Expected};
use super::error::{interrupted, invalid, local, verification, InstallError};
use super::github::{self, Asset, Client, Downloaded, Release};
use super::progress::Progress;
use super::signature;
use super::space::{Room, CHECK_EVERY};
use super::staging::{TempFolder, FILE_MODE};
use super::InstallRequest;
use super::{begin, place, unpack, version_check, Begin, Found};
use crate::config::run_config::RunConfig;
use crate::config::url::check_url;
use crate::home::RUN_CONFIG_FILE;
use crate::signature::{possible_keys, Named, SignatureFile, Tally, MAX_SIGNATURE_FILE};

/// Where `--from` takes the release from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    /// A URL (`https://`, or `http://` to a loopback host) or a local path.
    pub fn parse(text: &str) -> Result<Source, String> {
        if text.starts_with("https://") || text.starts_with("http://") {
            check_url(text).map_err(|refusal| format!("--from {text}: {refusal}"))?;
            return Ok(Source::Url(text.to_string()));
        }
        Ok(Source::File(PathBuf::from(text)))
    }

    /// The file name the source is kept under in the half-made folder.
    fn file_name(&self) -> String {
        let name = match self {
            Source::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Source::Url(url) => url
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .unwrap_or_default()
                .to_string(),
        };
        let usable = !name.is_empty()
            && name != RUN_CONFIG_FILE
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
        if usable {
            name
        } else {
            "zeta".to_string()
        }
    }

    fn shown(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Url(url) => url.clone(),
        }
    }
}

/// A `--sha256` value: 64 hexadecimal digits, kept in lowercase.
pub fn parse_sha256(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "--sha256 {text}: not a SHA-256 (64 hexadecimal digits, as sha256sum prints)"
        ))
    }
}

/// What `--from` installs, and how it is checked.
pub struct FromRequest<'a> {
    pub source: &'a Source,
    /// `--sha256 HEX`.
    pub sha256: Option<&'a str>,
    /// Each `--signature FILE|URL`, as given.
    pub signatures: &'a [String],
}

/// Installs release `req.tag` from `source` (see the module documentation).
pub fn install_from(
    req: &InstallRequest,
    from: &FromRequest,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<RunConfig, InstallError> {
    let source = from.source;
    let keys = &req.auto.signatures;
    if let (false, Some(given)) = (keys.enabled(), from.signatures.first()) {
        return Err(invalid(format!(
            "--signature {given}: there is no public key to check it with; add the minisign \
             public keys of the release's signers to publicKeys in [autoInstall.signatures] of \
             {} (see visor-config(5)), or leave --signature out",
            req.home.config_file().display()
        )));
    }
    let tag = match begin(req, progress)? {
        Begin::Ready(run) => return Ok(*run),
        Begin::Install(tag) => tag,
    };
    let what = format!("{tag} from {}", source.shown());
    let signatures = if keys.enabled() {
        Some(given_signatures(
            req,
            from.signatures,
            &what,
            cancel,
            progress,
        )?)
    } else {
        None
    };
    let expected = expected(req, source, from.sha256, &what, signatures.is_some())?;
    let temp = TempFolder::create(req.home.temp_path(&format!("install-{tag}")))?;
    let name = source.file_name();
    let kept = temp.path().join(&name);
    let mut asset = Asset {
        name,
        url: None,
        browser_download_url: source.shown(),
        content_type: None,
        size: None,
        digest: None,
    };
    let taken = take(req, source, &asset, &what, &kept, cancel, progress)?;
    checksum::verify(&expected, &taken, &asset, &what, progress)?;
    if let Some(files) = &signatures {
        let verdicts = signature::verify_file(keys, files, &kept, &what, cancel)?;
        let tally = Tally {
            threshold: keys.threshold,
            verdicts,
        };
        signature::decide(tally, &what, &req.home.config_file(), progress)?;
    }
    if starts_like_a_zip(&kept) {
        asset.content_type = Some("application/zip".to_string());
    }
    let found = Found {
        release: Release {
            tag_name: tag.to_string(),
            assets: Vec::new(),
        },
        asset,
        what,
    };
    let unpacked = unpack(req, &found, &temp, &kept, cancel, progress)?;
    let text = version_check(req, &found.what, &temp, &unpacked.binary, progress)?;
    place(req, &found.what, temp, &unpacked.folders, &text, progress)
}

/// The SHA-256 to check against: `--sha256`, or none where that is allowed: where
/// `signed` (the `--signature` files are checked), or as the module documentation says.
fn expected(
    req: &InstallRequest,
    source: &Source,
    sha256: Option<&str>,
    what: &str,
    signed: bool,
) -> Result<Expected, InstallError> {
    if let Some(hex) = sha256 {
        return Ok(Expected::Sha256 {
            hex: parse_sha256(hex).map_err(invalid)?,
            source: "--sha256".to_string(),
        });
    }
    if signed {
        return Ok(Expected::BySignatures);
    }
    let why = match source {
        Source::Url(_) if req.auto.require_checksum => {
            return Err(verification(format!(
                "{what}: a download needs the SHA-256 it must have; give it with --sha256 HEX \
                 (from the publisher's checksum file), or set requireChecksum = false in \
                 [autoInstall] of {}",
                req.home.config_file().display()
            )));
        }
        Source::Url(_) => "(no --sha256 given, and requireChecksum = false)".to_owned(),
        // requireChecksum is about downloads; a file the operator names is checked only
        // against --sha256 (visor(1), prepare).
        Source::File(_) => "(no --sha256 given: a local file is checked only against --sha256, \
                            whatever requireChecksum says; give --sha256 HEX to check it)"
            .to_owned(),
    };
    Ok(Expected::Unverified { why })
}

/// The `--signature` files, read and parsed (a file that is not one is refused: the operator
/// named it); refused at once when none is given or too few configured keys made them.
fn given_signatures(
    req: &InstallRequest,
    given: &[String],
    what: &str,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Vec<Named>, InstallError> {
    let keys = &req.auto.signatures;
    let config_file = req.home.config_file();
    if given.is_empty() {
        return Err(verification(format!(
            "{what}: [autoInstall.signatures] of {} requires signatures by threshold = {} of \
             the keys {}; give the release's minisign signature files with --signature FILE or \
             --signature URL, once per file; nothing was installed",
            config_file.display(),
            keys.threshold,
            keys.key_ids()
        )));
    }
    let mut files = Vec::with_capacity(given.len());
    for text in given {
        let data = match Source::parse(text).map_err(invalid)? {
            Source::File(path) => read_signature_file(&path, text)?,
            Source::Url(url) => {
                let trust = super::load_trust(req, progress)?;
                // No token: it belongs to the GitHub API alone.
                let client = Client::new(&req.auto.api_url, None, &trust, &github::BACKOFF, cancel)
                    .with_download_timeout(req.auto.download_timeout);
                let asset = Asset {
                    name: Source::Url(url.clone()).file_name(),
                    url: None,
                    browser_download_url: url.clone(),
                    content_type: None,
                    size: None,
                    digest: None,
                };
                progress.report(&format!("install: fetching signature {url}"), Vec::new());
                let what = format!("--signature {url}");
                client.download_small(&asset, &what, MAX_SIGNATURE_FILE, progress)?
            }
        };
        let parsed = SignatureFile::parse(&data).map_err(|why| {
            invalid(format!(
                "--signature {text}: not a minisign signature file: {why}; give the .minisig \
                 file that minisign -S wrote for the release"
            ))
        })?;
        files.push(Named {
            file: text.clone(),
            parsed: Ok(parsed),
        });
    }
    let possible = possible_keys(&keys.public_keys, &files);
    if possible.len() < keys.threshold {
        let tally = Tally {
            threshold: keys.threshold,
            verdicts: signature::unchecked(&keys.public_keys, &files),
        };
        return Err(signature::early_refusal(
            what,
            &possible,
            &tally,
            &config_file,
        ));
    }
    Ok(files)
}

/// Reads a `--signature` file, at most [`MAX_SIGNATURE_FILE`] bytes.
fn read_signature_file(path: &Path, given: &str) -> Result<Vec<u8>, InstallError> {
    let cannot = |e: std::io::Error| {
        invalid(format!(
            "--signature {given}: cannot read it ({e}); give the path of the release's .minisig \
             file"
        ))
    };
    let file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(invalid(format!(
            "--signature {given}: not a regular file; give the path of the release's .minisig \
             file"
        )));
    }
    let mut data = Vec::new();
    file.take(MAX_SIGNATURE_FILE + 1)
        .read_to_end(&mut data)
        .map_err(cannot)?;
    if data.len() as u64 > MAX_SIGNATURE_FILE {
        return Err(invalid(format!(
            "--signature {given}: more than the {MAX_SIGNATURE_FILE} bytes a signature file may \
             have; give the release's .minisig file"
        )));
    }
    Ok(data)
}

/// Copies or downloads the source to `kept` in the half-made folder, hashing it on the way.
fn take(
    req: &InstallRequest,
    source: &Source,
    asset: &Asset,
    what: &str,
    kept: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Downloaded, InstallError> {
    match source {
        Source::File(path) => {
            progress.report(
                &format!("install: copying {}", path.display()),
                vec![("to", kept.display().to_string())],
            );
            copy_hashing(path, kept, what, &super::room(req), cancel)
        }
        Source::Url(url) => {
            let trust = super::load_trust(req, progress)?;
            progress.report(
                &format!("install: downloading {url}"),
                vec![
                    ("to", kept.display().to_string()),
                    ("trust", trust.source.clone()),
                ],
            );
            // No token: it belongs to the GitHub API alone.
            let client = Client::new(&req.auto.api_url, None, &trust, &github::BACKOFF, cancel)
                .with_download_timeout(req.auto.download_timeout)
                .with_room(super::room(req));
            client.download_to_file(asset, what, kept, progress)
        }
    }
}

/// Copies a local file into the half-made folder and returns its size and SHA-256, within
/// `maxDownloadBytes` and `minFreeBytes` (`room`): checked against the file's size first and
/// every [`CHECK_EVERY`] bytes while copying (the file may grow meanwhile).
fn copy_hashing(
    from: &Path,
    to: &Path,
    what: &str,
    room: &Room,
    cancel: &AtomicBool,
) -> Result<Downloaded, InstallError> {
    let cannot_read = |e: std::io::Error| {
        invalid(format!(
            "{what}: cannot read {} ({e}); give the path of the release binary or zip",
            from.display()
        ))
    };
    let meta = fs::metadata(from).map_err(cannot_read)?;
    if !meta.is_file() {
        return Err(invalid(format!(
            "{what}: {} is not a regular file; give the path of the release binary or zip",
            from.display()
        )));
    }
    let size = meta.len();
    room.check_size(what, &format!("{} is", from.display()), size)?;
    room.check_free(what, size)?;
    let mut input = File::open(from).map_err(cannot_read)?;
    let cannot_write = |e: std::io::Error| {
        local(format!(
            "{what}: cannot write {} ({e}); check the free space of the home folder",
            to.display()
        ))
    };
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(to)
        .map_err(cannot_write)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let mut next_space_check = CHECK_EVERY;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted(what));
        }
        let n = input.read(&mut buffer).map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        room.check_size(
            what,
            &format!("the copy of {} reached", from.display()),
            bytes,
        )?;
        if bytes >= next_space_check {
            next_space_check = bytes.saturating_add(CHECK_EVERY);
            room.check_free(what, size.saturating_sub(bytes))?;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(cannot_write)?;
    }
    output.sync_all().map_err(cannot_write)?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Downloaded {
        bytes,
        sha256,
        from: from.display().to_string(),
    })
}

/// Whether a file begins with a zip's local-header signature.
fn starts_like_a_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_paths() {
        assert_eq!(
            Source::parse("https://example.org/zeta.zip"),
            Ok(Source::Url("https://example.org/zeta.zip".into()))
        );
        assert!(Source::parse("http://example.org/zeta").is_err());
        assert!(Source::parse("http://127.0.0.1:8080/zeta").is_ok());
        assert_eq!(
            Source::parse("/tmp/zeta"),
            Ok(Source::File(PathBuf::from("/tmp/zeta")))
        );
    }

    #[test]
    fn file_names_are_kept_when_safe() {
        let name = |s: &str| Source::parse(s).unwrap().file_name();
        assert_eq!(
            name("https://h.example/r/zeta-linux-amd64.zip?x=1"),
            "zeta-linux-amd64.zip"
        );
        assert_eq!(name("https://h.example/"), "zeta");
        assert_eq!(name("/srv/x/run-config.toml"), "zeta");
        assert_eq!(name("/srv/x/.hidden"), "zeta");
        assert_eq!(name("/srv/x/zeta-v2"), "zeta-v2");
    }

    #[test]
    fn digests_are_64_hex_digits() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_sha256(&hex), Ok("ab".repeat(32)));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }
}
