//! A home folder laid out for Vega's visor (`[vega]` sections, only Vega's config keys) runs
//! unchanged, through an upgrade (visor-config(5), DIFFERENCES FROM VEGA VISOR; README
//! "Migrating from Vega's visor").

use crate::common::*;
use std::fs;
use std::path::Path;

const VEGA_CONFIG: &str = r#"
maxNumberOfRestarts = 3
restartsDelaySeconds = 1
stopSignalTimeoutSeconds = 15
stopDelaySeconds = 0
maxNumberOfFirstConnectionRetries = 10
maxNumberOfRestartConnectionRetries = 5

[upgradeFolders]
  "v2" = "v2"

[autoInstall]
  enabled = false
  repositoryOwner = "vegaprotocol"
  repository = "vega"
  [autoInstall.asset]
    name = "vega-linux-amd64.zip"
    binaryName = "vega"
"#;

/// Rewrites a run-config written with `[zeta]` sections to Vega's `[vega]` sections.
fn to_vega(folder: &Path) {
    let file = folder.join("run-config.toml");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, text.replace("[zeta", "[vega")).unwrap();
}

#[test]
fn a_vega_visor_home_runs_unchanged_through_an_upgrade() {
    let mut env = Env::new("vega");
    env.write_config(VEGA_CONFIG);
    to_vega(&env.add_version(Version::new("genesis", "v1").with_data_node()));
    to_vega(&env.add_version(Version::new("v2", "v2").with_data_node()));
    assert!(fs::read_to_string(env.home.join("genesis/run-config.toml"))
        .unwrap()
        .contains("[vega.binary]"));

    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}");

    env.start_visor();
    env.wait_log("rpc: core is answering");
    env.wait_starts("datanode", 1);
    env.control_write("v1", "announce", "v2@500");
    env.control_write("v1", "ready", "");
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(
        cores[1].args(),
        strings(&[
            "start",
            "--home",
            &env.node_home(),
            "--snapshot.load-from-block-height",
            "500"
        ])
    );
    env.wait_starts("datanode", 2);
    assert_eq!(env.current_target(), Path::new("v2"));
    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
}
