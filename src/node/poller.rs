//! The RPC thread (`visor-rpc`): asks the core for the upgrade status at the interval the
//! state machine sets, and reports answers and failures tagged with the polling generation.
//! It never interprets an answer: it only leaves out an answer equal to the one it last
//! reported under the same generation, for up to [`UNCHANGED_REPORT_PERIOD`], so that an
//! idle Visor's coordinator is not woken twice a second to learn nothing ([`worth_reporting`]).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::machine::Polling;
use crate::node::client::{CoreClient, UpgradeStatus};

pub struct Polled {
    pub generation: u64,
    pub result: Result<UpgradeStatus, String>,
}

/// The longest an answer equal to the last one reported goes unreported: the machine still
/// sees the core answering at least this often (its restart-counter reset is checked at an
/// answer).
pub const UNCHANGED_REPORT_PERIOD: Duration = Duration::from_secs(5);

/// The last answer reported: under which generation, what, and when.
struct Reported {
    generation: u64,
    status: UpgradeStatus,
    at: Instant,
}

/// Whether a poll's result goes to the coordinator: every failure, the first answer of a
/// generation, an answer that differs from the last one reported, and an unchanged answer
/// once [`UNCHANGED_REPORT_PERIOD`] has passed since the last report.
fn worth_reporting(
    last: Option<&Reported>,
    generation: u64,
    result: &Result<UpgradeStatus, String>,
    now: Instant,
) -> bool {
    let (Some(last), Ok(status)) = (last, result) else {
        return true;
    };
    last.generation != generation
        || last.status != *status
        || now.saturating_duration_since(last.at) >= UNCHANGED_REPORT_PERIOD
}

/// Starts the thread; it idles until a `Some(Polling)` arrives on `control`.
pub fn start(control: Receiver<Option<Polling>>, results: Sender<Polled>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("visor-rpc".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut current: Option<(Polling, CoreClient)> = None;
            let mut reported: Option<Reported> = None;
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
                let generation = polling.generation;
                let now = Instant::now();
                if worth_reporting(reported.as_ref(), generation, &result, now) {
                    reported = match &result {
                        Ok(status) => Some(Reported {
                            generation,
                            status: status.clone(),
                            at: now,
                        }),
                        Err(_) => None,
                    };
                    if results.send(Polled { generation, result }).is_err() {
                        return;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::client::AcceptedRelease;

    fn accepted(tag: &str, ready: bool) -> UpgradeStatus {
        UpgradeStatus {
            accepted: Some(AcceptedRelease {
                tag: tag.into(),
                height: 100,
            }),
            ready,
        }
    }

    #[test]
    fn only_news_and_a_periodic_unchanged_answer_are_reported() {
        let t0 = Instant::now();
        let idle = UpgradeStatus {
            accepted: None,
            ready: false,
        };
        // Nothing reported yet: the first answer and the first failure go.
        assert!(worth_reporting(None, 1, &Ok(idle.clone()), t0));
        assert!(worth_reporting(None, 1, &Err("refused".into()), t0));
        let last = Reported {
            generation: 1,
            status: idle.clone(),
            at: t0,
        };
        let soon = t0 + Duration::from_millis(500);
        // The same answer under the same generation waits...
        assert!(!worth_reporting(Some(&last), 1, &Ok(idle.clone()), soon));
        // ...until the period has passed.
        let later = t0 + UNCHANGED_REPORT_PERIOD;
        assert!(worth_reporting(Some(&last), 1, &Ok(idle.clone()), later));
        // A failure, a new generation (a new start, a retarget) and any change go at once.
        assert!(worth_reporting(
            Some(&last),
            1,
            &Err("timed out".into()),
            soon
        ));
        assert!(worth_reporting(Some(&last), 2, &Ok(idle.clone()), soon));
        assert!(worth_reporting(
            Some(&last),
            1,
            &Ok(accepted("v2", false)),
            soon
        ));
        let pending = Reported {
            generation: 1,
            status: accepted("v2", false),
            at: t0,
        };
        // The ready flag of the accepted release is news, and so is another release.
        assert!(worth_reporting(
            Some(&pending),
            1,
            &Ok(accepted("v2", true)),
            soon
        ));
        assert!(worth_reporting(
            Some(&pending),
            1,
            &Ok(accepted("v3", false)),
            soon
        ));
        assert!(!worth_reporting(
            Some(&pending),
            1,
            &Ok(accepted("v2", false)),
            soon
        ));
    }
}
