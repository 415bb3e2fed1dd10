//! One file per command of `USAGE` (and `switch_guard`, the version rule of `switch`); this
//! file dispatches and holds the exit codes (0, 1, 2, 3, 4, 75, 77, 78) and the refusal of a
//! command that writes HOME as another user than its owner.

mod check;
mod control;
mod init;
mod list;
mod output;
mod pre_switch;
mod prepare;
mod run;
mod status;
mod switch_guard;
mod version;

pub use output::{err, out};

use std::path::{Path, PathBuf};

use crate::cli::{self, Command};
use crate::ops::log::{self, LogFormat, LogLevel};

/// Success, or a clean stop after a signal.
pub const EXIT_OK: i32 = 0;
/// Runtime failure: restart budget spent, core unreachable past its budget, upgrade failed.
pub const EXIT_FAILURE: i32 = 1;
/// Bad command line.
pub const EXIT_USAGE: i32 = 2;
/// `status` only: no Visor runs on the home (LSB's "program is not running").
pub const EXIT_NOT_RUNNING: i32 = 3;
/// `status` only: whether a Visor runs cannot be told (LSB's "status is unknown").
pub const EXIT_UNKNOWN: i32 = 4;
/// `restart` and `switch`: Visor is busy serving other control connections; try again
/// (EX_TEMPFAIL).
pub const EXIT_BUSY: i32 = 75;
/// A command that writes HOME run by another user than HOME's owner (EX_NOPERM).
pub const EXIT_NOPERM: i32 = 77;
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
        Command::Version { output, home } => {
            version::version(output, home.as_deref().map(absolute).as_deref())
        }
        Command::Init {
            home,
            with_data_node,
        } => init::init(&absolute(&home), with_data_node),
        Command::Run { home } => run::run(&absolute(&home)),
        Command::Check { home } => check::check(&absolute(&home)),
        Command::Status { home, output } => status::status(&absolute(&home), output),
        Command::List {
            home,
            output,
            no_exec,
        } => list::list(&absolute(&home), output, no_exec),
        Command::Prepare {
            home,
            version,
            from,
            sha256,
            signatures,
        } => prepare::prepare(
            &absolute(&home),
            &version,
            prepare::From {
                source: from.as_deref(),
                sha256: sha256.as_deref(),
                signatures: &signatures,
            },
        ),
        Command::Restart { home, wait } => control::restart(&absolute(&home), wait),
        Command::Switch {
            home,
            tag,
            wait,
            force,
        } => control::switch(&absolute(&home), &tag, wait, force),
    }
}

/// The git commit this binary was built from (`build.rs`), or `unknown`.
pub const COMMIT: &str = match option_env!("VISOR_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

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

/// Refuses (printing why, and the command to run instead) a command that writes HOME when
/// this process runs as another user than HOME's owner, Visor's user: what it created would
/// belong to this user, and Visor could not open, replace or remove it. `Err` is
/// [`EXIT_NOPERM`]. A HOME that cannot be looked at is left to the command's own checks.
fn refuse_other_user(root: &Path) -> Result<(), i32> {
    use crate::home::owner;
    let Some(home_owner) = owner::home_owner(root) else {
        return Ok(());
    };
    let me = owner::effective_uid();
    if me == home_owner {
        return Ok(());
    }
    err(&format!(
        "{}: the home folder belongs to {}, but this command runs as {}; what it wrote there          would belong to {} and Visor, which runs as {}, could not use it: run it as the owner:          {}",
        root.display(),
        owner::describe(home_owner),
        owner::describe(me),
        owner::user_name(me).unwrap_or_else(|| format!("uid {me}")),
        owner::user_name(home_owner).unwrap_or_else(|| format!("uid {home_owner}")),
        as_owner(root, home_owner)
    ));
    Err(EXIT_NOPERM)
}

/// This very command line, run as `uid`: `sudo -u zeta visor switch v1.2.4 --home /srv/visor`
/// (`--home` added when the home came from `VISOR_HOME`, which sudo does not pass on).
fn as_owner(root: &Path, uid: u32) -> String {
    let mut words = vec![
        "sudo".to_string(),
        "-u".into(),
        crate::home::owner::sudo_user(uid),
        "visor".into(),
    ];
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect();
    let has_home = args
        .iter()
        .any(|a| a == "--home" || a.starts_with("--home="));
    words.extend(args);
    if !has_home {
        words.push("--home".into());
        words.push(shell_quote(&root.display().to_string()));
    }
    words.join(" ")
}

/// A word for a shell, quoted only when it needs to be.
fn shell_quote(word: &str) -> String {
    crate::home::permissions::shell_word(Path::new(word))
}

/// The home path made absolute, so every path Visor logs and stores is unambiguous.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
