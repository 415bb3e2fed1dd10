//! The signal thread (`visor-signals`): turns SIGTERM, SIGINT and SIGHUP into events, and on
//! SIGCHLD reaps the orphans re-parented to Visor ([`crate::process::reaper`]). It decides
//! nothing; the state machine says what each signal means.
//!
//! SIGCHLD is blocked in every other thread (`visor run` blocks it before it starts any), so
//! it is delivered here and never interrupts another thread's system call.

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::machine::ReceivedSignal;
use crate::process::reaper;

/// Installs the handlers now (so a signal that arrives before the thread runs is kept) and
/// starts the thread.
pub fn start(events: Sender<ReceivedSignal>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])?;
    std::thread::Builder::new()
        .name("visor-signals".into())
        .stack_size(crate::process::SMALL_STACK)
        .spawn(move || {
            reaper::unblock_child_signal();
            // Orphans that ended before the handler was installed.
            reaper::reap_orphans();
            for signal in signals.forever() {
                let event = match signal {
                    SIGCHLD => {
                        reaper::reap_orphans();
                        continue;
                    }
                    SIGTERM => ReceivedSignal::Term,
                    SIGINT => ReceivedSignal::Int,
                    _ => ReceivedSignal::Hup,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
