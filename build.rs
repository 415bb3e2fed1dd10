//! Stamps the git commit into the binaries as `VISOR_COMMIT` (shown by `visor version`).
//!
//! `VISOR_COMMIT` from the environment wins (release/build.sh sets it); otherwise the commit
//! of the git checkout this crate is the top of; otherwise `unknown` (a source tarball, no
//! git, or a checkout git refuses to read).
//!
//! It also writes Mozilla's root certificates (from the `webpki-root-certs` crate) as one
//! blob of DER certificates, back to back, to `OUT_DIR/mozilla-roots.der`, which
//! `install::trust` includes as bytes: a table of slices would need one load-time relocation
//! per pointer in the position-independent binary, and make those pages resident in every
//! Visor, although only an install reads them. `VISOR_BUILT_IN_ROOTS` is how many there are.
//!
//! For the static musl builds it asks the linker for packed relative relocations (DT_RELR,
//! `-z pack-relative-relocs`, read by musl's start code since musl 1.2.4): the binary stays
//! position-independent (ASLR), and its relocation table, read once at start, shrinks from
//! 24 bytes per pointer to a few bits (for aarch64, `release/aarch64-static-pie-cc` makes the
//! link a static PIE and runs it with the Rust toolchain's lld: Debian's aarch64 GNU ld 2.40
//! ignores the flag). It also hands the linker `release/idle-code.ld`, which puts the
//! functions an idle Visor runs first in the code (`bench/idle_code.sh` writes it;
//! `supervise::memory` says why); GNU ld and lld both read it.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VISOR_COMMIT");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest_dir);
    let commit = match std::env::var("VISOR_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit(dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=VISOR_COMMIT={commit}");
    write_roots();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" && target_env == "musl" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // The code of the idle loop first, in one place (bench/idle_code.sh writes it).
        let script = dir.join("release").join("idle-code.ld");
        println!("cargo:rerun-if-changed={}", script.display());
        if script.is_file() {
            println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
        }
    }
}

/// `OUT_DIR/mozilla-roots.der`: every certificate of `webpki_root_certs`, in its order.
fn write_roots() {
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    let mut blob = Vec::new();
    for cert in roots {
        blob.extend_from_slice(cert.as_ref());
    }
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let path = Path::new(&out).join("mozilla-roots.der");
    // Rewritten only when it changed, so the crate is not rebuilt for nothing.
    if std::fs::read(&path).ok().as_deref() != Some(blob.as_slice()) {
        std::fs::write(&path, &blob)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    println!("cargo:rustc-env=VISOR_BUILT_IN_ROOTS={}", roots.len());
}

/// The commit of HEAD when `dir` is the top of a git checkout, and the files whose change
/// means HEAD may have moved are watched.
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    // A tarball unpacked inside another project's checkout is not that project's commit.
    if !same(Path::new(&top), dir) {
        return None;
    }
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            // Watching a file that does not exist would rerun this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// The trimmed standard output of `git ARGS` run in `dir`, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
