//! The command line (`USAGE`; each command is described in visor(1)), parsed with lexopt into
//! a plain struct.
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
  visor prepare VERSION --home PATH [--from FILE|ZIP|URL [--sha256 HEX]]
                                              install the upgrade folder for VERSION now,
                                              from GitHub or from the given source
  visor restart --home PATH [--wait SECONDS]  stop the node and start it again (running Visor)
  visor switch TAG --home PATH [--wait SECONDS]
                                              move to the patch release TAG (folder checked
                                              first; nothing stops if it is not ready)
  visor version [--output json]               print Visor's version (also --version, -V)
  visor help                                  print this help (also --help, -h)

--home defaults to $VISOR_HOME. Exit codes: 0 success or clean stop, 1 runtime failure,
2 bad command line, 78 configuration error. See visor(1) and visor-config(5).
";

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
    Prepare {
        home: PathBuf,
        version: String,
        /// `--from SOURCE`: a local binary or zip, or a URL, instead of the GitHub release.
        from: Option<String>,
        /// `--sha256 HEX`: the digest the source must have.
        sha256: Option<String>,
    },
    Restart {
        home: PathBuf,
        wait: Duration,
    },
    Switch {
        home: PathBuf,
        tag: String,
        wait: Duration,
    },
    Version {
        output: Output,
    },
    Help,
}

/// A command-line error; the message says what is wrong and `main` adds the usage hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after the program name. `env_home` is the value of `$VISOR_HOME`.
///
/// Longer than the project's 80-line bound on purpose: it is the flat table of options and
/// commands, one arm each, read top to bottom like the usage text.
pub fn parse(args: Vec<OsString>, env_home: Option<OsString>) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<String> = None;
    let mut home: Option<PathBuf> = None;
    let mut output = Output::Text;
    let mut with_data_node = false;
    let mut positional: Vec<String> = Vec::new();
    let mut help = false;
    let mut version_flag = false;
    let mut wait: Option<Duration> = None;
    let mut from: Option<String> = None;
    let mut sha256: Option<String> = None;

    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(UsageError(e.to_string())),
        };
        match arg {
            Long("home") => {
                let value = parser.value().map_err(|e| UsageError(e.to_string()))?;
                home = Some(PathBuf::from(value));
            }
            Long("output") | Short('o') => {
                let value = parser.value().map_err(|e| UsageError(e.to_string()))?;
                output = match value.to_str() {
                    Some("json") => Output::Json,
                    Some("text") => Output::Text,
                    _ => {
                        return Err(UsageError(format!(
                            "--output {}: unknown format; use text or json",
                            value.to_string_lossy()
                        )))
                    }
                };
            }
            Long("with-data-node") => with_data_node = true,
            Long("from") | Long("sha256") => {
                let name = if matches!(arg, Long("from")) {
                    "from"
                } else {
                    "sha256"
                };
                let value = parser.value().map_err(|e| UsageError(e.to_string()))?;
                let value = value.into_string().map_err(|v| {
                    UsageError(format!("--{name} {}: not valid UTF-8", v.to_string_lossy()))
                })?;
                if name == "from" {
                    from = Some(value);
                } else {
                    sha256 = Some(value);
                }
            }
            Long("wait") => {
                let value = parser.value().map_err(|e| UsageError(e.to_string()))?;
                let seconds = value
                    .to_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--wait {}: give a whole number of seconds from 1 to 86400",
                            value.to_string_lossy()
                        ))
                    })?;
                wait = Some(Duration::from_secs(seconds));
            }
            Long("help") | Short('h') => help = true,
            Long("version") | Short('V') => version_flag = true,
            Value(value) => {
                let value = value
                    .into_string()
                    .map_err(|v| UsageError(format!("{}: not valid UTF-8", v.to_string_lossy())))?;
                if command.is_none() {
                    command = Some(value);
                } else {
                    positional.push(value);
                }
            }
            other => return Err(UsageError(other.unexpected().to_string())),
        }
    }

    if help {
        return Ok(Command::Help);
    }
    if version_flag && command.is_none() {
        return Ok(Command::Version { output });
    }
    let Some(command) = command else {
        return Err(UsageError("no command given".into()));
    };
    let takes_positional = command == "prepare" || command == "switch";
    if !takes_positional && !positional.is_empty() {
        return Err(UsageError(format!(
            "{command}: unexpected argument {:?}",
            positional[0]
        )));
    }
    if with_data_node && command != "init" {
        return Err(UsageError(format!(
            "{command}: --with-data-node is only for init"
        )));
    }
    if (from.is_some() || sha256.is_some()) && command != "prepare" {
        return Err(UsageError(format!(
            "{command}: --from and --sha256 are only for prepare"
        )));
    }
    if sha256.is_some() && from.is_none() {
        return Err(UsageError(
            "prepare: --sha256 goes with --from (a GitHub release carries its own digest)".into(),
        ));
    }
    if wait.is_some() && command != "restart" && command != "switch" {
        return Err(UsageError(format!(
            "{command}: --wait is only for restart and switch"
        )));
    }
    let wait = wait.unwrap_or(DEFAULT_WAIT);
    let need_home = || -> Result<PathBuf, UsageError> {
        home.clone()
            .or_else(|| {
                env_home
                    .clone()
                    .filter(|h| !h.is_empty())
                    .map(PathBuf::from)
            })
            .ok_or_else(|| {
                UsageError(format!(
                    "{command}: no home folder; pass --home PATH or set VISOR_HOME"
                ))
            })
    };
    match command.as_str() {
        "init" => Ok(Command::Init {
            home: need_home()?,
            with_data_node,
        }),
        "run" => Ok(Command::Run { home: need_home()? }),
        "check" => Ok(Command::Check { home: need_home()? }),
        "status" => Ok(Command::Status {
            home: need_home()?,
            output,
        }),
        "prepare" => {
            let version = match positional.as_slice() {
                [version] => version.clone(),
                [] => return Err(UsageError("prepare: missing VERSION".into())),
                [_, extra, ..] => {
                    return Err(UsageError(format!(
                        "prepare: unexpected argument {extra:?}"
                    )))
                }
            };
            Ok(Command::Prepare {
                home: need_home()?,
                version,
                from,
                sha256,
            })
        }
        "restart" => Ok(Command::Restart {
            home: need_home()?,
            wait,
        }),
        "switch" => {
            let tag = match positional.as_slice() {
                [tag] => tag.clone(),
                [] => return Err(UsageError("switch: missing TAG".into())),
                [_, extra, ..] => {
                    return Err(UsageError(format!("switch: unexpected argument {extra:?}")))
                }
            };
            Ok(Command::Switch {
                home: need_home()?,
                tag,
                wait,
            })
        }
        "version" => Ok(Command::Version { output }),
        "help" => Ok(Command::Help),
        other => Err(UsageError(format!("unknown command {other:?}"))),
    }
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
        let err = parse_str(&["run"], None).unwrap_err();
        assert!(err.0.contains("VISOR_HOME"), "{err}");
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
            })
        );
        assert_eq!(
            parse_str(&["-V"], None),
            Ok(Command::Version {
                output: Output::Text
            })
        );
        assert_eq!(
            parse_str(&["version", "--output", "json"], None),
            Ok(Command::Version {
                output: Output::Json
            })
        );
        assert_eq!(parse_str(&["--help"], None), Ok(Command::Help));
        assert_eq!(parse_str(&["help"], None), Ok(Command::Help));
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
                wait: Duration::from_secs(30)
            })
        );
        for args in [
            &["switch", "--home", "/h"][..],
            &["switch", "a", "b", "--home", "/h"][..],
            &["restart", "--wait", "0", "--home", "/h"][..],
            &["status", "--wait", "5", "--home", "/h"][..],
        ] {
            assert!(parse_str(args, None).is_err(), "{args:?} should fail");
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
        ] {
            assert!(parse_str(args, None).is_err(), "{args:?} should fail");
        }
    }
}
