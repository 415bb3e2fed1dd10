//! The signature rule of an install, with `[autoInstall.signatures]` keys configured: an asset
//! is installed only when at least `threshold` distinct configured keys signed it.
//!
//! A key counts when it made a good signature in one of the release's files `ASSET.minisig`
//! or `ASSET.*.minisig` (over the asset's bytes), or in `SUMS.minisig` or `SUMS.*.minisig`
//! (over the checksum file `SUMS`, `checksumAsset` or else `SHA256SUMS`) when `SUMS` lists
//! the asset with the SHA-256 of the download. For `visor prepare --from`, the files given
//! with `--signature` (over the source's bytes). Each key counts once, whichever file.
//!
//! [`before_download`] fetches the signature files (at most [`MAX_SIGNATURE_FILES`], each at
//! most `signature::MAX_SIGNATURE_FILE` bytes) and, when signatures on it exist, `SUMS`, and
//! refuses at once when too few configured keys could count; [`after_download`] checks the
//! downloaded file in the half-made folder, before anything is unpacked or placed, and
//! refuses (the caller's guard removes the folder) or reports each good signature with its
//! trusted comment. It decides nothing about when to install and logs only through the
//! [`Progress`] it is given.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::checksum::{self, find_checksum, Expected, Sources, MAX_CHECKSUM_FILE};
use super::error::{interrupted, invalid, local, verification, InstallError};
use super::github::{Asset, Client, Downloaded};
use super::progress::Progress;
use crate::config::signatures::Signatures;
use crate::signature::{
    check_data, possible_keys, KeyId, Named, Outcome, SignatureFile, StreamCheck, Tally, Verdict,
    MAX_SIGNATURE_FILE,
};

/// The most signature files one install reads.
pub const MAX_SIGNATURE_FILES: usize = 16;

/// The checksum file whose signatures count when keys are configured and `checksumAsset` is
/// not set.
pub const DEFAULT_SUMS: &str = "SHA256SUMS";

/// Whether the file `name` is a signature of the file `signed`: `signed.minisig`, or
/// `signed.*.minisig` (one signer's file: `zeta.zip.alice.minisig`).
pub fn signs(name: &str, signed: &str) -> bool {
    let Some(rest) = name.strip_prefix(signed) else {
        return false;
    };
    rest == ".minisig"
        || rest
            .strip_prefix('.')
            .and_then(|r| r.strip_suffix(".minisig"))
            .is_some_and(|signer| !signer.is_empty())
}

/// The checksum file of a release once keys are configured.
pub fn sums_name(checksum_asset: Option<&str>) -> &str {
    checksum_asset.unwrap_or(DEFAULT_SUMS)
}

/// The signed checksum file: its name, what it says of the asset and its signatures.
pub(super) struct SignedSums {
    name: String,
    /// The asset's SHA-256 in it, when it lists the asset.
    listed: Option<String>,
    /// The outcome of each signature file over it; a good one by a key only counts as Good
    /// when `listed` is set.
    verdicts: Vec<Verdict>,
}

/// What is known before the asset is downloaded.
pub(super) struct Before {
    /// The signature files over the asset itself.
    asset_files: Vec<Named>,
    sums: Option<SignedSums>,
}

/// Fetches the release's signature files for the asset and, when signatures on it exist, the
/// checksum file; refuses when the release has none, or when fewer configured keys than the
/// threshold could have signed.
pub(super) fn before_download(
    client: &Client,
    sources: &Sources,
    signatures: &Signatures,
    progress: &mut dyn Progress,
) -> Result<Before, InstallError> {
    let (release, asset, what) = (sources.release, sources.asset, sources.what);
    let sums = sums_name(sources.auto.checksum_asset.as_deref());
    let on_asset: Vec<&Asset> = release
        .assets
        .iter()
        .filter(|a| signs(&a.name, &asset.name))
        .collect();
    let on_sums: Vec<&Asset> = release
        .assets
        .iter()
        .filter(|a| signs(&a.name, sums))
        .collect();
    let config_file = sources.config_file.display();
    if on_asset.is_empty() && on_sums.is_empty() {
        return Err(verification(format!(
            "{what}: the release has no signature for it (looked for {name}.minisig, \
             {name}.*.minisig, {sums}.minisig and {sums}.*.minisig; it has {}), and \
             [autoInstall.signatures] of {config_file} requires threshold = {} of the keys {}; \
             nothing was installed: ask the publisher to sign the release with minisign",
            release.asset_list(),
            signatures.threshold,
            signatures.key_ids(),
            name = asset.name,
        )));
    }
    let count = on_asset.len() + on_sums.len();
    if count > MAX_SIGNATURE_FILES {
        return Err(invalid(format!(
            "{what}: the release has {count} signature files for it, more than the \
             {MAX_SIGNATURE_FILES} Visor reads; report it to the publisher"
        )));
    }
    let names: Vec<&str> = on_asset
        .iter()
        .chain(&on_sums)
        .map(|a| a.name.as_str())
        .collect();
    progress.report(
        &format!("install: fetching {count} signature file(s)"),
        vec![("files", names.join(" "))],
    );
    let tag = sources.tag;
    let fetch = |sig: &Asset, progress: &mut dyn Progress| -> Result<Named, InstallError> {
        let sig_what = format!("release {tag} signature file {}", sig.name);
        let data = client.download_small(sig, &sig_what, MAX_SIGNATURE_FILE, progress)?;
        Ok(Named {
            file: sig.name.clone(),
            parsed: SignatureFile::parse(&data),
        })
    };
    let asset_files = on_asset
        .iter()
        .map(|sig| fetch(sig, progress))
        .collect::<Result<Vec<_>, _>>()?;
    let sums_files = on_sums
        .iter()
        .map(|sig| fetch(sig, progress))
        .collect::<Result<Vec<_>, _>>()?;
    let sums = if sums_files.is_empty() {
        None
    } else {
        Some(signed_sums(
            client,
            sources,
            sums,
            &signatures.public_keys,
            &sums_files,
            progress,
        )?)
    };
    let before = Before { asset_files, sums };
    let mut possible = possible_keys(&signatures.public_keys, &before.asset_files);
    possible.extend(before.sums_keys());
    if possible.len() < signatures.threshold {
        let mut verdicts = unchecked(&signatures.public_keys, &before.asset_files);
        verdicts.extend(before.sums_verdicts());
        return Err(early_refusal(
            what,
            &possible,
            &Tally {
                threshold: signatures.threshold,
                verdicts,
            },
            sources.config_file,
        ));
    }
    Ok(before)
}

/// Fetches the checksum file `name` and checks the signatures on it.
fn signed_sums(
    client: &Client,
    sources: &Sources,
    name: &str,
    keys: &[crate::signature::PublicKey],
    files: &[Named],
    progress: &mut dyn Progress,
) -> Result<SignedSums, InstallError> {
    let (release, asset, tag) = (sources.release, sources.asset, sources.tag);
    let Some(sums) = release.asset(name) else {
        let verdicts = files
            .iter()
            .map(|named| Verdict {
                file: named.file.clone(),
                outcome: Outcome::Unreadable(format!(
                    "a signature of {name}, which the release does not have"
                )),
            })
            .collect();
        return Ok(SignedSums {
            name: name.to_owned(),
            listed: None,
            verdicts,
        });
    };
    let sums_what = format!("release {tag} checksum asset {name}");
    progress.report(
        &format!("install: fetching checksums {name}"),
        vec![("url", client.asset_url(sums).to_owned())],
    );
    let data = client.download_small(sums, &sums_what, MAX_CHECKSUM_FILE, progress)?;
    let mut verdicts = check_data(keys, files, &data);
    let listing = find_checksum(&String::from_utf8_lossy(&data), &asset.name);
    let listed = match listing {
        Ok(Some(hex)) => Some(hex),
        Ok(None) => {
            let why = format!("good over {name}, which has no line for {}", asset.name);
            void_good(&mut verdicts, &why);
            None
        }
        Err(problem) => {
            let why = format!("good over {name}, which {problem}");
            void_good(&mut verdicts, &why);
            None
        }
    };
    Ok(SignedSums {
        name: name.to_owned(),
        listed,
        verdicts,
    })
}

/// Turns good signatures into failed ones (`why`): they cannot count for the asset.
fn void_good(verdicts: &mut [Verdict], why: &str) {
    for verdict in verdicts {
        if let Outcome::Good { key, .. } = verdict.outcome {
            verdict.outcome = Outcome::Failed {
                key,
                why: why.to_owned(),
            };
        }
    }
}

impl Before {
    /// The configured keys with a good signature on a checksum file that lists the asset.
    fn sums_keys(&self) -> BTreeSet<KeyId> {
        self.sums
            .as_ref()
            .map(|sums| {
                Tally {
                    threshold: 0,
                    verdicts: sums.verdicts.clone(),
                }
                .good_keys()
            })
            .unwrap_or_default()
    }

    fn sums_verdicts(&self) -> Vec<Verdict> {
        self.sums
            .as_ref()
            .map(|sums| sums.verdicts.clone())
            .unwrap_or_default()
    }
}

/// The outcomes of signature files that were not checked against the data, because too few
/// keys could count anyway.
pub(super) fn unchecked(keys: &[crate::signature::PublicKey], files: &[Named]) -> Vec<Verdict> {
    files
        .iter()
        .map(|named| {
            let outcome = match &named.parsed {
                Err(why) => Outcome::Unreadable(why.clone()),
                Ok(sig) if keys.iter().any(|k| k.id() == sig.key_id()) => Outcome::Failed {
                    key: sig.key_id(),
                    why: "not checked, since too few keys could count".to_owned(),
                },
                Ok(sig) => Outcome::OtherKey(sig.key_id()),
            };
            Verdict {
                file: named.file.clone(),
                outcome,
            }
        })
        .collect()
}

/// The SHA-256 the asset must have with keys configured: the release's digest, else its line
/// in the signed checksum file, else the one of `checksumAsset` when that is set and was not
/// fetched for its signatures; else none, and the signatures over the asset's bytes stand in
/// (`requireChecksum` is met by them).
pub(super) fn expected_sha256(
    before: &Before,
    client: &Client,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Expected, InstallError> {
    if let Some(expected) = checksum::from_digest(sources, progress)? {
        return Ok(expected);
    }
    if let Some(sums) = &before.sums {
        return Ok(match &sums.listed {
            Some(hex) => Expected::Sha256 {
                hex: hex.clone(),
                source: format!("from {}", sums.name),
            },
            None => Expected::BySignatures,
        });
    }
    if sources.auto.checksum_asset.is_some() {
        return checksum::expected_sha256(client, sources, progress);
    }
    Ok(Expected::BySignatures)
}

/// Checks the downloaded asset (`file`, in the half-made folder) against its signatures and
/// the signed checksum file, and refuses it unless at least `threshold` configured keys
/// signed it; reports each good signature with its trusted comment.
#[allow(clippy::too_many_arguments)]
pub(super) fn after_download(
    before: Before,
    signatures: &Signatures,
    file: &Path,
    downloaded: &Downloaded,
    what: &str,
    config_file: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<(), InstallError> {
    let mut verdicts = verify_file(signatures, &before.asset_files, file, what, cancel)?;
    if let Some(sums) = before.sums {
        let mut sums_verdicts = sums.verdicts;
        if let Some(hex) = &sums.listed {
            if !hex.eq_ignore_ascii_case(&downloaded.sha256) {
                let signers = Tally {
                    threshold: 0,
                    verdicts: sums_verdicts.clone(),
                }
                .good_keys();
                if !signers.is_empty() {
                    return Err(verification(format!(
                        "{what}: SHA-256 mismatch: {}, signed by key {}, lists {hex}, got {} for \
                         {} bytes downloaded from {}; nothing was installed: try again, and if \
                         it persists report it to the publisher, the asset may have been \
                         tampered with",
                        sums.name,
                        ids(&signers),
                        downloaded.sha256,
                        downloaded.bytes,
                        downloaded.from
                    )));
                }
            }
        }
        verdicts.append(&mut sums_verdicts);
    }
    decide(
        Tally {
            threshold: signatures.threshold,
            verdicts,
        },
        what,
        config_file,
        progress,
    )
}

/// Reads `file` once through every signature of it.
pub(super) fn verify_file(
    signatures: &Signatures,
    files: &[Named],
    file: &Path,
    what: &str,
    cancel: &AtomicBool,
) -> Result<Vec<Verdict>, InstallError> {
    let mut check = StreamCheck::new(&signatures.public_keys, files);
    if !check.needs_data() {
        return Ok(check.finish());
    }
    let cannot_read = |e: std::io::Error| {
        local(format!(
            "{what}: cannot read {} to check its signatures ({e}); check the home folder",
            file.display()
        ))
    };
    let mut input = File::open(file).map_err(cannot_read)?;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted(what));
        }
        let n = input.read(&mut buffer).map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        check.update(&buffer[..n]);
    }
    Ok(check.finish())
}

/// Refuses unless the threshold is met; else reports every file and the count.
pub(super) fn decide(
    tally: Tally,
    what: &str,
    config_file: &Path,
    progress: &mut dyn Progress,
) -> Result<(), InstallError> {
    if !tally.met() {
        return Err(refusal(what, &tally, config_file));
    }
    for verdict in &tally.verdicts {
        match &verdict.outcome {
            Outcome::Good { key, comment } => progress.report(
                &format!("install: good signature by key {key} in {}", verdict.file),
                vec![("trusted_comment", comment.clone())],
            ),
            _ => progress.report(
                &format!(
                    "install: signature file does not count: {}",
                    verdict.describe()
                ),
                Vec::new(),
            ),
        }
    }
    let good = tally.good_keys();
    progress.report(
        &format!(
            "install: {what} is signed by {} configured key(s), threshold {}",
            good.len(),
            tally.threshold
        ),
        vec![("keys", ids(&good))],
    );
    Ok(())
}

/// The refusal of an asset that too few configured keys signed: the asset, the keys found and
/// the threshold.
pub(super) fn refusal(what: &str, tally: &Tally, config_file: &Path) -> InstallError {
    refuse(what, "signed by", &tally.good_keys(), tally, config_file)
}

/// The refusal before the data is checked: the configured keys `possible` are all that made
/// signature files, too few to meet the threshold even if all were good.
pub(super) fn early_refusal(
    what: &str,
    possible: &BTreeSet<KeyId>,
    tally: &Tally,
    config_file: &Path,
) -> InstallError {
    refuse(what, "signed by at most", possible, tally, config_file)
}

fn refuse(
    what: &str,
    signed_by: &str,
    keys: &BTreeSet<KeyId>,
    tally: &Tally,
    config_file: &Path,
) -> InstallError {
    let counted = if keys.is_empty() {
        "no configured key".to_owned()
    } else {
        format!("{} configured key(s) ({})", keys.len(), ids(keys))
    };
    verification(format!(
        "{what}: {signed_by} {counted}, fewer than threshold = {} in [autoInstall.signatures] of \
         {}; key ids found: {}; signature files: {}; nothing was installed: ask the publisher \
         for signatures by the configured keys, or check publicKeys",
        tally.threshold,
        config_file.display(),
        tally.found_keys(),
        tally.describe()
    ))
}

/// Key ids, `, `-separated.
fn ids(keys: &BTreeSet<KeyId>) -> String {
    keys.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_files_are_named_after_what_they_sign() {
        assert!(signs("zeta.zip.minisig", "zeta.zip"));
        assert!(signs("zeta.zip.alice.minisig", "zeta.zip"));
        assert!(signs("SHA256SUMS.ci-2.minisig", "SHA256SUMS"));
        assert!(!signs("zeta.zip..minisig", "zeta.zip"));
        assert!(!signs("zeta.zip", "zeta.zip"));
        assert!(!signs("zeta.zipx.minisig", "zeta.zip"));
        assert!(!signs("other.zip.minisig", "zeta.zip"));
        assert!(!signs("zeta.zip.minisig.txt", "zeta.zip"));
        assert_eq!(sums_name(None), "SHA256SUMS");
        assert_eq!(sums_name(Some("sums.txt")), "sums.txt");
    }
}
