//! `visor prepare` against a fake GitHub on 127.0.0.1 (common/fake_github.rs): the whole
//! auto-install pipeline as an operator runs it — release lookup, download
//! (with redirects, retries and truncation), SHA-256 verification, zip checks, the derived
//! run-config, the version check — and, after every outcome, a home folder with no
//! `.visor-tmp-*` leftover and no half-made version folder.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::common::fake_github::{FakeGithub, Reply};
use crate::common::tls::TestCa;
use crate::common::{self, isolate, Env, Version, SIM, VISOR};

pub(crate) const RELEASE_PATH: &str = "/repos/zeta-protocol/zeta/releases/tags/v2";

/// The default asset name on this machine, as Visor computes it.
pub(crate) fn zip_name() -> String {
    zeta_visor::install::asset_file_name("zeta-{os}-{arch}.zip", "v2").expect("supported arch")
}

/// The raw (not zipped) asset name on this machine for `name = "zeta-{os}-{arch}"`.
fn raw_name() -> String {
    zeta_visor::install::asset_file_name("zeta-{os}-{arch}", "v2").expect("supported arch")
}

/// A binary that is the simulator reporting `version`.
pub(crate) fn binary_script(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\nexec '{SIM}' --sim-version '{version}' \"$@\"\n").into_bytes()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A zip entry for [`zip_of`].
pub(crate) enum Entry<'a> {
    File(&'a str, Vec<u8>),
    /// A file the archive marks 0644, not executable.
    Plain(&'a str, Vec<u8>),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// A deflate zip of the entries, built in memory.
pub(crate) fn zip_of(entries: &[Entry]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    for entry in entries {
        match entry {
            Entry::File(name, data) => {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
            Entry::Plain(name, data) => {
                writer
                    .start_file(*name, options.unix_permissions(0o644))
                    .unwrap();
                writer.write_all(data).unwrap();
            }
            Entry::Dir(name) => writer.add_directory(*name, options).unwrap(),
            Entry::Symlink(name, target) => writer.add_symlink(*name, *target, options).unwrap(),
        }
    }
    writer.finish().unwrap().into_inner()
}

/// How an asset's digest appears in the release JSON.
#[derive(Clone, Copy)]
pub(crate) enum DigestField {
    Correct,
    Wrong,
    Null,
    Absent,
}

/// One asset of the scripted release.
pub(crate) struct AssetSpec {
    name: String,
    data: Vec<u8>,
    content_type: &'static str,
    digest: DigestField,
    /// The URL the release lists; by default the fake's /download/<name>.
    listed_url: Option<String>,
}

impl AssetSpec {
    pub(crate) fn new(name: &str, data: Vec<u8>, content_type: &'static str) -> AssetSpec {
        AssetSpec {
            name: name.to_owned(),
            data,
            content_type,
            digest: DigestField::Correct,
            listed_url: None,
        }
    }
    pub(crate) fn zip(data: Vec<u8>) -> AssetSpec {
        AssetSpec::new(&zip_name(), data, "application/zip")
    }
    pub(crate) fn digest(mut self, digest: DigestField) -> Self {
        self.digest = digest;
        self
    }
    fn listed_at(mut self, url: String) -> Self {
        self.listed_url = Some(url);
        self
    }
}

/// A test's home (with a genesis v1 folder) and fake GitHub.
pub(crate) struct Case {
    pub(crate) env: Env,
    pub(crate) github: FakeGithub,
}

impl Case {
    pub(crate) fn new(name: &str) -> Case {
        Case::with_github(name, FakeGithub::start())
    }

    /// A case whose fake GitHub is `github` (an HTTPS one, say).
    fn with_github(name: &str, github: FakeGithub) -> Case {
        let env = Env::new(name);
        env.add_version(Version::new("genesis", "v1"));
        let case = Case { env, github };
        case.config("");
        case
    }

    /// Writes config.toml: apiUrl at the fake, then `extra` (which may add `[autoInstall]`
    /// keys first, then other tables).
    pub(crate) fn config(&self, extra: &str) {
        self.env.write_config(&format!(
            "[autoInstall]\napiUrl = \"{}\"\n{extra}\n",
            self.github.url()
        ));
    }

    pub(crate) fn home(&self) -> &Path {
        &self.env.home
    }

    pub(crate) fn download_path(name: &str) -> String {
        format!("/download/{name}")
    }

    /// Scripts the release with these assets, each served at /download/<name>.
    pub(crate) fn release(&self, assets: &[AssetSpec]) {
        let json = self.release_json(assets);
        self.github.route(RELEASE_PATH, vec![Reply::json(json)]);
    }

    /// The path of asset number `id`'s API URL, as the release JSON lists it.
    fn asset_api_path(id: usize) -> String {
        format!("/repos/zeta-protocol/zeta/releases/assets/{id}")
    }

    /// Scripts the downloads of these assets and returns the release JSON listing them. Like
    /// GitHub, each asset's API URL (asked for with a token) redirects to its
    /// `browser_download_url`, unless a test scripts it otherwise afterwards.
    fn release_json(&self, assets: &[AssetSpec]) -> String {
        let mut listed = Vec::new();
        for asset in assets {
            let digest = match asset.digest {
                DigestField::Correct => {
                    serde_json::json!(format!("sha256:{}", sha256_hex(&asset.data)))
                }
                DigestField::Wrong => serde_json::json!(format!("sha256:{}", "ab".repeat(32))),
                DigestField::Null | DigestField::Absent => serde_json::Value::Null,
            };
            let url = asset.listed_url.clone().unwrap_or_else(|| {
                format!("{}{}", self.github.url(), Case::download_path(&asset.name))
            });
            let api_path = Case::asset_api_path(listed.len() + 1);
            self.github
                .route(&api_path, vec![Reply::Redirect(url.clone())]);
            let mut json = serde_json::json!({
                "name": asset.name,
                "url": format!("{}{api_path}", self.github.url()),
                "browser_download_url": url,
                "content_type": asset.content_type,
                "size": asset.data.len(),
                "state": "uploaded",
            });
            if !matches!(asset.digest, DigestField::Absent) {
                json["digest"] = digest;
            }
            listed.push(json);
            self.github.route(
                &Case::download_path(&asset.name),
                vec![Reply::Bytes {
                    body: asset.data.clone(),
                    content_type: asset.content_type.to_owned(),
                }],
            );
        }
        serde_json::json!({ "tag_name": "v2", "draft": false, "assets": listed }).to_string()
    }

    /// Runs `visor prepare <tag>`; returns the exit code and stdout + stderr.
    pub(crate) fn prepare(&self, tag: &str, env: &[(&str, &str)]) -> (i32, String) {
        let output = self.prepare_command(tag, env).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// The `visor prepare <tag>` command with a clean environment plus `env`.
    pub(crate) fn prepare_command(&self, tag: &str, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(VISOR);
        command
            .args(["prepare", tag, "--home"])
            .arg(self.home())
            // This machine's own trust store settings must not decide the TLS tests.
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        isolate(&mut command, env);
        command
    }

    /// Asserts a failed install left nothing: no temp folder and no folder for `tag`.
    pub(crate) fn assert_nothing_installed(&self, tag: &str) {
        self.assert_no_leftovers();
        assert!(
            fs::symlink_metadata(self.home().join(tag)).is_err(),
            "a folder for {tag} was left behind"
        );
    }

    pub(crate) fn assert_no_leftovers(&self) {
        for entry in fs::read_dir(self.home()).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".visor-tmp-"),
                "leftover {name:?} in HOME"
            );
        }
    }
}

/// Runs `version --output json` of an installed binary.
pub(crate) fn reported_version(binary: &Path) -> String {
    let output = Command::new(binary)
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    value["version"].as_str().unwrap_or("").to_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn installs_a_zip_verified_by_its_digest_through_a_redirect() {
    let case = Case::new("zipdigest");
    // A second server plays GitHub's object storage: another origin, reached by a redirect.
    let storage = FakeGithub::start();
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    let redirect_path = format!("/releases/download/v2/{}", zip_name());
    case.release(&[
        AssetSpec::new("zeta-darwin-arm64.zip", vec![1, 2, 3], "application/zip"),
        AssetSpec::zip(data.clone()).listed_at(format!("{}{redirect_path}", case.github.url())),
    ]);
    let stored_path = format!("/objects/{}?sig=1", zip_name());
    case.github.route(
        &redirect_path,
        vec![Reply::Redirect(format!("{}{stored_path}", storage.url()))],
    );
    storage.route(&stored_path, vec![Reply::bytes(&data)]);

    let (code, out) = case.prepare("v2", &[("GITHUB_TOKEN", "ghp_secret123")]);
    assert_eq!(code, 0, "{out}");
    let folder = case.home().join("v2");
    assert!(
        out.contains(&format!("{}: ready for v2", folder.display())),
        "{out}"
    );
    assert!(out.contains("installing v2 anyway"), "{out}");
    assert!(out.contains("install: downloaded"), "{out}");
    assert!(out.contains("rate="), "{out}");
    assert!(out.contains("SHA-256 of"), "{out}");
    assert!(
        !out.contains("ghp_secret123"),
        "the token was logged: {out}"
    );

    let binary = folder.join("zeta");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(reported_version(&binary), "v2");
    assert!(
        !folder.join(zip_name()).exists(),
        "the zip was left in the folder"
    );
    let run_config = fs::read_to_string(folder.join("run-config.toml")).unwrap();
    assert!(run_config.starts_with("name = \"v2\""), "{run_config}");
    assert!(run_config.contains("path = \"zeta\""), "{run_config}");
    let genesis = fs::read_to_string(case.home().join("genesis/run-config.toml")).unwrap();
    assert!(
        run_config.contains(&format!("socketPath = \"{}\"", case.env.socket().display())),
        "{run_config}\n{genesis}"
    );

    let api = case.github.requests_to(RELEASE_PATH);
    assert_eq!(api.len(), 1);
    let api = &api[0];
    assert_eq!(api.method, "GET");
    assert_eq!(api.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(api.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(api.header("authorization"), Some("Bearer ghp_secret123"));
    assert!(
        api.header("user-agent")
            .is_some_and(|ua| ua.starts_with("zeta-visor/")),
        "{api:?}"
    );
    let stored = storage.requests_to(&stored_path);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].header("authorization"),
        None,
        "the token went to another origin"
    );
    case.assert_no_leftovers();

    // A second prepare finds the folder ready and fetches nothing.
    let before = case.github.requests().len();
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already ready"), "{out}");
    assert_eq!(case.github.requests().len(), before);
    case.assert_no_leftovers();
}

#[test]
fn installs_a_raw_binary_verified_by_a_checksum_file_with_a_data_node() {
    let case = Case::new("rawsums");
    case.config(
        "checksumAsset = \"SHA256SUMS\"\n[autoInstall.asset]\nname = \"zeta-{os}-{arch}\"\n",
    );
    let dn_home = case.env.dir.join("dn").display().to_string();
    fs::write(
        case.home().join("genesis/run-config.toml"),
        format!(
            "name = \"v1\"\n[zeta]\n  [zeta.binary]\n    path = \"zeta\"\n    args = [\"start\"]\n  [zeta.rpc]\n    socketPath = \"{}\"\n    httpPath = \"/rpc\"\n[data_node]\n  [data_node.binary]\n    path = \"/opt/data-node\"\n    args = [\"node\", \"--home\", \"{dn_home}\"]\n",
            case.env.socket().display()
        ),
    )
    .unwrap();
    let binary = binary_script("v2");
    let sums = format!(
        "{}  zeta-linux-other\n{} *{}\n",
        "0".repeat(64),
        sha256_hex(&binary),
        raw_name()
    );
    case.release(&[
        AssetSpec::new(&raw_name(), binary, "application/octet-stream").digest(DigestField::Null),
        AssetSpec::new("SHA256SUMS", sums.into_bytes(), "text/plain").digest(DigestField::Absent),
    ]);

    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from SHA256SUMS"), "{out}");
    let folder = case.home().join("v2");
    assert_eq!(mode(&folder.join(raw_name())), 0o755);
    let run_config = fs::read_to_string(folder.join("run-config.toml")).unwrap();
    let path_line = format!("path = \"{}\"", raw_name());
    assert_eq!(run_config.matches(&path_line).count(), 2, "{run_config}");
    assert!(
        run_config.contains(&format!(
            "args = [\"datanode\", \"start\", \"--home\", \"{dn_home}\"]"
        )),
        "{run_config}"
    );
    assert!(run_config.contains("args = [\"start\"]"), "{run_config}");
    case.assert_no_leftovers();
}

#[test]
fn a_nested_binary_name_and_extra_files_are_unpacked() {
    let case = Case::new("nested");
    case.config("[autoInstall.asset]\nbinaryName = \"zeta-v2/bin/zeta\"\n");
    let data = zip_of(&[
        Entry::Dir("zeta-v2/"),
        Entry::Dir("zeta-v2/bin/"),
        Entry::File("zeta-v2/bin/zeta", binary_script("v2")),
        Entry::File("zeta-v2/README.md", b"hello".to_vec()),
        Entry::File("run-config.toml", b"name = \"from the zip\"".to_vec()),
    ]);
    case.release(&[AssetSpec::zip(data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    let folder = case.home().join("v2");
    assert_eq!(reported_version(&folder.join("zeta-v2/bin/zeta")), "v2");
    assert_eq!(
        fs::read_to_string(folder.join("zeta-v2/README.md")).unwrap(),
        "hello"
    );
    let run_config = fs::read_to_string(folder.join("run-config.toml")).unwrap();
    assert!(run_config.contains("name = \"v2\""), "{run_config}");
    assert!(
        run_config.contains("path = \"zeta-v2/bin/zeta\""),
        "{run_config}"
    );
    case.assert_no_leftovers();
}

#[test]
fn a_missing_release_is_reported_as_not_found() {
    let case = Case::new("norelease");
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no published release v2 in zeta-protocol/zeta"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}{RELEASE_PATH}", case.github.url())),
        "{out}"
    );
    assert!(out.contains("404"), "{out}");
    assert_eq!(
        case.github.requests_to(RELEASE_PATH).len(),
        1,
        "404 is not retried"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn a_missing_asset_lists_the_assets_there_are() {
    let case = Case::new("noasset");
    case.release(&[
        AssetSpec::new("zeta-darwin-arm64.zip", vec![1], "application/zip"),
        AssetSpec::new("SHA256SUMS", vec![2], "text/plain"),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "has no asset {} (it has assets zeta-darwin-arm64.zip, SHA256SUMS)",
            zip_name()
        )),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn a_rate_limit_names_the_reset_time_and_github_token() {
    let case = Case::new("ratelimit");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    case.github.route(
        RELEASE_PATH,
        vec![Reply::Json {
            status: 403,
            body: r#"{"message":"API rate limit exceeded for 127.0.0.1."}"#.to_owned(),
            headers: vec![
                ("x-ratelimit-remaining".to_owned(), "0".to_owned()),
                ("x-ratelimit-reset".to_owned(), (now + 600).to_string()),
            ],
        }],
    );
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("403 Forbidden: API rate limit exceeded"),
        "{out}"
    );
    assert!(out.contains("rate limit"), "{out}");
    assert!(out.contains("it resets at 20"), "{out}");
    assert!(
        out.contains("(UTC), in 59") || out.contains("(UTC), in 60"),
        "{out}"
    );
    assert!(out.contains("set GITHUB_TOKEN"), "{out}");
    assert_eq!(
        case.github.requests_to(RELEASE_PATH).len(),
        1,
        "403 is not retried"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn server_errors_are_retried_until_the_answer_comes() {
    let case = Case::new("retry");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    // The release answers 500 twice, then its JSON; the download 503 once, then the bytes.
    let json = case.release_json(&[AssetSpec::zip(data.clone())]);
    case.github.route(
        RELEASE_PATH,
        vec![
            Reply::status(500, "Server Error"),
            Reply::status(500, "Server Error"),
            Reply::json(json),
        ],
    );
    case.github.route(
        &format!("/download/{}", zip_name()),
        vec![Reply::status(503, "Unavailable"), Reply::bytes(&data)],
    );
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(case.github.requests_to(RELEASE_PATH).len(), 3);
    assert_eq!(
        case.github
            .requests_to(&format!("/download/{}", zip_name()))
            .len(),
        2
    );
    assert!(out.contains("failed, retrying"), "{out}");
    assert!(out.contains("attempt=1/4"), "{out}");
    case.assert_no_leftovers();
}

#[test]
fn persistent_server_errors_give_up_after_four_attempts() {
    let case = Case::new("giveup");
    case.github
        .route(RELEASE_PATH, vec![Reply::status(502, "Bad Gateway")]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("502 Bad Gateway"), "{out}");
    assert!(out.contains("gave up after 4 attempts"), "{out}");
    assert_eq!(case.github.requests_to(RELEASE_PATH).len(), 4);
    case.assert_nothing_installed("v2");
}

#[test]
fn a_truncated_download_is_retried_and_then_refused() {
    let case = Case::new("truncated");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    let download = format!("/download/{}", zip_name());
    let cut = Reply::Truncated {
        body: data[..data.len() / 2].to_vec(),
        claimed: data.len() as u64,
    };

    // Cut once, then whole: installed.
    case.github
        .route(&download, vec![cut.clone(), Reply::bytes(&data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("truncated"), "{out}");
    assert_eq!(case.github.requests_to(&download).len(), 2);
    case.assert_no_leftovers();

    // Cut every time: refused after four attempts, nothing left behind.
    fs::remove_dir_all(case.home().join("v2")).unwrap();
    case.github.route(&download, vec![cut]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("was truncated after"), "{out}");
    assert!(out.contains("gave up after 4 attempts"), "{out}");
    assert_eq!(case.github.requests_to(&download).len(), 6);
    case.assert_nothing_installed("v2");
}

#[test]
fn a_wrong_digest_is_refused_naming_both_sums() {
    let case = Case::new("baddigest");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone()).digest(DigestField::Wrong)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("SHA-256 mismatch"), "{out}");
    assert!(
        out.contains(&format!("expected {}", "ab".repeat(32))),
        "{out}"
    );
    assert!(out.contains(&format!("got {}", sha256_hex(&data))), "{out}");
    case.assert_nothing_installed("v2");
}

#[test]
fn a_checksum_file_without_the_asset_or_with_another_sum_is_refused() {
    let case = Case::new("badsums");
    case.config("checksumAsset = \"SHA256SUMS\"\n");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    let sums = format!("{}  zeta-linux-other.zip\n", sha256_hex(&data));
    case.release(&[
        AssetSpec::zip(data.clone()).digest(DigestField::Absent),
        AssetSpec::new("SHA256SUMS", sums.into_bytes(), "text/plain"),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "SHA256SUMS has no SHA-256 line for {}",
            zip_name()
        )),
        "{out}"
    );
    assert!(
        case.github
            .requests_to(&format!("/download/{}", zip_name()))
            .is_empty(),
        "the asset was downloaded before its checksum was known"
    );
    case.assert_nothing_installed("v2");

    let sums = format!("{}  {}\n", "cd".repeat(32), zip_name());
    case.release(&[
        AssetSpec::zip(data.clone()).digest(DigestField::Absent),
        AssetSpec::new("SHA256SUMS", sums.into_bytes(), "text/plain"),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("expected {} (from SHA256SUMS)", "cd".repeat(32))),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn no_digest_is_refused_unless_require_checksum_is_off() {
    let case = Case::new("nodigest");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data).digest(DigestField::Null)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot be verified"), "{out}");
    assert!(
        out.contains("requireChecksum = false in [autoInstall]"),
        "{out}"
    );
    assert!(out.contains("set checksumAsset"), "{out}");
    assert!(
        case.github
            .requests_to(&format!("/download/{}", zip_name()))
            .is_empty(),
        "an unverifiable asset was downloaded"
    );
    case.assert_nothing_installed("v2");

    case.config("requireChecksum = false\n");
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("installed unverified"), "{out}");
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");
    case.assert_no_leftovers();
}

#[test]
fn unsafe_or_incomplete_zips_are_refused_whole() {
    let case = Case::new("badzips");
    let outside = case.env.dir.join("escaped");
    let escape = format!("../../{}", outside.file_name().unwrap().to_string_lossy());
    let absolute = format!("{}/abs", outside.display());
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            zip_of(&[
                Entry::File("zeta", binary_script("v2")),
                Entry::File(&escape, b"x".to_vec()),
            ]),
            format!("zip entry {escape:?} has a '..' component"),
        ),
        (
            zip_of(&[
                Entry::File("zeta", binary_script("v2")),
                Entry::File(&absolute, b"x".to_vec()),
            ]),
            "is an absolute path".to_owned(),
        ),
        (
            zip_of(&[
                Entry::File("zeta", binary_script("v2")),
                Entry::Symlink("lib", "/etc"),
            ]),
            "zip entry \"lib\" is a symbolic link".to_owned(),
        ),
        (
            zip_of(&[Entry::Symlink("zeta", "/bin/sh")]),
            "zip entry \"zeta\" is a symbolic link".to_owned(),
        ),
        (
            zip_of(&[Entry::File("bin/zeta", binary_script("v2"))]),
            "the zip has no file zeta (it holds bin/zeta); set binaryName".to_owned(),
        ),
        (
            b"not a zip at all".to_vec(),
            "not a readable zip archive".to_owned(),
        ),
    ];
    for (data, expected) in cases {
        case.release(&[AssetSpec::zip(data)]);
        let (code, out) = case.prepare("v2", &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
        case.assert_nothing_installed("v2");
        assert!(!outside.exists(), "an entry escaped the folder");
        assert!(
            !Path::new(&absolute).exists(),
            "an absolute entry was written"
        );
    }
}

#[test]
fn a_binary_reporting_another_version_is_refused() {
    let case = Case::new("wrongver");
    let data = zip_of(&[Entry::File("zeta", binary_script("v9.9.9"))]);
    case.release(&[AssetSpec::zip(data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the binary reports version v9.9.9, expected v2"),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn a_folder_outside_home_is_refused_before_any_request() {
    let case = Case::new("outside");
    let outside: PathBuf = case.env.dir.join("elsewhere").join("v2");
    case.config(&format!(
        "[upgradeFolders]\n\"v2\" = \"{}\"\n",
        outside.display()
    ));
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outside the home folder"), "{out}");
    assert!(out.contains("create"), "{out}");
    assert!(out.contains("by hand"), "{out}");
    assert!(
        case.github.requests().is_empty(),
        "{:?}",
        case.github.requests()
    );
    assert!(!outside.exists() && !outside.parent().unwrap().exists());
    case.assert_no_leftovers();

    // An absolute path inside HOME is fine, its parent is created.
    let inside = case.home().join("releases").join("second");
    case.config(&format!(
        "[upgradeFolders]\n\"v2\" = \"{}\"\n",
        inside.display()
    ));
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(reported_version(&inside.join("zeta")), "v2");
    case.assert_no_leftovers();
}

#[test]
fn an_existing_folder_that_is_not_ready_is_left_alone() {
    let case = Case::new("inway");
    let folder = case.home().join("v2");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("notes.txt"), "mine").unwrap();
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exists but is not ready for v2"), "{out}");
    assert_eq!(
        fs::read_to_string(folder.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(case.github.requests().is_empty());
    case.assert_no_leftovers();
}

#[test]
fn a_redirect_to_plain_http_elsewhere_is_refused() {
    let case = Case::new("httpredir");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data)]);
    case.github.route(
        &format!("/download/{}", zip_name()),
        vec![Reply::Redirect("http://example.com/zeta.zip".to_owned())],
    );
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refusing to fetch http://example.com/zeta.zip"),
        "{out}"
    );
    assert!(out.contains("not a loopback host"), "{out}");
    case.assert_nothing_installed("v2");
}

#[test]
fn bad_tags_and_bad_config_are_refused_with_their_exit_codes() {
    let case = Case::new("badinput");
    let (code, out) = case.prepare("../v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a safe folder name"), "{out}");
    case.env.write_config("[autoInstall]\nturbo = true\n");
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("autoInstall.turbo: unknown key"), "{out}");
    assert!(case.github.requests().is_empty());
    case.assert_no_leftovers();
}

#[test]
fn a_stalled_download_still_reports_progress_every_five_seconds() {
    let case = Case::new("stalled");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    case.github.route(
        &format!("/download/{}", zip_name()),
        vec![Reply::Stalled {
            body: data.clone(),
            pause: std::time::Duration::from_millis(6500),
        }],
    );
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|line| line.contains(&format!("install: downloading {} bytes=", zip_name())))
        .unwrap_or_else(|| panic!("no progress line during the stall:\n{out}"));
    assert!(
        line.contains(&format!("bytes={} ", data.len() / 2)),
        "{line}"
    );
    assert!(line.contains(&format!("total={} ", data.len())), "{line}");
    assert!(line.contains(" rate=") && line.contains(" eta="), "{line}");
    let slow = out
        .lines()
        .find(|line| line.contains(&format!("install: download of {} is very slow", zip_name())))
        .unwrap_or_else(|| panic!("no very-slow line during the stall:\n{out}"));
    assert!(
        slow.contains(" recent_rate=") && slow.contains(" fails_in="),
        "{slow}"
    );
    assert!(slow.contains("downloadTimeoutSeconds"), "{slow}");
    case.assert_no_leftovers();
}

#[test]
fn a_download_over_its_time_limit_fails_without_retries() {
    let case = Case::new("deadline");
    case.config("downloadTimeoutSeconds = 1\n");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    let download = format!("/download/{}", zip_name());
    case.github.route(
        &download,
        vec![Reply::Stalled {
            body: data.clone(),
            pause: std::time::Duration::from_secs(120),
        }],
    );
    let started = std::time::Instant::now();
    let (code, out) = case.prepare("v2", &[]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "took {took:?}:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "release v2 asset {}: the download from {}{download} did not finish within \
             downloadTimeoutSeconds = 1 and was stopped after {} of {} bytes; raise \
             downloadTimeoutSeconds in [autoInstall] of config.toml",
            zip_name(),
            case.github.url(),
            data.len() / 2,
            data.len()
        )),
        "{out}"
    );
    assert!(!out.contains("retrying"), "{out}");
    assert_eq!(case.github.requests_to(&download).len(), 1);
    case.assert_nothing_installed("v2");
}

#[test]
fn an_interrupted_prepare_removes_its_half_made_folder() {
    let case = Case::new("interrupt");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    case.github.route(
        &format!("/download/{}", zip_name()),
        vec![Reply::Stalled {
            body: data,
            pause: std::time::Duration::from_secs(60),
        }],
    );
    let mut child = case
        .prepare_command("v2", &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("the download to start", common::DEADLINE, || {
        !case
            .github
            .requests_to(&format!("/download/{}", zip_name()))
            .is_empty()
    });
    let temp_exists = || {
        fs::read_dir(case.home()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".visor-tmp-install-v2-")
        })
    };
    assert!(temp_exists(), "no half-made folder while downloading");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = common::wait_for("prepare to stop", common::DEADLINE, || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    case.assert_nothing_installed("v2");
}

#[test]
fn two_installers_at_once_end_with_one_folder_and_no_leftovers() {
    let case = Case::new("twoatonce");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    let download = format!("/download/{}", zip_name());
    // The first download stalls, so the second prepare starts while the first is half-way;
    // the fake serves one connection at a time, so the second then follows right behind.
    case.github.route(
        &download,
        vec![
            Reply::Stalled {
                body: data.clone(),
                pause: std::time::Duration::from_secs(3),
            },
            Reply::bytes(&data),
        ],
    );
    let first = case
        .prepare_command("v2", &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("the first download to start", common::DEADLINE, || {
        !case.github.requests_to(&download).is_empty()
    });
    let (code, second) = case.prepare("v2", &[]);
    let first = first.wait_with_output().unwrap();
    let first_text = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(code, 0, "{second}");
    assert_eq!(first.status.code(), Some(0), "{first_text}");
    assert!(
        first_text.contains("was installed meanwhile")
            || second.contains("was installed meanwhile"),
        "neither saw the other's folder:\n{first_text}\n{second}"
    );
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");
    case.assert_no_leftovers();
}

#[test]
fn a_zip_entry_expanding_more_than_200_to_1_is_refused() {
    let case = Case::new("zipratio");
    let data = zip_of(&[
        Entry::File("zeta", binary_script("v2")),
        Entry::File("data/padding.bin", vec![0u8; 10 << 20]),
    ]);
    assert!(
        data.len() < 100 << 10,
        "the test zip is {} bytes",
        data.len()
    );
    case.release(&[AssetSpec::zip(data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("zip entry \"data/padding.bin\" expands "),
        "{out}"
    );
    assert!(
        out.contains(":1 (10485760 bytes from ")
            && out.contains("more than the 200:1 Visor accepts, as a possible zip bomb"),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn installed_modes_do_not_depend_on_the_umask() {
    use std::os::unix::process::CommandExt;
    let case = Case::new("umask");
    let inside = case.home().join("releases").join("second");
    case.config(&format!(
        "[upgradeFolders]\n\"v2\" = \"{}\"\n",
        inside.display()
    ));
    let data = zip_of(&[
        Entry::File("zeta", binary_script("v2")),
        Entry::Dir("doc/"),
        Entry::Plain("doc/README", b"read me".to_vec()),
        Entry::Plain("lib/deep/data.txt", b"data".to_vec()),
        Entry::File("lib/tool", b"#!/bin/sh\n".to_vec()),
    ]);
    case.release(&[AssetSpec::zip(data)]);
    let mut command = case.prepare_command("v2", &[]);
    // SAFETY: umask(2) is async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{out}");
    for (path, expected) in [
        ("releases", 0o755),
        ("releases/second", 0o755),
        ("releases/second/zeta", 0o755),
        ("releases/second/run-config.toml", 0o644),
        ("releases/second/doc", 0o755),
        ("releases/second/doc/README", 0o644),
        ("releases/second/lib", 0o755),
        ("releases/second/lib/deep", 0o755),
        ("releases/second/lib/deep/data.txt", 0o644),
        ("releases/second/lib/tool", 0o755),
    ] {
        assert_eq!(
            mode(&case.home().join(path)),
            expected,
            "{path} has mode {:o}",
            mode(&case.home().join(path))
        );
    }
    case.assert_no_leftovers();
}

/// Before: a `visor run` starting while `visor prepare` downloaded removed every `.visor-tmp-*`
/// and so killed the download. Now a half-made folder whose owner still runs is kept.
#[test]
fn a_prepare_running_beside_a_starting_visor_keeps_its_download() {
    let mut case = Case::new("beside");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    case.github.route(
        &format!("/download/{}", zip_name()),
        vec![Reply::Stalled {
            body: data,
            pause: std::time::Duration::from_secs(3),
        }],
    );
    let child = case
        .prepare_command("v2", &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until("the download to start", common::DEADLINE, || {
        !case
            .github
            .requests_to(&format!("/download/{}", zip_name()))
            .is_empty()
    });
    case.env.start_visor();
    case.env.wait_log("rpc: core is answering");
    assert!(
        case.env
            .log()
            .contains("keeping a half-made folder of process"),
        "{}",
        case.env.log()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(case.home().join("v2").join("run-config.toml").is_file());
}

// ----- visor prepare --from -----

impl Case {
    /// Runs `visor prepare v2 --from SOURCE [--sha256 HEX]`.
    fn prepare_from(&self, source: &str, sha256: Option<&str>) -> (i32, String) {
        // A token in the environment must never reach a mirror.
        let mut command = self.prepare_command("v2", &[("GITHUB_TOKEN", "secret-token")]);
        command.args(["--from", source]);
        if let Some(hex) = sha256 {
            command.args(["--sha256", hex]);
        }
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// Writes `data` as a file of the test folder, outside HOME.
    pub(crate) fn outside(&self, name: &str, data: &[u8]) -> String {
        let path = self.env.dir.join(name);
        fs::write(&path, data).unwrap();
        path.display().to_string()
    }

    /// The installed v2 folder holds a copy (not a link) of the binary, version-checked.
    pub(crate) fn assert_installed_copy(&self, binary: &str) {
        let folder = self.home().join("v2");
        let meta = fs::symlink_metadata(folder.join(binary)).unwrap();
        assert!(
            meta.is_file(),
            "{binary} is a regular file in the folder, not a link"
        );
        let run = zeta_visor::node::folder_check::check_upgrade_folder("v2", &folder).unwrap();
        assert_eq!(run.name, "v2");
        self.assert_no_leftovers();
    }
}

#[test]
fn prepare_from_a_local_binary_copies_it_into_the_folder() {
    let case = Case::new("fromfile");
    let source = case.outside("zeta-v2", &binary_script("v2"));
    let (code, text) = case.prepare_from(&source, None);
    assert_eq!(code, 0, "{text}");
    case.assert_installed_copy("zeta-v2");
    // Already ready: a no-op.
    let (code, text) = case.prepare_from(&source, None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("already"), "{text}");
}

#[test]
fn prepare_from_a_file_without_sha256_says_what_was_not_checked_and_why() {
    let case = Case::new("fromnosum");
    // requireChecksum is true (the default): it is about downloads, not about this file.
    let source = case.outside("zeta-v2", &binary_script("v2"));
    let (code, text) = case.prepare_from(&source, None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "install: WARNING zeta-v2 is installed unverified (no --sha256 given: a local file \
             is checked only against --sha256, whatever requireChecksum says; give --sha256 HEX \
             to check it)"
        ),
        "{text}"
    );
    assert!(!text.contains("requireChecksum = false"), "{text}");
}

#[test]
fn prepare_from_a_local_zip_unpacks_it_and_checks_a_given_digest() {
    let case = Case::new("fromzip");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    let source = case.outside("release.zip", &data);
    let (code, text) = case.prepare_from(&source, Some(&"0".repeat(64)));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("SHA-256 mismatch"), "{text}");
    case.assert_nothing_installed("v2");
    let (code, text) = case.prepare_from(&source, Some(&sha256_hex(&data)));
    assert_eq!(code, 0, "{text}");
    case.assert_installed_copy("zeta");
}

#[test]
fn prepare_from_a_url_needs_the_right_digest() {
    let case = Case::new("fromurl");
    let data = binary_script("v2");
    case.github.route("/mirror/zeta", vec![Reply::bytes(&data)]);
    let url = format!("{}/mirror/zeta", case.github.url());
    let (code, text) = case.prepare_from(&url, None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--sha256"), "{text}");
    let (code, text) = case.prepare_from(&url, Some(&sha256_hex(b"other")));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("SHA-256 mismatch"), "{text}");
    case.assert_nothing_installed("v2");
    let (code, text) = case.prepare_from(&url, Some(&sha256_hex(&data)));
    assert_eq!(code, 0, "{text}");
    case.assert_installed_copy("zeta");
    // No token went to the mirror.
    assert!(case
        .github
        .requests_to("/mirror/zeta")
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn prepare_from_a_binary_of_another_version_installs_nothing() {
    let case = Case::new("fromwrong");
    let source = case.outside("zeta", &binary_script("v3"));
    let (code, text) = case.prepare_from(&source, None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("reports version v3, expected v2"), "{text}");
    case.assert_nothing_installed("v2");
}

#[test]
fn credentials_in_a_from_url_are_never_shown() {
    let case = Case::new("fromcreds");
    let data = binary_script("v2");
    case.github.route("/mirror/zeta", vec![Reply::bytes(&data)]);
    let host = case.github.url().replacen("http://", "", 1);
    // A redirect whose Location carries credentials of its own.
    case.github.route(
        "/mirror/moved",
        vec![Reply::Redirect(format!(
            "http://other:secret2@{host}/mirror/gone"
        ))],
    );
    let url = format!("http://user:secret@{host}/mirror/zeta");
    let wrong = sha256_hex(b"other");
    for (source, sha256, code) in [
        (url.clone(), wrong.as_str(), 1),
        (format!("http://user:secret@{host}/mirror/moved"), &wrong, 1),
        (url.clone(), &sha256_hex(&data), 0),
    ] {
        let (status, text) = case.prepare_from(&source, Some(sha256));
        assert_eq!(status, code, "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.contains(&format!("http://***@{host}/mirror/")),
            "{text}"
        );
    }
    // The credentials still went to the server, as Basic authorization.
    assert!(case
        .github
        .requests_to("/mirror/zeta")
        .iter()
        .all(|r| r.header("authorization") == Some("Basic dXNlcjpzZWNyZXQ=")));
    case.assert_installed_copy("zeta");
}

// ----- maxDownloadBytes and minFreeBytes -----

#[test]
fn downloads_and_copies_past_max_download_bytes_are_refused_naming_the_key() {
    let case = Case::new("maxbytes");
    let any = sha256_hex(b"any");
    // A mirror that never stops sending, under a 1 MiB limit.
    case.config("maxDownloadBytes = 1048576\n");
    case.github.route("/mirror/endless", vec![Reply::Endless]);
    let url = format!("{}/mirror/endless", case.github.url());
    let (code, text) = case.prepare_from(&url, Some(&any));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("the download from {url} reached ")),
        "{text}"
    );
    assert!(
        text.contains(
            " bytes, more than maxDownloadBytes = 1048576 in [autoInstall] of config.toml"
        ),
        "{text}"
    );
    case.assert_nothing_installed("v2");
    // A local file over the limit is refused before it is copied.
    let big = case.outside("big", &vec![0u8; (1 << 20) + 1]);
    let (code, text) = case.prepare_from(&big, None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("1048577 bytes, more than maxDownloadBytes = 1048576"),
        "{text}"
    );
    case.assert_nothing_installed("v2");
    // A release listing its asset over the limit: refused before any download.
    case.config("maxDownloadBytes = 100\n");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    let (code, text) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "the release lists it at {} bytes, more than maxDownloadBytes = 100",
            data.len()
        )),
        "{text}"
    );
    assert!(case
        .github
        .requests_to(&Case::download_path(&zip_name()))
        .is_empty());
    case.assert_nothing_installed("v2");
    // With the default limit (4 GiB), a Content-Length of 10 GiB is refused up front.
    case.config("");
    case.github.route(
        "/mirror/huge",
        vec![Reply::Truncated {
            body: vec![0; 1024],
            claimed: 10 << 30,
        }],
    );
    let url = format!("{}/mirror/huge", case.github.url());
    let (code, text) = case.prepare_from(&url, Some(&any));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{url} announces (Content-Length) 10737418240 bytes, more than maxDownloadBytes = \
             4294967296"
        )),
        "{text}"
    );
    assert!(!text.contains("retrying"), "{text}");
    case.assert_nothing_installed("v2");
}

#[test]
fn an_install_that_would_leave_less_than_min_free_bytes_stops_naming_the_key() {
    let case = Case::new("minfree");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data.clone())]);
    let source = case.outside("zeta", &binary_script("v2"));
    // More free space than the disk has: refused before anything is written.
    case.config("minFreeBytes = 4611686018427387904\n");
    for (code, text) in [case.prepare("v2", &[]), case.prepare_from(&source, None)] {
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(
                "stopped, it would leave less than minFreeBytes = 4611686018427387904 \
                           bytes free on the file system of"
            ),
            "{text}"
        );
        assert!(
            text.contains("lower minFreeBytes in [autoInstall]"),
            "{text}"
        );
        case.assert_nothing_installed("v2");
    }
    assert!(case
        .github
        .requests_to(&Case::download_path(&zip_name()))
        .is_empty());
    // An endless download with 8 MiB to spare: it stops while writing, on the free space.
    let free = zeta_visor::install::space::free_bytes(case.home()).unwrap();
    case.config(&format!(
        "minFreeBytes = {}\nmaxDownloadBytes = 1073741824\n",
        free - (8 << 20)
    ));
    case.github.route("/mirror/endless", vec![Reply::Endless]);
    let url = format!("{}/mirror/endless", case.github.url());
    let (code, text) = case.prepare_from(&url, Some(&sha256_hex(b"any")));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("stopped, it would leave less than minFreeBytes"),
        "{text}"
    );
    case.assert_nothing_installed("v2");
    // minFreeBytes = 0 turns the check off.
    case.config("minFreeBytes = 0\n");
    let (code, text) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{text}");
}

// ----- HTTPS: the certificates trusted -----

/// A case whose fake GitHub speaks HTTPS with a certificate of its own CA, and a release v2
/// with a good zip on it.
fn https_case(name: &str) -> (Case, TestCa) {
    let ca = TestCa::new(name);
    let case = Case::with_github(name, FakeGithub::start_tls(&ca));
    assert!(case.github.url().starts_with("https://127.0.0.1:"));
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data)]);
    (case, ca)
}

#[test]
fn installs_over_https_from_a_server_whose_ca_is_in_ca_file() {
    let (case, ca) = https_case("tlscafile");
    let ca_file = ca.write_ca(&case.env.dir.join("test-ca.pem"));
    case.config(&format!("caFile = \"{ca_file}\"\n"));
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("trust=\"caFile {ca_file} (1 certificate)\"")),
        "{out}"
    );
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");
    assert_eq!(case.github.requests_to(RELEASE_PATH).len(), 1);
    case.assert_no_leftovers();
}

#[test]
fn installs_over_https_from_a_server_whose_ca_is_in_ssl_cert_file() {
    let (case, ca) = https_case("tlsenv");
    let ca_file = ca.write_ca(&case.env.dir.join("test-ca.pem"));
    let (code, out) = case.prepare("v2", &[("SSL_CERT_FILE", &ca_file)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "trust=\"SSL_CERT_FILE {ca_file} (1 certificate)\""
        )),
        "{out}"
    );
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");
    case.assert_no_leftovers();
}

#[test]
fn an_untrusted_certificate_is_refused_at_once_naming_the_host_and_the_fix() {
    let (case, _ca) = https_case("tlsrefused");
    // Neither caFile nor SSL_CERT_FILE: the system's store (or the built-in roots) does not
    // know the test's CA.
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refusing the TLS certificate of 127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "while fetching {}{RELEASE_PATH}",
            case.github.url()
        )),
        "{out}"
    );
    assert!(
        out.contains("set caFile in [autoInstall] of config.toml, or SSL_CERT_FILE in Visor's environment, to a PEM file holding that CA's certificate"),
        "{out}"
    );
    assert!(
        !out.contains("retrying"),
        "a refused certificate is not retried: {out}"
    );
    assert!(
        case.github.requests().is_empty(),
        "a request reached a server whose certificate was refused"
    );
    case.assert_nothing_installed("v2");

    // Another CA in caFile is refused the same way, naming the file trusted.
    let other = TestCa::new("other");
    let other_file = other.write_ca(&case.env.dir.join("other-ca.pem"));
    case.config(&format!("caFile = \"{other_file}\"\n"));
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "Visor trusts, which are those of caFile {other_file} (1 certificate);"
        )),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn an_unreadable_or_empty_ca_file_fails_before_any_request() {
    let (case, _ca) = https_case("tlsbadfile");
    let missing = case.env.dir.join("missing-ca.pem");
    case.config(&format!("caFile = \"{}\"\n", missing.display()));
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{}: cannot be read (", missing.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "caFile in [autoInstall] of {} names it",
            case.home().join("config.toml").display()
        )),
        "{out}"
    );

    let empty = case.env.dir.join("empty-ca.pem");
    fs::write(&empty, "not a certificate\n").unwrap();
    case.config(&format!("caFile = \"{}\"\n", empty.display()));
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{}: holds no usable certificate", empty.display())),
        "{out}"
    );

    // SSL_CERT_FILE naming a missing file is refused too, not silently replaced.
    case.config("");
    let (code, out) = case.prepare("v2", &[("SSL_CERT_FILE", &missing.display().to_string())]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("SSL_CERT_FILE in Visor's environment names it"),
        "{out}"
    );
    assert!(case.github.requests().is_empty());
    case.assert_nothing_installed("v2");
}

// ----- private repositories: assets through the API with the token -----

#[test]
fn with_a_token_assets_come_through_the_api_and_the_token_stays_on_it() {
    let case = Case::new("private");
    // The object storage GitHub redirects asset downloads to: another origin.
    let storage = FakeGithub::start();
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.config("checksumAsset = \"SHA256SUMS\"\n");
    case.release(&[
        AssetSpec::zip(data.clone()).digest(DigestField::Absent),
        AssetSpec::new("SHA256SUMS", case_sums(&data).into_bytes(), "text/plain"),
    ]);
    // A private repository: the browser URLs serve nothing.
    let zip_browser = Case::download_path(&zip_name());
    let sums_browser = Case::download_path("SHA256SUMS");
    case.github
        .route(&zip_browser, vec![Reply::status(404, "Not Found")]);
    case.github
        .route(&sums_browser, vec![Reply::status(404, "Not Found")]);
    // The API URLs redirect: the zip to the storage, the checksum file to another path of
    // the same server.
    let stored_zip = format!("/objects/{}?X-Amz-Signature=abc", zip_name());
    let stored_sums = "/storage/SHA256SUMS?token=signed".to_owned();
    case.github.route(
        &Case::asset_api_path(1),
        vec![Reply::Redirect(format!("{}{stored_zip}", storage.url()))],
    );
    case.github.route(
        &Case::asset_api_path(2),
        vec![Reply::Redirect(stored_sums.clone())],
    );
    storage.route(&stored_zip, vec![Reply::bytes(&data)]);
    case.github.route(
        &stored_sums,
        vec![Reply::bytes(case_sums(&data).as_bytes())],
    );

    let (code, out) = case.prepare("v2", &[("GITHUB_TOKEN", "ghp_private42")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("ghp_private42"),
        "the token was logged: {out}"
    );
    assert!(
        out.contains(&format!(
            "url={}{}",
            case.github.url(),
            Case::asset_api_path(1)
        )),
        "the download line names the API URL: {out}"
    );
    assert!(
        out.contains(&format!(
            "install: fetching checksums SHA256SUMS url={}{}",
            case.github.url(),
            Case::asset_api_path(2)
        )),
        "{out}"
    );
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");

    for id in [1, 2] {
        let asked = case.github.requests_to(&Case::asset_api_path(id));
        assert_eq!(asked.len(), 1, "asset {id}");
        assert_eq!(
            asked[0].header("authorization"),
            Some("Bearer ghp_private42"),
            "asset {id}"
        );
        assert_eq!(
            asked[0].header("accept"),
            Some("application/octet-stream"),
            "asset {id}"
        );
    }
    let stored = storage.requests_to(&stored_zip);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].header("authorization"),
        None,
        "the token went to the storage"
    );
    let stored = case.github.requests_to(&stored_sums);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].header("authorization"),
        None,
        "the token went along a download's redirect"
    );
    assert!(case.github.requests_to(&zip_browser).is_empty());
    assert!(case.github.requests_to(&sums_browser).is_empty());
    case.assert_no_leftovers();
}

/// The checksum file for `data` under the zip's name.
fn case_sums(data: &[u8]) -> String {
    format!("{}  {}\n", sha256_hex(data), zip_name())
}

#[test]
fn without_a_token_assets_come_from_their_browser_url() {
    let case = Case::new("public");
    let data = zip_of(&[Entry::File("zeta", binary_script("v2"))]);
    case.release(&[AssetSpec::zip(data)]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(case.github.requests_to(&Case::asset_api_path(1)).is_empty());
    let fetched = case.github.requests_to(&Case::download_path(&zip_name()));
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].header("authorization"), None);
}
