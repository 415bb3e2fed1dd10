//! The command lines Visor builds for the node binaries, and the parsing of what those
//! binaries print for `version --output json` and `network-history latest-history-segment`.
//!
//! Pure functions only: nothing here runs a process.

/// The flag that makes the core load a snapshot at a block height: added at the first start
/// after an upgrade, and at a restart when a data node names its latest history segment.
pub const SNAPSHOT_FLAG: &str = "--snapshot.load-from-block-height";

/// Appends `flag value` to `args` unless the operator's args already hold the flag (as
/// `--flag value` or `--flag=value`); then the args stay as they are and the second value is
/// the operator's value, returned so the caller can log a warning.
pub fn with_flag(args: &[String], flag: &str, value: &str) -> (Vec<String>, Option<String>) {
    let prefix = format!("{flag}=");
    for (i, arg) in args.iter().enumerate() {
        if arg == flag {
            let existing = args.get(i + 1).cloned().unwrap_or_default();
            return (args.to_vec(), Some(existing));
        }
        if let Some(existing) = arg.strip_prefix(&prefix) {
            return (args.to_vec(), Some(existing.to_string()));
        }
    }
    let mut out = args.to_vec();
    out.push(flag.to_string());
    out.push(value.to_string());
    (out, None)
}

/// `[datanode] network-history latest-history-segment --output json [--home X]`, where
/// `datanode` is included when the data node's args contain it and `--home X` is copied from
/// its args: the data node's answer to where its history ends.
pub fn latest_segment_args(data_node_args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if data_node_args.iter().any(|a| a == "datanode") {
        out.push("datanode".to_string());
    }
    for word in [
        "network-history",
        "latest-history-segment",
        "--output",
        "json",
    ] {
        out.push(word.to_string());
    }
    for (i, arg) in data_node_args.iter().enumerate() {
        if arg == "--home" {
            if let Some(value) = data_node_args.get(i + 1) {
                out.push("--home".to_string());
                out.push(value.clone());
            }
            break;
        }
        if arg.starts_with("--home=") {
            out.push(arg.clone());
            break;
        }
    }
    out
}

/// Reads `LatestSegment.to_height` from the data node's answer. `Ok(None)` when the output
/// says `no history segments found` (the node has none yet; start without the flag).
pub fn parse_latest_segment(stdout: &str, stderr: &str) -> Result<Option<u64>, String> {
    const NONE_FOUND: &str = "no history segments found";
    if stdout.contains(NONE_FOUND) || stderr.contains(NONE_FOUND) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("output is not JSON ({e}): {}", excerpt(stdout, stderr)))?;
    value
        .get("LatestSegment")
        .and_then(|s| s.get("to_height"))
        .and_then(|h| {
            h.as_u64()
                .or_else(|| h.as_str().and_then(|s| s.parse().ok()))
        })
        .map(Some)
        .ok_or_else(|| {
            format!(
                "no LatestSegment.to_height in output: {}",
                excerpt(stdout, stderr)
            )
        })
}

/// Reads `version` from `<binary> version --output json`.
pub fn parse_version(stdout: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("output is not JSON ({e}): {}", excerpt(stdout, "")))?;
    value
        .get("version")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no \"version\" string in output: {}", excerpt(stdout, "")))
}

fn excerpt(stdout: &str, stderr: &str) -> String {
    let text = if stdout.trim().is_empty() {
        stderr
    } else {
        stdout
    };
    let text = text.trim();
    let cut: String = text.chars().take(200).collect();
    if cut.is_empty() {
        "(empty)".to_string()
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn flag_is_added_once() {
        let (args, existing) = with_flag(&strings(&["start"]), SNAPSHOT_FLAG, "120");
        assert_eq!(args, strings(&["start", SNAPSHOT_FLAG, "120"]));
        assert_eq!(existing, None);

        let given = strings(&["start", SNAPSHOT_FLAG, "7"]);
        assert_eq!(
            with_flag(&given, SNAPSHOT_FLAG, "120"),
            (given.clone(), Some("7".into()))
        );

        let given = strings(&["start", "--snapshot.load-from-block-height=9"]);
        assert_eq!(
            with_flag(&given, SNAPSHOT_FLAG, "120"),
            (given.clone(), Some("9".into()))
        );
    }

    #[test]
    fn segment_query_copies_datanode_and_home() {
        assert_eq!(
            latest_segment_args(&strings(&["datanode", "start", "--home", "/d"])),
            strings(&[
                "datanode",
                "network-history",
                "latest-history-segment",
                "--output",
                "json",
                "--home",
                "/d"
            ])
        );
        assert_eq!(
            latest_segment_args(&strings(&["node", "--home=/e"])),
            strings(&[
                "network-history",
                "latest-history-segment",
                "--output",
                "json",
                "--home=/e"
            ])
        );
    }

    #[test]
    fn segment_output_is_parsed() {
        let out =
            r#"{"LatestSegment":{"from_height":1,"to_height":4000,"history_segment_id":"x"}}"#;
        assert_eq!(parse_latest_segment(out, ""), Ok(Some(4000)));
        assert_eq!(
            parse_latest_segment("", "Error: no history segments found"),
            Ok(None)
        );
        assert!(parse_latest_segment("garbage", "").is_err());
        assert!(parse_latest_segment("{}", "").is_err());
    }

    #[test]
    fn version_output_is_parsed() {
        assert_eq!(
            parse_version("{\"version\":\"v1.3.0\",\"hash\":\"x\"}\n"),
            Ok("v1.3.0".into())
        );
        assert!(parse_version("v1.3.0").is_err());
        assert!(parse_version("{\"version\":3}").is_err());
    }
}
