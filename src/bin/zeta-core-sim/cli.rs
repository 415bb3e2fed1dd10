//! The command line: the global options, the subcommand words, the usage text and the
//! `sim-options` file beside the simulator.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process;
use std::time::Duration;

use crate::PROG;

/// The usage text printed by `--help`.
pub(crate) const USAGE: &str = "\
usage: zeta-core-sim [OPTIONS] start [ARGS...]                  run as the core node
       zeta-core-sim [OPTIONS] datanode start [ARGS...]         run as the data node
       zeta-core-sim [OPTIONS] version [--output json]
       zeta-core-sim [OPTIONS] [datanode] network-history latest-history-segment --output json [--home X]

Options (only before the subcommand; DUR is 150ms, 2s, 1m or a number of milliseconds; a file
named sim-options beside the path the simulator is started as supplies more, first):
  --sim-version V       version reported by `version` (default v0.0.0)
  --record FILE         append one JSON object per event to FILE
  --socket PATH         UNIX socket to serve the admin RPC on (required for `start`)
  --http-path P         HTTP path of the RPC (default /rpc)
  --announce TAG@H      release TAG accepted for upgrade at block height H
  --announce-after DUR  when the release is accepted (default 0)
  --flap LIST           answer each status request with the next of LIST, a comma-separated
                        cycle of TAG@H and `none` (a core that keeps changing its mind)
  --ready-after DUR     when ReadyToUpgrade becomes true (never when absent)
  --tag-field NAME      name of the tag field (default VegaReleaseTag)
  --control-dir DIR     on each request: DIR/announce (TAG@H) announces, DIR/ready makes
                        ready, DIR/crash is removed and the process exits with --exit-code
  --rpc-after DUR       bind the socket only DUR after start
  --no-rpc              never bind the socket
  --hang-rpc            read requests but never answer
  --slow-rpc DUR        answer each request after DUR
  --garble-rpc          answer 200 with a body that is not JSON
  --chunked-rpc         send success bodies with Transfer-Encoding: chunked
  --crash-after DUR     exit on its own after DUR, with --exit-code (default 3)
  --exit-code N         exit status of a crash (default 3)
  --crash-once FILE     crash only if FILE does not exist, and create it
  --ignore-sigterm      ignore SIGTERM (it is still recorded)
  --leave-session       at start, leave two `sleep 1000` outside its process group: a child
                        that called setsid, and an orphan (setsid, its parent gone at once);
                        both pids are recorded (events `setsid-child`, `orphan-child`)
  --exit-delay DUR      on SIGTERM wait DUR before exiting
  --version-delay DUR   `version` sleeps DUR before answering
  --segment-height N    to_height of the latest history segment (default 1000)
  --no-segments         `network-history` reports that there are no segments
";

/// An accepted release: the tag and the block height of the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announce {
    pub(crate) tag: String,
    pub(crate) height: u64,
}

/// The global options, which only appear before the subcommand word.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) sim_version: String,
    pub(crate) record: Option<PathBuf>,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) http_path: String,
    pub(crate) announce: Option<Announce>,
    pub(crate) announce_after: Duration,
    /// Accepted releases answered in turn, one per status request (`None`: nothing accepted).
    pub(crate) flap: Vec<Option<Announce>>,
    pub(crate) ready_after: Option<Duration>,
    pub(crate) tag_field: String,
    pub(crate) control_dir: Option<PathBuf>,
    pub(crate) rpc_after: Duration,
    pub(crate) no_rpc: bool,
    pub(crate) hang_rpc: bool,
    pub(crate) slow_rpc: Duration,
    pub(crate) garble_rpc: bool,
    pub(crate) chunked_rpc: bool,
    pub(crate) crash_after: Option<Duration>,
    pub(crate) exit_code: i32,
    pub(crate) crash_once: Option<PathBuf>,
    pub(crate) ignore_sigterm: bool,
    pub(crate) leave_session: bool,
    pub(crate) exit_delay: Duration,
    pub(crate) version_delay: Duration,
    pub(crate) segment_height: u64,
    pub(crate) no_segments: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sim_version: "v0.0.0".to_string(),
            record: None,
            socket: None,
            http_path: "/rpc".to_string(),
            announce: None,
            announce_after: Duration::ZERO,
            flap: Vec::new(),
            ready_after: None,
            tag_field: "VegaReleaseTag".to_string(),
            control_dir: None,
            rpc_after: Duration::ZERO,
            no_rpc: false,
            hang_rpc: false,
            slow_rpc: Duration::ZERO,
            garble_rpc: false,
            chunked_rpc: false,
            crash_after: None,
            exit_code: 3,
            crash_once: None,
            ignore_sigterm: false,
            leave_session: false,
            exit_delay: Duration::ZERO,
            version_delay: Duration::ZERO,
            segment_height: 1000,
            no_segments: false,
        }
    }
}

/// What the invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Core,
    DataNode,
    Version { json: bool },
    Segment,
}

impl Command {
    /// The `mode` written into the start record.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Command::Help => "help",
            Command::Core => "core",
            Command::DataNode => "datanode",
            Command::Version { .. } => "version",
            Command::Segment => "segment",
        }
    }
}

/// A parsed command line.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) opts: Options,
    pub(crate) command: Command,
    /// Every argument from the subcommand word on, exactly as passed.
    pub(crate) args: Vec<String>,
}

/// Parses a duration: `150ms`, `2s`, `1m`, `1h`, a bare number of milliseconds, with an optional
/// fraction (`1.5s`).
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Parses `TAG@HEIGHT`, splitting at the last `@`.
pub(crate) fn parse_announce(text: &str) -> Result<Announce, String> {
    let (tag, height) = text
        .rsplit_once('@')
        .ok_or_else(|| format!("{text:?} is not TAG@HEIGHT"))?;
    let height = height
        .parse::<u64>()
        .map_err(|_| format!("{text:?} has a height that is not a whole number"))?;
    Ok(Announce {
        tag: tag.to_string(),
        height,
    })
}

/// The global options that take no value.
const FLAG_OPTIONS: &[&str] = &[
    "--no-rpc",
    "--hang-rpc",
    "--garble-rpc",
    "--chunked-rpc",
    "--ignore-sigterm",
    "--leave-session",
    "--no-segments",
];

/// The global options that take a value.
const VALUE_OPTIONS: &[&str] = &[
    "--sim-version",
    "--record",
    "--socket",
    "--http-path",
    "--announce",
    "--announce-after",
    "--flap",
    "--ready-after",
    "--tag-field",
    "--control-dir",
    "--rpc-after",
    "--slow-rpc",
    "--crash-after",
    "--exit-code",
    "--crash-once",
    "--exit-delay",
    "--version-delay",
    "--segment-height",
];

/// Applies one global option that takes a value.
fn set_option(opts: &mut Options, name: &str, value: &str) -> Result<(), String> {
    let duration = || {
        parse_duration(value).ok_or_else(|| {
            format!(
                "option {name}: {value:?} is not a duration (use 150ms, 2s, 1m or milliseconds)"
            )
        })
    };
    match name {
        "--sim-version" => opts.sim_version = value.to_string(),
        "--record" => opts.record = Some(PathBuf::from(value)),
        "--socket" => opts.socket = Some(PathBuf::from(value)),
        "--http-path" => opts.http_path = value.to_string(),
        "--announce" => {
            opts.announce = Some(parse_announce(value).map_err(|e| format!("option {name}: {e}"))?)
        }
        "--announce-after" => opts.announce_after = duration()?,
        "--flap" => {
            opts.flap = value
                .split(',')
                .map(|item| match item {
                    "none" => Ok(None),
                    _ => parse_announce(item).map(Some),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("option {name}: {e}"))?
        }
        "--ready-after" => opts.ready_after = Some(duration()?),
        "--tag-field" => {
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!(
                    "option {name}: {value:?} is not a field name (letters, digits and _)"
                ));
            }
            opts.tag_field = value.to_string();
        }
        "--control-dir" => opts.control_dir = Some(PathBuf::from(value)),
        "--rpc-after" => opts.rpc_after = duration()?,
        "--slow-rpc" => opts.slow_rpc = duration()?,
        "--crash-after" => opts.crash_after = Some(duration()?),
        "--exit-code" => {
            opts.exit_code = value
                .parse::<u8>()
                .map_err(|_| format!("option {name}: {value:?} is not an exit status 0..255"))?
                .into()
        }
        "--crash-once" => opts.crash_once = Some(PathBuf::from(value)),
        "--exit-delay" => opts.exit_delay = duration()?,
        "--version-delay" => opts.version_delay = duration()?,
        "--segment-height" => {
            opts.segment_height = value
                .parse::<u64>()
                .map_err(|_| format!("option {name}: {value:?} is not a block height"))?
        }
        _ => return Err(format!("unknown option {name} (see --help)")),
    }
    Ok(())
}

/// Finds `--output` in the arguments of `version` or `network-history` and says whether it
/// asks for JSON (`None` when absent).
fn output_is_json(args: &[String]) -> Result<Option<bool>, String> {
    let mut json = None;
    let mut i = 0;
    while i < args.len() {
        let value = if args[i] == "--output" {
            i += 1;
            Some(
                args.get(i)
                    .ok_or_else(|| "option --output needs a value".to_string())?
                    .as_str(),
            )
        } else {
            args[i].strip_prefix("--output=")
        };
        if let Some(value) = value {
            if value != "json" {
                return Err(format!(
                    "option --output: {value:?} is not supported (only json)"
                ));
            }
            json = Some(true);
        }
        i += 1;
    }
    Ok(json)
}

/// Parses the arguments after the program name.
pub(crate) fn parse_args(argv: &[OsString]) -> Result<Invocation, String> {
    let mut opts = Options::default();
    let Some(first_word) = parse_global_options(&mut opts, argv)? else {
        return Ok(Invocation {
            opts,
            command: Command::Help,
            args: Vec::new(),
        });
    };
    let args: Vec<String> = argv[first_word..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = parse_command(&args)?;
    Ok(Invocation {
        opts,
        command,
        args,
    })
}

/// Applies the global options at the start of `argv` to `opts`. Returns the index of the
/// subcommand word, or `None` when `-h` or `--help` comes first.
fn parse_global_options(opts: &mut Options, argv: &[OsString]) -> Result<Option<usize>, String> {
    let mut i = 0;
    while i < argv.len() {
        let Some(arg) = argv[i].to_str() else {
            return Err(format!(
                "argument {} ({:?}) is not valid UTF-8",
                i + 1,
                argv[i]
            ));
        };
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        if FLAG_OPTIONS.contains(&name) {
            if inline.is_some() {
                return Err(format!("option {name} takes no value"));
            }
            set_flag(opts, name);
        } else if VALUE_OPTIONS.contains(&name) {
            let value = match inline {
                Some(value) => value.to_string(),
                None => {
                    i += 1;
                    let value = argv
                        .get(i)
                        .ok_or_else(|| format!("option {name} needs a value"))?;
                    value
                        .to_str()
                        .ok_or_else(|| {
                            format!("option {name}: value {value:?} is not valid UTF-8")
                        })?
                        .to_string()
                }
            };
            set_option(opts, name, &value)?;
        } else {
            return Err(format!("unknown option {name} (see --help)"));
        }
        i += 1;
    }
    Ok(Some(i))
}

/// Applies one global option that takes no value (one of `FLAG_OPTIONS`).
fn set_flag(opts: &mut Options, name: &str) {
    match name {
        "--no-rpc" => opts.no_rpc = true,
        "--hang-rpc" => opts.hang_rpc = true,
        "--garble-rpc" => opts.garble_rpc = true,
        "--chunked-rpc" => opts.chunked_rpc = true,
        "--ignore-sigterm" => opts.ignore_sigterm = true,
        "--leave-session" => opts.leave_session = true,
        _ => opts.no_segments = true,
    }
}

/// Finds the subcommand in `args`, which start at the subcommand word.
fn parse_command(args: &[String]) -> Result<Command, String> {
    let word = |n: usize| args.get(n).map(String::as_str);
    let command = match word(0) {
        None => {
            return Err(
                "missing subcommand: start, datanode start, version or network-history".into(),
            )
        }
        Some("help") => Command::Help,
        Some("start") => Command::Core,
        Some("datanode") => match word(1) {
            Some("start") => Command::DataNode,
            Some("network-history") => segment_command(&args[2..])?,
            Some(other) => {
                return Err(format!(
                    "unknown datanode subcommand {other:?} (start or network-history)"
                ))
            }
            None => return Err("datanode needs a subcommand: start or network-history".into()),
        },
        Some("version") => Command::Version {
            json: output_is_json(&args[1..])?.unwrap_or(false),
        },
        Some("network-history") => segment_command(&args[1..])?,
        Some(other) => {
            return Err(format!(
                "unknown subcommand {other:?}: start, datanode start, version or network-history"
            ))
        }
    };
    Ok(command)
}

/// Checks the arguments after `network-history`.
fn segment_command(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        Some("latest-history-segment") => {
            output_is_json(&args[1..])?;
            Ok(Command::Segment)
        }
        Some(other) => Err(format!(
            "unknown network-history subcommand {other:?} (only latest-history-segment)"
        )),
        None => Err("network-history needs the subcommand latest-history-segment".into()),
    }
}

/// Prints an error about the command line or the environment and exits with status 2.
pub(crate) fn fail(message: &str) -> ! {
    eprintln!("{PROG}: {message}");
    process::exit(2);
}

/// Global options read from a `sim-options` file beside the path the simulator was started
/// as (argv[0], not the resolved executable): lets a version folder hold a plain symlink to
/// the simulator plus its options, with no shell wrapper between Visor and the process.
/// Words are separated by whitespace; no quoting.
pub(crate) fn options_file_words() -> Vec<OsString> {
    let Some(argv0) = std::env::args_os().next() else {
        return Vec::new();
    };
    let Some(dir) = Path::new(&argv0).parent() else {
        return Vec::new();
    };
    match std::fs::read_to_string(dir.join("sim-options")) {
        Ok(text) => text.split_whitespace().map(OsString::from).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "ms", "2x", "-1s", "1.s", ".5s", "1..2s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn announce_splits_at_the_last_at() {
        assert_eq!(
            parse_announce("v1.3.0@1200000"),
            Ok(Announce {
                tag: "v1.3.0".into(),
                height: 1_200_000
            })
        );
        assert_eq!(
            parse_announce("a@b@7").map(|a| a.tag),
            Ok("a@b".to_string())
        );
        assert!(parse_announce("v1").is_err());
        assert!(parse_announce("v1@x").is_err());
    }

    #[test]
    fn global_options_are_stripped_from_the_recorded_args() {
        let node_args = [
            "start",
            "--home",
            "/x",
            "--snapshot.load-from-block-height",
            "120",
            "--sim-version",
            "v9",
        ];
        let global = ["--sim-version", "v2", "--socket=/h/core.sock", "--no-rpc"];
        let inv = parse_args(&os(&[&global[..], &node_args[..]].concat())).expect("valid");
        assert_eq!(inv.command, Command::Core);
        assert_eq!(inv.opts.sim_version, "v2");
        assert_eq!(inv.opts.socket, Some(PathBuf::from("/h/core.sock")));
        assert!(inv.opts.no_rpc);
        assert_eq!(inv.args, node_args);
    }

    #[test]
    fn subcommands() {
        let cmd = |args: &[&str]| parse_args(&os(args)).map(|inv| inv.command);
        assert_eq!(cmd(&["datanode", "start", "--x"]), Ok(Command::DataNode));
        assert_eq!(
            cmd(&["version", "--output", "json"]),
            Ok(Command::Version { json: true })
        );
        assert_eq!(
            cmd(&["version", "--output=json"]),
            Ok(Command::Version { json: true })
        );
        assert_eq!(cmd(&["version"]), Ok(Command::Version { json: false }));
        assert!(cmd(&["version", "--output", "yaml"]).is_err());
        assert_eq!(
            cmd(&[
                "network-history",
                "latest-history-segment",
                "--output",
                "json"
            ]),
            Ok(Command::Segment)
        );
        assert_eq!(
            cmd(&[
                "datanode",
                "network-history",
                "latest-history-segment",
                "--output",
                "json",
                "--home",
                "/d"
            ]),
            Ok(Command::Segment)
        );
        assert_eq!(cmd(&["--help"]), Ok(Command::Help));
        assert!(cmd(&[]).unwrap_err().contains("missing subcommand"));
        assert!(cmd(&["frobnicate"]).unwrap_err().contains("frobnicate"));
        assert!(cmd(&["datanode", "run"]).unwrap_err().contains("run"));
        assert!(cmd(&["network-history", "list"]).is_err());
    }

    #[test]
    fn bad_options_name_the_culprit() {
        let err = |args: &[&str]| parse_args(&os(args)).unwrap_err();
        assert!(err(&["--bogus", "1", "start"]).contains("--bogus"));
        assert!(err(&["--socket"]).contains("--socket needs a value"));
        assert!(err(&["--ready-after", "soon", "start"]).contains("--ready-after"));
        assert!(err(&["--announce", "v1", "start"]).contains("--announce"));
        assert!(err(&["--exit-code", "300", "start"]).contains("--exit-code"));
        assert!(err(&["--no-rpc=1", "start"]).contains("takes no value"));
        assert!(err(&["--tag-field", "a b", "start"]).contains("--tag-field"));
    }
}
