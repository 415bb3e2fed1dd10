//! The CA certificates an install trusts for HTTPS: the first of these that applies, used
//! alone:
//!
//! 1. `[autoInstall] caFile`, a PEM file; one that cannot be read or holds no certificate fails
//!    the install, naming it;
//! 2. `SSL_CERT_FILE` and `SSL_CERT_DIR` from the environment, as OpenSSL reads them; an
//!    `SSL_CERT_FILE` that cannot be read or holds no certificate fails the install, and so do
//!    `SSL_CERT_DIR` folders holding none;
//! 3. the system's trust store: the distribution's CA bundle and certificate folders, found
//!    where OpenSSL looks for them (`/etc/ssl/certs/ca-certificates.crt`, ...);
//! 4. the Mozilla roots built into Visor, when the system's trust store is missing or empty.
//!
//! It reads certificate files and the environment once per install and hands the HTTP client a
//! [`Trust`]; it knows nothing of requests, and reads no file that was not named by the
//! operator or by the system's conventions.
//!
//! No TLS state lives between installs: the certificates, the TLS configuration and the
//! crypto provider are built for one install (or `visor prepare`) and dropped with its client.
//! The built-in roots are one static blob of DER certificates written by build.rs
//! ([`BUILT_IN_ROOTS`]), split into certificates only when an install falls back to them; the
//! blob needs no load-time relocation, so an idle Visor carries no root table in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::error::{local, InstallError};

/// Where certificates may come from, in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// `[autoInstall] caFile`.
    pub ca_file: Option<PathBuf>,
    /// `SSL_CERT_FILE`, when set and not empty.
    pub env_file: Option<PathBuf>,
    /// The folders of `SSL_CERT_DIR` (`:`-separated), when set.
    pub env_dirs: Vec<PathBuf>,
    /// The system's CA bundle, if one exists.
    pub system_file: Option<PathBuf>,
    /// The system's certificate folders that exist.
    pub system_dirs: Vec<PathBuf>,
}

impl Places {
    /// `ca_file`, the process's environment, and the system's bundle and folders where OpenSSL
    /// looks for them.
    pub fn from_process(ca_file: Option<&Path>) -> Places {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let env_file = var("SSL_CERT_FILE").map(PathBuf::from);
        let env_dirs: Vec<PathBuf> = var("SSL_CERT_DIR")
            .map(|dirs| {
                std::env::split_paths(&dirs)
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // The probe returns the environment's paths when they exist; the system's are only
        // used when the environment names none, and then the probe finds the system's.
        let (system_file, system_dirs) = if env_file.is_none() && env_dirs.is_empty() {
            let probe = openssl_probe::probe();
            (probe.cert_file, probe.cert_dir)
        } else {
            (None, Vec::new())
        };
        Places {
            ca_file: ca_file.map(Path::to_path_buf),
            env_file,
            env_dirs,
            system_file,
            system_dirs,
        }
    }
}

/// The certificates one install trusts, and where they come from.
#[derive(Debug, Clone)]
pub struct Trust {
    roots: RootCerts,
    /// Where the certificates come from, for messages: `caFile /etc/visor/ca.pem (1
    /// certificate)`.
    pub source: String,
    /// What was skipped or fallen back from on the way, for a warning; empty when all went as
    /// expected.
    pub notes: Vec<String>,
}

impl Trust {
    /// Only the Mozilla roots built into Visor.
    pub fn built_in() -> Trust {
        Trust {
            roots: RootCerts::new_with_certs(&built_in_roots()),
            source: BUILT_IN.to_owned(),
            notes: Vec::new(),
        }
    }

    /// Exactly these certificates.
    fn specific(certs: &[CertificateDer<'static>], source: String) -> Trust {
        let roots = certs
            .iter()
            .map(|cert| Certificate::from_der(cert.as_ref()).to_owned())
            .collect::<Vec<_>>();
        Trust {
            roots: RootCerts::new_with_certs(&roots),
            source,
            notes: Vec::new(),
        }
    }

    /// The TLS configuration of the HTTP client: these certificates and rustls's ring
    /// provider (the client has no default provider: every configuration names its own).
    pub fn tls_config(&self) -> TlsConfig {
        TlsConfig::builder()
            .root_certs(self.roots.clone())
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build()
    }
}

/// How the built-in roots are named in messages.
const BUILT_IN: &str = "Visor's built-in Mozilla roots";

/// Mozilla's root certificates as build.rs wrote them: DER certificates back to back.
static BUILT_IN_ROOTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mozilla-roots.der"));

/// The certificates of [`BUILT_IN_ROOTS`], borrowing from it.
fn built_in_roots() -> Vec<Certificate<'static>> {
    der_sequence_split(BUILT_IN_ROOTS)
        .into_iter()
        .map(Certificate::from_der)
        .collect()
}

/// Splits DER values laid back to back (each a SEQUENCE: tag 0x30, then its length) into
/// their slices; stops at the first byte that does not start a whole SEQUENCE.
fn der_sequence_split(mut blob: &'static [u8]) -> Vec<&'static [u8]> {
    let mut items = Vec::new();
    while let Some(len) = der_sequence_len(blob) {
        let Some((item, rest)) = blob.split_at_checked(len) else {
            break;
        };
        items.push(item);
        blob = rest;
    }
    items
}

/// The whole length (header included) of the DER SEQUENCE `bytes` starts with.
fn der_sequence_len(bytes: &[u8]) -> Option<usize> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (header, body) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        // Long form: the low bits count the length's bytes (at most 4 here).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let body = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (2 + count, body)
    };
    header.checked_add(body)
}

/// The trusted certificates for one install; `config_file` is named in messages about
/// `caFile`.
pub fn load(places: &Places, config_file: &Path) -> Result<Trust, InstallError> {
    if let Some(file) = &places.ca_file {
        let certs = pem_file(file).map_err(|why| {
            local(format!(
                "{}: {why}; caFile in [autoInstall] of {} names it: give a readable PEM file \
                 holding the CA certificates that sign the servers' certificates, or remove \
                 caFile to use the system's trust store",
                file.display(),
                config_file.display()
            ))
        })?;
        let source = format!("caFile {} ({})", file.display(), count(certs.len()));
        return Ok(Trust::specific(&certs, source));
    }
    if places.env_file.is_some() || !places.env_dirs.is_empty() {
        return from_environment(places, config_file);
    }
    Ok(from_system(places))
}

/// `SSL_CERT_FILE` and `SSL_CERT_DIR`, which replace the system's trust store when set.
fn from_environment(places: &Places, config_file: &Path) -> Result<Trust, InstallError> {
    let instead = format!(
        "or unset it to use the system's trust store, or set caFile in [autoInstall] of {}",
        config_file.display()
    );
    let mut certs = Vec::new();
    let mut named = Vec::new();
    if let Some(file) = &places.env_file {
        certs = pem_file(file).map_err(|why| {
            local(format!(
                "{}: {why}; SSL_CERT_FILE in Visor's environment names it: fix it to a readable \
                 PEM file of CA certificates, {instead}",
                file.display()
            ))
        })?;
        named.push(format!("SSL_CERT_FILE {}", file.display()));
    }
    let mut notes = Vec::new();
    if !places.env_dirs.is_empty() {
        let dirs = join_paths(&places.env_dirs);
        let before = certs.len();
        for dir in &places.env_dirs {
            let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
            notes.extend(
                found
                    .errors
                    .iter()
                    .map(|e| format!("SSL_CERT_DIR: skipped: {e}")),
            );
            certs.extend(found.certs);
        }
        if usable(&certs[before..]) == 0 {
            return Err(local(format!(
                "SSL_CERT_DIR={dirs}: no PEM certificate found in its folders{}; fix \
                 SSL_CERT_DIR in Visor's environment, {instead}",
                first_problem(&notes)
            )));
        }
        named.push(format!("SSL_CERT_DIR {dirs}"));
    }
    dedup(&mut certs);
    let source = format!("{} ({})", named.join(" and "), count(certs.len()));
    let mut trust = Trust::specific(&certs, source);
    trust.notes = notes;
    Ok(trust)
}

/// The system's bundle and folders, or the built-in roots when they hold no certificate.
fn from_system(places: &Places) -> Trust {
    let mut certs = Vec::new();
    let mut problems = Vec::new();
    let mut dirs = places.system_dirs.iter();
    let first_dir = dirs.next();
    if places.system_file.is_some() || first_dir.is_some() {
        let found = rustls_native_certs::load_certs_from_paths(
            places.system_file.as_deref(),
            first_dir.map(PathBuf::as_path),
        );
        certs.extend(found.certs);
        problems.extend(found.errors.iter().map(ToString::to_string));
    }
    for dir in dirs {
        let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        certs.extend(found.certs);
        problems.extend(found.errors.iter().map(ToString::to_string));
    }
    let mut looked: Vec<PathBuf> = places.system_file.iter().cloned().collect();
    looked.extend(places.system_dirs.iter().cloned());
    if usable(&certs) == 0 {
        let mut trust = Trust::built_in();
        let looked = if looked.is_empty() {
            "no CA bundle or certificate folder found where OpenSSL looks for them".to_owned()
        } else {
            format!("no CA certificate in {}", join_paths(&looked))
        };
        trust.notes.push(format!(
            "the system's trust store is empty or missing: {looked}{}; using {BUILT_IN}: \
             install the distribution's ca-certificates package, or set caFile in \
             [autoInstall] of config.toml",
            first_problem(&problems)
        ));
        return trust;
    }
    dedup(&mut certs);
    let source = format!(
        "the system's trust store {} ({})",
        join_paths(&looked),
        count(certs.len())
    );
    Trust::specific(&certs, source)
}

/// The certificates of one PEM file, or why it cannot be used (unreadable, malformed PEM, or no
/// certificate that parses).
fn pem_file(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_certs_from_paths(Some(file), None);
    if let Some(error) = found.errors.first() {
        return Err(match &error.kind {
            rustls_native_certs::ErrorKind::Io { inner, .. } => format!("cannot be read ({inner})"),
            rustls_native_certs::ErrorKind::Pem(why) => format!("is not a valid PEM file ({why})"),
            _ => format!("cannot be read ({error})"),
        });
    }
    if usable(&found.certs) == 0 {
        return Err(
            "holds no usable certificate (expected PEM blocks starting with -----BEGIN \
             CERTIFICATE-----)"
                .to_owned(),
        );
    }
    Ok(found.certs)
}

/// How many of `certs` can be trust anchors.
fn usable(certs: &[CertificateDer<'static>]) -> usize {
    RootCertStore::empty()
        .add_parsable_certificates(certs.iter().cloned())
        .0
}

/// Sorts and removes duplicates (a bundle and a folder usually hold the same certificates).
fn dedup(certs: &mut Vec<CertificateDer<'static>>) {
    certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    certs.dedup();
}

/// `1 certificate`, `146 certificates`.
fn count(n: usize) -> String {
    if n == 1 {
        "1 certificate".to_owned()
    } else {
        format!("{n} certificates")
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// ` (first problem)` when there is one, for a message.
fn first_problem(problems: &[String]) -> String {
    problems
        .first()
        .map_or_else(String::new, |problem| format!(" ({problem})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::InstallErrorKind;

    const CONFIG: &str = "/srv/visor/config.toml";

    /// A fresh folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A self-signed CA certificate in PEM.
    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_err(places: &Places) -> String {
        let error = load(places, Path::new(CONFIG)).unwrap_err();
        assert_eq!(error.kind, InstallErrorKind::Local, "{error}");
        error.message
    }

    #[test]
    fn ca_file_is_used_alone_before_the_environment() {
        let dir = scratch("cafile");
        let two = format!("{}{}", ca_pem(), ca_pem());
        let ca = write(&dir, "ca.pem", &format!("comment line\n{two}"));
        let places = Places {
            ca_file: Some(ca.clone()),
            env_file: Some(dir.join("missing.pem")),
            ..Places::default()
        };
        let trust = load(&places, Path::new(CONFIG)).unwrap();
        assert_eq!(
            trust.source,
            format!("caFile {} (2 certificates)", ca.display())
        );
        assert!(trust.notes.is_empty());
        assert!(matches!(trust.roots, RootCerts::Specific(ref certs) if certs.len() == 2));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unusable_ca_file_fails_naming_it_and_the_key() {
        let dir = scratch("badca");
        let missing = dir.join("missing.pem");
        let places = |file: &Path| Places {
            ca_file: Some(file.to_path_buf()),
            ..Places::default()
        };
        let message = load_err(&places(&missing));
        assert!(
            message.starts_with(&format!("{}: cannot be read (", missing.display())),
            "{message}"
        );
        assert!(
            message.contains(&format!("caFile in [autoInstall] of {CONFIG} names it")),
            "{message}"
        );
        let empty = write(&dir, "empty.pem", "no certificate here\n");
        let message = load_err(&places(&empty));
        assert!(
            message.starts_with(&format!("{}: holds no usable certificate", empty.display())),
            "{message}"
        );
        let garbage = write(
            &dir,
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let message = load_err(&places(&garbage));
        assert!(message.contains("holds no usable certificate"), "{message}");
        let message = load_err(&places(&dir));
        assert!(message.contains("cannot be read"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ssl_cert_file_and_dir_replace_the_system_store() {
        let dir = scratch("env");
        let file = write(&dir, "bundle.pem", &ca_pem());
        let certs = dir.join("certs");
        std::fs::create_dir(&certs).unwrap();
        write(&certs, "a.pem", &ca_pem());
        write(&certs, "README", "not a certificate\n");
        let places = Places {
            env_file: Some(file.clone()),
            env_dirs: vec![certs.clone()],
            system_file: Some(PathBuf::from("/nonexistent/system.pem")),
            ..Places::default()
        };
        let trust = load(&places, Path::new(CONFIG)).unwrap();
        assert_eq!(
            trust.source,
            format!(
                "SSL_CERT_FILE {} and SSL_CERT_DIR {} (2 certificates)",
                file.display(),
                certs.display()
            )
        );

        let missing = dir.join("missing.pem");
        let message = load_err(&Places {
            env_file: Some(missing.clone()),
            ..Places::default()
        });
        assert!(
            message.starts_with(&format!("{}: cannot be read", missing.display())),
            "{message}"
        );
        assert!(
            message.contains("SSL_CERT_FILE in Visor's environment names it"),
            "{message}"
        );
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let message = load_err(&Places {
            env_dirs: vec![empty.clone()],
            ..Places::default()
        });
        assert!(
            message.starts_with(&format!(
                "SSL_CERT_DIR={}: no PEM certificate found",
                empty.display()
            )),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_system_store_is_read_and_falls_back_to_the_built_in_roots() {
        let dir = scratch("system");
        let bundle = write(&dir, "ca-certificates.crt", &ca_pem());
        let trust = load(
            &Places {
                system_file: Some(bundle.clone()),
                system_dirs: vec![dir.clone()],
                ..Places::default()
            },
            Path::new(CONFIG),
        )
        .unwrap();
        // The bundle is also in the folder: read once.
        assert_eq!(
            trust.source,
            format!(
                "the system's trust store {}, {} (1 certificate)",
                bundle.display(),
                dir.display()
            )
        );

        let trust = load(&Places::default(), Path::new(CONFIG)).unwrap();
        assert!(
            matches!(trust.roots, RootCerts::Specific(ref certs) if certs.len() == built_in_roots().len())
        );
        assert_eq!(trust.source, "Visor's built-in Mozilla roots");
        assert_eq!(trust.notes.len(), 1);
        assert!(
            trust.notes[0].starts_with("the system's trust store is empty or missing"),
            "{:?}",
            trust.notes
        );
        let empty = write(&dir, "ca-certificates.crt", "");
        let trust = load(
            &Places {
                system_file: Some(empty),
                ..Places::default()
            },
            Path::new(CONFIG),
        )
        .unwrap();
        assert_eq!(trust.source, "Visor's built-in Mozilla roots");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_built_in_roots_are_all_of_mozillas_and_each_is_a_trust_anchor() {
        let expected: usize = env!("VISOR_BUILT_IN_ROOTS").parse().unwrap();
        assert!(expected > 100, "{expected} roots");
        let roots = der_sequence_split(BUILT_IN_ROOTS);
        assert_eq!(roots.len(), expected);
        // Nothing left over: the blob is exactly the certificates.
        assert_eq!(
            roots.iter().map(|r| r.len()).sum::<usize>(),
            BUILT_IN_ROOTS.len()
        );
        let certs: Vec<CertificateDer<'static>> =
            roots.iter().map(|r| CertificateDer::from(*r)).collect();
        assert_eq!(usable(&certs), expected);
        // The roots GitHub's and Let's Encrypt's chains end at are among them.
        for name in [
            "DigiCert Global Root G2",
            "USERTrust ECC Certification Authority",
            "ISRG Root X1",
        ] {
            assert!(
                roots
                    .iter()
                    .any(|r| r.windows(name.len()).any(|w| w == name.as_bytes())),
                "{name} missing"
            );
        }
    }

    #[test]
    fn der_split_stops_at_anything_but_a_whole_sequence() {
        static BLOB: [u8; 11] = [
            0x30, 0x01, 0xaa, 0x30, 0x81, 0x02, 0xbb, 0xcc, 0x30, 0x05, 0x00,
        ];
        assert_eq!(
            der_sequence_split(&BLOB),
            vec![&BLOB[..3], &BLOB[3..8]],
            "the last one is cut short"
        );
        static OTHER: [u8; 3] = [0x31, 0x01, 0x00];
        assert!(der_sequence_split(&OTHER).is_empty());
        static HUGE: [u8; 8] = [0x30, 0x88, 1, 2, 3, 4, 5, 6];
        assert!(der_sequence_split(&HUGE).is_empty());
        assert!(der_sequence_split(&[]).is_empty());
    }

    #[test]
    fn the_certificates_live_only_as_long_as_the_install_holds_them() {
        let trust = Trust::built_in();
        let RootCerts::Specific(certs) = &trust.roots else {
            panic!("built-in roots are not a list of certificates");
        };
        let certs = Arc::downgrade(certs);
        {
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let client = super::super::github::Client::new(
                "https://api.github.com",
                None,
                &trust,
                &[],
                &cancel,
            );
            // The trust and the client's two agents hold them.
            assert_eq!(certs.strong_count(), 3);
            drop(client);
        }
        assert_eq!(certs.strong_count(), 1);
        drop(trust);
        assert!(
            certs.upgrade().is_none(),
            "the certificates outlived the install"
        );
    }
}
