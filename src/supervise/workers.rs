//! One-shot worker threads for slow checks the coordinator must not block on: the data
//! node's latest history segment before a restart, an upgrade folder's readiness, and an
//! install. Each reports its result as a state-machine event and ends. When the thread cannot
//! be started, the function returns the event that says so, for the coordinator to feed the
//! machine: a worker that never starts must not leave the machine waiting for it.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::install::ToLog;
use crate::machine::Event;
use crate::node::commands::parse_latest_segment;
use crate::node::fingerprint::CheckedFolder;
use crate::node::folder_check::{check_upgrade_folder, run_captured};

/// How long the data node may take to name its latest history segment.
pub const SEGMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `work` on a thread named `name`; on failure, the error text.
fn spawn_worker(
    name: &str,
    work: impl FnOnce() -> Event + Send + 'static,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(crate::process::PARSER_STACK)
        .spawn(move || {
            let _ = events.send(work());
        })
        .map_err(|e| {
            format!("cannot start the {name} thread ({e}); the system is out of threads or memory")
        })
}

/// Asks the data node for its latest history segment; on failure to start, the event.
pub fn query_segment(program: PathBuf, args: Vec<String>, events: Sender<Event>) -> Option<Event> {
    spawn_worker(
        "visor-segment",
        move || {
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = run_captured(&program, &words, SEGMENT_TIMEOUT)
                .and_then(|out| parse_latest_segment(&out.stdout, &out.stderr));
            Event::SegmentQueried(result)
        },
        events,
    )
    .err()
    .map(|e| Event::SegmentQueried(Err(e)))
}

/// Checks an upgrade folder (for a pending upgrade, or for an operator's switch when
/// `for_switch`); on failure to start, the event.
pub fn check_folder(
    tag: String,
    folder: PathBuf,
    for_switch: bool,
    events: Sender<Event>,
) -> Option<Event> {
    let event = move |tag: String, missing: bool, result: Result<Box<CheckedFolder>, String>| {
        if for_switch {
            Event::SwitchFolderChecked { tag, result }
        } else {
            Event::FolderChecked {
                tag,
                missing,
                result,
            }
        }
    };
    let failed_tag = tag.clone();
    spawn_worker(
        "visor-check",
        move || {
            let missing = std::fs::symlink_metadata(&folder).is_err();
            let result = check_upgrade_folder(&tag, &folder)
                .and_then(|run| CheckedFolder::record(&folder, run))
                .map(Box::new);
            event(tag, missing, result)
        },
        events,
    )
    .err()
    .map(|e| event(failed_tag, false, Err(e)))
}

/// Reads `folder/run-config.toml` again and checks its binaries, for an operator's restart;
/// on failure to start, the event.
pub fn read_run_config(folder: PathBuf, events: Sender<Event>) -> Option<Event> {
    let read = move || {
        crate::node::folder_check::load_startable(&folder)
            .map(Box::new)
            .map_err(|problems| problems.join("; "))
    };
    spawn_worker("visor-check", move || Event::RunConfigRead(read()), events)
        .err()
        .map(|e| Event::RunConfigRead(Err(e)))
}

/// Installs a release on the `visor-install` thread; progress lines go to the log, the result
/// comes back as [`Event::InstallFinished`]. Setting `cancel` stops it soon, cleaned up.
pub fn install(
    request: crate::install::InstallRequest,
    cancel: Arc<AtomicBool>,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, Event> {
    let tag = request.tag.clone();
    spawn_worker(
        "visor-install",
        move || {
            let folder = request.folder.clone();
            let result = crate::install::install_cancellable(&request, &cancel, &mut ToLog)
                .map_err(|e| e.to_string())
                .and_then(|run| CheckedFolder::record(&folder, run))
                .map(Box::new);
            Event::InstallFinished {
                tag: request.tag,
                result,
            }
        },
        events,
    )
    .map_err(|e| Event::InstallFinished {
        tag,
        result: Err(e),
    })
}
