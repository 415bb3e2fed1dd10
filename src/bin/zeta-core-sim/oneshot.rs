//! The one-shot subcommands, answered like the real binaries: `version [--output json]` and
//! `[datanode] network-history latest-history-segment`.

use std::io::{self, Write};
use std::process;
use std::thread;

use crate::cli::Options;
use crate::go_encode::go_json_string;

/// `version [--output json]`.
pub(crate) fn run_version(opts: &Options, json: bool) -> ! {
    thread::sleep(opts.version_delay);
    let text = if json {
        format!(
            "{{\"version\":{},\"hash\":\"sim\"}}\n",
            go_json_string(&opts.sim_version)
        )
    } else {
        format!("Zeta CLI {} (sim)\n", opts.sim_version)
    };
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    process::exit(0);
}

/// The output of `network-history latest-history-segment --output json`.
fn segment_json(height: u64) -> String {
    let from = if height > 999 { height - 999 } else { 1 };
    format!(
        "{{\"LatestSegment\":{{\"from_height\":{from},\"to_height\":{height},\"history_segment_id\":\"QmSimSegment{height}sim\",\"previous_history_segment_id\":\"\",\"database_version\":1,\"chain_id\":\"sim-chain\"}}}}\n"
    )
}

/// `[datanode] network-history latest-history-segment`.
pub(crate) fn run_segment(opts: &Options) -> ! {
    if opts.no_segments {
        println!("{{\"error\":\"no history segments found\"}}");
        eprintln!("no history segments found");
        process::exit(1);
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(segment_json(opts.segment_height).as_bytes())
        .and_then(|()| stdout.flush());
    process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn segments() {
        let parsed: Value = serde_json::from_str(&segment_json(120)).expect("JSON");
        assert_eq!(parsed["LatestSegment"]["from_height"], 1);
        assert_eq!(parsed["LatestSegment"]["to_height"], 120);
        let parsed: Value = serde_json::from_str(&segment_json(5000)).expect("JSON");
        assert_eq!(parsed["LatestSegment"]["from_height"], 4001);
    }
}
