//! The coordinator: the one loop that owns the state machine (see ARCHITECTURE.md). It waits on
//! every input channel with one `select!`, feeds the machine, and carries out the actions it
//! hands back. It is the only code that spawns or signals a node process or moves `current`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::run_config::RunConfig;
use crate::config::watch::ConfigRead;
use crate::home::supervise_folder::SuperviseFolder;
use crate::home::{self, Home};
use crate::install::InstallRequest;
use crate::machine::{
    Action, ControlReply, Event, Machine, Polling, Proc, ReceivedSignal, Stray, SwitchError,
};
use crate::node::fingerprint::Fingerprint;
use crate::node::poller::Polled;
use crate::ops::log;
use crate::ops::report::Reporter;
use crate::process::{self, descendants, descendants::Tree};
use crate::supervise::child;
use crate::supervise::control_socket::ControlMessage;
use crate::supervise::hooks::{self, HookGroups, HookRun};
use crate::supervise::workers;

/// The channels between the coordinator and the threads that feed it.
pub struct Channels {
    pub signals: Receiver<ReceivedSignal>,
    pub configs: Receiver<ConfigRead>,
    pub polls: Receiver<Polled>,
    /// Child exits and worker results, already in the machine's terms.
    pub events: Receiver<Event>,
    pub events_tx: Sender<Event>,
    pub poll_control: std::sync::mpsc::Sender<Option<Polling>>,
    pub reload: std::sync::mpsc::SyncSender<()>,
    /// Operators' requests from the control socket.
    pub controls: Receiver<ControlMessage>,
}

pub struct Coordinator {
    machine: Machine,
    home: Home,
    channels: Channels,
    reporter: Reporter,
    /// The install worker (the machine allows one at a time) and its cancel flag.
    install: Option<(String, Arc<AtomicBool>, JoinHandle<()>)>,
    /// The backup worker (one at a time), by the machine's id, and its cancel flag.
    backup: Option<(u64, Arc<AtomicBool>, JoinHandle<()>)>,
    /// Where the answers to each control request go, by request id.
    replies: HashMap<u64, Sender<ControlReply>>,
    next_request: u64,
    /// The process groups of running hooks, killed when Visor exits.
    hook_groups: HookGroups,
    /// When each node process was started (clock ticks after boot), for the probes of its
    /// descendants.
    started_at: HashMap<u32, u64>,
    /// When to give back the code pages of passing work (`memory::release_read_only_pages`):
    /// [`RELEASE_AFTER`] after the core last started answering (at start, after a restart
    /// or an upgrade) or an install last ended.
    release_at: Option<Instant>,
    /// Whether the core answered after the previous turn.
    was_answering: bool,
}

/// How long the steady work runs before the pages of what came before are given back: long
/// enough that the first turns of a new core (its first `status.json`, ...) are over, and
/// that upgrades in quick succession (a test network) keep the upgrade's code mapped.
const RELEASE_AFTER: Duration = Duration::from_secs(30);

/// A turn slower than this is logged, as a hint that something blocked the loop.
const SLOW_TURN: Duration = Duration::from_millis(100);
/// How long an exiting Visor waits for a cancelled install to remove its half-made folder.
const INSTALL_CLEANUP_WAIT: Duration = Duration::from_secs(10);
/// How long an exiting Visor waits for a cancelled backup to remove its half-made copy, which
/// may hold many files; within the unit's `TimeoutStopSec=` (30 s) with the binaries already
/// stopped.
pub const BACKUP_CLEANUP_WAIT: Duration = Duration::from_secs(20);

impl Coordinator {
    pub fn new(machine: Machine, home: Home, channels: Channels) -> Coordinator {
        Coordinator {
            machine,
            home,
            channels,
            reporter: Reporter::from_env(Instant::now()),
            install: None,
            backup: None,
            replies: HashMap::new(),
            next_request: 0,
            hook_groups: HookGroups::default(),
            started_at: HashMap::new(),
            release_at: None,
            was_answering: false,
        }
    }

    /// Also keeps `status.json` in the supervise folder up to date.
    pub fn with_status_file(mut self, folder: SuperviseFolder) -> Coordinator {
        self.reporter = self.reporter.with_status_file(folder);
        self
    }

    /// Runs until the machine orders an exit; returns the exit status.
    pub fn run(mut self) -> i32 {
        self.machine.handle(Instant::now(), Event::Started);
        let mut cause = "Started";
        loop {
            // The part of a turn that can block (spawns, kills, renames, the reporter's
            // writes) is what is timed; the machine itself never blocks.
            let started = Instant::now();
            let exit = self.execute_actions();
            self.reporter.after_turn(&self.machine, Instant::now());
            self.release_passing_pages();
            let took = started.elapsed();
            if took > SLOW_TURN {
                log::debug(
                    "coordinator: slow turn",
                    &[
                        ("after", cause.into()),
                        ("ms", took.as_millis().to_string()),
                    ],
                );
            }
            if let Some(code) = exit {
                self.hook_groups.kill_all();
                self.wait_for_cancelled_install();
                self.wait_for_cancelled_backup();
                self.reporter.at_exit(&self.machine, Instant::now());
                return code;
            }
            let event = self.next_event();
            let now = Instant::now();
            match event {
                Some(event) => {
                    cause = event_name(&event);
                    if matches!(event, Event::InstallFinished { .. }) {
                        self.release_at = Some(now + RELEASE_AFTER);
                    }
                    self.machine.handle(now, event);
                }
                None => {
                    cause = "timeout";
                    self.machine.handle_timeout(now);
                    self.reporter.handle_timeout(&self.machine, now);
                }
            }
        }
    }

    /// Gives back the code pages of the work done before (start-up, install, upgrade) once
    /// the core has answered for [`RELEASE_AFTER`] and no install runs, so that an idle
    /// Visor keeps only what its steady work runs resident.
    fn release_passing_pages(&mut self) {
        let now = Instant::now();
        let answering = self.machine.core_answered();
        if answering && !self.was_answering {
            self.release_at = Some(now + RELEASE_AFTER);
        }
        self.was_answering = answering;
        let installing = self
            .install
            .as_ref()
            .is_some_and(|(_, _, worker)| !worker.is_finished());
        if self.release_at.is_some_and(|at| at <= now) && answering && !installing {
            self.release_at = None;
            let bytes = super::memory::release_read_only_pages();
            log::debug(
                "memory: code pages of passing work given back",
                &[("bytes", bytes.to_string())],
            );
        }
    }

    /// Waits for the next input, or for the machine's next deadline (`None`).
    fn next_event(&mut self) -> Option<Event> {
        let deadline = [self.machine.next_deadline(), self.reporter.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let timeout = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        let c = &self.channels;
        select! {
            recv(c.signals) -> signal => signal.ok().map(Event::SignalReceived),
            recv(c.events) -> event => event.ok(),
            recv(c.polls) -> polled => polled.ok().map(|p| Event::StatusPolled { generation: p.generation, result: p.result }),
            recv(c.configs) -> read => read.ok().map(|read| match read {
                ConfigRead::Read(result) => {
                    if let Ok(config) = &result {
                        log::configure(config.log_format, config.log_level);
                    }
                    Event::ConfigReloaded(result)
                }
                ConfigRead::Unchanged => Event::ConfigUnchanged,
            }),
            recv(c.controls) -> message => message.ok().map(|message| {
                self.next_request += 1;
                self.replies.insert(self.next_request, message.replies);
                Event::ControlReceived { id: self.next_request, request: message.request }
            }),
            default(timeout) => None,
        }
    }

    /// Carries out every queued action; `Some(code)` once the machine ordered an exit.
    fn execute_actions(&mut self) -> Option<i32> {
        let mut exit = None;
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Exit(code) => exit = Some(code),
                other => {
                    // Actions with an immediate result feed it straight back to the machine.
                    if let Some(event) = self.execute(other) {
                        self.machine.handle(Instant::now(), event);
                    }
                }
            }
        }
        exit
    }

    /// Carries out one action; the event it produced at once, if any.
    fn execute(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Log { level, msg, fields } => {
                let fields: Vec<(&str, String)> = fields.into_iter().collect();
                log::write(level, &msg, &fields);
                None
            }
            Action::Spawn {
                proc,
                program,
                args,
            } => Some(self.spawn(proc, &program, &args)),
            Action::Signal { pid, signal, .. } | Action::SignalGroup { pgid: pid, signal } => {
                child::signal(pid, signal);
                None
            }
            Action::ProbeGroups(groups) => Some(self.probe(&groups)),
            Action::SignalProcess {
                pid,
                start_time,
                signal,
            } => {
                process::signal::signal_process(pid, start_time, child::to_signal(signal));
                None
            }
            Action::Poll(polling) => {
                let _ = self.channels.poll_control.send(polling);
                None
            }
            Action::ReloadConfig => {
                // Never block on the watcher: a reload already asked for covers this one.
                let _ = self.channels.reload.try_send(());
                None
            }
            worker @ (Action::QuerySegment { .. }
            | Action::CheckFolder { .. }
            | Action::CheckSwitchFolder { .. }
            | Action::ReadRunConfig { .. }
            | Action::RunHook { .. }
            | Action::StartInstall { .. }
            | Action::StartBackup { .. }
            | Action::CheckBackup { .. }) => self.start_worker(worker),
            Action::CancelInstall { tag } => {
                if let Some((_, cancel, _)) = self.install.as_ref().filter(|i| i.0 == tag) {
                    cancel.store(true, Ordering::Relaxed);
                }
                None
            }
            Action::CancelBackup { id } => {
                if let Some((_, cancel, _)) = self.backup.as_ref().filter(|b| b.0 == id) {
                    cancel.store(true, Ordering::Relaxed);
                }
                None
            }
            Action::ControlReply { id, reply } => {
                self.reply(id, reply);
                None
            }
            Action::SwitchCurrent { folder, expect } => Some(Event::CurrentSwitched(
                self.switch_current(&folder, &expect),
            )),
            Action::MarkUpgrade { tag, height } => {
                self.mark_upgrade(&tag, height);
                None
            }
            Action::ClearUpgradeMark => {
                if let Err(e) = self.home.clear_upgrade_mark() {
                    log::warn(
                        &format!("home: cannot remove {}: {e}", home::UPGRADE_MARK),
                        &[],
                    );
                }
                None
            }
            Action::Exit(_) => None,
        }
    }

    /// Starts the worker thread an action asks for; the event that says it could not start,
    /// if so (a worker that never starts must not leave the machine waiting).
    fn start_worker(&mut self, action: Action) -> Option<Event> {
        let events = || self.channels.events_tx.clone();
        match action {
            Action::QuerySegment { program, args } => {
                workers::query_segment(program, args, events())
            }
            Action::CheckFolder { tag, folder } => {
                workers::check_folder(tag, folder, false, events())
            }
            Action::CheckSwitchFolder { tag, folder } => {
                workers::check_folder(tag, folder, true, events())
            }
            Action::ReadRunConfig { folder } => workers::read_run_config(folder, events()),
            Action::RunHook {
                id,
                kind,
                command,
                env,
                timeout,
            } => {
                let stop_timeout = self.machine.config().stop_signal_timeout;
                self.run_hook(HookRun {
                    id,
                    kind,
                    command,
                    env,
                    timeout,
                    stop_timeout,
                })
            }
            Action::StartInstall {
                tag,
                folder,
                template,
            } => self.start_install(tag, folder, *template),
            Action::StartBackup { id, order } => {
                let cancel = Arc::new(AtomicBool::new(false));
                match workers::backup(id, *order, cancel.clone(), events()) {
                    Ok(handle) => {
                        self.backup = Some((id, cancel, handle));
                        None
                    }
                    Err(failed) => Some(failed),
                }
            }
            Action::CheckBackup {
                id,
                settings,
                upgrade_folders,
            } => workers::check_backup(id, self.home.clone(), *settings, upgrade_folders, events()),
            _ => None,
        }
    }

    /// Starts a hook on its own thread; the event that says it could not start, if so.
    fn run_hook(&self, run: HookRun) -> Option<Event> {
        let events = self.channels.events_tx.clone();
        hooks::start(run, self.hook_groups.clone(), events).err()
    }

    /// The process groups of `groups` that still have live members, and the descendants of
    /// those node processes outside their groups, in one read of `/proc`.
    fn probe(&mut self, groups: &[u32]) -> Event {
        let trees: Vec<Tree> = groups
            .iter()
            .map(|pgid| Tree {
                leader: *pgid,
                // Unknown: no orphan is given to it (rule 3 of `process::descendants`).
                since: self.started_at.get(pgid).copied().unwrap_or(u64::MAX),
            })
            .collect();
        let probes = descendants::probe(&trees);
        let mut alive = Vec::new();
        let mut strays = Vec::new();
        for (tree, found) in trees.iter().zip(probes) {
            if found.group_alive {
                alive.push(tree.leader);
            }
            strays.extend(found.strays.into_iter().map(|s| Stray {
                pid: s.pid,
                start_time: s.start_time,
                tree: tree.leader,
            }));
        }
        // A group found empty with nothing outside it is never probed again.
        self.started_at.retain(|pid, _| {
            !groups.contains(pid)
                || alive.contains(pid)
                || strays.iter().any(|s| s.tree == *pid)
                || [Proc::Core, Proc::DataNode]
                    .into_iter()
                    .any(|p| self.machine.child_pid(p) == Some(*pid))
        });
        Event::GroupsProbed { alive, strays }
    }

    fn spawn(&mut self, proc: Proc, program: &Path, args: &[String]) -> Event {
        let since = process::table::ticks_now();
        match child::spawn(proc, program, args, self.channels.events_tx.clone()) {
            Ok(pid) => {
                // Bounded: entries leave when a probe finds the group empty; a few kept by
                // SIGKILLed groups never probed again are dropped oldest first.
                if self.started_at.len() >= 64 {
                    if let Some(oldest) = self
                        .started_at
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(p, _)| *p)
                    {
                        self.started_at.remove(&oldest);
                    }
                }
                self.started_at.insert(pid, since);
                Event::ChildSpawned { proc, pid }
            }
            Err(e) => Event::SpawnFailed {
                proc,
                error: format!("{}: {e}", program.display()),
            },
        }
    }

    /// Sends an answer to the operator's request `id`; a final one forgets the request.
    fn reply(&mut self, id: u64, reply: ControlReply) {
        let last = reply.is_final();
        if let Some(replies) = self.replies.get(&id) {
            // Unbounded: never blocks; a client that left only loses the answer.
            let _ = replies.send(reply);
        }
        if last {
            self.replies.remove(&id);
        }
    }

    /// Moves `current` to `folder` if it is still the folder that was checked.
    fn switch_current(&self, folder: &Path, expect: &Fingerprint) -> Result<(), SwitchError> {
        if let Some(change) = expect.changed() {
            return Err(SwitchError::FolderChanged(change));
        }
        self.home.switch_current(folder).map_err(|e| {
            SwitchError::Failed(format!(
                "{} -> {}: {e}",
                self.home.current_link().display(),
                folder.display()
            ))
        })
    }

    fn mark_upgrade(&self, tag: &str, height: u64) {
        if let Err(e) = self.home.write_upgrade_mark(tag, height) {
            log::warn(
                &format!("home: cannot note the upgrade: {e}; a Visor restarted before {tag} answers would start it without the snapshot height"),
                &[],
            );
        }
    }

    fn start_install(
        &mut self,
        tag: String,
        folder: std::path::PathBuf,
        template: RunConfig,
    ) -> Option<Event> {
        let request = InstallRequest {
            home: self.home.clone(),
            auto: self.machine.config().auto_install.clone(),
            tag: tag.clone(),
            folder,
            template,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let events = self.channels.events_tx.clone();
        match workers::install(request, cancel.clone(), events) {
            Ok(handle) => {
                self.install = Some((tag, cancel, handle));
                None
            }
            Err(failed) => Some(failed),
        }
    }

    /// Gives a cancelled install (bounded) time to remove its half-made folder before exit.
    fn wait_for_cancelled_install(&mut self) {
        let Some((tag, cancel, handle)) = self.install.take() else {
            return;
        };
        if handle.is_finished() {
            return;
        }
        cancel.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + INSTALL_CLEANUP_WAIT;
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            log::info(
                &format!("install: the install of {tag} was stopped and cleaned up"),
                &[],
            );
        } else {
            log::warn(
                &format!("install: the install of {tag} did not stop within {} s; its half-made .visor-tmp-install-* folder is removed at the next start", INSTALL_CLEANUP_WAIT.as_secs()),
                &[],
            );
        }
    }
}

impl Coordinator {
    /// Gives a cancelled backup (bounded) time to remove its half-made copy before exit,
    /// going on pinging systemd's watchdog meanwhile, and logs how it ended.
    fn wait_for_cancelled_backup(&mut self) {
        let Some((_, cancel, handle)) = self.backup.take() else {
            return;
        };
        cancel.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + BACKUP_CLEANUP_WAIT;
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            self.reporter.handle_timeout(&self.machine, Instant::now());
        }
        if !handle.is_finished() {
            log::warn(
                &format!(
                    "backup: the backup did not stop within {} s; its half-made \
                     .visor-tmp-backup-* folder is removed at the next start",
                    BACKUP_CLEANUP_WAIT.as_secs()
                ),
                &[],
            );
            return;
        }
        // Its last word, not handled by the machine since it is exiting, says whether the
        // half-made copy could be removed (none when it had ended before).
        let ended = self
            .channels
            .events
            .try_iter()
            .find_map(|event| match event {
                Event::BackupFinished { result, .. } => Some(result),
                _ => None,
            });
        match ended {
            Some(Err(e)) => log::info(&format!("backup: stopped: {e}"), &[]),
            Some(Ok(done)) => log::info(
                &format!(
                    "backup: it completed before it could stop: {}",
                    done.path.display()
                ),
                &[],
            ),
            None => {}
        }
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Started => "Started",
        Event::ChildSpawned { .. } => "ChildSpawned",
        Event::SpawnFailed { .. } => "SpawnFailed",
        Event::ChildExited { .. } => "ChildExited",
        Event::SignalReceived(_) => "SignalReceived",
        Event::StatusPolled { .. } => "StatusPolled",
        Event::ConfigReloaded(_) => "ConfigReloaded",
        Event::ConfigUnchanged => "ConfigUnchanged",
        Event::SegmentQueried(_) => "SegmentQueried",
        Event::FolderChecked { .. } => "FolderChecked",
        Event::InstallFinished { .. } => "InstallFinished",
        Event::CurrentSwitched(_) => "CurrentSwitched",
        Event::GroupsProbed { .. } => "GroupsProbed",
        Event::ControlReceived { .. } => "ControlReceived",
        Event::SwitchFolderChecked { .. } => "SwitchFolderChecked",
        Event::RunConfigRead(_) => "RunConfigRead",
        Event::HookFinished { .. } => "HookFinished",
        Event::HookStarted { .. } => "HookStarted",
        Event::BackupProgress { .. } => "BackupProgress",
        Event::BackupFinished { .. } => "BackupFinished",
        Event::BackupChecked { .. } => "BackupChecked",
    }
}
