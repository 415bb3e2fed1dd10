//! The version guard of `visor switch TAG`: a manual move may only go to a higher patch of the
//! running release's major.minor, since protocol changes happen only at an agreed upgrade
//! block and a node that moves outside it forks itself off the network.
//!
//! "The running release" is the version `current`'s core binary reports (`version --output
//! json`, with the folder check's time limit), whether or not a Visor runs. The guard runs
//! before the running Visor is asked and before the lock is taken, so a refusal changes
//! nothing; `--force` skips it. The rule itself ([`ReleaseVersion`], [`judge`]) is pure and
//! tested here; [`guard`] reads `current` and runs its core.

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::home::Home;
use crate::node::folder_check::{binary_version, load_startable};
use crate::ops::log::escape_controls;

/// A release version: `vMAJOR.MINOR.PATCH`, optionally followed by `-PRERELEASE` and
/// `+BUILD`, as Semantic Versioning 2.0.0 writes them after a lowercase `v`. The numbers are
/// decimal without leading zeros; the pre-release and build are dot-separated identifiers of
/// ASCII letters, digits and `-`, and a numeric pre-release identifier has no leading zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The pre-release identifiers; empty for a release.
    pre: Vec<Identifier>,
}

/// One pre-release identifier: numeric ones rank below alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Numeric(u64),
    Alphanumeric(String),
}

/// The form [`ReleaseVersion::parse`] accepts, for messages.
pub const VERSION_FORM: &str = "vMAJOR.MINOR.PATCH, optionally with -PRERELEASE and +BUILD";

impl ReleaseVersion {
    /// Parses `text`; `None` when it is not a release version.
    pub fn parse(text: &str) -> Option<ReleaseVersion> {
        let rest = text.strip_prefix('v')?;
        let (rest, build) = match rest.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (rest, None),
        };
        if let Some(build) = build {
            if !build.split('.').all(is_identifier) {
                return None;
            }
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let mut numbers = core.split('.').map(number);
        let (major, minor, patch) = (numbers.next()??, numbers.next()??, numbers.next()??);
        if numbers.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if !is_identifier(id) {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        number(id).map(Identifier::Numeric)
                    } else {
                        Some(Identifier::Alphanumeric(id.to_owned()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(ReleaseVersion {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// Semantic Versioning's precedence: the numbers, then a pre-release below its release,
    /// then the pre-release identifiers one by one (a shorter list first when all are equal).
    /// The build is ignored.
    pub fn precedence(&self, other: &ReleaseVersion) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A non-empty run of ASCII letters, digits and `-`.
fn is_identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A decimal number without a leading zero (`0` itself is fine) that fits in 64 bits.
fn number(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Why a move is refused, in words for the operator; the caller adds what to do.
const WHY: &str = "protocol changes happen only at an agreed upgrade block, and a node that \
                   moves outside it forks itself off the network";

/// The guard's decision for a move from `running` (what `current`'s core reports) to `tag`:
/// `Ok` for a higher version of the same major.minor, else why not. A pre-release ranks below
/// its release, so `v1.2.4-rc.1` to `v1.2.4` is a move up and `v1.2.4` to `v1.2.4-rc.1` a
/// downgrade. The texts are raw: the caller escapes them for a terminal.
pub fn judge(running: &str, tag: &str) -> Result<(), String> {
    let Some(to) = ReleaseVersion::parse(tag) else {
        return Err(format!(
            "{tag} is not a release version ({VERSION_FORM}), so it cannot be told whether \
             moving to it from the running {running} changes the protocol; {WHY}"
        ));
    };
    let Some(from) = ReleaseVersion::parse(running) else {
        return Err(format!(
            "the running release reports version {running:?}, which is not a release version \
             ({VERSION_FORM}), so it cannot be told whether moving to {tag} changes the \
             protocol; {WHY}"
        ));
    };
    if (from.major, from.minor) != (to.major, to.minor) {
        let what = if from.major != to.major {
            "major"
        } else {
            "minor"
        };
        return Err(format!(
            "{tag} has another {what} version than the running {running}; a switch only \
             moves to a higher patch of v{}.{}: {WHY}; Visor moves to {tag} by itself at the \
             upgrade block the network agrees on",
            from.major, from.minor
        ));
    }
    match to.precedence(&from) {
        Ordering::Greater => Ok(()),
        Ordering::Equal => Err(format!(
            "{tag} is the version current already runs ({running}); there is nothing \
             to switch to"
        )),
        Ordering::Less => Err(format!(
            "{tag} is older than the running {running}: a downgrade; a switch only moves \
             to a higher patch of v{}.{} (a node's data written by a newer release may not be \
             readable by an older one, and {WHY})",
            from.major, from.minor
        )),
    }
}

/// What the operator can do about a refusal.
const OVERRIDE: &str = "nothing was changed; to switch anyway, pass --force";

/// The guard at the start of `visor switch`: `Ok` to go on, or the exit status after the
/// refusal was printed. With `force` it only says that it was skipped.
pub fn guard(root: &Path, tag: &str, force: bool) -> Result<(), i32> {
    if force {
        super::out(&format!(
            "--force: the version guard is skipped; {} is not compared with the running release",
            escape_controls(tag)
        ));
        return Ok(());
    }
    let running = running_release(root).map_err(|(code, problem)| {
        super::err(&format!(
            "refused: cannot tell the running release to compare {} with: {}; nothing was \
             changed; fix that, or pass --force to switch anyway",
            escape_controls(tag),
            escape_controls(&problem)
        ));
        code
    })?;
    judge(&running, tag).map_err(|why| {
        super::err(&format!("refused: {}; {OVERRIDE}", escape_controls(&why)));
        EXIT_FAILURE
    })
}

/// The version `current`'s core binary reports (`genesis`'s while `current` is missing, as
/// `run` would start it), or the exit status and the problem: [`EXIT_CONFIG`] when `current`
/// or its run-config cannot be used, [`EXIT_FAILURE`] when the binary does not say.
fn running_release(root: &Path) -> Result<String, (i32, String)> {
    let home = Home::new(root.to_path_buf());
    let (folder, _) = home
        .current_folder()
        .map_err(|problem| (EXIT_CONFIG, problem))?;
    let run = load_startable(&folder).map_err(|problems| (EXIT_CONFIG, problems.join("; ")))?;
    binary_version(&run.core.path).map_err(|problem| (EXIT_FAILURE, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ReleaseVersion {
        ReleaseVersion::parse(text).unwrap_or_else(|| panic!("{text:?} should parse"))
    }

    #[test]
    fn release_versions_are_v_major_minor_patch_with_optional_suffixes() {
        assert_eq!(
            (v("v1.2.3").major, v("v1.2.3").minor, v("v1.2.3").patch),
            (1, 2, 3)
        );
        for good in [
            "v0.0.0",
            "v10.20.30",
            "v1.2.3-rc.1",
            "v1.2.3-alpha-beta.0.x7",
            "v1.2.3+build.5",
            "v1.2.3-rc.1+0007.sha-abc",
            "v18446744073709551615.0.0",
        ] {
            assert!(ReleaseVersion::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "1.2.3",
            "V1.2.3",
            "v1",
            "v1.2",
            "v1.2.3.4",
            "v01.2.3",
            "v1.02.3",
            "v1.2.03",
            "v1.2.3-",
            "v1.2.3-rc..1",
            "v1.2.3-01",
            "v1.2.3+",
            "v1.2.3+a..b",
            "v1.2.3+a+b",
            "v1.2.3-rc_1",
            "v1.2.-3",
            "v+1.2.3",
            "v1.2.3 ",
            "v1.2.3\n",
            "v18446744073709551616.0.0",
            "genesis",
            "v1.2.x",
        ] {
            assert!(ReleaseVersion::parse(bad).is_none(), "{bad:?}");
        }
        assert!(!v("v1.2.3-rc.1").pre.is_empty());
        assert!(v("v1.2.3+rc.1").pre.is_empty());
        assert_eq!(v("v1.2.3-rc.1+b").to_string(), "v1.2.3");
    }

    #[test]
    fn precedence_follows_semantic_versioning() {
        // The example chain of Semantic Versioning 2.0.0, section 11, lowest first.
        let chain = [
            "v1.0.0-alpha",
            "v1.0.0-alpha.1",
            "v1.0.0-alpha.beta",
            "v1.0.0-beta",
            "v1.0.0-beta.2",
            "v1.0.0-beta.11",
            "v1.0.0-rc.1",
            "v1.0.0",
            "v1.0.1",
            "v1.1.0",
            "v2.0.0",
            "v10.0.0",
        ];
        for (i, low) in chain.iter().enumerate() {
            for high in &chain[i + 1..] {
                assert_eq!(
                    v(low).precedence(&v(high)),
                    Ordering::Less,
                    "{low} < {high}"
                );
                assert_eq!(v(high).precedence(&v(low)), Ordering::Greater);
            }
        }
        assert_eq!(v("v1.2.3+a").precedence(&v("v1.2.3+b")), Ordering::Equal);
    }

    #[test]
    fn only_a_higher_patch_of_the_same_minor_is_allowed() {
        for (running, tag) in [
            ("v1.2.3", "v1.2.4"),
            ("v1.2.3", "v1.2.10"),
            ("v0.73.4", "v0.73.5"),
            ("v1.2.3", "v1.2.4-rc.1"),
            ("v1.2.4-rc.1", "v1.2.4"),
            ("v1.2.4-rc.1", "v1.2.4-rc.2"),
            ("v1.2.3+linux", "v1.2.4+linux"),
        ] {
            assert_eq!(judge(running, tag), Ok(()), "{running} -> {tag}");
        }
        let refused = |running: &str, tag: &str| {
            judge(running, tag).expect_err(&format!("{running} -> {tag} should be refused"))
        };
        let minor = refused("v1.2.3", "v1.3.0");
        assert!(minor.contains("another minor version"), "{minor}");
        assert!(minor.contains("agreed upgrade block"), "{minor}");
        assert!(minor.contains("forks itself off the network"), "{minor}");
        assert!(refused("v1.2.3", "v2.2.4").contains("another major version"));
        assert!(refused("v1.2.3", "v1.1.9").contains("another minor version"));
        for (running, tag) in [
            ("v1.2.4", "v1.2.3"),
            ("v1.2.4", "v1.2.4-rc.1"),
            ("v1.2.4-rc.2", "v1.2.4-rc.1"),
        ] {
            let down = refused(running, tag);
            assert!(down.contains("a downgrade"), "{running} -> {tag}: {down}");
        }
        for (running, tag) in [("v1.2.4", "v1.2.4"), ("v1.2.4+a", "v1.2.4+b")] {
            let same = refused(running, tag);
            assert!(same.contains("already runs"), "{same}");
        }
        let not_tag = refused("v1.2.3", "latest");
        assert!(
            not_tag.starts_with("latest is not a release version"),
            "{not_tag}"
        );
        assert!(not_tag.contains(VERSION_FORM), "{not_tag}");
        let not_running = refused("dev\u{1b}[31m", "v1.2.4");
        assert!(
            not_running.contains("reports version \"dev\\u{1b}[31m\""),
            "{not_running}"
        );
    }
}
