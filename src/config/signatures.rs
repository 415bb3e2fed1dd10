//! The `[autoInstall.signatures]` table of config.toml: the minisign public keys a release
//! must be signed with, and how many of them.
//!
//! `publicKeys` lists keys as `minisign -G` prints them; `threshold` (1 by default) is how
//! many distinct keys of the list must have signed an asset for it to be installed
//! (`install::signature` applies it). No keys, the default, means that nothing is
//! signature-checked. Parsing refuses a key that is not a minisign public key, the same key
//! twice and a threshold outside 1 to the number of keys, each at its line.

use super::doc::{self, key_path, Entry, Kind, Report};
use crate::signature::PublicKey;

/// The keys allowed in `[autoInstall.signatures]`.
pub(super) const SIGNATURE_KEYS: &[&str] = &["publicKeys", "threshold"];

/// `[autoInstall.signatures]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `publicKeys`, each once.
    pub public_keys: Vec<PublicKey>,
    /// `threshold`: from 1 to the number of keys.
    pub threshold: usize,
}

impl Default for Signatures {
    fn default() -> Self {
        Signatures {
            public_keys: Vec::new(),
            threshold: 1,
        }
    }
}

impl Signatures {
    /// Whether keys are configured, so that releases are signature-checked.
    pub fn enabled(&self) -> bool {
        !self.public_keys.is_empty()
    }

    /// The configured key ids as `minisign` prints them, `, `-separated.
    pub fn key_ids(&self) -> String {
        self.public_keys
            .iter()
            .map(|k| k.id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads the `[autoInstall.signatures]` table; `grandparent` is the key path of its parent.
pub(super) fn parse(rep: &mut Report, entry: &Entry, grandparent: &str, out: &mut Signatures) {
    let Some(table) = rep.table(entry, grandparent) else {
        return;
    };
    let parent = key_path(grandparent, &entry.key);
    let parent = parent.as_str();
    let mut threshold: Option<(&Entry, usize)> = None;
    let mut keys_ok = true;
    for item in table {
        match item.key.as_str() {
            "publicKeys" => match public_keys(rep, item, parent) {
                Some(keys) => out.public_keys = keys,
                None => keys_ok = false,
            },
            "threshold" => {
                let todo = "write how many of the publicKeys must have signed a release, e.g. \
                            threshold = 1";
                if let Some(n) = rep.whole(item, parent, "", (1, 1 << 16), todo) {
                    threshold = Some((item, n as usize));
                }
            }
            _ => rep.unknown(item, parent, SIGNATURE_KEYS),
        }
    }
    let Some((item, n)) = threshold else {
        return;
    };
    out.threshold = n;
    let count = out.public_keys.len();
    if keys_ok && n > count {
        let what = if count == 0 {
            format!(
                "threshold {n} without publicKeys; list the minisign public keys of the \
                 release's signers in publicKeys, or remove threshold"
            )
        } else {
            format!(
                "threshold {n} is more than the {count} key(s) in publicKeys, so no release \
                 could ever be installed; lower it to at most {count}, or add keys"
            )
        };
        rep.error(&item.value_span(), &key_path(parent, &item.key), &what);
    }
}

/// Reads `publicKeys`: an array of distinct minisign public keys, each problem at the line of
/// its element. None when one is refused.
fn public_keys(rep: &mut Report, entry: &Entry, parent: &str) -> Option<Vec<PublicKey>> {
    let path = key_path(parent, &entry.key);
    let Kind::Array(items) = &entry.node.kind else {
        let what = format!(
            "expected an array of minisign public keys, found {}; write it as publicKeys = \
             [\"RW...\"] with each key as minisign -G prints it",
            rep.found(&entry.node)
        );
        rep.error(&entry.value_span(), &path, &what);
        return None;
    };
    let mut keys: Vec<PublicKey> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let span = item.span.clone().or_else(|| entry.value_span());
        let Kind::Str(text) = &item.kind else {
            let what = format!(
                "expected a minisign public key in quotes, found {}; quote every key",
                rep.found(item)
            );
            rep.error(&span, &at, &what);
            ok = false;
            continue;
        };
        let key = match PublicKey::parse(text.trim()) {
            Ok(key) => key,
            Err(why) => {
                let what = format!(
                    "{} is not a minisign public key ({why}); give the key as minisign -G \
                     prints it, the second line of its .pub file, e.g. \"RWQ...\" (56 \
                     characters)",
                    shown_key(text)
                );
                rep.error(&span, &at, &what);
                ok = false;
                continue;
            }
        };
        if let Some(first) = keys.iter().position(|k| k.id() == key.id()) {
            let same = if keys[first] == key {
                "the same key as"
            } else {
                "a key with the same key id as"
            };
            let what = format!(
                "{same} {path}[{first}] (key id {}); a key counts once toward the threshold, \
                 remove the duplicate",
                key.id()
            );
            rep.error(&span, &at, &what);
            ok = false;
            continue;
        }
        keys.push(key);
    }
    ok.then_some(keys)
}

/// A configured key for a message: quoted, and cut when it is long.
fn shown_key(text: &str) -> String {
    if text.chars().count() <= 64 {
        doc::quote(text)
    } else {
        let start: String = text.chars().take(60).collect();
        format!("{}...", doc::quote(&start))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::signature::test_signer::Signer;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(Path::new("/srv/visor/config.toml"), text)
    }

    fn one_error(text: &str) -> String {
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors[0].clone()
    }

    #[test]
    fn keys_and_threshold_are_read() {
        let (a, b) = (Signer::generate(), Signer::generate());
        let text = format!(
            "[autoInstall.signatures]\npublicKeys = [\n  \"{}\",\n  \"{}\",\n]\nthreshold = 2\n",
            a.public_key(),
            b.public_key()
        );
        let signatures = parse(&text).unwrap().auto_install.signatures;
        assert!(signatures.enabled());
        assert_eq!(signatures.threshold, 2);
        assert_eq!(
            signatures.key_ids(),
            format!("{}, {}", a.key_id(), b.key_id())
        );
        let defaults = parse("").unwrap().auto_install.signatures;
        assert!(!defaults.enabled());
        assert_eq!(defaults.threshold, 1);
        // Inline, and with no keys at all.
        let inline = format!(
            "[autoInstall]\nsignatures = {{ publicKeys = [\"{}\"] }}\n",
            a.public_key()
        );
        assert_eq!(parse(&inline).unwrap().auto_install.signatures.threshold, 1);
        let empty = parse("[autoInstall.signatures]\npublicKeys = []\n").unwrap();
        assert!(!empty.auto_install.signatures.enabled());
    }

    #[test]
    fn bad_keys_are_refused_with_their_line_and_index() {
        let a = Signer::generate();
        let text = format!(
            "[autoInstall.signatures]\npublicKeys = [\n  \"{}\",\n  \"RWQnot-a-key\",\n]\n",
            a.public_key()
        );
        let error = one_error(&text);
        assert!(
            error.starts_with(
                "/srv/visor/config.toml:4: autoInstall.signatures.publicKeys[1]: \"RWQnot-a-key\" \
                 is not a minisign public key (not base64: character '-' at position 7); give \
                 the key as minisign -G prints it"
            ),
            "{error}"
        );
        let error = one_error("[autoInstall.signatures]\npublicKeys = [5]\n");
        assert!(
            error.contains("publicKeys[0]: expected a minisign public key in quotes, found 5"),
            "{error}"
        );
        let error = one_error("[autoInstall.signatures]\npublicKeys = \"RWQ\"\n");
        assert!(
            error.contains("publicKeys: expected an array of minisign public keys"),
            "{error}"
        );
        let error = one_error("[autoInstall.signatures]\npublickeys = []\n");
        assert!(error.contains("did you mean publicKeys?"), "{error}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let a = Signer::generate();
        let text = format!(
            "[autoInstall.signatures]\npublicKeys = [\"{0}\", \"{0}\"]\nthreshold = 2\n",
            a.public_key()
        );
        let error = one_error(&text);
        assert!(
            error.starts_with(&format!(
                "/srv/visor/config.toml:2: autoInstall.signatures.publicKeys[1]: the same key as \
                 autoInstall.signatures.publicKeys[0] (key id {}); a key counts once",
                a.key_id()
            )),
            "{error}"
        );
    }

    #[test]
    fn the_threshold_is_from_one_to_the_number_of_keys() {
        let (a, b) = (Signer::generate(), Signer::generate());
        let keys = format!(
            "publicKeys = [\"{}\", \"{}\"]",
            a.public_key(),
            b.public_key()
        );
        let error = one_error(&format!(
            "[autoInstall.signatures]\n{keys}\nthreshold = 3\n"
        ));
        assert!(
            error.starts_with(
                "/srv/visor/config.toml:3: autoInstall.signatures.threshold: threshold 3 is more \
                 than the 2 key(s) in publicKeys"
            ),
            "{error}"
        );
        let error = one_error(&format!(
            "[autoInstall.signatures]\n{keys}\nthreshold = 0\n"
        ));
        assert!(
            error.contains("threshold: expected a whole number from 1 to 65536, found 0"),
            "{error}"
        );
        let error = one_error("[autoInstall.signatures]\nthreshold = 1\n");
        assert!(error.contains("threshold 1 without publicKeys"), "{error}");
        // Written before the keys, it is still compared with them.
        let ok = parse(&format!(
            "[autoInstall.signatures]\nthreshold = 2\n{keys}\n"
        ))
        .unwrap();
        assert_eq!(ok.auto_install.signatures.threshold, 2);
    }
}
