//! The signal thread (`visor-signals`): turns SIGTERM, SIGINT and SIGHUP into events. It
//! decides nothing; the state machine says what each signal means.

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::machine::ReceivedSignal;

/// Installs the handlers now (so a signal that arrives before the thread runs is kept) and
/// starts the thread.
pub fn start(events: Sender<ReceivedSignal>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("visor-signals".into())
        .stack_size(crate::process::SMALL_STACK)
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
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
