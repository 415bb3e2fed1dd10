//! Minisign signatures by pinned keys: public keys as `minisign -G` prints them, signature
//! files (`.minisig`), their verification with the `minisign-verify` crate, and the count of
//! distinct configured keys that signed something against a threshold.
//!
//! The formats (minisign's own): a public key is base64 of `Ed`, an 8-byte key id and the
//! 32-byte Ed25519 key. A signature file is four lines: `untrusted comment: ...`; base64 of
//! the algorithm (`ED`: Ed25519 over the BLAKE2b-512 of the data, the default since
//! minisign 0.8; `Ed`: over the data itself, "legacy"), the signer's key id and the 64-byte
//! signature; `trusted comment: ...`; and base64 of the global signature, Ed25519 over the
//! signature and the trusted comment, so the trusted comment cannot be changed. A key id is
//! shown as `minisign` shows it: the 8 bytes read as a little-endian number, 16 uppercase
//! hexadecimal digits.
//!
//! A leaf: it imports std and `minisign_verify` only, does no IO (the caller feeds the bytes)
//! and decides nothing about installing; `install::signature` does.

mod base64;
/// The test signer of the integration tests, shared so that minisign's formats are written
/// in one place.
#[cfg(test)]
#[path = "../../tests/integration/common/minisign.rs"]
pub(crate) mod test_signer;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

use minisign_verify::StreamVerifier;

/// The largest signature file read; minisign's are under 1 KiB, with a trusted comment of at
/// most 1 KiB or so.
pub const MAX_SIGNATURE_FILE: u64 = 64 << 10;

/// The most data a legacy (`Ed`) signature is checked over: such a signature needs the whole
/// data in memory. Larger data must be signed prehashed (`ED`, minisign's default).
pub const MAX_LEGACY_BYTES: usize = 16 << 20;

/// The most characters of a trusted comment shown in a log line.
pub const MAX_COMMENT_SHOWN: usize = 256;

const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";
/// The algorithm bytes of a public key, and of a legacy signature.
const LEGACY: [u8; 2] = *b"Ed";
/// The algorithm bytes of a prehashed signature.
const PREHASHED: [u8; 2] = *b"ED";
const PUBLIC_KEY_BYTES: usize = 2 + 8 + 32;
const SIGNATURE_BYTES: usize = 2 + 8 + 64;
const GLOBAL_SIGNATURE_BYTES: usize = 64;

/// A minisign key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn from_slice(bytes: &[u8]) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    /// As `minisign` prints it: `E7620F1842B4E81F`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // minisign formats it with `%" PRIX64`: no leading zeros.
        write!(f, "{:X}", u64::from_le_bytes(self.0))
    }
}

/// A minisign public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    text: String,
    key: minisign_verify::PublicKey,
}

impl PublicKey {
    /// Parses a key as `minisign -G` prints it (the second line of its `.pub` file: 56
    /// base64 characters starting `RW`). The error says what is wrong, for a message that
    /// names where the key came from.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bytes = base64::decode(text).map_err(|e| format!("not base64: {e}"))?;
        if bytes.len() != PUBLIC_KEY_BYTES {
            return Err(format!(
                "{} bytes once decoded, where a minisign public key has {PUBLIC_KEY_BYTES} \
                 (56 base64 characters)",
                bytes.len()
            ));
        }
        if bytes[..2] != LEGACY {
            return Err(format!(
                "its algorithm is {}, not minisign's Ed25519 (Ed: the key starts with RW)",
                shown_bytes(&bytes[..2])
            ));
        }
        let key = minisign_verify::PublicKey::from_base64(text)
            .map_err(|e| format!("not a minisign public key: {e}"))?;
        Ok(PublicKey {
            id: KeyId::from_slice(&bytes[2..10]),
            text: text.to_owned(),
            key,
        })
    }

    /// The key id, as in `minisign public key E7620F1842B4E81F`.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Which data a signature's Ed25519 signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ED`: the BLAKE2b-512 of the data (minisign's default).
    Prehashed,
    /// `Ed`: the data itself.
    Legacy,
}

/// A parsed signature file.
#[derive(Clone)]
pub struct SignatureFile {
    key_id: KeyId,
    mode: Mode,
    trusted_comment: String,
    signature: minisign_verify::Signature,
}

impl fmt::Debug for SignatureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureFile")
            .field("key_id", &self.key_id)
            .field("mode", &self.mode)
            .field("trusted_comment", &self.trusted_comment)
            .finish_non_exhaustive()
    }
}

impl SignatureFile {
    /// Parses the bytes of a `.minisig` file. The error says what is wrong with it.
    pub fn parse(data: &[u8]) -> Result<SignatureFile, String> {
        if data.len() as u64 > MAX_SIGNATURE_FILE {
            return Err(format!(
                "{} bytes, more than the {MAX_SIGNATURE_FILE} a signature file may have",
                data.len()
            ));
        }
        let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text".to_owned())?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut line = |what: &str| {
            lines
                .next()
                .ok_or_else(|| format!("it ends before its {what} line"))
        };
        let untrusted = line("first (untrusted comment)")?;
        let signature_line = line("second (signature)")?;
        let trusted = line("third (trusted comment)")?;
        let global_line = line("fourth (global signature)")?;
        if lines.any(|rest| !rest.trim().is_empty()) {
            return Err("text follows the fourth line, where a signature file ends".to_owned());
        }
        if !untrusted.starts_with(UNTRUSTED_PREFIX) {
            return Err(format!(
                "its first line does not start with {UNTRUSTED_PREFIX:?}"
            ));
        }
        let bytes = base64::decode(signature_line)
            .map_err(|e| format!("its second line is not base64: {e}"))?;
        if bytes.len() != SIGNATURE_BYTES {
            return Err(format!(
                "its second line holds {} bytes, where a minisign signature has {SIGNATURE_BYTES}",
                bytes.len()
            ));
        }
        let mode = match [bytes[0], bytes[1]] {
            PREHASHED => Mode::Prehashed,
            LEGACY => Mode::Legacy,
            other => {
                return Err(format!(
                    "its algorithm is {}, not one minisign signs with (ED, or Ed for legacy)",
                    shown_bytes(&other)
                ))
            }
        };
        if !trusted.starts_with(TRUSTED_PREFIX) {
            return Err(format!(
                "its third line does not start with {TRUSTED_PREFIX:?}"
            ));
        }
        let global = base64::decode(global_line)
            .map_err(|e| format!("its fourth line is not base64: {e}"))?;
        if global.len() != GLOBAL_SIGNATURE_BYTES {
            return Err(format!(
                "its fourth line holds {} bytes, where a global signature has \
                 {GLOBAL_SIGNATURE_BYTES}",
                global.len()
            ));
        }
        let four = format!("{untrusted}\n{signature_line}\n{trusted}\n{global_line}\n");
        let signature = minisign_verify::Signature::decode(&four)
            .map_err(|e| format!("not a minisign signature: {e}"))?;
        Ok(SignatureFile {
            key_id: KeyId::from_slice(&bytes[2..10]),
            mode,
            trusted_comment: trusted[TRUSTED_PREFIX.len()..].to_owned(),
            signature,
        })
    }

    /// The id of the key that made it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The trusted comment, as signed (not yet checked).
    pub fn trusted_comment(&self) -> &str {
        &self.trusted_comment
    }
}

/// A signature file by its name (a release asset, a path or a URL) and what reading it gave.
#[derive(Debug, Clone)]
pub struct Named {
    pub file: String,
    pub parsed: Result<SignatureFile, String>,
}

/// What became of one signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A configured key signed the data; the trusted comment, bounded ([`shown_comment`]).
    Good { key: KeyId, comment: String },
    /// Made by a key that is not configured: it does not count.
    OtherKey(KeyId),
    /// By a configured key, but it does not hold for the data: another file's signature, the
    /// data or the trusted comment changed, or it cannot count here (`why`).
    Failed { key: KeyId, why: String },
    /// Not a minisign signature file (`why`).
    Unreadable(String),
}

/// One signature file's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub file: String,
    pub outcome: Outcome,
}

impl Verdict {
    /// The key id in the file, when it could be read.
    pub fn key(&self) -> Option<KeyId> {
        match &self.outcome {
            Outcome::Good { key, .. } | Outcome::OtherKey(key) | Outcome::Failed { key, .. } => {
                Some(*key)
            }
            Outcome::Unreadable(_) => None,
        }
    }

    /// One phrase for messages: `NAME: good signature by key ID`.
    pub fn describe(&self) -> String {
        let file = &self.file;
        match &self.outcome {
            Outcome::Good { key, .. } => format!("{file}: good signature by key {key}"),
            Outcome::OtherKey(key) => {
                format!("{file}: by key {key}, which is not in publicKeys")
            }
            Outcome::Failed { key, why } => format!("{file}: by key {key}, {why}"),
            Outcome::Unreadable(why) => format!("{file}: {why}"),
        }
    }
}

/// The key of `keys` with this id.
fn configured(keys: &[PublicKey], id: KeyId) -> Option<&PublicKey> {
    keys.iter().find(|k| k.id == id)
}

/// The ids of the configured keys that made one of `files`, before anything is verified: the
/// most that `files` can count.
pub fn possible_keys(keys: &[PublicKey], files: &[Named]) -> BTreeSet<KeyId> {
    files
        .iter()
        .filter_map(|named| named.parsed.as_ref().ok())
        .map(SignatureFile::key_id)
        .filter(|id| configured(keys, *id).is_some())
        .collect()
}

/// One signature file being checked against data fed in pieces.
enum Check<'a> {
    Done(Outcome),
    Prehashed {
        key: KeyId,
        comment: &'a str,
        verifier: Box<StreamVerifier<'a>>,
    },
    Legacy {
        key: &'a PublicKey,
        signature: &'a SignatureFile,
    },
}

/// Checks signature files against data fed in pieces (a download read back from disk), each
/// piece once for all of them.
pub struct StreamCheck<'a> {
    checks: Vec<(&'a str, Check<'a>)>,
    /// The data so far, while a legacy signature by a configured key waits for it and it is
    /// within [`MAX_LEGACY_BYTES`].
    legacy_data: Option<Vec<u8>>,
    fed: u64,
}

impl<'a> StreamCheck<'a> {
    pub fn new(keys: &'a [PublicKey], files: &'a [Named]) -> StreamCheck<'a> {
        let checks: Vec<(&'a str, Check<'a>)> = files
            .iter()
            .map(|named| (named.file.as_str(), start(keys, named)))
            .collect();
        let legacy = checks
            .iter()
            .any(|(_, check)| matches!(check, Check::Legacy { .. }));
        StreamCheck {
            checks,
            legacy_data: legacy.then(Vec::new),
            fed: 0,
        }
    }

    /// Feeds the next piece of the data.
    pub fn update(&mut self, piece: &[u8]) {
        self.fed = self.fed.saturating_add(piece.len() as u64);
        for (_, check) in &mut self.checks {
            if let Check::Prehashed { verifier, .. } = check {
                verifier.update(piece);
            }
        }
        if let Some(data) = &mut self.legacy_data {
            if data.len() + piece.len() > MAX_LEGACY_BYTES {
                self.legacy_data = None;
            } else {
                data.extend_from_slice(piece);
            }
        }
    }

    /// Whether anything checks the data at all (a file by a configured key).
    pub fn needs_data(&self) -> bool {
        self.checks
            .iter()
            .any(|(_, check)| !matches!(check, Check::Done(_)))
    }

    /// The outcome of each file, in the order given, once all the data was fed.
    pub fn finish(self) -> Vec<Verdict> {
        let StreamCheck {
            checks,
            legacy_data,
            fed,
        } = self;
        checks
            .into_iter()
            .map(|(file, check)| {
                let outcome = match check {
                    Check::Done(outcome) => outcome,
                    Check::Prehashed {
                        key,
                        comment,
                        mut verifier,
                    } => judge(key, comment, verifier.finalize()),
                    Check::Legacy { key, signature } => match &legacy_data {
                        Some(data) => judge(
                            key.id,
                            &signature.trusted_comment,
                            key.key.verify(data, &signature.signature, true),
                        ),
                        None => Outcome::Failed {
                            key: key.id,
                            why: format!(
                                "a legacy (Ed) signature, which is checked only over at most \
                                 {} MiB and this is {fed} bytes; the publisher must sign it \
                                 prehashed (minisign's default)",
                                MAX_LEGACY_BYTES >> 20
                            ),
                        },
                    },
                };
                Verdict {
                    file: file.to_owned(),
                    outcome,
                }
            })
            .collect()
    }
}

/// The check of one file before any data: done when it cannot count.
fn start<'a>(keys: &'a [PublicKey], named: &'a Named) -> Check<'a> {
    let signature = match &named.parsed {
        Ok(signature) => signature,
        Err(why) => return Check::Done(Outcome::Unreadable(why.clone())),
    };
    let Some(key) = configured(keys, signature.key_id) else {
        return Check::Done(Outcome::OtherKey(signature.key_id));
    };
    match signature.mode {
        Mode::Legacy => Check::Legacy { key, signature },
        Mode::Prehashed => match key.key.verify_stream(&signature.signature) {
            Ok(verifier) => Check::Prehashed {
                key: key.id,
                comment: &signature.trusted_comment,
                verifier: Box::new(verifier),
            },
            Err(e) => Check::Done(Outcome::Failed {
                key: key.id,
                why: format!("which cannot be checked: {e}"),
            }),
        },
    }
}

/// The outcome of a verification by configured key `key`.
fn judge(key: KeyId, comment: &str, result: Result<(), minisign_verify::Error>) -> Outcome {
    match result {
        Ok(()) => Outcome::Good {
            key,
            comment: shown_comment(comment),
        },
        Err(minisign_verify::Error::InvalidSignature) => Outcome::Failed {
            key,
            why: "which does not verify: it was made for other bytes, or the file or its \
                  trusted comment was changed"
                .to_owned(),
        },
        Err(e) => Outcome::Failed {
            key,
            why: format!("which does not verify: {e}"),
        },
    }
}

/// Checks signature files against data held in memory (a checksum file, a small download).
pub fn check_data(keys: &[PublicKey], files: &[Named], data: &[u8]) -> Vec<Verdict> {
    let mut check = StreamCheck::new(keys, files);
    check.update(data);
    check.finish()
}

/// The signature files found for one asset, whatever they signed, and the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub threshold: usize,
    pub verdicts: Vec<Verdict>,
}

impl Tally {
    /// The distinct configured keys with a good signature: what counts.
    pub fn good_keys(&self) -> BTreeSet<KeyId> {
        self.verdicts
            .iter()
            .filter_map(|v| match v.outcome {
                Outcome::Good { key, .. } => Some(key),
                _ => None,
            })
            .collect()
    }

    /// Whether at least `threshold` distinct configured keys signed.
    pub fn met(&self) -> bool {
        self.good_keys().len() >= self.threshold
    }

    /// Every key id found in a signature file, configured or not, as `minisign` prints them,
    /// or `none`.
    pub fn found_keys(&self) -> String {
        let keys: BTreeSet<KeyId> = self.verdicts.iter().filter_map(Verdict::key).collect();
        if keys.is_empty() {
            return "none".to_owned();
        }
        keys.iter()
            .map(KeyId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every file's outcome, `; `-separated, or `none`.
    pub fn describe(&self) -> String {
        if self.verdicts.is_empty() {
            return "none".to_owned();
        }
        self.verdicts
            .iter()
            .map(Verdict::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A trusted comment bounded for a log line: at most [`MAX_COMMENT_SHOWN`] characters (then
/// `...`). Control characters are left to the log, which escapes them in every line.
pub fn shown_comment(comment: &str) -> String {
    match comment.char_indices().nth(MAX_COMMENT_SHOWN) {
        Some((cut, _)) => format!("{}...", &comment[..cut]),
        None => comment.to_owned(),
    }
}

/// Two algorithm bytes for a message: as text when printable, else in hex.
fn shown_bytes(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic()) {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
