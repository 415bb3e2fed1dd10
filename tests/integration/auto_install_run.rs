//! Auto-install inside `visor run` (visor(1), AUTO-INSTALL): with `prefetch` the release is installed
//! as soon as the core accepts it, so the upgrade at the ready moment finds a ready folder;
//! a failed prefetch is tried once more at the upgrade block; without `prefetch` the install
//! happens only once the core has stopped; with `[autoInstall.signatures]` keys an unsigned
//! release is never installed.

use std::io::{Cursor, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::common::fake_github::{FakeGithub, Reply};
use crate::common::minisign::Signer;
use crate::common::*;

const RELEASE_PATH: &str = "/repos/zeta-protocol/zeta/releases/tags/v2";

/// A zip holding `zeta`: the simulator as version v2, wired to this test's socket and record.
fn release_zip(env: &Env) -> Vec<u8> {
    let script = format!(
        "#!/bin/sh\nexec '{SIM}' --sim-version v2 --socket '{}' --record '{}' --control-dir '{}' \"$@\"\n",
        env.socket().display(),
        env.record_file().display(),
        env.control("v2").display()
    );
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    writer.start_file("zeta", options).unwrap();
    writer.write_all(script.as_bytes()).unwrap();
    writer.finish().unwrap().into_inner()
}

/// Scripts the v2 release on the fake: the release JSON (after `before`, replies given
/// first, e.g. failures) and the asset download; with `signer`, also `ASSET.minisig`.
fn publish(github: &FakeGithub, env: &Env, before: Vec<Reply>, signer: Option<&Signer>) {
    let data = release_zip(env);
    let name = zeta_visor::install::asset_file_name("zeta-{os}-{arch}.zip", "v2").unwrap();
    let digest: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut assets = vec![serde_json::json!({
        "name": name,
        "url": format!("{}/repos/zeta-protocol/zeta/releases/assets/1", github.url()),
        "browser_download_url": format!("{}/download/{name}", github.url()),
        "content_type": "application/zip",
        "size": data.len(),
        "digest": format!("sha256:{digest}"),
    })];
    if let Some(signer) = signer {
        let signature = format!("{name}.minisig");
        assets.push(serde_json::json!({
            "name": signature,
            "browser_download_url": format!("{}/download/{signature}", github.url()),
        }));
        github.route(
            &format!("/download/{signature}"),
            vec![Reply::bytes(signer.sign(&data, "v2").as_bytes())],
        );
    }
    let release = serde_json::json!({ "tag_name": "v2", "assets": assets }).to_string();
    let mut replies = before;
    replies.push(Reply::json(release));
    github.route(RELEASE_PATH, replies);
    github.route(
        &format!("/download/{name}"),
        vec![Reply::Bytes {
            body: data,
            content_type: "application/zip".into(),
        }],
    );
}

fn started(name: &str, github: &FakeGithub, prefetch: bool) -> Env {
    started_with(name, github, prefetch, "")
}

/// [`started`] with `extra` appended to config.toml (after `[autoInstall]`).
fn started_with(name: &str, github: &FakeGithub, prefetch: bool, extra: &str) -> Env {
    let mut env = Env::new(name);
    env.write_config(&quick_config(&format!(
        "[autoInstall]\nenabled = true\nprefetch = {prefetch}\napiUrl = \"{}\"\n{extra}",
        github.url()
    )));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env
}

fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("log lacks {needle:?}:\n{log}"))
}

fn assert_upgraded(env: &Env) {
    let cores = env.wait_starts("core", 2);
    assert_eq!(cores[1].version(), "v2");
    assert_eq!(
        cores[1].args(),
        strings(&[
            "start",
            "--home",
            &env.node_home(),
            "--snapshot.load-from-block-height",
            "321"
        ])
    );
    assert_eq!(env.current_target(), Path::new("v2"));
    let leftovers: Vec<_> = std::fs::read_dir(&env.home)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".visor-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn prefetch_installs_on_acceptance_and_the_upgrade_finds_the_folder_ready() {
    let github = FakeGithub::start();
    let env = started("prefetch", &github, true);
    publish(&github, &env, vec![], None);
    env.control_write("v1", "announce", "v2@321");
    env.wait_log("upgrade: folder for v2 is ready (installed and version checked)");
    // The install happened while v1 was still running.
    assert_eq!(env.starts("core").len(), 1);
    env.control_write("v1", "ready", "");
    assert_upgraded(&env);
    let log = env.log();
    assert!(
        line_of(&log, "installed and version checked") < line_of(&log, "core stopped at block 321"),
        "{log}"
    );
    assert_eq!(github.requests_to(RELEASE_PATH).len(), 1);
}

#[test]
fn a_failed_prefetch_is_tried_again_at_the_upgrade_block() {
    let github = FakeGithub::start();
    let env = started("retry", &github, true);
    publish(&github, &env, vec![Reply::status(404, "Not Found")], None);
    env.control_write("v1", "announce", "v2@321");
    env.wait_log("upgrade: install of v2 failed (attempt 1)");
    env.control_write("v1", "ready", "");
    assert_upgraded(&env);
    assert!(env.log().contains("attempt=2"));
    assert_eq!(github.requests_to(RELEASE_PATH).len(), 2);
}

#[test]
fn without_prefetch_the_install_waits_for_the_upgrade_block() {
    let github = FakeGithub::start();
    let env = started("noprefetch", &github, false);
    publish(&github, &env, vec![], None);
    env.control_write("v1", "announce", "v2@321");
    env.wait_log("auto-install will provide it");
    assert!(github.requests_to(RELEASE_PATH).is_empty());
    env.control_write("v1", "ready", "");
    assert_upgraded(&env);
    let log = env.log();
    assert!(
        line_of(&log, "core stopped at block 321") < line_of(&log, "upgrade: installing v2"),
        "{log}"
    );
}

#[test]
fn with_keys_an_unsigned_release_is_not_installed_until_it_is_signed() {
    let github = FakeGithub::start();
    let signer = Signer::generate();
    let keys = format!(
        "[autoInstall.signatures]\npublicKeys = [\"{}\"]",
        signer.public_key()
    );
    let env = started_with("signedrun", &github, true, &keys);
    publish(&github, &env, vec![], None);
    env.control_write("v1", "announce", "v2@321");
    env.wait_log("upgrade: install of v2 failed (attempt 1)");
    let log = env.log();
    assert!(log.contains("the release has no signature for it"), "{log}");
    assert!(log.contains(&signer.key_id()), "{log}");
    assert!(
        !env.home.join("v2").exists(),
        "an unsigned release was installed"
    );
    // The publisher signs it; at the block the install is tried again and succeeds.
    publish(&github, &env, vec![], Some(&signer));
    env.control_write("v1", "ready", "");
    assert_upgraded(&env);
    assert!(
        env.log().contains(&format!(
            "install: good signature by key {}",
            signer.key_id()
        )),
        "{}",
        env.log()
    );
}
