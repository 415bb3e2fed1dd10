//! `zeta-core-sim`: a stand-in for the Zeta core node and data node, used by Visor's integration
//! tests and the README demo.
//!
//! In `start` mode it serves the core node's admin JSON-RPC over HTTP/1.1 on a
//! UNIX socket, answering exactly as the real core's Go `net/http` server with the gorilla/rpc v1
//! JSON codec does, including its error answers. A script given on the command line (or files in
//! a control folder) decides when an upgrade is accepted and when the core is ready for it. In
//! `datanode start` mode it only lives until it is told to stop. The `version` and
//! `network-history latest-history-segment` subcommands answer like the real binaries.
//!
//! Every event that tests care about (start, socket bound, signals, ready, exit) can be appended
//! as one JSON object per line to a record file shared by several processes.
//!
//! The simulator uses plain threads: one for signals, one per connection, and short-lived
//! timer threads. It starts processes only under `--leave-session` (helpers outside its
//! process group, for the tests of Visor's descendant rule).

use std::ffi::OsString;
use std::process;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

mod answers;
mod cli;
mod connection;
mod go_encode;
mod go_json;
mod http_request;
mod node;
mod oneshot;
mod record;
mod routing;
mod rpc;
#[cfg(test)]
mod test_support;

use cli::{fail, options_file_words, parse_args, Command, Invocation, USAGE};
use node::{run_node, Shared};
use oneshot::{run_segment, run_version};
use record::{realtime_ns, Recorder};

/// The program name used in messages.
const PROG: &str = "zeta-core-sim";

fn main() {
    // The start time is taken first: it measures when the process was exec'd.
    let start_ns = realtime_ns();
    let started = Instant::now();
    let mut argv: Vec<OsString> = options_file_words();
    argv.extend(std::env::args_os().skip(1));
    let invocation = parse_args(&argv).unwrap_or_else(|error| fail(&error));
    let Invocation {
        opts,
        command,
        args,
    } = invocation;
    if command == Command::Help {
        print!("{USAGE}");
        process::exit(0);
    }
    if command == Command::Core && opts.socket.is_none() && !opts.no_rpc {
        fail("start needs --socket PATH (the admin RPC socket), or --no-rpc");
    }
    let recorder = opts.record.as_ref().map(|path| {
        Recorder::open(path).unwrap_or_else(|error| {
            fail(&format!(
                "cannot open record file {}: {error}",
                path.display()
            ))
        })
    });
    // The handlers are installed before the start is recorded, so that a SIGTERM sent as soon
    // as the start is seen is handled (it waits in the handler's pipe until its thread runs).
    let signals = if matches!(command, Command::Core | Command::DataNode) {
        match Signals::new([SIGTERM, SIGINT]) {
            Ok(signals) => Some(signals),
            Err(error) => fail(&format!(
                "cannot install the SIGTERM/SIGINT handler: {error}"
            )),
        }
    } else {
        None
    };
    if let Some(recorder) = &recorder {
        // SAFETY: these calls only read the process's identifiers.
        let (pid, pgid, ppid) = unsafe { (libc::getpid(), libc::getpgrp(), libc::getppid()) };
        recorder.event(&[
            ("event", "start".into()),
            ("mode", command.mode().into()),
            ("pid", pid.into()),
            ("pgid", pgid.into()),
            ("ppid", ppid.into()),
            ("version", opts.sim_version.clone().into()),
            ("args", args.clone().into()),
            ("t_ns", Value::from(start_ns as u64)),
        ]);
    }
    match (command, signals) {
        (Command::Version { json }, _) => run_version(&opts, json),
        (Command::Segment, _) => run_segment(&opts),
        (Command::Core | Command::DataNode, Some(signals)) => {
            let shared = Arc::new(Shared::new(opts, started, recorder));
            run_node(shared, signals, command == Command::Core)
        }
        _ => process::exit(0),
    }
}
