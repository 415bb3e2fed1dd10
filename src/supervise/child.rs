//! Starting the node processes and waiting for them.
//!
//! Only the coordinator calls [`spawn`] and [`signal`]. Each child gets a waiter thread
//! (`visor-wait-<pid>`) that owns the `Child`, blocks in `wait`, and only reports the exit.
//! The process primitives themselves are in [`crate::process`]; this file maps the machine's
//! `Proc` and `StopSignal` onto them.

use std::io;
use std::path::Path;
use std::process::Stdio;

use crossbeam_channel::Sender;

use crate::machine::{Event, Proc, StopSignal};
use crate::process::{self, spawn::describe_status, Signal};

/// The process signal for the machine's stop signal.
pub fn to_signal(signal: StopSignal) -> Signal {
    match signal {
        StopSignal::Term => Signal::Term,
        StopSignal::Kill => Signal::Kill,
    }
}

/// Starts `program args` with stdin from /dev/null, stdout and stderr inherited, in its own
/// process group, with SIGTERM as its parent-death signal and without
/// [`process::spawn::WITHHELD_VARIABLES`]; returns its pid.
///
/// The parent-death signal fires when the *thread* that forked exits, so this must be called
/// from the coordinator thread, which lives as long as Visor does.
pub fn spawn(proc: Proc, program: &Path, args: &[String], exits: Sender<Event>) -> io::Result<u32> {
    let mut command = process::spawn::group_command(program, args);
    command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    // Visor may die between fork and prctl; then nobody would ever stop the child.
    process::spawn::parent_death_signal(&mut command, Signal::Term, true);
    let mut child = process::spawn::start(&mut command)?;
    let pid = child.id();
    let spawned = std::thread::Builder::new()
        .name(format!("visor-wait-{pid}"))
        .stack_size(process::SMALL_STACK)
        .spawn(move || {
            let status = match child.wait() {
                Ok(status) => describe_status(status),
                Err(e) => format!("wait failed: {e}"),
            };
            process::spawn::reaped(pid);
            let _ = exits.send(Event::ChildExited { proc, pid, status });
        });
    if let Err(e) = spawned {
        // Without a waiter nobody would reap the child: stop it and report the failure.
        // The reaper takes the zombie once it is no longer recorded as started.
        process::signal::signal_group(pid, Signal::Kill);
        process::spawn::reaped(pid);
        return Err(e);
    }
    Ok(pid)
}

/// Sends the machine's stop signal to the child's whole process group. A group that is
/// already gone is not an error.
pub fn signal(pgid: u32, signal: StopSignal) {
    process::signal::signal_group(pgid, to_signal(signal));
}
