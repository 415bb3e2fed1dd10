//! Signed releases: with `[autoInstall.signatures]` keys, `visor prepare` installs an asset
//! only when at least `threshold` distinct configured keys signed it, in `ASSET.minisig`,
//! `ASSET.*.minisig`, or `SHA256SUMS.minisig` over a `SHA256SUMS` that lists it; `--from`
//! needs `--signature` then. Keys and signatures are made at test time
//! (common/minisign.rs); the `minisign` CLI, when installed (CI installs it), cross-checks
//! the formats. After every refusal nothing is left in HOME.

use std::path::Path;
use std::process::Command;

use crate::common::minisign::Signer;
use crate::common::Env;
use crate::install::{
    binary_script, reported_version, sha256_hex, zip_name, zip_of, AssetSpec, Case, DigestField,
    Entry,
};

/// `[autoInstall.signatures]` with these keys and threshold.
fn keys(signers: &[&Signer], threshold: usize) -> String {
    let list: Vec<String> = signers
        .iter()
        .map(|s| format!("\"{}\"", s.public_key()))
        .collect();
    format!(
        "[autoInstall.signatures]\npublicKeys = [{}]\nthreshold = {threshold}\n",
        list.join(", ")
    )
}

/// A zip holding a `zeta` that reports v2.
fn release_zip() -> Vec<u8> {
    zip_of(&[Entry::File("zeta", binary_script("v2"))])
}

/// A signature file as a release asset named `name`.
fn signature_asset(name: &str, text: String) -> AssetSpec {
    AssetSpec::new(name, text.into_bytes(), "application/octet-stream").digest(DigestField::Absent)
}

/// `ASSET.<who>.minisig` by `signer` over `data`.
fn asset_signature(who: &str, signer: &Signer, data: &[u8]) -> AssetSpec {
    let name = format!("{}.{who}.minisig", zip_name());
    signature_asset(&name, signer.sign(data, &format!("{who} signed v2")))
}

/// The download path of the release's zip on the fake.
fn zip_path() -> String {
    Case::download_path(&zip_name())
}

fn assert_installed(case: &Case, code: i32, out: &str) {
    assert_eq!(code, 0, "{out}");
    assert_eq!(reported_version(&case.home().join("v2/zeta")), "v2");
    case.assert_no_leftovers();
}

/// Asserts a refusal that names the asset, every key id and the threshold.
fn assert_refused(case: &Case, code: i32, out: &str, key_ids: &[String], threshold: usize) {
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("asset {}: signed by", zip_name())),
        "{out}"
    );
    for id in key_ids {
        assert!(out.contains(id.as_str()), "{id} not named: {out}");
    }
    assert!(
        out.contains(&format!("fewer than threshold = {threshold}")),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

#[test]
fn two_keys_with_threshold_two_install_an_asset_both_signed() {
    let case = Case::new("sig2of2");
    let (alice, bob) = (Signer::generate(), Signer::generate());
    case.config(&keys(&[&alice, &bob], 2));
    let data = release_zip();
    case.release(&[
        AssetSpec::zip(data.clone()),
        asset_signature("alice", &alice, &data),
        signature_asset(
            &format!("{}.minisig", zip_name()),
            bob.sign(&data, "timestamp:1700000000\tfile:zeta.zip\tbob"),
        ),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_installed(&case, code, &out);
    assert!(
        out.contains(&format!(
            "install: good signature by key {} in {}.alice.minisig trusted_comment=\"alice signed \
             v2\"",
            alice.key_id(),
            zip_name()
        )),
        "{out}"
    );
    // The trusted comment's tabs are escaped in the log line.
    assert!(
        out.contains("trusted_comment=\"timestamp:1700000000\\tfile:zeta.zip\\tbob\""),
        "{out}"
    );
    assert!(
        out.contains("is signed by 2 configured key(s), threshold 2"),
        "{out}"
    );
}

#[test]
fn one_signature_of_two_required_is_refused_before_the_download() {
    let case = Case::new("sig1of2");
    let (alice, bob) = (Signer::generate(), Signer::generate());
    case.config(&keys(&[&alice, &bob], 2));
    let data = release_zip();
    case.release(&[
        AssetSpec::zip(data.clone()),
        asset_signature("alice", &alice, &data),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_refused(&case, code, &out, &[alice.key_id()], 2);
    assert!(
        out.contains(&format!(
            "signed by at most 1 configured key(s) ({})",
            alice.key_id()
        )),
        "{out}"
    );
    assert!(!out.contains(&bob.key_id()), "bob signed nothing: {out}");
    assert!(
        case.github.requests_to(&zip_path()).is_empty(),
        "the asset was downloaded although it could not be installed"
    );
}

#[test]
fn a_signature_by_a_key_not_configured_does_not_count() {
    let case = Case::new("sigother");
    let (alice, mallory) = (Signer::generate(), Signer::generate());
    case.config(&keys(&[&alice], 1));
    let data = release_zip();
    case.release(&[
        AssetSpec::zip(data.clone()),
        asset_signature("mallory", &mallory, &data),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_refused(&case, code, &out, &[mallory.key_id()], 1);
    assert!(
        out.contains(&format!(
            "by key {}, which is not in publicKeys",
            mallory.key_id()
        )),
        "{out}"
    );
}

#[test]
fn a_tampered_asset_is_refused_after_its_download() {
    let case = Case::new("sigtamper");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    let data = release_zip();
    // Whoever replaced the asset also replaced its digest: only the signature tells.
    let tampered = zip_of(&[Entry::File("zeta", binary_script("v2").repeat(2))]);
    case.release(&[
        AssetSpec::zip(tampered),
        asset_signature("alice", &alice, &data),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_refused(&case, code, &out, &[alice.key_id()], 1);
    assert!(out.contains("which does not verify"), "{out}");
    assert_eq!(case.github.requests_to(&zip_path()).len(), 1);
}

#[test]
fn a_signed_checksum_file_that_omits_the_asset_is_refused() {
    let case = Case::new("sigsumsomit");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    let data = release_zip();
    let sums = format!("{}  zeta-linux-other.zip\n", sha256_hex(&data));
    case.release(&[
        AssetSpec::zip(data),
        AssetSpec::new("SHA256SUMS", sums.clone().into_bytes(), "text/plain"),
        signature_asset("SHA256SUMS.minisig", alice.sign(sums.as_bytes(), "sums")),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_refused(&case, code, &out, &[alice.key_id()], 1);
    assert!(
        out.contains(&format!(
            "SHA256SUMS.minisig: by key {}, good over SHA256SUMS, which has no line for {}",
            alice.key_id(),
            zip_name()
        )),
        "{out}"
    );
}

#[test]
fn an_asset_signature_and_a_checksum_file_signature_by_two_keys_make_two() {
    let case = Case::new("sigmixed");
    let (alice, bob) = (Signer::generate(), Signer::generate());
    case.config(&keys(&[&alice, &bob], 2));
    let data = release_zip();
    let sums = format!("{}  {}\n", sha256_hex(&data), zip_name());
    // The asset has a digest too: the checksum file is fetched all the same, for its
    // signatures.
    case.release(&[
        AssetSpec::zip(data.clone()),
        asset_signature("alice", &alice, &data),
        AssetSpec::new("SHA256SUMS", sums.clone().into_bytes(), "text/plain"),
        signature_asset(
            "SHA256SUMS.bob.minisig",
            bob.sign(sums.as_bytes(), "bob's sums"),
        ),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_installed(&case, code, &out);
    assert_eq!(case.github.requests_to("/download/SHA256SUMS").len(), 1);
    assert!(
        out.contains(&format!(
            "install: good signature by key {} in SHA256SUMS.bob.minisig",
            bob.key_id()
        )),
        "{out}"
    );
    assert!(
        out.contains("is signed by 2 configured key(s), threshold 2"),
        "{out}"
    );
}

#[test]
fn a_signed_checksum_file_stands_in_for_a_missing_digest_and_must_match() {
    let case = Case::new("sigsumsonly");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    let data = release_zip();
    let sums = format!("{}  {}\n", sha256_hex(b"other bytes"), zip_name());
    case.release(&[
        AssetSpec::zip(data.clone()).digest(DigestField::Absent),
        AssetSpec::new("SHA256SUMS", sums.clone().into_bytes(), "text/plain"),
        signature_asset("SHA256SUMS.minisig", alice.sign(sums.as_bytes(), "sums")),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("SHA-256 mismatch"), "{out}");
    case.assert_nothing_installed("v2");

    let sums = format!("{}  {}\n", sha256_hex(&data), zip_name());
    case.release(&[
        AssetSpec::zip(data).digest(DigestField::Absent),
        AssetSpec::new("SHA256SUMS", sums.clone().into_bytes(), "text/plain"),
        signature_asset("SHA256SUMS.minisig", alice.sign(sums.as_bytes(), "sums")),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_installed(&case, code, &out);
    assert!(out.contains("from SHA256SUMS"), "{out}");
}

#[test]
fn an_unsigned_release_is_refused_and_without_keys_nothing_changes() {
    let case = Case::new("signone");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    case.release(&[AssetSpec::zip(release_zip())]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "asset {0}: the release has no signature for it (looked for {0}.minisig",
            zip_name()
        )),
        "{out}"
    );
    assert!(out.contains("threshold = 1"), "{out}");
    assert!(out.contains(&alice.key_id()), "{out}");
    case.assert_nothing_installed("v2");
    assert!(case.github.requests_to(&zip_path()).is_empty());

    // Without keys the same release installs as before, and no signature file is asked for.
    case.config("");
    let (code, out) = case.prepare("v2", &[]);
    assert_installed(&case, code, &out);
    assert!(!out.contains("signature"), "{out}");
}

#[test]
fn an_oversized_signature_file_is_refused_naming_the_bound() {
    let case = Case::new("sigbig");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    let data = release_zip();
    let huge = format!("{}{}", alice.sign(&data, "x"), " ".repeat(70 << 10));
    case.release(&[
        AssetSpec::zip(data),
        signature_asset(&format!("{}.minisig", zip_name()), huge),
    ]);
    let (code, out) = case.prepare("v2", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("more than the 65536 bytes Visor reads for such a file"),
        "{out}"
    );
    case.assert_nothing_installed("v2");
}

// ----- visor prepare --from --signature -----

/// Runs `visor prepare v2 --from SOURCE` with `--sha256` and `--signature`s.
fn prepare_from(case: &Case, source: &str, sha256: Option<&str>, sigs: &[&str]) -> (i32, String) {
    let mut command = case.prepare_command("v2", &[]);
    command.args(["--from", source]);
    if let Some(hex) = sha256 {
        command.args(["--sha256", hex]);
    }
    for sig in sigs {
        command.args(["--signature", sig]);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn prepare_from_needs_signatures_when_keys_are_configured() {
    let case = Case::new("sigfrom");
    let (alice, bob) = (Signer::generate(), Signer::generate());
    case.config(&keys(&[&alice, &bob], 2));
    let binary = binary_script("v2");
    let source = case.outside("zeta-v2", &binary);
    let by_alice = case.outside("zeta-v2.alice.minisig", alice.sign(&binary, "a").as_bytes());
    let by_bob = case.outside("zeta-v2.bob.minisig", bob.sign(&binary, "b").as_bytes());

    let (code, out) = prepare_from(&case, &source, None, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("requires signatures by threshold = 2 of the keys"),
        "{out}"
    );
    assert!(out.contains("--signature FILE"), "{out}");
    case.assert_nothing_installed("v2");

    let (code, out) = prepare_from(&case, &source, None, &[&by_alice]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fewer than threshold = 2"), "{out}");
    assert!(out.contains(&alice.key_id()), "{out}");
    case.assert_nothing_installed("v2");

    let junk = case.outside("junk.minisig", b"not a signature\n");
    let (code, out) = prepare_from(&case, &source, None, &[&by_alice, &junk]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "--signature {junk}: not a minisign signature file"
        )),
        "{out}"
    );

    // Alice twice is still one key.
    let (code, out) = prepare_from(&case, &source, None, &[&by_alice, &by_alice]);
    assert_eq!(code, 1, "{out}");

    let (code, out) = prepare_from(&case, &source, None, &[&by_alice, &by_bob]);
    assert_eq!(code, 0, "{out}");
    case.assert_installed_copy("zeta-v2");
    assert!(
        out.contains("is signed by 2 configured key(s), threshold 2"),
        "{out}"
    );
    // Signed: no warning that the file is unverified.
    assert!(!out.contains("unverified"), "{out}");
}

#[test]
fn prepare_from_a_url_with_good_signatures_needs_no_sha256() {
    let case = Case::new("sigfromurl");
    let alice = Signer::generate();
    case.config(&keys(&[&alice], 1));
    let binary = binary_script("v2");
    case.github.route("/mirror/zeta", vec![reply(&binary)]);
    let signature = alice.sign(&binary, "mirror");
    case.github
        .route("/mirror/zeta.minisig", vec![reply(signature.as_bytes())]);
    case.github.route(
        "/mirror/other.minisig",
        vec![reply(alice.sign(b"x", "x").as_bytes())],
    );
    let url = format!("{}/mirror/zeta", case.github.url());

    let (code, out) = prepare_from(&case, &url, None, &[&format!("{url}.minisig")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("its signatures are checked"), "{out}");
    case.assert_installed_copy("zeta");

    // A signature of other bytes does not stand in for --sha256.
    let case = Case::new("sigfromurlbad");
    case.config(&keys(&[&alice], 1));
    case.github.route("/mirror/zeta", vec![reply(&binary)]);
    case.github.route(
        "/mirror/other.minisig",
        vec![reply(alice.sign(b"x", "x").as_bytes())],
    );
    let url = format!("{}/mirror/zeta", case.github.url());
    let other = format!("{}/mirror/other.minisig", case.github.url());
    let (code, out) = prepare_from(&case, &url, None, &[&other]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("which does not verify"), "{out}");
    case.assert_nothing_installed("v2");
}

fn reply(data: &[u8]) -> crate::common::fake_github::Reply {
    crate::common::fake_github::Reply::bytes(data)
}

#[test]
fn a_signature_without_keys_is_refused_saying_what_to_configure() {
    let case = Case::new("signokeys");
    let binary = binary_script("v2");
    let source = case.outside("zeta-v2", &binary);
    let signature = case.outside(
        "zeta-v2.minisig",
        Signer::generate().sign(&binary, "x").as_bytes(),
    );
    let (code, out) = prepare_from(&case, &source, None, &[&signature]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "--signature {signature}: there is no public key to check it with; add the minisign \
             public keys of the release's signers to publicKeys in [autoInstall.signatures] of"
        )),
        "{out}"
    );
    case.assert_nothing_installed("v2");
    // Without it, the file installs as before.
    let (code, out) = prepare_from(&case, &source, None, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn check_says_once_that_releases_are_not_signature_checked() {
    let env = Env::new("sigcheck");
    env.add_version(crate::common::Version::new("genesis", "v1"));
    env.write_config("");
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "", "standard output is for problems");
    assert_eq!(
        stderr.matches("releases are not signature-checked").count(),
        1,
        "{stderr}"
    );
    env.write_config(&keys(&[&Signer::generate()], 1));
    let (code, stdout, stderr) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("signature"), "{stderr}");
}

/// The `minisign` program, when installed.
fn minisign() -> Option<&'static str> {
    let found = Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("minisign is not installed: the cross-check with it is skipped");
    }
    found.then_some("minisign")
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn keys_and_signatures_of_the_minisign_program_work_and_its_checks_agree() {
    let Some(minisign) = minisign() else {
        return;
    };
    let case = Case::new("sigcli");
    let dir = case.env.dir.clone();
    let (public, secret) = (dir.join("cli.pub"), dir.join("cli.key"));
    run(Command::new(minisign)
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    let pub_text = std::fs::read_to_string(&public).unwrap();
    let mut lines = pub_text.lines();
    let id = lines.next().unwrap().rsplit(' ').next().unwrap().to_owned();
    let key = lines.next().unwrap().to_owned();
    case.config(&format!(
        "[autoInstall.signatures]\npublicKeys = [\"{key}\"]\n"
    ));
    let binary = binary_script("v2");
    let source = case.outside("zeta-v2", &binary);
    run(Command::new(minisign)
        .args(["-S", "-s"])
        .arg(&secret)
        .args(["-t", "signed by the minisign program", "-m", &source]));
    let (code, out) = prepare_from(&case, &source, None, &[&format!("{source}.minisig")]);
    assert_eq!(code, 0, "{out}");
    // The key id as minisign prints it in the .pub file's comment.
    assert!(
        out.contains(&format!("good signature by key {id} in")),
        "{out}"
    );
    assert!(out.contains("signed by the minisign program"), "{out}");

    // And minisign accepts what the test signer makes, so the tests above speak minisign.
    let signer = Signer::generate();
    let data = dir.join("data");
    std::fs::write(&data, b"some data").unwrap();
    std::fs::write(
        dir.join("data.minisig"),
        signer.sign(b"some data", "from the test signer"),
    )
    .unwrap();
    let verified = run(Command::new(minisign)
        .args(["-V", "-P", &signer.public_key(), "-m"])
        .arg(&data));
    assert!(verified.contains("from the test signer"), "{verified}");
    std::fs::write(
        dir.join("data.minisig"),
        signer.sign_legacy(b"some data", "legacy"),
    )
    .unwrap();
    run(Command::new(minisign)
        .args(["-V", "-P", &signer.public_key(), "-m"])
        .arg(Path::new(&data)));
}
