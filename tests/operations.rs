//! Operations: JSON logs, the systemd notify protocol and the metrics file, observed from
//! outside while Visor runs the simulator through a restart and an upgrade (SPEC section 8).

mod common;

use common::*;
use std::path::Path;

#[test]
fn json_logs_are_one_object_per_line_through_an_upgrade() {
    let mut env = Env::new("jsonlog");
    env.write_config(&quick_config("logFormat = \"json\"\nlogLevel = \"debug\""));
    env.add_version(Version::new("genesis", "v1"));
    env.add_version(Version::new("v2", "v2"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.control_write("v1", "announce", "v2@40");
    env.control_write("v1", "ready", "");
    env.wait_starts("core", 2);
    env.wait_log("v2 is answering");
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let log = env.log();
    let mut lines = 0;
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(
            ["debug", "info", "warn", "error"].contains(&value["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(!value["msg"].as_str().unwrap().is_empty(), "{line}");
        lines += 1;
    }
    assert!(lines > 10, "{log}");
    assert!(log.contains("\"msg\":\"upgrade: switching to v2\""));
    assert!(log.contains(&format!(
        "\"folder\":\"{}\"",
        Path::new(&env.home).join("v2").display()
    )));
}
