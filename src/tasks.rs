//! One-shot worker threads for slow checks the coordinator must not block on: the data
//! node's latest history segment before a restart, and an upgrade folder's readiness. Each
//! reports its result as a state-machine event and ends.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::config::AutoInstall;
use crate::folder_check::{check_upgrade_folder, run_captured};
use crate::home::Home;
use crate::machine::Event;
use crate::node_commands::parse_latest_segment;
use crate::run_config::RunConfig;

/// How long the data node may take to name its latest history segment.
pub const SEGMENT_TIMEOUT: Duration = Duration::from_secs(60);

fn spawn_worker(name: &str, work: impl FnOnce() -> Event + Send + 'static, events: Sender<Event>) {
    let worker_events = events.clone();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(crate::child::PARSER_STACK)
        .spawn(move || {
            let _ = worker_events.send(work());
        });
    if let Err(e) = started {
        crate::log::error(&format!("cannot start thread {name}: {e}"), &[]);
    }
}

pub fn query_segment(program: PathBuf, args: Vec<String>, events: Sender<Event>) {
    spawn_worker(
        "visor-segment",
        move || {
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = run_captured(&program, &words, SEGMENT_TIMEOUT)
                .and_then(|out| parse_latest_segment(&out.stdout, &out.stderr));
            Event::SegmentQueried(result)
        },
        events,
    );
}

pub fn check_folder(tag: String, folder: PathBuf, events: Sender<Event>) {
    spawn_worker(
        "visor-check",
        move || {
            let missing = std::fs::symlink_metadata(&folder).is_err();
            let result = check_upgrade_folder(&tag, &folder).map(Box::new);
            Event::FolderChecked {
                tag,
                missing,
                result,
            }
        },
        events,
    );
}

/// Installs a release on the `visor-install` thread; progress lines go to the log, the result
/// comes back as [`Event::InstallFinished`].
pub fn install(
    home: Home,
    auto: AutoInstall,
    tag: String,
    folder: PathBuf,
    template: RunConfig,
    events: Sender<Event>,
) {
    spawn_worker(
        "visor-install",
        move || {
            let result = crate::install::install(
                &crate::install::InstallRequest {
                    home,
                    auto,
                    tag: tag.clone(),
                    folder,
                    template,
                },
                &mut |msg, fields| {
                    let fields: Vec<(&str, String)> = fields.into_iter().collect();
                    crate::log::info(msg, &fields)
                },
            )
            .map(Box::new)
            .map_err(|e| e.to_string());
            Event::InstallFinished { tag, result }
        },
        events,
    );
}
