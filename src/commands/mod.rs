//! One file per command of `USAGE`; this file dispatches and holds the exit codes (0, 1, 2, 78).

mod check;
mod control;
mod init;
mod output;
mod prepare;
mod run;
mod status;

pub use output::{err, out};

use std::path::{Path, PathBuf};

use crate::cli::{self, Command, Output};
use crate::ops::log::{self, LogFormat, LogLevel};

/// Success, or a clean stop after a signal.
pub const EXIT_OK: i32 = 0;
/// Runtime failure: restart budget spent, core unreachable past its budget, upgrade failed.
pub const EXIT_FAILURE: i32 = 1;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// Configuration error found at start (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

/// Parses the command line and runs the command; returns the process exit status.
pub fn main() -> i32 {
    restrict_umask();
    // The journal's priority prefixes from the first line on, before config.toml (which may
    // be what fails) sets the format and level.
    log::configure(LogFormat::Text, LogLevel::Info);
    output::finish(dispatch())
}

fn dispatch() -> i32 {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match cli::parse(args, std::env::var_os("VISOR_HOME")) {
        Ok(command) => command,
        Err(e) => {
            err(&format!("{e}\n{}", e.hint()));
            return EXIT_USAGE;
        }
    };
    match command {
        Command::Help { command: None } => {
            out(cli::USAGE.trim_end());
            EXIT_OK
        }
        Command::Help {
            command: Some(name),
        } => {
            match cli::command_help(name) {
                Some(help) => out(&help.render()),
                None => out(cli::USAGE.trim_end()),
            }
            EXIT_OK
        }
        Command::Version { output } => {
            version(output);
            EXIT_OK
        }
        Command::Init {
            home,
            with_data_node,
        } => init::init(&absolute(&home), with_data_node),
        Command::Run { home } => run::run(&absolute(&home)),
        Command::Check { home } => check::check(&absolute(&home)),
        Command::Status { home, output } => status::status(&absolute(&home), output),
        Command::Prepare {
            home,
            version,
            from,
            sha256,
        } => prepare::prepare(
            &absolute(&home),
            &version,
            from.as_deref(),
            sha256.as_deref(),
        ),
        Command::Restart { home, wait } => control::restart(&absolute(&home), wait),
        Command::Switch { home, tag, wait } => control::switch(&absolute(&home), &tag, wait),
    }
}

/// The git commit this binary was built from (`build.rs`), or `unknown`.
pub const COMMIT: &str = match option_env!("VISOR_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// `visor version` and `visor --version`: the version and the commit, as text or JSON (the
/// form of the node's own `version --output json`).
fn version(output: Output) {
    let version = env!("CARGO_PKG_VERSION");
    match output {
        Output::Text => out(&format!("visor {version} (commit {COMMIT})")),
        Output::Json => {
            out(&serde_json::json!({ "version": version, "hash": COMMIT }).to_string());
        }
    }
}

/// Adds 022 to the umask, so nothing Visor creates (an installed folder, its run-config, the
/// `current` link's temporary, the metrics file) is writable by group or other users, which
/// Visor itself would then refuse to run. The nodes inherit it.
fn restrict_umask() {
    // SAFETY: umask(2) cannot fail; it is called before any thread is started.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old | 0o022);
    }
}

/// The home path made absolute, so every path Visor logs and stores is unambiguous.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
