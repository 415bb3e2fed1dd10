//! The RPC thread (`visor-rpc`): asks the core for the upgrade status at the interval the
//! state machine sets, and reports every answer or failure tagged with the polling
//! generation. It never interprets an answer.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::machine::Polling;
use crate::node::client::{CoreClient, UpgradeStatus};

pub struct Polled {
    pub generation: u64,
    pub result: Result<UpgradeStatus, String>,
}

/// Starts the thread; it idles until a `Some(Polling)` arrives on `control`.
pub fn start(control: Receiver<Option<Polling>>, results: Sender<Polled>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("visor-rpc".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut current: Option<(Polling, CoreClient)> = None;
            loop {
                let Some((polling, client)) = &mut current else {
                    match control.recv() {
                        Ok(next) => current = next.map(with_client),
                        Err(_) => return,
                    }
                    continue;
                };
                let started = Instant::now();
                let result = client.upgrade_status().map_err(|e| e.to_string());
                let polled = Polled {
                    generation: polling.generation,
                    result,
                };
                if results.send(polled).is_err() {
                    return;
                }
                // Wait for the next poll. A new interval or generation for the same target
                // keeps the schedule (and the open connection): a core that keeps changing its
                // answer must not make Visor poll faster.
                while let Some((polling, _)) = &mut current {
                    let left =
                        (started + polling.interval).saturating_duration_since(Instant::now());
                    match control.recv_timeout(left) {
                        Ok(Some(p))
                            if p.socket == polling.socket && p.http_path == polling.http_path =>
                        {
                            *polling = p;
                        }
                        Ok(other) => {
                            current = other.map(with_client);
                            break;
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        })?;
    Ok(())
}

fn with_client(polling: Polling) -> (Polling, CoreClient) {
    let client = CoreClient::new(polling.socket.clone(), polling.http_path.clone());
    (polling, client)
}
