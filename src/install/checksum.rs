//! The SHA-256 an asset must have: the release's `digest` of the asset, else its line in the
//! release's `checksumAsset` (sha256sum or BSD form); without either, refused when
//! `requireChecksum` is true. Also the comparison of a finished download with it.
//!
//! It fetches only the checksum file, through the GitHub client it is given; it decides nothing
//! about what is installed.

use std::path::Path;

use super::error::{not_found, verification, InstallError};
use super::github::{Asset, Client, Downloaded, Release};
use super::progress::Progress;
use crate::config::AutoInstall;

/// The largest checksum file (`checksumAsset`) read; it is held in memory.
pub const MAX_CHECKSUM_FILE: u64 = 1 << 20;

/// Where the expected SHA-256 comes from, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The lowercase hex SHA-256 and where it was found, for messages.
    Sha256 { hex: String, source: String },
    /// No checksum: allowed by `requireChecksum = false`, or a local file given to
    /// `prepare --from` without `--sha256`. `why` ends the warning line: why nothing was
    /// checked.
    Unverified { why: String },
    /// No checksum, but `[autoInstall.signatures]` keys are configured: the signatures over
    /// the asset's bytes stand in for it (`install::signature`).
    BySignatures,
}

/// What decides the expected SHA-256 of one asset.
pub struct Sources<'a> {
    pub release: &'a Release,
    pub asset: &'a Asset,
    /// `[autoInstall]`: `checksumAsset` and `requireChecksum`.
    pub auto: &'a AutoInstall,
    /// The release tag, for messages.
    pub tag: &'a str,
    /// config.toml, named in advice.
    pub config_file: &'a Path,
    /// Names the asset in messages.
    pub what: &'a str,
}

/// The SHA-256 the asset must have: its `digest`, else its line in `checksumAsset`; without
/// either, refused when `requireChecksum` is true.
pub fn expected_sha256(
    client: &Client,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Expected, InstallError> {
    if let Some(expected) = from_digest(sources, progress)? {
        return Ok(expected);
    }
    if let Some(sums_name) = &sources.auto.checksum_asset {
        return from_checksum_asset(client, sources, sums_name, progress);
    }
    if sources.auto.require_checksum {
        let (what, config_file) = (sources.what, sources.config_file.display());
        return Err(verification(format!(
            "{what}: the release gives no SHA-256 digest for it and checksumAsset is not set, so \
             it cannot be verified; set checksumAsset in [autoInstall] of {config_file} to the \
             release's sha256sum file, ask the publisher to publish digests, or allow unverified \
             assets with requireChecksum = false in [autoInstall] of {config_file}"
        )));
    }
    Ok(Expected::Unverified {
        why: "(requireChecksum = false)".to_owned(),
    })
}

/// The SHA-256 from the asset's `digest`; None when it has none, or one of another algorithm
/// (which is said in a progress line).
pub(super) fn from_digest(
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Option<Expected>, InstallError> {
    let (asset, what) = (sources.asset, sources.what);
    let Some(digest) = asset.digest.as_deref() else {
        return Ok(None);
    };
    match parse_digest(digest) {
        Ok(Some(hex)) => Ok(Some(Expected::Sha256 {
            hex,
            source: "from the release's digest".to_owned(),
        })),
        Ok(None) => {
            progress.report(
                &format!(
                    "install: the digest of {} is not SHA-256; ignoring it",
                    asset.name
                ),
                vec![("digest", digest.to_owned())],
            );
            Ok(None)
        }
        Err(why) => Err(verification(format!(
            "{what}: the release's digest {digest:?} {why}; report it to the publisher"
        ))),
    }
}

/// The SHA-256 from the asset's line in the release's checksum file `sums_name`.
fn from_checksum_asset(
    client: &Client,
    sources: &Sources,
    sums_name: &str,
    progress: &mut dyn Progress,
) -> Result<Expected, InstallError> {
    let (asset, what, tag) = (sources.asset, sources.what, sources.tag);
    let config_file = sources.config_file.display();
    let sums = sources.release.asset(sums_name).ok_or_else(|| {
        not_found(format!(
            "release {tag} has no checksum asset {sums_name} (it has {}); fix checksumAsset in \
             [autoInstall] of {config_file}",
            sources.release.asset_list()
        ))
    })?;
    let sums_what = format!("release {tag} checksum asset {sums_name}");
    progress.report(
        &format!("install: fetching checksums {sums_name}"),
        vec![("url", client.asset_url(sums).to_owned())],
    );
    let data = client.download_small(sums, &sums_what, MAX_CHECKSUM_FILE, progress)?;
    let text = String::from_utf8_lossy(&data);
    match find_checksum(&text, &asset.name) {
        Ok(Some(hex)) => Ok(Expected::Sha256 {
            hex,
            source: format!("from {sums_name}"),
        }),
        Ok(None) => Err(verification(format!(
            "{what}: {sums_name} has no SHA-256 line for {}; ask the publisher to add it, or fix \
             checksumAsset in [autoInstall] of {config_file}",
            asset.name
        ))),
        Err(why) => Err(verification(format!(
            "{what}: {sums_name} {why}; report it to the publisher"
        ))),
    }
}

/// Compares a finished download with the expected SHA-256 and says so in a progress line; an
/// unverified asset gets its warning line.
pub fn verify(
    expected: &Expected,
    downloaded: &Downloaded,
    asset: &Asset,
    what: &str,
    progress: &mut dyn Progress,
) -> Result<(), InstallError> {
    match expected {
        Expected::Sha256 { hex, source } => {
            if !downloaded.sha256.eq_ignore_ascii_case(hex) {
                return Err(verification(format!(
                    "{what}: SHA-256 mismatch: expected {hex} ({source}), got {} for {} bytes \
                     downloaded from {}; nothing was installed: try again, and if it persists \
                     report it to the publisher, the asset may have been tampered with",
                    downloaded.sha256, downloaded.bytes, downloaded.from
                )));
            }
            progress.report(
                &format!("install: SHA-256 of {} verified", asset.name),
                vec![
                    ("sha256", downloaded.sha256.clone()),
                    ("source", source.clone()),
                ],
            );
        }
        Expected::BySignatures => progress.report(
            &format!(
                "install: the release gives no SHA-256 for {}; its signatures are checked \
                 over its bytes instead",
                asset.name
            ),
            vec![("sha256", downloaded.sha256.clone())],
        ),
        Expected::Unverified { why } => progress.report(
            &format!(
                "install: WARNING {} is installed unverified {why}",
                asset.name
            ),
            vec![("sha256", downloaded.sha256.clone())],
        ),
    }
    Ok(())
}

/// Parses a GitHub asset `digest`: `Some(hex)` for `sha256:<64 hex digits>` (lowercased),
/// `None` for another algorithm, an error for anything malformed.
pub fn parse_digest(digest: &str) -> Result<Option<String>, String> {
    let Some((algorithm, value)) = digest.trim().split_once(':') else {
        return Err("is not of the form sha256:<hex>".to_owned());
    };
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Ok(None);
    }
    sha256_hex(value)
        .map(Some)
        .ok_or_else(|| "is not sha256: followed by 64 hexadecimal digits".to_owned())
}

/// A SHA-256 as 64 hexadecimal digits, lowercased, or None.
fn sha256_hex(value: &str) -> Option<String> {
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| value.to_ascii_lowercase())
}

/// Finds the SHA-256 of `name` in a `sha256sum` file: lines `<hex>  <name>` or `<hex> *<name>`
/// (the BSD form `SHA256 (<name>) = <hex>` too). A listed path matches when its last component
/// is `name`. `None` when no line names it; an error when its lines disagree or are malformed.
pub fn find_checksum(text: &str, name: &str) -> Result<Option<String>, String> {
    let mut found: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (hex, listed) = if let Some(rest) = line.strip_prefix("SHA256 (") {
            match rest.rsplit_once(") = ") {
                Some((listed, hex)) => (hex.trim(), listed),
                None => continue,
            }
        } else {
            match line.split_once(' ') {
                Some((hex, rest)) => (
                    hex,
                    rest.strip_prefix(' ')
                        .or_else(|| rest.strip_prefix('*'))
                        .unwrap_or(rest),
                ),
                None => continue,
            }
        };
        let listed = listed.strip_prefix("./").unwrap_or(listed);
        let matches = listed == name || listed.rsplit('/').next() == Some(name);
        if !matches {
            continue;
        }
        let Some(hex) = sha256_hex(hex) else {
            return Err(format!(
                "lists {name} with {hex:?}, which is not a SHA-256 of 64 hexadecimal digits"
            ));
        };
        match &found {
            Some(earlier) if *earlier != hex => {
                return Err(format!("lists {name} twice with different sums"));
            }
            _ => found = Some(hex),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            parse_digest(&format!("sha256:{HEX}")),
            Ok(Some(HEX.to_owned()))
        );
        assert_eq!(
            parse_digest(&format!("SHA256:{}", HEX.to_uppercase())),
            Ok(Some(HEX.to_owned()))
        );
        assert_eq!(parse_digest("sha512:abcd"), Ok(None));
        assert!(parse_digest("sha256:abcd").is_err());
        assert!(parse_digest(&format!("sha256:{}", &HEX.replace('a', "g"))).is_err());
        assert!(parse_digest(HEX).is_err());
        assert!(parse_digest("").is_err());
    }

    #[test]
    fn checksum_files_in_sha256sum_form() {
        let other = "0".repeat(64);
        let text = format!(
            "# sums\r\n{other}  zeta-linux-arm64.zip\r\n{HEX}  zeta-linux-amd64.zip\r\n\r\n"
        );
        assert_eq!(
            find_checksum(&text, "zeta-linux-amd64.zip"),
            Ok(Some(HEX.to_owned()))
        );
        assert_eq!(find_checksum(&text, "zeta-linux-riscv.zip"), Ok(None));
        let binary_mode = format!("{}  other\n{} *zeta.zip\n", other, HEX.to_uppercase());
        assert_eq!(
            find_checksum(&binary_mode, "zeta.zip"),
            Ok(Some(HEX.to_owned()))
        );
        let with_path = format!("{HEX}  ./dist/zeta.zip\n");
        assert_eq!(
            find_checksum(&with_path, "zeta.zip"),
            Ok(Some(HEX.to_owned()))
        );
        let bsd = format!("SHA256 (zeta.zip) = {HEX}\n");
        assert_eq!(find_checksum(&bsd, "zeta.zip"), Ok(Some(HEX.to_owned())));
        assert_eq!(
            find_checksum(&format!("{HEX}  xzeta.zip\n"), "zeta.zip"),
            Ok(None)
        );
        let twice = format!("{HEX}  zeta.zip\n{other}  zeta.zip\n");
        assert!(find_checksum(&twice, "zeta.zip")
            .err()
            .unwrap_or_default()
            .contains("twice"));
        let same_twice = format!("{HEX}  zeta.zip\n{HEX}  zeta.zip\n");
        assert_eq!(
            find_checksum(&same_twice, "zeta.zip"),
            Ok(Some(HEX.to_owned()))
        );
        assert!(find_checksum("abc  zeta.zip\n", "zeta.zip").is_err());
        assert_eq!(find_checksum("garbage\n", "zeta.zip"), Ok(None));
    }
}
