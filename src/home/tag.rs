//! Release tags as folder names. A tag comes from the core's answer, from the operator
//! (`visor prepare`, `visor switch`) or from a key of `[upgradeFolders]`; [`ReleaseTag::parse`]
//! is the only way from such a string to something that may name a folder.

use std::fmt;

/// A release tag that is safe as a folder name: a letter or digit, then at most 127 letters,
/// digits, `.`, `_`, `+` or `-`, so never `.`, `..` or a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseTag(String);

impl ReleaseTag {
    /// Checks `tag`; the error says why it is refused.
    pub fn parse(tag: &str) -> Result<ReleaseTag, String> {
        let bytes = tag.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
            && tag != "."
            && tag != "..";
        if ok {
            Ok(ReleaseTag(tag.to_owned()))
        } else {
            Err(format!(
                "release tag {tag:?} is not a safe folder name (allowed: a letter or digit, then up to 127 of letters, digits, '.', '_', '+', '-'); refusing it"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_before_becoming_paths() {
        for good in [
            "v1.3.0",
            "V2",
            "1",
            "v1.0.0+build-7_rc",
            "V1_2+meta-rc.1",
            "a..b",
        ] {
            assert_eq!(
                ReleaseTag::parse(good).map(|t| t.to_string()),
                Ok(good.to_owned())
            );
        }
        let long = "a".repeat(129);
        for bad in [
            "", ".", "..", "../x", "/abs", "a/b", ".hidden", "-x", "a\0b", &long, "v 1", "v1\n",
            "vé",
        ] {
            let error = ReleaseTag::parse(bad).err().unwrap_or_default();
            assert!(error.contains("not a safe folder name"), "{bad:?}: {error}");
        }
        assert!(ReleaseTag::parse(&"a".repeat(128)).is_ok());
    }
}
