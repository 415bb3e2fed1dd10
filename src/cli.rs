//! The command line (`USAGE`, and each command's own help in `COMMANDS`; each command is
//! described in visor(1)), parsed with lexopt into a plain struct.
//!
//! It owns argument syntax only: no file is read and no environment variable other than
//! `VISOR_HOME` (the documented fallback for `--home`) is consulted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// How long `restart` and `switch` wait for the new start to answer, unless `--wait` says.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

pub const USAGE: &str = "\
visor - runs a Zeta core node (and data node) and swaps binaries at protocol upgrades

Usage:
  visor init --home PATH [--with-data-node]   create a new home folder
  visor run --home PATH                       supervise the node (the service command)
  visor check --home PATH                     validate config, run-configs and binaries
  visor status --home PATH [--output json]    show the running version and pending upgrade
  visor list --home PATH [--output json] [--no-exec]
                                              list every version folder, ready or why not
  visor prepare VERSION --home PATH [--from SOURCE [--sha256 HEX] [--signature SIG]...]
                                              install the upgrade folder for VERSION now
  visor restart --home PATH [--wait SECONDS]  stop the node and start it again (running Visor)
  visor switch TAG --home PATH [--wait SECONDS] [--force]
                                              move to the patch release TAG (version and
                                              folder checked first; nothing stops if refused)
  visor version [--home PATH] [--output json]
                                              print Visor's version (also -V), and the node's
  visor help [COMMAND]                        print this help, or COMMAND's (also -h)

--home defaults to $VISOR_HOME. Exit codes: 0 success or clean stop, 1 runtime failure,
2 bad command line, 78 configuration error. 'visor help COMMAND' or 'visor COMMAND --help'
shows a command's options. See visor(1) and visor-config(5).
";

/// One option as a command's help lists it.
#[derive(Debug)]
pub struct OptionHelp {
    /// The option as typed, with its value's name: `--wait SECONDS`.
    pub flags: &'static str,
    /// What it does, one line.
    pub text: &'static str,
}

/// One command: what `visor help COMMAND` and `visor COMMAND --help` print.
#[derive(Debug)]
pub struct CommandHelp {
    pub name: &'static str,
    /// The command's line of `USAGE`, without the leading `visor `.
    pub usage: &'static str,
    /// One line: what the command is for.
    pub summary: &'static str,
    /// A few lines: what it does and how it ends.
    pub details: &'static str,
    /// The options it takes, `--help` last.
    pub options: &'static [OptionHelp],
}

const HOME_OPTION: OptionHelp = OptionHelp {
    flags: "--home PATH",
    text: "the home folder (default: $VISOR_HOME)",
};
const HELP_OPTION: OptionHelp = OptionHelp {
    flags: "-h, --help",
    text: "print this help",
};
const WAIT_OPTION: OptionHelp = OptionHelp {
    flags: "--wait SECONDS",
    text: "how long to wait for the outcome, 1 to 86400 (default: 600)",
};

/// Every command, in `USAGE` order.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "init",
        usage: "init --home PATH [--with-data-node]",
        summary: "create a new home folder",
        details: "\
Creates PATH (and its parents) with a commented config.toml, genesis/run-config.toml for the
first version and vX.X.X/run-config.toml, an example upgrade folder to copy to a release
tag's name. PATH must be missing or empty; otherwise nothing is written and the exit is 1.",
        options: &[
            HOME_OPTION,
            OptionHelp {
                flags: "--with-data-node",
                text: "write run-configs that start a data node too",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "run",
        usage: "run --home PATH",
        summary: "supervise the node (the service command)",
        details: "\
Starts the binaries of HOME/current (genesis at first), restarts them within the restart
budget and swaps them at protocol upgrades, in the foreground until SIGTERM or SIGINT
(exit 0); SIGHUP re-reads config.toml. A configuration error stops it before anything
starts (exit 78); a spent restart budget or another Visor on HOME is exit 1.",
        options: &[HOME_OPTION, HELP_OPTION],
    },
    CommandHelp {
        name: "check",
        usage: "check --home PATH",
        summary: "validate config, run-configs and binaries",
        details: "\
Prints every problem 'visor run' would stop on (config.toml, current, each version folder's
run-config and binaries, who may write them), then a pending upgrade whose folder is not
ready, one line each; nothing when there is none. The example folder vX.X.X is skipped.
Exit 0: no problem; 78: a configuration problem; 1: only the pending upgrade's folder.",
        options: &[HOME_OPTION, HELP_OPTION],
    },
    CommandHelp {
        name: "status",
        usage: "status --home PATH [--output json]",
        summary: "show the running version and pending upgrade",
        details: "\
Tells whether a 'visor run' supervises HOME and what it is doing, what current points at,
what the core answers and the pending upgrade. It changes nothing.",
        options: &[
            HOME_OPTION,
            OptionHelp {
                flags: "-o, --output FORMAT",
                text: "text (or human; the default) or json, one object on one line",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "list",
        usage: "list --home PATH [--output json] [--no-exec]",
        summary: "list every version folder, ready or why not",
        details: "\
Lists genesis, every upgrade folder in HOME and every [upgradeFolders] entry: its tag,
run-config name, the versions its binaries report, whether it is ready (or why not), which
one current points at and which one a running Visor holds as pending. It writes nothing.
Exit 0, or 78 when config.toml is missing or invalid (after listing all it can).",
        options: &[
            HOME_OPTION,
            OptionHelp {
                flags: "-o, --output FORMAT",
                text: "text (or human; the default) or json, one object on one line",
            },
            OptionHelp {
                flags: "--no-exec",
                text: "do not run the binaries to ask their versions",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "prepare",
        usage: "prepare VERSION --home PATH [--from SOURCE [--sha256 HEX] [--signature SIG]...]",
        summary: "install the upgrade folder for VERSION now",
        details: "\
Installs the upgrade folder of release VERSION from its GitHub release in the foreground,
as auto-install would ([autoInstall] in config.toml); nothing to do when it is ready.
With --from, from a local binary or zip, or an https:// URL of either, instead. With keys
in [autoInstall.signatures], --signature is required and the signatures must meet threshold;
without keys it is refused.",
        options: &[
            HOME_OPTION,
            OptionHelp {
                flags: "--from SOURCE",
                text: "a local binary or zip, or an https:// URL of either",
            },
            OptionHelp {
                flags: "--sha256 HEX",
                text: "its SHA-256 (a URL needs it unless requireChecksum = false or signed)",
            },
            OptionHelp {
                flags: "--signature SIG",
                text: "a minisign signature file of it, a path or URL (repeatable)",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "restart",
        usage: "restart --home PATH [--wait SECONDS]",
        summary: "stop the node and start it again (running Visor)",
        details: "\
Asks the Visor running on HOME to stop the binaries and start them again at once, and waits
until the core answers (exit 0). Refused during an upgrade and while the binaries are not
running (exit 1).",
        options: &[HOME_OPTION, WAIT_OPTION, HELP_OPTION],
    },
    CommandHelp {
        name: "switch",
        usage: "switch TAG --home PATH [--wait SECONDS] [--force]",
        summary: "move to the patch release TAG",
        details: "\
Moves to the patch release TAG without an upgrade block. TAG must be a higher patch of the
version current's core reports (v1.2.3 to v1.2.4); another minor or major, a downgrade, the
same version or a TAG that is not vMAJOR.MINOR.PATCH is refused (exit 1) unless --force.
Its folder (HOME/TAG) is checked before anything stops: not ready, nothing stops (exit 1).
Then the binaries stop, current moves to TAG and TAG starts; exit 0 once its core answers.
Without a running Visor it only moves current, under the lock.",
        options: &[
            HOME_OPTION,
            WAIT_OPTION,
            OptionHelp {
                flags: "--force",
                text: "skip the version guard (the folder is still checked)",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "version",
        usage: "version [--home PATH] [--output json]",
        summary: "print Visor's version and commit (also --version, -V), and the node's",
        details: "\
Prints 'visor VERSION (commit HASH)', or {\"hash\":HASH,\"version\":VERSION} with
--output json; HASH is the git commit Visor was built from, or unknown. With a home
(--home or $VISOR_HOME) also the versions current's binaries report (a \"node\" object in
JSON); without one it runs nothing. --version and -V print Visor's alone.",
        options: &[
            OptionHelp {
                flags: "--home PATH",
                text: "also ask the binaries of this home's current (default: $VISOR_HOME)",
            },
            OptionHelp {
                flags: "-o, --output FORMAT",
                text: "text (or human; the default) or json",
            },
            HELP_OPTION,
        ],
    },
    CommandHelp {
        name: "help",
        usage: "help [COMMAND]",
        summary: "print the usage, or COMMAND's (also --help, -h)",
        details: "\
Prints the usage of every command, or the usage and options of COMMAND, which is the same
as 'visor COMMAND --help'.",
        options: &[HELP_OPTION],
    },
];

/// The long options, for suggestions.
const LONG_OPTIONS: &[&str] = &[
    "home",
    "output",
    "with-data-node",
    "wait",
    "from",
    "sha256",
    "signature",
    "force",
    "no-exec",
    "help",
    "version",
];

/// The help of the command `name`, if there is such a command.
pub fn command_help(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS.iter().find(|c| c.name == name)
}

impl CommandHelp {
    /// The text `visor help COMMAND` prints, without a trailing newline.
    pub fn render(&self) -> String {
        let width = self
            .options
            .iter()
            .map(|o| o.flags.len())
            .max()
            .unwrap_or(0);
        let mut text = format!(
            "visor {} - {}\n\nUsage: visor {}\n\n{}\n\nOptions:\n",
            self.name, self.summary, self.usage, self.details
        );
        for option in self.options {
            text.push_str(&format!("  {:width$}  {}\n", option.flags, option.text));
        }
        text.push_str("\nSee visor(1).");
        text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Init {
        home: PathBuf,
        with_data_node: bool,
    },
    Run {
        home: PathBuf,
    },
    Check {
        home: PathBuf,
    },
    Status {
        home: PathBuf,
        output: Output,
    },
    List {
        home: PathBuf,
        output: Output,
        /// `--no-exec`: do not run the binaries to ask their versions.
        no_exec: bool,
    },
    Prepare {
        home: PathBuf,
        version: String,
        /// `--from SOURCE`: a local binary or zip, or a URL, instead of the GitHub release.
        from: Option<String>,
        /// `--sha256 HEX`: the digest the source must have.
        sha256: Option<String>,
        /// Each `--signature FILE|URL`: a minisign signature file of the source.
        signatures: Vec<String>,
    },
    Restart {
        home: PathBuf,
        wait: Duration,
    },
    Switch {
        home: PathBuf,
        tag: String,
        wait: Duration,
        /// `--force`: skip the version guard.
        force: bool,
    },
    Version {
        output: Output,
        /// The home whose `current` binaries are asked too (`--home` or `$VISOR_HOME`); `None`
        /// for `--version` and `-V`, which print Visor's alone.
        home: Option<PathBuf>,
    },
    /// The usage (`None`) or one command's help.
    Help {
        command: Option<&'static str>,
    },
}

/// A command-line error: what is wrong, and the command it concerns when that is known, so
/// that `main` can point at that command's help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub command: Option<&'static str>,
}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            command: None,
        }
    }

    /// The line printed after the message: where to read the usage.
    pub fn hint(&self) -> String {
        match self.command {
            Some(command) => format!("Run 'visor help {command}' for usage."),
            None => "Run 'visor help' for usage.".to_owned(),
        }
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the arguments say, before it is checked against the command.
#[derive(Default)]
struct Scanned {
    command: Option<String>,
    positional: Vec<String>,
    home: Option<PathBuf>,
    output: Option<Output>,
    with_data_node: bool,
    wait: Option<Duration>,
    from: Option<String>,
    sha256: Option<String>,
    signatures: Vec<String>,
    force: bool,
    no_exec: bool,
    help: bool,
    version_flag: bool,
    /// The first problem met; reported unless `--help` was given.
    error: Option<UsageError>,
}

/// Parses the arguments after the program name. `env_home` is the value of `$VISOR_HOME`.
pub fn parse(args: Vec<OsString>, env_home: Option<OsString>) -> Result<Command, UsageError> {
    let scanned = scan(args);
    let known = scanned.command.as_deref().map(known_command).transpose();
    if scanned.help {
        return match (known?, scanned.positional.first()) {
            (Some("help"), Some(topic)) => Ok(Command::Help {
                command: Some(known_command(topic)?),
            }),
            (command, _) => Ok(Command::Help { command }),
        };
    }
    if let Some(mut error) = scanned.error {
        error.command = known.ok().flatten().filter(|c| *c != "help");
        return Err(error);
    }
    match known? {
        Some(command) => resolve(command, scanned, env_home).map_err(|mut e| {
            // `visor help rnu` points at the usage of every command.
            e.command = Some(command).filter(|c| *c != "help");
            e
        }),
        None if scanned.version_flag => Ok(Command::Version {
            output: scanned.output.unwrap_or(Output::Text),
            home: None,
        }),
        None => Err(UsageError::new("no command given")),
    }
}

/// Reads every argument. An unknown option or a bad value is kept as the first error and
/// the scan goes on, so that a `--help` further on still wins.
///
/// Longer than the project's 80-line bound on purpose: it is the flat table of options, one
/// arm each, read top to bottom like the usage text.
fn scan(args: Vec<OsString>) -> Scanned {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut s = Scanned::default();
    fn fail(s: &mut Scanned, message: String) {
        s.error.get_or_insert(UsageError::new(message));
    }
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => {
                fail(&mut s, e.to_string());
                continue;
            }
        };
        match arg {
            Long("home") => match parser.value() {
                Ok(value) => s.home = Some(PathBuf::from(value)),
                Err(e) => fail(&mut s, e.to_string()),
            },
            Long("output") | Short('o') => match parser.value() {
                Ok(value) => match value.to_str() {
                    Some("json") => s.output = Some(Output::Json),
                    Some("text" | "human") => s.output = Some(Output::Text),
                    _ => fail(
                        &mut s,
                        format!(
                            "--output {}: unknown format; use text (or human) or json",
                            value.to_string_lossy()
                        ),
                    ),
                },
                Err(e) => fail(&mut s, e.to_string()),
            },
            Long("with-data-node") => s.with_data_node = true,
            Long("wait") => match parser.value() {
                Ok(value) => match value
                    .to_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|seconds| (1..=86_400).contains(seconds))
                {
                    Some(seconds) => s.wait = Some(Duration::from_secs(seconds)),
                    None => fail(
                        &mut s,
                        format!(
                            "--wait {}: give a whole number of seconds from 1 to 86400",
                            value.to_string_lossy()
                        ),
                    ),
                },
                Err(e) => fail(&mut s, e.to_string()),
            },
            Long("from") | Long("sha256") | Long("signature") => {
                let (from, sha256) = (matches!(arg, Long("from")), matches!(arg, Long("sha256")));
                match parser.value().map(|v| v.into_string()) {
                    Ok(Ok(value)) if from => s.from = Some(value),
                    Ok(Ok(value)) if sha256 => s.sha256 = Some(value),
                    Ok(Ok(value)) => s.signatures.push(value),
                    Ok(Err(v)) => fail(&mut s, format!("{}: not valid UTF-8", v.to_string_lossy())),
                    Err(e) => fail(&mut s, e.to_string()),
                }
            }
            Long("force") => s.force = true,
            Long("no-exec") => s.no_exec = true,
            Long("help") | Short('h') => s.help = true,
            Long("version") | Short('V') => s.version_flag = true,
            Long(other) => {
                let message = format!("unknown option --{other}{}", suggest_option(other));
                fail(&mut s, message);
            }
            Short(other) => fail(&mut s, format!("unknown option -{other}")),
            Value(value) => match value.into_string() {
                Ok(value) if s.command.is_none() => s.command = Some(value),
                Ok(value) => s.positional.push(value),
                Err(v) => fail(&mut s, format!("{}: not valid UTF-8", v.to_string_lossy())),
            },
        }
    }
    s
}

/// The command `name` as one of `COMMANDS`, or an error that suggests the closest one.
fn known_command(name: &str) -> Result<&'static str, UsageError> {
    match command_help(name) {
        Some(help) => Ok(help.name),
        None => {
            let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
            let hint = match closest(name, &names) {
                Some(near) => format!("; did you mean {near}?"),
                None => String::new(),
            };
            Err(UsageError::new(format!("unknown command {name:?}{hint}")))
        }
    }
}

/// `; did you mean --home?` for `hom`, or nothing when no long option is close.
fn suggest_option(typed: &str) -> String {
    // `--hom=/srv` reaches here as `hom`; lexopt keeps the value apart.
    match closest(typed, LONG_OPTIONS) {
        Some(near) => format!("; did you mean --{near}?"),
        None => String::new(),
    }
}

/// The candidate closest to `typed`: one it starts (at least 3 characters typed), else one
/// within 2 edits (1 for a word of 4 characters or fewer); the first in list order on a tie.
fn closest<'c>(typed: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if typed.chars().count() >= 3 {
        if let Some(found) = candidates.iter().find(|c| c.starts_with(typed)) {
            return Some(found);
        }
    }
    let allowed = if typed.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (edit_distance(typed, c), *c))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbouring characters, each counting 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The command `command` with the options and arguments it was given.
fn resolve(
    command: &'static str,
    s: Scanned,
    env_home: Option<OsString>,
) -> Result<Command, UsageError> {
    let max_positional = match command {
        "prepare" | "switch" | "help" => 1,
        _ => 0,
    };
    if let Some(extra) = s.positional.get(max_positional) {
        return Err(UsageError::new(format!(
            "{command}: unexpected argument {extra:?}"
        )));
    }
    if s.with_data_node && command != "init" {
        return Err(UsageError::new(format!(
            "{command}: --with-data-node is only for init"
        )));
    }
    if (s.from.is_some() || s.sha256.is_some() || !s.signatures.is_empty()) && command != "prepare"
    {
        return Err(UsageError::new(format!(
            "{command}: --from, --sha256 and --signature are only for prepare"
        )));
    }
    if s.sha256.is_some() && s.from.is_none() {
        return Err(UsageError::new(
            "prepare: --sha256 goes with --from (a GitHub release carries its own digest)",
        ));
    }
    if !s.signatures.is_empty() && s.from.is_none() {
        return Err(UsageError::new(
            "prepare: --signature goes with --from (a GitHub release carries its own signature \
             files)",
        ));
    }
    if s.wait.is_some() && command != "restart" && command != "switch" {
        return Err(UsageError::new(format!(
            "{command}: --wait is only for restart and switch"
        )));
    }
    if s.force && command != "switch" {
        return Err(UsageError::new(format!(
            "{command}: --force is only for switch"
        )));
    }
    if s.no_exec && command != "list" {
        return Err(UsageError::new(format!(
            "{command}: --no-exec is only for list"
        )));
    }
    let wait = s.wait.unwrap_or(DEFAULT_WAIT);
    let output = s.output.unwrap_or(Output::Text);
    let argument = s.positional.first().cloned();
    let home = || -> Result<PathBuf, UsageError> {
        s.home
            .clone()
            .or_else(|| env_home.filter(|h| !h.is_empty()).map(PathBuf::from))
            .ok_or_else(|| {
                UsageError::new(format!(
                    "{command}: no home folder; pass --home PATH or set VISOR_HOME"
                ))
            })
    };
    let missing = |what: &str| UsageError::new(format!("{command}: missing {what}"));
    Ok(match command {
        "init" => Command::Init {
            home: home()?,
            with_data_node: s.with_data_node,
        },
        "run" => Command::Run { home: home()? },
        "check" => Command::Check { home: home()? },
        "status" => Command::Status {
            home: home()?,
            output,
        },
        "list" => Command::List {
            home: home()?,
            output,
            no_exec: s.no_exec,
        },
        "prepare" => Command::Prepare {
            version: argument.ok_or_else(|| missing("VERSION"))?,
            home: home()?,
            from: s.from.clone(),
            sha256: s.sha256.clone(),
            signatures: s.signatures.clone(),
        },
        "restart" => Command::Restart {
            home: home()?,
            wait,
        },
        "switch" => Command::Switch {
            tag: argument.ok_or_else(|| missing("TAG"))?,
            home: home()?,
            wait,
            force: s.force,
        },
        "version" => Command::Version {
            output,
            home: home().ok(),
        },
        _ => Command::Help {
            command: argument.as_deref().map(known_command).transpose()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str], env: Option<&str>) -> Result<Command, UsageError> {
        parse(
            args.iter().map(OsString::from).collect(),
            env.map(OsString::from),
        )
    }

    fn error(args: &[&str]) -> UsageError {
        match parse_str(args, None) {
            Ok(command) => panic!("{args:?} should fail, parsed {command:?}"),
            Err(e) => e,
        }
    }

    fn help(command: Option<&'static str>) -> Result<Command, UsageError> {
        Ok(Command::Help { command })
    }

    #[test]
    fn run_takes_home_from_flag_or_environment() {
        assert_eq!(
            parse_str(&["run", "--home", "/h"], Some("/e")),
            Ok(Command::Run { home: "/h".into() })
        );
        assert_eq!(
            parse_str(&["run"], Some("/e")),
            Ok(Command::Run { home: "/e".into() })
        );
        assert_eq!(
            parse_str(&["--home=/x", "check"], None),
            Ok(Command::Check { home: "/x".into() })
        );
        assert_eq!(
            parse_str(&["run"], Some("")).map_err(|e| e.message.contains("VISOR_HOME")),
            Err(true)
        );
        let err = error(&["run"]);
        assert!(err.message.contains("VISOR_HOME"), "{err}");
        assert_eq!(err.hint(), "Run 'visor help run' for usage.");
    }

    #[test]
    fn init_status_prepare_and_version_forms() {
        assert_eq!(
            parse_str(&["init", "--home", "/h", "--with-data-node"], None),
            Ok(Command::Init {
                home: "/h".into(),
                with_data_node: true
            })
        );
        assert_eq!(
            parse_str(&["status", "--output", "json"], Some("/h")),
            Ok(Command::Status {
                home: "/h".into(),
                output: Output::Json
            })
        );
        assert_eq!(
            parse_str(&["prepare", "v1.3.0", "--home", "/h"], None),
            Ok(Command::Prepare {
                home: "/h".into(),
                version: "v1.3.0".into(),
                from: None,
                sha256: None,
                signatures: Vec::new(),
            })
        );
        assert_eq!(
            parse_str(
                &[
                    "prepare",
                    "v2",
                    "--from",
                    "/z",
                    "--signature",
                    "/a.minisig",
                    "--signature",
                    "https://m.example/z.minisig",
                ],
                Some("/h")
            ),
            Ok(Command::Prepare {
                home: "/h".into(),
                version: "v2".into(),
                from: Some("/z".into()),
                sha256: None,
                signatures: vec!["/a.minisig".into(), "https://m.example/z.minisig".into()],
            })
        );
        let text = Ok(Command::Version {
            output: Output::Text,
            home: None,
        });
        let json = Ok(Command::Version {
            output: Output::Json,
            home: None,
        });
        assert_eq!(parse_str(&["-V"], None), text);
        assert_eq!(parse_str(&["--version"], None), text);
        assert_eq!(parse_str(&["version"], None), text);
        assert_eq!(parse_str(&["version", "--output", "human"], None), text);
        assert_eq!(parse_str(&["version", "-o", "text"], None), text);
        assert_eq!(parse_str(&["version", "--output", "json"], None), json);
        assert_eq!(parse_str(&["--version", "-o", "json"], None), json);
        // -V is ignored when a command is given.
        assert_eq!(
            parse_str(&["-V", "check"], Some("/h")),
            Ok(Command::Check { home: "/h".into() })
        );
        assert_eq!(
            parse_str(&["status", "--output=human"], Some("/h")),
            Ok(Command::Status {
                home: "/h".into(),
                output: Output::Text
            })
        );
    }

    #[test]
    fn help_for_everything_or_one_command() {
        assert_eq!(parse_str(&["--help"], None), help(None));
        assert_eq!(parse_str(&["-h"], None), help(None));
        assert_eq!(parse_str(&["help"], None), help(None));
        assert_eq!(parse_str(&["help", "run"], None), help(Some("run")));
        assert_eq!(parse_str(&["run", "--help"], None), help(Some("run")));
        assert_eq!(parse_str(&["--help", "switch"], None), help(Some("switch")));
        assert_eq!(
            parse_str(&["switch", "-h", "v1"], None),
            help(Some("switch"))
        );
        assert_eq!(parse_str(&["help", "--help"], None), help(Some("help")));
        assert_eq!(parse_str(&["help", "help"], None), help(Some("help")));
        assert_eq!(parse_str(&["help", "-h", "init"], None), help(Some("init")));
        // --help wins over what else is wrong with the line.
        assert_eq!(
            parse_str(&["run", "--bogus", "--wait", "x", "--help"], None),
            help(Some("run"))
        );
        assert_eq!(
            parse_str(&["status", "--help", "extra"], None),
            help(Some("status"))
        );
        // ... but not over an unknown command.
        let err = error(&["sttaus", "--help"]);
        assert_eq!(
            err.message,
            "unknown command \"sttaus\"; did you mean status?"
        );
        let err = error(&["help", "rnu"]);
        assert_eq!(err.message, "unknown command \"rnu\"; did you mean run?");
        assert_eq!(
            error(&["help", "run", "check"]).message,
            "help: unexpected argument \"check\""
        );
    }

    #[test]
    fn unknown_commands_and_options_suggest_the_closest() {
        let cases: &[(&[&str], &str)] = &[
            (&["foo", "bar"], "unknown command \"foo\""),
            (
                &["stauts"],
                "unknown command \"stauts\"; did you mean status?",
            ),
            (
                &["swich", "v1"],
                "unknown command \"swich\"; did you mean switch?",
            ),
            (&["ver"], "unknown command \"ver\"; did you mean version?"),
            (
                &["prep", "v1"],
                "unknown command \"prep\"; did you mean prepare?",
            ),
            (&["chekc"], "unknown command \"chekc\"; did you mean check?"),
            (
                &["run", "--hom", "/h"],
                "unknown option --hom; did you mean --home?",
            ),
            (
                &["run", "--hom=/h"],
                "unknown option --hom; did you mean --home?",
            ),
            (
                &["--ouptut", "json", "status"],
                "unknown option --ouptut; did you mean --output?",
            ),
            (
                &["init", "--with-data"],
                "unknown option --with-data; did you mean --with-data-node?",
            ),
            (
                &["restart", "--wiat", "5"],
                "unknown option --wiat; did you mean --wait?",
            ),
            (&["run", "--bogus"], "unknown option --bogus"),
            (&["run", "-x"], "unknown option -x"),
        ];
        for (args, message) in cases {
            let err = error(args);
            assert_eq!(&err.message, message, "{args:?}");
        }
        // An unknown command is not taken for a known one's mistake.
        assert_eq!(
            error(&["frobnicate", "x"]).hint(),
            "Run 'visor help' for usage."
        );
        assert_eq!(
            error(&["run", "x", "--home", "/h"]).hint(),
            "Run 'visor help run' for usage."
        );
    }

    #[test]
    fn closest_and_edit_distance() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("hom", "home"), 1);
        assert_eq!(edit_distance("ouptut", "output"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let names = ["init", "run", "check"];
        assert_eq!(closest("ru", &names), Some("run"));
        assert_eq!(closest("xyz", &names), None);
        assert_eq!(closest("chk", &names), None);
        assert_eq!(closest("chec", &names), Some("check"));
    }

    #[test]
    fn restart_and_switch_forms() {
        assert_eq!(
            parse_str(&["restart"], Some("/h")),
            Ok(Command::Restart {
                home: "/h".into(),
                wait: DEFAULT_WAIT
            })
        );
        assert_eq!(
            parse_str(&["switch", "v1.2.4", "--home", "/h", "--wait", "30"], None),
            Ok(Command::Switch {
                home: "/h".into(),
                tag: "v1.2.4".into(),
                wait: Duration::from_secs(30),
                force: false,
            })
        );
        assert_eq!(
            parse_str(&["switch", "--force", "v1.3.0"], Some("/h")),
            Ok(Command::Switch {
                home: "/h".into(),
                tag: "v1.3.0".into(),
                wait: DEFAULT_WAIT,
                force: true,
            })
        );
        for args in [
            &["switch", "--home", "/h"][..],
            &["switch", "a", "b", "--home", "/h"][..],
            &["restart", "--wait", "0", "--home", "/h"][..],
            &["status", "--wait", "5", "--home", "/h"][..],
            &["restart", "--force", "--home", "/h"][..],
            &["status", "--no-exec", "--home", "/h"][..],
        ] {
            assert!(parse_str(args, None).is_err(), "{args:?} should fail");
        }
    }

    #[test]
    fn list_and_version_with_a_home() {
        assert_eq!(
            parse_str(&["list", "--output", "json", "--no-exec"], Some("/h")),
            Ok(Command::List {
                home: "/h".into(),
                output: Output::Json,
                no_exec: true,
            })
        );
        assert_eq!(
            parse_str(&["list", "--home", "/x"], None),
            Ok(Command::List {
                home: "/x".into(),
                output: Output::Text,
                no_exec: false,
            })
        );
        assert!(error(&["list"]).message.contains("VISOR_HOME"));
        assert_eq!(
            error(&["list", "--force", "--home", "/h"]).message,
            "list: --force is only for switch"
        );
        assert_eq!(
            error(&["switch", "v1", "--no-exec", "--home", "/h"]).message,
            "switch: --no-exec is only for list"
        );
        // `version` asks the node of the home given, or of $VISOR_HOME; -V never does.
        for (args, env, home) in [
            (&["version", "--home", "/h"][..], None, Some("/h")),
            (&["version"][..], Some("/e"), Some("/e")),
            (&["version", "--home", "/h"][..], Some("/e"), Some("/h")),
            (&["version"][..], Some(""), None),
            (&["version"][..], None, None),
            (&["-V"][..], Some("/e"), None),
            (&["--version", "--home", "/h"][..], None, None),
        ] {
            assert_eq!(
                parse_str(args, env),
                Ok(Command::Version {
                    output: Output::Text,
                    home: home.map(PathBuf::from),
                }),
                "{args:?} with VISOR_HOME={env:?}"
            );
        }
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for args in [
            &[][..],
            &["frobnicate"][..],
            &["run", "--bogus"][..],
            &["run", "extra"][..],
            &["prepare", "--home", "/h"][..],
            &["status", "--output", "yaml", "--home", "/h"][..],
            &["run", "--with-data-node", "--home", "/h"][..],
            &["run", "--home"][..],
            &["version", "extra"][..],
        ] {
            assert!(parse_str(args, None).is_err(), "{args:?} should fail");
        }
        assert_eq!(error(&[]).message, "no command given");
        assert_eq!(
            error(&["prepare", "v2", "--home", "/h", "--signature", "/s"]).message,
            "prepare: --signature goes with --from (a GitHub release carries its own signature \
             files)"
        );
        assert_eq!(
            error(&["run", "--home", "/h", "--signature", "/s"]).message,
            "run: --from, --sha256 and --signature are only for prepare"
        );
        assert_eq!(
            error(&["prepare", "--home", "/h"]).message,
            "prepare: missing VERSION"
        );
    }

    #[test]
    fn every_command_has_help_and_a_usage_line() {
        let usage_commands: Vec<&str> = USAGE
            .lines()
            .filter_map(|line| line.strip_prefix("  visor "))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect();
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(usage_commands, names);
        for command in COMMANDS {
            let usage_line = format!("  visor {}", command.usage);
            assert!(USAGE.contains(&usage_line), "USAGE lacks {usage_line:?}");
            let text = command.render();
            assert!(text.contains("-h, --help"), "{text}");
            assert!(text.lines().all(|l| l.len() <= 95), "{text}");
            // Every option the command's help names is one the parser knows.
            for option in command.options {
                for flag in option.flags.split(", ") {
                    let flag = flag.split(' ').next().unwrap_or(flag);
                    let known = flag
                        .strip_prefix("--")
                        .is_some_and(|long| LONG_OPTIONS.contains(&long))
                        || ["-h", "-o", "-V"].contains(&flag);
                    assert!(known, "{}: {flag}", command.name);
                }
            }
        }
    }
}
