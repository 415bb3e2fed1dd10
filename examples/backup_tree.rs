//! Runs Visor's backup engine on any folders, for the bench (bench/backup.sh) and for trying
//! it by hand:
//!
//! ```text
//! cargo run --release --example backup_tree -- SRC... --folder DEST
//!     [--keep N] [--timeout SECONDS] [--from TAG] [--to TAG] [--height H] [--check]
//! ```
//!
//! Each SRC (absolute) is backed up to `DEST/FROM-to-TO-...` at its absolute location, as
//! `visor run` will before an upgrade (`--height`) or a switch (no `--height`). `--check`
//! first prints what `validate` says (problems, clones or copies). Progress goes to stderr
//! every 5 s; the result is one line on stdout. SIGINT or SIGTERM cancels (the half-made
//! folder is removed). Exit 0 on success, 1 on failure, 2 on a usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use zeta_visor::backup::{self, Progress, Reason, Report, Request};
use zeta_visor::config::backup::Backup;
use zeta_visor::home::{Home, ReleaseTag};

const USAGE: &str = "usage: backup_tree SRC... --folder DEST [--keep N] [--timeout SECONDS] \
                     [--from TAG] [--to TAG] [--height H] [--check]";

/// Progress lines on stderr.
struct ToStderr;

impl Progress for ToStderr {
    fn report(&mut self, report: &Report) {
        eprintln!("backup_tree: {}", report.summary());
    }
    fn note(&mut self, note: &str) {
        eprintln!("backup_tree: {note}");
    }
}

struct Options {
    settings: Backup,
    request: Request,
    check: bool,
}

fn parse() -> Result<Options, String> {
    let mut settings = Backup {
        enabled: true,
        ..Backup::default()
    };
    let (mut from, mut to, mut height, mut check) = ("v1".to_owned(), "v2".to_owned(), None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--folder" => settings.folder = Some(PathBuf::from(value("--folder")?)),
            "--keep" => {
                settings.keep = value("--keep")?
                    .parse()
                    .map_err(|e| format!("--keep: {e}"))?
            }
            "--timeout" => {
                let seconds: u64 = value("--timeout")?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?;
                settings.timeout = Duration::from_secs(seconds);
            }
            "--from" => from = value("--from")?,
            "--to" => to = value("--to")?,
            "--height" => {
                height = Some(
                    value("--height")?
                        .parse()
                        .map_err(|e| format!("--height: {e}"))?,
                )
            }
            "--check" => check = true,
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            path => settings.paths.push(PathBuf::from(path)),
        }
    }
    let request = Request {
        from: ReleaseTag::parse(&from)?,
        to: ReleaseTag::parse(&to)?,
        reason: match height {
            Some(height) => Reason::Upgrade { height },
            None => Reason::Switch,
        },
    };
    Ok(Options {
        settings,
        request,
        check,
    })
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("backup_tree: {error}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&cancel)) {
            eprintln!("backup_tree: cannot catch signal {signal}: {e}");
        }
    }
    if options.check {
        // No HOME here: a folder of its own stands in, so only the paths and folder are judged.
        let home = Home::new(PathBuf::from("/nonexistent/visor-home"));
        let validation = backup::validate(&options.settings, &home, &Default::default());
        for problem in &validation.problems {
            eprintln!("backup_tree: problem: {}", problem.message);
        }
        eprintln!("backup_tree: {}", validation.cost());
    }
    match backup::run(&options.request, &options.settings, &mut ToStderr, &cancel) {
        Ok(done) => {
            for (path, error) in &done.not_removed {
                eprintln!(
                    "backup_tree: could not remove the old backup {} ({error})",
                    path.display()
                );
            }
            println!(
                "backup_tree: {} files={} bytes={} seconds={:.3} clones={} cloned={} copied={} removed={}",
                done.path.display(),
                done.files,
                done.bytes,
                done.duration.as_secs_f64(),
                if done.cloned { "yes" } else { "no" },
                done.cloned_files,
                done.copied_files,
                done.removed.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("backup_tree: {error}");
            ExitCode::from(1)
        }
    }
}
